"""The Julia stand-in honours the driver's output contract (docs/output-contract.md)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from globtim_hpc.jobs.plan import JobPlan, build_plan
from tests.runenv_support import make_run_env

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "tests" / "stand_in" / "julia"
DRIVER = REPO / "julia" / "globtim_driver.jl"
SCHEMA = json.loads((REPO / "schemas" / "results.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@pytest.fixture(scope="module")
def run_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_run_env(tmp_path_factory.mktemp("deployment"))


@pytest.fixture(autouse=True)
def in_run_env(run_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every driver run here is a job of a deployment: JULIA_PROJECT is its run environment."""
    for key, value in run_env.items():
        monkeypatch.setenv(key, value)


def stage_run_folder(run_dir: Path, plan: JobPlan) -> list[Path]:
    """Lay out a run folder the way submission does: params/<task>.json and shipped files."""
    (run_dir / "params").mkdir(parents=True)
    for local, name in plan.extra_files:
        target = run_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(local).read_bytes())
    paths = []
    for task in plan.tasks:
        path = run_dir / "params" / f"{task.task_id}.json"
        path.write_text(json.dumps(task.params))
        paths.append(path)
    return paths


def run_driver(
    params: Path, outdir: Path, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STAND_IN), "--color=no", "--startup-file=no", str(DRIVER), str(params), str(outdir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )


def results(outdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((outdir / "results.json").read_text())
    errors = sorted(VALIDATOR.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return data


def heartbeats(stdout: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("HEARTBEAT ") :])
        for line in stdout.splitlines()
        if line.startswith("HEARTBEAT ")
    ]


def assert_no_temp_files(outdir: Path) -> None:
    leftovers = [p.name for p in outdir.iterdir() if p.name.startswith(".") or ".tmp" in p.name]
    assert leftovers == []


def custom_plan(tmp_path: Path, script_text: str, extra: str = "") -> JobPlan:
    script = tmp_path / "mine.jl"
    script.write_text(script_text)
    config = tmp_path / "job.yaml"
    config.write_text(f"parameters:\n  script: {script.name}\n{extra}")
    return build_plan("custom", config)


RUN_CUSTOM = 'function run_custom(params, outdir)\n    return Dict("ok" => true)\nend\n'


def run_custom_script(
    tmp_path: Path, script_text: str, **kwargs: Any
) -> tuple[subprocess.CompletedProcess[str], Path]:
    plan = custom_plan(tmp_path, script_text)
    run_dir = tmp_path / "run"
    (params,) = stage_run_folder(run_dir, plan)
    outdir = run_dir / "output" / "0000"
    return run_driver(params, outdir, **kwargs), outdir


# --- the executable itself -----------------------------------------------------------------------


def test_first_lines_say_it_is_a_stand_in() -> None:
    head = STAND_IN.read_text().splitlines()[:4]
    assert head[0] == "#!/usr/bin/env python3"
    assert "NOT JULIA" in head[1] and "stand-in" in head[1]
    assert os.access(STAND_IN, os.X_OK)


