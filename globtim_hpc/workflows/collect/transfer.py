"""Bringing files over: reuse what is already here, stream the rest as one verified tar into a
hidden work folder, and check local space before anything is written."""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.cksum import StreamCksum, stream_cksum
from globtim_hpc.results.decoding import DecodingSink
from globtim_hpc.results.manifest import (
    ManifestEntry,
    local_path,
)
from globtim_hpc.results.placement import (
    link_or_copy,
    nearest_existing,
    space_error,
)
from globtim_hpc.results.recollect import RECORD_NAME, Known, read_record, still_valid
from globtim_hpc.results.safe_tar import ExtractingSink
from globtim_hpc.results.survey import SurveyEntry
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.collect.describe import GENERATED_NAMES
from globtim_hpc.workflows.collect.records import CollectObserver, CollectResult
from globtim_hpc.workflows.collect.snapshot import MIN_STREAM_TIMEOUT_S

BLOCK_BYTES = 4096  # what a small file costs on disk at least


SPACE_MARGIN_BYTES = 4 << 20  # metadata, summary, folders


ASSUMED_MIN_RATE_BYTES_S = 1 << 20


def disk_bytes(entries: Sequence[ManifestEntry | SurveyEntry]) -> int:
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


def reusable_bytes(target: Path, entries: Sequence[ManifestEntry | SurveyEntry]) -> int:
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


# One command: tar reads each selected file once; tee hands the same bytes to the link and to
# cksum (through a FIFO), so the stream is checked without a second read. tar's exit status, the
# CRC, the codec and the compressor's status go to stderr as the last line, after the whole
# stream: stdout stays pure (compressed) tar. The CRC is of the uncompressed tar, so it checks
# the content end to end, whatever the compressor and the decoder did. "$2" lists the codecs the
# laptop decodes, preferred first: the first one installed here is used, with no round trip.
_STREAM_SCRIPT = r"""
cd -- "$1" || exit 3
z=none
for c in $2; do
  case $c in zstd|gzip) if command -v "$c" >/dev/null 2>&1; then z=$c; break; fi ;; esac
done
t=$(mktemp -d) || exit 6
trap 'rm -rf -- "$t"' EXIT
mkfifo -- "$t/f" || exit 6
cksum < "$t/f" > "$t/c" &
echo 0 > "$t/z"
send() {
  tar -c -f - --format=gnu --null --verbatim-files-from --no-unquote --no-recursion \
    --hard-dereference -T -; echo $? > "$t/s"
}
if [ "$z" = none ]; then
  send | tee -- "$t/f"
else
  send | tee -- "$t/f" | { "$z" -1 -q -c; echo $? > "$t/z"; }
fi
wait
printf 'globtim-stream %s %s %s %s\n' "$(cat -- "$t/s")" "$(cat -- "$t/c")" "$z" \
  "$(cat -- "$t/z")" >&2
"""

_TRAILER = re.compile(rb"^globtim-stream (\d+) (\d+) (\d+) ([a-z]+) (\d+)$", re.MULTILINE)


def stream_argv(remote_dir: str, codecs: Sequence[str] = ()) -> list[str]:
    # The codecs come from a fixed set and the script accepts only those names.
    return ["sh", "-c", _STREAM_SCRIPT, "globtim-stream", remote_dir, " ".join(codecs)]


def check_trailer(stderr: bytes, checksum: StreamCksum, where: str, codec: str | None = None) -> None:
    """The stream is whole and unaltered: tar and the compressor succeeded, the CRCs of both
    ends agree, and (given ``codec``, as sniffed here) the stream came in the codec sent."""
    found = _TRAILER.findall(stderr)
    if not found:
        raise IntegrityError(
            f"the file stream from {where} ended without its checksum line",
            "the connection may have dropped at the very end; collect again (verified files are "
            "kept)",
        )
    status_text, crc_text, length_text, sent_codec, packer_text = found[-1]
    tar_status, crc, length = int(status_text), int(crc_text), int(length_text)
    if tar_status != 0:
        others = _TRAILER.sub(b"", stderr).decode("utf-8", errors="replace").strip()
        raise IntegrityError(
            f"tar on {where} exited with {tar_status} while sending the files: "
            + (others.splitlines()[-1] if others else "no message"),
            "is something still writing into the run folder? collect again once it has finished",
        )
    if int(packer_text) != 0:
        raise IntegrityError(
            f"{sent_codec.decode()} on {where} exited with {int(packer_text)} while compressing "
            "the files",
            "collect again; collect.compression: none in the profile (or --compression none) "
            "avoids it",
        )
    if (crc, length) != (checksum.value(), checksum.byte_count):
        raise IntegrityError(
            f"the file stream from {where} is corrupt: {where} sent {length} bytes with cksum "
            f"{crc}, {checksum.byte_count} bytes with cksum {checksum.value()} arrived",
            "nothing was placed; collect again",
        )
    if codec is not None and sent_codec.decode() != codec:
        raise IntegrityError(
            f"the file stream from {where} was sent as {sent_codec.decode()} but arrived as "
            f"{codec}",
            "nothing was placed; collect again",
        )


