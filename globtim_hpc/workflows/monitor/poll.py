"""Monitoring: one poll of any number of runs, each task's state decided by ``taskstate``.

A poll costs one ``Scheduler.poll`` (for SLURM: one squeue + one sacct) and at most one command
reading status files, and only when a task has ended or the scheduler lost it (the direct
scheduler reads them in its own poll command). What it learns is recorded in the registry, and
each RunView carries the state changes the user has not been shown yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from globtim_hpc.jobs.statusfile import read_status_files
from globtim_hpc.layout import part_job_name
from globtim_hpc.models import JobState, RunPhase, StatusFile, TaskStatus
from globtim_hpc.registry.records import JobRow, RunRecord, StateChange
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import PollResult, Scheduler, TrackedJob
from globtim_hpc.workflows.taskstate import decide, is_settled

StatusFiles = Mapping[str, Mapping[str, StatusFile]]  # run folder -> task id -> status file


@dataclass
class TaskView:
    task_id: str
    status: TaskStatus

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, **self.status.to_dict()}


@dataclass
class RunView:
    run: RunRecord
    tasks: list[TaskView]
    notes: list[str] = field(default_factory=list)
    changes: list[StateChange] = field(default_factory=list)
    polled: bool = False

    @property
    def job_id(self) -> str | None:
        return self.run.job_id

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.status.state.value for t in self.tasks))

    @property
    def all_settled(self) -> bool:
        return self.run.phase is not RunPhase.SUBMITTED or all(
            is_settled(t.status) for t in self.tasks
        )

    @property
    def all_completed(self) -> bool:
        return bool(self.tasks) and all(t.status.state is JobState.COMPLETED for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "job_id": self.job_id,
            "problem": self.run.problem,
            "cluster": self.run.cluster,
            "scheduler": self.run.scheduler,
            "phase": self.run.phase.value,
            "remote_dir": self.run.remote_dir,
            "submitted_at": self.run.submitted_at,
            "task_count": self.run.task_count,
            "counts": self.counts(),
            "all_final": self.all_settled,
            "all_completed": self.all_completed,
            "polled": self.polled,
            "notes": list(self.notes),
            "tasks": [t.to_dict() for t in self.tasks],
            "changes": [change_to_dict(c) for c in self.changes],
        }


def change_to_dict(change: StateChange) -> dict[str, Any]:
    return {
        "run_id": change.run_id,
        "task_index": change.task_index,
        "old_state": change.old_state,
        "new_state": change.new_state,
        "at": change.at,
    }


def _status_from_row(index: int, state: str, stored: dict[str, Any] | None) -> TaskStatus:
    if stored:
        return TaskStatus.from_dict({**stored, "task_index": index})
    parsed = JobState.PENDING if state == "PENDING" else JobState.parse(state)
    reason = "not submitted yet" if state == "NEW" else None
    return TaskStatus(task_index=index, state=parsed, reason=reason)


def stored_view(store: Store, run: RunRecord) -> RunView:
    """What the registry knows about a run, without asking the cluster."""
    tasks = [
        TaskView(task_id, _status_from_row(index, state, stored))
        for index, task_id, state, stored in store.task_rows(run.run_id)
    ]
    view = RunView(run=run, tasks=tasks)
    if run.phase is not RunPhase.SUBMITTED:
        view.notes.append(
            f"run {run.run_id} is {run.phase.value}, not submitted"
            + (f": {run.error}" if run.error else "")
        )
    return view


def needs_poll(view: RunView) -> bool:
    return (
        view.run.phase is RunPhase.SUBMITTED
        and view.job_id is not None
        and not all(is_settled(t.status) for t in view.tasks)
    )


def plan_time_limit_s(run: RunRecord) -> float | None:
    resources = run.plan.get("resources") if isinstance(run.plan, dict) else None
    if isinstance(resources, dict) and isinstance(resources.get("time_min"), (int, float)):
        return float(resources["time_min"]) * 60.0
    return None


def tracked_jobs(store: Store, view: RunView) -> list[TrackedJob]:
    """The jobs a poll asks about: for each task, the job of its latest attempt only."""
    task_ids = tuple(t.task_id for t in view.tasks)
    by_attempt: dict[int, list[int]] = {}
    for task_view in view.tasks:
        by_attempt.setdefault(task_view.status.attempt, []).append(task_view.status.task_index)
    rows = store.run_jobs(view.run.run_id)
    if not rows and view.job_id is not None:
        rows = [JobRow(view.job_id, 1, None, view.run.submitted_at or "")]
    jobs = []
    for row in rows:
        current = by_attempt.get(row.attempt, [])
        held = set(row.task_indices) if row.task_indices is not None else None
        indices = tuple(i for i in current if held is None or i in held)
        if not indices:
            continue  # every task of this job has been rerun since
        jobs.append(
            TrackedJob(
                run_id=view.run.run_id,
                job_id=row.job_id,
                run_dir=view.run.remote_dir,
                task_ids=task_ids,
                submitted_at=row.submitted_at or view.run.submitted_at,
                task_indices=None if row.task_indices is None and row.attempt == 1 else indices,
                job_name=part_job_name(view.run.run_id, row.attempt, row.part),
                task_offset=row.task_offset,
            )
        )
    return jobs


def _needs_status_files(view: RunView, sched: Mapping[int, TaskStatus]) -> bool:
    """Status files matter once a task has ended or the scheduler lost it; read them only then."""
    for task_view in view.tasks:
        previous = task_view.status
        if previous.state.is_final and previous.status_file is not None:
            continue  # already merged with its status file on an earlier poll
        task = sched.get(previous.task_index)
        if task is None or task.state.is_final:
            return True
    return False


def poll_runs(
    store: Store,
    scheduler: Scheduler,
    runs: Sequence[RunRecord],
    *,
    mark_seen: bool = True,
    status_files: StatusFiles | None = None,
    ask_scheduler: bool = True,
    force: bool = False,
    answer: PollResult | None = None,
) -> list[RunView]:
    """Poll every run that is not settled, record what changed, return a view of each run.

    ``status_files`` are ones the caller has just read (collect does); ``ask_scheduler`` False
    decides from the status files and the registry alone (the scheduler could not be reached);
    ``force`` polls settled runs too (after a cancel, a task held for good has news);
    ``answer``: the scheduler's answer about ``polled_jobs(store, runs)``, which the caller
    asked for meanwhile (collect does, while it lists the run folder).
    """
    views = [stored_view(store, run) for run in runs]
    active = _active(views, force or status_files is not None)
    if active:
        if answer is None and ask_scheduler:
            answer = scheduler.poll(_jobs(store, active))
        _apply_poll(store, scheduler, active, answer, status_files or {})
    for view in views:
        view.changes = store.changes_since_seen(view.run.run_id, mark_seen=mark_seen)
    return views


def _active(views: Sequence[RunView], every: bool) -> list[RunView]:
    """The views a poll asks the scheduler about (``every``: settled ones too)."""
    return [view for view in views if (every or needs_poll(view)) and view.job_id is not None]


def polled_jobs(store: Store, runs: Sequence[RunRecord]) -> list[TrackedJob]:
    """The jobs ``poll_runs(store, scheduler, runs, status_files=…)`` asks the scheduler about."""
    return _jobs(store, _active([stored_view(store, run) for run in runs], True))


def _jobs(store: Store, views: Sequence[RunView]) -> list[TrackedJob]:
    return [job for view in views for job in tracked_jobs(store, view)]


def _apply_poll(
    store: Store,
    scheduler: Scheduler,
    active: list[RunView],
    polled: PollResult | None,
    given: StatusFiles,
) -> None:
    by_run = {v.run.run_id: (polled.tasks.get(v.run.run_id, {}) if polled else {}) for v in active}
    fresh: dict[str, Mapping[str, StatusFile]] = dict(given)
    if polled is not None and polled.status_files is not None:
        fresh.update(polled.status_files)
    wanted = [
        v.run.remote_dir
        for v in active
        if v.run.remote_dir not in fresh and _needs_status_files(v, by_run[v.run.run_id])
    ]
    notes = list(polled.notes) if polled else []
    if wanted:
        listing = read_status_files(scheduler.transport, wanted)
        fresh.update(listing.by_run)
        notes += listing.problems
    for view in active:
        sched = by_run[view.run.run_id]
        files = fresh.get(view.run.remote_dir)
        plan_limit_s = plan_time_limit_s(view.run)
        merged: list[TaskStatus] = []
        for task_view in view.tasks:
            previous = task_view.status
            # A file not re-read this time (it had been read once the task ended) is reused.
            status_file = files.get(task_view.task_id) if files is not None else previous.status_file
            task = decide(
                previous.task_index,
                previous=previous,
                scheduler=sched.get(previous.task_index),
                scheduler_asked=polled is not None,
                status_file=status_file,
                time_limit_s=plan_limit_s,
                attempt=previous.attempt,
            )
            merged.append(task)
        # What is stored wins: another command may have recorded a final state meanwhile.
        stored, _ = store.update_tasks(view.run.run_id, merged)
        for task_view, task in zip(view.tasks, stored, strict=True):
            task_view.status = task
        view.notes.extend(notes)
        view.polled = polled is not None