def test_it_uses_only_the_standard_library() -> None:
    helpers = {path.stem for path in STAND_IN.parent.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | helpers
    for path in [STAND_IN, *STAND_IN.parent.glob("*.py")]:
        imports = {
            line.split()[1].split(".")[0]
            for line in path.read_text().splitlines()
            if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
        }
        assert imports <= allowed, (path.name, imports - allowed)


def test_version() -> None:
    done = subprocess.run([str(STAND_IN), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == "julia version 1.12.1 (globtim-hpc stand-in, not Julia)"


def test_eval_is_refused_plainly() -> None:
    done = subprocess.run(
        [str(STAND_IN), "-e", "println(1)"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "stand-in" in done.stderr and "cannot evaluate" in done.stderr


def test_unknown_script_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "other.jl"
    script.write_text("println(1)\n")
    done = subprocess.run([str(STAND_IN), str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "globtim_driver.jl" in done.stderr


def test_bad_command_line_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(STAND_IN), str(DRIVER), "only-one"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "usage" in done.stderr


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# --- shipped problems ----------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["4d_benchmark", "deuflhard_2d", "lotka_volterra_4d"])
def test_shipped_problem_runs_to_completion(tmp_path: Path, problem: str) -> None:
    plan = build_plan(problem, None, {"parameters": {"degree_max": 8, "degree": 4}})
    run_dir = tmp_path / "run"
    (params,) = stage_run_folder(run_dir, plan)
    outdir = run_dir / "output" / plan.tasks[0].task_id
    done = run_driver(params, outdir, env={"JULIA_NUM_THREADS": "3"})
    assert done.returncode == 0, done.stderr
    data = results(outdir)
    assert data["status"] == "COMPLETED"
    assert data["problem"] == problem
    assert data["task_id"] == "0000"
    assert data["params"] == plan.tasks[0].params
    assert data["threads"] == 3 and data["env"]["JULIA_NUM_THREADS"] == "3"
    assert data["degrees_planned"] == [4, 6, 8]
    assert [d["degree"] for d in data["degrees"]] == [4, 6, 8]
    dim = plan.tasks[0].params["dim"]
    for entry in data["degrees"]:
        assert entry["status"] == "COMPLETED"
        assert entry["samples"] == (plan.tasks[0].params["samples_per_dim"] + 1) ** dim
        csv_path = outdir / entry["csv"]
        assert csv_path.name == f"critical_points_deg_{entry['degree']}.csv"
        with csv_path.open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows, "a plausible run finds critical points"
        assert {f"x{i + 1}" for i in range(dim)} | {"z"} <= set(rows[0])
        assert len(rows) == entry["n_critical_points"]
    assert data["best_value"] is not None and len(data["best_point"]) == dim
    assert_no_temp_files(outdir)
    beats = heartbeats(done.stdout)
    stages = [(b["stage"], b.get("degree")) for b in beats]
    assert stages[0] == ("start", None) and stages[-1] == ("done", None)
    for degree in (4, 6, 8):
        assert ("construct", degree) in stages and ("solve", degree) in stages


def test_same_params_give_same_numbers(tmp_path: Path) -> None:
    plan = build_plan("deuflhard_2d", None)
    (params,) = stage_run_folder(tmp_path / "run", plan)
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_driver(params, first).returncode == 0
    assert run_driver(params, second).returncode == 0
    keys = (
        "l2_error",
        "condition_number",
        "n_critical_points",
        "n_minima",
        "best_value",
        "best_point",
    )
    assert {k: results(first)[k] for k in keys} == {k: results(second)[k] for k in keys}
    name = "critical_points_deg_8.csv"
    assert (first / name).read_bytes() == (second / name).read_bytes()


def test_sweep_tasks_all_run(tmp_path: Path) -> None:
    plan = build_plan("4d_benchmark", REPO / "configs" / "4d_benchmark.yaml")
    run_dir = tmp_path / "run"
    for params in stage_run_folder(run_dir, plan)[::3]:
        outdir = run_dir / "output" / params.stem
        assert run_driver(params, outdir).returncode == 0
        data = results(outdir)
        assert data["degrees_planned"] == [data["params"]["degree"]]


# --- failures ------------------------------------------------------------------------------------


def test_bad_input_gives_failed(tmp_path: Path) -> None:
    plan = build_plan("deuflhard_2d", None)
    (params,) = stage_run_folder(tmp_path / "run", plan)
    bad = dict(plan.tasks[0].params, function="NoSuchFunction")
    params.write_text(json.dumps(bad))
    done = run_driver(params, tmp_path / "out")
    assert done.returncode == 1
    data = results(tmp_path / "out")
    assert data["status"] == "FAILED"
    assert "NoSuchFunction" in data["error"]["message"]
    assert data["finished_at"] is not None
    assert_no_temp_files(tmp_path / "out")


def test_unreadable_params_give_failed(tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text("{not json")
    done = run_driver(params, tmp_path / "out")
    assert done.returncode == 1
    data = results(tmp_path / "out")
    assert data["status"] == "FAILED" and data["error"]["stage"] == "read_params"


def test_missing_key_gives_failed(tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"problem": "4d_benchmark", "entry": "benchmark", "degree": 4}))
    done = run_driver(params, tmp_path / "out")
    assert done.returncode == 1
    assert results(tmp_path / "out")["status"] == "FAILED"


def test_a_later_degree_failing_keeps_the_finished_ones(tmp_path: Path) -> None:
    plan = build_plan("deuflhard_2d", None, {"parameters": {"degree": 4, "degree_max": 8}})
    (params,) = stage_run_folder(tmp_path / "run", plan)
    done = run_driver(params, tmp_path / "out", env={"GLOBTIM_STAND_IN_FAIL_DEGREE": "8"})
    assert done.returncode == 3
    data = results(tmp_path / "out")
    assert data["status"] == "PARTIAL"
    assert [d["status"] for d in data["degrees"]] == ["COMPLETED", "COMPLETED", "FAILED"]
    assert data["degrees"][2]["error"]["degree"] == 8
    assert sorted(p.name for p in (tmp_path / "out").glob("*.csv")) == [
        "critical_points_deg_4.csv",
        "critical_points_deg_6.csv",
    ]


def test_sigint_saves_finished_degrees(tmp_path: Path) -> None:
    plan = build_plan("deuflhard_2d", None, {"parameters": {"degree": 4, "degree_max": 10}})
    (params,) = stage_run_folder(tmp_path / "run", plan)
    outdir = tmp_path / "out"
    cmd = [str(STAND_IN), str(DRIVER), str(params), str(outdir)]
    env = {**os.environ, "GLOBTIM_STAND_IN_DEGREE_SLEEP_S": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            path = outdir / "results.json"
            if path.exists() and json.loads(path.read_text())["degrees"]:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    data = results(outdir)
    assert data["interrupted"] is True
    assert data["status"] == "PARTIAL"
    assert data["degrees"][0]["status"] == "COMPLETED"
    assert_no_temp_files(outdir)


# --- custom scripts and their directives ---------------------------------------------------------


def test_custom_script_completes(tmp_path: Path) -> None:
    done, outdir = run_custom_script(tmp_path, RUN_CUSTOM)
    assert done.returncode == 0, done.stderr
    data = results(outdir)
    assert data["status"] == "COMPLETED" and data["entry"] == "custom"
    assert data["params"]["script"] == "user/script.jl"


def test_custom_exit_directive_sets_the_exit_status(tmp_path: Path) -> None:
    done, outdir = run_custom_script(tmp_path, "# stand-in: exit 3\n" + RUN_CUSTOM)
    assert done.returncode == 3
    # Killed before the end: the last results.json still says RUNNING, and is still valid.
    assert results(outdir)["status"] == "RUNNING"


def test_custom_output_directives(tmp_path: Path) -> None:
    script = (
        "# stand-in: files 25\n# stand-in: big-file-mb 2\n# stand-in: stdout-mb 1\n"
        "# stand-in: allocate-mb 20\n" + RUN_CUSTOM
    )
    done, outdir = run_custom_script(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert len(list(outdir.glob("stand_in_file_*.txt"))) == 25
    assert (outdir / "big_file.bin").stat().st_size == 2 * 1024 * 1024
    assert len(done.stdout) >= 1024 * 1024
    data = results(outdir)
    assert data["custom"]["directives"] == [
        "files 25",
        "big-file-mb 2",
        "stdout-mb 1",
        "allocate-mb 20",
    ]


def test_custom_fail_directive_gives_failed(tmp_path: Path) -> None:
    done, outdir = run_custom_script(tmp_path, "# stand-in: fail solver diverged\n" + RUN_CUSTOM)
    assert done.returncode == 1
    data = results(outdir)
    assert data["status"] == "FAILED" and data["error"]["message"] == "solver diverged"


def test_custom_script_without_entry_function_fails(tmp_path: Path) -> None:
    done, outdir = run_custom_script(tmp_path, 'println("no entry point")\n')
    assert done.returncode == 1
    assert "run_custom" in results(outdir)["error"]["message"]


def test_unknown_directive_fails_loudly(tmp_path: Path) -> None:
    done, outdir = run_custom_script(tmp_path, "# stand-in: explode now\n" + RUN_CUSTOM)
    assert done.returncode == 1
    assert "unknown stand-in directive 'explode'" in results(outdir)["error"]["message"]
