"""The local registry: schema, state changes, and two writers at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from globtim_hpc.errors import UsageError
from globtim_hpc.models import JobState, RunPhase, TaskStatus
from globtim_hpc.registry.lookup import find_run
from globtim_hpc.registry.schema import SCHEMA_VERSION
from globtim_hpc.registry.store import Store

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
        (run,) = store.runs_for_job("c", "42")
        assert run.job_id == "42" and run.phase is RunPhase.SUBMITTED
        assert [r.run_id for r in store.list_runs(active_only=True)] == [RUN]


def test_state_changes_are_recorded_once_and_shown_once(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store)
        store.record_job(RUN, "c", "42")
        _, first = store.update_tasks(
            RUN, [TaskStatus(0, JobState.RUNNING), TaskStatus(1, JobState.PENDING)]
        )
        assert [(c.task_index, c.old_state, c.new_state) for c in first] == [
            (0, "PENDING", "RUNNING")
        ]
        _, again = store.update_tasks(RUN, [TaskStatus(0, JobState.RUNNING)])
        assert again == []
        assert len(store.changes_since_seen(RUN)) == 1
        assert store.changes_since_seen(RUN) == []
        store.update_tasks(RUN, [TaskStatus(i, JobState.COMPLETED) for i in range(3)])
        assert store.list_runs(active_only=True) == []


def test_a_job_id_reused_by_slurm_keeps_both_runs(tmp_path: Path) -> None:
    """SLURM starts its ids at 1 again after a rebuild: the second run is tracked, not dropped."""
    other = "y_20260102-000000_abcdef02"
    with Store.open(tmp_path) as store:
        add(store)
        add(store, run_id=other, config_hash="h2")
        store.record_job(RUN, "c", "1")
        store.record_job(other, "c", "1")
        store.record_job(other, "c", "1")  # recording the same job again changes nothing
        assert [r.run_id for r in store.runs_for_job("c", "1")] == [other, RUN]
        assert (store.get_run(other) or RUN).job_id == "1"  # type: ignore[union-attr]
        assert {r.run_id for r in store.list_runs(active_only=True)} == {RUN, other}
        with pytest.raises(UsageError) as caught:
            find_run(store, "c", job_id="1")
        assert RUN in caught.value.message and other in caught.value.message
        assert find_run(store, "c", run_id=other).run_id == other


def test_a_final_state_is_never_replaced_by_an_older_non_final_one(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store)
        store.record_job(RUN, "c", "42")
        store.update_tasks(RUN, [TaskStatus(0, JobState.COMPLETED, exit_code=0)])
        stored, changes = store.update_tasks(RUN, [TaskStatus(0, JobState.RUNNING)])
        assert changes == [] and stored[0].state is JobState.COMPLETED
        assert stored[0].exit_code == 0
        _, better = store.update_tasks(RUN, [TaskStatus(0, JobState.OUT_OF_MEMORY)])
        assert [(c.old_state, c.new_state) for c in better] == [("COMPLETED", "OUT_OF_MEMORY")]


def _racer(state_dir: str, worker: int, rounds: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One command's view of a run, always one step behind or ahead of the other's."""
    seen: list[int] = []
    with Store.open(Path(state_dir)) as store:
        for i in range(rounds):
            late = worker % 2 == 1
            state = JobState.RUNNING if late else (JobState.COMPLETED if i > rounds // 2 else JobState.RUNNING)
            store.update_tasks(RUN, [TaskStatus(0, state), TaskStatus(1, JobState.RUNNING)])
            seen += [c.id for c in store.changes_since_seen(RUN)]
    out.put(seen)


def test_commands_at_once_never_go_backwards_and_report_each_change_once(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store)
        store.record_job(RUN, "c", "42")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(tmp_path), w, 40, queue)) for w in range(4)]
    for proc in procs:
        proc.start()
    reported = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    ids = [change for one in reported for change in one]
    assert len(ids) == len(set(ids)), "a change was shown by two commands"
    with Store.open(tmp_path) as store:
        history = store._changes_after(store._db, RUN, 0)
        assert sorted(ids) == [c.id for c in history]
        assert store.task_rows(RUN)[0][2] == "COMPLETED"
        regressions = [c for c in history if c.old_state == "COMPLETED"]
        assert regressions == [], regressions


def test_a_version_1_registry_is_upgraded_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO runs VALUES (?, 'x', 'c', 'slurm', '/r', 'submitted', 1, 'h', NULL, NULL,"
        " '{}', NULL, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', NULL)",
        (RUN,),
    )
    db.execute("INSERT INTO jobs VALUES ('c', '7', ?, '2026-01-01T00:00:00+00:00', 0)", (RUN,))
    db.commit()
    db.close()
    with Store.open(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        run = store.get_run(RUN)
        assert run is not None and run.job_id == "7" and run.inputs_hash is None


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, problem TEXT NOT NULL, cluster TEXT NOT NULL,
    scheduler TEXT NOT NULL, remote_dir TEXT NOT NULL, phase TEXT NOT NULL,
    task_count INTEGER NOT NULL, config_hash TEXT NOT NULL, deploy_id TEXT, git_sha TEXT,
    plan_json TEXT NOT NULL, submission_json TEXT, created_at TEXT NOT NULL, submitted_at TEXT,
    error TEXT);
