"""SLURM through a Transport: sbatch, one squeue + one sacct per poll, one scancel.

How a poll reads each task (the task-state owner later merges the task's own status file):

1. squeue (``-t all``) is the live view and also keeps finished jobs for MinJobAge.
2. sacct has the final word on finished tasks (exit codes of steps, MaxRSS, inferred OOM),
   but it is fed asynchronously: while squeue still shows a task as not final, squeue wins.
3. If sacct cannot answer (accounting disabled, slurmdbd down), the poll carries on with
   squeue alone and adds one note. A task neither command knows is left out of the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from globtim_hpc.errors import SchedulerError
from globtim_hpc.indices import compress_indices
from globtim_hpc.jobs.arrays import OFFSET_ENV
from globtim_hpc.models import TaskStatus
from globtim_hpc.scheduler import slurm_commands as sc
from globtim_hpc.scheduler.base import (
    AccountingCheck,
    ClusterLimits,
    PollResult,
    SubmitRequest,
    TrackedJob,
    run_poll,
)
from globtim_hpc.scheduler.slurm_fields import TaskKey
from globtim_hpc.transport.base import CommandResult, Transport

SACCT_WINDOW_SLACK = timedelta(days=1)  # cluster clocks and time zones differ from ours


def sacct_since(submitted_at: Sequence[str | None]) -> str | None:
    """The ``-S`` bound: a day before the earliest submission, as a naive SLURM time."""
    moments = []
    for text in submitted_at:
        if not text:
            return None  # one job without a submission time: do not narrow the query
        try:
            moments.append(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    if not moments:
        return None
    earliest = min(moments) - SACCT_WINDOW_SLACK
    return earliest.strftime("%Y-%m-%dT%H:%M:%S")


def _merge_views(
    live: TaskStatus | None, accounted: TaskStatus | None, *, accounting_ok: bool = True
) -> TaskStatus | None:
    """One task's squeue and sacct lines -> one status (see the module's rules)."""
    if live is None:
        return accounted
    if accounted is None or not accounted.state.is_final:
        if live.state.is_final and accounting_ok:
            # Final in slurmctld, not yet in the database: sacct may still add the details
            # that change the verdict (MaxRSS for an inferred OOM). The monitor polls again.
            live = replace(live, awaiting_accounting=True)
        if accounted is None:
            return live
    # sacct lags behind slurmctld: unless both are final, the live view is the current truth.
    both_final = live.state.is_final and accounted.state.is_final
    chosen, other = (accounted, live) if both_final else (live, accounted)
    merged = replace(chosen, sources=list(chosen.sources))
    for name in ("node", "elapsed_s", "time_limit_s", "started_at", "ended_at", "max_rss_kb"):
        if getattr(merged, name) is None and getattr(other, name) is not None:
            setattr(merged, name, getattr(other, name))
    if merged.state.is_final and merged.exit_code is None and merged.signal is None:
        merged.exit_code, merged.signal = other.exit_code, other.signal
    merged.sources = chosen.sources + [s for s in other.sources if s not in chosen.sources]
    return merged


ACCOUNTING_PROBE = ["sacct", "-n", "-X", "-P", "-o", "JobID", "-S", "now-1hours"]


def _ours(
    rows: dict[TaskKey, TaskStatus], names: dict[TaskKey, str], key: TaskKey, run_id: str
) -> TaskStatus | None:
    """The row for ``key`` if it is this run's job. SLURM starts job ids at 1 again after its
    controller is rebuilt, and sacct answers -j with the newest job of an id: a row carrying
    another run's name is another job, and this run's own job is forgotten."""
    name = names.get(key)
    return rows.get(key) if not name or name == run_id else None


def cancel_target(job: TrackedJob, selected: Sequence[int] | None) -> str:
    """``JOB`` for every task, else ``JOB_[0-3,7]``: slurmctld gets one kill request per job
    either way (one per argument; ``JOB_0 JOB_1 ...`` would cost one each)."""
    if selected is None or set(selected) >= set(job.indices):
        return job.job_id
    return f"{job.job_id}_[{compress_indices([i - job.task_offset for i in selected])}]"


class SlurmScheduler:
    name = "slurm"
    runs_on = "compute node"
    needs_bash_4_3 = False
    reruns_tasks = True  # the attempt's script carries its own --array list
    holds_for_jobs = True  # --dependency=afterok

    def __init__(self, transport: Transport, *, timeout_s: float = 120.0) -> None:
        self.transport = transport
        self.timeout_s = timeout_s

    def _run(self, argv: Sequence[str]) -> CommandResult:
        return self.transport.run(list(argv), timeout_s=self.timeout_s)

    # ---- submission ---------------------------------------------------------------------

    def run_files(self) -> Mapping[str, bytes]:
        return {}

    def submit_argv(self, request: SubmitRequest) -> list[str]:
        # The job name (the run id, which find_job looks for) is in the script's #SBATCH block.
        if request.array is None:
            return sc.sbatch_argv(
                request.script_path, chdir=request.run_dir, after_ok=request.after_job_ids
            )
        return sc.sbatch_argv(
            request.script_path,
            chdir=request.run_dir,
            after_ok=request.after_job_ids,
            job_name=request.run_id,
            array=request.array,
            export=[f"{OFFSET_ENV}={request.task_offset}"],
        )

    def parse_submit(self, result: CommandResult) -> str:
        if result.exit_status != 0:
            raise sc.parse_sbatch_error(result.stderr_text, exit_status=result.exit_status)
        return sc.parse_sbatch(result.stdout_text)

    def test_submit_argv(self) -> list[str] | None:
        return ["sbatch", "--test-only"]

    def parse_test_submit(self, result: CommandResult) -> str | None:
        output = result.stderr_text or result.stdout_text
        if result.exit_status != 0:
            refusal = sc.parse_sbatch_error(output, exit_status=result.exit_status)
            refusal.hint = (refusal.hint or "") + " (sbatch --test-only; nothing was submitted)"
            raise refusal
        return sc.parse_test_only(output)

    def find_job(self, run_id: str, run_dir: str) -> str | None:
        """The job submitted for ``run_id``: squeue by name, then sacct by name.

        More than one job with that name is an error: picking one would hide a double
        submission. When accounting is disabled squeue is all there is; when slurmdbd does not
        answer, the question cannot be settled and a transient SchedulerError is raised.
        """
        live = self._run(sc.squeue_by_name_argv(run_id))
        if not live.ok:
            raise self._query_error("squeue", live)
        found = sc.parse_squeue_by_name(live.stdout_text)
        if not found:
            accounted = self._run(sc.sacct_by_name_argv(run_id))
            if accounted.ok:
                found = sc.parse_sacct_by_name(accounted.stdout_text)
            else:
                why = sc.accounting_unavailable(accounted.stderr_text)
                if why is None or "disabled" not in why:
                    raise SchedulerError(
                        f"cannot tell whether run {run_id} was already submitted: "
                        f"{why or accounted.output_tail()}",
                        "try again when the accounting daemon answers; submitting now could "
                        "run the job twice",
                        transient=True,
                    )
        if len(found) > 1:
            raise SchedulerError(
                f"{len(found)} SLURM jobs carry the name {run_id}: {', '.join(found)}",
                "the run was submitted more than once; cancel the extra ones with scancel and "
                "record the one to keep",
            )
        return found[0] if found else None

    # ---- cancelling ---------------------------------------------------------------------

    def cancel_argv(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> list[str]:
        return sc.scancel_argv([cancel_target(job, (indices or {}).get(job.job_id)) for job in jobs])

    def cancel(
        self, jobs: Sequence[TrackedJob], indices: Mapping[str, Sequence[int]] | None = None
    ) -> None:
        if not jobs:
            return
        result = self._run(self.cancel_argv(jobs, indices))
        if not result.ok:
            ids = ", ".join(job.job_id for job in jobs)
            raise SchedulerError(
                f"scancel {ids} failed: {result.output_tail()}",
                "check the job id with monitor_jobs.py; only your own jobs can be cancelled",
                transient=sc.is_transient(result.stderr_text),
            )

    # ---- polling ------------------------------------------------------------------------

    def _query_error(self, what: str, result: CommandResult) -> SchedulerError:
        return SchedulerError(
            f"{what} failed on {self.transport.label}: {result.output_tail()}",
            "the SLURM controller may be busy or down; try again in a minute",
            transient=sc.is_transient(result.stderr_text) or result.exit_status != 1,
        )

    def status_argvs(self, jobs: Sequence[TrackedJob]) -> list[list[str]]:
        job_ids = [job.job_id for job in jobs]
        since = sacct_since([job.submitted_at for job in jobs])
        return [sc.squeue_argv(job_ids), sc.sacct_argv(job_ids, since)]

    def parse_status(
        self, jobs: Sequence[TrackedJob], results: Sequence[CommandResult]
    ) -> PollResult:
        live, accounted = results
        poll = PollResult()
        if live.ok:
            queue = sc.parse_squeue(live.stdout_text)
        elif sc.squeue_unknown_ids(live.stderr_text):
            queue = sc.StatusParse()  # every id aged out of slurmctld's memory
        else:
            raise self._query_error("squeue", live)
        if queue.unparsed:
            poll.notes.append(f"squeue printed {len(queue.unparsed)} line(s) this tool cannot read")
        accounting: sc.StatusParse | None = None
        if accounted.ok:
            accounting = sc.parse_sacct(accounted.stdout_text)
            if accounting.unparsed:
                unread = len(accounting.unparsed)
                poll.notes.append(f"sacct printed {unread} line(s) this tool cannot read")
        else:
            why = sc.accounting_unavailable(accounted.stderr_text) or (
                f"sacct failed: {accounted.output_tail(3)}"
            )
            poll.notes.append(
                f"{why}; states come from squeue and the tasks' own status files "
                "(final states of jobs SLURM has forgotten are read from status files only)"
            )
        for job in jobs:
            # Several jobs of one run (its attempts) each report their own tasks.
            per_task = poll.tasks.setdefault(job.run_id, {})
            for index in job.indices:
                key = TaskKey(job.job_id, index - job.task_offset)
                merged = _merge_views(
                    _ours(queue.tasks, queue.names, key, job.name),
                    _ours(accounting.tasks, accounting.names, key, job.name) if accounting else None,
                    accounting_ok=accounting is not None,
                )
                if merged is not None:
                    if job.task_offset:
                        # SLURM's rows carry the array index; the run knows the task index.
                        merged = replace(merged, task_index=index)
                    per_task[index] = merged
        return poll

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        return run_poll(self, jobs, self.timeout_s)

    def read_limits(self) -> ClusterLimits | None:
        result = self._run(sc.SHOW_CONFIG_ARGV)
        if not result.ok:
            raise self._query_error("scontrol show config", result)
        max_array_size, max_job_count = sc.parse_config_limits(result.stdout_text)
        return ClusterLimits(max_array_size=max_array_size, max_job_count=max_job_count)

    def check_accounting(self) -> AccountingCheck | None:
        result = self._run(ACCOUNTING_PROBE)
        if result.ok:
            return AccountingCheck("sacct (accounting)", True, "sacct answers")
        first = next((line.strip() for line in result.stderr_text.splitlines() if line.strip()), "")
        return AccountingCheck(
            "sacct (accounting)", False, first or f"exit status {result.exit_status}"
        )
