"""Run a small bash script as a one-task job and wait for it: deploy checks and doctor probes.

The script goes through the Scheduler like any run (SLURM, or the direct runner on the target
host) and records its own exit status in ``<job_dir>/exit_code`` from an EXIT trap, so the
answer does not depend on accounting; the scheduler's view is used only to notice a job that
ended without writing it. Its output lands where a run's would: ``logs/slurm-<job>_0.out``.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from globtim_hpc import quoting
from globtim_hpc.errors import GlobtimHpcError, RemoteCommandError
from globtim_hpc.jobs.render import sbatch_block
from globtim_hpc.layout import RunLayout, new_run_id
from globtim_hpc.models import JobState
from globtim_hpc.scheduler.base import Scheduler, SubmitRequest, TrackedJob, submit_job
from globtim_hpc.transport.base import Transport

EXIT_FILE = "exit_code"
SCRIPT_FILE = "job.sbatch"

# Fixed text: the trap refers to a variable set (quoted) above it, never to quoted values.
_TRAP = (
    'trap \'rc=$?; printf "%s\\n" "$rc" >"$exit_file.tmp" && '
    'mv -f "$exit_file.tmp" "$exit_file"\' EXIT'
)

# Waits on the cluster, up to "$2" tenths of a second, for the exit file: the answer comes within
# a tenth of a second of the job's end, in one round trip, however long the wait. A sleep that
# takes no fraction (POSIX asks only whole seconds) sleeps a second and counts ten ticks.
_WAIT_SCRIPT = r"""
d=$1 n=$2
while [ ! -f "$d/exit_code" ] && [ "$n" -gt 0 ]; do
  if sleep 0.1 2>/dev/null; then n=$((n - 1)); else sleep 1; n=$((n - 10)); fi
done
if [ -f "$d/exit_code" ]; then printf 'exit=%s\n' "$(cat "$d/exit_code")"; else printf 'exit=\n'; fi
"""
# The longest single wait on the cluster: between two waits the scheduler is asked whether the
# job ended without writing its exit file (cancelled while queued, a node lost).
MAX_REMOTE_WAIT_S = 10.0


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    job_dir: str
    exit_code: int | None  # what the script recorded; None if it never finished
    state: JobState | None  # the scheduler's last word, when asked
    timed_out: bool
    output_tail: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def render_job(
    body: Sequence[str],
    job_dir: str,
    *,
    name: str,
    time_limit_min: int,
    cpus: int = 1,
    partition: str | None = None,
    account: str | None = None,
) -> str:
    """A batch script: ``#SBATCH`` header, exit trap, then ``body`` (already-quoted lines)."""
    layout = RunLayout(job_dir)
    options = {
        "job-name": name,
        "comment": f"globtim-hpc:{name}",
        "output": layout.log_pattern,
        "error": layout.log_pattern,
        "array": "0",
        "time": str(time_limit_min),
        "ntasks": "1",
        "cpus-per-task": str(cpus),
    }
    if partition:
        options["partition"] = partition
    if account:
        options["account"] = account
    lines = [
        "#!/bin/bash",
        sbatch_block(options),
        "set -uo pipefail",
        "exit_file=" + quoting.quote(posixpath.join(job_dir, EXIT_FILE)),
        _TRAP,
        "set -e",
        *body,
        "",
    ]
    return "\n".join(lines)


def new_job_dir(parent: str, label: str) -> tuple[str, str]:
    """(job name, job folder): the name reads like a run id so that it can be found again."""
    name = new_run_id(label)
    return name, posixpath.join(parent, name)


def output_tail(transport: Transport, job_dir: str, job_id: str) -> str:
    """The last lines of a job's output ("" while it has none)."""
    for path in RunLayout(job_dir).log_candidates(job_id, 0):
        try:
            data = transport.get_bytes(path)
        except GlobtimHpcError:  # the log may not exist: the job never started
            continue
        lines = data.decode("utf-8", "replace").rstrip("\n").splitlines()
        return "\n".join(lines[-30:])
    return ""


def _read_exit(transport: Transport, job_dir: str, wait_s: float = 0.0) -> int | None:
    """The job's recorded exit status, waiting on the cluster up to ``wait_s`` for it."""
    ticks = str(max(0, int(wait_s * 10)))
    result = transport.run(
        ["sh", "-c", _WAIT_SCRIPT, "globtim-wait", job_dir, ticks], timeout_s=60 + wait_s
    )
    result.check(f"reading {job_dir}/{EXIT_FILE} on {transport.label}")
    text = result.stdout_text.strip().removeprefix("exit=").strip()
    try:
        return int(text) if text else None
    except ValueError:
        return None


