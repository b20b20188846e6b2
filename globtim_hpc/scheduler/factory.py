"""Choose the scheduler a cluster profile names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from globtim_hpc.errors import ConfigError

if TYPE_CHECKING:
    from globtim_hpc.scheduler.base import Scheduler
    from globtim_hpc.settings.profile import ClusterProfile
    from globtim_hpc.transport.base import Transport


def make_scheduler(profile: ClusterProfile, transport: Transport) -> Scheduler:
    """'slurm' -> SlurmScheduler, 'direct' -> DirectScheduler, both talking through ``transport``.

    The profile's partition and account are not forced onto sbatch's command line: there they
    would override the batch script, whose values (job config over profile) are the right ones.
    """
    if profile.scheduler == "slurm":
        from globtim_hpc.scheduler.slurm import SlurmScheduler

        return SlurmScheduler(transport)
    if profile.scheduler == "direct":
        from globtim_hpc.scheduler.direct import DirectScheduler

        return DirectScheduler(transport)
    raise ConfigError(
        f"profile {profile.name} names an unknown scheduler {profile.scheduler!r}",
        "use 'slurm' or 'direct'",
        path=profile.origin,
        key="scheduler",
    )
