"""Cancelling runs, or some of their tasks: one scheduler command for any number of them.

What is cancelled is chosen from the registry: every task not yet final (a final task has
nothing left to stop). The scheduler's answer to the one cancel command is then read back by
one poll, so the states recorded are the scheduler's, never assumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from globtim_hpc.errors import UsageError
from globtim_hpc.indices import compress_indices
from globtim_hpc.models import RunPhase
from globtim_hpc.registry.records import RunRecord, utc_now
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler, TrackedJob
from globtim_hpc.workflows.monitor.poll import RunView, poll_runs, stored_view, tracked_jobs


@dataclass
class CancelPlan:
    """What one cancel would stop: per run, the chosen task indices not yet final."""

    jobs: list[TrackedJob] = field(default_factory=list)
    indices: dict[str, list[int]] = field(default_factory=dict)  # job id -> chosen indices
    whole: set[str] = field(default_factory=set)  # job ids cancelled entirely
    skipped: dict[str, list[int]] = field(default_factory=dict)  # run id -> already final
    argv: list[str] = field(default_factory=list)

    @property
    def task_count(self) -> int:
        return sum(len(v) for v in self.indices.values())


@dataclass
class CancelResult:
    plan: CancelPlan
    dry_run: bool
    views: list[RunView] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "command": list(self.plan.argv),
            "scheduler_commands": 0 if self.dry_run else 1,
            "jobs": [
                {
                    "run_id": job.run_id,
                    "job_id": job.job_id,
                    "tasks": compress_indices(self.plan.indices[job.job_id]),
                    "task_count": len(self.plan.indices[job.job_id]),
                    "whole_job": job.job_id in self.plan.whole,
                }
                for job in self.plan.jobs
            ],
            "skipped_final": {
                run_id: compress_indices(found) for run_id, found in self.plan.skipped.items()
            },
            "runs": [view.to_dict() for view in self.views],
        }


def plan_cancel(
    store: Store,
    scheduler: Scheduler,
    runs: Sequence[RunRecord],
    tasks: Sequence[int] | None = None,
) -> CancelPlan:
    """Choose what to cancel; raises UsageError for an unknown task or nothing to cancel."""
    plan = CancelPlan()
    for run in runs:
        view = stored_view(store, run)
        if run.phase is not RunPhase.SUBMITTED or view.job_id is None:
            raise UsageError(
                f"run {run.run_id} has no job to cancel (it is {run.phase.value})",
                "only submitted runs can be cancelled",
            )
        count = len(view.tasks)
        unknown = [index for index in (tasks or []) if index >= count or index < 0]
        if unknown:
            raise UsageError(
                f"run {run.run_id} has no task {compress_indices(unknown)}: it has {count} task(s)",
                f"give indices from 0 to {count - 1} (--tasks 0-3,7)",
            )
        chosen = sorted(set(tasks)) if tasks is not None else list(range(count))
        live = [i for i in chosen if not view.tasks[i].status.state.is_final]
        final = [i for i in chosen if view.tasks[i].status.state.is_final]
        if final:
            plan.skipped[run.run_id] = final
        if not live:
            continue
        # A rerun run has a job per attempt: each live task is cancelled in its latest
        # attempt's job only (an earlier job of that task has ended, or it could not be rerun).
        attempt_of = {t.status.task_index: t.status.attempt for t in view.tasks}
        job_attempt = {row.job_id: row.attempt for row in store.run_jobs(run.run_id)}
        for job in tracked_jobs(store, view):
            attempt = job_attempt.get(job.job_id, 1)
            mine = [
                i
                for i in live
                if attempt_of.get(i, 1) == attempt
                and (job.task_indices is None or i in job.task_indices)
            ]
            if not mine:
                continue
            plan.jobs.append(job)
            plan.indices[job.job_id] = mine
            if tasks is None:
                plan.whole.add(job.job_id)  # also stops anything the registry has not seen yet
    if not plan.jobs:
        named = ", ".join(run.run_id for run in runs)
        raise UsageError(
            f"nothing to cancel: every chosen task of {named} has already ended",
            "monitor_jobs.py --run-id RUN_ID shows their states",
        )
    selection: Mapping[str, Sequence[int]] = {
        job_id: found for job_id, found in plan.indices.items() if job_id not in plan.whole
    }
    plan.argv = scheduler.cancel_argv(plan.jobs, selection)
    return plan


def cancel_runs(
    store: Store,
    scheduler: Scheduler,
    runs: Sequence[RunRecord],
    tasks: Sequence[int] | None = None,
    *,
    dry_run: bool = False,
) -> CancelResult:
    """Cancel the chosen tasks of ``runs`` with one scheduler command, then poll once."""
    plan = plan_cancel(store, scheduler, runs, tasks)
    result = CancelResult(plan, dry_run)
    if dry_run:
        return result
    selection = {j: found for j, found in plan.indices.items() if j not in plan.whole}
    _mark_requested(store, runs, plan)
    scheduler.cancel(plan.jobs, selection)
    result.views = poll_runs(store, scheduler, runs, force=True)
    return result


def _mark_requested(store: Store, runs: Sequence[RunRecord], plan: CancelPlan) -> None:
    """Note the request on each chosen task first: the poll after it, and every later one,
    then read a task SLURM dropped from its records as cancelled (taskstate rule 8)."""
    now = utc_now()
    chosen_by_run: dict[str, set[int]] = {}
    for job in plan.jobs:  # a run may have several jobs (attempts, parts of a split sweep)
        chosen_by_run.setdefault(job.run_id, set()).update(plan.indices[job.job_id])
    for run in runs:
        chosen = chosen_by_run.get(run.run_id)
        if not chosen:
            continue
        marked = [
            replace(t.status, cancel_requested_at=now, sources=list(t.status.sources))
            for t in stored_view(store, run).tasks
            if t.status.task_index in chosen
        ]
        store.update_tasks(run.run_id, marked)
