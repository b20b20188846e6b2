"""SLURM commands as pairs of pure functions: build an argv, parse what comes back.

Nothing here runs anything. The argv lists go to a Transport, which quotes them once.

State rules (what a task's state is taken to be):

- Any state word SLURM prints is mapped with ``JobState.parse``; a word it does not know
  becomes UNKNOWN, never success. ``CANCELLED by 1001`` is CANCELLED with reason
  "cancelled by uid 1001".
- sacct lists a job (or array task) line and its steps (``.batch``, ``.extern``, ``.0`` ...).
  Steps are folded into their task: MaxRSS is the largest over the steps, and the first
  signal a step was killed with is kept when the job line itself shows none.
- OUT_OF_MEMORY is reported when sacct says so (cgroup-enforcing clusters). On clusters that
  enforce memory by polling (``JobAcctGatherParams=OverMemoryKill``), SLURM instead reports a
  FAILED or CANCELLED job whose step died by signal 9 (ExitCode ``0:9``, or ``0:125`` from
  some stepd versions). Only when such a kill coincides with a measured MaxRSS above the
  requested memory is the task reported as OUT_OF_MEMORY (the reason says it was inferred).
  A signal-9 death without a MaxRSS above the request stays FAILED: nothing is invented.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from globtim_hpc.errors import SchedulerError
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.scheduler.slurm_fields import (
    JOB_ID,
    TaskKey,
    clean,
    parse_duration_s,
    parse_job_ref,
    parse_size_kb,
    per_cpu,
    split_exit_code,
    split_wait_status,
    state_and_reason,
    task_indices,
)

OOM_KILL_SIGNALS = frozenset({9, 125})

# ---- sbatch -------------------------------------------------------------------------------


def sbatch_argv(
    script_path: str,
    *,
    chdir: str,
    test_only: bool = False,
    job_name: str | None = None,
    comment: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    after_ok: Sequence[str] = (),
    array: str | None = None,
    export: Sequence[str] = (),
) -> list[str]:
    argv = ["sbatch", "--parsable", f"--chdir={chdir}"]
    if array:
        argv.append(f"--array={array}")
    if export:
        # ALL first: the job keeps the submitting environment, as without --export.
        argv.append("--export=" + ",".join(["ALL", *export]))
    if after_ok:
        argv.append("--dependency=afterok:" + ":".join(after_ok))
    if test_only:
        argv.append("--test-only")
    if job_name:
        argv.append(f"--job-name={job_name}")
    if comment:
        argv.append(f"--comment={comment}")
    if partition:
        argv.append(f"--partition={partition}")
    if account:
        argv.append(f"--account={account}")
    argv.append(script_path)
    return argv




def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` output: ``123`` or ``123;cluster``."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise SchedulerError(
            "sbatch printed no job id",
            "the submission may or may not have happened: run monitor_jobs.py (it finds the job "
            "by its run id) before submitting again",
            transient=True,
        )
    job_id = lines[-1].split(";", 1)[0].strip()
    if not JOB_ID.match(job_id):
        raise SchedulerError(
            f"sbatch printed {lines[-1]!r}, not a job id",
            "check that 'sbatch --parsable' works on the cluster's login node",
        )
    return job_id


_TRANSIENT_PATTERNS = (
    "socket timed out",
    "unable to contact slurm controller",
    "slurm_persist_conn_open",
    "connection refused",
    "resource temporarily unavailable",
    "slurmctld is not responding",
    "try again",
)


def is_transient(stderr: str) -> bool:
    lower = stderr.lower()
    return any(pattern in lower for pattern in _TRANSIENT_PATTERNS)


def _first_error_line(stderr: str) -> str:
    for line in stderr.splitlines():
        text = line.strip()
        if text:
            return re.sub(r"^(sbatch|squeue|sacct|scancel|scontrol): error: ", "", text)
    return "no message"


def parse_sbatch_error(stderr: str, *, exit_status: int | None = None) -> SchedulerError:
    """Turn sbatch's complaint into a SchedulerError whose hint says how to fix it."""
    lower = stderr.lower()
    detail = stderr.strip() or f"sbatch exited with status {exit_status}"
    if "invalid partition" in lower:
        return SchedulerError(
            f"sbatch refused the partition: {_first_error_line(stderr)}",
            "list the partitions you may use with `sinfo -h -o %P` on the login node, then set "
            "resources.partition in the job config or slurm.partition in the cluster profile",
        )
    if "memory specification can not be satisfied" in lower or (
        "requested node configuration is not available" in lower and "mem" in lower
    ):
        return SchedulerError(
            f"sbatch refused the memory request: {_first_error_line(stderr)}",
            "ask for less memory (resources.mem_gb); `sinfo -o '%P %m'` shows each partition's "
            "memory per node in MB",
        )
    if "time limit" in lower or "requested time limit is invalid" in lower:
        return SchedulerError(
            f"sbatch refused the time limit: {_first_error_line(stderr)}",
            "ask for less time (resources.time_min); `sinfo -o '%P %l'` shows each partition's "
            "time limit",
        )
    if "more processors requested than permitted" in lower:
        return SchedulerError(
            f"sbatch refused the CPU request: {_first_error_line(stderr)}",
            "ask for fewer CPUs per task (resources.cpus); `sinfo -o '%P %c'` shows each "
            "partition's CPUs per node",
        )
    if "requested node configuration is not available" in lower:
        return SchedulerError(
            f"sbatch refused the request: {_first_error_line(stderr)}",
            "no node matches the requested CPUs/memory; `sinfo -o '%P %c %m'` shows what nodes "
            "have",
        )
    if "invalid account" in lower or "invalid qos" in lower or "association" in lower:
        return SchedulerError(
            f"sbatch refused the account or QOS: {_first_error_line(stderr)}",
            "`sacctmgr show assoc user=$USER format=account,partition,qos` lists what you may use",
        )
    if is_transient(stderr):
        return SchedulerError(
            f"the SLURM controller did not answer: {_first_error_line(stderr)}",
            "this is usually temporary; try again in a minute",
            transient=True,
        )
    return SchedulerError(f"sbatch failed: {detail}", "see the message above from SLURM")


