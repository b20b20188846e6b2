"""A poll costs one squeue and one sacct, however many tasks: proven from SLURM's own counters.

slurmctld counts every RPC it serves (``sdiag``); squeue asks for job information once.
slurmdbd counts its RPCs too (``sacctmgr show stats``); sacct's query is DBD_GET_JOBS_COND.
The bed is shared with other tests, so the counters are read right around the polls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from globtim_hpc.layout import RunLayout, new_run_id, task_id_for
from globtim_hpc.models import JobState
from globtim_hpc.scheduler.base import SubmitRequest, TrackedJob, submit_job
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.factory import open_transport
from tests.integration.conftest import Testbed
from tests.integration.monitor_support import batch_script, unique_base

# The counts are the controller's, for every client: no other test may poll meanwhile.
pytestmark = [pytest.mark.integration, pytest.mark.alone]

ARRAY_SIZE = 1000
JOB_INFO_RPCS = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE", "REQUEST_JOB_USER_INFO")
POLLS = 3


def _rpc_counts(text: str, names: tuple[str, ...]) -> int:
    total = 0
    for name in names:
        match = re.search(rf"^\s*{name}\s+\(\s*\d+\)\s+count:(\d+)", text, re.MULTILINE)
        total += int(match.group(1)) if match else 0
    return total


def _squeue_rpcs(testbed: Testbed) -> int:
    return _rpc_counts(testbed.inhost("falcon", "sdiag").stdout, JOB_INFO_RPCS)


def _sacct_rpcs(testbed: Testbed) -> int:
    return _rpc_counts(
        testbed.inhost("falcon", "sacctmgr", "show", "stats").stdout, ("DBD_GET_JOBS_COND",)
    )


@pytest.fixture(scope="module")
def transport(testbed: Testbed) -> Iterator[Transport]:
    profile = load_profile(str(testbed.profile))
    with open_transport("ssh", profile.ssh) as opened:
        yield opened


def _submit_held(transport: Transport, base: str, task_count: int) -> TrackedJob:
    """A held array: every task stays PENDING, so squeue has a line per task and nothing runs."""
    run_id = new_run_id("monitor_cost")
    run_dir = f"{base}/{run_id}"
    layout = RunLayout(run_dir)
    transport.run(["mkdir", "-p", layout.status_dir, layout.logs_dir]).check(
        "creating a run folder"
    )
    script = batch_script(run_id, run_dir, task_count, "true", ["--hold"])
    transport.put_bytes(script.encode(), layout.job_script)
    request = SubmitRequest(run_id, run_dir, layout.job_script, task_count, task_count, 3600, 1)
    job_id = submit_job(SlurmScheduler(transport), request)
    task_ids = tuple(task_id_for(i, task_count) for i in range(task_count))
    return TrackedJob(run_id, job_id, run_dir, task_ids, submitted_at=None)


def test_one_squeue_and_one_sacct_per_poll(testbed: Testbed, transport: Transport) -> None:
    scheduler = SlurmScheduler(transport)
    base = unique_base(transport)
    jobs: list[TrackedJob] = []
    try:
        jobs.append(_submit_held(transport, base, ARRAY_SIZE))
        jobs += [_submit_held(transport, base, 1) for _ in range(4)]
        total_tasks = sum(job.task_count for job in jobs)

        squeue_before, sacct_before = _squeue_rpcs(testbed), _sacct_rpcs(testbed)
        polls = [scheduler.poll(jobs) for _ in range(POLLS)]
        squeue_after, sacct_after = _squeue_rpcs(testbed), _sacct_rpcs(testbed)

        assert all(poll.scheduler_calls == 2 for poll in polls)
        assert squeue_after - squeue_before == POLLS, "job-information RPCs seen by slurmctld"
        assert sacct_after - sacct_before == POLLS, "DBD_GET_JOBS_COND RPCs seen by slurmdbd"

        last = polls[-1]
        big = last.tasks[jobs[0].run_id]
        assert sorted(big) == list(range(ARRAY_SIZE))
        assert sum(len(tasks) for tasks in last.tasks.values()) == total_tasks
        assert all(task.state is JobState.PENDING for task in big.values())
        assert {task.reason for task in big.values()} <= {"JobHeldUser", "JobHeldAdmin"}
        assert last.notes == []
    finally:
        scheduler.cancel(jobs)
        transport.run(["rm", "-rf", base])
