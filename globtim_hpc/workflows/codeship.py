"""Ship a source tree into a content-addressed folder on the cluster, sending only new bytes.

Remote layout under ``<remote_root>/code``::

    .objects/<sha256>[.x]      one read-only file per distinct content (``.x``: executable)
    <deploy_id>/...            the tree: hard links into .objects (so it costs no extra space)
    .staging-<id>-<hex>/       an upload in progress; renamed into place when complete

One remote command is given the content hashes the tree needs and asks whether ``<deploy_id>``
exists: if so it returns its DEPLOY.json, and for an unchanged tree that is all; if not, the same
answer says which hashes the store lacks (so the cost follows the tree's size, not the store's).
A second command receives ONE gzip'd tar stream holding only the missing objects plus a hard link per
file, then moves the finished tree into place with a rename, so a tree that exists is always
complete.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from globtim_hpc.errors import RemoteCommandError
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.gitsource import SourceFile, SourceSnapshot

OBJECTS_DIR = ".objects"
DEPLOY_JSON = "DEPLOY.json"
STAGING_PREFIX = ".staging-"
_SPOOL_MAX_BYTES = 32 << 20

# Fixed shell text; every variable part arrives as a positional argument. One round trip: if the
# tree is there, its record; if not, which of the objects named on stdin (one per line) the
# store lacks.
PROBE_SCRIPT = r"""
root=$1 id=$2 tools=$3
if [ -d "$root/$id" ]; then
    cat > /dev/null
    printf 'tree=yes\n'
    printf 'tools=%s\n' "$(cat -- "$root/$id/$tools" 2>/dev/null)"
    if [ -f "$root/$id/DEPLOY.json" ]; then cat -- "$root/$id/DEPLOY.json"; fi
    exit 0
fi
printf 'tree=no\n'
if ! cd -- "$root/.objects" 2>/dev/null; then cat; exit 0; fi
while IFS= read -r key; do
    [ -e "$key" ] || printf '%s\n' "$key"
done
exit 0
"""

UPLOAD_SCRIPT = r"""
set -euo pipefail
root=$1 stage=$2 id=$3
mkdir -p -- "$root/.objects"
cd -- "$root"
# Uploads interrupted more than a day ago leave staging folders; nothing else refers to them.
find . -maxdepth 1 -name '.staging-*' -mmin +1440 -exec rm -rf -- {} + 2>/dev/null || true
rm -rf -- "$stage"
tar -xzf - --no-same-owner
mkdir -p -- "$stage/tree"
if [ -d "$stage/objects" ]; then
    find "$stage/objects" -mindepth 1 -maxdepth 1 -type f -exec mv -f -t .objects -- {} +
fi
if ! mv -T -- "$stage/tree" "$id" 2>/dev/null; then
    # Another upload of the same tree finished first: its copy is as good as ours.
    if [ ! -d "$id" ]; then echo "cannot create $root/$id" >&2; exit 1; fi
