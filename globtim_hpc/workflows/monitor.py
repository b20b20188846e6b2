"""Monitoring: the scheduler's view of each task, merged with the task's own status file.

One poll of any number of runs costs one ``Scheduler.poll`` (for SLURM: one squeue + one
sacct) and at most one command reading status files. Results are recorded in the registry,
and each RunView carries the state changes the user has not been shown yet.

How a task's state is decided (``merge_task``), scheduler state S, status file F:

1. S is not final (PENDING, RUNNING, COMPLETING, SUSPENDED): S. The job is still in the queue.
2. S is TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL, PREEMPTED, BOOT_FAIL or DEADLINE: S.
   The scheduler knows why it stopped the task; F (killed by the same hand) cannot know better.
3. S is COMPLETED or FAILED: if F says EXITED with a non-zero code, FAILED with that code.
   Otherwise S (with S's exit code). COMPLETED without F stays COMPLETED, with a reason.
4. S is UNKNOWN because SLURM printed a state word this tool does not know: UNKNOWN.
5. The scheduler no longer knows the task (gone from squeue, absent from sacct), so F decides:
   - EXITED 0 -> COMPLETED; EXITED n -> FAILED with exit code n;
   - SIGNALLED TERM: SLURM sends SIGTERM both for scancel and at the time limit. If F's
     elapsed time reached the time limit (known from an earlier poll or the job's plan) less
     1 s of timestamp rounding -> TIMEOUT; if it ended earlier -> CANCELLED; with no known
     limit -> UNKNOWN, saying why;
   - SIGNALLED by another signal -> UNKNOWN, naming the signal;
   - RUNNING: the task died without running its exit trap (SIGKILL: memory enforcement or a
     node failure) -> UNKNOWN, saying so;
   - no F at all -> UNKNOWN.
6. A task recorded as final is never turned back into UNKNOWN by a later poll that has lost
   track of it (SLURM forgets jobs after MinJobAge).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from globtim_hpc.errors import UsageError
from globtim_hpc.jobs.statusfile import (
    STATUS_TEXT_KEY,
    StatusFile,
    parse_status_with_reason,
    read_status_files,
    status_from_dict,
)
from globtim_hpc.layout import RunLayout
from globtim_hpc.models import FINAL_STATES, JobState, RunPhase, TaskStatus
from globtim_hpc.registry.store import RunRecord, StateChange, Store
from globtim_hpc.scheduler.base import PollResult, Scheduler, TrackedJob
from globtim_hpc.scheduler.slurm_commands import NON_ARRAY_TASK_ID
from globtim_hpc.transport.base import Transport

STATUS_FILE_KEY = "status_file"  # extra: the status file this state was merged with
GONE_KEY = "gone"  # extra flag: the scheduler no longer knows this task
AWAITING_KEY = "awaiting_accounting"  # extra flag: final in squeue, not yet in sacct
AWAITED_POLLS_KEY = "awaited_accounting_polls"
MAX_ACCOUNTING_WAIT_POLLS = 3  # then the squeue verdict stands (the record may never come)
# A final scheduler verdict other than these two explains the end better than an exit code.
SCHEDULER_WINS = FINAL_STATES - {JobState.COMPLETED, JobState.FAILED}
TIME_LIMIT_ROUNDING_S = 1.0  # status file timestamps have one-second resolution
SLURM_SOURCES = frozenset({"squeue", "sacct", "scontrol"})


# ---- merging one task ---------------------------------------------------------------------


def _scheduler_lost(sched: TaskStatus | None) -> bool:
    if sched is None:
        return True
    if sched.state is not JobState.UNKNOWN:
        return False
    # UNKNOWN straight from a SLURM state word is an answer (rule 4), not an absence.
    return not SLURM_SOURCES.intersection(sched.sources)


def _from_status_file(
    index: int, sched: TaskStatus | None, status: StatusFile | None, time_limit_s: float | None
) -> TaskStatus:
    task = TaskStatus(task_index=index, state=JobState.UNKNOWN, sources=[])
    if sched is not None:
        task = replace(sched, sources=list(sched.sources), extra=dict(sched.extra))
    task.extra[GONE_KEY] = True
    if status is None:
        task.state = JobState.UNKNOWN
        task.reason = (sched.reason if sched and sched.reason else None) or (
            "the scheduler no longer knows this task and it left no status file"
        )
        return task
    task.sources.append("status-file")
    if status.state == "EXITED":
        task.exit_code = status.exit_code
        task.state = JobState.COMPLETED if status.exit_code == 0 else JobState.FAILED
        task.reason = None if status.exit_code == 0 else f"exit code {status.exit_code}"
        return task
    if status.state == "RUNNING":
        task.state = JobState.UNKNOWN
        task.reason = (
            "the scheduler no longer knows this task and its status file still says RUNNING: it "
            "was killed without running its exit trap (SIGKILL from memory enforcement, or a "
            "node failure)"
        )
        return task
    signal = status.signal_number
    task.signal = signal
    elapsed_s = status.elapsed_s
    if signal != 15:
        task.state = JobState.UNKNOWN
        task.reason = f"ended by signal {status.signal}; the scheduler no longer knows why"
        return task
    if elapsed_s is None or time_limit_s is None:
        task.state = JobState.UNKNOWN
        task.reason = (
            "the task got SIGTERM (cancelled or time limit) and neither its elapsed time nor its "
            "time limit is known, so which one cannot be told"
        )
    elif elapsed_s >= time_limit_s - TIME_LIMIT_ROUNDING_S:
        task.state = JobState.TIMEOUT
        task.reason = (
            f"SIGTERM after {elapsed_s:.0f} s of a {time_limit_s:.0f} s limit (status file)"
        )
    else:
        task.state = JobState.CANCELLED
        task.reason = (
            f"SIGTERM after {elapsed_s:.0f} s, before the {time_limit_s:.0f} s limit: cancelled "
            "(from the status file)"
        )
    return task


def merge_task(
    index: int,
    sched: TaskStatus | None,
    status: StatusFile | None,
    *,
    time_limit_s: float | None = None,
) -> TaskStatus:
    """Combine the scheduler's view of one task with its status file (rules: module docstring)."""
    limit_s = sched.time_limit_s if sched and sched.time_limit_s is not None else time_limit_s
    if _scheduler_lost(sched):
        task = _from_status_file(index, sched, status, limit_s)
    else:
        assert sched is not None
        task = replace(sched, sources=list(sched.sources), extra=dict(sched.extra))
        task.extra.pop(GONE_KEY, None)
        if status is not None:
            task.sources.append("status-file")
        if task.state in (JobState.COMPLETED, JobState.FAILED):
            if status is not None and status.state == "EXITED" and status.exit_code:
                task.state = JobState.FAILED
                task.exit_code = status.exit_code
                task.reason = task.reason if task.reason not in (None, "None") else None
                task.reason = task.reason or f"exit code {status.exit_code}"
            elif task.state is JobState.COMPLETED and status is None:
                task.reason = "no status file (the scheduler says it completed)"
        elif task.state in SCHEDULER_WINS and task.exit_code is None and status is not None:
            task.exit_code = status.exit_code
    if status is not None:
        task.started_at = task.started_at or status.started_at
        task.ended_at = task.ended_at or (status.ended_at if task.state.is_final else None)
        task.node = task.node or status.host
        if status.julia_version:
            task.extra["julia_version"] = status.julia_version
        task.extra[STATUS_FILE_KEY] = status.to_dict()
        if task.elapsed_s is None and status.elapsed_s is not None:
            task.elapsed_s = status.elapsed_s
    if task.time_limit_s is None and limit_s is not None:
        task.time_limit_s = limit_s
    task.extra.pop(STATUS_TEXT_KEY, None)
    return task


