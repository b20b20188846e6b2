#!/usr/bin/env bash
# The project's test command. On a fresh machine it does all set-up: the virtual environment,
# the test bed's system packages and the bed itself (as root), then ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. `bash tests/run.sh tests/unit -x`).
#
# Without arguments the suite runs in two parts: everything that shares the bed on
# GLOBTIM_TEST_WORKERS parallel workers (default 3; most of a test's time is waiting on SLURM
# and SSH, not CPU), then the tests marked disruptive or alone, one at a time, with the bed to
# themselves. Both parts always run; the exit code is the first failing part's.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

stamp "python environment"
bash scripts/setup.sh

# Parallel tests' jobs share node falcon: declare more CPUs than the machine has, so one test's
# array does not queue another test behind it (the stand-in's tasks mostly sleep).
export TESTBED_CPUS=${TESTBED_CPUS:-8}

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
if [ $# -gt 0 ]; then
    stamp "pytest $*"
    exec .venv/bin/python -m pytest "$@"
fi
workers=${GLOBTIM_TEST_WORKERS:-3}
stamp "pytest, shared part on $workers workers"
set +e
.venv/bin/python -m pytest -n "$workers" --dist worksteal -m "not disruptive and not alone"
shared=$?
stamp "pytest, disruptive and alone, one at a time"
.venv/bin/python -m pytest -p no:xdist -m "disruptive or alone"
alone=$?
set -e
stamp "pytest: shared part rc=$shared, disruptive/alone part rc=$alone"
# pytest's 5 means "no tests collected": a part may be empty when a marker is not used.
[ "$shared" -ne 0 ] && [ "$shared" -ne 5 ] && exit "$shared"
[ "$alone" -ne 0 ] && [ "$alone" -ne 5 ] && exit "$alone"
exit 0
