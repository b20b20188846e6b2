"""The cluster's array and job limits, read once (per deployment or doctor run) and cached in
the registry, and the effective array limit a submission splits at: the lower of the cluster's
``MaxArraySize`` and the profile's ``slurm.max_array_size``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from globtim_hpc.errors import PreflightError
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler

if TYPE_CHECKING:
    from globtim_hpc.settings.profile import ClusterProfile

ABSURD_TASKS = 10_000  # the pre-flight warns above this, whatever the cluster allows


@dataclass(frozen=True)
class ArrayLimits:
    max_array_size: int | None  # the effective limit (None: no splitting)
    cluster_max_array_size: int | None
    max_job_count: int | None


def refresh_limits(scheduler: Scheduler, store: Store, cluster: str) -> None:
    """Ask the scheduler (one command) and cache its answer; a scheduler without limits
    (the direct runner) caches nothing."""
    limits = scheduler.read_limits()
    if limits is not None:
        store.set_cluster_limits(
            cluster, max_array_size=limits.max_array_size, max_job_count=limits.max_job_count
        )


def array_limits(scheduler: Scheduler, store: Store, profile: ClusterProfile) -> ArrayLimits:
    """The limits a submission splits at, from the cache (asking the cluster once if empty)."""
    cached = store.cluster_limits(profile.name)
    if cached is None:
        refresh_limits(scheduler, store, profile.name)
        cached = store.cluster_limits(profile.name)
    cluster_size = cached["max_array_size"] if cached else None
    known = [size for size in (cluster_size, profile.slurm_max_array_size) if size]
    return ArrayLimits(
        max_array_size=min(known) if known else None,
        cluster_max_array_size=cluster_size,
        max_job_count=cached["max_job_count"] if cached else None,
    )


def check_sweep_size(task_count: int, limits: ArrayLimits, cluster: str) -> list[str]:
    """Refuse a sweep the cluster cannot hold; warnings for one that is merely very large."""
    warnings: list[str] = []
    if limits.max_job_count is not None and task_count > limits.max_job_count:
        raise PreflightError(
            f"the sweep has {task_count:,} tasks, more than the {limits.max_job_count:,} jobs "
            f"{cluster} holds at once (MaxJobCount)",
            "shorten the sweep lists, or submit it as several runs one after the other "
            "(--after RUN_ID)",
        )
    if limits.max_array_size and task_count > limits.max_array_size:
        parts = -(-task_count // limits.max_array_size)
        warnings.append(
            f"{task_count:,} tasks exceed the array limit of {limits.max_array_size:,}: "
            f"submitted as {parts} array jobs of one run"
        )
    if task_count > ABSURD_TASKS:
        warnings.append(f"{task_count:,} tasks is a very large sweep; check the parameter lists")
    return warnings
