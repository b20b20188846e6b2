"""``--after``: which jobs a new run waits on, decided from one poll of its parent runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from globtim_hpc.errors import UsageError

if TYPE_CHECKING:
    from globtim_hpc.api.cluster import Cluster
    from globtim_hpc.api.run import Run


def resolve_after(
    cluster: Cluster, parents: Sequence[Run | str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The job ids to wait on, per parent run, after one poll of the parents: a parent that
    already completed needs no waiting (SLURM may have forgotten its jobs), and one that
    ended otherwise is refused (the new run could never start)."""
    if not parents:
        return {}, []
    runs = [cluster.run(parent) if isinstance(parent, str) else parent for parent in parents]
    waits_on: dict[str, list[str]] = {}
    notes: list[str] = []
    for view in cluster.poll(runs, mark_seen=False):
        run_id = view.run.run_id
        job_ids = cluster.store.job_ids(run_id)
        if not job_ids:
            raise UsageError(
                f"run {run_id} (--after) has no job yet", "submit it first, then chain to it"
            )
        if view.all_settled and view.all_completed:
            notes.append(f"run {run_id} (--after) has already completed; nothing to wait for")
        elif view.all_settled:
            failed = {s: n for s, n in view.counts().items() if s != "COMPLETED"}
            raise UsageError(
                f"run {run_id} (--after) has ended without completing ({failed}): a run "
                "chained to it would never start",
                f"rerun what failed in {run_id} first, or submit without --after",
            )
        else:
            waits_on[run_id] = job_ids
    return waits_on, notes
