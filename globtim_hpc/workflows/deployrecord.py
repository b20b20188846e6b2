"""What a deployment records (DEPLOY.json's settings and set-up parts) and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.workflows import gitsource
from globtim_hpc.workflows.verification import record_pending

# Settings that make an environment what it is: a change means setting it up again.
ENV_KEYS = ("julia_executable", "julia_modules", "depot_path")


@dataclass
class DeployReport:
    deploy_id: str
    git_sha: str
    dirty: bool
    remote_dir: str
    noop: bool
    uploaded: bool
    bytes_sent: int
    payload_bytes: int
    new_objects: int
    reused_objects: int
    file_count: int
    verified: bool
    record: dict[str, Any]
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        """Whether the verification job has not ended yet (runs wait on it)."""
        return record_pending(self.record)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deploy_id": self.deploy_id,
            "git_sha": self.git_sha,
            "dirty": self.dirty,
            "remote_dir": self.remote_dir,
            "noop": self.noop,
            "uploaded": self.uploaded,
            "bytes_sent": self.bytes_sent,
            "payload_bytes": self.payload_bytes,
            "new_objects": self.new_objects,
            "reused_objects": self.reused_objects,
            "file_count": self.file_count,
            "verified": self.verified,
            "pending": self.pending,
            "record": self.record,
            "elapsed_s": round(self.elapsed_s, 3),
            "notes": self.notes,
        }


def env_summary(reported: dict[str, Any], where: str, job_id: str | None) -> dict[str, Any]:
    """The record's ``env_setup``: where Pkg ran and what deploy_env.jl reported."""
    return {
        "where": where,
        "job_id": job_id,
        "ok": True,
        "elapsed_s": reported.get("elapsed_s"),
        "packages": reported.get("packages"),
        "manifest_sha256": reported.get("manifest_sha256"),
    }


def env_settings(profile: ClusterProfile) -> dict[str, Any]:
    return {
        "julia_executable": profile.julia_executable,
        "julia_modules": list(profile.julia_modules),
        "depot_path": profile.depot_path,
    }


def record_is_current(
    record: dict[str, Any] | None,
    snap: gitsource.SourceSnapshot,
    profile: ClusterProfile,
    *,
    pending_too: bool = False,
) -> bool:
    """A remote DEPLOY.json that already says: this tree, verified (or, with ``pending_too``,
    being verified), with these Julia settings."""
    if not record:
        return False
    if record.get("verified") is not True and not (pending_too and record_pending(record)):
        return False
    if record.get("tree_sha256") != snap.tree_sha256:
        return False
    wanted = env_settings(profile)
    return all(record.get(key) == wanted[key] for key in ENV_KEYS)
