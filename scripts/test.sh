#!/usr/bin/env bash
# Installs the test dependencies and runs the whole suite (lint, doctests, tests).
# The suite starts its own Kafka-compatible broker (Tansu) and Redis; nothing
# needs to be running.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Non-Python test tools from Debian: kcat (a Kafka client in C) and chromium
# (the page test drives a real headless browser).
missing=""
command -v kcat >/dev/null 2>&1 || missing="$missing kcat"
[ -x /usr/bin/chromium ] || missing="$missing chromium fonts-liberation"
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m pytest --doctest-modules streams agents models tests "$@"
