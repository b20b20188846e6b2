"""Run jobs without a scheduler: one background runner per run, on the target host.

Used by the embedded ``local`` profile and by ``ssh + direct`` (a node without SLURM). The
runner (templates/direct_runner.sh, shipped in the run folder) starts each task's batch script
with plain bash under ``timeout``; each task writes its own status file exactly as under SLURM,
and the runner records each task's exit code. Polling reads those files in one command.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from globtim_hpc.errors import SchedulerError
from globtim_hpc.layout import DIRECT_DIR, RemoteLayout, RunLayout
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.scheduler.base import PollResult, TrackedJob
from globtim_hpc.transport.base import CommandResult, Transport

RUNNER_NAME = "runner.sh"

# Constant shell text; every variable part arrives as a positional argument.
_LAUNCH = 'runner=$1; shift; setsid bash "$runner" "$@" </dev/null >/dev/null 2>&1 & echo "$!"'

_POLL = r"""
for d in "$@"; do
    printf '@@RUN %s\n' "$d"
    if [ -f "$d/direct/runner.pid" ]; then
        pid=$(cat "$d/direct/runner.pid")
        if kill -0 "$pid" 2>/dev/null; then alive=1; else alive=0; fi
        printf '@@PID %s %s\n' "$pid" "$alive"
    fi
    [ -f "$d/direct/done" ] && printf '@@DONE\n'
    [ -f "$d/direct/cancelled" ] && printf '@@CANCELLED\n'
    for f in "$d"/direct/*.exit; do
        [ -f "$f" ] || continue
        i=${f##*/}; i=${i%.exit}
        printf '@@EXIT %s %s\n' "$i" "$(cat "$f")"
    done
    for f in "$d"/status/*.json; do
        [ -f "$f" ] || continue
        i=${f##*/}; i=${i%.json}
        printf '@@STATUS %s\n' "$i"
        cat "$f"
        printf '\n@@END\n'
    done
