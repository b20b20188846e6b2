"""The re-collect record kept in a collected folder (``.globtim-collect.json``): for each file,
the cluster's (size, mtime, ctime) when it was collected, its SHA-256, and the local mtime it
was written with. A file whose cluster and local metadata both still match is taken as is: an
unchanged re-collect reads metadata only, on both sides, and transfers nothing.

The record also names what the folder's descriptions (metadata.json, summary.md, plots) were
made from (a digest of the task records, notes and attempts) and their own sizes and mtimes.
When all of that still holds, the folder is already what a new collection would make: it is
left as it is, not rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.manifest import ManifestEntry, check_relative_path
from globtim_hpc.results.survey import SurveyEntry

RECORD_NAME = ".globtim-collect.json"
SCHEMA = "globtim-hpc/collect-record/1"


@dataclass(frozen=True)
class Unchanged:
    """A collected folder that is exactly what collecting again would make."""

    manifest_sha256: str
    file_count: int


class Known(NamedTuple):  # a tuple: a record holds one per file, tens of thousands of them
    remote: tuple[int, str, str]  # (size, mtime, ctime) on the cluster
    sha256: str
    local_mtime_ns: int


@dataclass(frozen=True)
class Record:
    """A folder's re-collect record, as read (empty when absent or unreadable)."""

    files: dict[str, Known]
    inputs_sha256: str = ""
    manifest_sha256: str = ""
    described: dict[str, tuple[int, int]] | None = None  # description file: (size, mtime_ns)
    # The cluster's listing these files were chosen from, and the notes the choice made: with
    # the same listing and the same inputs, the choice is the same (``kept_choice``).
    listing_sha256: str = ""
    listing_notes: tuple[str, ...] = ()


def load_record(folder: Path) -> Record:
    """What ``folder``'s record says; an absent or unreadable record says nothing."""
    try:
        data = json.loads((folder / RECORD_NAME).read_text("utf-8"))
        if data.get("schema") != SCHEMA:
            return Record({})
        files = {
            path: Known((int(v[0]), str(v[1]), str(v[2])), str(v[3]), int(v[4]))
            for path, v in data["files"].items()
        }
        described = data.get("described")
        return Record(
            files,
            str(data.get("inputs_sha256") or ""),
            str(data.get("manifest_sha256") or ""),
            None if described is None else {k: (int(v[0]), int(v[1])) for k, v in described.items()},
            str(data.get("listing_sha256") or ""),
            tuple(str(note) for note in data.get("listing_notes") or ()),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return Record({})


def read_record(folder: Path) -> dict[str, Known]:
    """The files ``folder``'s record holds (none when it is absent or unreadable)."""
    return load_record(folder).files


def kept_choice(record: Record) -> list[SurveyEntry] | None:
    """The files a finished folder's record says were chosen from its listing, by path; None
    when it keeps no listing or names a path that is not a safe relative one (edited)."""
    if not record.listing_sha256 or not record.inputs_sha256:
        return None
    try:
        return [
            SurveyEntry(check_relative_path(path), *known.remote)
            for path, known in sorted(record.files.items())
        ]
    except IntegrityError:
        return None


def still_valid(folder: Path, known: Known | None, entry: SurveyEntry) -> bool:
    """Whether ``folder``'s copy of ``entry`` is the one recorded, by metadata alone."""
    if known is None or known.remote != (entry.byte_count, entry.mtime, entry.ctime):
        return False
    try:
        # entry.path was checked when the listing was read (parse_survey); a plain join keeps
        # the metadata-only check of a large folder cheap.
        info = os.lstat(os.path.join(folder, entry.path))
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_size == entry.byte_count
        and info.st_mtime_ns == known.local_mtime_ns
    )


def unchanged(
    folder: Path, record: Record, stamps: Mapping[str, SurveyEntry], inputs_sha256: str
) -> Unchanged | None:
    """``folder`` as its ``record`` says, by metadata alone: the same files from the cluster
    (``stamps``), each local copy untouched, and descriptions made from the same
    ``inputs_sha256``, untouched."""
    known = record.files
    if (
        not inputs_sha256 or record.inputs_sha256 != inputs_sha256 or not record.manifest_sha256
        or record.described is None or set(known) != set(stamps)
    ):  # fmt: skip
        return None
    if not all(still_valid(folder, known[path], entry) for path, entry in stamps.items()):
        return None
    for name, (size, mtime_ns) in record.described.items():
        try:
            info = os.lstat(os.path.join(folder, name))  # names this toolkit wrote
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            return None
    return Unchanged(record.manifest_sha256, len(known))


def write_record(
    folder: Path,
    entries: Iterable[ManifestEntry],
    stamps: Mapping[str, SurveyEntry],
    *,
    inputs_sha256: str = "",
    manifest_sha256: str = "",
    listing_sha256: str = "",
    listing_notes: Sequence[str] = (),
) -> None:
    """Record every entry present in ``folder`` (a missing one is simply left out). With
    ``inputs_sha256`` (a finished folder), every other file in it is recorded as a description
    made from those inputs, and ``listing_sha256``/``listing_notes`` as what they were chosen
    from."""
    files: dict[str, list[object]] = {}
    for entry in entries:
        survey = stamps.get(entry.path)
        if survey is None or not entry.sha256:
            continue
        with contextlib.suppress(OSError):
            # A path in ``stamps`` was checked when the listing was read (parse_survey).
            info = os.lstat(os.path.join(folder, entry.path))
            if info.st_size == entry.byte_count:
                files[entry.path] = [*survey.stamp, entry.sha256, info.st_mtime_ns]
    record: dict[str, object] = {"schema": SCHEMA, "files": files}
    if inputs_sha256:
        described: dict[str, list[int]] = {}
        top = os.fspath(folder)
        for root, _, names in os.walk(top):
            # Strings, not pathlib: a run folder may hold tens of thousands of files.
            inside = os.path.relpath(root, top).replace(os.sep, "/")
            for name in names:
                relative = name if inside == "." else f"{inside}/{name}"
                if relative in files or relative.startswith(RECORD_NAME):
                    continue
                info = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(info.st_mode):
                    described[relative] = [info.st_size, info.st_mtime_ns]
        record.update(
            inputs_sha256=inputs_sha256, manifest_sha256=manifest_sha256, described=described,
            listing_sha256=listing_sha256, listing_notes=list(listing_notes),
        )  # fmt: skip
    temporary = folder / (RECORD_NAME + ".tmp")
    temporary.write_text(json.dumps(record) + "\n", "utf-8")
    os.replace(temporary, folder / RECORD_NAME)