def start_job(
    transport: Transport,
    scheduler: Scheduler,
    script: str,
    job_dir: str,
    *,
    name: str,
    time_limit_s: int,
) -> TrackedJob:
    """Write ``script`` into ``job_dir`` and submit it as a one-task job."""
    layout = RunLayout(job_dir)
    transport.run(["mkdir", "-p", "--", layout.logs_dir, layout.direct_dir], timeout_s=60).check(
        f"creating {job_dir} on {transport.label}", "check that remote_root is writable"
    )
    script_path = posixpath.join(job_dir, SCRIPT_FILE)
    transport.put_bytes(script.encode("utf-8"), script_path, mode=0o755)
    for relative, data in scheduler.run_files().items():
        transport.put_bytes(data, posixpath.join(job_dir, relative), mode=0o755)
    request = SubmitRequest(
        run_id=name,
        run_dir=job_dir,
        script_path=script_path,
        task_count=1,
        max_parallel=1,
        time_limit_s=time_limit_s,
        cpus=1,
    )
    job_id = submit_job(scheduler, request)
    return TrackedJob(run_id=name, job_id=job_id, run_dir=job_dir, task_ids=("0000",))


def look(transport: Transport, scheduler: Scheduler, job: TrackedJob) -> JobOutcome | None:
    """One look at a job: its outcome if it ended (by its exit file, or the scheduler's final
    state when it ended without writing one), None while it is queued or running. The output
    is read only when the job failed."""
    return _look(transport, scheduler, job, keep_output=False)[0]


def _look(
    transport: Transport,
    scheduler: Scheduler,
    job: TrackedJob,
    *,
    keep_output: bool,
    wait_s: float = 0.0,
) -> tuple[JobOutcome | None, JobState | None]:
    code = _read_exit(transport, job.run_dir, wait_s)
    state: JobState | None = None
    if code is None:
        tasks = scheduler.poll([job]).tasks.get(job.run_id, {})
        state = next(iter(tasks.values())).state if tasks else None
        if state is None or not state.is_final:
            return None, state
        # The trap may have run just after our read: look once more before giving up.
        code = _read_exit(transport, job.run_dir)
    # A successful job's output costs a remote read that only callers parsing it want.
    tail = output_tail(transport, job.run_dir, job.job_id) if keep_output or code != 0 else ""
    return JobOutcome(job.job_id, job.run_dir, code, state, False, tail), state


def wait_job(
    transport: Transport,
    scheduler: Scheduler,
    job: TrackedJob,
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    cancel_on_timeout: bool = True,
    keep_output: bool = False,
) -> JobOutcome:
    """Look at ``job`` until it ends or ``timeout_s`` passed; then it is cancelled, unless
    ``cancel_on_timeout`` is off (someone else will look again: a pending verification).
    The output tail is read when the job failed, or always with ``keep_output``."""
    deadline = time.monotonic() + timeout_s
    window_s = poll_s
    while True:
        wait_s = min(window_s, max(0.0, deadline - time.monotonic()))
        outcome, state = _look(transport, scheduler, job, keep_output=keep_output, wait_s=wait_s)
        if outcome is not None:
            return outcome
        if time.monotonic() >= deadline:
            if cancel_on_timeout:
                scheduler.cancel([job])
            tail = output_tail(transport, job.run_dir, job.job_id)
            return JobOutcome(job.job_id, job.run_dir, None, state, True, tail)
        window_s = min(window_s * 2, MAX_REMOTE_WAIT_S)


def run_job(
    transport: Transport,
    scheduler: Scheduler,
    script: str,
    job_dir: str,
    *,
    name: str,
    timeout_s: float,
    time_limit_s: int | None = None,
    poll_s: float = 1.0,
    on_wait: Callable[[str], None] | None = None,
    keep_output: bool = False,
) -> JobOutcome:
    """Write ``script`` into ``job_dir``, submit it, wait at most ``timeout_s`` for its exit code."""
    job = start_job(
        transport, scheduler, script, job_dir, name=name,
        time_limit_s=time_limit_s or int(timeout_s),
    )  # fmt: skip
    if on_wait:
        on_wait(job.job_id)
    return wait_job(
        transport, scheduler, job, timeout_s=timeout_s, poll_s=poll_s, keep_output=keep_output
    )


def outcome_error(what: str, outcome: JobOutcome, hint: str) -> RemoteCommandError:
    if outcome.timed_out:
        state = outcome.state.value if outcome.state else "not seen"
        message = (
            f"{what}: job {outcome.job_id} did not finish in time (last state {state}); cancelled"
        )
    elif outcome.exit_code is None:
        state = outcome.state.value if outcome.state else "unknown"
        message = f"{what}: job {outcome.job_id} ended ({state}) without recording an exit status"
    else:
        message = f"{what}: job {outcome.job_id} failed"
    return RemoteCommandError(
        message, hint, exit_status=outcome.exit_code, output_tail=outcome.output_tail
    )
