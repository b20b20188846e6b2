"""A collection asks the scheduler while it lists the run folder: two round trips at once.

The scheduler's poll and the listing wait for each other here (with a generous limit), so a
collection that made them one after the other would fail, not merely be slower.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.errors import SchedulerError
from globtim_hpc.layout import new_run_id
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import PollResult, TrackedJob
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.workflows.collect import CollectOptions, collect_run

from .test_summary import fabricate, registered

WAIT_S = 30.0  # only a collection that does not overlap the two ever waits this long


class MeetingTransport(LocalTransport):
    """The listing (the first command of the caller's thread) starts only once the poll has."""

    def __init__(self, poll_started: threading.Event, listing_started: threading.Event) -> None:
        super().__init__()
        self.poll_started, self.listing_started = poll_started, listing_started
        self.met: list[bool] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if threading.current_thread() is threading.main_thread() and not self.met:
            self.listing_started.set()
            self.met.append(self.poll_started.wait(WAIT_S))
        return super().run(argv, **kwargs)


class MeetingScheduler(DirectScheduler):
    def __init__(self, transport: MeetingTransport, failure: BaseException | None = None) -> None:
        super().__init__(transport)
        self.meeting = transport
        self.failure = failure
        self.asked: list[list[str]] = []

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        self.meeting.poll_started.set()
        self.asked.append([job.job_id for job in jobs])
        self.meeting.met.append(self.meeting.listing_started.wait(WAIT_S))
        if self.failure is not None:
            raise self.failure
        return PollResult()  # the runner is not asked here: the status files decide


def collect(tmp_path: Path, failure: BaseException | None = None) -> tuple[Any, MeetingScheduler]:
    remote_root = tmp_path / "remote"
    run_id = new_run_id("4d_benchmark")
    run_dir = fabricate(remote_root, run_id, {"0000": ("EXITED", 0), "0001": ("RUNNING", None)})
    transport = MeetingTransport(threading.Event(), threading.Event())
    scheduler = MeetingScheduler(transport, failure)
    with Store.open() as store:
        run = registered(store, run_id, run_dir, ["0000", "0001"])
        options = CollectOptions(results_root=tmp_path / "results", fsync=False)
        result = collect_run(run, store=store, scheduler=scheduler, remote_root=str(remote_root),
                             options=options)
    return result, scheduler


def test_the_scheduler_is_asked_while_the_run_folder_is_listed(tmp_path: Path) -> None:
    result, scheduler = collect(tmp_path)
    assert scheduler.asked == [["7"]]
    assert scheduler.meeting.met == [True, True]
    # The answer was used: a task its status file calls running, but that the scheduler no
    # longer knows, is over (without an answer it stays running: the next test).
    assert result.finished_tasks == ["0000", "0001"]
    assert result.unfinished_tasks == []


def test_a_scheduler_that_cannot_answer_leaves_the_status_files_to_decide(tmp_path: Path) -> None:
    result, _ = collect(tmp_path, SchedulerError("squeue: slurm_load_jobs error"))
    assert result.finished_tasks == ["0000"]
    assert result.unfinished_tasks == [{"task_id": "0001", "state": "RUNNING"}]
    assert any("the scheduler was not consulted (squeue: slurm_load_jobs error)" in note
               for note in result.notes)


def test_a_fault_in_the_poll_is_raised_not_hidden(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        collect(tmp_path, ZeroDivisionError("a bug"))
