"""Where the toolkit's own files live on this machine (shipped data, user config, state).

The shipped folders (problems, templates, julia, schemas, configs) have one copy, at the top of
the checkout where the README shows them. A wheel carries them inside the package as
``globtim_hpc/_shipped/<folder>`` (pyproject.toml, force-include); ``shipped`` finds whichever
is there, so a checkout, an editable install and a wheel install read the same files.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SHIPPED_FOLDERS = ("problems", "templates", "julia", "schemas", "configs")


def shipped(folder: str) -> Path:
    """A shipped data folder: inside an installed wheel, else the checkout's own."""
    if folder not in SHIPPED_FOLDERS:
        raise ValueError(f"{folder!r} is not a shipped folder")
    inside = resources.files("globtim_hpc") / "_shipped" / folder
    # A wheel is always unpacked on disk, so the resource is a real folder.
    if isinstance(inside, Path) and inside.is_dir():
        return inside
    return REPO_DIR / folder


def configs_dir() -> Path:
    return shipped("configs")


def templates_dir() -> Path:
    return shipped("templates")


def julia_dir() -> Path:
    return shipped("julia")


def schemas_dir() -> Path:
    return shipped("schemas")


def problems_dir() -> Path:
    """The problem library; ``$GLOBTIM_HPC_PROBLEMS_DIR`` replaces it (a user's own problems)."""
    override = os.environ.get("GLOBTIM_HPC_PROBLEMS_DIR")
    if override:
        return Path(override).expanduser()
    return shipped("problems")


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
