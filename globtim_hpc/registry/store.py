"""The local registry of runs, jobs, array tasks, state changes, deployments and collections.

One SQLite file in the state folder, WAL mode, so two commands can use it at once. Every write
is one short transaction; ``busy_timeout`` makes a second writer wait instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from globtim_hpc import paths
from globtim_hpc.errors import StoreError
from globtim_hpc.jobs.arrays import ArrayPart, parts_from_dicts
from globtim_hpc.models import JobState, RunPhase, TaskStatus
from globtim_hpc.registry.attempts import AttemptsMixin
from globtim_hpc.registry.records import RunRecord, StateChange, utc_now
from globtim_hpc.registry.schema import SCHEMA_VERSION, create_or_upgrade


class Store(AttemptsMixin):
    """The registry. Open with ``Store.open()``; use as a context manager to close it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the registry at {path}: {exc}",
                "check the folder is writable, or set GLOBTIM_HPC_STATE_DIR to another folder",
            ) from exc

    @classmethod
    def open(cls, state_dir: Path | None = None) -> Store:
        return cls((state_dir or paths.state_dir()) / "registry.sqlite3")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"registry write failed: {exc}", f"registry: {self.path}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            found = create_or_upgrade(db)
            if found is not None and found > SCHEMA_VERSION:
                raise StoreError(
                    f"registry {self.path} has schema version {found}, newer than this "
                    f"tool's {SCHEMA_VERSION}",
                    "upgrade globtim-hpc, or point GLOBTIM_HPC_STATE_DIR elsewhere",
                )

    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"])

    # ---- runs -------------------------------------------------------------------------------

    def add_run(
        self,
        *,
        run_id: str,
        problem: str,
        cluster: str,
        scheduler: str,
        remote_dir: str,
        task_ids: Sequence[str],
        config_hash: str,
        deploy_id: str | None,
        git_sha: str | None,
        plan: dict[str, Any],
        submission: dict[str, Any] | None,
    ) -> None:
        now = utc_now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, problem, cluster, scheduler, remote_dir, phase, task_count,"
                " config_hash, deploy_id, git_sha, plan_json, submission_json, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    problem,
                    cluster,
                    scheduler,
                    remote_dir,
                    RunPhase.PREPARED.value,
                    len(task_ids),
                    config_hash,
                    deploy_id,
                    git_sha,
                    json.dumps(plan, sort_keys=True),
                    json.dumps(submission, sort_keys=True) if submission is not None else None,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO tasks (run_id, task_index, task_id, state, updated_at) VALUES (?,?,?,?,?)",
                [(run_id, i, tid, "NEW", now) for i, tid in enumerate(task_ids)],
            )

    def _submitted_parts(self, run_id: str) -> list[ArrayPart]:
        record = self.get_run(run_id)
        rows = ((record.submission or {}).get("array_parts") if record else None) or []
        return parts_from_dicts(rows)

    def part_jobs(self, run_id: str) -> dict[int, str]:
        """The first attempt's jobs recorded so far, by part."""
        rows = self._db.execute(
            "SELECT part, job_id FROM jobs WHERE run_id=? AND attempt=1", (run_id,)
        ).fetchall()
        return {int(r["part"]): str(r["job_id"]) for r in rows}

    def cluster_limits(self, cluster: str) -> dict[str, Any] | None:
        """What the cluster said about its array and job limits, when it was last asked."""
        row = self._db.execute(
            "SELECT max_array_size, max_job_count, read_at FROM cluster_limits WHERE cluster=?",
            (cluster,),
        ).fetchone()
        return dict(row) if row else None

    def set_cluster_limits(
        self, cluster: str, *, max_array_size: int | None, max_job_count: int | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO cluster_limits (cluster, max_array_size, max_job_count, read_at)"
                " VALUES (?,?,?,?) ON CONFLICT(cluster) DO UPDATE SET"
                " max_array_size=excluded.max_array_size,"
                " max_job_count=excluded.max_job_count, read_at=excluded.read_at",
                (cluster, max_array_size, max_job_count, utc_now()),
            )

    def set_phase(self, run_id: str, phase: RunPhase, error: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET phase=?, error=? WHERE run_id=?", (phase.value, error, run_id)
            )

    def record_job(
        self,
        run_id: str,
        cluster: str,
        job_id: str,
        *,
        adopted: bool = False,
        part: int | None = None,
    ) -> None:
        """Record the run's job; with ``part`` (a split sweep, jobs.arrays), that part's job,
        and the run counts as submitted only once its last part is recorded."""
        now = utc_now()
        parts = self._submitted_parts(run_id)
        with self._tx() as db:
            # Keyed by run: the same id recorded again for this run changes nothing, and an id
            # SLURM reuses for another run (ids restart at 1 after a rebuild) keeps both.
            if part is None:
                db.execute(
                    "INSERT INTO jobs (cluster, job_id, run_id, submitted_at, adopted)"
                    " VALUES (?,?,?,?,?) ON CONFLICT(run_id, job_id) DO NOTHING",
                    (cluster, job_id, run_id, now, int(adopted)),
                )
            else:
                spec = parts[part]
                db.execute(
                    "INSERT INTO jobs (cluster, job_id, run_id, submitted_at, adopted,"
                    " task_indices, part, task_offset) VALUES (?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(run_id, job_id) DO NOTHING",
                    (cluster, job_id, run_id, now, int(adopted), json.dumps(list(spec.indices)),
                     part, spec.offset),
                )  # fmt: skip
                if part < len(parts) - 1:
                    return
            db.execute(
                "UPDATE runs SET phase=?, submitted_at=COALESCE(submitted_at, ?), error=NULL"
                " WHERE run_id=?",
                (RunPhase.SUBMITTED.value, now, run_id),
            )
            db.execute(
                "UPDATE tasks SET state=?, updated_at=? WHERE run_id=? AND state='NEW'",
                (JobState.PENDING.value, now, run_id),
            )

    def _run_from_row(self, row: sqlite3.Row) -> RunRecord:
        job = self._db.execute(
            # The latest attempt's job; of a split one, its first part's.
            "SELECT job_id FROM jobs WHERE run_id=?"
            " ORDER BY attempt DESC, part, submitted_at DESC, rowid DESC LIMIT 1",
            (row["run_id"],),
        ).fetchone()
        return RunRecord(
            run_id=row["run_id"],
            problem=row["problem"],
            cluster=row["cluster"],
            scheduler=row["scheduler"],
            remote_dir=row["remote_dir"],
            phase=RunPhase(row["phase"]),
            task_count=row["task_count"],
            config_hash=row["config_hash"],
            deploy_id=row["deploy_id"],
            git_sha=row["git_sha"],
            plan=json.loads(row["plan_json"]),
            submission=json.loads(row["submission_json"]) if row["submission_json"] else None,
            created_at=row["created_at"],
            submitted_at=row["submitted_at"],
            error=row["error"],
            job_id=job["job_id"] if job else None,
            inputs_hash=row["inputs_hash"],
        )

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return self._run_from_row(row) if row else None

    def runs_for_job(self, cluster: str | None, job_id: str) -> list[RunRecord]:
        """Every run that recorded ``job_id`` (on ``cluster``, or anywhere), newest first."""
        query = "SELECT run_id FROM jobs WHERE job_id=?"
        args: tuple[str, ...] = (job_id,)
        if cluster is not None:
            query += " AND cluster=?"
            args = (job_id, cluster)
        rows = self._db.execute(query + " ORDER BY submitted_at DESC, rowid DESC", args)
        runs = [self.get_run(row["run_id"]) for row in rows.fetchall()]
        return [run for run in runs if run is not None]

    def job_ids(self, run_id: str) -> list[str]:
        """Every job id recorded for ``run_id``, in the order they were submitted."""
        rows = self._db.execute(
            "SELECT job_id FROM jobs WHERE run_id=? ORDER BY submitted_at, rowid", (run_id,)
        ).fetchall()
        return [row["job_id"] for row in rows]

    def set_inputs_hash(self, run_id: str, inputs_hash: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET inputs_hash=? WHERE run_id=?", (inputs_hash, run_id))

    def unfinished_submissions(self, cluster: str, config_hash: str) -> list[RunRecord]:
        """Runs of this config whose submission may or may not have reached the scheduler."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE cluster=? AND config_hash=? AND phase IN (?,?)"
            " ORDER BY created_at",
            (
                cluster,
                config_hash,
                RunPhase.PREPARED.value,
                RunPhase.SUBMITTING.value,
            ),
        ).fetchall()
        return [self._run_from_row(r) for r in rows]

    def list_runs(
        self, *, cluster: str | None = None, active_only: bool = False
    ) -> list[RunRecord]:
        query = "SELECT * FROM runs"
        args: list[Any] = []
        where = []
        if cluster is not None:
            where.append("cluster=?")
            args.append(cluster)
        if active_only:
            where.append(
                "phase=? AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id=runs.run_id AND t.state IN"
                " ('NEW','PENDING','RUNNING','SUSPENDED','COMPLETING','UNKNOWN'))"
            )
            args.append(RunPhase.SUBMITTED.value)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at"
        return [self._run_from_row(r) for r in self._db.execute(query, args).fetchall()]

    # ---- tasks and state changes ------------------------------------------------------------

    def task_rows(self, run_id: str) -> list[tuple[int, str, str, dict[str, Any] | None]]:
        rows = self._db.execute(
            "SELECT task_index, task_id, state, status_json FROM tasks WHERE run_id=? ORDER BY task_index",
            (run_id,),
        ).fetchall()
        return [
            (
                r["task_index"],
                r["task_id"],
                r["state"],
                json.loads(r["status_json"]) if r["status_json"] else None,
            )
            for r in rows
        ]

    def update_tasks(
        self, run_id: str, statuses: Sequence[TaskStatus]
    ) -> tuple[list[TaskStatus], list[StateChange]]:
        """Store each task's latest status as a compare-and-set; return what is stored now and
        every state change made.

        Inside one write transaction, so several commands at once (two monitors, a monitor and
        a collect) never interleave: a final state already stored is never replaced by a
        non-final one that another command decided from older news, and a change is recorded
        by exactly one of them.
        """
        now = utc_now()
        changes: list[StateChange] = []
        stored: list[TaskStatus] = []
        with self._tx() as db:
            current = {
                r["task_index"]: (r["state"], r["status_json"], r["attempt"])
                for r in db.execute(
                    "SELECT task_index, state, status_json, attempt FROM tasks WHERE run_id=?",
                    (run_id,),
                )
            }
            for status in statuses:
                old, old_json, attempt = current.get(status.task_index, (None, None, 1))
                stale = status.attempt < attempt  # decided from an attempt a rerun replaced
                if stale or (
                    old is not None and JobState.parse(old).is_final and not status.state.is_final
                ):
                    kept = json.loads(old_json) if old_json else {"state": old}
                    stored.append(TaskStatus.from_dict({**kept, "task_index": status.task_index}))
                    continue
                new = status.state.value
                db.execute(
                    "UPDATE tasks SET state=?, status_json=?, updated_at=? WHERE run_id=? AND task_index=?",
                    (new, json.dumps(status.to_dict(), sort_keys=True), now, run_id,
                     status.task_index),
                )  # fmt: skip
                stored.append(status)
                if old != new:
                    cur = db.execute(
                        "INSERT INTO state_changes (run_id, task_index, old_state, new_state, at)"
                        " VALUES (?,?,?,?,?)",
                        (run_id, status.task_index, old, new, now),
                    )
                    changes.append(
                        StateChange(
                            int(cur.lastrowid or 0), run_id, status.task_index, old, new, now
                        )
                    )
        return stored, changes

    def changes_since_seen(self, run_id: str, *, mark_seen: bool = True) -> list[StateChange]:
        """State changes no earlier look has been shown (by any command); ``mark_seen`` claims
        them, atomically, so two commands at once never both show the same change."""
        if not mark_seen:
            return self._changes_after(self._db, run_id, self._last_seen(self._db, run_id))
        with self._tx() as db:
            changes = self._changes_after(db, run_id, self._last_seen(db, run_id))
            if changes:
                db.execute(
                    "INSERT INTO seen (run_id, last_change_id) VALUES (?, ?)"
                    " ON CONFLICT(run_id) DO UPDATE SET last_change_id=excluded.last_change_id",
                    (run_id, changes[-1].id),
                )
        return changes

    @staticmethod
    def _last_seen(db: sqlite3.Connection, run_id: str) -> int:
        row = db.execute("SELECT last_change_id FROM seen WHERE run_id=?", (run_id,)).fetchone()
        return int(row["last_change_id"]) if row else 0

    @staticmethod
    def _changes_after(db: sqlite3.Connection, run_id: str, last: int) -> list[StateChange]:
        rows = db.execute(
            "SELECT * FROM state_changes WHERE run_id=? AND id>? ORDER BY id", (run_id, last)
        ).fetchall()
        return [
            StateChange(r["id"], r["run_id"], r["task_index"], r["old_state"], r["new_state"], r["at"])
            for r in rows
        ]

    # ---- deployments ------------------------------------------------------------------------

    def record_deployment(
        self,
        *,
        deploy_id: str,
        cluster: str,
        git_sha: str | None,
        dirty: bool,
        remote_dir: str,
        verified: bool,
        info: dict[str, Any],
        keep_created_at: bool = False,
    ) -> None:
        """Record a deployment, or its new state; ``keep_created_at``: settling a pending
        verification does not make a deployment newer than those made after it."""
        refresh = "" if keep_created_at else ", created_at=excluded.created_at"
        with self._tx() as db:
            db.execute(
                "INSERT INTO deployments (deploy_id, cluster, git_sha, dirty, remote_dir, verified,"
                " info_json, created_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(cluster, deploy_id) DO UPDATE SET verified=excluded.verified,"
                " info_json=excluded.info_json" + refresh,
                (
                    deploy_id,
                    cluster,
                    git_sha,
                    int(dirty),
                    remote_dir,
                    int(verified),
                    json.dumps(info, sort_keys=True),
                    utc_now(),
                ),
            )

    def latest_deployment(
        self, cluster: str, *, verified_only: bool = True
    ) -> dict[str, Any] | None:
        query = "SELECT * FROM deployments WHERE cluster=?"
        if verified_only:
            query += " AND verified=1"
        row = self._db.execute(
            query + " ORDER BY created_at DESC, rowid DESC LIMIT 1", (cluster,)
        ).fetchone()
        if row is None:
            return None
        return {
            "deploy_id": row["deploy_id"],
            "git_sha": row["git_sha"],
            "dirty": bool(row["dirty"]),
            "remote_dir": row["remote_dir"],
            "verified": bool(row["verified"]),
            "info": json.loads(row["info_json"]),
            "created_at": row["created_at"],
        }

    # ---- collections ------------------------------------------------------------------------

    def record_collection(
        self,
        *,
        run_id: str,
        local_dir: str,
        manifest_sha256: str,
        file_count: int,
        byte_count: int,
        complete: bool,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO collections (run_id, local_dir, manifest_sha256, file_count, byte_count,"
                " complete, collected_at) VALUES (?,?,?,?,?,?,?)",
                (
                    run_id,
                    local_dir,
                    manifest_sha256,
                    file_count,
                    byte_count,
                    int(complete),
                    utc_now(),
                ),
            )

    def collections(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM collections WHERE run_id=? ORDER BY id", (run_id,)
        ).fetchall()
        return [dict(r) for r in rows]
