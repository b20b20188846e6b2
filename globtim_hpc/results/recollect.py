"""The re-collect record kept in a collected folder (``.globtim-collect.json``): for each file,
the cluster's (size, mtime, ctime) when it was collected, its SHA-256, and the local mtime it
was written with. A file whose cluster and local metadata both still match is taken as is: an
unchanged re-collect reads metadata only, on both sides, and transfers nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from globtim_hpc.results.manifest import ManifestEntry, local_path
from globtim_hpc.results.survey import SurveyEntry

RECORD_NAME = ".globtim-collect.json"
SCHEMA = "globtim-hpc/collect-record/1"


@dataclass(frozen=True)
class Known:
    remote: tuple[int, str, str]  # (size, mtime, ctime) on the cluster
    sha256: str
    local_mtime_ns: int


def read_record(folder: Path) -> dict[str, Known]:
    """What ``folder``'s record says; an absent or unreadable record says nothing."""
    try:
        data = json.loads((folder / RECORD_NAME).read_text("utf-8"))
        if data.get("schema") != SCHEMA:
            return {}
        return {
            path: Known((int(v[0]), str(v[1]), str(v[2])), str(v[3]), int(v[4]))
            for path, v in data["files"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def still_valid(folder: Path, known: Known | None, entry: SurveyEntry) -> bool:
    """Whether ``folder``'s copy of ``entry`` is the one recorded, by metadata alone."""
    if known is None or known.remote != (entry.byte_count, entry.mtime, entry.ctime):
        return False
    try:
        info = local_path(folder, entry.path).lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size == entry.byte_count
        and info.st_mtime_ns == known.local_mtime_ns
    )


def write_record(
    folder: Path, entries: Iterable[ManifestEntry], stamps: Mapping[str, SurveyEntry]
) -> None:
    """Record every entry present in ``folder`` (a missing one is simply left out)."""
    files: dict[str, list[object]] = {}
    for entry in entries:
        survey = stamps.get(entry.path)
        if survey is None or not entry.sha256:
            continue
        with contextlib.suppress(OSError):
            info = local_path(folder, entry.path).lstat()
            if info.st_size == entry.byte_count:
                files[entry.path] = [*survey.stamp, entry.sha256, info.st_mtime_ns]
    temporary = folder / (RECORD_NAME + ".tmp")
    temporary.write_text(json.dumps({"schema": SCHEMA, "files": files}) + "\n", "utf-8")
    os.replace(temporary, folder / RECORD_NAME)
