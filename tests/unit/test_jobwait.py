"""Waiting for a one-task job: the wait happens on the cluster, one round trip per window.

Runs the real wait script through the local transport (POSIX sh); the scheduler is a fake
that counts how often it is asked, since only the exit file's arrival is under test here.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.scheduler.base import PollResult, TrackedJob
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.transport.recording import RecordingTransport
from globtim_hpc.workflows import jobwait


class CountingScheduler:
    """Answers every poll with one task in ``state``."""

    def __init__(self, state: JobState = JobState.RUNNING) -> None:
        self.state = state
        self.polls = 0
        self.cancelled: list[str] = []

    def poll(self, jobs: list[TrackedJob]) -> PollResult:
        self.polls += 1
        return PollResult(tasks={job.run_id: {0: TaskStatus(0, self.state)} for job in jobs})

    def cancel(self, jobs: list[TrackedJob], **_: object) -> None:
        self.cancelled.extend(job.job_id for job in jobs)


WINDOW_S = 120.0  # far beyond the job's 0.5 s: a wait that ran it out would be plain to see


def _job(folder: Path) -> TrackedJob:
    return TrackedJob(run_id="probe", job_id="7", run_dir=str(folder), task_ids=("0000",))


def _write_exit_later(folder: Path, delay_s: float, code: int = 0) -> threading.Thread:
    def write() -> None:
        time.sleep(delay_s)
        (folder / "exit_code.tmp").write_text(f"{code}\n")
        (folder / "exit_code.tmp").rename(folder / "exit_code")

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_job_ending_inside_the_window_is_seen_in_one_round_trip(tmp_path: Path) -> None:
    scheduler = CountingScheduler()
    writer = _write_exit_later(tmp_path, 0.5, code=3)
    with RecordingTransport(LocalTransport()) as transport:
        outcome = jobwait.wait_job(
            transport, scheduler, _job(tmp_path), timeout_s=2 * WINDOW_S, poll_s=WINDOW_S  # type: ignore[arg-type]
        )
        writer.join()
        assert outcome.exit_code == 3 and not outcome.timed_out
        waits = [c for c in transport.commands if "globtim-wait" in c.what]
        # One wait, answered when the file appeared rather than when the window closed; the
        # scheduler was never asked.
        assert len(waits) == 1
        assert waits[0].what[-1] == str(int(WINDOW_S * 10))
        assert waits[0].seconds < WINDOW_S
        assert scheduler.polls == 0


def test_between_windows_the_scheduler_is_asked(tmp_path: Path) -> None:
    scheduler = CountingScheduler(JobState.RUNNING)
    with RecordingTransport(LocalTransport()) as transport:
        outcome = jobwait.wait_job(
            transport, scheduler, _job(tmp_path), timeout_s=0.6, poll_s=0.2  # type: ignore[arg-type]
        )
        assert outcome.timed_out and outcome.exit_code is None
        assert scheduler.polls >= 2  # after each window that ended without an exit file
        assert scheduler.cancelled == ["7"]


def test_a_job_the_scheduler_calls_ended_without_an_exit_file(tmp_path: Path) -> None:
    scheduler = CountingScheduler(JobState.CANCELLED)
    outcome = jobwait.wait_job(
        LocalTransport(), scheduler, _job(tmp_path), timeout_s=30, poll_s=0.2  # type: ignore[arg-type]
    )
    assert not outcome.timed_out and outcome.exit_code is None
    assert outcome.state is JobState.CANCELLED
    assert scheduler.polls == 1


def test_one_look_does_not_wait(tmp_path: Path) -> None:
    scheduler = CountingScheduler()
    with RecordingTransport(LocalTransport()) as transport:
        assert jobwait.look(transport, scheduler, _job(tmp_path)) is None  # type: ignore[arg-type]
        (wait,) = [c for c in transport.commands if "globtim-wait" in c.what]
        assert wait.what[-1] == "0"
        assert scheduler.polls == 1
