"""The registry's tables, and the steps that bring an older registry file up to date.

Version 2 keys a run's jobs by (run, job id): SLURM starts its ids at 1 again after its
controller is rebuilt, so one (cluster, job id) may belong to several runs over time, and none
of them may be dropped. It also records each run's ``inputs_hash`` (what its upload was made
from), so an interrupted submission is resumed only with the same inputs.

Version 3 adds attempts: a rerun is a new attempt of the same run, one array job over only the
chosen tasks. ``attempts`` holds one row per attempt (recorded before anything remote happens,
so an interrupted rerun is resumed, never doubled); ``jobs`` say which attempt they belong to
and which task indices they hold (NULL: every task, as every version-2 job did); ``tasks`` say
which attempt their state is of; ``task_attempts`` keeps each earlier attempt's final status.
Every version-2 job and task is attempt 1.

Version 4 splits sweeps larger than the cluster's ``MaxArraySize`` into parts (jobs.arrays):
``jobs`` say which part of their attempt they are and at which index offset they run (0 for
every earlier job), and ``cluster_limits`` caches what ``scontrol show config`` said about
MaxArraySize and MaxJobCount, read once per deployment or doctor run.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 4


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    problem TEXT NOT NULL,
    cluster TEXT NOT NULL,
    scheduler TEXT NOT NULL,
    remote_dir TEXT NOT NULL,
    phase TEXT NOT NULL,
    task_count INTEGER NOT NULL,
    config_hash TEXT NOT NULL,
    deploy_id TEXT,
    git_sha TEXT,
    plan_json TEXT NOT NULL,
    submission_json TEXT,
    created_at TEXT NOT NULL,
    submitted_at TEXT,
    error TEXT,
    inputs_hash TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (cluster, config_hash, phase);
CREATE TABLE IF NOT EXISTS jobs (
    cluster TEXT NOT NULL,
    job_id TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    submitted_at TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    task_indices TEXT,
    part INTEGER NOT NULL DEFAULT 0,
    task_offset INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (cluster, job_id);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    task_index INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    status_json TEXT,
    updated_at TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, task_index)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    attempt INTEGER NOT NULL,
    task_indices TEXT NOT NULL,
    resources_json TEXT NOT NULL,
    cause TEXT NOT NULL,
    phase TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE IF NOT EXISTS task_attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    task_index INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    status_json TEXT,
    PRIMARY KEY (run_id, task_index, attempt)
);
CREATE TABLE IF NOT EXISTS state_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    task_index INTEGER NOT NULL,
    old_state TEXT,
    new_state TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_run ON state_changes (run_id, id);
CREATE TABLE IF NOT EXISTS deployments (
    deploy_id TEXT NOT NULL,
    cluster TEXT NOT NULL,
    git_sha TEXT,
    dirty INTEGER NOT NULL DEFAULT 0,
    remote_dir TEXT NOT NULL,
    verified INTEGER NOT NULL DEFAULT 0,
    info_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (cluster, deploy_id)
);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    local_dir TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    file_count INTEGER NOT NULL,
    byte_count INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    collected_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_limits (
    cluster TEXT PRIMARY KEY,
    max_array_size INTEGER,
    max_job_count INTEGER,
    read_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    run_id TEXT PRIMARY KEY,
    last_change_id INTEGER NOT NULL
);
"""


def _v1_to_v2(db: sqlite3.Connection) -> None:
    # CREATE TABLE IF NOT EXISTS left a version-1 jobs table (keyed by cluster, job id) alone.
    db.execute(
        "CREATE TABLE jobs_v2 (cluster TEXT NOT NULL, job_id TEXT NOT NULL,"
        " run_id TEXT NOT NULL REFERENCES runs(run_id), submitted_at TEXT NOT NULL,"
        " adopted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, job_id))"
    )
    db.execute(
        "INSERT INTO jobs_v2 (cluster, job_id, run_id, submitted_at, adopted)"
        " SELECT cluster, job_id, run_id, submitted_at, adopted FROM jobs"
    )
    db.execute("DROP TABLE jobs")
    db.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
    db.execute("CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (cluster, job_id)")
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "inputs_hash" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN inputs_hash TEXT")


def _v2_to_v3(db: sqlite3.Connection) -> None:
    # The new tables came with SCHEMA; the old ones get their attempt columns (everything in a
    # version-2 file is the first attempt of its run).
    for table, column, kind in (
        ("jobs", "attempt", "INTEGER NOT NULL DEFAULT 1"),
        ("jobs", "task_indices", "TEXT"),
        ("tasks", "attempt", "INTEGER NOT NULL DEFAULT 1"),
    ):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _v3_to_v4(db: sqlite3.Connection) -> None:
    # cluster_limits came with SCHEMA; every earlier job is the only part of its attempt.
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column in ("part", "task_offset"):
        if column not in columns:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}  # from version -> the step to the next one


def create_or_upgrade(db: sqlite3.Connection) -> int | None:
    """Create missing tables, upgrade an older file; the version found (None: a new file).

    Runs inside the caller's transaction. A newer file than this tool knows is the caller's
    error to report.
    """
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    found = int(row[0]) if row else None
    version = SCHEMA_VERSION if found is None else found
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](db)
        version += 1
    if found is None or found < SCHEMA_VERSION:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found
