"""The package installs: a wheel in a fresh virtual environment, used from another folder.

Everything the commands read (problems, templates, the Julia driver, schemas, example configs)
must come from inside the installed package, never from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 600):
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout; returns its bin folder."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(REPO)],
        cwd=work,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("globtim_hpc-*.whl")
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    assert made.returncode == 0, made.stderr
    pip = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=work)
    assert pip.returncode == 0, pip.stderr
    return venv / "bin"


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["GLOBTIM_HPC_STATE_DIR"] = str(tmp / "state")
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    env.pop("GLOBTIM_HPC_CLUSTER", None)
    return env


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    probe = _run(
        [str(installed / "python"), "-c", "import globtim_hpc.paths as p; print(p.shipped('problems'))"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert probe.returncode == 0, probe.stderr
    shipped = Path(probe.stdout.strip())
    assert shipped.is_dir() and not shipped.is_relative_to(REPO), shipped


def test_list_problems_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    proc = _run(
        [str(installed / "globtim-submit"), "--list-problems", "--json"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    names = {problem["name"] for problem in json.loads(proc.stdout)["problems"]}
    assert {"4d_benchmark", "deuflhard_2d", "lotka_volterra_4d", "custom"} <= names


def test_dry_run_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text((REPO / "configs" / "4d_benchmark.yaml").read_text())
    for name in ("globtim-submit", "globtim-monitor", "globtim-collect", "globtim-deploy"):
        helped = _run([str(installed / name), "--help"], cwd=tmp_path, env=_clean_env(tmp_path))
        assert helped.returncode == 0 and "--cluster" in helped.stdout, (name, helped.stderr)
    proc = _run(
        [str(installed / "globtim-submit"), "--problem", "4d_benchmark", "--config", str(config),
         "--dry-run", "--json"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["dry_run"] is True and result["plan"]["tasks"]
    assert any(item["path"].endswith("globtim_driver.jl") for item in result["upload_plan"])
