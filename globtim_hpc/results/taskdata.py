"""The one reader of a task's ``results.json`` and of a run's ``metadata.json`` for the views.

``tasks.csv``, the plots, the index, the comparison and the sizing record all read through
here, so a field added or moved by the driver (docs/output-contract.md) is adapted in one place.
Every read is defensive: a missing or mistyped field becomes ``None`` (an empty cell), never an
exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globtim_hpc.jobs.sizing import task_size

RESULTS_NAME = "results.json"

# Per-degree stage timings of results.json (``degrees[i].timings_s``), in column order.
DEGREE_STAGES = ("construct", "solve", "process", "analyze", "total")
# Per-task stage timings (``timings_s``), in column order.
TASK_STAGES = ("load_packages", "setup", "total")
# Bookkeeping keys of the parameters file that are not parameters of the computation.
HIDDEN_PARAMS = frozenset({"problem", "entry", "task_id", "input_sha256"})
# Where the run environment's hash may be recorded (metadata first, then submission.json).
RUN_ENV_KEYS = ("run_env_manifest_sha256", "run_env_hash", "env_hash", "env_id")


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def point(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    coords = [number(v) for v in value]
    return None if any(c is None for c in coords) else [c for c in coords if c is not None]


@dataclass(frozen=True)
class DegreeResult:
    """One finished or failed degree of a task (``results.json`` ``degrees[i]``)."""

    degree: int | None
    status: str | None
    samples: int | None = None
    basis_size: int | None = None
    l2_error: float | None = None
    condition_number: float | None = None
    n_critical_points: int | None = None
    n_minima: int | None = None
    best_value: float | None = None
    best_point: list[float] | None = None
    timings_s: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


def _error_text(value: Any) -> str | None:
    err = mapping(value)
    if not err:
        return text(value)
    parts = [text(err.get("type")), text(err.get("message"))]
    return ": ".join(p for p in parts if p) or None


def degree_results(results: Mapping[str, Any] | None) -> list[DegreeResult]:
    """Each entry of ``degrees``; for a results.json without any, the top-level summary as one
    entry without a degree (a custom script, or a task that failed before its first degree)."""
    res = mapping(results)
    out: list[DegreeResult] = []
    entries = res.get("degrees")
    for entry in entries if isinstance(entries, list) else []:
        item = mapping(entry)
        if not item:
            continue
        timings = mapping(item.get("timings_s"))
        out.append(
            DegreeResult(
                degree=count(item.get("degree")),
                samples=count(item.get("samples")),
                basis_size=count(item.get("basis_size")),
                timings_s={stage: number(timings.get(stage)) for stage in DEGREE_STAGES},
                **_summary_fields(item),
            )
        )
    if out or not res:
        return out
    return [DegreeResult(degree=None, **_summary_fields(res))]


def _summary_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a degree's entry and a task's top-level summary share in results.json."""
    return {
        "status": text(item.get("status")),
        "l2_error": number(item.get("l2_error")),
        "condition_number": number(item.get("condition_number")),
        "n_critical_points": count(item.get("n_critical_points")),
        "n_minima": count(item.get("n_minima")),
        "best_value": number(item.get("best_value")),
        "best_point": point(item.get("best_point")),
        "error": _error_text(item.get("error")),
    }


def task_timings(results: Mapping[str, Any] | None) -> dict[str, float | None]:
    timings = mapping(mapping(results).get("timings_s"))
    return {stage: number(timings.get(stage)) for stage in TASK_STAGES}


def read_results(path: Path) -> dict[str, Any] | None:
    """A results.json as a dict, or None when it is missing or not a JSON object."""
    try:
        parsed = json.loads(path.read_text("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def read_metadata(folder: Path) -> dict[str, Any] | None:
    return read_results(folder / "metadata.json")


# ---- facts of a collected run (metadata.json) -------------------------------------------------


def run_env_hash(metadata: Mapping[str, Any]) -> str | None:
    for source in (metadata, mapping(metadata.get("submission"))):
        for key in RUN_ENV_KEYS:
            found = text(source.get(key))
            if found:
                return found
        env = mapping(source.get("run_env"))
        if env:
            return text(env.get("hash")) or text(env.get("env_id"))
    return None


def dirty_patch(metadata: Mapping[str, Any]) -> str | None:
    """What identifies the deployed local changes (a hash or the patch), when recorded."""
    sub = mapping(metadata.get("submission"))
    deploy = mapping(sub.get("deploy"))
    for source in (metadata, sub, deploy):
        for key in ("dirty_patch_sha256", "dirty_hash", "patch_sha256", "dirty_patch"):
            found = text(source.get(key))
            if found:
                return found
    return None


def requested(metadata: Mapping[str, Any]) -> dict[str, float | None]:
    """What each task asked the scheduler for (submission.json ``resources``)."""
    res = mapping(mapping(metadata.get("submission")).get("resources"))
    return {
        "mem_gb": number(res.get("mem_gb")),
        "time_min": number(res.get("time_min")),
        "cpus": number(res.get("cpus")),
    }


def visible_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in mapping(params).items() if k not in HIDDEN_PARAMS}


def param_names(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every parameter name of the run's tasks, in first-seen (declaration) order."""
    return list(dict.fromkeys(k for t in tasks for k in visible_params(t.get("params"))))


def swept_names(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    names = param_names(tasks)
    out = []
    for name in names:
        values = {json.dumps(mapping(t.get("params")).get(name), sort_keys=True) for t in tasks}
        if len(values) > 1:
            out.append(name)
    return out


def max_rss_gb(task: Mapping[str, Any]) -> float | None:
    kb = count(mapping(task.get("resources")).get("max_rss_kb"))
    return None if kb is None else kb / (1024 * 1024)


def elapsed_s(task: Mapping[str, Any]) -> float | None:
    return number(mapping(task.get("timing")).get("elapsed_s"))


def attempt(task: Mapping[str, Any]) -> int:
    """The attempt whose files these are; 1 unless the registry recorded reruns."""
    return count(task.get("attempt")) or 1


def estimate_gb(params: Mapping[str, Any] | None, degree: int | None = None) -> float | None:
    """The pre-flight memory estimate (jobs/sizing.py) at ``degree`` (default: the task's top
    degree), or None for a task that does not say its grid (e.g. a custom script)."""
    p = mapping(params)
    dim, gn = count(p.get("dim")), count(p.get("samples_per_dim"))
    first = count(p.get("degree"))
    if dim is None or gn is None or first is None:
        return None
    top = max(first, count(p.get("degree_max")) or first)
    return task_size(dim, gn, degree if degree is not None else top).mem_gb


def top_degree(params: Mapping[str, Any] | None) -> int | None:
    p = mapping(params)
    first = count(p.get("degree"))
    if first is None:
        return None
    return max(first, count(p.get("degree_max")) or first)
