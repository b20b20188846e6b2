"""Learned sizing: what collected tasks really used, kept in the registry file for the next
submission of the same problem on the same cluster.

Its own table, created here idempotently (``CREATE TABLE IF NOT EXISTS``) on its own connection
to the registry's SQLite file, so it is independent of the registry's schema version and its
migrations. One row per collected task; collecting a run again replaces its rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globtim_hpc.errors import StoreError
from globtim_hpc.registry.records import utc_now

TABLE = """
CREATE TABLE IF NOT EXISTS learned_sizing (
    cluster TEXT NOT NULL,
    problem TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT,
    dim INTEGER,
    samples_per_dim INTEGER,
    degree INTEGER,
    estimated_mem_gb REAL,
    max_rss_gb REAL,
    requested_mem_gb REAL,
    elapsed_s REAL,
    requested_time_min REAL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
)"""
INDEX = "CREATE INDEX IF NOT EXISTS learned_sizing_by_problem ON learned_sizing (cluster, problem)"
COLUMNS = (
    "state", "dim", "samples_per_dim", "degree", "estimated_mem_gb", "max_rss_gb",
    "requested_mem_gb", "elapsed_s", "requested_time_min",
)  # fmt: skip


@dataclass(frozen=True)
class Observation:
    run_id: str
    task_id: str
    state: str | None
    dim: int | None
    samples_per_dim: int | None
    degree: int | None
    estimated_mem_gb: float | None
    max_rss_gb: float | None
    requested_mem_gb: float | None
    elapsed_s: float | None
    requested_time_min: float | None
    recorded_at: str

    @property
    def mem_ratio(self) -> float | None:
        if self.max_rss_gb is None or not self.estimated_mem_gb:
            return None
        return self.max_rss_gb / self.estimated_mem_gb


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute(TABLE)
        db.execute(INDEX)
        return db
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot open the learned sizing in {path}: {exc}",
            "check the registry folder is writable (GLOBTIM_HPC_STATE_DIR)",
        ) from exc


def record(
    registry: Path, cluster: str, problem: str, run_id: str, items: Sequence[Mapping[str, Any]]
) -> int:
    """Replace the run's rows with ``items`` (metadata.json ``sizing``); the number stored."""
    now = utc_now()
    db = _connect(registry)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM learned_sizing WHERE run_id = ?", (run_id,))
        for item in items:
            db.execute(
                "INSERT INTO learned_sizing (cluster, problem, run_id, task_id, "
                + ", ".join(COLUMNS) + ", recorded_at) VALUES (?, ?, ?, ?, "
                + ", ".join("?" for _ in COLUMNS) + ", ?)",
                (cluster, problem, run_id, str(item.get("task_id")),
                 *(item.get(c) for c in COLUMNS), now),
            )  # fmt: skip
        db.execute("COMMIT")
        return len(items)
    except sqlite3.Error as exc:
        raise StoreError(f"recording learned sizing failed: {exc}", f"registry: {registry}") from exc
    finally:
        db.close()


def observations(registry: Path, cluster: str, problem: str) -> list[Observation]:
    """Every recorded task of ``problem`` on ``cluster``, newest first; [] without a registry."""
    if not registry.is_file():
        return []
    db = _connect(registry)
    try:
        rows = db.execute(
            "SELECT run_id, task_id, " + ", ".join(COLUMNS) + ", recorded_at FROM learned_sizing"
            " WHERE cluster = ? AND problem = ? ORDER BY recorded_at DESC, run_id DESC",
            (cluster, problem),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"reading learned sizing failed: {exc}", f"registry: {registry}") from exc
    finally:
        db.close()
    return [Observation(*row) for row in rows]
