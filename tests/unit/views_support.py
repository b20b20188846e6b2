"""A sweep run folder made on this machine by the stand-in driver, collected by the real
workflow (LocalTransport, status files decide), for the tests of the run's views."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from globtim_hpc.jobs.plan import build_plan
from globtim_hpc.layout import new_run_id
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.workflows.collect import CollectOptions, CollectResult, collect_run
from tests.runenv_support import make_default_env

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "tests" / "stand_in" / "julia"
DRIVER = REPO / "julia" / "globtim_driver.jl"


def sweep_config(path: Path, functions: Sequence[str], degrees: Sequence[int], gn: int = 6) -> Path:
    path.write_text(
        "parameters:\n"
        f"  function: [{', '.join(functions)}]\n"
        f"  degree: [{', '.join(str(d) for d in degrees)}]\n"
        f"  samples_per_dim: {gn}\n"
        "resources:\n  mem_gb: 8\n  time_min: 30\n  cpus: 1\n"
    )
    return path


def make_run(
    remote_root: Path,
    store: Store,
    config: Path,
    *,
    problem: str = "4d_benchmark",
    git_sha: str = "abc123",
    deploy_id: str = "d1",
    cluster: str = "local",
    max_rss_kb: dict[str, int] | None = None,
) -> str:
    """Run every task of the config with the stand-in into a run folder; register the run."""
    plan = build_plan(problem, config)
    run_id = new_run_id(problem)
    run = remote_root / "runs" / run_id
    for sub in ("params", "status", "logs"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    submission = {
        "schema": "globtim-hpc/submission/1", "run_id": run_id, "deploy_id": deploy_id,
        "git_sha": git_sha, "code_dirty": False, "user": "ada",
        "created_at": "2026-12-01T10:00:00+00:00",
        "resources": plan.resources.to_dict(), "tasks": [t.to_dict() for t in plan.tasks],
    }  # fmt: skip
    (run / "submission.json").write_text(json.dumps(submission))
    (run / "job.sbatch").write_text("#!/bin/bash\n")
    # No deployment: the stand-in, like Julia, loads what the driver needs from the depot's
    # default environment.
    depot = remote_root / "depot"
    make_default_env(depot)
    env = {**os.environ, "JULIA_DEPOT_PATH": str(depot)}
    env.pop("JULIA_PROJECT", None)
    for task in plan.tasks:
        params = run / "params" / f"{task.task_id}.json"
        params.write_text(json.dumps(task.params))
        out = run / "output" / task.task_id
        done = subprocess.run([str(STAND_IN), str(DRIVER), str(params), str(out)],
                              capture_output=True, text=True, check=False, env=env)  # fmt: skip
        status: dict[str, Any] = {
            "schema": "globtim-hpc/status/1", "run_id": run_id, "task_id": task.task_id,
            "task_index": task.index, "job_id": f"7_{task.index}", "array_job_id": "7",
            "host": "laptop", "started_at": "2026-12-01T10:00:00Z",
            "ended_at": f"2026-12-01T10:{1 + task.index:02d}:00Z", "exit_code": done.returncode,
            "signal": None, "state": "EXITED", "julia_version": "stand-in",
        }  # fmt: skip
        (run / "status" / f"{task.task_id}.json").write_text(json.dumps(status))
        (run / "logs" / f"slurm-7_{task.index}.out").write_text(done.stdout[-2000:])
    store.add_run(run_id=run_id, problem=problem, cluster=cluster, scheduler="direct",
                  remote_dir=str(run), task_ids=[t.task_id for t in plan.tasks],
                  config_hash=plan.config_hash, deploy_id=deploy_id, git_sha=git_sha,
                  plan=plan.to_dict(), submission=submission)  # fmt: skip
    store.record_job(run_id, cluster, "7")
    return run_id


def collect_folder(
    store: Store, remote_root: Path, results_root: Path, run_id: str, *, plots: bool = True
) -> Path:
    """Collect and return the run folder."""
    result = collect(store, remote_root, results_root, run_id, plots=plots)
    assert result.local_dir is not None
    return Path(result.local_dir)


def collect(
    store: Store, remote_root: Path, results_root: Path, run_id: str, *, plots: bool = True
) -> CollectResult:
    run = store.get_run(run_id)
    assert run is not None
    options = CollectOptions(results_root=results_root, fsync=False, plots=plots)
    return collect_run(run, store=store, scheduler=DirectScheduler(LocalTransport()),
                       remote_root=str(remote_root), options=options, ask_scheduler=False)  # fmt: skip
