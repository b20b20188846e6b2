"""The views of a collected run (tasks.csv, plots, index.csv, comparison, learned sizing), from
a sweep the stand-in driver really ran, collected by the real workflow on this machine."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from globtim_hpc.api import compare_runs
from globtim_hpc.registry.store import Store
from globtim_hpc.results.index import INDEX_NAME, update_index
from globtim_hpc.results.tables import LEAD_COLUMNS, METRIC_COLUMNS
from tests.unit.views_support import REPO, collect, collect_folder, make_run, sweep_config

FUNCTIONS, DEGREES = ["Sphere", "Rosenbrock"], [4, 6, 8, 10, 12]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tasks_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPO / "schemas" / "tasks.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Store, Path, Path, Path]:
    store = Store.open()
    config = sweep_config(tmp_path / "sweep.yaml", FUNCTIONS, DEGREES)
    return store, tmp_path / "remote", tmp_path / "results", config


def test_a_2x5_sweep_gives_a_tidy_table_and_plots_that_match_it(sweep: Any) -> None:
    store, remote, results, config = sweep
    run_id = make_run(remote, store, config)
    folder = collect_folder(store, remote, results, run_id)

    frame = pd.read_csv(folder / "tasks.csv")
    assert len(frame) == 10
    params = [c for c in frame.columns if c.startswith("param_")]
    assert list(frame.columns) == [*LEAD_COLUMNS, *params, *METRIC_COLUMNS]
    assert {"param_function", "param_samples_per_dim", "param_dim"} <= set(params)
    assert sorted(zip(frame.param_function, frame.degree, strict=True)) == sorted(
        (f, d) for f in FUNCTIONS for d in DEGREES
    )
    assert frame.l2_error.notna().all() and (frame.state == "COMPLETED").all()
    assert frame.requested_mem_gb.eq(8).all() and frame.max_rss_gb.isna().all()  # no sacct here
    validator = tasks_validator()
    for row in json.loads(frame.to_json(orient="records")):
        validator.validate(row)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**json.loads(frame.to_json(orient="records"))[0], "surprise": 1})

    summary = (folder / "summary.md").read_text()
    sidecar = json.loads((folder / "plots" / "plots.json").read_text())
    assert set(sidecar["figures"]) == {"l2_error", "critical_points", "best_value", "resources"}
    for figure in sidecar["figures"].values():
        assert f"]({figure['png']})" in summary
        assert (folder / figure["png"]).read_bytes().startswith(PNG_SIGNATURE)
        assert (folder / figure["svg"]).read_text().lstrip().startswith("<?xml")
    l2 = sidecar["figures"]["l2_error"]["metrics"]["l2_error"]
    assert l2["log"] is True and len(l2["series"]) == 2
    for line in l2["series"]:
        rows = frame[frame.param_function == line["group"]["function"]].sort_values("degree")
        assert line["x"] == rows.degree.astype(float).tolist()
        assert line["y"] == pytest.approx(rows.l2_error.tolist(), rel=1e-12)
    minima = sidecar["figures"]["critical_points"]["metrics"]["n_minima"]["series"]
    assert sum(len(s["y"]) for s in minima) == 10
    limits = sidecar["figures"]["resources"]["metrics"]
    assert limits["elapsed_min"]["limit"] == 30 and limits["max_rss_gb"]["limit"] == 8
    elapsed = {(s["group"]["function"], x): y for s in limits["elapsed_min"]["series"]
               for x, y in zip(s["x"], s["y"], strict=True)}  # fmt: skip
    for _, row in frame.iterrows():
        assert elapsed[(row.param_function, float(row.degree))] == pytest.approx(row.elapsed_s / 60)


def test_no_plots_and_a_single_task_say_why(sweep: Any, tmp_path: Path) -> None:
    store, remote, results, config = sweep
    off = make_run(remote, store, config)
    folder = collect_folder(store, remote, results, off, plots=False)
    assert not (folder / "plots").exists() and "plots are off" in (folder / "summary.md").read_text()
    single = make_run(remote, store, sweep_config(tmp_path / "one.yaml", ["Sphere"], [4]))
    folder = collect_folder(store, remote, results, single)
    assert not (folder / "plots").exists()
    assert "a single task of a single degree" in (folder / "summary.md").read_text()
    assert len(pd.read_csv(folder / "tasks.csv")) == 1


def test_index_has_a_row_per_run_and_is_rebuilt_when_deleted(sweep: Any, tmp_path: Path) -> None:
    store, remote, results, _ = sweep
    config = sweep_config(tmp_path / "small.yaml", ["Sphere"], [4, 6])
    runs = [make_run(remote, store, config) for _ in range(3)]
    for run_id in runs:
        collect(store, remote, results, run_id, plots=False)
    index = pd.read_csv(results / INDEX_NAME)
    assert sorted(index.run_id) == sorted(runs) and (index.n_completed == 2).all()
    assert all((results / folder / "metadata.json").is_file() for folder in index.folder)
    (results / INDEX_NAME).unlink()
    collect(store, remote, results, runs[0], plots=False)
    assert sorted(pd.read_csv(results / INDEX_NAME).run_id) == sorted(runs)


def _index_many(root: str, folders: list[str]) -> None:
    for folder in folders:
        update_index(Path(root), Path(folder))


def test_two_collections_at_once_leave_the_index_consistent(sweep: Any, tmp_path: Path) -> None:
    store, remote, results, _ = sweep
    config = sweep_config(tmp_path / "small.yaml", ["Sphere"], [4, 6])
    folders = [collect_folder(store, remote, results, make_run(remote, store, config),
                              plots=False) for _ in range(6)]  # fmt: skip
    (results / INDEX_NAME).unlink()
    update_index(results, folders[0])  # a fresh index from the folders: all six
    (results / INDEX_NAME).write_text((results / INDEX_NAME).read_text().splitlines()[0] + "\n")
    context = multiprocessing.get_context("spawn")
    halves = [[str(f) for f in folders[0::2]] * 5, [str(f) for f in folders[1::2]] * 5]
    workers = [context.Process(target=_index_many, args=(str(results), h)) for h in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    index = pd.read_csv(results / INDEX_NAME)
    assert len(index) == 6 and index.run_id.is_unique
    assert not [p for p in results.iterdir() if p.name.startswith(".index.csv.tmp")]


def test_compare_shows_exactly_the_changed_parameter_and_code(sweep: Any, tmp_path: Path) -> None:
    store, remote, results, config = sweep
    a = make_run(remote, store, config, git_sha="a" * 40, deploy_id="deploy-a")
    b = make_run(remote, store, sweep_config(tmp_path / "b.yaml", FUNCTIONS, DEGREES, gn=8),
                 git_sha="b" * 40, deploy_id="deploy-b")  # fmt: skip
    for run_id in (a, b):
        collect(store, remote, results, run_id, plots=False)
    result = compare_runs(a, b, results)
    assert result["parameters"] == {"samples_per_dim": {"a": 6, "b": 8}}
    assert set(result["code"]) == {"git_sha", "deploy_id"}
    assert result["resources"] == {} and result["problem"] == {}
    assert len(result["tasks"]) == 10
    assert all(t["task_a"] is not None and t["task_b"] is not None for t in result["tasks"])
    assert Path(result["written"]).is_file()
    same = compare_runs(a, a, results, write=False)
    assert same["parameters"] == same["code"] == {}


def test_collect_help_imports_no_plotting_library() -> None:
    for script in ("collect_results.py", "submit_julia_job.py", "monitor_jobs.py", "deploy_julia.py"):
        done = subprocess.run([sys.executable, "-X", "importtime", str(REPO / script), "--help"],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
        imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                    if line.startswith("import time:")}  # fmt: skip
        assert "rich" in imported or "argparse" in imported  # the check does see imports
        assert not imported & {"matplotlib", "pandas", "numpy", "PIL"}, script