def fetch_files(
    transport: Transport,
    remote_dir: str,
    work: Path,
    fetch: Sequence[ManifestEntry],
    observer: CollectObserver,
    result: CollectResult,
    arrived: dict[str, ManifestEntry],
    codecs: tuple[str, ...] = (),
) -> None:
    """Stream ``fetch`` as one tar into ``work``, hashing each file as it is written into
    ``arrived`` (filled even when the stream breaks). Every byte is checked by the stream's CRC.
    ``codecs``: what the cluster may compress with, preferred first (none: plain tar)."""
    expected = {e.path: e for e in fetch}
    checksum = stream_cksum()
    try:
        # One syncfs before the folder is placed is far cheaper than an fsync per file.
        sink = ExtractingSink(
            work, expected, fsync=False, on_bytes=observer.transferred, checksum=checksum,
            on_verified=lambda entry: arrived.__setitem__(entry.path, entry),
        ).start()  # fmt: skip
        wire = DecodingSink(sink, codecs, on_codec=observer.stream_codec)
        file_list = b"".join(os.fsencode(e.path) + b"\0" for e in fetch)
        estimate = _tar_estimate(fetch)
        observer.transfer_started(estimate, len(fetch))
        try:
            try:
                outcome = transport.stream(
                    stream_argv(remote_dir, codecs),
                    stdin_source=io.BytesIO(file_list),
                    stdout_sink=cast(BinaryIO, wire),
                    timeout_s=max(MIN_STREAM_TIMEOUT_S, estimate / ASSUMED_MIN_RATE_BYTES_S),
                )
                codec = wire.finish()
            except BaseException as exc:
                first = sink.abort()
                if first is not None and not isinstance(exc, KeyboardInterrupt):
                    raise first from exc
                raise
            written = sink.finish()
        finally:
            result.stream_bytes_received += sink.bytes_received
            result.wire_bytes_received += wire.wire_bytes
            if wire.codec is not None:
                result.compression = wire.codec
            observer.transfer_finished()
        if outcome.exit_status not in (0,) and not _TRAILER.search(outcome.stderr):
            outcome.check(f"sending files from {remote_dir} on {transport.label}")
        check_trailer(outcome.stderr, checksum, transport.label, codec)
        result.files_fetched += len(written)
        result.content_bytes_received += sum(expected[p].byte_count for p in written)
    finally:
        checksum.close()  # a local cksum process ends with the stream


def prepare_work(
    work: Path,
    target: Path,
    files: Sequence[SurveyEntry],
    notes: list[str],
    in_target: Mapping[str, Known],
) -> tuple[list[ManifestEntry], list[ManifestEntry]]:
    """Fill ``work`` with every local file still valid by metadata (the record of ``work`` from
    an interrupted attempt, then ``in_target``: the record of ``target``, the previous
    collection, as the caller read it); return (reused, still to fetch)."""
    wanted = {e.path for e in files}
    in_work = read_record(work)
    # Anything in an adopted partial folder that is not part of this survey goes.
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder) / name
            rel = path.relative_to(work).as_posix()
            if rel not in wanted and rel != RECORD_NAME:
                path.unlink()
    have_target = target.is_dir() and not target.is_symlink()
    reused: list[ManifestEntry] = []
    fetch: list[ManifestEntry] = []
    for entry in files:
        known = in_work.get(entry.path)
        if still_valid(work, known, entry):
            pass
        elif have_target and still_valid(target, known := in_target.get(entry.path), entry):
            link_or_copy(local_path(target, entry.path), local_path(work, entry.path))
        else:
            fetch.append(ManifestEntry(entry.path, entry.byte_count, ""))
            continue
        assert known is not None
        reused.append(ManifestEntry(entry.path, entry.byte_count, known.sha256))
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
    return reused, fetch


def verify_placed(
    work: Path, entries: Sequence[ManifestEntry], expected_count: int, arrived: Container[str]
) -> None:
    """Every listed file is in ``work`` with its size. A file that ``arrived`` in the stream is
    not looked at again: the extractor created it, wrote exactly its bytes and hashed them."""
    if len(entries) != expected_count:
        raise IntegrityError(
            f"{expected_count - len(entries)} listed files neither arrived nor were found locally"
        )
    for entry in entries:
        if entry.path in arrived:
            continue
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