def parse_test_only(stderr: str) -> str:
    """The line of ``sbatch --test-only`` that says when and where the job would start."""
    for line in stderr.splitlines():
        if "to start at" in line or "Job" in line:
            return line.strip().removeprefix("sbatch: ").strip()
    return stderr.strip()


# ---- squeue -------------------------------------------------------------------------------

# squeue --Format fields, each ended by "|" (the ":|" suffix: no padding, no truncation).
# The name comes last because it is the only field a user can fill with anything.
SQUEUE_FIELDS = (
    "JobArrayID",
    "ArrayJobID",
    "ArrayTaskID",
    "JobID",
    "State",
    "Reason",
    "NodeList",
    "TimeUsed",
    "TimeLimit",
    "exit_code",
    "MinMemory",
    "StartTime",
    "EndTime",
    "Name",
)


def squeue_argv(job_ids: Iterable[str]) -> list[str]:
    """ONE squeue for every tracked job: arrays expanded (-r), finished jobs included (-t all)."""
    ids = ",".join(sorted(set(job_ids), key=_id_sort_key))
    fields = ",".join(f"{name}:|" for name in SQUEUE_FIELDS)
    return ["squeue", "-h", "-r", "-t", "all", "-j", ids, "-O", fields]


def squeue_by_name_argv(run_id: str) -> list[str]:
    return ["squeue", "-h", "-t", "all", "-n", run_id, "-O", "ArrayJobID:|,JobID:|,State:|,Name:|"]


def _id_sort_key(job_id: str) -> tuple[int, str]:
    return (int(job_id), job_id) if job_id.isdigit() else (-1, job_id)


def squeue_unknown_ids(stderr: str) -> bool:
    """squeue exits 1 with this when none of the ids is known any more (all aged out)."""
    return "invalid job id specified" in stderr.lower()


def _split_fields(line: str, count: int) -> list[str] | None:
    parts = line.split("|", count - 1)
    if len(parts) != count:
        return None
    if parts[-1].endswith("|"):
        parts[-1] = parts[-1][:-1]
    return parts


@dataclass
class StatusParse:
    """What ``parse_squeue`` or ``parse_sacct`` read: the same shape, so the poll merges them."""

    tasks: dict[TaskKey, TaskStatus] = field(default_factory=dict)
    names: dict[TaskKey, str] = field(default_factory=dict)  # each job's name (our run id)
    unparsed: list[str] = field(default_factory=list)


