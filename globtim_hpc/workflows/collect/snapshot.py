"""Reading a run on the cluster: its small files in one tar (submission, status, params), and
the SHA-256 manifest of everything in it."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from globtim_hpc.errors import TransferError
from globtim_hpc.jobs.statusfile import parse_status_with_reason
from globtim_hpc.layout import (
    PARAMS_DIR,
    STATUS_DIR,
    SUBMISSION_JSON,
)
from globtim_hpc.models import StatusFile
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.results.manifest import (
    RemoteManifest,
    parse_remote_manifest,
    remote_manifest_argv,
)
from globtim_hpc.results.survey import Survey, parse_survey, survey_argv
from globtim_hpc.transport.base import Transport

MIN_STREAM_TIMEOUT_S = 3600.0


SMALL_FILE_LIMIT_BYTES = 4 << 20

# $1 is the run folder. Exit 3 says "no such folder", which deserves its own message.


@dataclass
class Snapshot:
    submission: dict[str, Any] | None
    status: dict[str, StatusFile]
    params: dict[str, dict[str, Any]]
    notes: list[str]


def read_survey(
    transport: Transport, run: RunRecord, kept_listing_sha256: str = ""
) -> tuple[Snapshot, Survey]:
    """One command: the run's listing (metadata only) and its small status files. With
    ``kept_listing_sha256``, a listing of that digest comes back as ``Survey.same``, no files."""
    result = transport.run(
        survey_argv(run.remote_dir, kept_listing_sha256), timeout_s=MIN_STREAM_TIMEOUT_S
    )
    if result.exit_status == 3:
        raise TransferError(
            f"the run folder {run.remote_dir} does not exist on {transport.label}",
            "was it removed (collect_results.py --clean-remote) or never uploaded? the registry "
            "lists earlier collections of this run",
        )
    result.check(
        f"listing the run folder {run.remote_dir} on {transport.label}",
        "the run folder must be readable; GNU find and tar must be on PATH",
    )
    survey = parse_survey(result.stdout, transport.label, kept_listing_sha256)
    return parse_snapshot(survey.snapshot_tgz, run, transport.label), survey


def parse_snapshot(tgz: bytes, run: RunRecord, where: str) -> Snapshot:
    snapshot = Snapshot(None, {}, {}, [])
    try:
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as archive:
            for member in archive:
                if not member.isreg() or member.size > SMALL_FILE_LIMIT_BYTES:
                    continue
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - regular members have data
                    continue
                _take_snapshot_file(snapshot, member.name, handle.read())
    except (tarfile.TarError, EOFError) as exc:
        raise TransferError(
            f"the status files of {run.run_id} could not be read from {where}: {exc}"
        ) from exc
    return snapshot


def _take_snapshot_file(snapshot: Snapshot, name: str, data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    folder, _, base = name.rpartition("/")
    if name == SUBMISSION_JSON:
        parsed = json_object(text)
        if parsed is None:
            snapshot.notes.append(f"{SUBMISSION_JSON} is not a JSON object; ignored")
        snapshot.submission = parsed
    elif folder == STATUS_DIR and base.endswith(".json"):
        status, why = parse_status_with_reason(text)
        if status is None:
            snapshot.notes.append(f"{name}: {why}")
        else:
            snapshot.status[base[: -len(".json")]] = status
    elif folder == PARAMS_DIR and base.endswith(".json"):
        params = json_object(text)
        if params is not None:
            snapshot.params[base[: -len(".json")]] = params


def json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def fetch_manifest(
    transport: Transport, remote_dir: str, exclude: Sequence[str]
) -> RemoteManifest:
    result = transport.run(remote_manifest_argv(remote_dir, exclude), timeout_s=MIN_STREAM_TIMEOUT_S)
    result.check(
        f"computing the manifest of {remote_dir} on {transport.label}",
        "the run folder must be readable; GNU find and coreutils' sha256sum must be on PATH",
    )
    return parse_remote_manifest(result.stdout, transport.label)
