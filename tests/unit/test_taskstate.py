"""The one owner of task state (``taskstate.decide``), and what feeds it: status files, polls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from globtim_hpc.errors import UsageError
from globtim_hpc.jobs.statusfile import (
    parse_status,
    parse_status_listing,
    parse_status_with_reason,
    status_files_argv,
)
from globtim_hpc.models import JobState, StatusFile, TaskStatus
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import PollResult, TrackedJob
from globtim_hpc.scheduler.slurm import SlurmScheduler, sacct_since
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.offline import OfflineTransport
from globtim_hpc.workflows.monitor import PollInterval, poll_runs
from globtim_hpc.workflows.taskstate import decide, is_settled, outputs_final

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


def merge_task(
    index: int,
    scheduler: TaskStatus | None,
    status_file: StatusFile | None,
    *,
    time_limit_s: float | None = None,
    previous: TaskStatus | None = None,
) -> TaskStatus:
    """A poll's decision: the scheduler was asked (None: it no longer knows the task)."""
    return decide(
        index, previous=previous, scheduler=scheduler, scheduler_asked=True,
        status_file=status_file, time_limit_s=time_limit_s,
    )  # fmt: skip


task_is_settled = is_settled


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
    assert task.julia_version == "1.10.4" and not outputs_final(task)
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
    # The limit known from an earlier poll is used when the caller has none.
    before = TaskStatus(task_index=0, state=JobState.RUNNING, time_limit_s=60.0)
    assert merge_task(0, None, term, previous=before).state is JobState.TIMEOUT


def test_other_ends_of_a_gone_job_stay_unknown_with_a_reason() -> None:
    killed = merge_task(0, None, status("RUNNING"))
    assert killed.state is JobState.UNKNOWN and "SIGKILL" in (killed.reason or "")
    assert task_is_settled(killed)
    hup = merge_task(0, None, status("SIGNALLED", exit_code=129, signal="HUP"))
    assert hup.state is JobState.UNKNOWN and "HUP" in (hup.reason or "")
    nothing = merge_task(0, None, None)
    assert nothing.state is JobState.UNKNOWN and nothing.reason


def test_settled_waits_a_while_for_accounting() -> None:
    waiting = TaskStatus(
        task_index=0, state=JobState.FAILED, awaiting_accounting=True,
        awaiting_since="2026-11-29T10:00:00+00:00",
    )  # fmt: skip
    soon = datetime(2026, 11, 29, 10, 0, 30, tzinfo=timezone.utc)
    later = datetime(2026, 11, 29, 10, 1, 1, tzinfo=timezone.utc)
    assert not task_is_settled(waiting, soon) and task_is_settled(waiting, later)
    assert not task_is_settled(TaskStatus(task_index=0, state=JobState.RUNNING))


def test_the_wait_for_accounting_starts_at_the_first_poll_that_waits() -> None:
    final = sched(JobState.COMPLETED, awaiting_accounting=True)
    first = merge_task(0, final, status("EXITED", exit_code=0))
    assert first.awaiting_since is not None and not task_is_settled(first)
    earlier = replace(first, awaiting_since="2026-11-29T10:00:00+00:00")
    second = merge_task(0, final, status("EXITED", exit_code=0), previous=earlier)
    assert second.awaiting_since == earlier.awaiting_since and task_is_settled(second)


def test_without_the_scheduler_only_an_ended_status_file_decides() -> None:
    def unasked(previous: TaskStatus | None, file: StatusFile | None) -> TaskStatus:
        return decide(0, previous=previous, scheduler=None, scheduler_asked=False,
                      status_file=file, time_limit_s=600.0)  # fmt: skip

    pending = TaskStatus(task_index=0, state=JobState.PENDING)
    assert unasked(pending, status("EXITED", exit_code=0)).state is JobState.COMPLETED
    assert unasked(pending, status("EXITED", exit_code=5)).exit_code == 5
    running = unasked(pending, status("RUNNING"))
    # Not asked is not lost: a status file that says RUNNING is a task still running.
    assert running.state is JobState.RUNNING and not running.lost and not outputs_final(running)
    assert unasked(pending, None).state is JobState.PENDING
    assert unasked(None, None).state is JobState.UNKNOWN and not is_settled(unasked(None, None))


