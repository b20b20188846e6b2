"""Small batch jobs on the bed for the monitoring tests.

Each job writes its status file the way templates/job.sbatch.j2 does (a RUNNING file at start,
rewritten from a bash trap at exit, SIGNALLED with the signal's name after SIGTERM), then runs
a short bash body. Runs are recorded in the registry as the submit workflow records them.
"""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from globtim_hpc.layout import RunLayout, new_run_id, task_id_for
from globtim_hpc.quoting import quote
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler, SubmitRequest, TrackedJob, submit_job
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.monitor import RunView, poll_runs
from tests.integration import bedenv

TESTS_ROOT = f"{bedenv.remote_root()}/tests-monitor"
CLUSTER = "testbed"

STATUS_PRELUDE = r"""
set -uo pipefail
TASK_INDEX="${SLURM_ARRAY_TASK_ID:-0}"
TASK_ID="$(printf '%0*d' "$TASK_ID_WIDTH" "$TASK_INDEX")"
STATUS_FILE="$RUN_DIR/status/$TASK_ID.json"
STARTED_AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
SIGNAL_NAME=""
write_status() {
    local tmp="$STATUS_FILE.tmp.$$" ended=null code=null sig=null
    [ -n "$2" ] && ended="\"$2\""
    [ -n "$3" ] && code="$3"
    [ -n "$SIGNAL_NAME" ] && sig="\"$SIGNAL_NAME\""
    printf '{"schema": "globtim-hpc/status/1", "run_id": "%s", "task_id": "%s", "task_index": %d, "job_id": "%s", "array_job_id": "%s", "host": "%s", "started_at": "%s", "ended_at": %s, "exit_code": %s, "signal": %s, "state": "%s", "julia_version": "none (test job)"}\n' \
        "$RUN_ID" "$TASK_ID" "$TASK_INDEX" "${SLURM_JOB_ID:-}" "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-}}" \
        "$(hostname)" "$STARTED_AT" "$ended" "$code" "$sig" "$1" > "$tmp"
    mv -f "$tmp" "$STATUS_FILE"
}
on_exit() {
    local rc=$?
    trap - EXIT TERM INT
    local state=EXITED
    [ -n "$SIGNAL_NAME" ] && state=SIGNALLED
    write_status "$state" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$rc"
    exit "$rc"
}
trap on_exit EXIT
trap 'SIGNAL_NAME=TERM; exit 143' TERM
trap 'SIGNAL_NAME=INT; exit 130' INT
write_status RUNNING "" ""
"""


@dataclass(frozen=True)
class BedRun:
    name: str
    run_id: str
    run_dir: str
    job_id: str
    task_ids: tuple[str, ...]

    def tracked(self) -> TrackedJob:
        return TrackedJob(self.run_id, self.job_id, self.run_dir, self.task_ids)


def unique_base(transport: Transport) -> str:
    base = posixpath.join(TESTS_ROOT, uuid.uuid4().hex[:12])
    transport.run(["mkdir", "-p", base]).check("creating the test folder")
    return base


def batch_script(
    run_id: str, run_dir: str, task_count: int, body: str, sbatch: Sequence[str]
) -> str:
    layout = RunLayout(run_dir)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={run_id}",
        f"#SBATCH --output={layout.log_pattern}",
    ]
    if task_count > 1:
        lines.append(f"#SBATCH --array=0-{task_count - 1}")
    lines += [f"#SBATCH {option}" for option in sbatch]
    lines += [
        f"RUN_ID={quote(run_id)}",
        f"RUN_DIR={quote(run_dir)}",
        f"TASK_ID_WIDTH={len(task_id_for(0, task_count))}",
        STATUS_PRELUDE,
        # run the body as a child and wait, so a SIGTERM reaches the trap at once
        f"bash -c {quote(body)} &",
        "wait $!",
    ]
    return "\n".join(lines) + "\n"


def submit_run(
    transport: Transport,
    scheduler: Scheduler,
    store: Store,
    base: str,
    name: str,
    body: str,
    *,
    sbatch: Sequence[str] = (),
    task_count: int = 1,
    time_min: int | None = None,
) -> BedRun:
    """Write a batch script under ``base``, submit it, and record the run like submit does."""
    run_id = new_run_id(f"monitor_{name}")
    run_dir = posixpath.join(base, run_id)
    layout = RunLayout(run_dir)
    transport.run(["mkdir", "-p", layout.status_dir, layout.logs_dir]).check(
        "creating a run folder"
    )
    transport.put_bytes(
        batch_script(run_id, run_dir, task_count, body, sbatch).encode(),
        layout.job_script,
        mode=0o755,
    )
    task_ids = tuple(task_id_for(i, task_count) for i in range(task_count))
    plan = {"resources": {"time_min": time_min}} if time_min is not None else {}
    store.add_run(
        run_id=run_id,
        problem=f"monitor_{name}",
        cluster=CLUSTER,
        scheduler="slurm",
        remote_dir=run_dir,
        task_ids=task_ids,
        config_hash=uuid.uuid4().hex,
        deploy_id=None,
        git_sha=None,
        plan=plan,
        submission=None,
    )
    request = SubmitRequest(run_id, run_dir, layout.job_script, task_count, task_count, 3600, 1)
    job_id = submit_job(scheduler, request)
    store.record_job(run_id, CLUSTER, job_id)
    return BedRun(name, run_id, run_dir, job_id, task_ids)


def poll_until_settled(
    store: Store,
    transport: Transport,
    scheduler: Scheduler,
    runs: Sequence[BedRun],
    *,
    deadline_s: float,
    every_s: float = 2.0,
    on_poll: Callable[[dict[str, RunView]], None] | None = None,
) -> dict[str, RunView]:
    """Poll all runs together until every task is settled; fail with the last view at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        records = [store.get_run(run.run_id) for run in runs]
        views = poll_runs(store, scheduler, [r for r in records if r is not None])
        by_name = {run.name: view for run, view in zip(runs, views, strict=True)}
        if on_poll is not None:
            on_poll(by_name)
        if all(view.all_settled for view in views):
            return by_name
        if time.monotonic() > end:
            summary = {name: view.counts() for name, view in by_name.items()}
            raise AssertionError(f"runs not settled within {deadline_s:.0f} s: {summary}")
        time.sleep(every_s)