def _rows(
    stdout: str, fields: Sequence[str], unparsed: list[str]
) -> Iterator[tuple[str, dict[str, str]]]:
    """Each non-blank line with its fields by name. A line with a different number of fields
    goes to ``unparsed`` instead: the poll counts those in a note rather than guess at them."""
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = _split_fields(line, len(fields))
        if parts is None:
            unparsed.append(line)
            continue
        yield line, dict(zip(fields, parts, strict=True))


def parse_squeue(stdout: str) -> StatusParse:
    """Lines of ``squeue_argv`` output -> one TaskStatus per (array job, index)."""
    result = StatusParse()
    for line, row in _rows(stdout, SQUEUE_FIELDS, result.unparsed):
        array_job_id = row["ArrayJobID"].strip()
        indices = task_indices(row["ArrayTaskID"])
        if not JOB_ID.match(array_job_id) or indices is None:
            result.unparsed.append(line)
            continue
        state, state_reason = state_and_reason(row["State"])
        exit_code, signal = split_wait_status(row["exit_code"]) if state.is_final else (None, None)
        reason = clean(row["Reason"])
        for index in indices:
            result.names[TaskKey(array_job_id, index)] = row["Name"]
            result.tasks[TaskKey(array_job_id, index)] = TaskStatus(
                task_index=index,
                state=state,
                exit_code=exit_code,
                signal=signal,
                reason=state_reason or reason,
                node=clean(row["NodeList"]),
                elapsed_s=parse_duration_s(row["TimeUsed"]),
                time_limit_s=parse_duration_s(row["TimeLimit"]),
                started_at=clean(row["StartTime"]) if state is not JobState.PENDING else None,
                ended_at=clean(row["EndTime"]) if state.is_final else None,
                sources=["squeue"],
            )
    return result


def parse_squeue_by_name(stdout: str) -> list[str]:
    """Distinct array job ids among the jobs squeue found by name."""
    found: list[str] = []
    for line in stdout.splitlines():
        job_id = line.split("|", 1)[0].strip()
        if JOB_ID.match(job_id) and job_id not in found:
            found.append(job_id)
    return found


# ---- sacct --------------------------------------------------------------------------------

SACCT_FIELDS = (
    "JobID",
    "State",
    "ExitCode",
    "Elapsed",
    "Timelimit",
    "MaxRSS",
    "ReqMem",
    "AllocCPUS",
    "TotalCPU",
    "NodeList",
    "Start",
    "End",
    "Reason",
    "JobName",
)


def sacct_argv(job_ids: Iterable[str], since: str | None = None) -> list[str]:
    """ONE sacct for every tracked job, steps included (for MaxRSS); pipe-separated, no header.

    ``since`` is a SLURM time (``2026-11-28T10:00:00``) that narrows the database query.
    """
    ids = ",".join(sorted(set(job_ids), key=_id_sort_key))
    argv = ["sacct", "-P", "-n", "-j", ids, f"--format={','.join(SACCT_FIELDS)}"]
    if since:
        argv += ["-S", since, "-E", "now"]
    return argv


def sacct_by_name_argv(run_id: str, since: str = "now-30days") -> list[str]:
    return [
        "sacct",
        "-P",
        "-n",
        "-X",
        "--name",
        run_id,
        "-S",
        since,
        "-E",
        "now",
        "--format=JobID,JobName,State",
    ]


def parse_sacct_by_name(stdout: str) -> list[str]:
    found: list[str] = []
    for line in stdout.splitlines():
        keys = parse_job_ref(line.split("|", 1)[0])
        if keys and keys[0].job_id not in found:
            found.append(keys[0].job_id)
    return found


@dataclass
class _Steps:
    max_rss_kb: int | None = None
    kill_signal: int | None = None
    step_exit: int | None = None


def _fold_step(steps: _Steps, row: dict[str, str]) -> None:
    rss = parse_size_kb(row["MaxRSS"], default_unit="")
    if rss is not None and (steps.max_rss_kb is None or rss > steps.max_rss_kb):
        steps.max_rss_kb = rss
    code, signal = split_exit_code(row["ExitCode"])
    if signal and steps.kill_signal is None:
        steps.kill_signal = signal
    if code and steps.step_exit is None:
        steps.step_exit = code


