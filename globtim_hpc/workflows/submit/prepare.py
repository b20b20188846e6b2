"""Everything a run folder will hold, made on this machine; nothing remote is touched."""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import posixpath
import socket
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from globtim_hpc import paths
from globtim_hpc.errors import PreflightError
from globtim_hpc.jobs.arrays import split_indices
from globtim_hpc.jobs.render import ScriptInputs, array_throttle, render_script
from globtim_hpc.layout import (
    DRIVER_DIR,
    JOB_SCRIPT,
    LOGS_DIR,
    OUTPUT_DIR,
    PARAMS_DIR,
    STATUS_DIR,
    SUBMISSION_JSON,
    RemoteLayout,
    new_run_id,
    part_job_name,
)
from globtim_hpc.registry.records import utc_now
from globtim_hpc.scheduler.base import SubmitRequest
from globtim_hpc.toolinfo import tool_info
from globtim_hpc.workflows.verification import pending_job_ids

if TYPE_CHECKING:
    from globtim_hpc.jobs.plan import JobPlan
    from globtim_hpc.settings.profile import ClusterProfile

# Folders the job writes into; tar creates the others from their members.
EMPTY_FOLDERS = (LOGS_DIR, STATUS_DIR, OUTPUT_DIR, PARAMS_DIR, DRIVER_DIR)


@dataclass
class PreparedRun:
    run_id: str
    run_dir: str
    script: str
    files: dict[str, bytes]  # name in the run folder -> content
    submission: dict[str, Any]
    deploy_id: str | None
    code_git_sha: str | None

    def archive(self) -> bytes:
        """A gzipped tar of the run folder, with the empty folders the job expects."""
        buffer = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for folder in EMPTY_FOLDERS:
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = now
                tar.addfile(info)
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o644
                info.mtime = now
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def upload_plan(self) -> list[dict[str, Any]]:
        return [{"path": name, "bytes": len(self.files[name])} for name in sorted(self.files)]


