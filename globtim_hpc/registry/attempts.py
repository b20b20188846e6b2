"""The registry's part about attempts: a rerun is a new attempt of the same run.

An attempt is recorded (phase ``submitting``) before anything remote happens; once its job is
known, ``start_attempt`` records the job, keeps each chosen task's earlier state in
``task_attempts`` and starts the task afresh as PENDING of the new attempt, in one transaction.
A task's state is always its latest attempt's; ``update_tasks`` refuses news of an older one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.records import AttemptRecord, JobRow, utc_now

SUBMITTING = "submitting"
SUBMITTED = "submitted"


class AttemptsMixin:
    """Attempt methods of ``Store`` (which provides ``_db`` and ``_tx``)."""

    # Declared, not defined: Store supplies both (its connection and its transaction).
    _db: sqlite3.Connection
    _tx: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def claim_attempt(
        self,
        run_id: str,
        seen: Mapping[int, int],
        resources: Mapping[str, Any],
        cause: str,
    ) -> int | None:
        """Record the next attempt over the tasks in ``seen`` (index -> the attempt they were
        seen in), in one transaction; None when another command got there first: an attempt
        of this run is still being submitted, or a task has moved on to a later attempt. Two
        commands that see the same failure at once so make one rerun, not two."""
        with self._tx() as db:
            busy = db.execute(
                "SELECT 1 FROM attempts WHERE run_id=? AND phase=?", (run_id, SUBMITTING)
            ).fetchone()
            if busy:
                return None
            now = {
                r["task_index"]: r["attempt"]
                for r in db.execute("SELECT task_index, attempt FROM tasks WHERE run_id=?", (run_id,))
            }
            if any(now.get(index) != attempt for index, attempt in seen.items()):
                return None
            row = db.execute(
                "SELECT MAX(attempt) AS last FROM attempts WHERE run_id=?", (run_id,)
            ).fetchone()
            number = max(int(row["last"] or 1), 1) + 1
            self._insert_attempt(db, run_id, number, sorted(seen), resources, cause)
            return number

    @staticmethod
    def _insert_attempt(
        db: sqlite3.Connection,
        run_id: str,
        attempt: int,
        task_indices: Sequence[int],
        resources: Mapping[str, Any],
        cause: str,
    ) -> None:
        db.execute(
            "INSERT INTO attempts (run_id, attempt, task_indices, resources_json, cause, phase,"
            " created_at) VALUES (?,?,?,?,?,?,?)",
            (run_id, attempt, json.dumps(list(task_indices)),
             json.dumps(dict(resources), sort_keys=True), cause, SUBMITTING, utc_now()),
        )  # fmt: skip

    def set_attempt_error(self, run_id: str, attempt: int, error: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET error=? WHERE run_id=? AND attempt=?", (error, run_id, attempt)
            )

    def next_attempt(self, run_id: str) -> int:
        row = self._db.execute(
            "SELECT MAX(attempt) AS last FROM attempts WHERE run_id=?", (run_id,)
        ).fetchone()
        return max(int(row["last"] or 1), 1) + 1

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        """Every recorded rerun attempt of the run (attempt 1 is the submission itself)."""
        rows = self._db.execute(
            "SELECT * FROM attempts WHERE run_id=? ORDER BY attempt", (run_id,)
        ).fetchall()
        jobs: dict[int, list[str]] = {}
        for job in self.run_jobs(run_id):
            jobs.setdefault(job.attempt, []).append(job.job_id)
        return [
            AttemptRecord(
                run_id=r["run_id"],
                attempt=r["attempt"],
                task_indices=tuple(json.loads(r["task_indices"])),
                resources=json.loads(r["resources_json"]),
                cause=r["cause"],
                phase=r["phase"],
                error=r["error"],
                created_at=r["created_at"],
                job_ids=tuple(jobs.get(r["attempt"], ())),
            )
            for r in rows
        ]

    def unfinished_attempt(self, run_id: str) -> AttemptRecord | None:
        pending = [a for a in self.attempts(run_id) if a.phase == SUBMITTING]
        return pending[-1] if pending else None

    def run_jobs(self, run_id: str) -> list[JobRow]:
        rows = self._db.execute(
            "SELECT job_id, attempt, task_indices, submitted_at, part, task_offset FROM jobs"
            " WHERE run_id=? ORDER BY attempt, part, submitted_at, rowid",
            (run_id,),
        ).fetchall()
        return [
            JobRow(
                job_id=r["job_id"],
                attempt=r["attempt"],
                task_indices=tuple(json.loads(r["task_indices"])) if r["task_indices"] else None,
                submitted_at=r["submitted_at"],
                part=r["part"],
                task_offset=r["task_offset"],
            )
            for r in rows
        ]

    def task_attempt_numbers(self, run_id: str) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT task_index, attempt FROM tasks WHERE run_id=?", (run_id,)
        ).fetchall()
        return {r["task_index"]: r["attempt"] for r in rows}

    def earlier_attempts(self, run_id: str) -> dict[int, list[TaskStatus]]:
        """Each task's earlier attempts' last known status, oldest first."""
        rows = self._db.execute(
            "SELECT task_index, attempt, state, status_json FROM task_attempts WHERE run_id=?"
            " ORDER BY task_index, attempt",
            (run_id,),
        ).fetchall()
        out: dict[int, list[TaskStatus]] = {}
        for r in rows:
            stored = json.loads(r["status_json"]) if r["status_json"] else {"state": r["state"]}
            status = TaskStatus.from_dict({**stored, "task_index": r["task_index"]})
            status.attempt = r["attempt"]
            out.setdefault(r["task_index"], []).append(status)
        return out

    def start_attempt(
        self,
        run_id: str,
        cluster: str,
        attempt: int,
        job_ids: Sequence[tuple[str, Sequence[int]]],
        *,
        adopted: bool = False,
        offsets: Sequence[int] = (),
    ) -> None:
        """The attempt's jobs are known: record them and start each of their tasks afresh.
        ``offsets[n]`` is the index offset of part n (none given: every part at offset 0)."""
        now = utc_now()
        with self._tx() as db:
            for part, (job_id, indices) in enumerate(job_ids):
                offset = offsets[part] if part < len(offsets) else 0
                db.execute(
                    "INSERT INTO jobs (cluster, job_id, run_id, submitted_at, adopted, attempt,"
                    " task_indices, part, task_offset) VALUES (?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(run_id, job_id) DO NOTHING",
                    (cluster, job_id, run_id, now, int(adopted), attempt,
                     json.dumps(list(indices)), part, offset),
                )  # fmt: skip
            db.execute(
                "UPDATE attempts SET phase=?, error=NULL WHERE run_id=? AND attempt=?",
                (SUBMITTED, run_id, attempt),
            )
            for index in _all_indices(job_ids):
                self._restart_task(db, run_id, index, attempt, now)

    @staticmethod
    def _restart_task(
        db: sqlite3.Connection, run_id: str, index: int, attempt: int, now: str
    ) -> None:
        row = db.execute(
            "SELECT state, status_json, attempt FROM tasks WHERE run_id=? AND task_index=?",
            (run_id, index),
        ).fetchone()
        if row is None or row["attempt"] >= attempt:
            return  # already started (an adopted job recorded twice)
        db.execute(
            "INSERT OR IGNORE INTO task_attempts (run_id, task_index, attempt, state, status_json)"
            " VALUES (?,?,?,?,?)",
            (run_id, index, row["attempt"], row["state"], row["status_json"]),
        )
        fresh = TaskStatus(index, JobState.PENDING, reason=f"attempt {attempt} submitted")
        fresh.attempt = attempt
        db.execute(
            "UPDATE tasks SET state=?, status_json=?, updated_at=?, attempt=?"
            " WHERE run_id=? AND task_index=?",
            (JobState.PENDING.value, json.dumps(fresh.to_dict(), sort_keys=True), now, attempt,
             run_id, index),
        )  # fmt: skip
        db.execute(
            "INSERT INTO state_changes (run_id, task_index, old_state, new_state, at)"
            " VALUES (?,?,?,?,?)",
            (run_id, index, row["state"], JobState.PENDING.value, now),
        )


def _all_indices(job_ids: Sequence[tuple[str, Sequence[int]]]) -> Iterator[int]:
    seen: set[int] = set()
    for _, indices in job_ids:
        for index in indices:
            if index not in seen:
                seen.add(index)
                yield index
