"""Sizing that learns: the registry's learned_sizing table and what a plan makes of it."""

from __future__ import annotations

import math
from pathlib import Path

from globtim_hpc.jobs.advice import apply_sizing
from globtim_hpc.jobs.plan import build_plan, check_plan
from globtim_hpc.jobs.sizing import task_size
from globtim_hpc.registry import sizing as learned
from globtim_hpc.registry.store import Store


def _config(tmp_path: Path, degrees: str, mem: str) -> Path:
    path = tmp_path / f"c{degrees.replace(', ', '_')}{mem}.yaml"
    path.write_text(f"parameters:\n  degree: [{degrees}]\n  samples_per_dim: 6\n"
                    f"resources:\n  mem_gb: {mem}\n  time_min: 10\n")
    return path


def _item(degree: int, rss_gb: float, elapsed_s: float = 60.0) -> dict[str, object]:
    return {"task_id": f"{degree:04d}", "state": "COMPLETED", "dim": 4, "samples_per_dim": 6,
            "degree": degree, "estimated_mem_gb": task_size(4, 6, degree).mem_gb,
            "max_rss_gb": rss_gb, "requested_mem_gb": 4.0, "elapsed_s": elapsed_s,
            "requested_time_min": 10.0}


def test_the_table_is_made_once_and_a_recollection_replaces_its_rows(tmp_path: Path) -> None:
    with Store.open() as store:
        path = store.path
        version = store.schema_version()
    run = "4d_benchmark_20261201-100000_0123abcd"
    learned.record(path, "c", "4d_benchmark", run, [_item(4, 0.5), _item(6, 3.0)])
    learned.record(path, "c", "4d_benchmark", run, [_item(6, 3.3)])
    found = learned.observations(path, "c", "4d_benchmark")
    assert [(o.degree, o.max_rss_gb) for o in found] == [(6, 3.3)]
    assert learned.observations(path, "other", "4d_benchmark") == []
    with Store.open() as store:  # the registry's own schema is untouched
        assert store.schema_version() == version


def test_a_plan_warns_from_what_was_used_and_auto_requests_it(tmp_path: Path) -> None:
    with Store.open() as store:
        path = store.path
    learned.record(path, "c", "4d_benchmark", "4d_benchmark_20261201-100000_0123abcd",
                   [_item(4, 0.4), _item(6, 3.1 * task_size(4, 6, 6).mem_gb, elapsed_s=590)])
    seen = learned.observations(path, "c", "4d_benchmark")

    fixed = apply_sizing(build_plan("4d_benchmark", _config(tmp_path, "6, 8", "4")), seen)
    assert fixed.resources.mem_gb == 4
    (note, slow) = fixed.sizing_notes
    assert note.startswith("degree 6 used 3.1x the estimate last time")
    assert "raise resources.mem_gb" in note and "mem_gb: auto" in note
    assert "took 9.8 min last time" in slow

    auto = apply_sizing(build_plan("4d_benchmark", _config(tmp_path, "6, 8", "auto")), seen)
    want = math.ceil(task_size(4, 6, 8).mem_gb * 3.1 * 1.25)
    assert auto.resources.mem_gb == want and auto.resources.mem_auto
    assert auto.sizing_notes[0].endswith(f"requesting {want:g} GB")
    assert check_plan(auto) is not None  # the request covers the estimate: no refusal
    assert auto.config_hash != fixed.config_hash


def test_auto_without_history_is_the_estimate_with_headroom(tmp_path: Path) -> None:
    plan = build_plan("4d_benchmark", _config(tmp_path, "6", "auto"))
    assert plan.resources.mem_gb == math.ceil(task_size(4, 6, 6).mem_gb * 1.25)
    assert "no earlier run" in plan.sizing_notes[0]
    below = [learned.Observation("r", "0000", "COMPLETED", 4, 6, 6, 1.5, 0.1, 4.0, 1.0, 10.0, "t")]
    assert apply_sizing(plan, below).resources.mem_gb == plan.resources.mem_gb  # never lower


def test_the_run_environment_hash_is_read_where_the_run_records_it() -> None:
    from globtim_hpc.results.taskdata import run_env_hash

    assert run_env_hash({"run_env_manifest_sha256": "ab" * 32}) == "ab" * 32
    assert run_env_hash({"submission": {"run_env_manifest_sha256": "cd"}}) == "cd"
    assert run_env_hash({"submission": None}) is None
