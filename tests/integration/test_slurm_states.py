"""Final states on the bed's real SLURM, with accounting on, off, and with slurmdbd stopped.

Each scenario submits every variant at once and polls them together (one squeue + one sacct
per poll); the slow one (a 1-minute time limit) sets the pace, about 80 s per scenario.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from globtim_hpc.layout import RunLayout, new_run_id
from globtim_hpc.models import JobState
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.workflows.monitor import RunView
from tests.integration.conftest import Testbed
from tests.integration.monitor_support import (
    CLUSTER,
    BedRun,
    poll_until_settled,
    submit_run,
    unique_base,
)

pytestmark = pytest.mark.integration

HOG = "python3 -c 'import time; b = bytearray(400 * 1024 * 1024); time.sleep(20)'"
FORGOTTEN_JOB_ID = "99999999"  # never issued on the bed: SLURM knows nothing of it


@dataclass
class Bed:
    transport: Transport
    scheduler: SlurmScheduler
    testbed: Testbed


@pytest.fixture(scope="module")
def bed(testbed: Testbed) -> Iterator[Bed]:
    profile = load_profile(str(testbed.profile))
    transport = open_transport("ssh", profile.ssh)
    try:
        yield Bed(transport, SlurmScheduler(transport), testbed)
    finally:
        transport.close()


def _status_json(
    run_id: str,
    index: int,
    state: str,
    *,
    start: str,
    end: str | None,
    code: int | None,
    signal: str | None,
) -> bytes:
    return json.dumps(
        {
            "schema": "globtim-hpc/status/1",
            "run_id": run_id,
            "task_id": f"{index:04d}",
            "task_index": index,
            "job_id": FORGOTTEN_JOB_ID,
            "array_job_id": FORGOTTEN_JOB_ID,
            "host": "falcon",
            "started_at": start,
            "ended_at": end,
            "exit_code": code,
            "signal": signal,
            "state": state,
            "julia_version": "none (test)",
        }
    ).encode()


def _forgotten_run(bed: Bed, store: Store, base: str) -> BedRun:
    """A run whose job SLURM has forgotten (as after MinJobAge): only its status files remain."""
    run_id = new_run_id("monitor_forgotten")
    run_dir = posixpath.join(base, run_id)
    layout = RunLayout(run_dir)
    bed.transport.run(["mkdir", "-p", layout.status_dir]).check("creating a run folder")
    files = {
        0: ("EXITED", "2026-11-29T10:00:00Z", "2026-11-29T10:00:09Z", 0, None),
        1: ("SIGNALLED", "2026-11-29T10:00:00Z", "2026-11-29T10:01:04Z", 143, "TERM"),
        2: ("SIGNALLED", "2026-11-29T10:00:00Z", "2026-11-29T10:00:12Z", 143, "TERM"),
        3: ("RUNNING", "2026-11-29T10:00:00Z", None, None, None),
        4: ("EXITED", "2026-11-29T10:00:00Z", "2026-11-29T10:00:01Z", 7, None),
    }
    for index, (state, start, end, code, signal) in files.items():
        bed.transport.put_bytes(
            _status_json(run_id, index, state, start=start, end=end, code=code, signal=signal),
            layout.status_file(f"{index:04d}"),
        )
    task_ids = [f"{i:04d}" for i in range(6)]  # task 5 left nothing at all
    store.add_run(
        run_id=run_id,
        problem="monitor_forgotten",
        cluster=CLUSTER,
        scheduler="slurm",
        remote_dir=run_dir,
        task_ids=task_ids,
        config_hash="forgotten",
        deploy_id=None,
        git_sha=None,
        plan={"resources": {"time_min": 1}},
        submission=None,
    )
    store.record_job(run_id, CLUSTER, FORGOTTEN_JOB_ID)
    return BedRun("forgotten", run_id, run_dir, FORGOTTEN_JOB_ID, tuple(task_ids))


def _run_scenario(bed: Bed) -> tuple[dict[str, RunView], list[BedRun]]:
    transport, scheduler = bed.transport, bed.scheduler
    base = unique_base(transport)
    runs: list[BedRun] = []
    try:
        with Store.open() as store:
            # The slow ones first, so they hold the bed's two CPUs from the start.
            runs.append(
                submit_run(
                    transport,
                    scheduler,
                    store,
                    base,
                    "timeout",
                    "sleep 300",
                    sbatch=["--time=00:00:01"],
                    time_min=1,
                )
            )
            runs.append(submit_run(transport, scheduler, store, base, "cancel", "sleep 300"))
            runs.append(submit_run(transport, scheduler, store, base, "completed", "sleep 1"))
            runs.append(submit_run(transport, scheduler, store, base, "exit3", "exit 3"))
            runs.append(
                submit_run(transport, scheduler, store, base, "oom", HOG, sbatch=["--mem=100M"])
            )
            runs.append(
                submit_run(
                    transport,
                    scheduler,
                    store,
                    base,
                    "array",
                    'case "$SLURM_ARRAY_TASK_ID" in 1) exit 5 ;; *) sleep 1 ;; esac',
                    task_count=3,
                )
            )
            runs.append(_forgotten_run(bed, store, base))
            cancel = next(run for run in runs if run.name == "cancel")
            cancelled: list[bool] = []

            def cancel_when_running(views: dict[str, RunView]) -> None:
                if not cancelled and views["cancel"].tasks[0].status.state is JobState.RUNNING:
                    scheduler.cancel([cancel.tracked()])
                    cancelled.append(True)

            views = poll_until_settled(
                store, transport, scheduler, runs, deadline_s=300, on_poll=cancel_when_running
            )
            assert cancelled, "the cancel variant never showed as RUNNING"
            return views, runs
    finally:
        scheduler.cancel([run.tracked() for run in runs if run.job_id != FORGOTTEN_JOB_ID])
        transport.run(["rm", "-rf", base])


def _state(
    views: dict[str, RunView], name: str, index: int = 0
) -> tuple[JobState, int | None, int | None]:
    status = views[name].tasks[index].status
    return status.state, status.exit_code, status.signal


def _check_common(views: dict[str, RunView]) -> None:
    assert _state(views, "completed") == (JobState.COMPLETED, 0, None)
    assert "status-file" in views["completed"].tasks[0].status.sources
    state, code, _ = _state(views, "exit3")
    assert (state, code) == (JobState.FAILED, 3)
    assert views["timeout"].tasks[0].status.state is JobState.TIMEOUT
    assert views["cancel"].tasks[0].status.state is JobState.CANCELLED
    array = [t.status for t in views["array"].tasks]
    assert [t.state for t in array] == [JobState.COMPLETED, JobState.FAILED, JobState.COMPLETED]
    assert array[1].exit_code == 5
    # The forgotten job: states from status files alone (monitor.py rule 5).
    forgotten = [t.status for t in views["forgotten"].tasks]
    assert [t.state for t in forgotten] == [
        JobState.COMPLETED,
        JobState.TIMEOUT,
        JobState.CANCELLED,
        JobState.UNKNOWN,
        JobState.FAILED,
        JobState.UNKNOWN,
    ]
    assert forgotten[4].exit_code == 7
    assert "SIGKILL" in (forgotten[3].reason or "") and forgotten[5].reason


def test_final_states_with_accounting(bed: Bed) -> None:
    status = bed.testbed.script("accounting.sh", "status").stdout.strip()
    assert status == "slurmdbd", f"the bed's accounting should be on, it is {status!r}"
    views, _ = _run_scenario(bed)
    _check_common(views)
    oom = views["oom"].tasks[0].status
    # The bed enforces memory with JobAcctGatherParams=OverMemoryKill (no cgroups): SLURM says
    # FAILED 0:9, and sacct's MaxRSS over the request makes it OUT_OF_MEMORY.
    assert oom.state is JobState.OUT_OF_MEMORY, oom.to_dict()
    assert oom.max_rss_kb is not None and oom.max_rss_kb > 100 * 1024
    assert "sacct" in views["completed"].tasks[0].status.sources
    assert all("accounting" not in note for view in views.values() for note in view.notes)


def _check_without_accounting(views: dict[str, RunView], expected_note: str) -> None:
    _check_common(views)
    # Without sacct there is no MaxRSS: the memory kill is a FAILED task killed by signal 9,
    # and its status file still says RUNNING (SIGKILL leaves no chance to run the trap).
    oom = views["oom"].tasks[0].status
    assert (oom.state, oom.signal) == (JobState.FAILED, 9), oom.to_dict()
    assert oom.status_file is not None and oom.status_file.state == "RUNNING"
    # One note per poll about the missing accounting (each view holds its last poll's notes).
    for view in views.values():
        if view.polled:
            assert [note for note in view.notes if expected_note in note] == [view.notes[0]]


@pytest.mark.disruptive
def test_final_states_with_accounting_off(bed: Bed) -> None:
    bed.testbed.script("accounting.sh", "off", timeout_s=400)
    try:
        views, _ = _run_scenario(bed)
        mode = bed.testbed.script("accounting.sh", "status").stdout.strip()
        assert mode == "none", f"accounting was switched back to {mode!r} during the test"
    finally:
        bed.testbed.script("accounting.sh", "on", timeout_s=400)
    _check_without_accounting(views, "accounting is disabled")


@pytest.mark.disruptive
def test_final_states_with_slurmdbd_stopped(bed: Bed) -> None:
    bed.testbed.script("slurmdbd.sh", "stop", timeout_s=400)
    try:
        views, _ = _run_scenario(bed)
        still_down = bed.testbed.inhost("falcon", "sacctmgr", "-n", "show", "cluster", check=False)
        assert still_down.returncode != 0, (
            "slurmdbd answered again before the test ended: something restarted it (a concurrent "
            "tests/testbed/up.sh?)"
        )
    finally:
        bed.testbed.script("slurmdbd.sh", "start", timeout_s=400)
    _check_without_accounting(views, "slurmdbd")
