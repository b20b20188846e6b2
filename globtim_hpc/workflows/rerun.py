"""Reruns: choose a run's tasks to run again, with more room, as the run's next attempt.

Which tasks (``only``):

- ``failed``: tasks that ended FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED or CANCELLED;
- ``missing``: settled tasks without a status file or without ``output/<task>/results.json`` on
  the cluster, or whose output files differ from what the run's last collection verified
  (``MANIFEST.sha256`` of that collection, for tasks still in the attempt collected then);
- ``unfinished``: every settled task that did not end COMPLETED (lost tasks included);
- a list such as ``3,17,40-44``.

A task still queued or running is never rerun (it would run twice). The attempt's resources
start from the largest of the chosen tasks' current ones; ``mem_gb``/``time_min`` replace
them, ``mem_factor``/``time_factor`` scale them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from globtim_hpc.errors import UsageError
from globtim_hpc.indices import parse_index_list
from globtim_hpc.jobs.plan import plan_from_dict
from globtim_hpc.jobs.render import ScriptInputs, render_script
from globtim_hpc.jobs.resources import MAX_MEM_GB, MAX_TIME_MIN, Resources
from globtim_hpc.layout import OUTPUT_DIR, STATUS_DIR
from globtim_hpc.models import JobState, RunPhase, TaskStatus
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.results.manifest import MANIFEST_NAME, RemoteManifest, parse_sha256sum
from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.workflows.submit.attempt import AttemptResult, AttemptSpec, attempt_result
from globtim_hpc.workflows.taskstate import is_settled

if TYPE_CHECKING:
    from collections.abc import Sequence

    from globtim_hpc.scheduler.base import Scheduler
    from globtim_hpc.transport.base import Transport
    from globtim_hpc.workflows.monitor import RunView

RERUN_STATES = frozenset(
    {
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.CANCELLED,
    }
)
SELECTIONS = ("failed", "missing", "unfinished")
RESULTS_NAME = "results.json"


@dataclass(frozen=True)
class RerunRequest:
    only: str = "failed"  # failed | missing | unfinished | an index list like 3,17,40-44
    mem_gb: float | None = None
    mem_factor: float | None = None
    time_min: int | None = None
    time_factor: float | None = None
    cause: str | None = None  # why, in words (default: the command line's selection)

    def check(self) -> None:
        if self.mem_gb is not None and self.mem_factor is not None:
            raise UsageError("give --mem-gb or --mem-factor, not both", "one says how much memory")
        if self.time_min is not None and self.time_factor is not None:
            raise UsageError("give --time-min or --time-factor, not both", "one says how long")
        for name, value in (("mem-factor", self.mem_factor), ("time-factor", self.time_factor)):
            if value is not None and not (math.isfinite(value) and 0 < value <= 100):
                raise UsageError(f"--{name} {value} is out of range (0, 100]", "e.g. 2")
        if self.mem_gb is not None and not 0 < self.mem_gb <= MAX_MEM_GB:
            raise UsageError(f"--mem-gb {self.mem_gb} is out of range (0, {MAX_MEM_GB:g}]", "e.g. 8")
        if self.time_min is not None and not 1 <= self.time_min <= MAX_TIME_MIN:
            raise UsageError(f"--time-min {self.time_min} is out of range [1, {MAX_TIME_MIN}]", "e.g. 60")


def parse_task_list(text: str, task_count: int) -> list[int]:
    """``3,17,40-44`` -> [3, 17, 40, 41, 42, 43, 44]; every index must exist in the run."""
    return parse_index_list(text, task_count=task_count)


def select_tasks(
    tasks: dict[int, TaskStatus],
    task_ids: dict[int, str],
    only: str,
    missing: dict[int, str] | None = None,
) -> dict[int, str]:
    """The chosen tasks, each with why (``missing``: what ``missing_tasks`` found)."""
    chosen: dict[int, str] = {}
    if only == "failed":
        for index, task in tasks.items():
            if task.state in RERUN_STATES:
                chosen[index] = task.state.value + (f": {task.reason}" if task.reason else "")
    elif only == "unfinished":
        for index, task in tasks.items():
            if is_settled(task) and task.state is not JobState.COMPLETED:
                chosen[index] = task.state.value
    elif only == "missing":
        chosen = {i: why for i, why in (missing or {}).items() if is_settled(tasks[i])}
    else:
        for index in parse_task_list(only, len(tasks)):
            chosen[index] = "chosen by index"
    busy = [f"{task_ids[i]} ({tasks[i].state.value})" for i in chosen if not is_settled(tasks[i])]
    if busy:
        raise UsageError(
            f"task(s) {', '.join(busy)} have not ended yet: rerunning them now would run them "
            "twice",
            "wait for them (monitor_jobs.py --wait), or cancel them first",
        )
    return dict(sorted(chosen.items()))


def missing_tasks(
    store: Store, run: RunRecord, manifest: RemoteManifest, attempts: dict[int, int]
) -> dict[int, str]:
    """Tasks whose files on the cluster are absent, or differ from the last collection's."""
    present = manifest.by_path()
    collected = _collected_manifest(store, run.run_id)
    found: dict[int, str] = {}
    for index, task_id, _, _ in store.task_rows(run.run_id):
        status_rel = f"{STATUS_DIR}/{task_id}.json"
        results_rel = f"{OUTPUT_DIR}/{task_id}/{RESULTS_NAME}"
        if status_rel not in present:
            found[index] = f"no {status_rel} on the cluster"
            continue
        if results_rel not in present:
            found[index] = f"no {results_rel} on the cluster"
            continue
        if collected is None or collected[1].get(task_id, 1) != attempts.get(index, 1):
            continue  # never collected, or rerun since: nothing verified to compare with
        prefix = f"{OUTPUT_DIR}/{task_id}/"
        for rel, digest in sorted(collected[0].items()):
            if not rel.startswith(prefix):
                continue
            entry = present.get(rel)
            if entry is None:
                found[index] = f"{rel} was collected but is gone from the cluster"
                break
            if entry.sha256 != digest:
                found[index] = f"{rel} differs from the collected, verified copy"
                break
    return found


