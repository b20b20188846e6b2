"""What each collected task really used against what was estimated and requested.

The ``sizing`` list of metadata.json, one item per task that reported its figures: MaxRSS
against the pre-flight estimate (globtim_hpc/jobs/sizing.py) and the request, elapsed time
against the time limit. The registry keeps these (registry/sizing.py) so the next submission of
the same problem on the same cluster can learn from them (jobs/advice.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from globtim_hpc.results import taskdata as td


def _ratio(measured: float | None, reference: float | None) -> float | None:
    if measured is None or reference is None or reference <= 0:
        return None
    return round(measured / reference, 4)


def sizing_items(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    asked = td.requested(metadata)
    items: list[dict[str, Any]] = []
    for task in metadata.get("tasks") or []:
        if not task.get("collected"):
            continue
        params = td.mapping(task.get("params"))
        rss_gb = td.max_rss_gb(task)
        elapsed = td.elapsed_s(task)
        if rss_gb is None and elapsed is None:
            continue
        estimate = td.estimate_gb(params)
        time_limit_s = asked["time_min"] * 60 if asked["time_min"] is not None else None
        items.append(
            {
                "task_id": task.get("task_id"),
                "state": task.get("state"),
                "dim": td.count(params.get("dim")),
                "samples_per_dim": td.count(params.get("samples_per_dim")),
                "degree": td.top_degree(params),
                "estimated_mem_gb": round(estimate, 4) if estimate is not None else None,
                "max_rss_gb": round(rss_gb, 4) if rss_gb is not None else None,
                "mem_over_estimate": _ratio(rss_gb, estimate),
                "requested_mem_gb": asked["mem_gb"],
                "mem_over_request": _ratio(rss_gb, asked["mem_gb"]),
                "elapsed_s": elapsed,
                "requested_time_min": asked["time_min"],
                "time_over_request": _ratio(elapsed, time_limit_s),
            }
        )
    return items
