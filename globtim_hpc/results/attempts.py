"""Each task's attempts, for ``metadata.json`` and ``summary.md``: state, resources asked for,
elapsed time and MaxRSS of every attempt, and why it was made (a rerun, a retry policy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from globtim_hpc.models import TaskStatus


def attempt_entry(
    status: TaskStatus, resources: Mapping[str, Any], cause: str, job_id: str | None
) -> dict[str, Any]:
    status_file = status.status_file
    return {
        "attempt": status.attempt,
        "state": status.state.value,
        "cause": cause,
        "job_id": (status_file.array_job_id if status_file else None) or job_id,
        "mem_gb": resources.get("mem_gb"),
        "time_min": resources.get("time_min"),
        "elapsed_s": status.elapsed_s,
        "max_rss_kb": status.max_rss_kb,
        "exit_code": status.exit_code,
        "reason": status.reason,
    }


def render_attempts(
    tasks: Sequence[Mapping[str, Any]], format_bytes: Any, format_duration: Any
) -> list[str]:
    """The summary's "Attempts" section: only tasks that ran more than once."""
    rerun = [t for t in tasks if len(t.get("attempts") or []) > 1]
    if not rerun:
        return []
    out = ["", "## Attempts", ""]
    out.append(f"{len(rerun)} task(s) ran more than once; each task's result is its latest attempt's.")
    out += ["", "| task | attempt | state | why | memory | time limit | elapsed | max RSS |",
            "|---|---:|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for task in rerun:
        for item in task["attempts"]:
            rss = item.get("max_rss_kb")
            mem = item.get("mem_gb")
            limit = item.get("time_min")
            cells = (
                task["task_id"],
                str(item["attempt"]),
                str(item["state"]),
                str(item.get("cause") or ""),
                "–" if mem is None else f"{float(mem):g} GB",
                "–" if limit is None else f"{limit} min",
                format_duration(item.get("elapsed_s")),
                format_bytes(rss * 1024 if isinstance(rss, int) else None),
            )
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out