def _collected_manifest(store: Store, run_id: str) -> tuple[dict[str, str], dict[str, int]] | None:
    """The last collection's manifest (path -> sha256) and each task's attempt then."""
    import json

    for row in reversed(store.collections(run_id)):
        folder = Path(row["local_dir"])
        manifest = folder / MANIFEST_NAME
        if not manifest.is_file():
            continue
        digests = parse_sha256sum(manifest.read_bytes())
        attempts: dict[str, int] = {}
        for status in (folder / STATUS_DIR).glob("*.json"):
            try:
                attempts[status.stem] = int(json.loads(status.read_text()).get("attempt") or 1)
            except (OSError, ValueError, AttributeError):
                continue
        return digests, attempts
    return None


def task_resources(store: Store, run: RunRecord) -> dict[int, dict[str, Any]]:
    """Each task's current resources: its latest attempt's (the plan's for attempt 1)."""
    base = dict(run.plan["resources"])
    by_attempt = {a.attempt: a.resources for a in store.attempts(run.run_id)}
    return {
        index: by_attempt.get(attempt, base)
        for index, attempt in store.task_attempt_numbers(run.run_id).items()
    }


def attempt_resources(current: list[dict[str, Any]], request: RerunRequest) -> dict[str, Any]:
    out = dict(current[0])
    out["mem_gb"] = max(float(r["mem_gb"]) for r in current)
    out["time_min"] = max(int(r["time_min"]) for r in current)
    if request.mem_gb is not None:
        out["mem_gb"] = float(request.mem_gb)
    elif request.mem_factor is not None:
        out["mem_gb"] = round(out["mem_gb"] * request.mem_factor, 3)
    if request.time_min is not None:
        out["time_min"] = int(request.time_min)
    elif request.time_factor is not None:
        out["time_min"] = math.ceil(out["time_min"] * request.time_factor)
    if out["mem_gb"] > MAX_MEM_GB or out["time_min"] > MAX_TIME_MIN:
        raise UsageError(
            f"the rerun would ask for {out['mem_gb']:g} GB and {out['time_min']} min, beyond "
            f"the {MAX_MEM_GB:g} GB / {MAX_TIME_MIN} min this tool allows",
            "give --mem-gb / --time-min explicitly",
        )
    return out


def check_rerunnable(run: RunRecord, reruns_tasks: bool) -> None:
    if run.phase is not RunPhase.SUBMITTED:
        raise UsageError(
            f"run {run.run_id} is {run.phase.value}, not submitted: there is nothing to rerun",
            "submit it again with submit_julia_job.py (it resumes an interrupted submission)",
        )
    if not reruns_tasks:
        raise UsageError(
            f"run {run.run_id} ran without a scheduler (the direct runner), which runs every "
            "task of a run folder at once and cannot rerun some of them",
            "submit the problem again as a new run (submit_julia_job.py --new)",
        )


