"""Looking back: which runs exist, in what state, where their results went (registry only).

A run's state in one word: its phase until it is submitted (PREPARED, SUBMITTING, ABANDONED),
then ACTIVE while any task is not settled, COMPLETED when every task completed, else FAILED.
A ``--state`` filter matches that word or any task's state (``--state TIMEOUT``: runs with a
task that timed out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from globtim_hpc.errors import UsageError
from globtim_hpc.models import JobState, RunPhase, parse_iso
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.workflows.monitor.poll import stored_view

RUN_STATES = (
    "ACTIVE", "COMPLETED", "FAILED",
    *(p.value.upper() for p in RunPhase if p is not RunPhase.SUBMITTED),
)  # fmt: skip
_AGO = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class RunSummary:
    record: RunRecord
    state: str
    counts: dict[str, int]
    collected_to: list[str]  # local folders of complete collections, newest last
    collected_at: str | None

    def to_dict(self) -> dict[str, Any]:
        run = self.record
        return {
            "run_id": run.run_id, "job_id": run.job_id, "problem": run.problem,
            "cluster": run.cluster, "phase": run.phase.value, "state": self.state,
            "counts": self.counts, "task_count": run.task_count,
            "created_at": run.created_at, "submitted_at": run.submitted_at,
            "remote_dir": run.remote_dir, "collected_to": self.collected_to,
            "collected_at": self.collected_at,
        }  # fmt: skip


def summarize(store: Store, run: RunRecord) -> RunSummary:
    view = stored_view(store, run)
    if run.phase is not RunPhase.SUBMITTED:
        state = run.phase.value.upper()
    elif not view.all_settled:
        state = "ACTIVE"
    else:
        state = "COMPLETED" if view.all_completed else "FAILED"
    complete = [c for c in store.collections(run.run_id) if c["complete"]]
    return RunSummary(
        record=run,
        state=state,
        counts=view.counts(),
        collected_to=list(dict.fromkeys(c["local_dir"] for c in complete)),
        collected_at=complete[-1]["collected_at"] if complete else None,
    )


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-12-01``, an ISO time, or an age: ``90m``, ``12h``, ``3d``, ``2w``."""
    moment = now or datetime.now(timezone.utc)
    unit = text[-1:].lower()
    if unit in _AGO and text[:-1].isdigit():
        return moment - timedelta(seconds=int(text[:-1]) * _AGO[unit])
    parsed = parse_iso(text)
    if parsed is None:
        raise UsageError(
            f"--since {text!r} is neither a date nor an age",
            "give e.g. 2026-12-01, 2026-12-01T10:00, 12h, 3d or 2w",
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def check_state(state: str) -> str:
    word = state.upper()
    if word not in RUN_STATES and JobState.parse(word) is JobState.UNKNOWN and word != "UNKNOWN":
        raise UsageError(
            f"--state {state!r} is not a run or task state",
            f"give one of {', '.join(RUN_STATES)} or a task state (PENDING, RUNNING, FAILED, "
            "TIMEOUT, OUT_OF_MEMORY, CANCELLED, ...)",
        )
    return word


def matches(
    summary: RunSummary, *, since: datetime | None, problem: str | None, state: str | None
) -> bool:
    run = summary.record
    if problem is not None and run.problem != problem:
        return False
    if since is not None:
        created = parse_iso(run.submitted_at or run.created_at)
        if created is None or created < since:
            return False
    if state is not None:
        return summary.state == state or summary.counts.get(state, 0) > 0
    return True