def test_a_final_state_is_never_replaced_by_a_later_non_final_one() -> None:
    done = merge_task(0, sched(JobState.COMPLETED, exit_code=0), status("EXITED", exit_code=0))
    for later in (sched(JobState.RUNNING), sched(JobState.COMPLETING), None):
        assert merge_task(0, later, None, previous=done) is done
    # A later final word with more to say (an inferred OOM from sacct) does replace it.
    oom = sched(JobState.OUT_OF_MEMORY, scheduler_state="FAILED")
    assert merge_task(0, oom, None, previous=done).state is JobState.OUT_OF_MEMORY


def test_outputs_are_final_once_the_status_file_says_the_task_ended() -> None:
    completing = merge_task(0, sched(JobState.COMPLETING), status("EXITED", exit_code=0))
    assert completing.state is JobState.COMPLETING and outputs_final(completing)
    lost = merge_task(0, None, status("RUNNING"))
    assert lost.lost and outputs_final(lost) and is_settled(lost)


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


class ScriptedTransport(OfflineTransport):
    """Answers each command by its program name; records every argv; refuses the rest."""

    def __init__(self, answers: dict[str, CommandResult]) -> None:
        super().__init__("scripted")
        self.answers = answers
        self.calls: list[list[str]] = []

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        self.calls.append(list(argv))
        answer = self.answers[argv[0]]
        return CommandResult(tuple(argv), answer.exit_status, answer.stdout, answer.stderr)


def result(rc: int, out: str = "", err: str = "") -> CommandResult:
    return CommandResult((), rc, out.encode(), err.encode())


def squeue_line(
    job: str, index: int, state: str, wait_status: str = "0", name: str = RUN_ID
) -> str:
    return (
        f"{job}_{index}|{job}|{index}|{int(job) + index}|{state}|None|falcon|0:05|1:00:00|"
        f"{wait_status}|1G|2026-11-29T10:00:00|2026-11-29T10:00:05|{name}|"
    )


def test_poll_is_one_squeue_and_one_sacct_for_any_number_of_jobs() -> None:
    jobs = [
        TrackedJob(f"r{n}", str(100 * (n + 1)), f"/runs/r{n}", ("0000", "0001")) for n in range(5)
    ]
    lines = [squeue_line(j.job_id, i, "RUNNING", name=j.run_id) for j in jobs for i in range(2)]
    transport = ScriptedTransport({"squeue": result(0, "\n".join(lines)), "sacct": result(0, "")})
    poll = SlurmScheduler(transport).poll(jobs)
    assert [c[0] for c in transport.calls] == ["squeue", "sacct"]
    assert poll.scheduler_calls == 2 and poll.notes == []
    assert all(len(poll.tasks[j.run_id]) == 2 for j in jobs)


def test_poll_without_accounting_notes_it_once_and_leaves_out_what_slurm_forgot() -> None:
    job = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000", "0001"))
    transport = ScriptedTransport(
        {
            "squeue": result(0, squeue_line("7", 0, "RUNNING")),
            "sacct": result(1, "", "Slurm accounting storage is disabled\n"),
        }
    )
    poll = SlurmScheduler(transport).poll([job])
    assert [c[0] for c in transport.calls] == ["squeue", "sacct"]
    assert len(poll.notes) == 1 and "accounting is disabled" in poll.notes[0]
    assert poll.tasks[RUN_ID][0].state is JobState.RUNNING
    assert 1 not in poll.tasks[RUN_ID] and poll.status_files is None


def test_poll_tolerates_every_id_aged_out() -> None:
    job = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000",))
    transport = ScriptedTransport(
        {
            "squeue": result(1, "", "slurm_load_jobs error: Invalid job id specified\n"),
            "sacct": result(
                1, "", "sacct: error: Problem talking to the database: Connection refused\n"
            ),
        }
    )
    poll = SlurmScheduler(transport).poll([job])
    assert poll.tasks[RUN_ID] == {}
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
    task = SlurmScheduler(transport).poll([job]).tasks[RUN_ID][0]
    assert (task.state, task.signal) == (JobState.FAILED, 9)
    assert task.awaiting_accounting


