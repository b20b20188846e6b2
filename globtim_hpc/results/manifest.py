"""SHA-256 manifests of a run folder: computed remotely with coreutils, compared and kept locally.

The remote side is one ``sh -c`` with GNU find + sha256sum; every record is NUL-terminated so
that any file name (spaces, newlines, quotes, backslashes, non-UTF-8 bytes) survives. Paths are
kept as ``str`` decoded with ``os.fsdecode`` (surrogateescape), so they round-trip to the exact
bytes on both ends.

Locally the manifest is written in ``sha256sum`` format (``MANIFEST.sha256``), so that
``sha256sum -c MANIFEST.sha256`` checks a collected folder without this tool.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from globtim_hpc.errors import IntegrityError

MANIFEST_NAME = "MANIFEST.sha256"
HEADER = b"globtim-manifest/1"
HASH_CHUNK_BYTES = 1 << 20

# One remote command. $1 is the run folder, every further argument a relative path to leave
# out (with everything below it). Sections are separated by an empty record: a file name is
# never empty, so the separator cannot be mistaken for one.
#   header | "<size> <path>"... | "<sha256>  <path>"... | "<type letter> <path>"... (not files)
_REMOTE_SCRIPT = r"""
cd -- "$1" || exit 3
shift
n=$#
for p do set -- "$@" -o -path "./$p"; done
shift "$n"
printf 'globtim-manifest/1\0'
find . \( -false "$@" \) -prune -o -type f -printf '%s %P\0' || exit 4
printf '\0'
find . \( -false "$@" \) -prune -o -type f -printf '%P\0' | xargs -0 -r sha256sum --zero -- || exit 5
printf '\0'
find . \( -false "$@" \) -prune -o ! -type f ! -type d -printf '%y %P\0' || exit 4
"""

_HEX64 = re.compile(rb"^[0-9a-f]{64}$")


def is_sha256_hex(text: str) -> bool:
    """Whether ``text`` is a SHA-256 digest as sha256sum prints it (64 lowercase hex digits)."""
    return text.isascii() and _HEX64.match(text.encode("ascii")) is not None


@dataclass(frozen=True, order=True)
class ManifestEntry:
    path: str  # relative, '/'-separated, as os.fsdecode gives it
    byte_count: int
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "byte_count": self.byte_count, "sha256": self.sha256}


@dataclass(frozen=True)
class RemoteManifest:
    entries: tuple[ManifestEntry, ...]  # sorted by path
    skipped: tuple[tuple[str, str], ...]  # (find type letter, path) of things that are not files

    @property
    def byte_count(self) -> int:
        return sum(e.byte_count for e in self.entries)

    def by_path(self) -> dict[str, ManifestEntry]:
        return {e.path: e for e in self.entries}


def remote_manifest_argv(run_dir: str, exclude: Sequence[str] = ()) -> list[str]:
    """The argv that prints the manifest of ``run_dir``, leaving out ``exclude`` (relative paths)."""
    for rel in exclude:
        check_relative_path(rel)
    return ["sh", "-c", _REMOTE_SCRIPT, "globtim-manifest", run_dir, *exclude]


def check_relative_path(path: str) -> str:
    """Return ``path`` if it names something strictly inside a folder; raise IntegrityError if not.

    Refused: empty, absolute, '.', '..' or empty components, NUL bytes.
    """
    if not path or "\x00" in path or path.startswith("/"):
        raise IntegrityError(f"unsafe path {path!r}: empty, absolute or containing NUL")
    if "/." not in path and "//" not in path and path[0] != "." and path[-1] != "/":
        return path  # no component can be "", "." or "..": the common case, checked cheaply
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise IntegrityError(f"unsafe path {path!r}: it has an empty, '.' or '..' component")
    return path


def parse_remote_manifest(data: bytes, where: str = "the cluster") -> RemoteManifest:
    """Parse what ``remote_manifest_argv`` printed into sorted entries (size + hash per file)."""
    records = data.split(b"\x00")
    if not records or records[0] != HEADER:
        start = data[:80].decode("utf-8", errors="replace")
        raise IntegrityError(
            f"the manifest from {where} does not start with the expected header (got {start!r})",
            "something in the remote login (e.g. ~/.bashrc) may print to stdout; make it quiet "
            "for non-interactive shells",
        )
    if records[-1] != b"":
        raise IntegrityError(f"the manifest from {where} is truncated (no final NUL)")
    sections: list[list[bytes]] = [[]]
    for record in records[1:-1]:
        if record == b"":
            sections.append([])
        else:
            sections[-1].append(record)
    if len(sections) != 3:
        raise IntegrityError(f"the manifest from {where} has {len(sections)} sections, expected 3")
    size_records, hash_records, other_records = sections

    sizes: dict[str, int] = {}
    for record in size_records:
        size_text, sep, raw_path = record.partition(b" ")
        if not sep or not size_text.isdigit():
            raise IntegrityError(f"bad size record in the manifest from {where}: {record[:120]!r}")
        sizes[check_relative_path(os.fsdecode(raw_path))] = int(size_text)

    hashes: dict[str, str] = {}
    for record in hash_records:
        digest, sep, raw_path = record[:64], record[64:66], record[66:]
        if not _HEX64.match(digest) or sep not in (b"  ", b" *"):
            raise IntegrityError(f"bad hash record in the manifest from {where}: {record[:120]!r}")
        hashes[check_relative_path(os.fsdecode(raw_path))] = digest.decode("ascii")

    if sizes.keys() != hashes.keys():
        changed = sorted(sizes.keys() ^ hashes.keys())
        raise IntegrityError(
            f"files appeared or vanished on {where} while the manifest was made: "
            + ", ".join(repr(p) for p in changed[:5]),
            "is a job still writing into this run folder? try again when it has finished",
        )
    entries = tuple(sorted(ManifestEntry(p, sizes[p], hashes[p]) for p in sizes))
    skipped = []
    for record in other_records:
        kind, _, raw_path = record.partition(b" ")
        skipped.append((kind.decode("ascii", errors="replace"), os.fsdecode(raw_path)))
    return RemoteManifest(entries=entries, skipped=tuple(sorted(skipped, key=lambda s: s[1])))


# ---- sha256sum format -------------------------------------------------------------------------


def _escape_name(path: str) -> tuple[bool, bytes]:
    raw = os.fsencode(path)
    if b"\\" not in raw and b"\n" not in raw and b"\r" not in raw:
        return False, raw
    return True, raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def format_sha256sum(entries: Iterable[ManifestEntry]) -> bytes:
    """Lines exactly as ``sha256sum`` writes them (GNU escaping of backslash, CR and LF)."""
    lines = []
    for entry in sorted(entries):
        escaped, name = _escape_name(entry.path)
        prefix = b"\\" if escaped else b""
        lines.append(prefix + entry.sha256.encode("ascii") + b"  " + name + b"\n")
    return b"".join(lines)


def parse_sha256sum(data: bytes) -> dict[str, str]:
    """Read a ``sha256sum`` file back: path -> hex digest."""
    result: dict[str, str] = {}
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line:
            continue
        escaped = line.startswith(b"\\")
        body = line[1:] if escaped else line
        digest, sep, name = body[:64], body[64:66], body[66:]
        if not _HEX64.match(digest) or sep not in (b"  ", b" *"):
            raise IntegrityError(f"line {number} of a sha256sum file is malformed: {line[:120]!r}")
        if escaped:
            name = _unescape(name)
        result[os.fsdecode(name)] = digest.decode("ascii")
    return result


def _unescape(name: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(name):
        if name[i : i + 1] == b"\\" and i + 1 < len(name):
            nxt = name[i + 1 : i + 2]
            out += {b"n": b"\n", b"r": b"\r", b"\\": b"\\"}.get(nxt, b"\\" + nxt)
            i += 2
        else:
            out += name[i : i + 1]
            i += 1
    return bytes(out)


def manifest_file(entries: Iterable[ManifestEntry]) -> tuple[bytes, str]:
    """``MANIFEST.sha256``'s bytes, and the hash that names the whole manifest (their sha256)."""
    text = format_sha256sum(entries)
    return text, hashlib.sha256(text).hexdigest()


# ---- local files -------------------------------------------------------------------------------


def hash_file(path: Path) -> tuple[int, str]:
    """(byte_count, sha256 hex) of a local file, read in chunks."""
    digest = hashlib.sha256()
    byte_count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            byte_count += len(chunk)
    return byte_count, digest.hexdigest()


def local_path(root: Path, rel: str) -> Path:
    """``root/rel`` for a checked relative path (never outside ``root``)."""
    return root.joinpath(*check_relative_path(rel).split("/"))


def matches(path: Path, entry: ManifestEntry) -> bool:
    """Whether a local regular file (not a symlink) has exactly the entry's size and content."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size != entry.byte_count:
        return False
    return hash_file(path)[1] == entry.sha256

