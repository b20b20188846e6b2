"""Where the toolkit's own files live on this machine (repo data, user config, state)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def configs_dir() -> Path:
    return REPO_DIR / "configs"


def templates_dir() -> Path:
    return REPO_DIR / "templates"


def julia_dir() -> Path:
    return REPO_DIR / "julia"


def schemas_dir() -> Path:
    return REPO_DIR / "schemas"


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "globtim-hpc"


def state_dir() -> Path:
    """The local registry's folder: $GLOBTIM_HPC_STATE_DIR, else the XDG state folder."""
    explicit = os.environ.get("GLOBTIM_HPC_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "globtim-hpc"


def default_local_root() -> Path:
    """Where the embedded ``local`` profile keeps code, depot and runs."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "globtim-hpc" / "local"
