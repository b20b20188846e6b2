"""SLURM through a Transport: sbatch, one squeue + one sacct per poll, scancel.

How a poll decides each task's state (the monitor later merges the task's own status file):

1. squeue (``-t all``) is the live view and also keeps finished jobs for MinJobAge.
2. sacct has the final word on finished tasks (exit codes of steps, MaxRSS, inferred OOM),
   but it is fed asynchronously: while squeue still shows a task as not final, squeue wins.
3. If sacct cannot answer (accounting disabled, slurmdbd down), the poll carries on with
   squeue alone and adds one note. Tasks that neither command knows any more then get their
   state from their status files (one extra command, only when needed), or UNKNOWN with a
   reason when there is no status file either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from globtim_hpc.errors import SchedulerError
from globtim_hpc.jobs.statusfile import STATUS_TEXT_KEY, read_status_files
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.scheduler import slurm_commands as sc
from globtim_hpc.scheduler.base import PollResult, TrackedJob
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


AWAITING_ACCOUNTING_KEY = "awaiting_accounting"


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
            live = replace(live, extra={**live.extra, AWAITING_ACCOUNTING_KEY: True})
        if accounted is None:
            return live
    # sacct lags behind slurmctld: unless both are final, the live view is the current truth.
    both_final = live.state.is_final and accounted.state.is_final
    chosen, other = (accounted, live) if both_final else (live, accounted)
    merged = replace(chosen, sources=list(chosen.sources), extra=dict(chosen.extra))
    for name in ("node", "elapsed_s", "time_limit_s", "started_at", "ended_at", "max_rss_kb"):
        if getattr(merged, name) is None and getattr(other, name) is not None:
            setattr(merged, name, getattr(other, name))
    if merged.state.is_final and merged.exit_code is None and merged.signal is None:
        merged.exit_code, merged.signal = other.exit_code, other.signal
    merged.sources = chosen.sources + [s for s in other.sources if s not in chosen.sources]
    return merged


class SlurmScheduler:
    name = "slurm"

    def __init__(
        self,
        transport: Transport,
        *,
        partition: str | None = None,
        account: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.transport = transport
        self.partition = partition
        self.account = account
        self.timeout_s = timeout_s

    def _run(self, argv: Sequence[str]) -> CommandResult:
        return self.transport.run(list(argv), timeout_s=self.timeout_s)

    # ---- submission ---------------------------------------------------------------------

    def submit(self, script_path: str, *, run_id: str, run_dir: str, task_count: int) -> str:
        # The run id goes into the name and the comment so that find_job can adopt the job
        # if sbatch's answer is lost on the way back.
        argv = sc.sbatch_argv(
            script_path,
            chdir=run_dir,
            job_name=run_id,
            comment=run_id,
            partition=self.partition,
            account=self.account,
        )
        result = self._run(argv)
        if not result.ok:
            raise sc.parse_sbatch_error(result.stderr_text, exit_status=result.exit_status)
        return sc.parse_sbatch(result.stdout_text)

    def test_submit(self, script_path: str, *, run_dir: str) -> str | None:
        argv = sc.sbatch_argv(
            script_path,
            chdir=run_dir,
            test_only=True,
            partition=self.partition,
            account=self.account,
        )
        result = self._run(argv)
        if not result.ok:
            raise sc.parse_sbatch_error(result.stderr_text, exit_status=result.exit_status)
        return sc.parse_test_only(result.stderr_text or result.stdout_text)

    def find_job(self, run_id: str) -> str | None:
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

    def cancel(self, job_id: str) -> None:
        result = self._run(sc.scancel_argv([job_id]))
        if not result.ok:
            raise SchedulerError(
                f"scancel {job_id} failed: {result.output_tail()}",
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

    def poll(self, jobs: Sequence[TrackedJob]) -> PollResult:
        poll = PollResult()
        if not jobs:
            return poll
        job_ids = [job.job_id for job in jobs]

        live = self._run(sc.squeue_argv(job_ids))
        poll.scheduler_calls += 1
        if live.ok:
            queue = sc.parse_squeue(live.stdout_text)
        elif sc.squeue_unknown_ids(live.stderr_text):
            queue = sc.SqueueParse()  # every id aged out of slurmctld's memory
        else:
            raise self._query_error("squeue", live)
        if queue.unparsed:
            poll.notes.append(f"squeue printed {len(queue.unparsed)} line(s) this tool cannot read")

        accounted = self._run(sc.sacct_argv(job_ids, sacct_since([j.submitted_at for j in jobs])))
        poll.scheduler_calls += 1
        accounting: sc.SacctParse | None = None
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

        missing: list[TrackedJob] = []
        for job in jobs:
            per_task: dict[int, TaskStatus] = {}
            for index in range(job.task_count):
                key = sc.TaskKey(job.job_id, index)
                merged = _merge_views(
                    queue.tasks.get(key),
                    accounting.tasks.get(key) if accounting else None,
                    accounting_ok=accounting is not None,
                )
                if merged is not None:
                    per_task[index] = merged
            if len(per_task) < job.task_count:
                missing.append(job)
            poll.tasks[job.job_id] = per_task

        if missing:
            self._fill_from_status_files(poll, missing, accounting_ok=accounting is not None)
        return poll

    def _fill_from_status_files(
        self, poll: PollResult, jobs: Sequence[TrackedJob], *, accounting_ok: bool
    ) -> None:
        run_dirs = [job.run_dir for job in jobs]
        listing = read_status_files(self.transport, run_dirs, timeout_s=self.timeout_s)
        poll.notes.extend(listing.problems)
        for job in jobs:
            per_task = poll.tasks[job.job_id]
            for index, task_id in enumerate(job.task_ids):
                if index in per_task:
                    continue
                status_file = listing.get(job.run_dir, task_id)
                where = "squeue or sacct" if accounting_ok else "squeue (and sacct is unavailable)"
                task = TaskStatus(
                    task_index=index,
                    state=JobState.UNKNOWN,
                    reason=f"job {job.job_id} task {index} is not known to {where}",
                    sources=[],
                )
                if status_file is not None:
                    # The monitor turns the status file into the final state (see monitor.py).
                    task.extra[STATUS_TEXT_KEY] = json.dumps(status_file.to_dict())
                    task.reason = None
                else:
                    task.reason = (task.reason or "") + " and has no status file"
                per_task[index] = task
