"""The job config's retry policy, applied by whichever command next sees a failure.

No daemon watches the cluster: ``Cluster.poll`` (so ``--wait``, ``--watch`` and the API's
``wait``) and ``Cluster.collect`` call ``apply_retries`` with what they have just seen. A task
is retried when it has settled in a state the policy names and has had fewer than ``max``
retries; tasks that failed the same way go together into one attempt (one array job), with
the memory scaled after OUT_OF_MEMORY and the time limit after TIMEOUT. The attempt's cause
("retry policy: OUT_OF_MEMORY, retry 1 of 2") is recorded and shown in ``summary.md``. Two
commands seeing the same failure at once make one retry (``Store.claim_attempt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from globtim_hpc.errors import UsageError
from globtim_hpc.jobs.retry import RetryPolicy
from globtim_hpc.models import RunPhase
from globtim_hpc.workflows.rerun import RerunCluster, RerunRequest, rerun_run
from globtim_hpc.workflows.taskstate import is_settled

if TYPE_CHECKING:
    from globtim_hpc.workflows.monitor import RunView
    from globtim_hpc.workflows.submit.attempt import AttemptResult


def policy_of(view: RunView) -> RetryPolicy | None:
    resources = view.run.plan.get("resources") if isinstance(view.run.plan, dict) else None
    retry = resources.get("retry") if isinstance(resources, dict) else None
    return RetryPolicy.from_dict(retry) if isinstance(retry, dict) else None


def due_retries(view: RunView, policy: RetryPolicy) -> dict[str, list[int]]:
    """Failure state -> the tasks to retry for it now."""
    due: dict[str, list[int]] = {}
    for task_view in view.tasks:
        task = task_view.status
        if task.state.value in policy.on and is_settled(task) and task.attempt <= policy.max_retries:
            due.setdefault(task.state.value, []).append(task.task_index)
    return due


def retry_request(state: str, indices: Sequence[int], policy: RetryPolicy, retry: int) -> RerunRequest:
    return RerunRequest(
        only=",".join(str(i) for i in indices),
        mem_factor=policy.mem_factor if state == "OUT_OF_MEMORY" and policy.mem_factor != 1 else None,
        time_factor=policy.time_factor if state == "TIMEOUT" and policy.time_factor != 1 else None,
        cause=f"retry policy: {state}, retry {retry} of {policy.max_retries}",
    )


def apply_retries(cluster: RerunCluster, views: Sequence[RunView]) -> list[AttemptResult]:
    """Submit every retry the runs' policies call for now; what was submitted."""
    made: list[AttemptResult] = []
    for view in views:
        policy = policy_of(view)
        if policy is None or view.run.phase is not RunPhase.SUBMITTED:
            continue
        if not cluster.scheduler.reruns_tasks:
            continue
        attempts = {t.status.task_index: t.status.attempt for t in view.tasks}
        for state, indices in sorted(due_retries(view, policy).items()):
            retry = max(attempts[i] for i in indices)
            try:
                request = retry_request(state, indices, policy, retry)
                made.append(rerun_run(cluster, view.run, request, view=view))
            except UsageError as exc:
                # Another command is retrying them right now: that one's retry stands.
                view.notes.append(f"retry of {state} tasks not made here: {exc.message}")
    return made
