"""The Scheduler protocol. A scheduler talks to the cluster only through a Transport."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from globtim_hpc.models import TaskStatus


@dataclass(frozen=True)
class TrackedJob:
    """One submitted job (an array of ``task_count`` tasks) that a poll should report on."""

    run_id: str
    job_id: str
    run_dir: str  # the run folder on the cluster (see layout.RunLayout)
    task_ids: tuple[str, ...]  # task_ids[i] is the id of array index i
    submitted_at: str | None = None

    @property
    def task_count(self) -> int:
        return len(self.task_ids)


@dataclass
class PollResult:
    """Per job id, per array index, the scheduler's view; plus notes to show the user once."""

    tasks: dict[str, dict[int, TaskStatus]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scheduler_calls: int = 0


class Scheduler(Protocol):
    name: str

    def submit(self, script_path: str, *, run_id: str, run_dir: str, task_count: int) -> str:
        """Submit the script; return the (array) job id. Raise SchedulerError on refusal."""
        ...

    def test_submit(self, script_path: str, *, run_dir: str) -> str | None:
        """Ask the scheduler whether it would accept the script (``sbatch --test-only``).

        Return its message, or None when the scheduler has no such check.
        """
        ...

    def find_job(self, run_id: str) -> str | None:
        """The id of a job already submitted for ``run_id`` (found by name), if any."""
        ...

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        """The state of every task of every job, in a bounded number of scheduler calls."""
        ...

    def cancel(self, job_id: str) -> None: ...
