"""The one owner of a task's state: ``decide`` merges what the scheduler says, what the task
wrote about itself (its status file) and what was known before. Monitor and collect both call it.

Scheduler view S (None: the scheduler no longer knows the task), status file F, previous P:

1. S is not final (PENDING, RUNNING, COMPLETING, SUSPENDED): S. The job is still in the queue.
2. S is TIMEOUT, OUT_OF_MEMORY, CANCELLED, NODE_FAIL, PREEMPTED, BOOT_FAIL or DEADLINE: S.
   The scheduler knows why it stopped the task; F (killed by the same hand) cannot know better.
3. S is COMPLETED or FAILED: if F says EXITED with a non-zero code, FAILED with that code.
   Otherwise S (with S's exit code). COMPLETED without F stays COMPLETED, with a reason.
4. S is UNKNOWN because the scheduler printed a state word this tool does not know: UNKNOWN.
5. The scheduler was asked and no longer knows the task, so F decides (the task is ``lost``):
   - EXITED 0 -> COMPLETED; EXITED n -> FAILED with exit code n;
   - SIGNALLED TERM: SLURM sends SIGTERM both for scancel and at the time limit. If F's
     elapsed time reached the time limit less 1 s of timestamp rounding -> TIMEOUT; if it ended
     earlier -> CANCELLED; with no known limit -> UNKNOWN, saying why;
   - SIGNALLED by another signal -> UNKNOWN, naming the signal;
   - RUNNING: the task died without running its exit trap (SIGKILL: memory enforcement or a
     node failure) -> UNKNOWN, saying so;
   - no F at all -> UNKNOWN.
6. The scheduler was not asked (or could not answer): an ended F decides as in 5; otherwise P
   stands (RUNNING when F says the task started and P had it PENDING or knew nothing).
7. A task recorded as final is never turned back into a non-final or UNKNOWN state by a later
   look that has lost track of it (SLURM forgets jobs after MinJobAge).
8. Attempts: a rerun starts a task's next attempt, and the task's state is its latest
   attempt's. A status file written by an earlier attempt (its ``attempt`` is lower) is not
   this attempt's word and counts as no file; a previous state of an earlier attempt is no
   previous state (so rule 7 never keeps an old attempt's verdict). The scheduler's view is of
   the latest attempt's job only (the monitor asks about that job alone).
9. A task this tool asked the scheduler to cancel that left no status file, and that squeue no
   longer knows (lost, or only sacct's stale PENDING line), is CANCELLED: SLURM drops pending
   array tasks it cancels from its records at once (squeue, then sacct, know only the tasks
   left), so nobody else will ever say so.

A task held PENDING by a dependency that can never be met (SLURM's reason
``DependencyNeverSatisfied``: a run it was chained to with ``--after`` did not complete) is
settled too: it will never start, so waiting for it would never end.

A final state still waiting for its accounting record is not yet *settled*: monitors poll again
for up to ``ACCOUNTING_WAIT_S`` after the first such poll (a count of polls would depend on how
often a caller polls; the database's lag does not). A task's *outputs are final* once its state is final,
it is lost, or its status file says it ended: collect takes its files then.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from globtim_hpc.models import FINAL_STATES, JobState, StatusFile, TaskStatus, parse_iso

# A final scheduler verdict other than these two explains the end better than an exit code.
SCHEDULER_WINS = FINAL_STATES - {JobState.COMPLETED, JobState.FAILED}
TIME_LIMIT_ROUNDING_S = 1.0  # status file timestamps have one-second resolution
ACCOUNTING_WAIT_S = 60.0  # then the squeue verdict stands (the record may never come)
SIGTERM = 15
NEVER_STARTS_REASON = "DependencyNeverSatisfied"


def _copy(task: TaskStatus) -> TaskStatus:
    return replace(task, sources=list(task.sources))


def _from_status_file(
    base: TaskStatus, status: StatusFile | None, time_limit_s: float | None
) -> TaskStatus:
    """Rule 5 (and 6 for an ended file): the task's own record decides."""
    task = base
    if status is None:
        task.state = JobState.UNKNOWN
        task.reason = task.reason or (
            "the scheduler no longer knows this task and it left no status file"
        )
        return task
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
    task.signal = status.signal_number
    elapsed_s = status.elapsed_s
    if task.signal != SIGTERM:
        task.state = JobState.UNKNOWN
        task.reason = f"ended by signal {status.signal}; the scheduler no longer knows why"
    elif elapsed_s is None or time_limit_s is None:
        task.state = JobState.UNKNOWN
        task.reason = (
            "the task got SIGTERM (cancelled or time limit) and neither its elapsed time nor its "
            "time limit is known, so which one cannot be told"
        )
    elif elapsed_s >= time_limit_s - TIME_LIMIT_ROUNDING_S:
        task.state = JobState.TIMEOUT
        task.reason = f"SIGTERM after {elapsed_s:.0f} s of a {time_limit_s:.0f} s limit (status file)"
    else:
        task.state = JobState.CANCELLED
        task.reason = (
            f"SIGTERM after {elapsed_s:.0f} s, before the {time_limit_s:.0f} s limit: cancelled "
            "(from the status file)"
        )
    return task


