"""The problem library: shipped definitions load; broken ones are reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError, ExitCode
from globtim_hpc.jobs.problems import (
    ENTRIES,
    list_problems,
    load_problem,
    problems_dir,
    resource_presets,
)

SHIPPED = ("4d_benchmark", "custom", "deuflhard_2d", "lotka_volterra_4d")


def test_problems_dir_is_the_repository_folder(repo: Path) -> None:
    assert problems_dir() == repo / "problems"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_problem_loads_with_described_parameters(name: str) -> None:
    problem = load_problem(name)
    assert problem.name == name
    assert problem.driver == "globtim_driver.jl"
    assert problem.entry in ENTRIES
    assert problem.description
    assert problem.parameters
    for spec in problem.parameters:
        assert spec.description, spec.name
    assert problem.default_resources.preset in resource_presets()


def test_list_problems_has_the_shipped_ones() -> None:
    assert set(SHIPPED) <= set(list_problems())


def test_4d_benchmark_offers_the_globtim_functions() -> None:
    spec = load_problem("4d_benchmark").param("function")
    assert spec is not None and spec.choices is not None
    assert {"Sphere", "Rosenbrock", "shubert_4d", "camel_4d", "Deuflhard_4d"} <= set(spec.choices)
    assert load_problem("4d_benchmark").fixed["dim"] == 4


def test_custom_script_is_required_and_not_sweepable() -> None:
    problem = load_problem("custom")
    spec = problem.param("script")
    assert spec is not None and spec.required and spec.type == "path" and not spec.sweepable
    assert problem.free_form


def test_unknown_problem_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_problem("4d_benchmrk")
    assert err.value.exit_code == ExitCode.CONFIG
    assert "unknown problem '4d_benchmrk'" in str(err.value)
    assert err.value.hint is not None
    assert "did you mean '4d_benchmark'" in err.value.hint
    for name in SHIPPED:
        assert name in err.value.hint


def test_problem_name_cannot_escape_the_folder() -> None:
    with pytest.raises(ConfigError):
        load_problem("../configs/4d_benchmark")


def test_problems_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny.yaml").write_text(
        "description: tiny\nentry: benchmark\nfixed: {dim: 2, function: Sphere}\n"
        "parameters:\n  degree: {type: int, default: 4, min: 2, max: 8, description: degree}\n"
    )
    monkeypatch.setenv("GLOBTIM_HPC_PROBLEMS_DIR", str(tmp_path))
    assert list_problems() == ["tiny"]
    problem = load_problem("tiny")
    assert problem.param_names == ("degree",)
    assert problem.default_resources == resource_presets()["standard"]


def test_broken_problem_file_names_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "description: bad\nentry: benchmark\nparameters:\n"
        "  degree:\n    type: int\n    defualt: 4\n    description: degree\n"
    )
    monkeypatch.setenv("GLOBTIM_HPC_PROBLEMS_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_problem("bad")
    assert err.value.path == str(tmp_path / "bad.yaml")
    assert err.value.line == 6
    assert err.value.key == "parameters.degree.defualt"
    assert err.value.hint is not None and "did you mean 'default'" in err.value.hint


def test_problem_default_outside_its_range_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.yaml").write_text(
        "description: bad\nentry: benchmark\nparameters:\n"
        "  degree: {type: int, default: 40, max: 30, description: degree}\n"
    )
    monkeypatch.setenv("GLOBTIM_HPC_PROBLEMS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="out of range"):
        load_problem("bad")


def test_presets_are_the_documented_four() -> None:
    presets = resource_presets()
    assert list(presets) == ["quick", "standard", "extended", "bigmem"]
    for name, res in presets.items():
        assert res.preset == name
        assert res.time_min > 0 and res.mem_gb > 0 and res.cpus > 0
    assert presets["quick"].time_min < presets["standard"].time_min < presets["extended"].time_min
    assert presets["bigmem"].mem_gb > presets["extended"].mem_gb
