"""The stand-in fails where Julia and Globtim 1.2.1 would: at load_packages, in Pkg's resolve,
and in the verification job, with Julia's own words."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.jobs.plan import build_plan
from tests.runenv_support import FIXTURE, STAND_IN, make_run_env

sys.path.insert(0, str(STAND_IN.parent))

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "julia" / "globtim_driver.jl"
VERIFY = REPO / "julia" / "verify_env.jl"
DEPLOY = REPO / "julia" / "deploy_env.jl"


def julia(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JULIA_", "GLOBTIM_STAND_IN"))}
    return subprocess.run(
        [str(STAND_IN), "--color=no", "--startup-file=no", *argv],
        env={**base, **env}, capture_output=True, text=True, timeout=60, check=False,
    )


def run_benchmark(tmp_path: Path, env: dict[str, str], **params: Any) -> tuple[int, dict[str, Any]]:
    plan = build_plan("4d_benchmark", None)
    task = {**plan.tasks[0].params, **params}
    path = tmp_path / "params.json"
    path.write_text(json.dumps(task))
    done = julia(str(DRIVER), str(path), str(tmp_path / "out"), env=env)
    return done.returncode, json.loads((tmp_path / "out" / "results.json").read_text())


def test_old_setup_fails_at_load_packages_like_julia(tmp_path: Path) -> None:
    """JULIA_PROJECT = the Globtim checkout itself: HomotopyContinuation is only a weak dependency."""
    code = tmp_path / "code"
    shutil.copytree(FIXTURE, code)
    env = {"JULIA_PROJECT": str(code), "JULIA_DEPOT_PATH": str(tmp_path / "depot")}
    assert julia(str(DEPLOY), str(tmp_path / "env.json"), env=env).returncode == 0
    status, data = run_benchmark(tmp_path, env)
    assert status == 1 and data["status"] == "FAILED"
    error = data["error"]
    assert error["stage"] == "load_packages" and error["type"] == "ArgumentError"
    assert error["message"] == (
        "ArgumentError: Package HomotopyContinuation not found in current path.\n"
        '- Run `import Pkg; Pkg.add("HomotopyContinuation")` to install the HomotopyContinuation package.'
    )
    assert data["degrees"] == []


def test_the_run_environment_loads_everything_and_names_globtims_version(tmp_path: Path) -> None:
    env = make_run_env(tmp_path / "dep")
    status, data = run_benchmark(tmp_path, env)
    assert status == 0 and data["status"] == "COMPLETED"
    assert data["globtim_version"] == "1.2.1" and data["julia_version"] == "1.12.1"


@pytest.mark.parametrize("missing", ["DataFrames", "CSV", "DynamicPolynomials", "HomotopyContinuation", "Globtim"])
def test_a_run_environment_without_a_driver_package_fails_naming_it(tmp_path: Path, missing: str) -> None:
    env = make_run_env(tmp_path / "dep")
    project = Path(env["JULIA_PROJECT"]) / "Project.toml"
    project.write_text("\n".join(
        line for line in project.read_text().splitlines() if not line.startswith(f"{missing} = ")
    ) + "\n")
    status, data = run_benchmark(tmp_path, env)
    assert status == 1 and data["error"]["stage"] == "load_packages"
    assert f"Package {missing} not found in current path" in data["error"]["message"]


def test_a_package_not_instantiated_is_reported_as_julia_does(tmp_path: Path) -> None:
    env = make_run_env(tmp_path / "dep")
    (Path(env["JULIA_PROJECT"]) / "Manifest.toml").unlink()
    status, data = run_benchmark(tmp_path, env)
    assert status == 1
    assert re.search(r"Package \w+ \[[0-9a-f-]{36}\] is required but does not seem to be installed",
                     data["error"]["message"])


def test_without_the_solver_extension_the_driver_fails_at_load(tmp_path: Path) -> None:
    fixture = tmp_path / "noext"
    shutil.copytree(FIXTURE, fixture)
    shutil.rmtree(fixture / "ext")
    env = make_run_env(tmp_path / "dep", fixture=fixture)
    status, data = run_benchmark(tmp_path, env)
    assert status == 1 and data["error"]["stage"] == "load_packages"
    assert "GlobtimHomotopyContinuationExt" in data["error"]["message"]


def test_verification_names_the_solver_extension_when_it_would_not_load(tmp_path: Path) -> None:
    fixture = tmp_path / "noext"
    shutil.copytree(FIXTURE, fixture)
    project = fixture / "Project.toml"
    project.write_text(project.read_text().replace(
        '[extensions]\nGlobtimHomotopyContinuationExt = "HomotopyContinuation"\n', ""))
    env = make_run_env(tmp_path / "dep", fixture=fixture)
    result = tmp_path / "verify.json"
    done = julia(str(VERIFY), str(result), "Globtim", "HomotopyContinuation",
                 "--extension", "Globtim:GlobtimHomotopyContinuationExt", env=env)
    assert done.returncode == 1
    report = json.loads(result.read_text())
    assert report["ok"] is False and report["packages"]["Globtim"]["loaded"] is True
    assert report["extensions"]["GlobtimHomotopyContinuationExt"]["loaded"] is False
    assert "GlobtimHomotopyContinuationExt" in done.stderr


def test_a_julia_below_globtims_compat_fails_to_resolve(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="Unsatisfiable requirements detected for package Globtim"):
        os.environ["GLOBTIM_STAND_IN_JULIA_VERSION"] = "1.10.4"
        try:
            make_run_env(tmp_path / "dep")
        finally:
            del os.environ["GLOBTIM_STAND_IN_JULIA_VERSION"]
    shown = julia("--version", env={"GLOBTIM_STAND_IN_JULIA_VERSION": "1.10.4"})
    assert shown.stdout.startswith("julia version 1.10.4 ")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_enable_hessian_and_tol_dist_are_honoured(tmp_path: Path) -> None:
    env = make_run_env(tmp_path / "dep")
    for name in "abc":
        (tmp_path / name).mkdir()
    _, with_h = run_benchmark(tmp_path / "a", env, function="shubert_4d", degree=8, degree_max=8)
    run_benchmark(tmp_path / "b", env, function="shubert_4d", degree=8, degree_max=8, enable_hessian=False)
    rows_h = _csv(tmp_path / "a" / "out" / "critical_points_deg_8.csv")
    rows_n = _csv(tmp_path / "b" / "out" / "critical_points_deg_8.csv")
    assert "critical_point_type" in rows_h[0] and "critical_point_type" not in rows_n[0]
    assert {r["critical_point_type"] for r in rows_h} <= {"minimum", "maximum", "saddle", "degenerate", "error"}
    assert list(rows_h[0])[:5] == ["x1", "x2", "x3", "x4", "z"]
    _, merged = run_benchmark(tmp_path / "c", env, function="shubert_4d", degree=8, degree_max=8, tol_dist=100.0)
    assert with_h["degrees"][0]["n_minima"] > 1 and merged["degrees"][0]["n_minima"] == 1


def test_columns_are_in_dimension_order_from_ten_dimensions(tmp_path: Path) -> None:
    """x1, x2, ..., x10, never the x1, x10, x2 that a Dict-built DataFrame sorts to."""
    import standin_degree  # type: ignore[import-not-found]

    header = standin_degree.csv_header(10, True)
    assert header[:11] == [f"x{i}" for i in range(1, 11)] + ["z"]


def test_the_contract_names_every_per_degree_field_and_csv_column(tmp_path: Path) -> None:
    """docs/output-contract.md, the schema and what the stand-in writes agree."""
    import standin_degree

    doc = (REPO / "docs" / "output-contract.md").read_text()
    schema = json.loads((REPO / "schemas" / "results.schema.json").read_text())
    degree_keys = set(schema["$defs"]["degree"]["properties"])
    for key in degree_keys:
        assert f"`{key}`" in doc, key
    for column in standin_degree.csv_header(2, True)[5:]:
        assert f"`{column}`" in doc, column
    env = make_run_env(tmp_path / "dep")
    _, data = run_benchmark(tmp_path, env)
    assert set(data["degrees"][0]) == degree_keys
