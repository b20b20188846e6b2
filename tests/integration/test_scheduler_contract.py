"""The Scheduler contract: SLURM and the direct runner pass the same submit/status/cancel tests.

Each scheduler runs real batch scripts on the bed's falcon (the direct runner over SSH, as on a
node without SLURM, and on this machine too). States are read the way the monitor reads them:
one poll of the scheduler, decided by ``taskstate`` with the tasks' status files.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from globtim_hpc.errors import SchedulerError
from globtim_hpc.layout import RunLayout, new_run_id, task_id_for
from globtim_hpc.models import JobState
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler, SubmitRequest, TrackedJob, submit_job
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.transport.base import CommandResult, Transport
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.transport.ssh.chain import SshTransport
from globtim_hpc.workflows.monitor import poll_runs
from tests.integration.conftest import Testbed
from tests.integration.monitor_support import batch_script
from tests.integration.transport_fixtures import bed_settings

KINDS = [
    pytest.param("slurm", marks=pytest.mark.integration),
    pytest.param("direct-ssh", marks=pytest.mark.integration),
    "direct-local",
]


@dataclass
class Subject:
    kind: str
    scheduler: Scheduler
    base: str  # a private folder for this test's runs

    @property
    def transport(self) -> Transport:
        return self.scheduler.transport


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "direct-local":
        with LocalTransport() as local:
            yield Subject("direct-local", DirectScheduler(local), str(tmp_path))
        return
    testbed: Testbed = request.getfixturevalue("testbed")
    with SshTransport(bed_settings(testbed)) as ssh:
        base = posixpath.join(testbed.remote_root, "tests-scheduler", new_run_id("contract"))
        ssh.run(["mkdir", "-p", base]).check("creating the test folder")
        scheduler: Scheduler = (
            SlurmScheduler(ssh) if request.param == "slurm" else DirectScheduler(ssh)
        )
        try:
            yield Subject(request.param, scheduler, base)
        finally:
            ssh.run(["rm", "-rf", "--", base])


def _submit(subject: Subject, store: Store, name: str, body: str, task_count: int) -> TrackedJob:
    """A run folder with a batch script (and the scheduler's own files), submitted and recorded."""
    run_id = new_run_id(name)
    run_dir = posixpath.join(subject.base, run_id)
    layout = RunLayout(run_dir)
    transport = subject.transport
    transport.run(["mkdir", "-p", layout.status_dir, layout.logs_dir, layout.direct_dir]).check(
        "creating a run folder"
    )
    script = batch_script(run_id, run_dir, task_count, body, ["--time=5"])
    transport.put_bytes(script.encode(), layout.job_script, mode=0o755)
    for relative, data in subject.scheduler.run_files().items():
        transport.put_bytes(data, posixpath.join(run_dir, relative), mode=0o755)
    task_ids = tuple(task_id_for(i, task_count) for i in range(task_count))
    request = SubmitRequest(run_id, run_dir, layout.job_script, task_count, task_count, 300, 1)
    job_id = submit_job(subject.scheduler, request)
    store.add_run(
        run_id=run_id, problem=name, cluster="contract", scheduler=subject.scheduler.name,
        remote_dir=run_dir, task_ids=task_ids, config_hash=run_id, deploy_id=None,
        git_sha=None, plan={"resources": {"time_min": 5}}, submission=None,
    )  # fmt: skip
    store.record_job(run_id, "contract", job_id)
    return TrackedJob(run_id, job_id, run_dir, task_ids)


def _states(subject: Subject, store: Store, job: TrackedJob) -> list[JobState]:
    run = store.get_run(job.run_id)
    assert run is not None
    (view,) = poll_runs(store, subject.scheduler, [run])
    return [task.status.state for task in view.tasks]


def _until(subject: Subject, store: Store, job: TrackedJob, done: object, limit_s: float = 240):
    end = time.monotonic() + limit_s
    while True:
        states = _states(subject, store, job)
        if callable(done) and done(states):
            return states
        if time.monotonic() > end:
            raise AssertionError(f"{subject.kind}: {job.job_id} still {states}")
        time.sleep(1.0)


def test_submit_then_poll_reports_each_task_as_it_ended(subject: Subject) -> None:
    with Store.open() as store:
        body = 'if [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then exit 3; fi; echo "task $SLURM_ARRAY_TASK_ID"'
        job = _submit(subject, store, "contract_mixed", body, 3)
        final = _until(subject, store, job, lambda s: all(x.is_final for x in s))
        assert final == [JobState.COMPLETED, JobState.FAILED, JobState.COMPLETED], subject.kind
        run = store.get_run(job.run_id)
        assert run is not None
        (view,) = poll_runs(store, subject.scheduler, [run])
        assert view.tasks[1].status.exit_code == 3
        log = subject.transport.get_bytes(RunLayout(job.run_dir).log_file(job.job_id, 2))
        assert b"task 2" in log


def test_cancel_stops_running_and_pending_tasks_in_one_command(subject: Subject) -> None:
    with Store.open() as store:
        job = _submit(subject, store, "contract_cancel", "sleep 120", 2)
        _until(subject, store, job, lambda s: JobState.RUNNING in s)
        argv = subject.scheduler.cancel_argv([job])
        subject.scheduler.cancel([job])
        final = _until(subject, store, job, lambda s: all(x.is_final for x in s), limit_s=120)
        assert final == [JobState.CANCELLED, JobState.CANCELLED], subject.kind
        assert argv and argv == subject.scheduler.cancel_argv([job])  # pure: same job, same argv


def test_a_submitted_job_is_found_again_by_its_run(subject: Subject) -> None:
    with Store.open() as store:
        job = _submit(subject, store, "contract_find", "true", 1)
        assert subject.scheduler.find_job(job.run_id, job.run_dir) == job.job_id
        other = posixpath.join(subject.base, new_run_id("contract_never"))
        subject.transport.run(["mkdir", "-p", other]).check("mkdir")
        assert subject.scheduler.find_job(posixpath.basename(other), other) is None
        _until(subject, store, job, lambda s: all(x.is_final for x in s))


def test_a_refused_submission_is_a_scheduler_error_not_a_job(subject: Subject) -> None:
    refused = CommandResult(("x",), 1, b"", b"sbatch: error: Batch job submission failed\n")
    with pytest.raises(SchedulerError) as caught:
        subject.scheduler.parse_submit(refused)
    assert not caught.value.transient