def after_job_ids(submission: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The jobs a run waits on (``--after``), as its submission record keeps them."""
    chained = (submission or {}).get("after") or []
    return tuple(job_id for parent in chained for job_id in parent.get("job_ids", []))


def submit_request(
    run_id: str,
    run_dir: str,
    plan: Mapping[str, Any],
    job_tag: str = "",
    *,
    submission: Mapping[str, Any] | None = None,
    part: int | None = None,
) -> SubmitRequest:
    """What the scheduler is asked to run, from a plan as the registry keeps it (``to_dict``)
    and the run's submission record (the runs it waits on, the parts of a split sweep)."""
    resources = plan["resources"]
    parts = list((submission or {}).get("array_parts") or [])
    chosen = parts[part or 0] if parts else None
    return SubmitRequest(
        run_id=part_job_name(run_id, 1, int(chosen["part"])) if chosen else run_id,
        run_dir=run_dir,
        script_path=posixpath.join(run_dir, JOB_SCRIPT),
        task_count=len(plan["tasks"]),
        max_parallel=int(resources.get("max_parallel") or 1),
        time_limit_s=int(resources["time_min"]) * 60,
        cpus=int(resources["cpus"]),
        job_tag=job_tag,
        after_job_ids=after_job_ids(submission),
        array=str(chosen["array"]) if chosen else None,
        task_offset=int(chosen["offset"]) if chosen else 0,
    )


def array_parts(
    plan: JobPlan, profile: ClusterProfile, max_array_size: int | None
) -> list[dict[str, Any]]:
    """The parts a first submission is split into (none when one array job holds it all)."""
    parts = split_indices(range(len(plan.tasks)), max_array_size)
    if len(parts) <= 1:
        return []
    throttle = array_throttle(plan, profile)
    return [{**part.to_dict(), "array": part.array_spec(throttle)} for part in parts]


def upload_inputs(
    plan: JobPlan, deployment: dict[str, Any] | None, scheduler_files: Mapping[str, bytes]
) -> dict[str, Any]:
    """What a run's upload is made from, beyond its config: an interrupted submission is
    resumed (with the archive saved then) only while these are the same now."""

    def digest(files: Mapping[str, bytes]) -> str:
        hashed = hashlib.sha256()
        for name in sorted(files):
            hashed.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        return hashed.hexdigest()

    extras = {name: Path(local).read_bytes() for local, name in plan.extra_files}
    tool = tool_info()
    return {
        "deploy_id": deployment["deploy_id"] if deployment else None,
        "driver_sha256": digest(_driver_files(plan)),
        "input_files_sha256": digest(extras),
        "scheduler_files_sha256": digest(scheduler_files),
        "toolkit": f"{tool['version']} {tool['git_sha'] or ''}{'-dirty' if tool['git_dirty'] else ''}".strip(),
    }


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _driver_files(plan: JobPlan) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(paths.julia_dir().glob("*.jl")):
        files[posixpath.join(DRIVER_DIR, path.name)] = path.read_bytes()
    if posixpath.join(DRIVER_DIR, plan.driver) not in files:
        raise PreflightError(
            f"the driver {plan.driver} is missing from {paths.julia_dir()}",
            "reinstall globtim-hpc, or restore julia/ in the checkout",
        )
    return files


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _run_env(deployment: dict[str, Any] | None) -> dict[str, Any]:
    """The deployment's run environment (JULIA_PROJECT for its jobs) from its record.

    A deployment recorded before run environments existed runs in its code folder.
    """
    if not deployment:
        return {}
    info = deployment.get("info") or {}
    found = info.get("run_env") if isinstance(info.get("run_env"), dict) else None
    return dict(found) if found else {"dir": deployment["remote_dir"]}


def prepare_run(
    plan: JobPlan,
    profile: ClusterProfile,
    deployment: dict[str, Any] | None,
    scheduler_files: Mapping[str, bytes],
    *,
    run_id: str | None = None,
    after: Mapping[str, Sequence[str]] | None = None,
    max_array_size: int | None = None,
) -> PreparedRun:
    """Render the script and gather every file of the run folder (``scheduler_files``: what the
    scheduler needs in it, see ``Scheduler.run_files``). A sweep with more tasks than
    ``max_array_size`` is split into parts (jobs.arrays), kept in the submission record."""
    run_id = run_id or new_run_id(plan.problem)
    run_dir = RemoteLayout(profile.remote_root).run_dir(run_id)
    run_env = _run_env(deployment)
    julia_project = run_env.get("dir") if deployment else None
    parts = array_parts(plan, profile, max_array_size)
    inputs = ScriptInputs(run_id, run_dir, julia_project, array=parts[0]["array"] if parts else None)
    script = render_script(plan, profile, inputs)
    files: dict[str, bytes] = {JOB_SCRIPT: script.encode()}
    files.update(_driver_files(plan))
    for task in plan.tasks:
        files[posixpath.join(PARAMS_DIR, f"{task.task_id}.json")] = (
            json.dumps(task.params, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()
    for local, name in plan.extra_files:
        files[name] = Path(local).read_bytes()
    files.update(scheduler_files)
    deploy_id: str | None = deployment["deploy_id"] if deployment else None
    code_git_sha: str | None = deployment.get("git_sha") if deployment else None
    submission: dict[str, Any] = {
        "schema": "globtim-hpc/submission/1",
        "run_id": run_id,
        "problem": plan.problem,
        "description": plan.description,
        "cluster": profile.name,
        "scheduler": profile.scheduler,
        "remote_dir": run_dir,
        "created_at": utc_now(),
        "user": _user(),
        "submit_host": socket.gethostname(),
        "tool": tool_info(),
        "deploy_id": deploy_id,
        "git_sha": code_git_sha,
        "code_dirty": deployment.get("dirty") if deployment else None,
        "julia_project": julia_project,
        "run_env_manifest_sha256": run_env.get("manifest_sha256"),
        "globtim_version": run_env.get("globtim_version"),
        "julia_executable": profile.julia_executable,
        "julia_modules": list(profile.julia_modules),
        "depot_path": profile.depot_path,
        "config_path": plan.config_path,
        "config_hash": plan.config_hash,
        "driver": plan.driver,
        "resources": plan.resources.to_dict(),
        "tasks": [task.to_dict() for task in plan.tasks],
        "inputs": upload_inputs(plan, deployment, scheduler_files),
        # Runs this one starts after, once every job of theirs completed (--after), and the
        # deployment's verification job while that has not ended.
        "after": [
            {"run_id": parent, "job_ids": list(job_ids)} for parent, job_ids in (after or {}).items()
        ]
        + [
            {"deployment": deploy_id, "job_ids": [job_id]}
            for job_id in pending_job_ids(deployment)
        ],
    }
    if parts:
        submission["array_parts"] = parts
    files[SUBMISSION_JSON] = (json.dumps(submission, indent=2, sort_keys=True) + "\n").encode()
    return PreparedRun(
        run_id=run_id,
        run_dir=run_dir,
        script=script,
        files=files,
        submission=submission,
        deploy_id=deploy_id,
        code_git_sha=code_git_sha,
    )
