"""Run jobs without a scheduler: one background runner per run, on the target host.

Used by the embedded ``local`` profile and by ``ssh + direct`` (a node without SLURM). The
runner (templates/direct_runner.sh, shipped in every run folder through ``run_files``) starts
each task's batch script with plain bash under ``timeout``; each task writes its own status
file exactly as under SLURM, and the runner records each task's exit code. A poll reads those
files, status files included, in one command.

Job ids are ``d<8 hex>`` from the run id's random part (plus ``-<tag>`` for a later attempt),
so they are unique across runs and reboots, unlike process ids.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from globtim_hpc import paths
from globtim_hpc.errors import SchedulerError, UsageError
from globtim_hpc.jobs.statusfile import parse_status_with_reason
from globtim_hpc.layout import DIRECT_DIR, RunLayout
from globtim_hpc.models import JobState, StatusFile, TaskStatus
from globtim_hpc.scheduler.base import (
    AccountingCheck,
    ClusterLimits,
    PollResult,
    SubmitRequest,
    TrackedJob,
    run_poll,
)
from globtim_hpc.transport.base import CommandResult, Transport

RUNNER_NAME = "runner.sh"
RUNNER_PATH = posixpath.join(DIRECT_DIR, RUNNER_NAME)
_DIRECT_JOB_ID = re.compile(r"^d[0-9a-f]{8}(-[0-9A-Za-z]+)?$")

# Constant shell text; every variable part arrives as a positional argument. The job id is on
# disk before the answer is sent, so a lost answer can always be recovered by find_job.
_LAUNCH = (
    'runner=$1 state=$2/direct job_id=$7; shift; '
    'printf "%s\\n" "$job_id" > "$state/job_id.tmp" && mv -f "$state/job_id.tmp" "$state/job_id" '
    '|| exit 97; '
    'setsid bash "$runner" "$@" </dev/null >/dev/null 2>&1 & printf "%s\\n" "$job_id"'
)

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
    for f in "$d"/direct/cancel/*; do
        [ -f "$f" ] && printf '@@CANCEL %s\n' "${f##*/}"
    done
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
# its own, so signalling the runner's group alone would leave the tasks running. Arguments come
# in pairs: a run folder, then "-" (every task) or a comma list of indices; a chosen task gets a
# marker the runner checks before starting it, and a running one its timeout(1) signalled.
_CANCEL = r"""
while [ "$#" -ge 2 ]; do
    d=$1 chosen=$2; shift 2
    if [ "$chosen" = - ]; then
        pid=$(cat "$d/direct/runner.pid" 2>/dev/null) || continue
        : > "$d/direct/cancelled"
        kill -TERM -- "-$pid" 2>/dev/null
        pkill -TERM -s "$pid" 2>/dev/null
        continue
    fi
    mkdir -p -- "$d/direct/cancel" || exit 1
    old_ifs=$IFS; IFS=,
    for i in $chosen; do
        : > "$d/direct/cancel/$i"
        pid=$(cat "$d/direct/$i.pid" 2>/dev/null) && kill -TERM "$pid" 2>/dev/null
    done
    IFS=$old_ifs
done
exit 0
"""

_FIND = '[ -f "$1/direct/job_id" ] && cat "$1/direct/job_id"; exit 0'

# timeout(1): limit reached; killed after the grace period
TIMEOUT_EXIT_CODES = frozenset({124, 137})


@dataclass(frozen=True)
class DirectRunState:
    pid: str | None
    alive: bool
    done: bool
    cancelled: bool
    exits: dict[int, int]
    cancelled_tasks: frozenset[int]
    status_texts: dict[str, str]


def direct_job_id(run_id: str, job_tag: str = "") -> str:
    suffix = run_id.rsplit("_", 1)[-1]
    return f"d{suffix}" + (f"-{job_tag}" if job_tag else "")


def parse_poll(stdout: str) -> dict[str, DirectRunState]:
    fields: dict[str, dict[str, object]] = {}
    current: str | None = None
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
            fields[current] = {"pid": None, "alive": False, "done": False, "cancelled": False,
                               "exits": {}, "status": {}, "cancel": set()}  # fmt: skip
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
        elif line.startswith("@@CANCEL ") and line[9:].isdigit():
            chosen = fields[current]["cancel"]
            assert isinstance(chosen, set)
            chosen.add(int(line[9:]))
        elif line.startswith("@@EXIT "):
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
                exits = fields[current]["exits"]
                assert isinstance(exits, dict)
                exits[int(parts[1])] = int(parts[2])
        elif line.startswith("@@STATUS "):
            status_key = line[9:]
    return {
        run_dir: DirectRunState(
            pid=f["pid"] if isinstance(f["pid"], str) else None,
            alive=bool(f["alive"]),
            done=bool(f["done"]),
            cancelled=bool(f["cancelled"]),
            exits=dict(f["exits"]),  # type: ignore[call-overload]
            cancelled_tasks=frozenset(f["cancel"]),  # type: ignore[call-overload]
            status_texts=dict(f["status"]),  # type: ignore[call-overload]
        )
        for run_dir, f in fields.items()
    }


def task_states(job: TrackedJob, run: DirectRunState) -> dict[int, TaskStatus]:
    """The direct runner's view of each task (status files are merged by the task-state owner)."""
    out: dict[int, TaskStatus] = {}
    for index in range(job.task_count):
        exit_code = run.exits.get(index)
        has_status = job.task_ids[index] in run.status_texts
        cancelled = run.cancelled or index in run.cancelled_tasks
        status = TaskStatus(task_index=index, state=JobState.UNKNOWN, sources=["direct"])
        if exit_code is not None:
            status.exit_code = exit_code
            if exit_code == 0:
                status.state = JobState.COMPLETED
            elif exit_code in TIMEOUT_EXIT_CODES and not cancelled:
                status.state = JobState.TIMEOUT
            elif cancelled and exit_code in (130, 143, *TIMEOUT_EXIT_CODES):
                status.state = JobState.CANCELLED
            else:
                status.state = JobState.FAILED
        elif cancelled:
            status.state = JobState.CANCELLED
        elif run.alive:
            status.state = JobState.RUNNING if has_status else JobState.PENDING
        elif run.pid is None and not run.done:
            status.state = JobState.RUNNING if has_status else JobState.PENDING
            status.reason = "the direct runner has not recorded itself yet"
        else:
            continue  # the runner is gone and left no exit code: this task is lost
        out[index] = status
    return out


