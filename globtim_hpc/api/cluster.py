"""``Cluster``: one cluster profile, one registry and one connection for a block of work.

Everything the four commands do is a method here; the commands only parse arguments and show
results. The connection opens on first need and is reused until ``close`` (or the end of the
``with`` block), so a whole notebook cell costs one SSH chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from globtim_hpc.closing import ClosesOnExit
from globtim_hpc.errors import ConnectError, GlobtimHpcError, SchedulerError, UsageError
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.settings.profile import ClusterProfile, load_profile
from globtim_hpc.transport.base import PromptFn, Transport

if TYPE_CHECKING:
    from globtim_hpc.api.run import Run
    from globtim_hpc.jobs.plan import JobPlan
    from globtim_hpc.scheduler.base import Scheduler
    from globtim_hpc.workflows.collect import CollectObserver, CollectResult
    from globtim_hpc.workflows.deploy import DeployOptions
    from globtim_hpc.workflows.deployrecord import DeployReport
    from globtim_hpc.workflows.doctor_report import DoctorReport
    from globtim_hpc.workflows.monitor import RunView
    from globtim_hpc.workflows.monitor.cancel import CancelResult
    from globtim_hpc.workflows.monitor.history import RunSummary
    from globtim_hpc.workflows.submit import PreparedRun

Notify = Callable[[str], None]
OnPoll = Callable[[Sequence["RunView"]], None]


class Cluster(ClosesOnExit):
    """A cluster profile (name, path, or a loaded profile) with its registry and connection.

    ``prompt`` answers passphrase and one-time-code prompts (default: the terminal, or a
    Jupyter notebook's input box); ``state_dir`` selects another registry folder.
    """

    def __init__(
        self,
        profile: str | Path | ClusterProfile | None = None,
        *,
        prompt: PromptFn | None = None,
        state_dir: Path | None = None,
    ) -> None:
        if isinstance(profile, ClusterProfile):
            self.profile = profile
        else:
            self.profile = load_profile(str(profile) if profile is not None else None)
        self._prompt = prompt
        self._state_dir = state_dir
        self._store: Store | None = None
        self._transport: Transport | None = None
        self._scheduler: Scheduler | None = None

    # ---- the parts, opened on first need ---------------------------------------------------

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self._state_dir)
        return self._store

    @property
    def transport(self) -> Transport:
        """The connection (SSH connects on its first command)."""
        if self._transport is None:
            from globtim_hpc.prompts import interactive_prompt
            from globtim_hpc.transport.factory import open_transport

            prompt = self._prompt or interactive_prompt
            if self.profile.is_local:
                self._transport = open_transport("local", None, prompt=prompt)
            else:
                self._transport = open_transport("ssh", self.profile.ssh, prompt=prompt)
        return self._transport

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            from globtim_hpc.scheduler.factory import make_scheduler

            self._scheduler = make_scheduler(self.profile, self.transport)
        return self._scheduler

    def close(self) -> None:
        """Close the connection and the registry; safe to call twice."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self._scheduler = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def disconnect(self) -> bool:
        """End the shared connection the profile keeps open between commands (``ssh.client:
        openssh``); True if one was open. The next command logs in (and asks for a one-time
        code) again. The built-in client keeps none beyond this object: it is closed."""
        from globtim_hpc.transport.factory import disconnect

        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self._scheduler = None
        return False if self.profile.is_local else disconnect(self.profile.ssh)

    def __repr__(self) -> str:
        return f"Cluster({self.profile.name!r})"

    # ---- deployment and the doctor ----------------------------------------------------------

    def deploy(
        self,
        source: str | Path | None = None,
        options: DeployOptions | None = None,
        *,
        notify: Notify | None = None,
    ) -> DeployReport:
        """Ship the code and Julia environment and verify it offline on a compute node.

        ``source`` (default: the profile's ``source``) is the GlobTim.jl checkout to deploy;
        ``options`` carries the rest (timeouts, require_clean, force)."""
        from dataclasses import replace

        from globtim_hpc.workflows.deploy import DeployOptions, deploy

        where = source if source is not None else (options.source if options else None)
        where = where or self.profile.source
        if where is None:
            raise UsageError(
                "no source checkout to deploy",
                f"pass --source PATH/TO/GlobTim.jl, or set 'source' in {self.profile.origin}",
            )
        chosen = replace(options, source=Path(where)) if options else DeployOptions(Path(where))
        return deploy(
            self.profile, self.transport, self.scheduler, self.store, chosen, notify=notify
        )

    def check(
        self,
        source: str | Path | None = None,
        *,
        probe_timeout_s: float = 120.0,
        notify: Notify | None = None,
    ) -> DoctorReport:
        """The doctor: every hop, quota, tool and the scheduler, each with a fix."""
        from globtim_hpc.workflows.doctor import Doctor

        return Doctor(
            self.profile,
            lambda: self.transport,
            lambda _transport: self.scheduler,
            source=Path(source) if source is not None else None,
            probe_timeout_s=probe_timeout_s,
            notify=notify,
            on_limits=lambda limits: self.store.set_cluster_limits(
                self.profile.name,
                max_array_size=limits.max_array_size,
                max_job_count=limits.max_job_count,
            ),
        ).run()

    def latest_deployment(self) -> dict[str, Any] | None:
        """The deployment runs use: verified, or with its verification job not ended yet."""
        from globtim_hpc.workflows.verification import usable_deployment

        return usable_deployment(self.store, self.profile.name)

    # ---- submission -------------------------------------------------------------------------

    def plan(
        self,
        problem: str,
        config: str | Path | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> JobPlan:
        """Problem + job config + overrides (a sweep: lists of values) -> the tasks to run."""
        from globtim_hpc.jobs.advice import apply_sizing
        from globtim_hpc.jobs.plan import build_plan
        from globtim_hpc.registry.sizing import observations

        overrides: dict[str, Any] = {}
        if parameters:
            overrides["parameters"] = dict(parameters)
        if resources:
            overrides["resources"] = dict(resources)
        plan = build_plan(problem, Path(config) if config is not None else None, overrides or None)
        # What earlier collected tasks of this problem here really used: warnings, and the
        # request itself for ``mem_gb: auto``.
        return apply_sizing(plan, observations(self.store.path, self.name, plan.problem))

    def dry_run(
        self, plan: JobPlan, *, use_deployment: bool = True
    ) -> PreparedRun:
        """Everything a submission would upload, made here; nothing reaches the cluster."""
        from globtim_hpc.scheduler.factory import make_scheduler
        from globtim_hpc.transport.offline import OfflineTransport
        from globtim_hpc.workflows.submit import prepare_run

        offline = make_scheduler(self.profile, OfflineTransport(self.profile.name))
        deployment = self.latest_deployment() if use_deployment else None
        return prepare_run(plan, self.profile, deployment, offline.run_files())

    def submit(
        self,
        problem: str | JobPlan,
        config: str | Path | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        new: bool = False,
        use_deployment: bool = True,
        after: Sequence[Run | str] = (),
    ) -> Run:
        """Submit exactly once; an interrupted submission of the same config is resumed unless
        ``new``. ``after`` (runs or run ids) holds the new run until every job of each of those
        runs completed well (SLURM ``--dependency=afterok``). Returns the run
        (``run.submission`` holds what happened)."""
        from globtim_hpc.workflows.submit import SubmitContext, submit_plan

        plan = problem if not isinstance(problem, str) else self.plan(
            problem, config, parameters=parameters, resources=resources
        )
        if self.profile.is_local:
            from globtim_hpc.api.local import check_local_julia

            check_local_julia(self.profile.julia_executable)
        from globtim_hpc.api.chaining import resolve_after
        from globtim_hpc.workflows.verification import choose_deployment

        waits_on, notes = resolve_after(self, after)
        chosen = None
        if use_deployment:
            choice = choose_deployment(self.store, self.name, self.transport, self.scheduler)
            chosen = choice.deployment
            notes.extend(choice.notes)
        ctx = SubmitContext(profile=self.profile, scheduler=self.scheduler, store=self.store)
        result = submit_plan(
            plan, ctx, deployment=chosen, resume=not new, after=waits_on
        )  # fmt: skip
        result.warnings.extend(notes)
        run = self.run(run_id=result.run_id)
        run.submission = result
        return run

    # ---- the registry -----------------------------------------------------------------------

    def run(self, run_id: str | None = None, *, job_id: str | None = None) -> Run:
        """A run of this cluster from the registry, by run id or job id."""
        from globtim_hpc.api.run import Run
        from globtim_hpc.registry.lookup import find_run

        return Run(self, find_run(self.store, self.profile.name, job_id=job_id, run_id=run_id))

    def runs(
        self,
        *,
        active: bool | None = None,
        uncollected: bool = False,
        since: str | datetime | None = None,
        problem: str | None = None,
        state: str | None = None,
        newest_first: bool = False,
    ) -> list[Run]:
        """This cluster's runs from the registry alone (no connection), oldest first unless
        ``newest_first``: all, only ``active`` ones, those not yet collected completely, those
        submitted ``since`` (a datetime, a date, or an age like ``3d``), of one ``problem``, or
        in one ``state`` (a run state: ACTIVE, COMPLETED, FAILED, ...; or any task's state)."""
        from globtim_hpc.api.run import Run
        from globtim_hpc.registry.lookup import uncollected_runs
        from globtim_hpc.workflows.monitor.history import check_state, matches, parse_since

        if uncollected:
            records = uncollected_runs(self.store, self.profile.name)
        else:
            records = self.store.list_runs(cluster=self.profile.name, active_only=bool(active))
        after = parse_since(since) if isinstance(since, str) else since
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=timezone.utc)
        word = check_state(state) if state is not None else None
        if after is not None or problem is not None or word is not None:
            records = [
                record for record in records
                if matches(self._summary(record), since=after, problem=problem, state=word)
            ]  # fmt: skip
        if newest_first:
            records.reverse()
        return [Run(self, record) for record in records]

    def _summary(self, record: RunRecord) -> RunSummary:
        from globtim_hpc.workflows.monitor.history import summarize

        return summarize(self.store, record)

    # ---- watching and collecting several runs at once ----------------------------------------

    def poll(self, runs: Sequence[Run | RunRecord], *, mark_seen: bool = True) -> list[RunView]:
        """One poll of all ``runs`` together (for SLURM: one squeue and one sacct in all)."""
        from globtim_hpc.workflows.monitor import needs_poll, poll_runs, stored_view

        records = [self._record(run) for run in runs]
        views = [stored_view(self.store, record) for record in records]
        if not any(needs_poll(view) for view in views):
            for view in views:
                view.changes = self.store.changes_since_seen(view.run.run_id, mark_seen=mark_seen)
            return views
        views = poll_runs(self.store, self.scheduler, records, mark_seen=mark_seen)
        return self._retry(views)

    def _retry(self, views: list[RunView]) -> list[RunView]:
        """Apply the runs' retry policies to what a poll has just seen (see workflows.retry):
        a retried task shows as PENDING in its new attempt at once."""
        from globtim_hpc.workflows.monitor import stored_view
        from globtim_hpc.workflows.retry import apply_retries, policy_of

        if not any(policy_of(view) for view in views):
            return views
        made = {result.run_id: result for result in apply_retries(self, views)}
        out = []
        for view in views:
            if view.run.run_id not in made:
                out.append(view)
                continue
            result = made[view.run.run_id]
            fresh = stored_view(self.store, self.store.get_run(view.run.run_id) or view.run)
            fresh.polled, fresh.changes = view.polled, view.changes
            fresh.notes = [*view.notes, f"retried task(s) {result.array} as attempt "
                           f"{result.attempt} (job {', '.join(result.job_ids)}): {result.cause}"]  # fmt: skip
            out.append(fresh)
        return out

    def wait(
        self,
        runs: Sequence[Run | RunRecord],
        *,
        timeout_s: float | None = None,
        interval_s: float | None = None,
        on_poll: OnPoll | None = None,
    ) -> list[RunView]:
        """Poll until every task of every run is settled; the same budget as ``--wait`` (from
        ``interval_s``, default 5 s, backing off to 60 s while nothing changes). A dropped
        connection is retried on the next poll; ``timeout_s`` raises WaitTimeoutError."""
        import time

        from globtim_hpc.errors import WaitTimeoutError
        from globtim_hpc.workflows.monitor import PollInterval

        interval = PollInterval(interval_s)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        views = self.poll(runs)
        while True:
            if on_poll is not None:
                on_poll(views)
            if all(view.all_settled for view in views):
                return views
            changed = any(view.changes for view in views)
            pause_s = interval.next(changed)
            if deadline is not None and time.monotonic() + pause_s > deadline:
                unsettled = sum(not view.all_settled for view in views)
                raise WaitTimeoutError(
                    f"{unsettled} of {len(views)} run(s) still have unfinished tasks after "
                    f"{timeout_s:g} s",
                    "wait longer (timeout_s), or look with monitor_jobs.py --run-id RUN_ID",
                )
            time.sleep(pause_s)
            polled, failure = self.try_poll(runs)
            if polled is not None:
                views = polled
            else:
                for view in views:
                    view.changes = []
                    if failure and failure not in view.notes:
                        view.notes.append(failure)

    def try_poll(self, runs: Sequence[Run | RunRecord]) -> tuple[list[RunView] | None, str | None]:
        """A poll inside a loop: (views, None), or (None, why) when the scheduler or the
        connection failed in a way the next poll may not (a laptop asleep, a restarted sshd:
        the transport reconnects). A lasting failure is raised."""
        try:
            return self.poll(runs), None
        except (SchedulerError, ConnectError) as exc:
            if not exc.transient:
                raise
            return None, f"poll failed, will retry: {exc.message}"

    def collect(
        self,
        run: Run | RunRecord,
        local_dir: str | Path = "results",
        *,
        clean_remote: bool = False,
        require_complete: bool = False,
        observer: CollectObserver | None = None,
        plots: bool | None = None,
        compression: str | None = None,
    ) -> CollectResult:
        """Bring the run's finished tasks back, verified, into
        ``<local_dir>/<problem>/<date>_<run_id>/``; collecting again fetches only what changed.
        ``plots`` (default: the profile's ``collect.plots``) draws plots/ into the folder.
        ``compression``: auto, zstd, gzip or none (default: the profile's
        ``collect.compression``)."""
        from globtim_hpc.workflows.collect import CollectOptions, collect_run
        from globtim_hpc.workflows.collect.compression import check_mode

        mode = check_mode(
            self.profile.collect_compression if compression is None else compression,
            "compression",
        )

        record = self._record(run)
        if (record.plan.get("resources") or {}).get("retry"):
            # A failure collect sees is retried like one --wait sees (no command more without
            # a retry policy).
            self.poll([record], mark_seen=False)
            record = self._record(record)
        # Absolute: the registry records where the run went, for whoever looks later, anywhere.
        options = CollectOptions(
            results_root=Path(local_dir).absolute(), clean_remote=clean_remote,
            require_complete=require_complete,
            plots=self.profile.collect_plots if plots is None else plots,
            compression=mode, local_link=self.profile.is_local,
        )  # fmt: skip
        return collect_run(
            self.store.get_run(record.run_id) or record, store=self.store, scheduler=self.scheduler,
            remote_root=self.profile.remote_root, options=options, observer=observer,
        )  # fmt: skip

    def cancel(
        self,
        runs: Sequence[Run | RunRecord],
        tasks: Sequence[int] | str | None = None,
        *,
        dry_run: bool = False,
    ) -> CancelResult:
        """Cancel the unfinished tasks of ``runs`` (or only ``tasks``: indices or ``"0-3,7"``,
        the same for each run) in ONE scheduler command, pending and running alike, then poll
        once so the registry records the scheduler's own states."""
        from globtim_hpc.indices import parse_index_list
        from globtim_hpc.workflows.monitor.cancel import cancel_runs

        chosen = parse_index_list(tasks) if isinstance(tasks, str) else tasks
        records = [self._record(run) for run in runs]
        scheduler = self._offline_scheduler() if dry_run else self.scheduler
        return cancel_runs(self.store, scheduler, records, chosen, dry_run=dry_run)

    def _offline_scheduler(self) -> Scheduler:
        """The scheduler's pure half only (a dry run builds commands, never sends them)."""
        from globtim_hpc.scheduler.factory import make_scheduler
        from globtim_hpc.transport.offline import OfflineTransport

        return make_scheduler(self.profile, OfflineTransport(self.profile.name))
    def compare(
        self, run_a: str | Path, run_b: str | Path, local_dir: str | Path = "results"
    ) -> dict[str, Any]:
        """Differences between two collected runs (see ``globtim_hpc.api.compare_runs``)."""
        from globtim_hpc.api.views import compare_runs

        return compare_runs(run_a, run_b, local_dir)

    def _record(self, run: Run | RunRecord) -> RunRecord:
        if isinstance(run, RunRecord):
            return run
        if run.cluster is not self:
            raise UsageError(
                f"run {run.run_id} belongs to another Cluster object",
                "use the Cluster that returned it",
            )
        return run.record


__all__ = ["Cluster", "GlobtimHpcError"]