def test_a_reused_job_id_is_credited_only_to_the_run_it_names() -> None:
    """After SLURM's ids restart, job 7 of an old run and job 7 of a new one: sacct and squeue
    describe the new one, whose name is the new run's id."""
    old = TrackedJob(RUN_ID, "7", RUN_DIR, ("0000",))
    new_id = "demo_20261130-090000_99999999"
    new = TrackedJob(new_id, "7", f"/projects/x/runs/{new_id}", ("0000",))
    sacct_row = f"7|RUNNING|0:0|00:00:01|01:00:00||1G|1|00:00:00|falcon|x|Unknown|None|{new_id}\n"
    transport = ScriptedTransport(
        {
            "squeue": result(0, squeue_line("7", 0, "RUNNING", name=new_id)),
            "sacct": result(0, sacct_row),
        }
    )
    poll = SlurmScheduler(transport).poll([old, new])
    assert poll.tasks[new_id][0].state is JobState.RUNNING
    assert poll.tasks[RUN_ID] == {}  # forgotten: its own status file decides, not job 7's news


def test_sacct_since_is_a_day_before_the_earliest_submission() -> None:
    assert (
        sacct_since(["2026-11-29T10:00:00+00:00", "2026-11-28T09:00:00+00:00"])
        == "2026-11-27T09:00:00"
    )
    assert sacct_since(["2026-11-29T10:00:00+00:00", None]) is None


# ---- poll_runs: registry, changes, rule 6 -------------------------------------------------


class FixedScheduler:
    """A scheduler whose polls answer from a list; the transport reads status files."""

    name = "fixed"
    runs_on = "nowhere"
    needs_bash_4_3 = False
    reruns_tasks = False
    holds_for_jobs = False

    def __init__(self, transport: ScriptedTransport, states: list[dict[int, TaskStatus]]) -> None:
        self.transport = transport
        self.states = states
        self.polls = 0

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        tasks = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return PollResult(tasks={jobs[0].run_id: tasks}, scheduler_calls=1)


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
        other_running = TaskStatus(task_index=1, state=JobState.RUNNING, sources=["squeue"])
        other_done = TaskStatus(
            task_index=1, state=JobState.COMPLETED, exit_code=0, sources=["sacct"]
        )
        done_file = json.dumps(status("EXITED", exit_code=0, index=1).to_dict())
        # Task 0 left no status file; task 1's is there once it has ended.
        transport = ScriptedTransport(
            {"find": result(0, f"@@globtim-status {RUN_DIR}/status/0001.json\n{done_file}\n")}
        )
        scheduler = FixedScheduler(
            transport, [{0: done, 1: other_running}, {1: other_running}, {1: other_done}]
        )
        run = store.get_run(RUN_ID)
        assert run is not None

        first = poll_runs(store, scheduler, [run])[0]  # type: ignore[arg-type]
        assert [t.status.state for t in first.tasks] == [JobState.COMPLETED, JobState.RUNNING]
        assert {(c.task_index, c.old_state, c.new_state) for c in first.changes} == {
            (0, "PENDING", "COMPLETED"),
            (1, "PENDING", "RUNNING"),
        }

        # SLURM forgets task 0 and it has no status file: it stays COMPLETED (rule 7).
        second = poll_runs(store, scheduler, [run])[0]  # type: ignore[arg-type]
        assert second.tasks[0].status.state is JobState.COMPLETED
        assert second.changes == [] and not second.all_settled

        third = poll_runs(store, scheduler, [run])[0]  # type: ignore[arg-type]
        assert [(c.task_index, c.new_state) for c in third.changes] == [(1, "COMPLETED")]
        assert third.all_completed and third.all_settled
        assert third.tasks[1].status.julia_version == "1.10.4"

        # Every task is final: a further call does not poll at all.
        fourth = poll_runs(store, scheduler, [run])[0]  # type: ignore[arg-type]
        assert scheduler.polls == 3 and fourth.changes == [] and fourth.all_completed


def test_a_registry_row_written_by_an_older_version_still_reads() -> None:
    legacy = {
        "task_index": 2, "state": "FAILED", "exit_code": None, "signal": 9, "sources": ["sacct"],
        "extra": {"gone": True, "awaiting_accounting": True, "awaited_accounting_polls": 2,
                  "slurm_state": "CANCELLED",
                  "status_file": status("RUNNING", index=2).to_dict()},
    }  # fmt: skip
    task = TaskStatus.from_dict(legacy)
    assert (task.lost, task.awaiting_accounting) == (True, True)
    assert task.scheduler_state == "CANCELLED" and task.status_file == status("RUNNING", index=2)
    assert TaskStatus.from_dict(task.to_dict()) == task
