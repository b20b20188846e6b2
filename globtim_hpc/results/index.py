"""``results/index.csv``: one row per collected run under a results root, for
``pandas.read_csv`` or DrWatson-style code that wants every run at once.

Every collection updates it under an exclusive lock (``.index.lock`` beside it): read the
current rows (or, when the file is missing or unreadable, rebuild them from every run folder's
metadata.json), replace this run's row, write a temporary beside it and rename it over the old
one. A reader sees the old or the new index, never half of one; two collections at once are
applied one after the other.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from globtim_hpc.results import taskdata as td
from globtim_hpc.results.tables import render_csv

INDEX_NAME = "index.csv"
LOCK_NAME = ".index.lock"
STATE_COLUMNS = ("completed", "failed", "timeout", "out_of_memory", "cancelled", "other")
COLUMNS = (
    "run_id", "problem", "cluster", "scheduler", "job_id", "submitted_at", "collected_at",
    "git_sha", "git_dirty", "deploy_id", "run_env_hash", "config_hash", "task_count",
    "finished_task_count", *(f"n_{state}" for state in STATE_COLUMNS), "n_unfinished",
    "complete", "folder",
)  # fmt: skip
_COUNTED = {"COMPLETED": "completed", "FAILED": "failed", "TIMEOUT": "timeout",
            "OUT_OF_MEMORY": "out_of_memory", "CANCELLED": "cancelled"}  # fmt: skip


def index_row(metadata: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """The index row of one run; ``folder`` relative to the results root, '/'-separated."""
    counts = dict.fromkeys(STATE_COLUMNS, 0)
    unfinished = 0
    for task in metadata.get("tasks") or []:
        if not task.get("finished"):
            unfinished += 1
            continue
        counts[_COUNTED.get(str(task.get("state")), "other")] += 1
    row: dict[str, Any] = {
        key: metadata.get(key)
        for key in ("run_id", "problem", "cluster", "scheduler", "job_id", "submitted_at",
                    "collected_at", "git_sha", "git_dirty", "deploy_id", "config_hash",
                    "task_count", "finished_task_count", "complete")
    }  # fmt: skip
    row["run_env_hash"] = td.run_env_hash(metadata)
    row.update({f"n_{state}": n for state, n in counts.items()})
    row["n_unfinished"] = unfinished
    row["folder"] = folder
    return row


def run_folders(root: Path) -> Iterator[Path]:
    """Every placed run folder: ``<root>/<problem>/<date>_<run_id>/metadata.json``."""
    for metadata in sorted(root.glob("*/*/metadata.json")):
        if not any(part.startswith(".") for part in metadata.relative_to(root).parts):
            yield metadata.parent


def _relative(root: Path, folder: Path) -> str:
    return folder.relative_to(root).as_posix()


def rebuild_rows(root: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for folder in run_folders(root):
        metadata = td.read_metadata(folder)
        if metadata is not None and isinstance(metadata.get("run_id"), str):
            rows[metadata["run_id"]] = index_row(metadata, _relative(root, folder))
    return rows


def read_index(root: Path) -> dict[str, dict[str, Any]] | None:
    """The current rows by run id, or None when there is no readable index."""
    try:
        with open(root / INDEX_NAME, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "run_id" not in reader.fieldnames:
                return None
            return {row["run_id"]: dict(row) for row in reader if row.get("run_id")}
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(root: Path, rows: Mapping[str, Mapping[str, Any]]) -> Path:
    target = root / INDEX_NAME
    tmp = root / f".{INDEX_NAME}.tmp.{os.getpid()}"
    ordered = sorted(rows.values(), key=lambda r: (str(r.get("submitted_at") or ""), str(r["run_id"])))
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(render_csv(COLUMNS, ordered))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def update_index(
    root: Path, folder: Path | None = None, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Put ``folder``'s run into ``root/index.csv`` (all runs when the index is missing);
    ``metadata``: its metadata.json, when the caller has read it already."""
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        rows = read_index(root)
        if rows is None:
            rows = rebuild_rows(root)
        elif folder is not None:
            if metadata is None:
                metadata = td.read_metadata(folder)
            if metadata is not None and isinstance(metadata.get("run_id"), str):
                rows[metadata["run_id"]] = index_row(metadata, _relative(root, folder))
        # Rows of folders deleted by hand go; a renamed folder is found again by the rebuild.
        rows = {rid: row for rid, row in rows.items() if (root / str(row["folder"])).is_dir()}
        return _write(root, rows)


def rebuild_index(root: Path) -> Path:
    with _locked(root):
        return _write(root, rebuild_rows(root))
