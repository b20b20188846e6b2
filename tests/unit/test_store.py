"""The local registry: schema, state changes, and two writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from globtim_hpc.models import JobState, RunPhase, TaskStatus
from globtim_hpc.registry.store import SCHEMA_VERSION, Store

RUN = "x_20260101-000000_abcdef01"


def add(store: Store, run_id: str = RUN, tasks: int = 3, config_hash: str = "h") -> None:
    store.add_run(
        run_id=run_id,
        problem="x",
        cluster="c",
        scheduler="slurm",
        remote_dir=f"/r/runs/{run_id}",
        task_ids=[f"{i:04d}" for i in range(tasks)],
        config_hash=config_hash,
        deploy_id=None,
        git_sha=None,
        plan={"tasks": []},
        submission=None,
    )


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_phases_jobs_and_unfinished_submissions(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store)
        assert [r.run_id for r in store.unfinished_submissions("c", "h")] == [RUN]
        store.set_phase(RUN, RunPhase.SUBMITTING)
        assert store.unfinished_submissions("c", "h")[0].phase is RunPhase.SUBMITTING
        store.record_job(RUN, "c", "42", adopted=True)
        assert store.unfinished_submissions("c", "h") == []
        run = store.run_for_job("c", "42")
        assert run is not None and run.job_id == "42" and run.phase is RunPhase.SUBMITTED
        assert [r.run_id for r in store.list_runs(active_only=True)] == [RUN]


def test_state_changes_are_recorded_once_and_shown_once(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store)
        store.record_job(RUN, "c", "42")
        first = store.update_tasks(
            RUN, [TaskStatus(0, JobState.RUNNING), TaskStatus(1, JobState.PENDING)]
        )
        assert [(c.task_index, c.old_state, c.new_state) for c in first] == [
            (0, "PENDING", "RUNNING")
        ]
        again = store.update_tasks(RUN, [TaskStatus(0, JobState.RUNNING)])
        assert again == []
        assert len(store.changes_since_seen(RUN)) == 1
        assert store.changes_since_seen(RUN) == []
        store.update_tasks(RUN, [TaskStatus(i, JobState.COMPLETED) for i in range(3)])
        assert store.list_runs(active_only=True) == []


def _writer(state_dir: str, worker: int) -> None:
    with Store.open(Path(state_dir)) as store:
        for i in range(25):
            add(store, run_id=f"w{worker}_20260101-000000_{i:08x}", tasks=2)
            store.update_tasks(
                f"w{worker}_20260101-000000_{i:08x}", [TaskStatus(0, JobState.RUNNING)]
            )


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store.open(tmp_path) as store:
        assert len(store.list_runs()) == 50


def test_deployments_latest_verified(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.latest_deployment("c") is None
        store.record_deployment(
            deploy_id="a",
            cluster="c",
            git_sha="s1",
            dirty=False,
            remote_dir="/r/code/a",
            verified=True,
            info={},
        )
        store.record_deployment(
            deploy_id="b",
            cluster="c",
            git_sha="s2",
            dirty=True,
            remote_dir="/r/code/b",
            verified=False,
            info={},
        )
        latest = store.latest_deployment("c")
        assert latest is not None and latest["deploy_id"] == "a"
        unverified = store.latest_deployment("c", verified_only=False)
        assert unverified is not None and unverified["deploy_id"] == "b"
