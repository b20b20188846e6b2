"""``Run``: one submitted run of a ``Cluster``, as an object (the registry's record behind it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from globtim_hpc.errors import JobFailedError
from globtim_hpc.registry.records import RunRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from globtim_hpc.api.cluster import Cluster, OnPoll
    from globtim_hpc.workflows.collect import CollectObserver, CollectResult
    from globtim_hpc.workflows.monitor import RunView
    from globtim_hpc.workflows.monitor.cancel import CancelResult
    from globtim_hpc.workflows.monitor.history import RunSummary
    from globtim_hpc.workflows.monitor.tasklog import TaskLog
    from globtim_hpc.workflows.submit import SubmitResult
    from globtim_hpc.workflows.submit.attempt import AttemptResult


class Run:
    def __init__(self, cluster: Cluster, record: RunRecord) -> None:
        self.cluster = cluster
        self._record = record
        self.submission: SubmitResult | None = None  # set by Cluster.submit
        self.last_collection: CollectResult | None = None

    @property
    def record(self) -> RunRecord:
        """The registry's record, read afresh (another command may have changed it)."""
        fresh = self.cluster.store.get_run(self._record.run_id)
        if fresh is not None:
            self._record = fresh
        return self._record

    @property
    def run_id(self) -> str:
        return self._record.run_id

    @property
    def job_id(self) -> str | None:
        return self.record.job_id

    @property
    def problem(self) -> str:
        return self._record.problem

    @property
    def remote_dir(self) -> str:
        return self._record.remote_dir

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, job_id={self.job_id!r}, cluster={self.cluster.name!r})"

    def summary(self) -> RunSummary:
        """State in one word, counts per task state, where it was collected: registry only."""
        from globtim_hpc.workflows.monitor.history import summarize

        return summarize(self.cluster.store, self.record)

    def status(self, *, poll: bool = True) -> RunView:
        """Each task's state: polled now (``poll``), or as the registry last saw it."""
        if poll:
            return self.cluster.poll([self])[0]
        from globtim_hpc.workflows.monitor import stored_view

        return stored_view(self.cluster.store, self.record)

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        interval_s: float | None = None,
        check: bool = False,
        on_poll: OnPoll | None = None,
    ) -> RunView:
        """Block until every task is settled (see ``Cluster.wait``); ``check`` raises
        JobFailedError when any task did not complete."""
        (view,) = self.cluster.wait([self], timeout_s=timeout_s, interval_s=interval_s,
                                    on_poll=on_poll)  # fmt: skip
        if check and not view.all_completed:
            failed = {state: n for state, n in view.counts().items() if state != "COMPLETED"}
            raise JobFailedError(
                f"run {self.run_id} finished with tasks not completed: {failed}",
                f"look at them with monitor_jobs.py --run-id {self.run_id}; collect the rest "
                "with collect_results.py",
            )
        return view

    def cancel(
        self, tasks: Sequence[int] | str | None = None, *, dry_run: bool = False
    ) -> CancelResult:
        """Cancel the run's unfinished tasks (or those of ``tasks``: indices, or ``"0-3,7"``)
        with one scheduler command, then poll once; ``result.views`` hold the states recorded.
        ``dry_run`` returns the plan (``result.plan.argv``) and changes nothing."""
        return self.cluster.cancel([self], tasks, dry_run=dry_run)

    def log(self, task: int | str, *, lines: int = 50, attempt: int | None = None) -> TaskLog:
        """The last ``lines`` lines of a task's log (SLURM writes stdout and stderr into one
        file), read with one remote command; ``task`` is an index or a task id."""
        from globtim_hpc.workflows.monitor.tasklog import read_task_log

        return read_task_log(
            self.cluster.transport, self.cluster.store, self.record, task,
            lines=lines, attempt=attempt,
        )  # fmt: skip

    def collect(
        self,
        local_dir: str | Path = "results",
        *,
        clean_remote: bool = False,
        observer: CollectObserver | None = None,
        compression: str | None = None,
    ) -> Path:
        """Bring the finished tasks back (verified); returns the run's local folder. The full
        account (files, bytes, notes) is in ``last_collection``. ``compression``: as
        ``Cluster.collect``."""
        result = self.cluster.collect(
            self, local_dir, clean_remote=clean_remote, observer=observer,
            compression=compression,
        )  # fmt: skip
        self.last_collection = result
        assert result.local_dir is not None  # only --all collections skip unfinished runs
        return Path(result.local_dir)

    def rerun(
        self,
        only: str = "failed",
        *,
        mem_gb: float | None = None,
        mem_factor: float | None = None,
        time_min: int | None = None,
        time_factor: float | None = None,
        dry_run: bool = False,
        cause: str | None = None,
    ) -> AttemptResult:
        """Run some tasks again as the run's next attempt: one array job over only them.

        ``only``: ``failed``, ``missing``, ``unfinished`` or indices like ``3,17,40-44`` (see
        ``workflows.rerun``); more room with ``mem_gb``/``mem_factor`` and
        ``time_min``/``time_factor``. An interrupted rerun of this run is resumed first (never
        submitted twice). ``dry_run`` says what would run and shows the script."""
        from globtim_hpc.workflows.rerun import RerunRequest, rerun_run

        request = RerunRequest(
            only=only, mem_gb=mem_gb, mem_factor=mem_factor, time_min=time_min,
            time_factor=time_factor, cause=cause,
        )  # fmt: skip
        return rerun_run(self.cluster, self.record, request, dry_run=dry_run)
