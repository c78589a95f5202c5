#!/usr/bin/env bash
# Installs the test dependencies and runs the whole suite (lint, doctests, tests)
# on $PYTHON (python3: 3.11 here), then the suite again on the newest Python
# 3.12+ this machine has, in a venv of its own under .venv-ci/ (with the optional
# UMAP extra, so the map's UMAP path is tested there and its fallback on the first).
# The suite starts its own Kafka-compatible broker (Tansu) and Redis; nothing
# needs to be running. Extra arguments go to pytest (both runs).
# TASTESTREAM_NEWEST_PYTHON=none skips the second run; =/path/to/python picks it.
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
# The suite in two halves at once: the pure one (streams, models: CPU only, no broker)
# beside the one that drives real workers over the broker and Redis (agents: mostly
# waiting on them), so the wall time is about the longer half's. Each half prints its
# own report (the pure half's after the other's); either failing fails the run.
run_suite() {
  local python=$1 pure_log pure status=0
  shift
  echo "== suite on $("$python" -c 'import sys; print(sys.version.split()[0])')"
  pure_log=$(mktemp)
  "$python" -m pytest -p no:cacheprovider --durations=10 --doctest-modules \
    streams models tests/streams tests/models "$@" >"$pure_log" 2>&1 &
  pure=$!
  "$python" -m pytest --durations=15 --doctest-modules agents tests/agents "$@" || status=$?
  wait "$pure" || status=$?
  echo "== the pure half (streams, models)"
  cat "$pure_log"
  rm -f "$pure_log"
  return "$status"
}

run_suite "$PYTHON" "$@"

# The newest Python 3.12+ here: on PATH, or installed by pyenv (whose shims answer
# only for the global version, so its versions are looked for directly).
newest_python() {
  local minor candidate
  for minor in 3.14 3.13 3.12; do
    for candidate in "$(command -v "python$minor" || true)" \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$minor".*/bin/"python$minor" 2>/dev/null |
        sort -V | tail -n 1); do
      if [ -n "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
        echo "$candidate"
        return
      fi
    done
  done
}
NEWEST=${TASTESTREAM_NEWEST_PYTHON:-$(newest_python)}
if [ "$NEWEST" = "none" ]; then
  exit 0
fi
if [ -z "$NEWEST" ]; then
  echo "no Python 3.12 or newer found: the suite ran on $PYTHON only" >&2
  exit 0
fi
version=$("$NEWEST" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=".venv-ci/py$version"
[ -x "$venv/bin/python" ] || "$NEWEST" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test,umap]'
run_suite "$venv/bin/python" "$@"
