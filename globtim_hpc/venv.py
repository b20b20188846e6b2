"""Let ``./submit_julia_job.py`` work with a plain ``python3`` when the project's .venv has the deps."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

# find_spec looks the modules up without importing them, so --help stays fast.
REQUIRED_MODULES = ("yaml", "paramiko", "rich", "jinja2")


def use_project_venv() -> None:
    """Re-run this command under the repository's ``.venv`` if this interpreter lacks a dependency."""
    if all(importlib.util.find_spec(name) is not None for name in REQUIRED_MODULES):
        return
    venv = Path(__file__).resolve().parent.parent / ".venv"
    venv_python = venv / "bin" / "python"
    # Compare environments, not binaries: the venv's python is a link to the system one.
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.stderr.write(
        "error: the Python dependencies are not installed for this interpreter\n"
        "hint: run 'bash scripts/setup.sh' (creates .venv), or 'pip install -e .'\n"
    )
    raise SystemExit(1)
