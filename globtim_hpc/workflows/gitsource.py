"""What a local git checkout would ship: its files, its commit, and its local changes.

The shipped tree is the working tree as git sees it: every tracked file that still exists
plus every untracked file that is not ignored. Its identity is the commit (``git rev-parse
HEAD``) and, when the tree differs from that commit, a hash of the shipped files, so that
the same bytes always get the same deploy id.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from globtim_hpc.errors import ConfigError, PreflightError

SHORT_SHA_LEN = 12
DIRTY_HASH_LEN = 8
_GITLINK_MODE = "160000"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    """One file of the shipped tree. ``sha256`` is of the content (or the link target)."""

    path: str  # POSIX, relative to the source folder
    kind: str  # "file" or "symlink"
    sha256: str
    size_bytes: int
    executable: bool = False
    link_target: str | None = None
    mtime_s: int = 0

    @property
    def object_key(self) -> str:
        """Name in the remote object store: content hash, plus ``.x`` for executables.

        Executables get their own object because hard links share one mode.
        """
        return f"{self.sha256}.x" if self.executable else self.sha256


@dataclass(frozen=True)
class SourceSnapshot:
    root: Path
    git_sha: str
    files: tuple[SourceFile, ...]
    dirty: bool
    patch: bytes  # ``git diff HEAD --binary``: changes to tracked files
    untracked: tuple[str, ...]  # untracked, not ignored: shipped, listed here for the record
    skipped: tuple[str, ...] = field(default=())  # submodules: not shipped

    @property
    def tree_sha256(self) -> str:
        """One hash of every shipped path, kind, mode and content."""
        digest = hashlib.sha256()
        for item in sorted(self.files, key=lambda f: f.path):
            target = item.link_target if item.kind == "symlink" else item.sha256
            digest.update(
                f"{item.kind}\0{item.path}\0{target}\0{int(item.executable)}\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
        return digest.hexdigest()

    @property
    def deploy_id(self) -> str:
        short = self.git_sha[:SHORT_SHA_LEN]
        if not self.dirty:
            return short
        return f"{short}-dirty-{self.tree_sha256[:DIRTY_HASH_LEN]}"

    @property
    def total_bytes(self) -> int:
        return sum(item.size_bytes for item in self.files)


def _git(root: Path, args: Sequence[str]) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except FileNotFoundError as exc:
        raise ConfigError("git is not installed on this machine", "install git") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip()
        raise ConfigError(
            f"git {' '.join(args)} failed in {root}: {message}",
            "point --source (or 'source' in the cluster profile) at a GlobTim.jl git checkout "
            "with at least one commit",
        )
    return proc.stdout


def _split_nul(data: bytes) -> list[str]:
    return [os.fsdecode(part) for part in data.split(b"\0") if part]


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _describe(root: Path, rel: str) -> SourceFile | None:
    full = root / rel
    try:
        info = full.lstat()
    except FileNotFoundError:
        return None  # deleted in the working tree: the patch records it
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(full)
        encoded = os.fsencode(target)
        return SourceFile(
            path=rel,
            kind="symlink",
            sha256=hashlib.sha256(encoded).hexdigest(),
            size_bytes=len(encoded),
            link_target=target,
            mtime_s=int(info.st_mtime),
        )
    if not stat.S_ISREG(info.st_mode):
        return None
    sha, size = hash_file(full)
    return SourceFile(
        path=rel,
        kind="file",
        sha256=sha,
        size_bytes=size,
        executable=bool(info.st_mode & stat.S_IXUSR),
        mtime_s=int(info.st_mtime),
    )


def snapshot(source: Path) -> SourceSnapshot:
    """Describe what deploying ``source`` would ship. Reads files; changes nothing."""
    root = source.expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(
            f"source folder {root} does not exist",
            "pass --source PATH/TO/GlobTim.jl, or set 'source' in the cluster profile",
        )
    git_sha = _git(root, ["rev-parse", "--verify", "HEAD^{commit}"]).decode().strip()
    staged = _git(root, ["ls-files", "-z", "--stage", "--", "."])
    gitlinks: list[str] = []
    tracked: list[str] = []
    for entry in _split_nul(staged):
        meta, _, path = entry.partition("\t")
        (gitlinks if meta.split(" ", 1)[0] == _GITLINK_MODE else tracked).append(path)
    untracked = _split_nul(
        _git(root, ["ls-files", "-z", "--others", "--exclude-standard", "--", "."])
    )
    files: list[SourceFile] = []
    for rel in sorted(set(tracked) | set(untracked)):
        described = _describe(root, rel)
        if described is not None:
            files.append(described)
    status = _git(root, ["status", "--porcelain=v1", "-z", "--untracked-files=normal", "--", "."])
    dirty = bool(status.strip(b"\0"))
    patch = _git(root, ["diff", "HEAD", "--binary", "--", "."]) if dirty else b""
    return SourceSnapshot(
        root=root,
        git_sha=git_sha,
        files=tuple(files),
        dirty=dirty,
        patch=patch,
        untracked=tuple(sorted(untracked)),
        skipped=tuple(sorted(gitlinks)),
    )


def require_clean(snap: SourceSnapshot) -> None:
    """Refuse a tree with local changes (``--require-clean``)."""
    if not snap.dirty:
        return
    changed = len(
        [
            line
            for line in snap.patch.decode("utf-8", "replace").splitlines()
            if line.startswith("diff --git ")
        ]
    )
    raise PreflightError(
        f"{snap.root} has local changes ({changed} changed tracked file(s), "
        f"{len(snap.untracked)} untracked file(s)) and --require-clean was given",
        "commit or stash the changes (git status shows them), or deploy without --require-clean "
        "to ship them as a dirty deployment",
    )
