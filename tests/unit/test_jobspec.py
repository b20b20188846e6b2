"""Job config -> plan: validation messages, sweep order and ids, hashes, resources, pre-flight."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.errors import ConfigError, ExitCode
from globtim_hpc.jobs.plan import JobPlan, build_plan, check_plan
from globtim_hpc.jobs.problems import resource_presets


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(problem: str, path: Path | None, **overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        plan = build_plan(problem, path, overrides or None)
        check_plan(plan)
    assert err.value.exit_code == ExitCode.CONFIG
    assert int(err.value.exit_code) == 3
    return err.value


def assert_names(err: ConfigError, path: Path, key: str) -> None:
    text = str(err)
    assert str(path) in text, text
    assert f"key '{key}'" in text, text
    assert err.hint, "every configuration error says how to fix it"


# --- the eight kinds of bad config ---------------------------------------------------------------


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degre: 4\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.degre")
    assert err.line == 2
    assert err.hint is not None and "did you mean 'degree'" in err.hint


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "problem: 4d_benchmark\nresource:\n  mem_gb: 8\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "resource")
    assert err.hint is not None and "did you mean 'resources'" in err.hint


def test_unknown_resource_key(tmp_path: Path) -> None:
    path = write(tmp_path, "resources:\n  memory_gb: 8\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "resources.memory_gb")
    assert err.hint is not None and "mem_gb" in err.hint


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("parameters:\n  degree: true", "parameters.degree"),  # bool is not an int
        ("parameters:\n  degree: 4.5", "parameters.degree"),
        ("parameters:\n  degree: '6'", "parameters.degree"),
        ("parameters:\n  sample_range: yes", "parameters.sample_range"),
        ("parameters:\n  enable_hessian: 1", "parameters.enable_hessian"),
        ("parameters:\n  center: [0, 0, 0, x]", "parameters.center"),
        ("resources:\n  cpus: 2.5", "resources.cpus"),
        ("resources:\n  mem_gb: true", "resources.mem_gb"),
    ],
)
def test_wrong_type(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path, line + "\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, key)
    assert "expected" in err.message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("parameters:\n  degree: 99", "parameters.degree"),
        ("parameters:\n  degree: [4, 99]", "parameters.degree[1]"),
        ("parameters:\n  samples_per_dim: 1", "parameters.samples_per_dim"),
        ("parameters:\n  sample_range: -1", "parameters.sample_range"),
        ("resources:\n  time_min: 0", "resources.time_min"),
        ("resources:\n  mem_gb: 100000", "resources.mem_gb"),
    ],
)
def test_out_of_range(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path, line + "\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, key)
    assert "out of range" in err.message


def test_bad_choice_suggests_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  function: [Sphere, Rosenbrok]\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.function[1]")
    assert err.line == 2
    assert err.hint is not None and "did you mean 'Rosenbrock'" in err.hint


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: [4, 6\n  samples_per_dim: 12\n")
    err = config_error("4d_benchmark", path)
    assert str(path) in str(err)
    assert err.line is not None and err.line >= 2
    assert "YAML syntax error" in err.message


def test_unknown_problem_names_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, "problem: 4d_bench\nparameters:\n  degree: 4\n")
    err = config_error("4d_bench", path)
    assert_names(err, path, "problem")
    assert "unknown problem '4d_bench'" in err.message
    assert err.hint is not None and "4d_benchmark" in err.hint


def test_problem_in_config_must_match(tmp_path: Path) -> None:
    path = write(tmp_path, "problem: deuflhard_2d\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "problem")
    assert err.line == 1


def test_empty_sweep_list(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: []\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.degree")
    assert "empty sweep list" in err.message


def test_list_of_lists_is_not_a_sweep(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: [[4, 6], [8]]\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.degree[0]")
    assert "list of lists is not a sweep" in err.message


def test_repeated_sweep_value(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: [4, 6, 4]\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.degree[2]")


def test_absurd_grid_is_refused_with_the_numbers(tmp_path: Path) -> None:
    script = write(tmp_path, "run_custom(params, outdir) = nothing\n", "mine.jl")
    path = write(
        tmp_path,
        f"parameters:\n  script: {script.name}\n  dim: 4\n  degree: 8\n  samples_per_dim: 20736\n",
    )
    err = config_error("custom", path)
    assert_names(err, path, "parameters.samples_per_dim")
    assert "absurd grid size" in err.message
    assert "(20736+1)^4" in err.message
    assert "1.85e+17" in err.message


def test_memory_estimate_above_request_is_refused_with_the_numbers(tmp_path: Path) -> None:
    # GN=11 in 4-D is 12^4 = 20,736 samples; degree 30 has C(34, 4) = 46,376 basis functions.
    path = write(
        tmp_path,
        "parameters:\n  degree: 30\n  samples_per_dim: 11\nresources:\n  mem_gb: 8\n",
    )
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "resources.mem_gb")
    assert "20,736 samples" in err.message
    assert "46,376 basis functions" in err.message
    assert "8 GB is requested" in err.message
    assert err.hint is not None and "raise resources.mem_gb to at least" in err.hint


def test_missing_required_value(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  dim: 2\n")
    err = config_error("custom", path)
    assert_names(err, path, "parameters.script")
    assert "missing required value 'script'" in err.message


def test_custom_script_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  script: nowhere.jl\n")
    err = config_error("custom", path)
    assert_names(err, path, "parameters.script")
    assert "file not found" in err.message


def test_degree_max_below_degree(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: 8\n  degree_max: 6\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "parameters.degree_max")


def test_reserved_parameter_cannot_be_set(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  dim: 3\n")
    err = config_error("4d_benchmark", path)
    assert "parameters.dim" in str(err)


# --- sweeps --------------------------------------------------------------------------------------


def test_example_config_sweeps_to_eight_tasks_in_documented_order(repo: Path) -> None:
    plan = build_plan("4d_benchmark", repo / "configs" / "4d_benchmark.yaml")
    assert len(plan.tasks) == 8
    assert [t.index for t in plan.tasks] == list(range(8))
    assert [t.task_id for t in plan.tasks] == [f"{i:04d}" for i in range(8)]
    # Declaration order of the problem (function before degree); the last varies fastest.
    pairs = [(t.params["function"], t.params["degree"]) for t in plan.tasks]
    assert pairs == [(f, d) for f in ("Sphere", "Rosenbrock") for d in (4, 6, 8, 10)]
    for task in plan.tasks:
        assert task.params["task_id"] == task.task_id
        assert task.params["problem"] == "4d_benchmark"
        assert task.params["entry"] == "benchmark"
        assert task.params["dim"] == 4
        assert task.params["samples_per_dim"] == 12
        json.dumps(task.params, allow_nan=False)
    assert plan.resources.mem_gb == 8.0
    assert plan.resources.preset == "standard"
    assert check_plan(plan) == []


def test_same_input_gives_same_plan(repo: Path) -> None:
    config = repo / "configs" / "4d_benchmark.yaml"
    first, second = build_plan("4d_benchmark", config), build_plan("4d_benchmark", config)
    assert first == second
    assert first.to_dict() == second.to_dict()
    assert len(first.config_hash) == 64


def test_config_hash_ignores_yaml_layout_but_not_values(tmp_path: Path) -> None:
    a = write(tmp_path, "parameters:\n  degree: [4, 6]\n  function: Sphere\n", "a.yaml")
    b = write(tmp_path, "parameters: {function: Sphere, degree: [4, 6]}  # same\n", "b.yaml")
    c = write(
        tmp_path, "parameters: {function: Sphere, degree: [4, 6]}\nresources: {cpus: 2}\n", "c.yaml"
    )
    hash_a = build_plan("4d_benchmark", a).config_hash
    assert hash_a == build_plan("4d_benchmark", b).config_hash
    assert hash_a != build_plan("4d_benchmark", c).config_hash


def test_list_valued_parameter_sweeps_only_with_a_list_of_lists(tmp_path: Path) -> None:
    single = write(tmp_path, "parameters:\n  center: [0.1, 0.2, 0.3, 0.4]\n", "one.yaml")
    plan = build_plan("4d_benchmark", single)
    assert len(plan.tasks) == 1 and plan.tasks[0].params["center"] == [0.1, 0.2, 0.3, 0.4]
    swept = write(tmp_path, "parameters:\n  center: [[0, 0, 0, 0], [1, 1, 1, 1]]\n", "two.yaml")
    plan = build_plan("4d_benchmark", swept)
    assert [t.params["center"] for t in plan.tasks] == [[0.0] * 4, [1.0] * 4]


def test_many_task_ids_widen(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "parameters:\n  degree: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n"
        "  samples_per_dim: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n"
        "  sample_range: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n"
        "  tol_dist: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]\n",
    )
    plan = build_plan("4d_benchmark", path)
    assert len(plan.tasks) == 11_000
    assert plan.tasks[-1].task_id == "10999"
    assert plan.tasks[0].task_id == "00000"
    # What the cluster holds is checked at submission (workflows/limits.py); here a warning.
    assert any("very large sweep" in warning for warning in check_plan(plan))


def test_custom_free_form_parameters_sweep_after_declared_ones(tmp_path: Path) -> None:
    script = write(tmp_path, "function run_custom(params, outdir)\nend\n", "mine.jl")
    path = write(
        tmp_path,
        f"parameters:\n  zeta: [1, 2]\n  script: {script.name}\n"
        "  alpha: [a, b]\n  degree: [3, 4]\n",
    )
    plan = build_plan("custom", path)
    combos = [(t.params["degree"], t.params["alpha"], t.params["zeta"]) for t in plan.tasks]
    assert combos == [(d, a, z) for d in (3, 4) for a in ("a", "b") for z in (1, 2)]
    assert plan.extra_files == ((str(script.resolve()), "user/script.jl"),)
    for task in plan.tasks:
        assert task.params["script"] == "user/script.jl"
        assert len(task.params["input_sha256"]["script"]) == 64
    before = plan.config_hash
    script.write_text("function run_custom(params, outdir)\n    nothing\nend\n")
    assert build_plan("custom", path).config_hash != before


def test_plan_to_dict_is_json(repo: Path) -> None:
    plan = build_plan("4d_benchmark", repo / "configs" / "4d_benchmark.yaml")
    data = plan.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["driver"] == "globtim_driver.jl"
    assert data["tasks"][3]["params"]["degree"] == 10
    assert isinstance(plan, JobPlan)


def test_no_config_gives_the_defaults() -> None:
    plan = build_plan("deuflhard_2d", None)
    assert plan.config_path is None
    assert len(plan.tasks) == 1
    params = plan.tasks[0].params
    assert params["function"] == "Deuflhard" and params["dim"] == 2 and params["degree"] == 8
    assert plan.resources == resource_presets()["quick"]


# --- resources -----------------------------------------------------------------------------------


def test_resources_preset_then_explicit_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "resources:\n  preset: extended\n  time_min: 90\n  mem_gb: 16\n  cpus: 4\n"
        "  partition: x\n  account: y\n  max_parallel: 10\n",
    )
    res = build_plan("4d_benchmark", path).resources
    assert (res.time_min, res.mem_gb, res.cpus) == (90, 16.0, 4)
    assert (res.partition, res.account, res.max_parallel, res.preset) == ("x", "y", 10, "extended")


def test_problem_gives_the_default_preset() -> None:
    assert build_plan("lotka_volterra_4d", None).resources == resource_presets()["extended"]
    assert build_plan("4d_benchmark", None).resources == resource_presets()["standard"]


def test_unknown_preset_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "resources:\n  preset: standart\n")
    err = config_error("4d_benchmark", path)
    assert_names(err, path, "resources.preset")
    assert err.hint is not None and "did you mean 'standard'" in err.hint


def test_overrides_apply_last(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: [4, 6]\nresources:\n  mem_gb: 8\n")
    plan = build_plan(
        "4d_benchmark", path, {"parameters": {"degree": 10}, "resources": {"cpus": 2}}
    )
    assert [t.params["degree"] for t in plan.tasks] == [10]
    assert (plan.resources.mem_gb, plan.resources.cpus) == (8.0, 2)
    with pytest.raises(ConfigError) as err:
        build_plan("4d_benchmark", path, {"parameters": {"degre": 10}})
    assert "<command line>" in str(err.value)


# --- pre-flight warnings -------------------------------------------------------------------------


def test_preflight_warns_close_to_the_limit(tmp_path: Path) -> None:
    # 13^4 samples × C(18, 4) = 3060 basis functions is about 1.3 GB + 1.5 GB baseline.
    path = write(tmp_path, "parameters:\n  degree: 14\nresources:\n  mem_gb: 3\n")
    warnings = check_plan(build_plan("4d_benchmark", path))
    assert any("GB of the 3 GB requested" in w for w in warnings)


def test_preflight_warns_on_an_underdetermined_fit(tmp_path: Path) -> None:
    path = write(tmp_path, "parameters:\n  degree: 20\n  samples_per_dim: 4\n")
    warnings = check_plan(build_plan("4d_benchmark", path))
    assert any("underdetermined" in w for w in warnings)


@pytest.mark.parametrize(("key", "example"), [("account", "my_group"), ("partition", "batch")])
def test_a_bad_name_hint_shows_the_key_it_is_about(tmp_path: Path, key: str, example: str) -> None:
    path = write(tmp_path, f"resources:\n  {key}: 'two words'\n")
    err = config_error("4d_benchmark", path)
    assert err.key == f"resources.{key}" and err.hint == f"e.g. '{key}: {example}'"
