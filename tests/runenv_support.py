"""A deployed Globtim tree with its run environment, made locally for stand-in tests.

Lays out ``<root>/code`` as a deployment (a copy of the fixture shaped like Globtim 1.2.1,
with ``.globtim-hpc/runenv/Project.toml`` as deploying writes it) and runs the stand-in's
``deploy_env.jl`` on it, which writes the Manifest and fills ``<root>/depot``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from globtim_hpc.julia import runenv
from globtim_hpc.julia.compat import read_project

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "globtim_project"
STAND_IN = REPO / "tests" / "stand_in" / "julia"
DEPLOY_ENV = REPO / "julia" / "deploy_env.jl"


def make_run_env(root: Path, *, fixture: Path = FIXTURE) -> dict[str, str]:
    """Build it; return the environment variables a job of that deployment runs with."""
    code = root / "code"
    shutil.copytree(fixture, code)
    env_dir = code / ".globtim-hpc" / runenv.RUNENV_DIR
    env_dir.mkdir(parents=True)
    (env_dir / "Project.toml").write_text(runenv.project_toml(read_project(code)))
    variables = {"JULIA_PROJECT": str(env_dir), "JULIA_DEPOT_PATH": str(root / "depot")}
    done = subprocess.run(
        [str(STAND_IN), str(DEPLOY_ENV), str(root / "env_result.json")],
        env={**os.environ, **variables}, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    return variables


def make_default_env(depot: Path, julia_minor: str = "1.12") -> Path:
    """The depot's default environment (environments/v1.12) with what the driver loads.

    A run without a deployment has no JULIA_PROJECT, so Julia loads packages from here: the
    environment of a user who ran ``Pkg.add`` and ``Pkg.develop(path=...)`` by hand. Globtim
    is developed from a copy of the fixture in <depot>/dev/Globtim.
    """
    env_dir = depot / "environments" / f"v{julia_minor}"
    if (env_dir / "Manifest.toml").is_file():
        return env_dir
    dev = depot / "dev" / "Globtim"
    shutil.rmtree(dev, ignore_errors=True)
    shutil.copytree(FIXTURE, dev)
    env_dir.mkdir(parents=True, exist_ok=True)
    text = runenv.project_toml(read_project(FIXTURE))
    (env_dir / "Project.toml").write_text(
        text.replace('{path = "../.."}', '{path = "../../dev/Globtim"}')
    )
    variables = {"JULIA_PROJECT": str(env_dir), "JULIA_DEPOT_PATH": str(depot)}
    done = subprocess.run(
        [str(STAND_IN), str(DEPLOY_ENV), str(depot / ".default_env_result.json")],
        env={**os.environ, **variables}, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    return env_dir
