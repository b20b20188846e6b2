"""The Scheduler seam: pure build/parse pairs over typed records, plus runners that use them.

A scheduler turns "run this batch script as N tasks" into argv lists and reads their answers
(psij's style: ``submit_argv``/``parse_submit``, ``status_argvs``/``parse_status``,
``cancel_argv``). It talks to the cluster only through the Transport it was made with, and the
workflows above it never ask which scheduler they have: whatever differs (the direct runner's
files in the run folder, a pre-submission check) is a method here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from globtim_hpc.models import StatusFile, TaskStatus
from globtim_hpc.transport.base import CommandResult, Transport


@dataclass(frozen=True)
class SubmitRequest:
    """One batch script to run as ``task_count`` array tasks, from inside ``run_dir``."""

    run_id: str  # the job's name: how a lost answer is found again
    run_dir: str
    script_path: str
    task_count: int
    max_parallel: int
    time_limit_s: int
    cpus: int
    job_tag: str = ""  # distinguishes several submissions of one run (attempts)
    after_job_ids: tuple[str, ...] = ()  # start only once all of these jobs completed well
    # One part of a split submission (jobs.arrays): its --array list and index offset, given
    # on the command line over the script's own; None: the script's --array as it stands.
    array: str | None = None
    task_offset: int = 0


@dataclass(frozen=True)
class TrackedJob:
    """One submitted job (an array of ``task_count`` tasks) that a poll should report on."""

    run_id: str
    job_id: str
    run_dir: str  # the run folder on the cluster (see layout.RunLayout)
    task_ids: tuple[str, ...]  # task_ids[i] is the id of task (array index) i, for the whole run
    submitted_at: str | None = None
    # The array indices this job holds (a rerun holds only the chosen tasks); None: all of them.
    task_indices: tuple[int, ...] | None = None
    job_name: str | None = None  # the job's name when it is not the run id (a later attempt)
    task_offset: int = 0  # array index + offset = task index (one part of a split sweep)

    @property
    def task_count(self) -> int:
        return len(self.task_ids)

    @property
    def indices(self) -> tuple[int, ...]:
        return self.task_indices if self.task_indices is not None else tuple(range(self.task_count))

    @property
    def name(self) -> str:
        return self.job_name or self.run_id


@dataclass
class PollResult:
    """The scheduler's view of every task it still knows, by run id and array index (keyed by
    run, not job id: after SLURM's ids restart, two tracked runs may hold the same id).

    A task missing from ``tasks`` is one the scheduler has forgotten (or never had); what that
    means is decided by ``workflows.taskstate``, not here. ``status_files`` holds the tasks' own
    status files when the poll read them anyway (by run folder, then task id); None means the
    poll did not look, an empty mapping that it looked and found none.
    """

    tasks: dict[str, dict[int, TaskStatus]] = field(default_factory=dict)
    status_files: dict[str, dict[str, StatusFile]] | None = None
    notes: list[str] = field(default_factory=list)
    scheduler_calls: int = 0


@dataclass(frozen=True)
class ClusterLimits:
    """What the scheduler allows: the largest array index + 1, and how many jobs it holds."""

    max_array_size: int | None
    max_job_count: int | None


@dataclass(frozen=True)
class AccountingCheck:
    label: str  # the check's name in the doctor's table, e.g. "sacct (accounting)"
    ok: bool
    detail: str


class Scheduler(Protocol):
    name: str
    transport: Transport
    runs_on: str  # where the tasks run, in words: "compute node", "target host"
    needs_bash_4_3: bool  # whether the target host's bash must have ``wait -n``
    reruns_tasks: bool  # whether a later attempt can run only some of a run's tasks
    # whether a job can be held until other jobs completed well (SubmitRequest.after_job_ids)
    holds_for_jobs: bool

    # ---- what a run folder needs -------------------------------------------------------------

    def run_files(self) -> Mapping[str, bytes]:
        """Files this scheduler needs inside every run folder (path in the folder -> bytes)."""
        ...

    # ---- pure pairs --------------------------------------------------------------------------

    def submit_argv(self, request: SubmitRequest) -> list[str]:
        """The command that submits ``request``; it runs with the run folder as working dir."""
        ...

    def parse_submit(self, result: CommandResult) -> str:
        """The job id from the submit command's answer. Raises SchedulerError: transient when
        the job may exist after all, not transient for a refusal (nothing runs)."""
        ...

    def test_submit_argv(self) -> list[str] | None:
        """A command that judges a batch script read from stdin without submitting it."""
        ...

    def parse_test_submit(self, result: CommandResult) -> str | None:
        """The scheduler's verdict on the tested script; raises SchedulerError on refusal."""
        ...

    def status_argvs(self, jobs: Sequence[TrackedJob]) -> list[list[str]]:
        """The commands of one poll of ``jobs`` (a fixed number, whatever the number of jobs)."""
        ...

    def parse_status(
        self, jobs: Sequence[TrackedJob], results: Sequence[CommandResult]
    ) -> PollResult: ...

    def cancel_argv(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> list[str]:
        """ONE command cancelling every job given: each job's tasks ``indices[job_id]`` (array
        indices), or all of its tasks when the job is not in ``indices``."""
        ...

    # ---- runners (use the pairs through the transport) ---------------------------------------

    def find_job(self, run_id: str, run_dir: str) -> str | None:
        """The id of a job already submitted for ``run_id``, if any (after a lost answer)."""
        ...

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult: ...

    def cancel(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        """Run ``cancel_argv``; a refusal is a SchedulerError."""
        ...

    def read_limits(self) -> ClusterLimits | None:
        """One command asking the scheduler its limits; None: it has none worth knowing."""
        ...

    def check_accounting(self) -> AccountingCheck | None:
        """Whether final states stay known after the scheduler forgets a job (None: no such
        thing here; the tasks' own status files are the record)."""
        ...


def run_poll(scheduler: Scheduler, jobs: Sequence[TrackedJob], timeout_s: float) -> PollResult:
    """One poll: run ``status_argvs`` through the scheduler's transport, parse the answers."""
    if not jobs:
        return PollResult()
    argvs = scheduler.status_argvs(jobs)
    results = [scheduler.transport.run(argv, timeout_s=timeout_s) for argv in argvs]
    polled = scheduler.parse_status(jobs, results)
    polled.scheduler_calls = len(argvs)
    return polled


# Runs the scheduler's submit command from inside the run folder; the folder is $1.
_IN_RUN_DIR = 'cd -- "$1" && shift && exec "$@"'


def submit_job(scheduler: Scheduler, request: SubmitRequest, timeout_s: float = 120.0) -> str:
    """Submit ``request`` (its script already in place) and return the job id."""
    argv = ["sh", "-c", _IN_RUN_DIR, "globtim-submit-job", request.run_dir]
    result = scheduler.transport.run(
        [*argv, *scheduler.submit_argv(request)], timeout_s=timeout_s
    )
    return scheduler.parse_submit(result)
