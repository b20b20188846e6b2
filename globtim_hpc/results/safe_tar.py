"""Extract a tar stream into one folder, safely, verifying every file against its manifest entry.

Only regular files that were asked for are written. Refused, before anything is written for
them: absolute paths, '..' or empty components, symbolic and hard links, devices, FIFOs,
folders, names not requested, and the same name twice. Files are created through directory
file descriptors with O_NOFOLLOW, so a symlink already lying in the destination is never
followed either. Each file is hashed while it is written; a mismatch removes it and fails.

``ExtractingSink`` turns the pull-style extractor into a writable object, so a transport that
copies a remote command's stdout into a sink can feed it directly (no staging anywhere).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, BinaryIO

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.cksum import Cksum
from globtim_hpc.results.manifest import ManifestEntry, check_relative_path

COPY_CHUNK_BYTES = 1 << 20

VerifiedFn = Callable[[ManifestEntry], None]


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link (-> {member.linkname!r})"
    if member.islnk():
        return f"hard link (-> {member.linkname!r})"
    if member.isdir():
        return "folder"
    if member.isfifo():
        return "FIFO"
    if member.ischr() or member.isblk():
        return "device file"
    return f"entry of tar type {member.type!r}"


def _open_parent(root_fd: int, parts: list[str]) -> int:
    """An fd for the folder holding ``parts[-1]``, creating folders; never follows a symlink."""
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise IntegrityError(
                    f"cannot extract below {'/'.join(parts)!r}: {part!r} in the destination is "
                    f"not a plain folder ({exc.strerror})"
                ) from exc
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


_PARENTS_OPEN = 8


class _Parents:
    """The destination's folders, each opened once (a tar stream lists a folder's files one
    after another; opening every path component for every file was most of a small file's cost).
    Each is reached component by component, never through a symlink."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._fds: dict[tuple[str, ...], int] = {}

    def folder(self, parts: list[str]) -> int:
        """An fd for the folder holding ``parts[-1]``, creating folders."""
        key = tuple(parts[:-1])
        fd = self._fds.get(key)
        if fd is None:
            if len(self._fds) >= _PARENTS_OPEN:  # a run may have a folder per task: stay few
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = self._fds[key] = _open_parent(self._root_fd, parts)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _write_member(
    parents: _Parents,
    parts: list[str],
    source: IO[bytes],
    entry: ManifestEntry,
    mode: int,
    mtime: float,
    fsync: bool,
) -> str:
    """Write one member, hashing it on the way; return its SHA-256 (hex).

    An entry with an empty ``sha256`` is not known yet: only its size is checked, and the
    digest computed here is what the manifest will say.
    """
    parent_fd = parents.folder(parts)
    name = parts[-1]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, mode, dir_fd=parent_fd)
    except FileExistsError:  # a stale or unverified copy from an earlier try (rare: no unlink first)
        os.unlink(name, dir_fd=parent_fd)
        fd = os.open(name, flags, mode, dir_fd=parent_fd)
    digest = hashlib.sha256()
    byte_count = 0
    ok = False
    try:
        with open(fd, "wb", closefd=True) as out:
            while chunk := source.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
                byte_count += len(chunk)
                out.write(chunk)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        known = entry.sha256 or digest.hexdigest()
        if byte_count != entry.byte_count or digest.hexdigest() != known:
            raise IntegrityError(
                f"{entry.path!r} changed on the cluster after its manifest was made: expected "
                f"{entry.byte_count} bytes with sha256 {entry.sha256[:16]}…, received "
                f"{byte_count} bytes with sha256 {digest.hexdigest()[:16]}…",
                "is something still writing into the run folder? collect again once it has "
                "finished; nothing was placed",
            )
        os.utime(name, (mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)
        ok = True
        return digest.hexdigest()
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=parent_fd)


