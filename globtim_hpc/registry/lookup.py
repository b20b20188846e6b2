"""Finding registered runs the way a user names them: by job id, by run id, or by what they are
(active, not yet collected, of a problem)."""

from __future__ import annotations

from globtim_hpc.errors import UsageError
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store


def find_run(store: Store, cluster: str, *, job_id: str | None = None, run_id: str | None = None) -> RunRecord:
    """The registered run named by job id or run id, or a UsageError saying how to find it."""
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError(
                f"no run {run_id} in the registry ({store.path})",
                "check the id (submit_julia_job.py prints it; monitor_jobs.py lists active runs), "
                "or point GLOBTIM_HPC_STATE_DIR at another registry",
            )
    elif job_id is not None:
        found = store.runs_for_job(cluster, job_id) or store.runs_for_job(None, job_id)
        if not found:
            raise UsageError(
                f"no run with job id {job_id} on cluster '{cluster}' in the registry ({store.path})",
                "run monitor_jobs.py without an id to list active runs, give --run-id instead, or "
                "choose the cluster the job was submitted to with --cluster",
            )
        if len(found) > 1:
            named = ", ".join(f"{r.run_id} (submitted {r.submitted_at or '?'})" for r in found)
            raise UsageError(
                f"job id {job_id} belongs to {len(found)} runs: {named}",
                "SLURM starts job ids at 1 again when its controller is rebuilt; name the run "
                "with --run-id",
            )
        run = found[0]
    else:
        raise UsageError("name a run", "give a job id or a run id")
    if run.cluster != cluster:
        raise UsageError(
            f"run {run.run_id} was submitted to cluster '{run.cluster}', not '{cluster}'",
            f"add --cluster {run.cluster}",
        )
    return run


def uncollected_runs(store: Store, cluster: str) -> list[RunRecord]:
    """Submitted runs of ``cluster`` with no complete collection yet (for ``--all``)."""
    found = []
    for run in store.list_runs(cluster=cluster):
        if run.job_id is None:
            continue
        if any(c["complete"] for c in store.collections(run.run_id)):
            continue
        found.append(run)
    return found