done
"""

# The runner leads its own session (setsid); timeout(1) puts each task in a process group of
# its own, so signalling the runner's group alone would leave the tasks running.
_CANCEL = (
    'd=$1; pid=$(cat "$d/direct/runner.pid" 2>/dev/null) || exit 0; : > "$d/direct/cancelled"; '
    'kill -TERM -- "-$pid" 2>/dev/null; pkill -TERM -s "$pid" 2>/dev/null; exit 0'
)

_FIND = '[ -f "$1/direct/runner.pid" ] && printf "d%s\n" "$(cat "$1/direct/runner.pid")"; exit 0'

TIMEOUT_EXIT_CODES = frozenset(
    {124, 137}
)  # timeout(1): limit reached; killed after the grace period


@dataclass(frozen=True)
class DirectRunState:
    pid: str | None
    alive: bool
    done: bool
    cancelled: bool
    exits: dict[int, int]
    status_texts: dict[str, str]


def launch_argv(
    run_dir: str, task_count: int, max_parallel: int, time_limit_s: int, cpus: int
) -> list[str]:
    runner = posixpath.join(run_dir, DIRECT_DIR, RUNNER_NAME)
    return [
        "bash",
        "-c",
        _LAUNCH,
        "globtim-direct",
        runner,
        run_dir,
        str(task_count),
        str(max_parallel),
        str(time_limit_s),
        str(cpus),
    ]


def parse_launch(result: CommandResult) -> str:
    pid = result.stdout_text.strip()
    if result.exit_status != 0 or not pid.isdigit():
        raise SchedulerError(
            f"could not start the direct runner (exit {result.exit_status}): {result.output_tail()}",
            "check that bash, setsid and timeout exist on the target host",
        )
    return f"d{pid}"


def parse_poll(stdout: str) -> dict[str, DirectRunState]:
    runs: dict[str, DirectRunState] = {}
    current: str | None = None
    fields: dict[str, dict[str, object]] = {}
    status_key: str | None = None
    status_lines: list[str] = []
    for line in stdout.split("\n"):
        if status_key is not None:
            if line == "@@END":
                assert current is not None
                texts = fields[current]["status"]
                assert isinstance(texts, dict)
                texts[status_key] = "\n".join(status_lines)
                status_key, status_lines = None, []
            else:
                status_lines.append(line)
            continue
        if line.startswith("@@RUN "):
            current = line[6:]
            fields[current] = {
                "pid": None,
                "alive": False,
                "done": False,
                "cancelled": False,
                "exits": {},
                "status": {},
            }
        elif current is None:
            continue
        elif line.startswith("@@PID "):
            parts = line.split()
            fields[current]["pid"] = parts[1]
            fields[current]["alive"] = len(parts) > 2 and parts[2] == "1"
        elif line == "@@DONE":
            fields[current]["done"] = True
        elif line == "@@CANCELLED":
            fields[current]["cancelled"] = True
        elif line.startswith("@@EXIT "):
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
                exits = fields[current]["exits"]
                assert isinstance(exits, dict)
                exits[int(parts[1])] = int(parts[2])
        elif line.startswith("@@STATUS "):
            status_key = line[9:]
    for run_dir, f in fields.items():
        runs[run_dir] = DirectRunState(
            pid=f["pid"] if isinstance(f["pid"], str) else None,
            alive=bool(f["alive"]),
            done=bool(f["done"]),
            cancelled=bool(f["cancelled"]),
            exits=dict(f["exits"]),  # type: ignore[call-overload]
            status_texts=dict(f["status"]),  # type: ignore[call-overload]
        )
    return runs


def task_states(job: TrackedJob, run: DirectRunState) -> dict[int, TaskStatus]:
    """The direct runner's view of each task (the status file's details are merged by the monitor)."""
    out: dict[int, TaskStatus] = {}
    for index in range(job.task_count):
        exit_code = run.exits.get(index)
        has_status = job.task_ids[index] in run.status_texts
        status = TaskStatus(task_index=index, state=JobState.UNKNOWN, sources=["direct"])
        if exit_code is not None:
            status.exit_code = exit_code
            if exit_code == 0:
                status.state = JobState.COMPLETED
            elif exit_code in TIMEOUT_EXIT_CODES and not run.cancelled:
                status.state = JobState.TIMEOUT
            elif run.cancelled and exit_code in (130, 143, *TIMEOUT_EXIT_CODES):
                status.state = JobState.CANCELLED
            else:
                status.state = JobState.FAILED
        elif run.cancelled:
            status.state = JobState.CANCELLED
        elif run.alive:
            status.state = JobState.RUNNING if has_status else JobState.PENDING
        else:
            status.state = JobState.UNKNOWN
            status.reason = "the direct runner is gone and left no exit code for this task"
        text = run.status_texts.get(job.task_ids[index])
        if text is not None:
            # The task's own status file, read in the same command; the monitor merges it.
            status.extra["status_file_text"] = text
        out[index] = status
    return out


class DirectScheduler:
    name = "direct"

    def __init__(self, transport: Transport, remote_root: str | None = None) -> None:
        self.transport = transport
        self.remote_root = remote_root

    def submit(self, script_path: str, *, run_id: str, run_dir: str, task_count: int) -> str:
        raise SchedulerError(
            "the direct scheduler is started with launch_argv (it needs the run's limits)",
            "use globtim_hpc.workflows.submit, which knows them",
        )

    def launch(
        self, run_dir: str, task_count: int, max_parallel: int, time_limit_s: int, cpus: int
    ) -> str:
        result = self.transport.run(
            launch_argv(run_dir, task_count, max_parallel, time_limit_s, cpus), timeout_s=60
        )
        return parse_launch(result)

    def test_submit(self, script_path: str, *, run_dir: str) -> str | None:
        return None

    def find_job(self, run_id: str) -> str | None:
        if self.remote_root is None:
            return None
        run_dir = RemoteLayout(self.remote_root).run_dir(run_id)
        result = self.transport.run(["sh", "-c", _FIND, "globtim-find", run_dir], timeout_s=60)
        found = result.stdout_text.strip()
        return found or None

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        poll = PollResult()
        if not jobs:
            return poll
        result = self.transport.run(
            ["sh", "-c", _POLL, "globtim-poll", *[job.run_dir for job in jobs]], timeout_s=120
        )
        poll.scheduler_calls = 1
        runs = parse_poll(result.stdout_text)
        for job in jobs:
            run = runs.get(job.run_dir)
            if run is None:
                continue
            poll.tasks[job.job_id] = task_states(job, run)
        return poll

    def cancel(self, job_id: str) -> None:
        raise SchedulerError(
            f"cancel a direct run by its run folder, not by job id {job_id}",
            "use cancel_run(run_dir)",
        )

    def cancel_run(self, run_dir: str) -> None:
        RunLayout(run_dir)  # names only; the runner's pid file lives in direct/
        self.transport.run(["sh", "-c", _CANCEL, "globtim-cancel", run_dir], timeout_s=60)