# ---- views of runs ------------------------------------------------------------------------


def task_is_settled(status: TaskStatus) -> bool:
    """Final (and accounted, or waited for long enough), or lost for good."""
    if status.state.is_final:
        waiting = bool(status.extra.get(AWAITING_KEY))
        return (
            not waiting or int(status.extra.get(AWAITED_POLLS_KEY, 0)) >= MAX_ACCOUNTING_WAIT_POLLS
        )
    return status.state is JobState.UNKNOWN and bool(status.extra.get(GONE_KEY))


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
            task_is_settled(t.status) for t in self.tasks
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
        extra = stored.get("extra") or {}
        return TaskStatus(
            task_index=index,
            state=JobState.parse(stored.get("state")),
            exit_code=stored.get("exit_code"),
            signal=stored.get("signal"),
            reason=stored.get("reason"),
            node=stored.get("node"),
            elapsed_s=stored.get("elapsed_s"),
            time_limit_s=stored.get("time_limit_s"),
            max_rss_kb=stored.get("max_rss_kb"),
            total_cpu_s=stored.get("total_cpu_s"),
            started_at=stored.get("started_at"),
            ended_at=stored.get("ended_at"),
            sources=list(stored.get("sources") or []),
            extra=dict(extra),
        )
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
        and not all(t.status.state.is_final and task_is_settled(t.status) for t in view.tasks)
    )


