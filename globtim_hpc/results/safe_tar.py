"""Extract a tar stream into one folder, safely, verifying every file against its manifest entry.

Only regular files that were asked for are written. Refused, before anything is written for
them: absolute paths, '..' or empty components, symbolic and hard links, devices, FIFOs,
folders, names not requested, and the same name twice. Files are created through directory
file descriptors with O_NOFOLLOW, so a symlink already lying in the destination is never
followed either. Each file is hashed while it is written; a mismatch removes it and fails.

The extractor is fed: ``Extractor.feed`` takes the stream's bytes as they come, in pieces of
any size, and writes each file as its bytes arrive. ``ExtractingSink`` is that as a writable
object, so a transport copies a remote command's stdout straight into it, in the thread that
reads the link (no pipe, no second thread, no staging anywhere).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.cksum import StreamCksum
from globtim_hpc.results.manifest import ManifestEntry, check_relative_path
from globtim_hpc.results.tar_headers import (
    BLOCK,
    GNU_LONG_LINK,
    GNU_LONG_NAME,
    MAX_META_BYTES,
    META_TYPES,
    REGULAR_TYPES,
    Header,
    decode_name,
    kind,
    parse_header,
    parse_pax,
    pax_number,
)

COPY_CHUNK_BYTES = 1 << 20

VerifiedFn = Callable[[ManifestEntry], None]


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



_MTIME_LIMIT_S = 1 << 40  # some 35,000 years either side of 1970: beyond, a damaged header

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _OpenFile:
    """One member being written: its bytes go to the file and the hash as they arrive."""

    def __init__(self, parent_fd: int, name: str, entry: ManifestEntry, mode: int, mtime: int) -> None:
        try:
            self.fd = os.open(name, _CREATE, mode, dir_fd=parent_fd)
        except FileExistsError:  # a stale or unverified copy from an earlier try (rare)
            os.unlink(name, dir_fd=parent_fd)
            self.fd = os.open(name, _CREATE, mode, dir_fd=parent_fd)
        self.parent_fd = parent_fd
        self.name = name
        self.entry = entry
        self.mtime = mtime
        self.left = entry.byte_count
        self.digest = hashlib.sha256()

    def write(self, data: memoryview) -> None:
        self.digest.update(data)
        self.left -= len(data)
        while data:
            data = data[os.write(self.fd, data) :]

    def close(self, fsync: bool) -> str:
        """Check the content against the entry, set the mtime, close; return the SHA-256."""
        sha256 = self.digest.hexdigest()
        if self.entry.sha256 and sha256 != self.entry.sha256:
            raise IntegrityError(
                f"{self.entry.path!r} changed on the cluster after its manifest was made: "
                f"expected sha256 {self.entry.sha256[:16]}…, received {sha256[:16]}…",
                "is something still writing into the run folder? collect again once it has "
                "finished; nothing was placed",
            )
        os.utime(self.fd, (self.mtime, self.mtime))
        if fsync:
            os.fsync(self.fd)
        fd, self.fd = self.fd, -1
        os.close(fd)
        return sha256

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self.parent_fd)


class Extractor:
    """Extract exactly the ``expected`` files from a tar stream fed in pieces into ``dest``.

    ``feed`` the bytes as they come, then ``finish`` (the paths written, in stream order).
    Raises IntegrityError for anything unsafe, unexpected, missing or not matching (the file
    being written is removed; the files verified before it stay, for a resume); OSError
    (e.g. ENOSPC) passes through unchanged. After an error, ``close`` releases what is open.

    An entry with an empty ``sha256`` is not known yet: only its size is checked, and the
    digest computed here is what the manifest will say.
    """

    def __init__(
        self,
        dest: Path,
        expected: Mapping[str, ManifestEntry],
        *,
        on_verified: VerifiedFn | None = None,
        fsync: bool = True,
    ) -> None:
        self._expected = expected
        self._on_verified = on_verified
        self._fsync = fsync
        self.written: list[str] = []
        self._seen: set[str] = set()
        self._root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        self._parents = _Parents(self._root_fd)
        self._pending = bytearray()  # a header, long name or pax header not yet whole
        self._need = BLOCK  # the bytes the unit in _pending takes
        self._meta_type: int | None = None  # the GNU or pax header whose data _pending holds
        self._skip = 0  # padding up to the next 512-byte block
        self._file: _OpenFile | None = None
        self._long_name: str | None = None
        self._long_link = ""
        self._pax: dict[str, str] = {}
        self._meta_bytes = 0  # long names and pax headers since the last member
        self._ended = False
        self._fed = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._fed += len(view)
        while view and not self._ended:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
            elif self._file is not None:
                step = min(self._file.left, len(view))
                self._file.write(view[:step])
                view = view[step:]
                if not self._file.left:
                    self._close_file()
            elif not self._pending and len(view) >= self._need:
                unit, view = bytes(view[: self._need]), view[self._need :]
                self._unit(unit)
            else:
                step = min(self._need - len(self._pending), len(view))
                self._pending += view[:step]
                view = view[step:]
                if len(self._pending) == self._need:
                    unit = bytes(self._pending)
                    self._pending.clear()
                    self._unit(unit)

    def _unit(self, unit: bytes) -> None:
        meta, self._meta_type, self._need = self._meta_type, None, BLOCK
        if meta is not None:
            self._take_meta(meta, unit)
            return
        header = parse_header(unit)
        if header is None:
            self._ended = True
        elif header.type in META_TYPES:
            self._meta_bytes += header.size
            if self._meta_bytes > MAX_META_BYTES:  # each, and all before one member together
                raise IntegrityError(
                    f"refusing to extract: tar headers of {self._meta_bytes} bytes before a member"
                )
            if header.size:
                self._meta_type, self._need = header.type, header.size
            else:
                self._take_meta(header.type, b"")
        else:
            self._member(header)

    def _take_meta(self, meta: int, data: bytes) -> None:
        self._skip = -len(data) % BLOCK
        if meta == GNU_LONG_NAME:
            self._long_name = decode_name(data)
        elif meta == GNU_LONG_LINK:
            self._long_link = decode_name(data)
        else:
            self._pax.update(parse_pax(data))

    def _member(self, header: Header) -> None:
        pax, self._pax, self._meta_bytes = self._pax, {}, 0
        name = pax.get("path", self._long_name or header.name)
        self._long_name = None
        linkname = pax.get("linkpath", self._long_link or header.linkname)
        self._long_link = ""
        size = pax_number(pax, "size", header.size)
        if header.type == ord("5"):
            name = name.rstrip("/")
        if header.type not in REGULAR_TYPES:  # refused for what it is, whatever its name
            what = kind(header._replace(linkname=linkname))
            raise IntegrityError(f"refusing to extract {name!r}: it is a {what}")
        try:
            check_relative_path(name)
        except IntegrityError as exc:
            raise IntegrityError(f"refusing to extract: {exc}") from None
        if any(key.startswith("GNU.sparse") for key in pax):  # its data is not the file's bytes
            raise IntegrityError(f"refusing to extract {name!r}: it is a sparse file")
        entry = self._expected.get(name)
        if entry is None:
            raise IntegrityError(f"refusing to extract {name!r}: it was not requested")
        if name in self._seen:
            raise IntegrityError(f"refusing to extract {name!r} a second time")
        self._seen.add(name)
        if size != entry.byte_count:
            raise IntegrityError(
                f"{name!r} changed on the cluster after it was listed: "
                f"{entry.byte_count} bytes then, {size} in the stream",
                "is something still writing into the run folder? collect again once "
                "it has finished; nothing was placed",
            )
        parts = name.split("/")
        parent_fd = self._parents.folder(parts)
        mode = 0o755 if header.mode & 0o111 else 0o644
        mtime = pax_number(pax, "mtime", header.mtime, fraction=True)
        if not -_MTIME_LIMIT_S < mtime < _MTIME_LIMIT_S:
            raise IntegrityError(f"the file stream is corrupt: {name!r} has mtime {mtime}")
        self._file = _OpenFile(parent_fd, parts[-1], entry, mode, mtime)
        if not size:
            self._close_file()

    def _close_file(self) -> None:
        assert self._file is not None
        current = self._file
        sha256 = current.close(self._fsync)
        self._file = None
        self._skip = -current.entry.byte_count % BLOCK
        self.written.append(current.entry.path)
        if self._on_verified is not None:
            self._on_verified(ManifestEntry(current.entry.path, current.entry.byte_count, sha256))

    def finish(self) -> list[str]:
        """The stream has ended: check it was whole; return the paths written."""
        if not self._fed and not self._expected:
            return self.written
        if not self._ended:
            if not self._fed:
                raise IntegrityError("the file stream is not a tar archive: it is empty")
            raise IntegrityError(
                f"the file stream broke off or is corrupt after {len(self.written)} files: "
                "it ends before the archive does",
                "the connection may have dropped; collect again (verified files are kept)",
            )
        if self._fsync and self.written:
            os.fsync(self._root_fd)
        missing = sorted(set(self._expected) - self._seen)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise IntegrityError(
                f"the archive ended without {len(missing)} requested files: {shown}{more}",
                "were they deleted on the cluster while collecting? collect again",
            )
        return self.written

    def close(self) -> None:
        """Release the folders; a file cut off in the middle is removed."""
        if self._file is not None:
            self._file.discard()
            self._file = None
        if self._root_fd >= 0:
            self._parents.close()
            os.close(self._root_fd)
            self._root_fd = -1


def extract_verified(
    stream: BinaryIO,
    dest: Path,
    expected: Mapping[str, ManifestEntry],
    *,
    on_verified: VerifiedFn | None = None,
    fsync: bool = True,
) -> list[str]:
    """Extract exactly the ``expected`` files from the tar ``stream`` into ``dest``; verify each.

    Returns the paths written, in stream order (see ``Extractor`` for what is refused).
    """
    extractor = Extractor(dest, expected, on_verified=on_verified, fsync=fsync)
    try:
        while chunk := stream.read(COPY_CHUNK_BYTES):
            extractor.feed(chunk)
        return extractor.finish()
    finally:
        extractor.close()


class ExtractAborted(Exception):
    """Raised into the writer (the transport) when the extractor has already failed."""


class ExtractingSink(io.RawIOBase):
    """A writable sink that extracts what is written to it, as it is written (``Extractor``).

    Use: ``sink.start()``; pass ``sink`` as a transport's stdout sink; then ``sink.finish()``
    (returns the paths written or raises the extractor's error). The extractor's error is
    raised into the writer as ExtractAborted, so the transport stops the remote command;
    ``abort()`` after a transport failure returns the extractor's own error if that came first
    (it is the real cause).
    """

    def __init__(
        self,
        dest: Path,
        expected: Mapping[str, ManifestEntry],
        *,
        on_verified: VerifiedFn | None = None,
        on_bytes: Callable[[int], None] | None = None,
        fsync: bool = True,
        checksum: StreamCksum | None = None,
    ) -> None:
        super().__init__()
        self.checksum = checksum
        self._on_bytes = on_bytes
        self.bytes_received = 0
        self._dest = dest
        self._expected = expected
        self._on_verified = on_verified
        self._fsync = fsync
        self._extractor: Extractor | None = None
        self._error: BaseException | None = None
        self._ended = False  # finished or aborted: no more writes
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def start(self) -> ExtractingSink:
        self._extractor = Extractor(
            self._dest, self._expected, on_verified=self._on_verified, fsync=self._fsync
        )
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        # The lock: a transport's reader thread may still be writing when the caller's thread
        # aborts (Ctrl-C); after that nothing more reaches the files or the checksum.
        with self._lock:
            if self._extractor is None:
                raise ValueError("ExtractingSink.write before start()")
            if self._error is not None:
                raise ExtractAborted(str(self._error))
            if self._ended:
                raise ExtractAborted("the collection was stopped")
            total = len(data)
            if self.checksum is not None:
                self.checksum.update(data)
            self.bytes_received += total
            try:
                self._extractor.feed(data)
            except BaseException as exc:
                self._error = exc
                self._extractor.close()
                raise ExtractAborted(str(exc)) from exc
        if self._on_bytes is not None:
            self._on_bytes(total)
        return total

    def finish(self) -> list[str]:
        """End the stream and return what was written (or raise the extractor's error)."""
        with self._lock:
            if self._error is not None:
                raise self._error
            assert self._extractor is not None
            if self._ended:
                return list(self._extractor.written)
            self._ended = True
            try:
                return list(self._extractor.finish())
            finally:
                self._extractor.close()

    def abort(self) -> BaseException | None:
        """End the stream after a failure; return the extractor's error if it failed first."""
        with self._lock:
            self._ended = True
            if self._extractor is not None:
                self._extractor.close()
            return self._error

    def close(self) -> None:
        self.abort()
        super().close()