def extract_verified(
    stream: BinaryIO,
    dest: Path,
    expected: Mapping[str, ManifestEntry],
    *,
    on_verified: VerifiedFn | None = None,
    fsync: bool = True,
) -> list[str]:
    """Extract exactly the ``expected`` files from the tar ``stream`` into ``dest``; verify each.

    Returns the paths written, in stream order. Raises IntegrityError for anything unsafe,
    unexpected, missing or not matching; OSError (e.g. ENOSPC) passes through unchanged.
    """
    written: list[str] = []
    seen: set[str] = set()
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    parents = _Parents(root_fd)
    try:
        try:
            archive = tarfile.open(  # noqa: SIM115 - closed by the 'with' just below
                fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
            )
        except tarfile.ReadError as exc:
            if not expected:
                return written
            raise IntegrityError(f"the file stream is not a tar archive: {exc}") from exc
        with archive:
            try:
                for member in archive:
                    name = member.name
                    try:
                        check_relative_path(name)
                    except IntegrityError as exc:
                        raise IntegrityError(f"refusing to extract: {exc}") from None
                    if not member.isreg():
                        raise IntegrityError(f"refusing to extract {name!r}: it is a {_kind(member)}")
                    entry = expected.get(name)
                    if entry is None:
                        raise IntegrityError(f"refusing to extract {name!r}: it was not requested")
                    if name in seen:
                        raise IntegrityError(f"refusing to extract {name!r} a second time")
                    seen.add(name)
                    source = archive.extractfile(member)
                    if source is None:  # pragma: no cover - isreg() members always have data
                        raise IntegrityError(f"no data for {name!r} in the archive")
                    if member.size != entry.byte_count:
                        raise IntegrityError(
                            f"{name!r} changed on the cluster after it was listed: "
                            f"{entry.byte_count} bytes then, {member.size} in the stream",
                            "is something still writing into the run folder? collect again once "
                            "it has finished; nothing was placed",
                        )
                    mode = 0o755 if member.mode & 0o111 else 0o644
                    sha256 = _write_member(
                        parents, name.split("/"), source, entry, mode, member.mtime, fsync
                    )
                    written.append(name)
                    if on_verified is not None:
                        on_verified(ManifestEntry(name, entry.byte_count, sha256))
            except (tarfile.TarError, EOFError) as exc:
                raise IntegrityError(
                    f"the file stream broke off or is corrupt after {len(written)} files: {exc}"
                ) from exc
        if fsync and written:
            os.fsync(root_fd)
    finally:
        parents.close()
        os.close(root_fd)
    missing = sorted(set(expected) - seen)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise IntegrityError(
            f"the archive ended without {len(missing)} requested files: {shown}{more}",
            "were they deleted on the cluster while collecting? collect again",
        )
    return written


class ExtractAborted(Exception):
    """Raised into the writer (the transport) when the extractor has already failed."""


class ExtractingSink(io.RawIOBase):
    """A writable sink that extracts what is written to it, in a thread, via ``extract_verified``.

    Use: ``sink.start()``; pass ``sink`` as a transport's stdout sink; then ``sink.finish()``
    (returns the paths written or raises the extractor's error). ``abort()`` after a transport
    failure; it returns the extractor's own error if that came first (it is the real cause).
    """

    def __init__(
        self,
        dest: Path,
        expected: Mapping[str, ManifestEntry],
        *,
        on_verified: VerifiedFn | None = None,
        on_bytes: Callable[[int], None] | None = None,
        fsync: bool = True,
        checksum: Cksum | None = None,
    ) -> None:
        super().__init__()
        self.checksum = checksum
        self._on_bytes = on_bytes
        self.bytes_received = 0
        self._dest = dest
        self._expected = expected
        self._on_verified = on_verified
        self._fsync = fsync
        self._write_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._error_before_eof = False
        self._writer_closed = False
        self._written: list[str] = []

    def writable(self) -> bool:
        return True

    def start(self) -> ExtractingSink:
        read_fd, self._write_fd = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(read_fd,), name="globtim-extract", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, read_fd: int) -> None:
        with open(read_fd, "rb", buffering=COPY_CHUNK_BYTES) as reader:
            try:
                self._written = extract_verified(
                    reader, self._dest, self._expected,
                    on_verified=self._on_verified, fsync=self._fsync,
                )
                while reader.read(COPY_CHUNK_BYTES):  # tar's end padding: let the writer finish
                    pass
            except BaseException as exc:
                self._error = exc
                self._error_before_eof = not self._writer_closed

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._write_fd is None:
            raise ValueError("ExtractingSink.write before start()")
        if self._error is not None:
            raise ExtractAborted(str(self._error))
        view = memoryview(data)
        total = len(view)
        if self.checksum is not None:
            self.checksum.update(view)
        while view:
            try:
                sent = os.write(self._write_fd, view)
            except BrokenPipeError:
                raise ExtractAborted(str(self._error or "extractor stopped")) from None
            view = view[sent:]
        self.bytes_received += total
        if self._on_bytes is not None:
            self._on_bytes(total)
        return total

    def _close_writer(self) -> None:
        self._writer_closed = True
        if self._write_fd is not None:
            fd, self._write_fd = self._write_fd, None
            os.close(fd)
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> list[str]:
        """End the stream, wait for the extractor, and return what it wrote (or raise its error)."""
        self._close_writer()
        if self._error is not None:
            raise self._error
        return list(self._written)

    def abort(self) -> BaseException | None:
        """End the stream after a failure; return the extractor's error if it failed first."""
        self._close_writer()
        return self._error if self._error_before_eof else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._close_writer()
        super().close()
