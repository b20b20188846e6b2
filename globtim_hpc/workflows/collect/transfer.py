"""Bringing files over: reuse what is already here, stream the rest as one verified tar into a
hidden work folder, and check local space before anything is written."""

from __future__ import annotations

import io
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, cast

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.manifest import (
    ManifestEntry,
    local_path,
    matches,
)
from globtim_hpc.results.placement import (
    link_or_copy,
    nearest_existing,
    space_error,
)
from globtim_hpc.results.safe_tar import ExtractingSink
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.collect.describe import GENERATED_NAMES
from globtim_hpc.workflows.collect.records import CollectObserver, CollectResult
from globtim_hpc.workflows.collect.snapshot import MIN_STREAM_TIMEOUT_S

BLOCK_BYTES = 4096  # what a small file costs on disk at least


SPACE_MARGIN_BYTES = 4 << 20  # metadata, summary, folders


ASSUMED_MIN_RATE_BYTES_S = 1 << 20


def disk_bytes(entries: Sequence[ManifestEntry]) -> int:
    return sum(-(-e.byte_count // BLOCK_BYTES) * BLOCK_BYTES for e in entries) + SPACE_MARGIN_BYTES


def ensure_space(folder: Path, needed: int) -> None:
    where = nearest_existing(folder)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise space_error(where, needed, free)


def _tar_estimate(entries: Sequence[ManifestEntry]) -> int:
    header = 512
    total = 1024  # end-of-archive blocks
    for e in entries:
        long_name = len(os.fsencode(e.path)) >= 100
        total += header + -(-e.byte_count // 512) * 512
        if long_name:
            total += header + -(-(len(os.fsencode(e.path)) + 1) // 512) * 512
    return total


def reusable_bytes(target: Path, entries: Sequence[ManifestEntry]) -> int:
    """Bytes of entries a previous collection already holds with the same size (hard-linked)."""
    if not target.is_dir():
        return 0
    total = 0
    for entry in entries:
        try:
            if local_path(target, entry.path).lstat().st_size == entry.byte_count:
                total += -(-entry.byte_count // BLOCK_BYTES) * BLOCK_BYTES
        except OSError:
            continue
    return total


def fetch_files(
    transport: Transport,
    remote_dir: str,
    work: Path,
    fetch: Sequence[ManifestEntry],
    observer: CollectObserver,
    result: CollectResult,
) -> None:
    """Stream ``fetch`` as one tar into ``work``; every file verified on arrival."""
    expected = {e.path: e for e in fetch}
    # One syncfs before the folder is placed is far cheaper than an fsync per file.
    sink = ExtractingSink(work, expected, fsync=False, on_bytes=observer.transferred).start()
    file_list = b"".join(os.fsencode(e.path) + b"\0" for e in fetch)
    estimate = _tar_estimate(fetch)
    argv = [
        "tar", "-c", "-f", "-", "--format=gnu", "-C", remote_dir,
        "--null", "--verbatim-files-from", "--no-unquote", "--no-recursion", "--hard-dereference",
        "-T", "-",
    ]
    observer.transfer_started(estimate, len(fetch))
    try:
        try:
            outcome = transport.stream(
                argv,
                stdin_source=io.BytesIO(file_list),
                stdout_sink=cast(BinaryIO, sink),
                timeout_s=max(MIN_STREAM_TIMEOUT_S, estimate / ASSUMED_MIN_RATE_BYTES_S),
            )
        except BaseException as exc:
            first = sink.abort()
            if first is not None and not isinstance(exc, KeyboardInterrupt):
                raise first from exc
            raise
        written = sink.finish()
    finally:
        result.stream_bytes_received += sink.bytes_received
        observer.transfer_finished()
    result.files_fetched += len(written)
    result.content_bytes_received += sum(expected[p].byte_count for p in written)
    if not outcome.ok:
        # Every file arrived and verified, so the data is right; say what tar complained about.
        result.notes.append(
            f"tar on {transport.label} exited with {outcome.exit_status} although every file "
            f"verified: {outcome.output_tail(3)}"
        )


def prepare_work(
    work: Path, target: Path, entries: Sequence[ManifestEntry], notes: list[str]
) -> tuple[list[ManifestEntry], int]:
    """Fill ``work`` with every matching local file; return (files still to fetch, reused)."""
    wanted = {e.path for e in entries}
    # Anything in an adopted partial folder that is not part of this manifest goes.
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder) / name
            if path.relative_to(work).as_posix() not in wanted:
                path.unlink()
    fetch: list[ManifestEntry] = []
    reused = 0
    have_target = target.is_dir() and not target.is_symlink()
    for entry in entries:
        in_work = local_path(work, entry.path)
        if matches(in_work, entry):
            reused += 1
            continue
        in_target = local_path(target, entry.path)
        if have_target and matches(in_target, entry):
            link_or_copy(in_target, in_work)
            reused += 1
            continue
        fetch.append(entry)
    if have_target:
        kept = []
        for folder, _, names in os.walk(target):
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(target).as_posix()
                if rel in wanted or rel in GENERATED_NAMES or path.is_symlink():
                    continue
                link_or_copy(path, work / rel)
                kept.append(rel)
        if kept:
            notes.append(
                f"kept {len(kept)} local files that are not in the cluster's run folder: "
                + ", ".join(sorted(kept)[:5])
            )
    return fetch, reused


def verify_placed(work: Path, entries: Sequence[ManifestEntry]) -> None:

    for entry in entries:
        path = local_path(work, entry.path)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise IntegrityError(f"{entry.path!r} is missing after the transfer") from None
        if not stat.S_ISREG(info.st_mode) or info.st_size != entry.byte_count:
            raise IntegrityError(
                f"{entry.path!r} has {info.st_size} bytes locally, the manifest says "
                f"{entry.byte_count}"
            )
