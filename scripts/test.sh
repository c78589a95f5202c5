#!/usr/bin/env bash
# Installs the test dependencies and runs the whole suite (lint, doctests, tests).
# The suite starts its own Kafka-compatible broker (Tansu) and Redis; nothing
# needs to be running. kcat (a non-Python Kafka client the tests use) comes
# from Debian's packages when it is missing and we may install it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! command -v kcat >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq kcat >/dev/null
fi

"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m pytest --doctest-modules streams agents models tests "$@"