def _from_scheduler(sched: TaskStatus, status: StatusFile | None) -> TaskStatus:
    """Rules 1-4: the scheduler still knows the task."""
    task = _copy(sched)
    if task.state in (JobState.COMPLETED, JobState.FAILED):
        if status is not None and status.state == "EXITED" and status.exit_code:
            task.state = JobState.FAILED
            task.exit_code = status.exit_code
            task.reason = task.reason or f"exit code {status.exit_code}"
        elif task.state is JobState.COMPLETED and status is None:
            task.reason = "no status file (the scheduler says it completed)"
    elif task.state in SCHEDULER_WINS and task.exit_code is None and status is not None:
        task.exit_code = status.exit_code
    return task


def _without_scheduler(
    index: int, previous: TaskStatus | None, status: StatusFile | None, time_limit_s: float | None
) -> TaskStatus:
    """Rule 6: nobody asked the scheduler; an ended status file is the only new word."""
    base = _copy(previous) if previous is not None else TaskStatus(index, JobState.UNKNOWN)
    if status is not None and status.ended:
        return _from_status_file(base, status, time_limit_s)
    if status is not None and base.state in (JobState.PENDING, JobState.UNKNOWN):
        # The task wrote that it started; the scheduler's older word (queued) is stale.
        base.state, base.reason = JobState.RUNNING, "started (status file); scheduler not asked"
    return base


def decide(
    index: int,
    *,
    previous: TaskStatus | None,
    scheduler: TaskStatus | None,
    scheduler_asked: bool,
    status_file: StatusFile | None,
    time_limit_s: float | None = None,
    attempt: int = 1,
) -> TaskStatus:
    """The state of task ``index`` now, in its attempt ``attempt`` (rules: module docstring)."""
    if status_file is not None and status_file.attempt < attempt:
        status_file = None  # rule 8: an earlier attempt's file
    if previous is not None and previous.attempt < attempt:
        previous = None
    limits = [
        scheduler.time_limit_s if scheduler else None,
        previous.time_limit_s if previous else None,
        time_limit_s,
    ]
    limit_s = next((limit for limit in limits if limit is not None), None)
    if scheduler is not None:
        task = _from_scheduler(scheduler, status_file)
    elif scheduler_asked:
        base = TaskStatus(index, JobState.UNKNOWN)
        task = _from_status_file(base, status_file, limit_s)
        task.lost = True
    else:
        task = _without_scheduler(index, previous, status_file, limit_s)
    if status_file is not None:
        if "status-file" not in task.sources:
            task.sources.append("status-file")
        task.status_file = status_file
        task.started_at = task.started_at or status_file.started_at
        if task.state.is_final:
            task.ended_at = task.ended_at or status_file.ended_at
        task.node = task.node or status_file.host
        if task.elapsed_s is None:
            task.elapsed_s = status_file.elapsed_s
    if task.time_limit_s is None:
        task.time_limit_s = limit_s
    task.attempt = attempt
    if previous is not None and previous.cancel_requested_at:
        task.cancel_requested_at = previous.cancel_requested_at
        if _cancelled_and_forgotten(task, status_file):
            task.state, task.lost = JobState.CANCELLED, False
            task.reason = "cancelled before it started (the scheduler keeps no record of it)"
            task.sources = [*task.sources, "cancel"]
    if previous is not None and previous.state.is_final and not task.state.is_final:
        return previous  # rule 7: never forget a final state
    if task.awaiting_accounting:
        waited = previous is not None and previous.state.is_final and previous.awaiting_since
        task.awaiting_since = (previous.awaiting_since if waited and previous else None) or _now()
    return task


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_settled(task: TaskStatus, now: datetime | None = None) -> bool:
    """Final (and accounted, or waited for long enough), lost for good, or never to start."""
    if never_starts(task):
        return True
    if task.state.is_final:
        if not task.awaiting_accounting:
            return True
        since = parse_iso(task.awaiting_since)
        moment = now or datetime.now(timezone.utc)
        return since is None or (moment - since).total_seconds() >= ACCOUNTING_WAIT_S
    return task.state is JobState.UNKNOWN and task.lost


def _cancelled_and_forgotten(task: TaskStatus, status: StatusFile | None) -> bool:
    """Rule 8's test: cancelled by this tool, never started, and no live record left."""
    if status is not None or task.state.is_final:
        return False
    sacct_only = task.sources == ["sacct"] and task.state is JobState.PENDING
    return (task.state is JobState.UNKNOWN and task.lost) or sacct_only


def never_starts(task: TaskStatus) -> bool:
    """Pending on a dependency that can never be met (a chained-to run failed)."""
    return task.state is JobState.PENDING and (task.reason or "").startswith(NEVER_STARTS_REASON)


def outputs_final(task: TaskStatus) -> bool:
    """Whether the task's files will not change any more (so collect may take them)."""
    if task.state.is_final or (task.state is JobState.UNKNOWN and task.lost):
        return True
    return task.status_file is not None and task.status_file.ended
