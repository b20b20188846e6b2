"""Run a small bash script on a compute node and wait for it: deploy checks and doctor probes.

Under SLURM the script is submitted with ``sbatch`` through the Scheduler; without a scheduler
("direct") it runs on the target host itself. Either way the script records its own exit
status in ``<job_dir>/exit_code`` from an EXIT trap, so the answer does not depend on
accounting; the scheduler's view is used only to notice a job that ended without writing it.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from globtim_hpc import quoting
from globtim_hpc.errors import GlobtimHpcError, RemoteCommandError, TemplateError
from globtim_hpc.layout import new_run_id
from globtim_hpc.models import JobState
from globtim_hpc.scheduler.base import Scheduler, TrackedJob
from globtim_hpc.transport.base import Transport

EXIT_FILE = "exit_code"
OUTPUT_FILE = "job.out"
SCRIPT_FILE = "job.sbatch"

# Fixed text: the trap refers to a variable set (quoted) above it, never to quoted values.
_TRAP = (
    'trap \'rc=$?; printf "%s\\n" "$rc" >"$exit_file.tmp" && '
    'mv -f "$exit_file.tmp" "$exit_file"\' EXIT'
)

# Without a scheduler the output goes where #SBATCH --output would have put it.
_DIRECT_SCRIPT = 'bash "$1" >"$2/job.out" 2>&1'

_WAIT_SCRIPT = r"""
d=$1
if [ -f "$d/exit_code" ]; then printf 'exit=%s\n' "$(cat "$d/exit_code")"; else printf 'exit=\n'; fi
"""


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
    options = {
        "job-name": name,
        "output": posixpath.join(job_dir, OUTPUT_FILE),
        "time": str(time_limit_min),
        "ntasks": "1",
        "cpus-per-task": str(cpus),
    }
    if partition:
        options["partition"] = partition
    if account:
        options["account"] = account
    for key, value in options.items():
        if not value or any(ch.isspace() for ch in value):
            # sbatch splits #SBATCH lines on white space: such a value cannot be written there.
            raise TemplateError(
                f"#SBATCH --{key} value {value!r} is empty or contains white space",
                "use a remote_root (and partition/account names) without spaces",
            )
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH --{key}={value}" for key, value in sorted(options.items())),
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


def _tail(transport: Transport, job_dir: str) -> str:
    try:
        data = transport.get_bytes(posixpath.join(job_dir, OUTPUT_FILE))
    except GlobtimHpcError:  # the log may not exist: the job never started
        return ""
    lines = data.decode("utf-8", "replace").rstrip("\n").splitlines()
    return "\n".join(lines[-30:])


def _read_exit(transport: Transport, job_dir: str) -> int | None:
    result = transport.run(["sh", "-c", _WAIT_SCRIPT, "globtim-wait", job_dir], timeout_s=60)
    result.check(f"reading {job_dir}/{EXIT_FILE} on {transport.label}")
    text = result.stdout_text.strip().removeprefix("exit=").strip()
    try:
        return int(text) if text else None
    except ValueError:
        return None


def run_job(
    transport: Transport,
    scheduler: Scheduler | None,
    script: str,
    job_dir: str,
    *,
    name: str,
    timeout_s: float,
    poll_s: float = 1.0,
    on_wait: Callable[[str], None] | None = None,
) -> JobOutcome:
    """Write ``script`` into ``job_dir``, run it, wait at most ``timeout_s`` for its exit code.

    ``scheduler`` None runs the script on the target host directly (no scheduler).
    """
    transport.run(["mkdir", "-p", "--", job_dir], timeout_s=60).check(
        f"creating {job_dir} on {transport.label}", "check that remote_root is writable"
    )
    script_path = posixpath.join(job_dir, SCRIPT_FILE)
    transport.put_bytes(script.encode("utf-8"), script_path, mode=0o755)
    if scheduler is None:
        result = transport.run(
            ["sh", "-c", _DIRECT_SCRIPT, "globtim-direct", script_path, job_dir],
            timeout_s=timeout_s,
        )
        code = _read_exit(transport, job_dir)
        return JobOutcome(
            job_id="direct",
            job_dir=job_dir,
            exit_code=code if code is not None else result.exit_status,
            state=None,
            timed_out=False,
            output_tail=_tail(transport, job_dir),
        )
    job_id = scheduler.submit(script_path, run_id=name, run_dir=job_dir, task_count=1)
    if on_wait:
        on_wait(job_id)
    tracked = TrackedJob(run_id=name, job_id=job_id, run_dir=job_dir, task_ids=("0000",))
    deadline = time.monotonic() + timeout_s
    delay = poll_s
    state: JobState | None = None
    while True:
        code = _read_exit(transport, job_dir)
        if code is not None:
            return JobOutcome(job_id, job_dir, code, state, False, _tail(transport, job_dir))
        tasks = scheduler.poll([tracked]).tasks.get(job_id, {})
        if tasks:
            state = next(iter(tasks.values())).state
        if state is not None and state.is_final:
            # The trap may have run just after our read: look once more before giving up.
            code = _read_exit(transport, job_dir)
            return JobOutcome(job_id, job_dir, code, state, False, _tail(transport, job_dir))
        if time.monotonic() >= deadline:
            scheduler.cancel(job_id)
            return JobOutcome(job_id, job_dir, None, state, True, _tail(transport, job_dir))
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)


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
