#!/usr/bin/env bash
# The second README command: installs what the tests need and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=1 ./devtools/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
