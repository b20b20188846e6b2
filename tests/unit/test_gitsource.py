"""What a checkout ships (gitsource), and the content-addressed upload of it (codeship).

The upload is exercised end to end on this machine: the archive goes through the same bash
script and GNU tar that run on the cluster, into a temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError, PreflightError
from globtim_hpc.workflows import codeship
from globtim_hpc.workflows.gitsource import SourceSnapshot, require_clean, snapshot

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "globtim_project"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "GlobTim.jl"
    shutil.copytree(FIXTURE, root)
    (root / "docs").mkdir()
    os.symlink("../src/Globtim.jl", root / "docs" / "main.jl")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "fixture")
    return root


def test_clean_tree(repo: Path) -> None:
    snap = snapshot(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert snap.git_sha == head
    assert snap.deploy_id == head[:12]
    assert not snap.dirty and snap.patch == b"" and snap.untracked == ()
    by_path = {f.path: f for f in snap.files}
    assert set(by_path) == set(git(repo, "ls-files").split())
    assert by_path["scripts/run_local.sh"].executable
    assert not by_path["Project.toml"].executable
    link = by_path["docs/main.jl"]
    assert link.kind == "symlink" and link.link_target == "../src/Globtim.jl"
    require_clean(snap)


def test_local_changes_make_a_dirty_id_from_the_content(repo: Path) -> None:
    clean_id = snapshot(repo).deploy_id
    source = repo / "src" / "Globtim.jl"
    source.write_text(source.read_text() + "\n# tweak\n")
    first = snapshot(repo)
    assert first.dirty
    assert first.deploy_id.startswith(clean_id + "-dirty-")
    assert b"+# tweak" in first.patch and b"src/Globtim.jl" in first.patch
    assert snapshot(repo).deploy_id == first.deploy_id  # same bytes, same id
    source.write_text(source.read_text() + "# another\n")
    assert snapshot(repo).deploy_id != first.deploy_id
    with pytest.raises(PreflightError, match="local changes") as caught:
        require_clean(snapshot(repo))
    assert caught.value.hint is not None and "commit or stash" in caught.value.hint


def test_untracked_ignored_and_deleted_files(repo: Path) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_bytes(b"ignored")
    (repo / "run.log").write_text("ignored too")
    assert not snapshot(repo).dirty  # ignored files change nothing
    (repo / "notes.md").write_text("untracked, shipped")
    snap = snapshot(repo)
    paths = {f.path for f in snap.files}
    assert snap.dirty and snap.untracked == ("notes.md",)
    assert "notes.md" in paths and "run.log" not in paths and "build/out.bin" not in paths
    (repo / "notes.md").unlink()
    (repo / "scripts" / "run_local.sh").unlink()
    snap = snapshot(repo)
    assert snap.dirty and "scripts/run_local.sh" not in {f.path for f in snap.files}
    assert b"deleted file mode" in snap.patch


def test_not_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="git"):
        snapshot(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(ConfigError) as caught:
        snapshot(empty)
    assert "at least one commit" in (caught.value.hint or "")


# ---- codeship: the archive and the remote script, run here ------------------------------


def _upload(snap: SourceSnapshot, code_root: Path) -> tuple[codeship.ArchiveStats, int]:
    """The two remote steps of codeship.ship, run here through bash and GNU tar."""
    wanted = codeship.wanted_objects(snap, [])
    probe = subprocess.run(
        codeship.probe_argv(str(code_root), snap.deploy_id),
        input=codeship.missing_stdin(wanted).decode(), capture_output=True, text=True, check=True,
    )
    answer = codeship.parse_probe(probe.stdout)
    assert not answer.tree_exists
    existing = codeship.parse_missing(answer.missing_text, wanted)
    stage = codeship.new_stage_name(snap.deploy_id)
    sink = io.BytesIO()
    stats = codeship.write_archive(sink, snap, stage, existing)
    subprocess.run(
        codeship.upload_argv(str(code_root), stage, snap.deploy_id), input=sink.getvalue(),
        check=True, capture_output=True,
    )
    return stats, len(sink.getvalue())


def test_upload_builds_the_tree_and_sends_only_new_content(repo: Path, tmp_path: Path) -> None:
    code_root = tmp_path / "remote" / "code"
    first = snapshot(repo)
    stats, _size = _upload(first, code_root)
    tree = code_root / first.deploy_id
    assert stats.new_objects == len({f.object_key for f in first.files if f.kind == "file"})
    for item in first.files:
        shipped = tree / item.path
        if item.kind == "symlink":
            assert os.readlink(shipped) == item.link_target
        else:
            assert shipped.read_bytes() == (repo / item.path).read_bytes()
            assert os.access(shipped, os.X_OK) == item.executable
            assert shipped.stat().st_nlink >= 2  # a hard link into .objects
    assert not list(code_root.glob(".staging-*"))

    changed = repo / "src" / "Globtim.jl"
    changed.write_text(changed.read_text() + "# one more line\n")
    second = snapshot(repo)
    stats2, size2 = _upload(second, code_root)
    assert stats2.new_objects == 1 and stats2.new_paths == ["src/Globtim.jl"]
    assert stats2.payload_bytes == changed.stat().st_size
    assert stats2.reused_objects == stats.new_objects - 1
    assert (code_root / second.deploy_id / "src" / "Globtim.jl").read_bytes() == (
        changed.read_bytes()
    )
    # the first deployment is untouched by the second
    assert (tree / "src" / "Globtim.jl").read_bytes() != changed.read_bytes()

    probe = subprocess.run(
        codeship.probe_argv(str(code_root), second.deploy_id), input="", capture_output=True,
        text=True, check=True,
    )
    assert codeship.parse_probe(probe.stdout).tree_exists
    assert size2 < stats2.payload_bytes + 2048


def test_probe_and_store_answers_are_parsed_strictly() -> None:
    record = codeship.parse_probe('tree=yes\n{"verified": true}\n')
    assert record.tree_exists and record.deploy_json == {"verified": True}
    assert codeship.parse_probe("tree=yes\n{half").deploy_json is None
    assert not codeship.parse_probe("tree=no\n").tree_exists
    with pytest.raises(Exception, match="unexpected answer"):
        codeship.parse_probe("bash: no such file\n")
    wanted = {"a" * 64, "b" * 64 + ".x", "c" * 64}
    assert codeship.parse_missing("c" * 64 + "\n", wanted) == {"a" * 64, "b" * 64 + ".x"}
    with pytest.raises(Exception, match="not asked for"):
        codeship.parse_missing("d" * 64 + "\n", wanted)
