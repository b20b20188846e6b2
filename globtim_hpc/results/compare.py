"""What differs between two collected runs: parameters, resources, code, and each task's
metrics side by side. Works on the folders alone (metadata.json, tasks.csv): no connection.

Tasks are matched by their parameters (what the task computed, not its index), and then by
degree, so two sweeps of different shapes still line up where they overlap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from globtim_hpc.errors import UsageError
from globtim_hpc.results import taskdata as td
from globtim_hpc.results.index import run_folders
from globtim_hpc.results.tables import PARAM_PREFIX, read_tasks_csv

METRICS = ("l2_error", "condition_number", "n_critical_points", "n_minima", "best_value",
           "elapsed_s", "max_rss_gb", "state")  # fmt: skip
CODE_KEYS = ("git_sha", "git_dirty", "dirty_patch", "deploy_id", "run_env_hash", "tool_version")
RESOURCE_KEYS = ("mem_gb", "time_min", "cpus", "partition", "account", "max_parallel")


def find_run_folder(ref: str, results_root: Path) -> Path:
    """A run folder from a path, or a run id (or its unique prefix) under ``results_root``."""
    path = Path(ref)
    if (path / "metadata.json").is_file():
        return path
    found = [f for f in run_folders(results_root) if f.name.split("_", 1)[-1].startswith(ref)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(
            f"no collected run '{ref}' under {results_root}",
            "give a run folder or a run id that collect_results.py collected (see "
            f"{results_root / 'index.csv'}), or --local-dir where they are",
        )
    raise UsageError(
        f"'{ref}' matches {len(found)} runs under {results_root}",
        "give more of the run id: " + ", ".join(f.name for f in found[:5]),
    )


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], keys: Any = None) -> dict[str, dict[str, Any]]:
    names = list(keys) if keys is not None else list(dict.fromkeys([*a, *b]))
    out = {}
    for key in names:
        left, right = a.get(key), b.get(key)
        if json.dumps(left, sort_keys=True) != json.dumps(right, sort_keys=True):
            out[key] = {"a": left, "b": right}
    return out


def _param_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Each parameter: its one value, or the sorted list of its values when swept."""
    tasks = list(metadata.get("tasks") or [])
    out: dict[str, Any] = {}
    for name in td.param_names(tasks):
        values = {json.dumps(td.mapping(t.get("params")).get(name), sort_keys=True) for t in tasks}
        parsed = [json.loads(v) for v in sorted(values)]
        out[name] = parsed[0] if len(parsed) == 1 else parsed
    return out


def _code(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "git_sha": metadata.get("git_sha"),
        "git_dirty": metadata.get("git_dirty"),
        "dirty_patch": td.dirty_patch(metadata),
        "deploy_id": metadata.get("deploy_id"),
        "run_env_hash": td.run_env_hash(metadata),
        "tool_version": metadata.get("tool_version"),
    }


def _task_key(row: Mapping[str, str], params: list[str]) -> str:
    # The degree column is the row's own degree; the swept ``degree`` parameter says the same.
    key = {p: row.get(PARAM_PREFIX + p, "") for p in params if p not in ("degree",)}
    key["degree"] = row.get("degree", "")
    return json.dumps(key, sort_keys=True)


def _cell(value: str | None) -> Any:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def compare_folders(folder_a: Path, folder_b: Path) -> dict[str, Any]:
    meta_a, meta_b = td.read_metadata(folder_a), td.read_metadata(folder_b)
    for folder, meta in ((folder_a, meta_a), (folder_b, meta_b)):
        if meta is None:
            raise UsageError(f"{folder} has no readable metadata.json", "give a collected run folder")
    assert meta_a is not None and meta_b is not None
    params_a, params_b = _param_values(meta_a), _param_values(meta_b)
    res_a = td.mapping(td.mapping(meta_a.get("submission")).get("resources"))
    res_b = td.mapping(td.mapping(meta_b.get("submission")).get("resources"))
    shared_params = [p for p in params_a if p in params_b]
    rows_a, rows_b = read_tasks_csv(folder_a), read_tasks_csv(folder_b)
    # Match on the parameters that are the same in both runs, so a changed value does not
    # stop the tasks from lining up.
    match_on = [p for p in shared_params if p not in _diff(params_a, params_b)]
    by_a = {_task_key(r, match_on): r for r in rows_a}
    by_b = {_task_key(r, match_on): r for r in rows_b}
    tasks = []
    for key in dict.fromkeys([*by_a, *by_b]):
        ra, rb = by_a.get(key), by_b.get(key)
        metrics = {
            m: {"a": _cell(ra.get(m)) if ra else None, "b": _cell(rb.get(m)) if rb else None}
            for m in METRICS
        }
        tasks.append({
            "match": json.loads(key),
            "task_a": ra.get("task_id") if ra else None,
            "task_b": rb.get("task_id") if rb else None,
            "metrics": metrics,
        })  # fmt: skip
    return {
        "a": {"run_id": meta_a.get("run_id"), "folder": str(folder_a), "problem": meta_a.get("problem"),
              "cluster": meta_a.get("cluster"), "submitted_at": meta_a.get("submitted_at")},
        "b": {"run_id": meta_b.get("run_id"), "folder": str(folder_b), "problem": meta_b.get("problem"),
              "cluster": meta_b.get("cluster"), "submitted_at": meta_b.get("submitted_at")},
        "problem": _diff(meta_a, meta_b, ("problem",)),
        "parameters": _diff(params_a, params_b),
        "resources": _diff(res_a, res_b, RESOURCE_KEYS),
        "code": _diff(_code(meta_a), _code(meta_b), CODE_KEYS),
        "tasks": tasks,
        "matched_on": [*match_on, "degree"],
    }  # fmt: skip
