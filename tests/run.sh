#!/usr/bin/env bash
# The project's test command. On a fresh machine it does all set-up: the virtual environment,
# the test bed's system packages and the bed itself (as root), then ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. `bash tests/run.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

stamp "python environment"
bash scripts/setup.sh

if [ "$(id -u)" = 0 ]; then
    stamp "test bed"
    bash tests/testbed/packages.sh
    bash tests/testbed/up.sh
else
    stamp "not root: integration tests use a bed that is already up (tests/testbed/up.sh as root)"
fi

stamp "ruff"
.venv/bin/ruff check .
stamp "mypy"
.venv/bin/mypy
stamp "pytest"
.venv/bin/python -m pytest "$@"
