"""A deployment's verification job: what its outcome means, and which deployment runs may use.

A deployment is verified by a job that loads its packages offline on a compute node. When that
job is still queued as the deployment ends (``deploy_julia.py --no-wait``, or a queue slower
than ``--verify-timeout``), the deployment is recorded as *pending*: the job keeps its place and
whichever command next needs the deployment looks at it once. A submission made meanwhile is
held on it (SLURM ``--dependency=afterok``), as on a run given with ``--after``: it starts once
the verification succeeded, and shows ``DependencyNeverSatisfied`` if it failed.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from globtim_hpc.errors import RemoteCommandError, TransferError
from globtim_hpc.layout import RunLayout
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler, TrackedJob
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows import codeship, jobwait

VERIFY_RESULT = "verify_result.json"


def read_json(transport: Transport, path: str, what: str) -> dict[str, Any] | None:
    """A JSON object a Julia script wrote on the cluster; None when there is none (yet)."""
    try:
        data = transport.get_bytes(path)
    except (TransferError, RemoteCommandError, OSError):
        return None
    try:
        loaded = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RemoteCommandError(
            f"{what}: {path} is not valid JSON ({exc})",
            "the Julia script was interrupted while writing it; deploy again",
        ) from exc
    return loaded if isinstance(loaded, dict) else None


def record_pending(record: dict[str, Any] | None) -> bool:
    """Whether a deployment record (DEPLOY.json's content) waits on its verification job."""
    if not record or record.get("verified") is True:
        return False
    return bool((record.get("verification") or {}).get("pending"))


def is_pending(deployment: dict[str, Any] | None) -> bool:
    """Whether a registry deployment waits on its verification job."""
    if not deployment or deployment.get("verified"):
        return False
    return record_pending(deployment.get("info"))


def write_record(transport: Transport, remote_dir: str, record: dict[str, Any]) -> None:
    """Write a deployment's record as its DEPLOY.json."""
    payload = json.dumps(record, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    transport.put_bytes(payload, posixpath.join(remote_dir, codeship.DEPLOY_JSON))


def pending_job_ids(deployment: dict[str, Any] | None) -> list[str]:
    """The verification job a run on ``deployment`` must wait for (none once it is settled)."""
    if not is_pending(deployment):
        return []
    assert deployment is not None
    return [str(deployment["info"]["verification"]["job_id"])]


def pending_record(job: TrackedJob, state: str | None = None) -> dict[str, Any]:
    """The verification part of a deployment record while its job has not ended."""
    return {
        "job_id": job.job_id,
        "job_name": job.run_id,
        "job_dir": job.run_dir,
        "output": RunLayout(job.run_dir).log_file(job.job_id, 0),
        "pending": True,
        "state": state,
        "ok": False,
        "error": None,
    }


def loaded_versions(reported: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """verify_env.jl's report as a record keeps it: each package's version, and whether each
    extension loaded."""
    return {
        "packages": {
            pkg: entry.get("version")
            for pkg, entry in (reported.get("packages") or {}).items()
            if isinstance(entry, dict)
        },
        "extensions": {
            ext: bool(entry.get("loaded"))
            for ext, entry in (reported.get("extensions") or {}).items()
            if isinstance(entry, dict)
        },
    }


def outcome_record(
    transport: Transport, outcome: jobwait.JobOutcome, timeout_s: float | None = None
) -> dict[str, Any]:
    """The verification part of a deployment record once its job ended (or was given up after
    ``timeout_s``)."""
    reported = read_json(transport, posixpath.join(outcome.job_dir, VERIFY_RESULT), "verification")
    reported = reported or {}
    ok = outcome.ok and bool(reported.get("ok"))
    failures = {
        pkg: entry.get("error")
        for table in ("packages", "extensions")
        for pkg, entry in (reported.get(table) or {}).items()
        if isinstance(entry, dict) and not entry.get("loaded")
    }
    error = None
    if not ok:
        if failures:
            error = "; ".join(f"{pkg}: {message}" for pkg, message in sorted(failures.items()))
        elif outcome.timed_out:
            error = "the job did not finish" + (f" within {timeout_s:.0f} s" if timeout_s else "")
        else:
            error = f"exit status {outcome.exit_code}" + (
                f", state {outcome.state.value}" if outcome.state else ""
            )
    return {
        "job_id": outcome.job_id,
        "job_dir": outcome.job_dir,
        "output": RunLayout(outcome.job_dir).log_file(outcome.job_id, 0),
        "exit_code": outcome.exit_code,
        "state": outcome.state.value if outcome.state else None,
        "ok": ok,
        "error": error,
        "hostname": reported.get("hostname"),
        "julia_version": reported.get("julia_version"),
        "offline": reported.get("offline"),
        **loaded_versions(reported),
        "manifest_sha256": reported.get("manifest_sha256"),
        # A job that exited 0 without a good report had its output left unread: read it now.
        "output_tail": "" if ok else (
            outcome.output_tail or jobwait.output_tail(transport, outcome.job_dir, outcome.job_id)
        ),
    }


def _tracked(verification: dict[str, Any]) -> TrackedJob:
    job_dir = str(verification["job_dir"])
    name = str(verification.get("job_name") or posixpath.basename(job_dir))
    return TrackedJob(
        run_id=name, job_id=str(verification["job_id"]), run_dir=job_dir, task_ids=("0000",)
    )


def settle_record(
    transport: Transport,
    scheduler: Scheduler,
    record: dict[str, Any],
    *,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """A pending deployment record (DEPLOY.json's content) after one look at its verification
    job (or waiting up to ``wait_s`` for it): settled, or still pending."""
    verification = record.get("verification") or {}
    if not verification.get("pending"):
        return record
    job = _tracked(verification)
    if wait_s > 0:
        outcome: jobwait.JobOutcome | None = jobwait.wait_job(
            transport, scheduler, job, timeout_s=wait_s, cancel_on_timeout=False
        )
        if outcome is not None and outcome.timed_out:
            outcome = None
    else:
        outcome = jobwait.look(transport, scheduler, job)
    if outcome is None:
        return record
    settled = outcome_record(transport, outcome)
    manifest = settled.get("manifest_sha256") or record.get("manifest_sha256")
    return {**record, "verification": settled, "verified": bool(settled["ok"]),
            "manifest_sha256": manifest}  # fmt: skip


@dataclass
class DeploymentChoice:
    """The deployment a new run uses, and what was learnt choosing it."""

    deployment: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def usable_deployment(store: Store, cluster: str) -> dict[str, Any] | None:
    """The deployment runs use, from the registry alone: the latest one if it is verified or
    its verification is pending, else the latest verified one."""
    latest = store.latest_deployment(cluster, verified_only=False)
    if latest is not None and (latest["verified"] or is_pending(latest)):
        return latest
    return store.latest_deployment(cluster)


def choose_deployment(
    store: Store,
    cluster: str,
    transport: Transport,
    scheduler: Scheduler,
    *,
    wait_s: float = 1800.0,
) -> DeploymentChoice:
    """The deployment a submission uses. A pending verification is looked at first: once it
    ended, the registry and DEPLOY.json say how; while it is queued, a scheduler that can hold
    a job for another keeps it pending (the run waits on it) and any other one waits for it
    here, up to ``wait_s``."""
    chosen = usable_deployment(store, cluster)
    if not is_pending(chosen):
        return DeploymentChoice(chosen)
    assert chosen is not None
    record = dict(chosen["info"])
    wait = 0.0 if scheduler.holds_for_jobs else wait_s
    settled = settle_record(transport, scheduler, record, wait_s=wait)
    if settled is record:
        if not scheduler.holds_for_jobs:
            job = record["verification"]["job_id"]
            raise RemoteCommandError(
                f"deployment {chosen['deploy_id']}: verification job {job} has not ended "
                f"after {wait_s:.0f} s, and {scheduler.name} cannot hold a run until it does",
                "wait for it, then submit again; or deploy again with a longer --verify-timeout",
            )
        job = record["verification"]["job_id"]
        note = (
            f"deployment {chosen['deploy_id']} is still being verified (job {job}): "
            "the run starts once that job succeeds"
        )
        return DeploymentChoice(chosen, [note])
    store.record_deployment(
        deploy_id=chosen["deploy_id"], cluster=cluster, git_sha=chosen["git_sha"],
        dirty=chosen["dirty"], remote_dir=chosen["remote_dir"], verified=settled["verified"],
        info=settled, keep_created_at=True,
    )  # fmt: skip
    write_record(transport, chosen["remote_dir"], settled)
    if settled["verified"]:
        return DeploymentChoice({**chosen, "verified": True, "info": settled})
    error = settled["verification"].get("error")
    fallback = store.latest_deployment(cluster)
    note = (
        f"deployment {chosen['deploy_id']} failed its verification ({error}); "
        + (f"using deployment {fallback['deploy_id']}" if fallback else "no verified deployment")
    )
    return DeploymentChoice(fallback, [note])
