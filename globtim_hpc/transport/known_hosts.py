"""known_hosts files read and judged the way OpenSSH does (pure; no paramiko, no network).

Supports plain, comma-separated, wildcard and negated host patterns, ``[host]:port`` entries,
hashed ``|1|salt|hash`` entries and the ``@revoked`` marker. ``@cert-authority`` lines are
skipped: the toolkit does not accept host certificates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from globtim_hpc.transport.sshconfig import match_host_patterns

Verdict = Literal["ok", "unknown", "changed", "revoked"]


@dataclass(frozen=True)
class KnownHostEntry:
    hosts: str
    key_blob: bytes
    marker: str | None = None
    path: str = ""
    line: int = 0

    @property
    def key_type(self) -> str:
        return key_type_of(self.key_blob)


def key_type_of(blob: bytes) -> str:
    """The type name at the start of an SSH public key blob ('' if the blob is malformed)."""
    if len(blob) < 4:
        return ""
    (length,) = struct.unpack(">I", blob[:4])
    return blob[4 : 4 + length].decode("ascii", errors="replace")


def fingerprint_sha256(blob: bytes) -> str:
    """OpenSSH's fingerprint format: ``SHA256:`` + base64 of the digest without padding."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def lookup_name(host: str, port: int) -> str:
    """How a host appears in known_hosts: bare for port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_known_hosts(text: str, path: str = "") -> list[KnownHostEntry]:
    entries: list[KnownHostEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0][1:].lower(), fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue  # OpenSSH skips lines it cannot read, and so do we
        if key_type_of(blob) != fields[1]:
            continue
        entries.append(KnownHostEntry(fields[0], blob, marker, path, number))
    return entries


def load_known_hosts(paths: Iterable[str]) -> list[KnownHostEntry]:
    entries: list[KnownHostEntry] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            continue
        entries.extend(parse_known_hosts(text, path))
    return entries


def _hashed_matches(field: str, name: str) -> bool:
    parts = field.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, expected = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(digest, expected)


def hosts_field_matches(field: str, name: str) -> bool:
    """Whether a known_hosts host field names ``name`` (already in ``[host]:port`` form)."""
    if field.startswith("|"):
        return _hashed_matches(field, name)
    return match_host_patterns(name.lower(), [p.lower() for p in field.split(",") if p])


def entries_for(entries: Sequence[KnownHostEntry], names: Sequence[str]) -> list[KnownHostEntry]:
    return [
        e
        for e in entries
        if e.marker is None and any(hosts_field_matches(e.hosts, n) for n in names)
    ]


def judge(entries: Sequence[KnownHostEntry], names: Sequence[str], blob: bytes) -> Verdict:
    """ok: recorded for one of ``names``; changed: a different key of that type is recorded;
    revoked: marked @revoked anywhere; unknown: nothing recorded of that type."""
    if any(e.marker == "revoked" and e.key_blob == blob for e in entries):
        return "revoked"
    mine = entries_for(entries, names)
    if any(e.key_blob == blob for e in mine):
        return "ok"
    kind = key_type_of(blob)
    if any(e.key_type == kind for e in mine):
        return "changed"
    return "unknown"


def known_key_types(entries: Sequence[KnownHostEntry], names: Sequence[str]) -> list[str]:
    """Key types recorded for the host, in file order, so they can be asked for first."""
    types: list[str] = []
    for entry in entries_for(entries, names):
        if entry.key_type not in types:
            types.append(entry.key_type)
    return types


def entry_line(names: Sequence[str], blob: bytes) -> str:
    return f"{','.join(names)} {key_type_of(blob)} {base64.b64encode(blob).decode('ascii')}\n"


def append_entry(path: str, names: Sequence[str], blob: bytes) -> None:
    """Record a key the way ``ssh`` does with accept-new (the file and folder are private)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if handle.tell() > 0:
            with open(path, "rb") as check:
                check.seek(-1, os.SEEK_END)
                if check.read(1) != b"\n":
                    handle.write("\n")
        handle.write(entry_line(names, blob))