class DirectScheduler:
    name = "direct"
    runs_on = "target host"
    needs_bash_4_3 = True  # the runner's ``wait -n``
    reruns_tasks = False  # one runner per run folder, over every task
    holds_for_jobs = False  # the runner starts at once

    def __init__(self, transport: Transport, *, timeout_s: float = 120.0) -> None:
        self.transport = transport
        self.timeout_s = timeout_s

    def run_files(self) -> Mapping[str, bytes]:
        return {RUNNER_PATH: (paths.templates_dir() / "direct_runner.sh").read_bytes()}

    def submit_argv(self, request: SubmitRequest) -> list[str]:
        if request.after_job_ids:
            raise UsageError(
                f"the direct runner cannot hold run {request.run_id} until other runs end "
                "(--after)",
                "wait for those runs yourself (monitor_jobs.py --wait), then submit; or use a "
                "cluster profile with scheduler: slurm",
            )
        runner = posixpath.join(request.run_dir, RUNNER_PATH)
        return [
            "bash", "-c", _LAUNCH, "globtim-direct", runner, request.run_dir,
            str(request.task_count), str(max(1, request.max_parallel)),
            str(request.time_limit_s), str(request.cpus),
            direct_job_id(request.run_id, request.job_tag), request.script_path,
        ]  # fmt: skip

    def parse_submit(self, result: CommandResult) -> str:
        job_id = result.stdout_text.strip()
        if result.exit_status != 0 or not _DIRECT_JOB_ID.match(job_id):
            raise SchedulerError(
                f"could not start the direct runner (exit {result.exit_status}): "
                f"{result.output_tail()}",
                "check that bash, setsid and timeout exist on the target host",
            )
        return job_id

    def test_submit_argv(self) -> list[str] | None:
        return None  # nothing judges a script before it runs

    def parse_test_submit(self, result: CommandResult) -> str | None:
        return None

    def find_job(self, run_id: str, run_dir: str) -> str | None:
        RunLayout(run_dir)  # the runner records its job id in direct/job_id
        result = self.transport.run(["sh", "-c", _FIND, "globtim-find", run_dir], timeout_s=60)
        found = result.stdout_text.strip()
        return found if _DIRECT_JOB_ID.match(found) else None

    def status_argvs(self, jobs: Sequence[TrackedJob]) -> list[list[str]]:
        return [["sh", "-c", _POLL, "globtim-poll", *[job.run_dir for job in jobs]]]

    def parse_status(
        self, jobs: Sequence[TrackedJob], results: Sequence[CommandResult]
    ) -> PollResult:
        (result,) = results
        result.check("reading the direct runner's state")
        runs = parse_poll(result.stdout_text)
        poll = PollResult(status_files={})
        assert poll.status_files is not None
        for job in jobs:
            run = runs.get(job.run_dir)
            if run is None:
                continue
            poll.tasks[job.run_id] = task_states(job, run)
            files: dict[str, StatusFile] = {}
            for task_id, text in run.status_texts.items():
                parsed, why = parse_status_with_reason(text)
                if parsed is None:
                    poll.notes.append(f"{job.run_dir}/status/{task_id}.json: {why}")
                else:
                    files[task_id] = parsed
            poll.status_files[job.run_dir] = files
        return poll

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        return run_poll(self, jobs, self.timeout_s)

    def check_accounting(self) -> AccountingCheck | None:
        return None

    def read_limits(self) -> ClusterLimits | None:
        return None  # one runner over every task: no array limit to split at

    def cancel_argv(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> list[str]:
        pairs: list[str] = []
        for job in jobs:
            chosen = (indices or {}).get(job.job_id)
            if chosen is None or set(chosen) >= set(range(job.task_count)):
                pairs += [job.run_dir, "-"]
            else:
                pairs += [job.run_dir, ",".join(str(i) for i in sorted(chosen))]
        return ["sh", "-c", _CANCEL, "globtim-cancel", *pairs]

    def cancel(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        if jobs:
            self.transport.run(self.cancel_argv(jobs, indices), timeout_s=60).check(
                "cancelling direct runs", "the runner's pid file is in direct/ of the run folder"
            )