CREATE TABLE jobs (cluster TEXT NOT NULL, job_id TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(run_id), submitted_at TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cluster, job_id));
"""


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


def test_a_version_2_registry_becomes_attempt_1_of_each_run(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    db.executescript(V2_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute(
        "INSERT INTO runs VALUES (?, 'x', 'c', 'slurm', '/r', 'submitted', 2, 'h', NULL, NULL,"
        " '{}', NULL, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', NULL, NULL)",
        (RUN,),
    )
    db.execute("INSERT INTO jobs VALUES ('c', '7', ?, '2026-01-01T00:00:00+00:00', 0)", (RUN,))
    for index in (0, 1):
        db.execute(
            "INSERT INTO tasks VALUES (?, ?, ?, 'FAILED', NULL, '2026-01-01T00:00:00+00:00')",
            (RUN, index, f"{index:04d}"),
        )
    db.commit()
    db.close()
    with Store.open(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 4
        (job,) = store.run_jobs(RUN)
        assert (job.job_id, job.attempt, job.task_indices) == ("7", 1, None)
        assert (job.part, job.task_offset) == (0, 0)  # version 4: the only part, no offset
        assert store.cluster_limits("c") is None
        assert store.task_attempt_numbers(RUN) == {0: 1, 1: 1}
        assert store.attempts(RUN) == [] and store.next_attempt(RUN) == 2


def test_an_attempt_restarts_only_its_tasks_and_keeps_the_earlier_state(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store, tasks=3)
        store.record_job(RUN, "c", "7")
        store.update_tasks(RUN, [TaskStatus(0, JobState.COMPLETED), TaskStatus(1, JobState.FAILED),
                                 TaskStatus(2, JobState.TIMEOUT)])  # fmt: skip
        seen = {1: 1, 2: 1}  # the tasks, and the attempt they were seen in
        assert store.claim_attempt(RUN, seen, {"mem_gb": 2.0}, "rerun --only failed") == 2
        assert store.claim_attempt(RUN, seen, {"mem_gb": 2.0}, "again") is None  # one at a time
        assert store.unfinished_attempt(RUN) is not None
        store.start_attempt(RUN, "c", 2, [("9", [1, 2])])
        store.start_attempt(RUN, "c", 2, [("9", [1, 2])])  # recorded twice: no change
        assert store.unfinished_attempt(RUN) is None
        assert store.task_attempt_numbers(RUN) == {0: 1, 1: 2, 2: 2}
        states = {i: s for i, _, s, _ in store.task_rows(RUN)}
        assert states == {0: "COMPLETED", 1: "PENDING", 2: "PENDING"}
        earlier = store.earlier_attempts(RUN)
        assert [s.state for s in earlier[1]] == [JobState.FAILED] and 0 not in earlier
        # News of the replaced attempt (a monitor that polled before the rerun) is refused.
        stored, changes = store.update_tasks(RUN, [TaskStatus(1, JobState.FAILED)])
        assert stored[0].state is JobState.PENDING and stored[0].attempt == 2 and not changes
        news = TaskStatus(1, JobState.COMPLETED, attempt=2)
        assert store.update_tasks(RUN, [news])[0][0].state is JobState.COMPLETED
        (attempt,) = store.attempts(RUN)
        assert attempt.job_ids == ("9",) and attempt.task_indices == (1, 2)
        assert [(j.job_id, j.attempt, j.task_indices) for j in store.run_jobs(RUN)] == [
            ("7", 1, None), ("9", 2, (1, 2))
        ]


V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, problem TEXT NOT NULL, cluster TEXT NOT NULL,
    scheduler TEXT NOT NULL, remote_dir TEXT NOT NULL, phase TEXT NOT NULL,
    task_count INTEGER NOT NULL, config_hash TEXT NOT NULL, deploy_id TEXT, git_sha TEXT,
    plan_json TEXT NOT NULL, submission_json TEXT, created_at TEXT NOT NULL, submitted_at TEXT,
    error TEXT, inputs_hash TEXT);
CREATE TABLE jobs (cluster TEXT NOT NULL, job_id TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(run_id), submitted_at TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, job_id));
CREATE TABLE tasks (run_id TEXT NOT NULL REFERENCES runs(run_id), task_index INTEGER NOT NULL,
    task_id TEXT NOT NULL, state TEXT NOT NULL, status_json TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, task_index));
"""


def test_a_version_3_registry_gets_parts_and_the_limits_cache(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        add(store, tasks=2)
        store.record_job(RUN, "c", "7")
    # Make the file a version-3 one again: the jobs table without its version-4 columns.
    db = sqlite3.connect(tmp_path / "registry.sqlite3")
    db.execute("DROP TABLE cluster_limits")
    db.execute("ALTER TABLE jobs DROP COLUMN part")
    db.execute("ALTER TABLE jobs DROP COLUMN task_offset")
    db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    db.commit()
    db.close()
    with Store.open(tmp_path) as store:
        assert store.schema_version() == 4
        (job,) = store.run_jobs(RUN)
        assert (job.job_id, job.part, job.task_offset) == ("7", 0, 0)
        store.set_cluster_limits("c", max_array_size=10, max_job_count=500)
        store.set_cluster_limits("c", max_array_size=1001, max_job_count=10_000)
        limits = store.cluster_limits("c")
        assert limits is not None
        assert (limits["max_array_size"], limits["max_job_count"]) == (1001, 10_000)