def build_spec(
    store: Store,
    profile: ClusterProfile,
    run: RunRecord,
    chosen: dict[int, str],
    request: RerunRequest,
    *,
    attempt: int | None = None,
) -> AttemptSpec:
    """The attempt that reruns ``chosen``: its number, resources and script."""
    if not chosen:
        raise UsageError(
            f"run {run.run_id} has no task to rerun with --only {request.only}",
            "see its tasks with monitor_jobs.py --run-id " + run.run_id
            + "; choose tasks by index with --only 3,17,40-44",
        )
    number = attempt or store.next_attempt(run.run_id)
    current = task_resources(store, run)
    attempts = store.task_attempt_numbers(run.run_id)
    resources = attempt_resources([current[i] for i in chosen], request)
    plan = plan_from_dict(run.plan)
    fields = {k: v for k, v in resources.items() if k in Resources.__dataclass_fields__}
    fields.pop("retry", None)  # the policy decides about attempts; the script does not carry it
    plan = replace(plan, resources=Resources(**fields))
    julia_project = (run.submission or {}).get("julia_project")
    indices = tuple(chosen)
    script = render_script(
        plan, profile,
        ScriptInputs(run.run_id, run.remote_dir, julia_project, attempt=number,
                     task_indices=indices),
    )  # fmt: skip
    task_ids = {index: task_id for index, task_id, _, _ in store.task_rows(run.run_id)}
    return AttemptSpec(
        run_id=run.run_id,
        attempt=number,
        task_indices=indices,
        task_ids={i: task_ids[i] for i in indices},
        earlier={i: attempts.get(i, 1) for i in indices},
        resources=resources,
        cause=request.cause or f"rerun --only {request.only}",
        script=script,
    )


def dry_result(spec: AttemptSpec, reasons: dict[int, str]) -> AttemptResult:
    return attempt_result(spec, [], dry_run=True, reasons=reasons)


def rerun_run(
    cluster: RerunCluster,
    run: RunRecord,
    request: RerunRequest,
    *,
    dry_run: bool = False,
    view: RunView | None = None,
) -> AttemptResult:
    """Choose, record and submit the next attempt of ``run`` (or resume an interrupted one);
    ``view``: the run as a poll has just seen it (else it is polled here)."""
    from globtim_hpc.workflows.collect.snapshot import fetch_manifest
    from globtim_hpc.workflows.submit import SubmitContext
    from globtim_hpc.workflows.submit.attempt import submit_attempt

    request.check()
    if request.only not in SELECTIONS:
        parse_task_list(request.only, run.task_count)  # a clear error before any remote work
    store, profile = cluster.store, cluster.profile
    check_rerunnable(run, cluster.scheduler.reruns_tasks)
    ctx = SubmitContext(profile=profile, scheduler=cluster.scheduler, store=store)
    unfinished = store.unfinished_attempt(run.run_id)
    if unfinished is not None and not dry_run:
        again = RerunRequest(
            only=request.only, mem_gb=float(unfinished.resources["mem_gb"]),
            time_min=int(unfinished.resources["time_min"]), cause=unfinished.cause,
        )  # fmt: skip
        chosen = {index: "resumed" for index in unfinished.task_indices}
        spec = build_spec(store, profile, run, chosen, again, attempt=unfinished.attempt)
        result = submit_attempt(ctx, run, spec, resumed=True)
        result.warnings.append(
            f"resumed attempt {unfinished.attempt} of this run, interrupted before its job was "
            "known; the selection and resources given now were not used"
        )
        return result
    if view is None:
        (view,) = cluster.poll([run])
    tasks = {t.status.task_index: t.status for t in view.tasks}
    task_ids = {t.status.task_index: t.task_id for t in view.tasks}
    missing = None
    if request.only == "missing":
        manifest = fetch_manifest(cluster.transport, run.remote_dir, ())
        missing = missing_tasks(store, run, manifest, store.task_attempt_numbers(run.run_id))
    chosen = select_tasks(tasks, task_ids, request.only, missing)
    spec = build_spec(store, profile, run, chosen, request)
    if dry_run:
        return dry_result(spec, chosen)
    seen = {index: tasks[index].attempt for index in spec.task_indices}
    number = store.claim_attempt(run.run_id, seen, spec.resources, spec.cause)
    if number is None:
        raise UsageError(
            f"another command is rerunning tasks of run {run.run_id} right now",
            "look with monitor_jobs.py --run-id " + run.run_id + " in a moment",
        )
    if number != spec.attempt:
        spec = build_spec(store, profile, run, chosen, request, attempt=number)
    result = submit_attempt(ctx, run, spec, resumed=False)
    result.reasons = chosen
    return result


class RerunCluster(Protocol):
    """What a rerun needs of ``api.Cluster``."""

    @property
    def store(self) -> Store: ...

    @property
    def profile(self) -> ClusterProfile: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def transport(self) -> Transport: ...

    def poll(self, runs: Sequence[RunRecord], *, mark_seen: bool = True) -> list[RunView]: ...