def _plan_time_limit_s(run: RunRecord) -> float | None:
    resources = run.plan.get("resources") if isinstance(run.plan, dict) else None
    if isinstance(resources, dict) and isinstance(resources.get("time_min"), (int, float)):
        return float(resources["time_min"]) * 60.0
    return None


def tracked_job(view: RunView) -> TrackedJob:
    assert view.job_id is not None
    return TrackedJob(
        run_id=view.run.run_id,
        job_id=view.job_id,
        run_dir=view.run.remote_dir,
        task_ids=tuple(t.task_id for t in view.tasks),
        submitted_at=view.run.submitted_at,
    )


def _status_file_of(task: TaskStatus | None) -> tuple[StatusFile | None, bool]:
    """(status file handed over by the scheduler, whether the scheduler handed one over at all)."""
    if task is None or STATUS_TEXT_KEY not in task.extra:
        return None, False
    parsed, _ = parse_status_with_reason(str(task.extra[STATUS_TEXT_KEY]))
    return parsed, True


def _needs_status_files(view: RunView, sched: dict[int, TaskStatus]) -> bool:
    """Status files matter once a task has ended or the scheduler lost it; read them only then."""
    for task_view in view.tasks:
        task = sched.get(task_view.status.task_index)
        if _status_file_of(task)[1]:
            continue
        previous = task_view.status
        if previous.state.is_final and "status-file" in previous.sources:
            continue  # already merged with its status file on an earlier poll
        if task is None or task.state.is_final or _scheduler_lost(task):
            return True
    return False


def poll_runs(
    store: Store,
    transport: Transport,
    scheduler: Scheduler,
    runs: Sequence[RunRecord],
    *,
    mark_seen: bool = True,
) -> list[RunView]:
    """Poll every run that is not finished, record what changed, return a view of each run."""
    views = [stored_view(store, run) for run in runs]
    active = [view for view in views if needs_poll(view)]
    if active:
        result = scheduler.poll([tracked_job(view) for view in active])
        _apply_poll(store, transport, active, result)
    for view in views:
        view.changes = store.changes_since_seen(view.run.run_id, mark_seen=mark_seen)
    return views


def _apply_poll(
    store: Store, transport: Transport, active: list[RunView], result: PollResult
) -> None:
    by_run = {view.run.run_id: result.tasks.get(view.job_id or "", {}) for view in active}
    wanted = [
        view.run.remote_dir for view in active if _needs_status_files(view, by_run[view.run.run_id])
    ]
    listing = read_status_files(transport, wanted) if wanted else None
    notes = list(result.notes) + (listing.problems if listing else [])
    for view in active:
        sched = by_run[view.run.run_id]
        plan_limit_s = _plan_time_limit_s(view.run)
        merged: list[TaskStatus] = []
        for task_view in view.tasks:
            index = task_view.status.task_index
            previous = task_view.status
            handed, was_handed = _status_file_of(sched.get(index))
            status_file = (
                handed
                if was_handed
                else (listing.get(view.run.remote_dir, task_view.task_id) if listing else None)
            )
            fresh = listing is not None and view.run.remote_dir in listing.by_run
            if status_file is None and not fresh:
                # Not re-read this poll (it had been read once the task ended): reuse it.
                status_file = status_from_dict(previous.extra.get(STATUS_FILE_KEY))
            limit_s = previous.time_limit_s if previous.time_limit_s is not None else plan_limit_s
            task = merge_task(index, sched.get(index), status_file, time_limit_s=limit_s)
            if task.state is JobState.UNKNOWN and previous.state.is_final:
                task = previous  # rule 6: never forget a final state
            elif task.extra.get(AWAITING_KEY):
                waited = (
                    int(previous.extra.get(AWAITED_POLLS_KEY, 0)) if previous.state.is_final else 0
                )
                task.extra[AWAITED_POLLS_KEY] = waited + 1
            merged.append(task)
            task_view.status = task
        store.update_tasks(view.run.run_id, merged)
        view.notes.extend(notes)
        view.polled = True


