"""Compression of the collection stream: the choice of codec, the sniffing decoder in front of the
extractor, the stream script's negotiation (run against this machine's sh, tar, gzip and zstd),
and the profile key and flag that ask for it."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from globtim_hpc.cli.collect import build_parser
from globtim_hpc.errors import ConfigError, IntegrityError, UsageError
from globtim_hpc.results.cksum import Cksum
from globtim_hpc.results.decoding import DecodingSink, decodable, sniff
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.safe_tar import ExtractingSink
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.workflows.collect.compression import (
    AUTO_MIN_BYTES,
    MODES,
    check_mode,
    choose,
    fallback_note,
)
from globtim_hpc.workflows.collect.transfer import check_trailer, stream_argv

# zstandard is a test dependency (pyproject's test extra) and gzip and zstd are installed by
# tests/testbed/packages.sh: a missing one fails these tests, it never skips them.
assert importlib.util.find_spec("zstandard") is not None, "zstandard: bash scripts/setup.sh installs it"


def require_tool(name: str) -> None:
    assert shutil.which(name), f"{name} is not on PATH: tests/testbed/packages.sh installs it"


BOTH = ("zstd", "gzip")
MB = 1 << 20


# ---- the choice ---------------------------------------------------------------------------------


def test_auto_compresses_a_run_of_mostly_text_over_a_real_link() -> None:
    files = [("output/0000/critical_points.csv", 3 * MB), ("output/0000/state.jld2", MB)]
    assert choose("auto", files, local_link=False, decodable=BOTH).codecs == BOTH
    assert choose("auto", files, local_link=False, decodable=("gzip",)).codecs == ("gzip",)


@pytest.mark.parametrize(
    "files",
    [
        [("output/0000/state.jld2", 3 * MB), ("output/0000/a.csv", MB)],  # mostly packed data
        [("output/0000/big.bin", 3 * MB), ("logs/x.out", MB)],  # unknown kind counts against
        [("output/0000/plot.png", MB), ("output/0000/data.h5", MB), ("a.csv", MB)],
        [("output/0000/a.csv", AUTO_MIN_BYTES - 1)],  # too small to matter
        [],
    ],
)
def test_auto_sends_plain_tar_where_compression_does_not_pay(files: list[tuple[str, int]]) -> None:
    assert choose("auto", files, local_link=False, decodable=BOTH).codecs == ()


def test_auto_never_compresses_on_a_local_link_but_an_explicit_codec_does() -> None:
    files = [("a.csv", 10 * MB)]
    assert choose("auto", files, local_link=True, decodable=BOTH).codecs == ()
    assert choose("gzip", files, local_link=True, decodable=BOTH).codecs == ("gzip",)
    assert choose("none", files, local_link=False, decodable=BOTH).codecs == ()


def test_explicit_codecs_whatever_the_content() -> None:
    packed = [("state.jld2", 10 * MB)]
    assert choose("zstd", packed, local_link=False, decodable=BOTH).codecs == ("zstd", "gzip")
    assert choose("gzip", packed, local_link=False, decodable=BOTH).codecs == ("gzip",)


def test_zstd_asked_for_without_a_decoder_here_falls_back_to_gzip_with_a_note() -> None:
    offer = choose("zstd", [("a.csv", MB)], local_link=False, decodable=("gzip",))
    assert offer.codecs == ("gzip",) and offer.note and "globtim-hpc[fast]" in offer.note


def test_a_codec_missing_on_the_cluster_is_noted_only_when_asked_for_by_name() -> None:
    assert fallback_note("zstd", ("zstd", "gzip"), "gzip", "falcon") == (
        "zstd is not installed on falcon; the files came with gzip"
    )
    assert "uncompressed" in (fallback_note("gzip", ("gzip",), "none", "falcon") or "")
    assert fallback_note("auto", ("zstd", "gzip"), "none", "falcon") is None
    assert fallback_note("gzip", ("gzip",), "gzip", "falcon") is None


def test_a_bad_mode_is_a_usage_error_naming_the_allowed_values() -> None:
    with pytest.raises(UsageError, match="'brotli' is not one of: auto, zstd, gzip, none"):
        check_mode("brotli", "compression")
    with pytest.raises(UsageError):
        choose("lz4", [], local_link=False, decodable=BOTH)


# ---- the profile key and the flag ---------------------------------------------------------------


def test_profile_key_is_read_and_validated(tmp_path: Path) -> None:
    assert load_profile("local").collect_compression == "auto"
    good = tmp_path / "good.yaml"
    good.write_text("collect:\n  compression: gzip\n")
    assert load_profile(str(good)).collect_compression == "gzip"
    bad = tmp_path / "bad.yaml"
    bad.write_text("collect:\n  compression: brotli\n")
    with pytest.raises(ConfigError) as info:
        load_profile(str(bad))
    assert "collect.compression" in info.value.message
    assert "not one of: auto, zstd, gzip, none" in info.value.message


def test_flag_and_profile_offer_the_same_modes_as_the_policy() -> None:
    from globtim_hpc.settings.profile import SCHEMA

    assert SCHEMA["collect"]["compression"].choices == MODES
    (action,) = [a for a in build_parser()._actions if a.dest == "compression"]
    assert tuple(action.choices or ()) == MODES


def test_flag_takes_only_the_known_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["--compression", "zstd"]).compression == "zstd"
    assert build_parser().parse_args([]).compression is None
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--compression", "brotli"])
    assert info.value.code == 2 and "--compression" in capsys.readouterr().err


# ---- the decoder --------------------------------------------------------------------------------


def content(size: int) -> bytes:
    return b"".join(b"%d,0.%017d\n" % (k, k * 7919) for k in range(size))[:size]


def make_tar(names_sizes: dict[str, int]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, size in names_sizes.items():
            data = content(size)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, compresslevel=1)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


def feed_and_extract(
    tmp_path: Path, wire: bytes, accept: tuple[str, ...], chunk: int
) -> tuple[DecodingSink, Cksum, list[str]]:
    files = {"output/0000/a.csv": 70_001, "output/0000/b.csv": 3, "logs/x.out": 0}
    expected = {n: ManifestEntry(n, s, "") for n, s in files.items()}
    dest = tmp_path / "dest"
    dest.mkdir()
    checksum = Cksum()
    sink = ExtractingSink(dest, expected, fsync=False, checksum=checksum).start()
    told: list[str] = []
    decoder = DecodingSink(sink, accept, on_codec=told.append)
    try:
        for start in range(0, len(wire), chunk):
            decoder.write(wire[start : start + chunk])
        decoder.finish()
    except BaseException:
        sink.abort()
        raise
    written = sink.finish()
    assert sorted(written) == sorted(files) and told == [decoder.codec]
    return decoder, checksum, written


@pytest.mark.parametrize("codec", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("chunk", [1, 3, 4097, 1 << 20])
def test_decoder_sniffs_decodes_and_the_crc_is_over_the_plain_tar(
    tmp_path: Path, codec: str, chunk: int
) -> None:
    plain = make_tar({"output/0000/a.csv": 70_001, "output/0000/b.csv": 3, "logs/x.out": 0})
    wire = compress(codec, plain)
    decoder, checksum, _ = feed_and_extract(tmp_path, wire, BOTH, chunk)
    assert decoder.codec == codec and sniff(wire[:4]) == codec
    assert decoder.wire_bytes == len(wire)
    reference = Cksum()
    reference.update(plain)
    assert (checksum.value(), checksum.byte_count) == (reference.value(), len(plain))
    if codec != "none":
        assert len(wire) < len(plain) / 2
    for name, size in {"output/0000/a.csv": 70_001, "output/0000/b.csv": 3}.items():
        assert (tmp_path / "dest" / name).read_bytes() == content(size)


def test_decoder_refuses_a_codec_not_offered_and_passes_plain_tar_when_none_was(
    tmp_path: Path,
) -> None:
    wire = compress("gzip", make_tar({"output/0000/a.csv": 10}))
    dest = tmp_path / "d"
    dest.mkdir()
    inner = io.BytesIO()
    with pytest.raises(IntegrityError, match="compressed with gzip, which was not asked for"):
        DecodingSink(inner, ("zstd",)).write(wire)
    passthrough = DecodingSink(inner, ())
    passthrough.write(wire)
    assert passthrough.finish() == "none" and inner.getvalue() == wire


def test_decoder_catches_a_damaged_or_cut_stream() -> None:
    wire = compress("gzip", make_tar({"output/0000/a.csv": 200_000}))
    damaged = bytearray(wire)
    damaged[len(wire) // 2] ^= 0xFF
    with pytest.raises(IntegrityError, match="gzip file stream is corrupt"):
        sink = DecodingSink(io.BytesIO(), BOTH)
        sink.write(bytes(damaged))
        sink.finish()
    cut = DecodingSink(io.BytesIO(), BOTH)
    cut.write(wire[: len(wire) // 2])
    with pytest.raises(IntegrityError, match="broke off before its end"):
        cut.finish()


def test_a_stream_shorter_than_the_magic_is_plain() -> None:
    inner = io.BytesIO()
    short = DecodingSink(inner, BOTH)
    short.write(b"\x1f")
    assert short.finish() == "none" and inner.getvalue() == b"\x1f"


def test_this_machine_decodes_gzip_always_and_zstd_with_zstandard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert decodable() == BOTH
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "zstandard" else real_find_spec(name, *a),
    )  # fmt: skip
    assert decodable() == ("gzip",)


# ---- the stream script --------------------------------------------------------------------------


def run_stream(tmp_path: Path, codecs: tuple[str, ...]) -> tuple[bytes, bytes]:
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True, exist_ok=True)
    for k in range(5):
        (run / "output" / f"p{k}.csv").write_bytes(b"0.12345678901234567,-0.5\n" * 4000)
    names = b"".join(b"output/p%d.csv\0" % k for k in range(5))
    done = subprocess.run(stream_argv(str(run), codecs), input=names, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.mark.parametrize(
    ("codecs", "expected"),
    [
        (("zstd", "gzip"), "zstd"),
        (("gzip",), "gzip"),
        ((), "none"),
        (("rm -rf /", "gzip"), "gzip"),  # only known names are ever run
    ],
)
def test_script_uses_the_first_offered_codec_it_has(
    tmp_path: Path, codecs: tuple[str, ...], expected: str
) -> None:
    if expected != "none":
        require_tool(expected)
    wire, stderr = run_stream(tmp_path, codecs)
    assert sniff(wire[:4]) == expected
    assert f" {expected} 0\n".encode() in stderr
    sink = DecodingSink(plain := io.BytesIO(), codecs)
    sink.write(wire)
    assert sink.finish() == expected
    checksum = Cksum()
    checksum.update(plain.getvalue())
    check_trailer(stderr, checksum, "here", expected)
    if expected != "none":
        assert len(wire) * 3 < len(plain.getvalue())
    with pytest.raises(IntegrityError, match="was sent as"):
        check_trailer(stderr, checksum, "here", "gzip" if expected != "gzip" else "zstd")


def test_script_without_the_codec_on_the_cluster_sends_plain_tar(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "tar", "tee", "cksum", "mktemp", "mkfifo", "rm", "cat"):
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.csv").write_text("1,2\n" * 1000)
    done = subprocess.run(
        stream_argv(str(run), ("zstd", "gzip")), input=b"a.csv\0", capture_output=True,
        env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sniff(done.stdout[:4]) == "none" and done.stderr.endswith(b" none 0\n")


def test_a_failing_compressor_is_reported(tmp_path: Path) -> None:
    stderr = b"globtim-stream 0 123 456 zstd 1\n"
    checksum = Cksum()
    with pytest.raises(IntegrityError, match="zstd on here exited with 1 while compressing"):
        check_trailer(stderr, checksum, "here", "zstd")


# ---- a whole collection on this machine ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("gzip", "gzip"), ("zstd", "zstd"), ("auto", "none")],
)
def test_local_collection_with_compression(tmp_path: Path, mode: str, expected: str) -> None:
    from globtim_hpc.layout import new_run_id
    from globtim_hpc.registry.store import Store
    from globtim_hpc.scheduler.direct import DirectScheduler
    from globtim_hpc.transport.local import LocalTransport
    from globtim_hpc.workflows.collect import CollectOptions, SilentObserver, collect_run

    from .test_summary import fabricate

    if expected != "none":
        require_tool(expected)
    remote_root = tmp_path / "remote"
    run_id = new_run_id("4d_benchmark")
    run_dir = fabricate(remote_root, run_id, {"0000": ("EXITED", 0)})
    (run_dir / "output" / "0000" / "big.csv").write_bytes(b"0.1234567890123,-0.5\n" * 40_000)
    told: list[str] = []

    class Told(SilentObserver):
        def stream_codec(self, codec: str) -> None:
            told.append(codec)

    with Store.open() as store:
        store.add_run(run_id=run_id, problem="4d_benchmark", cluster="local", scheduler="direct",
                      remote_dir=str(run_dir), task_ids=["0000"], config_hash="h",
                      deploy_id="d1", git_sha="abc123", plan={}, submission=None)
        store.record_job(run_id, "local", "7")
        run = store.get_run(run_id)
        assert run is not None
        options = CollectOptions(results_root=tmp_path / "results", fsync=False,
                                 compression=mode, local_link=True)
        result = collect_run(run, store=store, scheduler=DirectScheduler(LocalTransport()),
                             remote_root=str(remote_root), options=options, ask_scheduler=False,
                             observer=Told())
    assert result.compression == expected and told == [expected]
    target = Path(result.local_dir or "")
    assert (target / "output" / "0000" / "big.csv").read_bytes() == (
        run_dir / "output" / "0000" / "big.csv"
    ).read_bytes()
    if expected == "none":
        assert result.wire_bytes_received == result.stream_bytes_received
    else:
        assert result.wire_bytes_received * 5 < result.content_bytes_received
    assert result.to_dict()["compression"] == expected
