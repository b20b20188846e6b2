"""safe_tar: crafted archives never write outside the destination; files are verified."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.safe_tar import ExtractAborted, ExtractingSink, extract_verified


def entry(path: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(path, len(data), hashlib.sha256(data).hexdigest())


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"untouched")
    return dest, outside


def test_extracts_odd_names_and_verifies_each_file(dirs: tuple[Path, Path]) -> None:
    dest, _ = dirs
    files = {
        "output/0000/results.json": b"{}",
        "output/0000/with space 'q' \"dq\"\nnewline": b"odd",
        os.fsdecode(b"output/raw-\xff-byte"): b"raw",
        "ünïcode/ö.txt": b"x" * 70_000,
        "-leading-dash": b"dash",
    }
    data = archive(*(regular(name, body) for name, body in files.items()))
    written = extract_verified(io.BytesIO(data), dest, {n: entry(n, b) for n, b in files.items()})
    assert sorted(written) == sorted(files)
    for name, body in files.items():
        assert (dest / name).read_bytes() == body


@pytest.mark.parametrize(
    ("members", "expected_names", "reason"),
    [
        ([regular("../evil.txt", b"x")], ["../evil.txt"], "'..'"),
        ([regular("a/../../evil.txt", b"x")], ["a/../../evil.txt"], "'..'"),
        ([regular("{outside}/abs.txt", b"x")], ["{outside}/abs.txt"], "absolute"),
        ([special("link", tarfile.SYMTYPE, "{outside}"), regular("link/evil.txt", b"x")],
         ["link", "link/evil.txt"], "symbolic link"),
        ([special("rel", tarfile.SYMTYPE, "../outside"), regular("rel/evil.txt", b"x")],
         ["rel", "rel/evil.txt"], "symbolic link"),
        ([special("hard", tarfile.LNKTYPE, "{outside}/keep.txt")], ["hard"], "hard link"),
        ([special("hard", tarfile.LNKTYPE, "../outside/keep.txt")], ["hard"], "hard link"),
        ([special("fifo", tarfile.FIFOTYPE)], ["fifo"], "FIFO"),
        ([special("dev", tarfile.CHRTYPE)], ["dev"], "device"),
        ([special("blk", tarfile.BLKTYPE)], ["blk"], "device"),
        ([special("folder", tarfile.DIRTYPE)], ["folder"], "folder"),
        ([regular("not-asked-for.txt", b"x")], [], "not requested"),
        ([regular("twice.txt", b"x"), regular("twice.txt", b"x")], ["twice.txt"], "second time"),
    ],
)
def test_crafted_archives_write_nothing_outside(
    dirs: tuple[Path, Path],
    members: list[tuple[tarfile.TarInfo, bytes | None]],
    expected_names: list[str],
    reason: str,
) -> None:
    dest, outside = dirs
    for info, _ in members:
        info.name = info.name.replace("{outside}", str(outside))
        info.linkname = info.linkname.replace("{outside}", str(outside))
    names = [n.replace("{outside}", str(outside)) for n in expected_names]
    expected = {n: entry(n, b"x") for n in names}
    before = tree(outside)
    with pytest.raises(IntegrityError, match=reason):
        extract_verified(io.BytesIO(archive(*members)), dest, expected)
    assert tree(outside) == before
    assert (outside / "keep.txt").read_bytes() == b"untouched"
    assert not (dest.parent / "evil.txt").exists()
    for path in dest.rglob("*"):
        assert not path.is_symlink()


def test_symlink_already_in_destination_is_not_followed(dirs: tuple[Path, Path]) -> None:
    dest, outside = dirs
    (dest / "sub").symlink_to(outside)
    with pytest.raises(IntegrityError, match="not a plain folder"):
        extract_verified(
            io.BytesIO(archive(regular("sub/evil.txt", b"x"))), dest, {"sub/evil.txt": entry("sub/evil.txt", b"x")}
        )
    assert tree(outside) == {"keep.txt"}


def test_symlink_file_in_destination_is_replaced_not_written_through(dirs: tuple[Path, Path]) -> None:
    dest, outside = dirs
    (dest / "f.txt").symlink_to(outside / "keep.txt")
    extract_verified(io.BytesIO(archive(regular("f.txt", b"new"))), dest, {"f.txt": entry("f.txt", b"new")})
    assert (outside / "keep.txt").read_bytes() == b"untouched"
    assert not (dest / "f.txt").is_symlink()
    assert (dest / "f.txt").read_bytes() == b"new"


def test_content_not_matching_the_manifest_is_removed_and_named(dirs: tuple[Path, Path]) -> None:
    dest, _ = dirs
    data = archive(regular("ok.txt", b"fine"), regular("output/changed.bin", b"new bytes"))
    expected = {"ok.txt": entry("ok.txt", b"fine"),
                "output/changed.bin": entry("output/changed.bin", b"old bytes")}
    with pytest.raises(IntegrityError, match=r"'output/changed\.bin' changed on the cluster"):
        extract_verified(io.BytesIO(data), dest, expected)
    assert (dest / "ok.txt").read_bytes() == b"fine"  # verified files stay for a resume
    assert not (dest / "output" / "changed.bin").exists()


def test_missing_and_truncated(dirs: tuple[Path, Path]) -> None:
    dest, _ = dirs
    expected = {"a": entry("a", b"a"), "b": entry("b", b"b")}
    with pytest.raises(IntegrityError, match="ended without 1 requested files: 'b'"):
        extract_verified(io.BytesIO(archive(regular("a", b"a"))), dest, expected)
    big = b"z" * 100_000
    data = archive(regular("big", big))
    with pytest.raises(IntegrityError, match="broke off"):
        extract_verified(io.BytesIO(data[:60_000]), dest, {"big": entry("big", big)})
    assert not (dest / "big").exists()


def test_sink_extracts_chunks_and_counts_bytes(dirs: tuple[Path, Path]) -> None:
    dest, _ = dirs
    body = os.urandom(300_000)
    data = archive(regular("x/y.bin", body))
    seen: list[int] = []
    sink = ExtractingSink(dest, {"x/y.bin": entry("x/y.bin", body)}, on_bytes=seen.append).start()
    for start in range(0, len(data), 8192):
        sink.write(data[start : start + 8192])
    assert sink.finish() == ["x/y.bin"]
    assert sink.bytes_received == len(data) == sum(seen)
    assert (dest / "x" / "y.bin").read_bytes() == body


def test_sink_reports_the_extractors_error_first(dirs: tuple[Path, Path]) -> None:
    dest, outside = dirs
    data = archive(regular("../evil", b"x" * 10), regular("pad", os.urandom(400_000)))
    sink = ExtractingSink(dest, {"../evil": entry("../evil", b"x" * 10)}).start()
    with pytest.raises(ExtractAborted):
        for start in range(0, len(data), 4096):
            sink.write(data[start : start + 4096])
    error = sink.abort()
    assert isinstance(error, IntegrityError) and "'..'" in str(error)
    assert tree(outside) == {"keep.txt"}
