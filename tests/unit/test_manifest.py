"""manifest: the remote coreutils command, its parser, and the sha256sum file format."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.manifest import (
    ManifestEntry,
    check_relative_path,
    format_sha256sum,
    manifest_file,
    matches,
    parse_remote_manifest,
    parse_sha256sum,
    remote_manifest_argv,
)

ODD_NAMES = [
    "plain.txt",
    "with space.txt",
    "quote ' and \" and `tick`",
    "new\nline",
    "back\\slash",
    "-starts-with-dash",
    "ünïcödé.json",
    os.fsdecode(b"latin1-\xe9-not-utf8"),
    "a" * 150,  # longer than a tar v7 name field
]


def run_locally(argv: list[str]) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    (root / "output" / "0000").mkdir(parents=True)
    (root / "output" / "0001").mkdir(parents=True)
    for index, name in enumerate(ODD_NAMES):
        (root / "output" / "0000" / name).write_bytes(name.encode("utf-8", "surrogateescape") * index)
    (root / "output" / "0001" / "busy.bin").write_bytes(b"still being written")
    (root / "job.sbatch").write_bytes(b"#!/bin/bash\n")
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("/etc/passwd")
    os.mkfifo(root / "fifo")
    return root


def test_remote_command_lists_every_file_with_size_and_hash(run_dir: Path) -> None:
    manifest = parse_remote_manifest(run_locally(remote_manifest_argv(str(run_dir))))
    expected = {}
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            expected[path.relative_to(run_dir).as_posix()] = (len(data), hashlib.sha256(data).hexdigest())
    assert {e.path: (e.byte_count, e.sha256) for e in manifest.entries} == expected
    assert [e.path for e in manifest.entries] == sorted(expected)
    assert dict((p, k) for k, p in manifest.skipped) == {"link": "l", "fifo": "p"}


def test_remote_command_leaves_out_excluded_paths(run_dir: Path) -> None:
    argv = remote_manifest_argv(str(run_dir), ["output/0001", "job.sbatch"])
    paths = {e.path for e in parse_remote_manifest(run_locally(argv)).entries}
    assert "output/0000/plain.txt" in paths
    assert not any(p.startswith("output/0001") for p in paths)
    assert "job.sbatch" not in paths


def test_remote_command_on_a_missing_folder_fails(tmp_path: Path) -> None:
    proc = subprocess.run(remote_manifest_argv(str(tmp_path / "nope")), capture_output=True)
    assert proc.returncode == 3


def test_sha256sum_file_round_trips_and_checks_with_coreutils(run_dir: Path) -> None:
    entries = parse_remote_manifest(run_locally(remote_manifest_argv(str(run_dir)))).entries
    text = format_sha256sum(entries)
    assert parse_sha256sum(text) == {e.path: e.sha256 for e in entries}
    (run_dir / "MANIFEST.sha256").write_bytes(text)
    check = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=run_dir,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert manifest_file(entries) == (text, hashlib.sha256(text).hexdigest())
    (run_dir / "output" / "0000" / "plain.txt").write_bytes(b"changed")
    broken = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=run_dir,
                            capture_output=True, timeout=60)
    assert broken.returncode != 0


def test_matches_checks_size_content_and_file_type(tmp_path: Path) -> None:
    data = b"content"
    item = ManifestEntry("f", len(data), hashlib.sha256(data).hexdigest())
    (tmp_path / "f").write_bytes(data)
    assert matches(tmp_path / "f", item)
    (tmp_path / "g").write_bytes(b"CONTENT")
    assert not matches(tmp_path / "g", item)
    (tmp_path / "l").symlink_to(tmp_path / "f")
    assert not matches(tmp_path / "l", item)
    assert not matches(tmp_path / "missing", item)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Welcome to falcon!\nglobtim-manifest/1\x00\x00\x00", "header"),
        (b"globtim-manifest/1\x003 a\x00\x00", "truncated|sections"),
        (b"globtim-manifest/1\x00x a\x00\x00\x00", "bad size record"),
        (b"globtim-manifest/1\x003 a\x00\x00" + b"0" * 64 + b"  b\x00\x00", "appeared or vanished"),
        (b"globtim-manifest/1\x003 ../a\x00\x00" + b"0" * 64 + b"  ../a\x00\x00", "unsafe path"),
        (b"globtim-manifest/1\x003 a\x00\x00" + b"Z" * 64 + b"  a\x00\x00", "bad hash record"),
    ],
)
def test_malformed_manifests_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        parse_remote_manifest(data)


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "..", ".", "a/.", "a/..", "a//b", "./a", "a/", "nul\x00"])
def test_unsafe_relative_paths(path: str) -> None:
    with pytest.raises(IntegrityError):
        check_relative_path(path)
    with pytest.raises(IntegrityError):
        remote_manifest_argv("/run", [path])


def test_safe_relative_paths() -> None:
    for path in ["a", "a/b.c", "..hidden", "a/.b", "x..y/z"]:
        assert check_relative_path(path) == path
