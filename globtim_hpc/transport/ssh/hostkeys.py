"""Host keys: known_hosts files read and judged the way OpenSSH does, and the verdict on a
hop's key turned into a decision (pure; no paramiko, no network).

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

from globtim_hpc.errors import HostKeyError
from globtim_hpc.quoting import join, quote
from globtim_hpc.transport.settings import HostKeyPolicy
from globtim_hpc.transport.ssh.config.model import ResolvedHost
from globtim_hpc.transport.ssh.config.patterns import match_host_patterns

Verdict = Literal["ok", "unknown", "changed", "revoked"]

# For an RSA host key recorded in known_hosts, these are the signature algorithms to ask for.
_ALGORITHMS_FOR_KEY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


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


# ---------------------------------------------------------------------------------------------
# One hop's key


def lookup_names(host: ResolvedHost) -> list[str]:
    """Names under which the hop's key may be recorded: HostKeyAlias, else hostname and alias."""
    if host.host_key_alias:
        return [lookup_name(host.host_key_alias, host.port)]
    names = [lookup_name(host.hostname, host.port)]
    alias = lookup_name(host.alias, host.port)
    if alias not in names:
        names.append(alias)
    return names


def preferred_key_types(available: Sequence[str], known_types: Sequence[str]) -> list[str]:
    """Ask for host key types already recorded first, as OpenSSH does, so a recorded host with
    several keys is not reported as unknown because another type was negotiated."""
    first: list[str] = []
    for key_type in known_types:
        for algorithm in _ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)):
            if algorithm in available and algorithm not in first:
                first.append(algorithm)
    return first + [a for a in available if a not in first]


def verify_host_key(
    host: ResolvedHost,
    blob: bytes,
    entries: Sequence[KnownHostEntry],
    policy: HostKeyPolicy,
) -> None:
    """Accept the key the hop presented, record it (accept-new), or raise HostKeyError."""
    names = lookup_names(host)
    verdict = judge(entries, names, blob)
    if verdict == "ok":
        return
    fingerprint = fingerprint_sha256(blob)
    key_text = f"{key_type_of(blob)} {fingerprint}"
    record_in = host.known_hosts_files[0] if host.known_hosts_files else "~/.ssh/known_hosts"
    if verdict == "revoked":
        raise HostKeyError(
            f"host key {key_text} is marked @revoked in known_hosts",
            "this key must not be trusted; ask the cluster administrators",
            hop=host.label,
            fingerprint=fingerprint,
        )
    if verdict == "changed":
        raise HostKeyError(
            f"HOST KEY HAS CHANGED: the server presents {key_text}, which differs from the "
            f"key recorded for {names[0]} in {', '.join(host.known_hosts_files)}. Someone may "
            "be intercepting the connection (man-in-the-middle), or the host was reinstalled.",
            "verify the new fingerprint with the administrators; only then remove the old "
            f"entry with: ssh-keygen -R {quote(names[0])} -f {quote(record_in)}",
            hop=host.label,
            fingerprint=fingerprint,
        )
    # StrictHostKeyChecking=no makes OpenSSH record new keys too; it never accepts changed ones
    accept = policy == "accept-new" or host.strict_host_key_checking in ("accept-new", "no")
    if accept and host.known_hosts_files:
        try:
            append_entry(record_in, [names[0]], blob)
        except OSError as exc:
            raise HostKeyError(
                f"cannot record the new host key in {record_in}: {exc.strerror or exc}",
                hop=host.label,
                fingerprint=fingerprint,
            ) from exc
        return
    keyscan = join(["ssh-keyscan", "-p", str(host.port), "-t", key_type_of(blob), host.hostname])
    raise HostKeyError(
        f"host key for {host.address} is not known: {key_text}",
        "check the fingerprint with the administrators, then record it with "
        f"`{keyscan} >> {quote(record_in)}` (run where {host.hostname} is reachable) "
        "or set host_key_policy: accept-new in the cluster profile",
        hop=host.label,
        fingerprint=fingerprint,
    )
