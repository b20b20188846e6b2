"""Cancel plans, looking back (--list), and the scheduler's cancel commands: no cluster needed.

--list must answer from the registry alone: every test here makes opening a connection fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from globtim_hpc.cli.monitor import main as monitor_main
from globtim_hpc.errors import UsageError
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import SubmitRequest, TrackedJob
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.transport.offline import OfflineTransport
from globtim_hpc.workflows.monitor.cancel import plan_cancel
from globtim_hpc.workflows.monitor.history import parse_since

CLUSTER = "testbed"


@pytest.fixture(autouse=True)
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was opened")

    monkeypatch.setattr("globtim_hpc.transport.factory.open_transport", refuse)


def _add(store: Store, run_id: str, states: list[JobState], *, job_id: str = "7",
         problem: str = "4d_benchmark") -> None:  # fmt: skip
    store.add_run(
        run_id=run_id, problem=problem, cluster=CLUSTER, scheduler="slurm",
        remote_dir=f"/r/runs/{run_id}", task_ids=[f"{i:02d}" for i in range(len(states))],
        config_hash=run_id, deploy_id=None, git_sha=None, plan={"tasks": []}, submission=None,
    )  # fmt: skip
    store.record_job(run_id, CLUSTER, job_id)
    store.update_tasks(run_id, [TaskStatus(i, state) for i, state in enumerate(states)])


OLD = "4d_benchmark_20261101-100000_aaaaaaa1"
DONE = "4d_benchmark_20261130-100000_aaaaaaa2"
MIXED = "lv_20261201-100000_aaaaaaa3"


def _registry(state_dir: Path) -> None:
    with Store.open(state_dir) as store:
        _add(store, OLD, [JobState.COMPLETED] * 2, job_id="5")
        _add(store, DONE, [JobState.COMPLETED] * 3, job_id="6")
        _add(store, MIXED, [JobState.FAILED, JobState.RUNNING, JobState.PENDING], problem="lv")
        store.record_collection(run_id=DONE, local_dir="/res/4d/x", manifest_sha256="0" * 64,
                                file_count=3, byte_count=10, complete=True)  # fmt: skip


def _list(capsys: pytest.CaptureFixture[str], *flags: str) -> list[dict[str, object]]:
    code = monitor_main(["--cluster", CLUSTER, "--list", "--json", *flags])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = json.loads(out)["runs"]
    assert isinstance(runs, list)
    return runs


def test_list_is_newest_first_with_states_and_where_collected(
    isolated_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _registry(isolated_state)
    runs = _list(capsys)
    assert [r["run_id"] for r in runs] == [MIXED, DONE, OLD]
    assert [r["state"] for r in runs] == ["ACTIVE", "COMPLETED", "COMPLETED"]
    assert runs[0]["counts"] == {"FAILED": 1, "RUNNING": 1, "PENDING": 1}
    assert runs[1]["collected_to"] == ["/res/4d/x"] and runs[2]["collected_to"] == []


def test_list_filters(isolated_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _registry(isolated_state)
    assert [r["run_id"] for r in _list(capsys, "--problem", "lv")] == [MIXED]
    assert [r["run_id"] for r in _list(capsys, "--state", "FAILED")] == [MIXED]  # a task's
    assert [r["run_id"] for r in _list(capsys, "--state", "completed")] == [DONE, OLD]
    # every run here was recorded just now, so an age keeps all and a future date none
    assert len(_list(capsys, "--since", "1h")) == 3
    assert _list(capsys, "--since", "2999-01-01") == []
    assert monitor_main(["--cluster", CLUSTER, "--list", "--state", "bogus"]) == 2
    assert monitor_main(["--cluster", CLUSTER, "--since", "3d"]) == 2  # only with --list


def test_parse_since_reads_ages_and_dates() -> None:
    from datetime import datetime, timezone

    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert parse_since("12h", now) == datetime(2026, 12, 2, 0, 0, tzinfo=timezone.utc)
    assert parse_since("2w", now).day == 18
    assert parse_since("2026-12-01", now) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    with pytest.raises(UsageError):
        parse_since("yesterday", now)


def _job(task_count: int, job_id: str = "40") -> TrackedJob:
    return TrackedJob("r", job_id, "/r/runs/r", tuple(f"{i:04d}" for i in range(task_count)))


def test_scancel_is_one_command_with_one_id_per_job() -> None:
    slurm = SlurmScheduler(OfflineTransport())
    jobs = [_job(1000), _job(4, "41"), _job(10, "42")]
    argv = slurm.cancel_argv(jobs, {"41": [0, 1, 2, 3], "42": [0, 1, 2, 3, 7]})
    assert argv == ["scancel", "40", "41", "42_[0-3,7]"]


def test_sbatch_carries_afterok_on_every_parent_job() -> None:
    slurm = SlurmScheduler(OfflineTransport())
    request = SubmitRequest("r", "/d", "/d/job.sbatch", 2, 2, 60, 1, after_job_ids=("5", "9"))
    assert "--dependency=afterok:5:9" in slurm.submit_argv(request)
    with pytest.raises(UsageError, match="--after"):
        DirectScheduler(OfflineTransport()).submit_argv(request)


def test_direct_cancel_names_chosen_tasks_per_run_folder() -> None:
    direct = DirectScheduler(OfflineTransport())
    argv = direct.cancel_argv([_job(3), _job(5, "41")], {"41": [4, 1]})
    assert argv[4:] == ["/r/runs/r", "-", "/r/runs/r", "1,4"]


def test_cancel_plan_skips_final_tasks_and_names_bad_ones(isolated_state: Path) -> None:
    _registry(isolated_state)
    slurm = SlurmScheduler(OfflineTransport())
    with Store.open(isolated_state) as store:
        mixed = store.get_run(MIXED)
        done = store.get_run(DONE)
        assert mixed is not None and done is not None
        plan = plan_cancel(store, slurm, [mixed])
        assert plan.indices == {"7": [1, 2]} and plan.skipped == {MIXED: [0]}
        assert plan.argv == ["scancel", "7"]
        some = plan_cancel(store, slurm, [mixed], [0, 2])
        assert some.argv == ["scancel", "7_[2]"]
        with pytest.raises(UsageError, match="no task 3-4: it has 3 task"):
            plan_cancel(store, slurm, [mixed], [3, 4])
        with pytest.raises(UsageError, match="nothing to cancel"):
            plan_cancel(store, slurm, [done])


def test_a_cancelled_task_the_scheduler_forgot_is_cancelled_and_others_stay() -> None:
    from globtim_hpc.workflows.taskstate import decide, is_settled

    asked = TaskStatus(0, JobState.PENDING, cancel_requested_at="2026-12-02T10:00:00+00:00")
    forgotten = decide(0, previous=asked, scheduler=None, scheduler_asked=True, status_file=None)
    assert forgotten.state is JobState.CANCELLED and not forgotten.lost
    stale = TaskStatus(0, JobState.PENDING, sources=["sacct"])  # squeue dropped it already
    assert decide(0, previous=asked, scheduler=stale, scheduler_asked=True,
                  status_file=None).state is JobState.CANCELLED  # fmt: skip
    running = TaskStatus(0, JobState.RUNNING, sources=["squeue"])
    kept = decide(0, previous=asked, scheduler=running, scheduler_asked=True, status_file=None)
    assert kept.state is JobState.RUNNING and kept.cancel_requested_at == asked.cancel_requested_at
    never_asked = decide(0, previous=TaskStatus(0, JobState.PENDING), scheduler=None,
                         scheduler_asked=True, status_file=None)  # fmt: skip
    assert never_asked.state is JobState.UNKNOWN
    held = TaskStatus(2, JobState.PENDING, reason="DependencyNeverSatisfied")
    assert is_settled(held) and not is_settled(TaskStatus(3, JobState.PENDING, reason="Dependency"))
