"""The life of a run on the bed: cancel (one scancel, counted by slurmctld), chaining with
--after (Dependency, then DependencyNeverSatisfied when the parent fails), and a task's log.

slurmctld counts every RPC it serves (``sdiag``, as in test_poll_cost.py): scancel sends one
REQUEST_KILL_JOB per job id argument, so one command cancelling a 1,000-task array shows as one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from globtim_hpc.api import Cluster
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.transport.recording import RecordingTransport
from tests.integration.conftest import REPO, Testbed
from tests.integration.monitor_support import BedRun, submit_run, unique_base
from tests.integration.runwatch import small_child_config, wait_for_reason
from tests.integration.test_poll_cost import _rpc_counts

pytestmark = pytest.mark.integration

PYTHON = str(REPO / ".venv" / "bin" / "python")
MONITOR = str(REPO / "monitor_jobs.py")
KILL_RPCS = ("REQUEST_KILL_JOB", "REQUEST_KILL_JOBS", "REQUEST_CANCEL_JOB_STEP")


@dataclass
class Bed:
    testbed: Testbed
    cluster: Cluster
    base: str

    def submit(self, name: str, body: str, *, task_count: int = 1, sbatch: tuple[str, ...] = ()) -> BedRun:
        scheduler = SlurmScheduler(self.cluster.transport)
        return submit_run(self.cluster.transport, scheduler, self.cluster.store, self.base, name,
                          body, task_count=task_count, sbatch=sbatch)  # fmt: skip

    def monitor(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GLOBTIM_HPC_POLL_FLOOR_S": "1"}
        return subprocess.run(
            [PYTHON, MONITOR, "--cluster", str(self.testbed.profile), *args],
            capture_output=True, text=True, timeout=timeout_s, env=env, cwd=REPO,
        )  # fmt: skip

    def kill_rpcs(self) -> int:
        return _rpc_counts(self.testbed.inhost("falcon", "sdiag").stdout, KILL_RPCS)


@pytest.fixture
def bed(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    with Cluster(str(testbed.profile)) as cluster:
        base = unique_base(cluster.transport)
        try:
            yield Bed(testbed, cluster, base)
        finally:
            cluster.transport.run(["rm", "-rf", base])


def _states(bed: Bed, run_id: str, *, until_final: bool = True, deadline_s: float = 120) -> list[str]:
    end = time.monotonic() + deadline_s
    while True:
        view = bed.cluster.run(run_id).status()
        states = [t.status.state.value for t in view.tasks]
        if not until_final or all(t.status.state.is_final and not t.status.awaiting_accounting
                                  for t in view.tasks) or time.monotonic() > end:  # fmt: skip
            return states
        time.sleep(2)


@pytest.mark.alone  # counts the controller's kill RPCs
def test_cancel_of_a_thousand_task_array_is_one_scancel(bed: Bed) -> None:
    run = bed.submit("cancel_big", "true", task_count=1000, sbatch=("--hold",))
    before = bed.kill_rpcs()
    done = bed.monitor("--run-id", run.run_id, "--cancel", "--yes", "--json")
    after = bed.kill_rpcs()
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert payload["command"] == ["scancel", run.job_id] and payload["scheduler_commands"] == 1
    assert payload["jobs"][0]["task_count"] == 1000
    assert after - before == 1, "kill RPCs seen by slurmctld"
    states = _states(bed, run.run_id)
    assert states == ["CANCELLED"] * 1000
    again = bed.monitor("--run-id", run.run_id, "--cancel", "--yes")
    assert again.returncode == 2 and "nothing to cancel" in again.stderr


@pytest.mark.alone  # counts the controller's kill RPCs
def test_cancel_some_tasks_pending_and_running_alike(bed: Bed) -> None:
    run = bed.submit("cancel_some", "sleep 120", task_count=6)
    recording = RecordingTransport(bed.cluster.transport)
    bed.cluster._transport = recording  # count the commands the API sends
    bed.cluster._scheduler = None
    bad = bed.monitor("--run-id", run.run_id, "--cancel", "--yes", "--tasks", "2,9")
    assert bad.returncode == 2 and "no task 9" in bad.stderr
    dry = bed.monitor("--run-id", run.run_id, "--cancel", "--tasks", "0-1,4", "--dry-run", "--json")
    assert json.loads(dry.stdout)["command"] == ["scancel", f"{run.job_id}_[0-1,4]"]
    before = bed.kill_rpcs()
    result = bed.cluster.run(run.run_id).cancel("0-1,4")
    assert bed.kill_rpcs() - before == 1
    scancels = [c for c in recording.commands if c.what[0] == "scancel"]
    assert [c.what for c in scancels] == [("scancel", f"{run.job_id}_[0-1,4]")]
    assert result.plan.indices == {run.job_id: [0, 1, 4]}
    time.sleep(3)
    states = _states(bed, run.run_id, until_final=False)
    assert [states[i] for i in (0, 1, 4)] == ["CANCELLED"] * 3, states
    assert all(states[i] in ("PENDING", "RUNNING") for i in (2, 3, 5)), states
    bed.cluster.run(run.run_id).cancel()
    assert _states(bed, run.run_id) == ["CANCELLED"] * 6


def test_log_tail_is_one_remote_read(bed: Bed) -> None:
    run = bed.submit("log", "for i in 1 2 3 4 5; do echo out-$i; done; echo err-line >&2")
    assert _states(bed, run.run_id) == ["COMPLETED"]
    recording = RecordingTransport(bed.cluster.transport)
    bed.cluster._transport = recording
    log = bed.cluster.run(run.run_id).log(0, lines=3)
    assert len(recording.commands) == 1
    assert log.text.splitlines() == ["out-4", "out-5", "err-line"] and log.path
    shown = bed.monitor("--run-id", run.run_id, "--log", "0", "--json")
    assert json.loads(shown.stdout)["text"].splitlines()[-1] == "err-line"
    bad = bed.monitor("--run-id", run.run_id, "--log", "5")
    assert bad.returncode == 2 and "no task '5'" in bad.stderr


def test_after_holds_the_child_until_the_parent_completes(bed: Bed, tmp_path: Path) -> None:
    parent = bed.submit("parent_ok", "sleep 12")
    child = bed.cluster.submit("4d_benchmark", small_child_config(tmp_path), use_deployment=False,
                               after=[parent.run_id])  # fmt: skip
    assert "PENDING Dependency" in wait_for_reason(bed.cluster, child.run_id, "Dependency")
    assert _states(bed, parent.run_id) == ["COMPLETED"]
    assert _states(bed, child.run_id, deadline_s=180) == ["COMPLETED"]
    submission = child.record.submission or {}
    assert submission["after"] == [{"run_id": parent.run_id, "job_ids": [parent.job_id]}]


def test_a_failed_parent_shows_dependency_never_satisfied(bed: Bed, tmp_path: Path) -> None:
    parent = bed.submit("parent_bad", "sleep 6; exit 3")
    child = bed.cluster.submit("4d_benchmark", small_child_config(tmp_path), use_deployment=False,
                               after=[parent.run_id])  # fmt: skip
    assert _states(bed, parent.run_id) == ["FAILED"]
    wait_for_reason(bed.cluster, child.run_id, "DependencyNeverSatisfied")
    waited = bed.monitor("--run-id", child.run_id, "--wait", "--interval", "1", timeout_s=120)
    assert waited.returncode == 6, waited.stdout + waited.stderr  # settled: it never starts
    assert "DependencyNeverSatisfied: a job it waits on (a run given with --after" in waited.stdout
    refused = bed.cluster.run(child.run_id).cancel()
    assert refused.plan.indices == {child.job_id: [0]}
    assert _states(bed, child.run_id) == ["CANCELLED"]