# ---- poll interval ------------------------------------------------------------------------

HARD_FLOOR_S = 1.0
DEFAULT_FLOOR_S = 5.0
MAX_INTERVAL_S = 60.0
BACKOFF_FACTOR = 1.5
FLOOR_ENV = "GLOBTIM_HPC_POLL_FLOOR_S"


def poll_floor_s() -> float:
    """5 s, unless $GLOBTIM_HPC_POLL_FLOOR_S lowers it (tests); never below 1 s."""
    text = os.environ.get(FLOOR_ENV)
    if not text:
        return DEFAULT_FLOOR_S
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{FLOOR_ENV}={text!r} is not a number", "unset it or give seconds"
        ) from None
    return max(HARD_FLOOR_S, value)


class PollInterval:
    """Poll often while things change, back off (x1.5, up to 60 s) while nothing does."""

    def __init__(
        self,
        start_s: float | None = None,
        *,
        floor_s: float | None = None,
        max_s: float = MAX_INTERVAL_S,
        factor: float = BACKOFF_FACTOR,
    ) -> None:
        self.floor_s = poll_floor_s() if floor_s is None else floor_s
        if self.floor_s < HARD_FLOOR_S:
            raise UsageError(
                f"a poll interval of {self.floor_s:g} s is below the {HARD_FLOOR_S:g} s floor",
                "poll less often; the scheduler is shared with everyone else",
            )
        start = self.floor_s if start_s is None else start_s
        if start < self.floor_s:
            raise UsageError(
                f"--interval {start:g} is below the {self.floor_s:g} s floor",
                f"use --interval {self.floor_s:g} or more",
            )
        self.start_s = start
        self.max_s = max(max_s, start)
        self.factor = factor
        self.current_s = start

    def next(self, changed: bool) -> float:
        """Seconds to wait before the next poll, given whether the last one saw a change."""
        if changed:
            self.current_s = self.start_s
        else:
            self.current_s = min(self.max_s, self.current_s * self.factor)
        return self.current_s


# ---- following a task's log ---------------------------------------------------------------


def log_candidates(run: RunRecord, task_index: int) -> list[str]:
    """Where a task's stdout may be: ``logs/slurm-<job>_<index>.out`` (or SLURM's non-array %a)."""
    assert run.job_id is not None
    layout = RunLayout(run.remote_dir)
    paths = [layout.log_file(run.job_id, task_index)]
    if run.task_count == 1:
        paths.append(layout.log_file(run.job_id, NON_ARRAY_TASK_ID))
    return paths


class LogFollower:
    """Reads what was appended to a remote file since the last read (``tail -c +OFFSET``)."""

    def __init__(self, transport: Transport, candidates: Sequence[str]) -> None:
        self.transport = transport
        self.candidates = list(candidates)
        self.path: str | None = None
        self.offset = 0

    def read_new(self) -> bytes:
        paths = [self.path] if self.path else self.candidates
        for path in paths:
            result = self.transport.run(["tail", "-c", f"+{self.offset + 1}", path], timeout_s=120)
            if result.ok:
                self.path = path
                self.offset += len(result.stdout)
                return result.stdout
        return b""


def parse_task_selector(text: str | None, view: RunView) -> int:
    """``--follow`` argument: an array index or a task id; default: the first running task."""
    if text is None:
        running = [t for t in view.tasks if t.status.state is JobState.RUNNING]
        return (running[0] if running else view.tasks[0]).status.task_index
    for task in view.tasks:
        if text == task.task_id:
            return task.status.task_index
    if text.isdigit() and int(text) < len(view.tasks):
        return int(text)
    raise UsageError(
        f"run {view.run.run_id} has no task {text!r}",
        f"give an index from 0 to {len(view.tasks) - 1}, or a task id like {view.tasks[0].task_id}",
    )
