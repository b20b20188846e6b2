"""Placing folders on the laptop: complete or not at all.

A collected run is built in a hidden folder beside its target on the same filesystem and put in
place by one rename (or an atomic exchange with the previous version), after the filesystem is
flushed, so the target name only ever shows a complete folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from globtim_hpc.errors import TransferError


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on a folder, so two collections of the same problem never interleave."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TransferError(
                f"another collection into {folder} is running",
                "wait for it to finish, then run this again",
            ) from None
        yield
    finally:
        os.close(fd)


def partial_folders(parent: Path, name: str) -> list[Path]:
    if not parent.is_dir():
        return []
    prefix = f".{name}.partial-"
    found = [p for p in parent.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


class NoSpaceError(TransferError):
    """The local disk is too full for the collection; nothing was placed."""


def space_error(where: Path, needed: int, free: int | None) -> NoSpaceError:
    from globtim_hpc.results.summary import format_bytes

    have = f", {format_bytes(free)} free" if free is not None else ""
    return NoSpaceError(
        f"not enough free space in {where}: the collection needs {format_bytes(needed)}{have}",
        "free some space or collect into another folder with --local-dir; nothing was placed "
        "and the registry is unchanged",
    )


def link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(source, dest, follow_symlinks=False)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def place_folder(work: Path, target: Path) -> None:
    """Put the finished ``work`` folder at ``target``; an old ``target`` is replaced whole."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise TransferError(
            f"{target} exists and is not a folder", "move it away, then collect again"
        )
    if not target.exists():
        os.rename(work, target)
    elif exchange_paths(work, target):
        shutil.rmtree(work)  # now the old version
    else:
        old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        os.rename(target, old)
        os.rename(work, target)
        shutil.rmtree(old)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sync_filesystem(folder: Path) -> None:
    """Flush the folder's filesystem to disk (Linux syncfs), so a placed folder survives a crash."""
    import ctypes

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            os.sync()
            return
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(folder))
    finally:
        os.close(fd)
