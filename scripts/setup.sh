#!/usr/bin/env bash
# Creates .venv and installs globtim-hpc with its test tools into it. Idempotent: a second run
# with an unchanged pyproject.toml only checks a stamp file.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "error: globtim-hpc needs Python 3.10 or newer ($python is $("$python" --version 2>&1))" >&2
    echo "hint: install python3 (3.10+) or set PYTHON=/path/to/python3" >&2
    exit 1
fi

stamp=.venv/.globtim-hpc-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

if ! "$python" -m venv .venv 2>/dev/null; then
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$python" -m venv .venv
    else
        echo "error: cannot create a virtual environment with $python" >&2
        echo "hint: install the python3-venv package" >&2
        exit 1
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "$want" > "$stamp"
echo "globtim-hpc installed in .venv"
