"""One-pass collection on the bed: a file changed on the cluster between two collections is
fetched again (by metadata alone), and a stream altered on its way is caught by its CRC."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import BinaryIO

import pytest

from globtim_hpc.errors import IntegrityError
from globtim_hpc.layout import local_run_dir
from globtim_hpc.transport.base import CommandResult, ProgressFn
from globtim_hpc.transport.recording import RecordingTransport

from . import test_collect
from .test_collect import Bed, visible_entries

pytestmark = pytest.mark.integration

bed = test_collect.bed  # the same fixture: a run folder fabricated on falcon, removed after


class _Flipping:
    """Flips one bit at a chosen stream offset: what a faulty hop would do."""

    def __init__(self, inner: BinaryIO, offset: int) -> None:
        self.inner, self.offset, self.seen = inner, offset, 0

    def write(self, data: bytes) -> int:
        chunk = bytearray(data)
        if self.seen <= self.offset < self.seen + len(chunk):
            chunk[self.offset - self.seen] ^= 0x04
        self.seen += len(chunk)
        return self.inner.write(bytes(chunk))

    def flush(self) -> None:
        self.inner.flush()


class CorruptingTransport(RecordingTransport):
    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        assert stdout_sink is not None
        flipping = _Flipping(stdout_sink, 512 + 3)  # inside the first member's content
        return super().stream(argv, stdin_source=stdin_source, stdout_sink=flipping,  # type: ignore[arg-type]
                              timeout_s=timeout_s, progress=progress)

    def close(self) -> None:
        pass


def manifest_checks(folder: object) -> None:
    check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=str(folder),
                           capture_output=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_file_changed_between_collections_is_fetched_again_alone(bed: Bed) -> None:
    run = bed.make_run([("EXITED", 0)], small_count=30)
    first = bed.collect(run)
    target = local_run_dir(bed.results, run.problem, run.run_id)
    victim = "output/0000/results.json"
    before = (target / victim).read_bytes()
    bed.change_remote_byte(run, victim)  # same size, new content: only mtime/ctime tell
    with bed.transport() as inner:
        recording = RecordingTransport(inner)
        again = bed.collect(run, recording)
    assert (again.files_fetched, again.files_reused) == (1, first.file_count - 1)
    after = (target / victim).read_bytes()
    assert len(after) == len(before) and after != before and after[3:4] == b"Q"
    assert again.manifest_sha256 != first.manifest_sha256
    manifest_checks(target)
    assert [c.kind for c in recording.commands] == ["run", "stream"]


def test_corrupted_stream_is_detected_and_nothing_is_placed(bed: Bed) -> None:
    run = bed.make_run([("EXITED", 0)], small_count=5)
    target = local_run_dir(bed.results, run.problem, run.run_id)
    with bed.transport() as inner, pytest.raises(IntegrityError, match="corrupt"):
        bed.collect(run, CorruptingTransport(inner))
    assert not target.exists() and visible_entries(target.parent) == []
    assert bed.store.collections(run.run_id) == []
    # nothing of the bad stream is trusted: the next collection fetches every file and verifies
    good = bed.collect(run)
    assert good.complete and good.files_fetched == good.file_count
    manifest_checks(target)