fi
rm -rf -- "$stage"
"""


# The digest of the toolkit's own files in a tree (extras): the deploy id covers the user's
# code, not the toolkit, so an upgraded toolkit is noticed by this digest instead.
TOOLS_DIGEST = ".globtim-hpc/tools.sha256"


def extras_digest(extras: Iterable[ExtraFile]) -> str:
    listing = sorted((e.path, hashlib.sha256(e.data).hexdigest()) for e in extras)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


@dataclass(frozen=True)
class Probe:
    tree_exists: bool
    deploy_json: dict[str, Any] | None
    tools_digest: str = ""
    missing_text: str = ""  # tree=no: the asked-for objects the store lacks, one per line


def probe_argv(code_root: str, deploy_id: str) -> list[str]:
    return ["bash", "-c", PROBE_SCRIPT, "globtim-probe", code_root, deploy_id, TOOLS_DIGEST]


def parse_probe(stdout: str) -> Probe:
    first, _, rest = stdout.partition("\n")
    tools = ""
    if rest.startswith("tools="):
        tools_line, _, rest = rest.partition("\n")
        tools = tools_line[len("tools=") :].strip()
    if first.strip() == "tree=yes":
        text = rest.strip()
        deploy_json: dict[str, Any] | None = None
        if text:
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = None  # a half-written or edited record counts as no record
            deploy_json = loaded if isinstance(loaded, dict) else None
        return Probe(True, deploy_json, tools)
    if first.strip() != "tree=no":
        raise RemoteCommandError(
            f"unexpected answer from the deployment probe: {first[:200]!r}",
            "check that the login node runs bash and that remote_root is readable",
        )
    return Probe(False, None, missing_text=rest)


def missing_stdin(keys: Iterable[str]) -> bytes:
    return "".join(f"{key}\n" for key in sorted(set(keys))).encode("ascii")


def parse_missing(stdout: str, wanted: Iterable[str]) -> frozenset[str]:
    """The objects already stored: ``wanted`` minus the names the store said it lacks."""
    wanted_set = frozenset(wanted)
    missing = {line.strip() for line in stdout.splitlines() if line.strip()}
    unexpected = missing - wanted_set
    if unexpected:
        raise RemoteCommandError(
            f"the object store answered with names that were not asked for: "
            f"{sorted(unexpected)[:3]}",
            "check that the login node runs bash",
        )
    return wanted_set - missing


def wanted_objects(snap: SourceSnapshot, extras: Iterable[ExtraFile]) -> set[str]:
    return {
        item.object_key
        for item in (*snap.files, *extra_source_files(extras))
        if item.kind == "file"
    }


def upload_argv(code_root: str, stage: str, deploy_id: str) -> list[str]:
    return ["bash", "-c", UPLOAD_SCRIPT, "globtim-upload", code_root, stage, deploy_id]


def new_stage_name(deploy_id: str) -> str:
    return f"{STAGING_PREFIX}{deploy_id}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ExtraFile:
    """A file that is not in the source tree (a patch, the toolkit's Julia scripts)."""

    path: str
    data: bytes
    executable: bool = False


@dataclass
class ArchiveStats:
    new_objects: int = 0
    reused_objects: int = 0
    payload_bytes: int = 0  # content bytes of new objects, before compression
    members: int = 0
    new_paths: list[str] = field(default_factory=list)


def _content(snap: SourceSnapshot, item: SourceFile, extras: dict[str, bytes]) -> bytes:
    if item.path in extras:
        return extras[item.path]
    return (snap.root / item.path).read_bytes()


def extra_source_files(extras: Iterable[ExtraFile]) -> list[SourceFile]:
    now_s = int(time.time())
    return [
        SourceFile(
            path=extra.path,
            kind="file",
            sha256=hashlib.sha256(extra.data).hexdigest(),
            size_bytes=len(extra.data),
            executable=extra.executable,
            mtime_s=now_s,
        )
        for extra in extras
    ]


def write_archive(
    sink: IO[bytes],
    snap: SourceSnapshot,
    stage: str,
    existing: frozenset[str],
    extras: Iterable[ExtraFile] = (),
) -> ArchiveStats:
    """Write the gzip'd tar of the missing objects and one link per file into ``sink``."""
    extra_list = list(extras)
    extra_data = {extra.path: extra.data for extra in extra_list}
    items = [*snap.files, *extra_source_files(extra_list)]
    stats = ArchiveStats()
    sent: set[str] = set()
    reused: set[str] = set()
    with tarfile.open(fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        for item in items:
            if item.kind != "file" or item.object_key in existing or item.object_key in sent:
                continue
            data = _content(snap, item, extra_data)
            info = tarfile.TarInfo(f"{stage}/objects/{item.object_key}")
            info.size = len(data)
            # Read-only: a tool that rewrites a file in place would otherwise change every
            # deployment that shares it.
            info.mode = 0o555 if item.executable else 0o444
            info.mtime = item.mtime_s
            tar.addfile(info, _BytesReader(data))
            sent.add(item.object_key)
            stats.new_objects += 1
            stats.payload_bytes += len(data)
            stats.new_paths.append(item.path)
        for item in items:
            info = tarfile.TarInfo(f"{stage}/tree/{item.path}")
            info.mtime = item.mtime_s
            if item.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = item.link_target or ""
                info.mode = 0o777
            else:
                info.type = tarfile.LNKTYPE
                if item.object_key in existing:
                    info.linkname = f"{OBJECTS_DIR}/{item.object_key}"
                    reused.add(item.object_key)
                else:
                    info.linkname = f"{stage}/objects/{item.object_key}"
            tar.addfile(info)
            stats.members += 1
    stats.reused_objects = len(reused)
    return stats


class _BytesReader:
    """The minimal file object tarfile.addfile reads from."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        return chunk


@dataclass(frozen=True)
class ShipResult:
    deploy_id: str
    remote_dir: str
    uploaded: bool
    bytes_sent: int  # on the wire: the compressed tar stream
    payload_bytes: int  # content of new objects before compression
    new_objects: int
    reused_objects: int
    new_paths: tuple[str, ...]
    existing_record: dict[str, Any] | None  # DEPLOY.json already there, if any


def ship(
    transport: Transport,
    code_root: str,
    snap: SourceSnapshot,
    extras: Iterable[ExtraFile] = (),
    *,
    deploy_id: str | None = None,
) -> ShipResult:
    """Make ``code_root/<deploy_id>`` hold the snapshot (see the module docstring)."""
    deploy_id = deploy_id or snap.deploy_id
    remote_dir = f"{code_root.rstrip('/')}/{deploy_id}"
    extra_list = list(extras)
    digest = extras_digest(extra_list)
    extra_list.append(ExtraFile(TOOLS_DIGEST, (digest + "\n").encode()))
    wanted = wanted_objects(snap, extra_list)
    probe_result = transport.run(
        probe_argv(code_root, deploy_id), stdin=missing_stdin(wanted), timeout_s=300
    )
    probe_result.check(
        f"listing {code_root} on {transport.label}", "check that remote_root exists and is readable"
    )
    probe = parse_probe(probe_result.stdout_text)
    if probe.tree_exists and probe.tools_digest == digest:
        return ShipResult(deploy_id, remote_dir, False, 0, 0, 0, 0, (), probe.deploy_json)
    if probe.tree_exists:
        # The code is there but the toolkit's files in it are another version: replace just
        # those (atomically, one by one; the digest last) and treat any record as stale.
        sent = 0
        for extra in extra_list:
            transport.put_bytes(extra.data, f"{remote_dir}/{extra.path}")
            sent += len(extra.data)
        return ShipResult(
            deploy_id,
            remote_dir,
            True,
            sent,
            sent,
            len(extra_list),
            0,
            tuple(extra.path for extra in extra_list),
            None,
        )
    existing = parse_missing(probe.missing_text, wanted)
    stage = new_stage_name(deploy_id)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_BYTES) as spool:
        stats = write_archive(spool, snap, stage, existing, extra_list)
        size = spool.tell()
        spool.seek(0)
        result = transport.stream(
            upload_argv(code_root, stage, deploy_id),
            stdin_source=cast(BinaryIO, spool),
            timeout_s=3600,
        )
    result.check(
        f"unpacking the code into {remote_dir} on {transport.label}",
        "check free space and write permission under remote_root (deploy_julia.py --check)",
    )
    return ShipResult(
        deploy_id=deploy_id,
        remote_dir=remote_dir,
        uploaded=True,
        bytes_sent=size,
        payload_bytes=stats.payload_bytes,
        new_objects=stats.new_objects,
        reused_objects=stats.reused_objects,
        new_paths=tuple(stats.new_paths),
        existing_record=None,
    )
