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


# ---- the stream reader: every header form a tar may use, fed in pieces of any size ------------


def formatted(fmt: int, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), 1_700_000_000 + len(name), 0o755
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def rechecksum(header: bytearray) -> None:
    """Make the first header's checksum right again after an edit."""
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])


LONG = "output/0000/" + "deep/" * 30 + "critical_points_with_a_long_name.csv"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("chunk", [1, 511, 512, 513, 1 << 20])
def test_gnu_pax_and_ustar_headers_read_alike_in_any_pieces(tmp_path: Path, fmt: int, chunk: int) -> None:
    files = {"a.txt": b"a", LONG: os.urandom(1500), "empty": b"", "b/" + "c" * 99: b"c" * 512}
    if fmt != tarfile.USTAR_FORMAT:  # ustar can hold neither a name this long nor non-ASCII
        files["ünï/" + "x" * 120 + ".bin"] = b"u" * 700
    else:
        files.pop(LONG)
        files["p/" * 60 + "f"] = b"prefix"  # a name ustar splits into its prefix field
    data = formatted(fmt, files)
    sink = ExtractingSink(tmp_path, {n: entry(n, b) for n, b in files.items()}).start()
    for start in range(0, len(data), chunk):
        sink.write(data[start : start + chunk])
    assert sorted(sink.finish()) == sorted(files)
    for name, body in files.items():
        path = tmp_path / name
        assert path.read_bytes() == body
        assert int(path.stat().st_mtime) == 1_700_000_000 + len(name)
        assert path.stat().st_mode & 0o111


def test_a_base_256_size_is_read(tmp_path: Path) -> None:
    data = bytearray(archive(regular("f", b"x" * 3)))
    data[124:136] = b"\x80" + (3).to_bytes(11, "big")  # how GNU tar writes sizes past 8 GiB
    rechecksum(data)
    assert extract_verified(io.BytesIO(bytes(data)), tmp_path, {"f": entry("f", b"xxx")}) == ["f"]


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    data = bytearray(archive(regular("f", b"x"), regular("g", b"y")))
    data[512 + 512 + 10] ^= 0x20  # a bit of the second header's name
    with pytest.raises(IntegrityError, match="checksum"):
        extract_verified(io.BytesIO(bytes(data)), tmp_path, {n: entry(n, b) for n, b in [("f", b"x"), ("g", b"y")]})
    assert (tmp_path / "f").read_bytes() == b"x"


def test_a_sparse_member_and_a_global_header_are_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("s")
    info.size = 1
    info.pax_headers = {"GNU.sparse.size": "1"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"s"))
    with pytest.raises(IntegrityError, match="sparse"):
        extract_verified(io.BytesIO(buffer.getvalue()), tmp_path, {"s": entry("s", b"s")})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "global"}) as tar:
        tar.addfile(regular("g", b"g")[0], io.BytesIO(b"g"))
    with pytest.raises(IntegrityError, match="tar type 'g'"):
        extract_verified(io.BytesIO(buffer.getvalue()), tmp_path, {"g": entry("g", b"g")})
    assert not (tmp_path / "s").exists() and not (tmp_path / "g").exists()


def test_an_archive_without_its_end_or_without_any_bytes_is_broken(tmp_path: Path) -> None:
    data = archive(regular("a", b"a"))
    whole_member = data[: 512 + 512]  # the header and data block, not the end-of-archive blocks
    with pytest.raises(IntegrityError, match="ends before the archive does"):
        extract_verified(io.BytesIO(whole_member), tmp_path, {"a": entry("a", b"a")})
    with pytest.raises(IntegrityError, match="not a tar archive"):
        extract_verified(io.BytesIO(b""), tmp_path, {"b": entry("b", b"b")})
    assert extract_verified(io.BytesIO(b""), tmp_path, {}) == []


def test_an_oversized_long_name_is_refused_before_it_is_buffered(tmp_path: Path) -> None:
    header = bytearray(archive(regular("x", b""))[:512])
    header[0:100] = b"././@LongLink".ljust(100, b"\0")
    header[156] = ord("L")
    header[124:136] = b"%011o\0" % (64 << 20)
    rechecksum(header)
    with pytest.raises(IntegrityError, match="tar headers of 67108864 bytes"):
        extract_verified(io.BytesIO(bytes(header)), tmp_path, {"x": entry("x", b"")})


def pax_archive(records: dict[str, str], name: str = "p", body: bytes = b"p") -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    info.pax_headers = records
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("records", "reason"),
    [({"size": "1e0"}, "pax size"), ({"size": "-1"}, "pax size"),
     ({"mtime": "inf"}, "pax mtime"), ({"mtime": "99999999999999999999999"}, "pax mtime")],
)
def test_pax_numbers_that_are_not_whole_numbers_are_refused(
    tmp_path: Path, records: dict[str, str], reason: str
) -> None:
    with pytest.raises(IntegrityError, match=reason):
        extract_verified(io.BytesIO(pax_archive(records)), tmp_path, {"p": entry("p", b"p")})
    assert not (tmp_path / "p").exists()


def test_a_pax_mtime_with_a_fraction_is_kept_to_the_second(tmp_path: Path) -> None:
    data = pax_archive({"mtime": "1700000000.75"})
    extract_verified(io.BytesIO(data), tmp_path, {"p": entry("p", b"p")})
    assert int((tmp_path / "p").stat().st_mtime) == 1_700_000_000


def test_a_negative_size_and_a_far_mtime_are_refused(tmp_path: Path) -> None:
    data = bytearray(archive(regular("f", b"x")))
    data[124:136] = b"\xff" * 12  # base-256 for -1
    rechecksum(data)
    with pytest.raises(IntegrityError, match="size is -1"):
        extract_verified(io.BytesIO(bytes(data)), tmp_path, {"f": entry("f", b"x")})
    data = bytearray(archive(regular("f", b"x")))
    data[136:148] = b"\x80" + (1 << 80).to_bytes(11, "big")
    rechecksum(data)
    with pytest.raises(IntegrityError, match="has mtime"):
        extract_verified(io.BytesIO(bytes(data)), tmp_path, {"f": entry("f", b"x")})
    assert not (tmp_path / "f").exists()


def test_many_pax_headers_before_one_member_count_together(tmp_path: Path) -> None:
    one = pax_archive({"comment": "c" * 600_000})[:-1024]  # a pax header, its member, no end
    header_and_data = one[: one.index(b"ustar", 600_000) - 257]  # the pax header alone
    data = header_and_data * 2 + archive(regular("f", b"x"))
    with pytest.raises(IntegrityError, match=r"tar headers of \d+ bytes before a member"):
        extract_verified(io.BytesIO(data), tmp_path, {"f": entry("f", b"x")})


def test_nothing_is_written_after_an_abort(dirs: tuple[Path, Path]) -> None:
    dest, _ = dirs
    data = archive(regular("late.txt", b"late"))
    sink = ExtractingSink(dest, {"late.txt": entry("late.txt", b"late")}).start()
    assert sink.abort() is None
    with pytest.raises(ExtractAborted, match="stopped"):
        sink.write(data)
    assert list(dest.iterdir()) == []
