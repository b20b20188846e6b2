"""One-pass collection pieces, run against the real coreutils/GNU tar of this machine: the
laptop's cksum equals coreutils', the listing keeps odd names, and the stream's trailer catches
a corrupted, short or failed stream."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results import cksum as cksum_module
from globtim_hpc.results.cksum import Cksum, PipedCksum, cksum, stream_cksum
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.recollect import (
    load_record,
    read_record,
    still_valid,
    unchanged,
    write_record,
)
from globtim_hpc.results.safe_tar import extract_verified
from globtim_hpc.results.survey import parse_survey, survey_argv
from globtim_hpc.workflows.collect.transfer import check_trailer, stream_argv

ODD = ["with space 'q'.txt", "new\nline.txt", "back\\slash", "ünï.json", "-dash"]


@pytest.mark.parametrize("size", [0, 1, 3, 255, 256, 65_537, 1 << 20])
def test_cksum_equals_coreutils(size: int) -> None:
    data = os.urandom(size)
    real = subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout.split()
    assert (int(real[0]), int(real[1])) == (cksum(data), size)


def test_cksum_in_pieces_equals_whole() -> None:
    data = os.urandom(100_000)
    crc = Cksum()
    for start in range(0, len(data), 7_001):
        crc.update(memoryview(data)[start : start + 7_001])
    assert crc.value() == cksum(data) and crc.byte_count == len(data)


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    cksum_module._system_cksum.cache_clear()
    yield
    cksum_module._system_cksum.cache_clear()


@pytest.mark.parametrize("size", [0, 1, 65_536, 3_000_001])
def test_the_system_cksum_is_used_and_agrees_in_pieces(fresh_probe: object, size: int) -> None:
    data = os.urandom(size)
    crc = stream_cksum()
    try:
        assert isinstance(crc, PipedCksum)
        for start in range(0, len(data), 65_000):
            crc.update(memoryview(data)[start : start + 65_000])
        assert (crc.value(), crc.byte_count) == (cksum(data), size)
        assert crc.value() == cksum(data)  # asked twice, as a failure message does
    finally:
        crc.close()


def fake_cksum(folder: Path, script: str) -> None:
    folder.mkdir()
    program = folder / "cksum"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)


def test_a_cksum_that_disagrees_or_is_missing_leaves_it_to_python(
    fresh_probe: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cksum(tmp_path / "bsd", "cat >/dev/null; echo 12345 6\n")  # another algorithm
    monkeypatch.setenv("PATH", str(tmp_path / "bsd"))
    assert type(stream_cksum()) is Cksum
    cksum_module._system_cksum.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert type(stream_cksum()) is Cksum


def test_a_cksum_that_dies_mid_stream_fails_the_collection_clearly(tmp_path: Path) -> None:
    fake_cksum(tmp_path / "dies", "exit 0\n")
    crc = PipedCksum(str(tmp_path / "dies" / "cksum"))
    try:
        with pytest.raises(IntegrityError, match="the local cksum that checks the file stream"):
            for _ in range(200):  # more than a pipe holds: the write finds it gone
                crc.update(bytes(1 << 16))
            crc.value()
    finally:
        crc.close()


def make_run(root: Path) -> Path:
    run = root / "run"
    (run / "output" / "0000").mkdir(parents=True)
    (run / "status").mkdir()
    (run / "submission.json").write_text("{}")
    (run / "status" / "0000.json").write_text("{}")
    for name in ODD:
        (run / "output" / "0000" / name).write_text(name * 3)
    os.symlink("/etc/passwd", run / "output" / "link")
    return run


def test_survey_lists_metadata_of_odd_names_and_skips_non_files(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = subprocess.run(survey_argv(str(run)), capture_output=True, check=True).stdout
    survey = parse_survey(out)
    paths = {f.path: f for f in survey.files}
    for name in ODD:
        entry = paths[f"output/0000/{name}"]
        assert entry.byte_count == len(name.encode()) * 3
        assert entry.mtime and entry.ctime
    assert survey.skipped == (("l", "output/link"),)
    assert survey.snapshot_tgz[:2] == b"\x1f\x8b"  # the status files, gzipped, same command
    assert {f.path for f in survey.without(["output/0000"]).files} == {
        "submission.json", "status/0000.json"}


def stream(run: Path, names: list[str]) -> subprocess.CompletedProcess[bytes]:
    file_list = b"".join(os.fsencode(n) + b"\0" for n in names)
    return subprocess.run(stream_argv(str(run)), input=file_list, capture_output=True)


def test_stream_trailer_matches_the_bytes_and_catches_one_flipped_bit(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    names = [f"output/0000/{n}" for n in ODD]
    done = stream(run, names)
    assert done.returncode == 0, done.stderr
    crc = Cksum()
    crc.update(done.stdout)
    check_trailer(done.stderr, crc, "here")
    dest = tmp_path / "dest"
    dest.mkdir()
    arrived: list[ManifestEntry] = []
    expected = {n: ManifestEntry(n, (run / n).stat().st_size, "") for n in names}
    extract_verified(io.BytesIO(done.stdout), dest, expected, on_verified=arrived.append)
    assert {e.path for e in arrived} == set(names) and all(len(e.sha256) == 64 for e in arrived)

    damaged = bytearray(done.stdout)
    damaged[600] ^= 0x01  # inside the first member's content
    bad = Cksum()
    bad.update(damaged)
    with pytest.raises(IntegrityError, match="corrupt"):
        check_trailer(done.stderr, bad, "here")
    short = Cksum()
    short.update(done.stdout[:-512])
    with pytest.raises(IntegrityError, match="corrupt"):
        check_trailer(done.stderr, short, "here")
    with pytest.raises(IntegrityError, match="without its checksum line"):
        check_trailer(b"", crc, "here")


def test_stream_reports_tar_failure_for_a_vanished_file(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    done = stream(run, ["submission.json", "no/such/file"])
    crc = Cksum()
    crc.update(done.stdout)
    with pytest.raises(IntegrityError, match="tar on here exited with 2"):
        check_trailer(done.stderr, crc, "here")


def test_record_holds_by_metadata_and_notices_a_local_change(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    survey = parse_survey(subprocess.run(survey_argv(str(run)), capture_output=True, check=True).stdout)
    stamps = {f.path: f for f in survey.files}
    entries = [ManifestEntry(f.path, f.byte_count, "a" * 64) for f in survey.files]
    write_record(run, entries, stamps)
    record = read_record(run)
    assert all(still_valid(run, record.get(f.path), f) for f in survey.files)
    victim = stamps["submission.json"]
    (run / "submission.json").write_text("[]")  # same size, new local mtime
    os.utime(run / "submission.json", ns=(1, 1))
    assert not still_valid(run, record[victim.path], victim)


def test_an_unchanged_folder_is_known_by_metadata_and_any_change_breaks_it(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    survey = parse_survey(subprocess.run(survey_argv(str(run)), capture_output=True, check=True).stdout)
    stamps = {f.path: f for f in survey.files}
    entries = [ManifestEntry(f.path, f.byte_count, "a" * 64) for f in survey.files]
    (run / "summary.md").write_text("# described\n")  # a description: not a collected file
    write_record(run, entries, stamps, inputs_sha256="in-1", manifest_sha256="m-1")
    same = unchanged(run, load_record(run), stamps, "in-1")
    assert same is not None and (same.manifest_sha256, same.file_count) == ("m-1", len(stamps))
    assert unchanged(run, load_record(run), stamps, "in-2") is None, "other task states or notes: describe again"
    fewer = dict(list(stamps.items())[1:])
    assert unchanged(run, load_record(run), fewer, "in-1") is None, "the cluster lists other files"
    (run / "summary.md").write_text("# edited by hand\n")
    assert unchanged(run, load_record(run), stamps, "in-1") is None, "a description was changed"
    write_record(run, entries, stamps)  # a record of an interrupted collection names no inputs
    assert unchanged(run, load_record(run), stamps, "") is None