def requested_memory_kb(req_mem: str, alloc_cpus: str) -> int | None:
    """ReqMem per node in KiB; ``2Gc`` (per CPU, older SLURM) is multiplied by AllocCPUS."""
    size = parse_size_kb(req_mem, default_unit="M")
    if size is None:
        return None
    if per_cpu(req_mem):
        cpus = int(alloc_cpus) if alloc_cpus.strip().isdigit() else 0
        return size * cpus if cpus else None
    return size


def parse_sacct(stdout: str) -> StatusParse:
    """Lines of ``sacct_argv`` output -> one TaskStatus per (array job, index), steps folded in."""
    result = StatusParse()
    steps: dict[TaskKey, _Steps] = {}
    requested: dict[TaskKey, int | None] = {}
    for line, row in _rows(stdout, SACCT_FIELDS, result.unparsed):
        job_ref, _, step_name = row["JobID"].strip().partition(".")
        keys = parse_job_ref(job_ref)
        if keys is None:
            result.unparsed.append(line)
            continue
        if step_name:
            for key in keys:
                _fold_step(steps.setdefault(key, _Steps()), row)
            continue
        state, state_reason = state_and_reason(row["State"])
        exit_code, signal = split_exit_code(row["ExitCode"])
        for key in keys:
            requested[key] = requested_memory_kb(row["ReqMem"], row["AllocCPUS"])
            result.names[key] = row["JobName"]
            result.tasks[key] = TaskStatus(
                task_index=key.task_index,
                state=state,
                exit_code=exit_code if state.is_final else None,
                signal=signal if state.is_final else None,
                reason=state_reason or clean(row["Reason"]),
                node=clean(row["NodeList"]),
                elapsed_s=parse_duration_s(row["Elapsed"]),
                time_limit_s=parse_duration_s(row["Timelimit"]),
                total_cpu_s=parse_duration_s(row["TotalCPU"]) if state.is_final else None,
                started_at=clean(row["Start"]),
                ended_at=clean(row["End"]) if state.is_final else None,
                sources=["sacct"],
            )
    for key, folded in steps.items():
        status = result.tasks.get(key)
        if status is None:
            continue
        status.max_rss_kb = folded.max_rss_kb
        if status.signal is None and folded.kill_signal is not None and status.state.is_final:
            status.signal = folded.kill_signal
        _infer_oom(status, requested.get(key))
    return result


def _infer_oom(status: TaskStatus, requested_kb: int | None) -> None:
    if status.state not in (JobState.FAILED, JobState.CANCELLED):
        return
    if status.signal not in OOM_KILL_SIGNALS:
        return
    if requested_kb is None or status.max_rss_kb is None or status.max_rss_kb <= requested_kb:
        return
    status.scheduler_state = status.state.value
    status.state = JobState.OUT_OF_MEMORY
    status.reason = (
        f"killed by signal {status.signal} with MaxRSS {status.max_rss_kb} KiB over the "
        f"requested {requested_kb} KiB (inferred out of memory)"
    )


def accounting_unavailable(stderr: str) -> str | None:
    """Why sacct cannot answer, in words for a note; None when the failure is something else."""
    lower = stderr.lower()
    if "accounting storage is disabled" in lower:
        return "SLURM accounting is disabled on this cluster"
    if "connection refused" in lower or "problem talking to the database" in lower:
        return "the SLURM accounting daemon (slurmdbd) does not answer"
    if "persistent connection" in lower or "slurmdbd" in lower:
        return "the SLURM accounting daemon (slurmdbd) does not answer"
    return None


# ---- scancel ------------------------------------------------------------------------------


def scancel_argv(job_ids: Sequence[str]) -> list[str]:
    return ["scancel", *job_ids]


SHOW_CONFIG_ARGV = ["scontrol", "show", "config"]


def parse_config_limits(text: str) -> tuple[int | None, int | None]:
    """``MaxArraySize`` and ``MaxJobCount`` from ``scontrol show config`` (None: not shown)."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("MaxArraySize", "MaxJobCount"):
            digits = value.strip().split(" ", 1)[0]
            if digits.isdigit():
                found[key.strip()] = int(digits)
    return found.get("MaxArraySize"), found.get("MaxJobCount")
