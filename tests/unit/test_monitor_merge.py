"""The rules that combine the scheduler's view with a task's own status file, and what feeds them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, BinaryIO

import pytest

from globtim_hpc.errors import UsageError
from globtim_hpc.jobs.statusfile import (
    StatusFile,
    parse_status,
    parse_status_listing,
    parse_status_with_reason,
    status_files_argv,
)
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import PollResult, TrackedJob
from globtim_hpc.scheduler.slurm import SlurmScheduler, sacct_since
from globtim_hpc.transport.base import ClosesOnExit, CommandResult, ProgressFn
from globtim_hpc.workflows.monitor import (
    PollInterval,
    merge_task,
    poll_runs,
    task_is_settled,
)

RUN_ID = "demo_20261129-104500_1a2b3c4d"
RUN_DIR = f"/projects/x/runs/{RUN_ID}"


def status(
    state: str,
    *,
    exit_code: int | None = None,
    signal: str | None = None,
    started: str = "2026-11-29T10:00:00Z",
    ended: str | None = "2026-11-29T10:01:05Z",
    index: int = 0,
) -> StatusFile:
    return StatusFile(
        run_id=RUN_ID,
        task_id=f"{index:04d}",
        task_index=index,
        job_id="7",
        array_job_id="7",
        host="falcon",
        started_at=started,
        ended_at=None if state == "RUNNING" else ended,
        exit_code=exit_code,
        signal=signal,
        state=state,
        julia_version="1.10.4",
    )


def sched(state: JobState, **fields: Any) -> TaskStatus:
    return TaskStatus(task_index=0, state=state, sources=["squeue"], **fields)


# ---- status files -------------------------------------------------------------------------


def test_parse_status_roundtrip_and_tolerance() -> None:
    full = status("EXITED", exit_code=0)
    assert parse_status(json.dumps(full.to_dict())) == full
    text = json.dumps(full.to_dict())
    for broken, why in [
        (text[: len(text) // 2], "truncated"),
        ("", "empty"),
        ("[1, 2]", "object"),
        (json.dumps({**full.to_dict(), "schema": "other/1"}), "schema"),
        (json.dumps({**full.to_dict(), "state": "DONE"}), "state"),
        (json.dumps({**full.to_dict(), "exit_code": None}), "exit_code"),
        (json.dumps({**full.to_dict(), "task_index": "x"}), "task_index"),
    ]:
        parsed, reason = parse_status_with_reason(broken)
        assert parsed is None and reason and why in reason


def test_status_listing_frames_files_per_run() -> None:
    argv = status_files_argv([RUN_DIR, "/other/run"])
    assert argv[0] == "find" and f"{RUN_DIR}/status" in argv and "awk" in argv
    first = json.dumps(status("EXITED", exit_code=0).to_dict())
    second = json.dumps(status("RUNNING", index=1).to_dict(), indent=2)  # multi-line is fine
    stdout = (
        f"@@globtim-status {RUN_DIR}/status/0000.json\n{first}\n"
        f"@@globtim-status {RUN_DIR}/status/0001.json\n{second}\n"
        f'@@globtim-status {RUN_DIR}/status/0002.json\n{{"schema": "globtim-hp\n'
        "@@globtim-status /elsewhere/status/0000.json\n{}\n"
    )
    listing = parse_status_listing(stdout, [RUN_DIR, "/other/run"])
    assert set(listing.by_run[RUN_DIR]) == {"0000", "0001"}
    assert listing.by_run["/other/run"] == {}
    assert listing.get(RUN_DIR, "0001") == status("RUNNING", index=1)
    assert len(listing.problems) == 1 and "0002.json" in listing.problems[0]


def test_signal_and_elapsed() -> None:
    term = status("SIGNALLED", exit_code=143, signal="TERM")
    assert term.signal_number == 15 and term.elapsed_s == 65.0
    assert status("SIGNALLED", exit_code=130, signal="SIGINT").signal_number == 2
    assert status("RUNNING").elapsed_s is None


# ---- the merge rules ----------------------------------------------------------------------


def test_live_states_come_from_the_scheduler() -> None:
    task = merge_task(0, sched(JobState.RUNNING, node="falcon"), status("RUNNING"))
    assert task.state is JobState.RUNNING and "status-file" in task.sources
    assert task.extra["julia_version"] == "1.10.4"
    pending = merge_task(0, sched(JobState.PENDING, reason="Priority"), None)
    assert (pending.state, pending.reason) == (JobState.PENDING, "Priority")


def test_completed_needs_a_clean_status_file() -> None:
    ok = merge_task(0, sched(JobState.COMPLETED, exit_code=0), status("EXITED", exit_code=0))
    assert (ok.state, ok.exit_code) == (JobState.COMPLETED, 0)
    contradicted = merge_task(
        0, sched(JobState.COMPLETED, exit_code=0), status("EXITED", exit_code=2)
    )
    assert (contradicted.state, contradicted.exit_code) == (JobState.FAILED, 2)
    no_file = merge_task(0, sched(JobState.COMPLETED, exit_code=0), None)
    assert no_file.state is JobState.COMPLETED and "no status file" in (no_file.reason or "")


def test_failed_takes_the_status_file_exit_code() -> None:
    task = merge_task(0, sched(JobState.FAILED, exit_code=1), status("EXITED", exit_code=3))
    assert (task.state, task.exit_code) == (JobState.FAILED, 3)


@pytest.mark.parametrize(
    "winner",
    [
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.CANCELLED,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
    ],
)
def test_scheduler_verdicts_win_over_a_failing_status_file(winner: JobState) -> None:
    task = merge_task(0, sched(winner), status("EXITED", exit_code=137))
    assert task.state is winner and task.exit_code == 137


def test_unknown_slurm_word_stays_unknown_even_with_exit_zero() -> None:
    word = TaskStatus(task_index=0, state=JobState.UNKNOWN, sources=["sacct"], reason="REVOKED")
    task = merge_task(0, word, status("EXITED", exit_code=0))
    assert task.state is JobState.UNKNOWN


def test_gone_job_is_decided_by_its_status_file() -> None:
    assert merge_task(0, None, status("EXITED", exit_code=0)).state is JobState.COMPLETED
    failed = merge_task(0, None, status("EXITED", exit_code=4))
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 4)
    assert "status-file" in failed.sources and task_is_settled(failed)


def test_sigterm_at_the_limit_is_timeout_before_it_is_cancel() -> None:
    term = status("SIGNALLED", exit_code=143, signal="TERM")  # ran 65 s
    timeout = merge_task(0, None, term, time_limit_s=60.0)
    assert timeout.state is JobState.TIMEOUT and timeout.signal == 15
    cancelled = merge_task(0, None, term, time_limit_s=600.0)
    assert cancelled.state is JobState.CANCELLED
    undecided = merge_task(0, None, term, time_limit_s=None)
    assert undecided.state is JobState.UNKNOWN and "cannot be told" in (undecided.reason or "")
    # The scheduler's own limit (from an earlier poll) is used when the caller has none.
    lost = TaskStatus(task_index=0, state=JobState.UNKNOWN, time_limit_s=60.0)
    assert merge_task(0, lost, term).state is JobState.TIMEOUT


def test_other_ends_of_a_gone_job_stay_unknown_with_a_reason() -> None:
    killed = merge_task(0, None, status("RUNNING"))
    assert killed.state is JobState.UNKNOWN and "SIGKILL" in (killed.reason or "")
    assert task_is_settled(killed)
    hup = merge_task(0, None, status("SIGNALLED", exit_code=129, signal="HUP"))
    assert hup.state is JobState.UNKNOWN and "HUP" in (hup.reason or "")
    nothing = merge_task(0, None, None)
    assert nothing.state is JobState.UNKNOWN and nothing.reason


def test_settled_waits_for_accounting_a_few_polls() -> None:
    waiting = TaskStatus(task_index=0, state=JobState.FAILED, extra={"awaiting_accounting": True})
    assert not task_is_settled(waiting)
    waiting.extra["awaited_accounting_polls"] = 3
    assert task_is_settled(waiting)
    assert not task_is_settled(TaskStatus(task_index=0, state=JobState.RUNNING))


# ---- the poll interval --------------------------------------------------------------------


def test_interval_backs_off_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLOBTIM_HPC_POLL_FLOOR_S", raising=False)
    interval = PollInterval()
    assert interval.start_s == 5.0
    waits = [interval.next(False) for _ in range(8)]
    assert waits[:3] == [7.5, 11.25, 16.875] and waits[-1] == 60.0
    assert interval.next(True) == 5.0
    with pytest.raises(UsageError):
        PollInterval(2.0)
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "0.1")  # the hard floor still holds
    assert PollInterval().start_s == 1.0
    with pytest.raises(UsageError):
        PollInterval(floor_s=0.5)


# ---- SlurmScheduler.poll over a scripted transport -----------------------------------------


class ScriptedTransport(ClosesOnExit):
    """Answers each command by its program name; records every argv."""

    label = "scripted"

    def __init__(self, answers: dict[str, CommandResult]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        self.calls.append(list(argv))
        answer = self.answers[argv[0]]
        return CommandResult(tuple(argv), answer.exit_status, answer.stdout, answer.stderr)

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        raise AssertionError("not used")

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        raise AssertionError("not used")

    def get_bytes(self, remote_path: str) -> bytes:
        raise AssertionError("not used")

    def close(self) -> None:
        pass



def result(rc: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult((), rc, out.encode(), err.encode())


def squeue_line(job: str, index: int, state: str, wait_status: str = "0") -> str:
    return (
        f"{job}_{index}|{job}|{index}|{int(job) + index}|{state}|None|falcon|0:05|1:00:00|"
        f"{wait_status}|1G|2026-11-29T10:00:00|2026-11-29T10:00:05|{RUN_ID}|"
    )


def test_poll_is_one_squeue_and_one_sacct_for_any_number_of_jobs() -> None:
    jobs = [
        TrackedJob(f"r{n}", str(100 * (n + 1)), f"/runs/r{n}", ("0000", "0001")) for n in range(5)
    ]
    lines = [squeue_line(j.job_id, i, "RUNNING") for j in jobs for i in range(2)]
    transport = ScriptedTransport({"squeue": result(0, "\n".join(lines)), "sacct": result(0, "")})
    poll = SlurmScheduler(transport).poll(jobs)
    assert [c[0] for c in transport.calls] == ["squeue", "sacct"]
    assert poll.scheduler_calls == 2 and poll.notes == []
    assert all(len(poll.tasks[j.job_id]) == 2 for j in jobs)


def test_poll_without_accounting_notes_it_once_and_reads_status_files() -> None:
    job = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000", "0001"))
    done = json.dumps(status("EXITED", exit_code=0, index=1).to_dict())
    transport = ScriptedTransport(
        {
            "squeue": result(0, squeue_line("7", 0, "RUNNING")),
            "sacct": result(1, "", "Slurm accounting storage is disabled\n"),
            "find": result(0, f"@@globtim-status {RUN_DIR}/status/0001.json\n{done}\n"),
        }
    )
    poll = SlurmScheduler(transport).poll([job])
    assert [c[0] for c in transport.calls] == ["squeue", "sacct", "find"]
    assert len(poll.notes) == 1 and "accounting is disabled" in poll.notes[0]
    assert poll.tasks["7"][0].state is JobState.RUNNING
    handed = poll.tasks["7"][1]
    assert handed.state is JobState.UNKNOWN and parse_status(handed.extra["status_file_text"])
    assert (
        merge_task(1, handed, parse_status(handed.extra["status_file_text"])).state
        is JobState.COMPLETED
    )


def test_poll_tolerates_every_id_aged_out() -> None:
    job = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000",))
    transport = ScriptedTransport(
        {
            "squeue": result(1, "", "slurm_load_jobs error: Invalid job id specified\n"),
            "sacct": result(
                1, "", "sacct: error: Problem talking to the database: Connection refused\n"
            ),
            "find": result(1, "", f"find: '{RUN_DIR}/status': No such file or directory\n"),
        }
    )
    poll = SlurmScheduler(transport).poll([job])
    task = poll.tasks["7"][0]
    assert task.state is JobState.UNKNOWN and "no status file" in (task.reason or "")
    assert any("slurmdbd" in note for note in poll.notes)


def test_squeue_final_waits_for_sacct_to_catch_up() -> None:
    job = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000",))
    transport = ScriptedTransport(
        {
            "squeue": result(0, squeue_line("7", 0, "FAILED", "9")),
            "sacct": result(
                0, "7_0|RUNNING|0:0|00:00:01|01:00:00||1G|1|00:00:00|falcon|x|Unknown|None|r\n"
            ),
            "find": result(0, ""),
        }
    )
    task = SlurmScheduler(transport).poll([job]).tasks["7"][0]
    assert (task.state, task.signal) == (JobState.FAILED, 9)
    assert task.extra.get("awaiting_accounting") is True


def test_sacct_since_is_a_day_before_the_earliest_submission() -> None:
    assert (
        sacct_since(["2026-11-29T10:00:00+00:00", "2026-11-28T09:00:00+00:00"])
        == "2026-11-27T09:00:00"
    )
    assert sacct_since(["2026-11-29T10:00:00+00:00", None]) is None


# ---- poll_runs: registry, changes, rule 6 -------------------------------------------------


class FixedScheduler:
    name = "fixed"

    def __init__(self, states: list[dict[int, TaskStatus]]) -> None:
        self.states = states
        self.polls = 0

    def submit(self, script_path: str, *, run_id: str, run_dir: str, task_count: int) -> str:
        raise AssertionError("not used")

    def test_submit(self, script_path: str, *, run_dir: str) -> str | None:
        return None

    def find_job(self, run_id: str) -> str | None:
        return None

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        tasks = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return PollResult(tasks={jobs[0].job_id: tasks}, scheduler_calls=1)

    def cancel(self, job_id: str) -> None:
        pass


def test_poll_runs_records_changes_and_never_forgets_a_final_state() -> None:
    with Store.open() as store:
        store.add_run(
            run_id=RUN_ID,
            problem="demo",
            cluster="bed",
            scheduler="slurm",
            remote_dir=RUN_DIR,
            task_ids=["0000", "0001"],
            config_hash="h",
            deploy_id=None,
            git_sha=None,
            plan={"resources": {"time_min": 1}},
            submission=None,
        )
        store.record_job(RUN_ID, "bed", "7")
        done = sched(JobState.COMPLETED, exit_code=0)
        lost = TaskStatus(task_index=0, state=JobState.UNKNOWN, reason="gone")
        other_running = TaskStatus(task_index=1, state=JobState.RUNNING, sources=["squeue"])
        other_done = TaskStatus(
            task_index=1, state=JobState.COMPLETED, exit_code=0, sources=["sacct"]
        )
        other_done.extra["status_file_text"] = json.dumps(
            status("EXITED", exit_code=0, index=1).to_dict()
        )
        scheduler = FixedScheduler(
            [{0: done, 1: other_running}, {0: lost, 1: other_running}, {0: lost, 1: other_done}]
        )
        transport = ScriptedTransport({"find": result(0, "")})  # task 0 left no status file
        run = store.get_run(RUN_ID)
        assert run is not None

        first = poll_runs(store, transport, scheduler, [run])[0]
        assert [t.status.state for t in first.tasks] == [JobState.COMPLETED, JobState.RUNNING]
        assert {(c.task_index, c.old_state, c.new_state) for c in first.changes} == {
            (0, "PENDING", "COMPLETED"),
            (1, "PENDING", "RUNNING"),
        }

        # SLURM forgets task 0 and it has no status file: it stays COMPLETED (rule 6).
        second = poll_runs(store, transport, scheduler, [run])[0]
        assert second.tasks[0].status.state is JobState.COMPLETED
        assert second.changes == [] and not second.all_settled

        third = poll_runs(store, transport, scheduler, [run])[0]
        assert [(c.task_index, c.new_state) for c in third.changes] == [(1, "COMPLETED")]
        assert third.all_completed and third.all_settled
        assert third.tasks[1].status.extra["julia_version"] == "1.10.4"

        # Every task is final: a further call does not poll at all.
        fourth = poll_runs(store, transport, scheduler, [run])[0]
        assert scheduler.polls == 3 and fourth.changes == [] and fourth.all_completed
