"""A sweep larger than the array limit on the bed: with ``slurm.max_array_size: 10`` (a profile
override; the bed's own MaxArraySize is left alone), 35 tasks become 4 array jobs of one run,
which is polled with one squeue and one sacct, cancelled in part with one scancel, rerun and
collected as one run with 35 verified tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from globtim_hpc import Cluster
from globtim_hpc.errors import WaitTimeoutError
from globtim_hpc.jobs.plan import build_plan
from globtim_hpc.models import JobState, RunPhase
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.ssh.chain import SshTransport
from globtim_hpc.workflows.monitor.poll import RunView, tracked_jobs
from globtim_hpc.workflows.submit import SubmitContext, submit_plan
from tests.integration.conftest import REPO, Testbed
from tests.integration.hooks import AfterCommand
from tests.integration.test_poll_cost import _sacct_rpcs, _squeue_rpcs

pytestmark = pytest.mark.integration

TASKS = 35
LIMIT = 10
SLOW = (12, 13, 14, 31, 32, 33)  # in parts 1 and 3; slow in their first attempt only
SCRIPT = """\
function run_custom(params, outdir)
    nothing
end
# stand-in: task 12,13,14,31,32,33 attempt 1: sleep 120
"""


def _profile(testbed: Testbed, tmp_path: Path) -> Path:
    data = yaml.safe_load(testbed.profile.read_text())
    data.setdefault("slurm", {})["max_array_size"] = LIMIT
    folder = tmp_path / "profiles"
    folder.mkdir()
    path = folder / "testbed.yaml"  # same name: same registry rows, same deployments
    path.write_text(yaml.safe_dump(data))
    return path


def _config(tmp_path: Path) -> Path:
    script = tmp_path / "script.jl"
    script.write_text(SCRIPT)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "parameters": {"script": str(script), "case": list(range(TASKS))},
                "resources": {"time_min": 10, "mem_gb": 0.2, "cpus": 1, "max_parallel": 10},
            }
        )
    )
    return config


def _settled(cluster: Cluster, run_id: str) -> RunView:
    try:
        return cluster.run(run_id=run_id).wait(timeout_s=300, interval_s=2)
    except WaitTimeoutError:
        view = cluster.run(run_id=run_id).status()
        unsettled = [t.status.to_dict() for t in view.tasks if not t.status.state.is_final]
        raise AssertionError(f"unsettled tasks: {unsettled}") from None


def _cli(tool: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLOBTIM_HPC_POLL_FLOOR_S": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / tool), "--cluster", str(profile), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )  # fmt: skip


def test_a_35_task_sweep_at_limit_10_is_one_run_of_4_array_jobs(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    profile = _profile(testbed, tmp_path)
    with Cluster(str(profile)) as cluster:
        run = cluster.submit(cluster.plan("custom", _config(tmp_path)))
    try:
        _check_the_run(testbed, profile, tmp_path, run.run_id)
    finally:
        # A failed check must not leave slow tasks holding the shared bed's CPUs.
        with Cluster(str(profile)) as cluster:
            ids = cluster.store.job_ids(run.run_id)
            cluster.transport.run(["scancel", *ids])


def _check_the_run(testbed: Testbed, profile: Path, tmp_path: Path, run_id: str) -> None:
    with Cluster(str(profile)) as cluster:
        run = cluster.run(run_id=run_id)
        parts = run.record.submission["array_parts"] if run.record.submission else []
        assert [(p["offset"], p["indices"]) for p in parts] == [
            (0, "0-9"), (10, "10-19"), (20, "20-29"), (30, "30-34"),
        ]  # fmt: skip
        jobs = cluster.store.run_jobs(run.run_id)
        assert [(j.part, j.task_offset) for j in jobs] == [(0, 0), (1, 10), (2, 20), (3, 30)]
        job_ids = [j.job_id for j in jobs]
        assert len(set(job_ids)) == 4 and run.job_id == job_ids[0]
        names = testbed.inhost(
            "falcon", "squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%F %j %K"
        ).stdout.split("\n")
        seen = {tuple(line.split()) for line in names if line.strip()}
        # Each part is an array 0..k-1 with its own name (found again after a lost answer);
        # parts 1 and 3 hold slow tasks, so they are still queued or running now.
        assert {n for _, n, _ in seen} >= {f"{run.run_id}.p1", f"{run.run_id}.p3"}, seen
        for part, job_id in enumerate(job_ids):
            name = run.run_id if part == 0 else f"{run.run_id}.p{part}"
            indices = {int(i) for a, n, i in seen if a == job_id and n == name}
            assert indices <= set(range(10 if part < 3 else 5)), (part, seen)

        # One poll of the whole run: one squeue, one sacct, however many parts.
        (view,) = cluster.poll([run.record])
        tracked = tracked_jobs(cluster.store, view)
        assert len(tracked) == 4
        # The bed is shared: another test's queries may land in a window, never fewer than
        # ours, so the least of a few windows is this poll's own cost.
        costs = []
        for _ in range(3):
            squeue_before, sacct_before = _squeue_rpcs(testbed), _sacct_rpcs(testbed)
            polled = cluster.scheduler.poll(tracked)
            squeue_after, sacct_after = _squeue_rpcs(testbed), _sacct_rpcs(testbed)
            assert polled.scheduler_calls == 2
            costs.append((squeue_after - squeue_before, sacct_after - sacct_before))
        assert min(c[0] for c in costs) == 1 and min(c[1] for c in costs) == 1, costs
        assert sorted(polled.tasks[run.run_id]) == list(range(TASKS))  # offsets mapped back

    # Cancel the slow tasks of parts 1 and 3: one scancel for both jobs.
    cancelled = _cli(
        "monitor_jobs.py", profile, "--run-id", run.run_id, "--cancel", "--yes",
        "--tasks", "12-14,31-33", "--json",
    )  # fmt: skip
    assert cancelled.returncode == 0, cancelled.stderr
    payload = json.loads(cancelled.stdout)
    assert payload["command"] == ["scancel", f"{job_ids[1]}_[2-4]", f"{job_ids[3]}_[1-3]"]
    assert payload["scheduler_commands"] == 1

    with Cluster(str(profile)) as cluster:
        view = _settled(cluster, run.run_id)
        states = {t.status.task_index: t.status.state for t in view.tasks}
        assert {states[i] for i in SLOW} == {JobState.CANCELLED}, states
        assert {states[i] for i in range(TASKS) if i not in SLOW} == {JobState.COMPLETED}
        # A part's log is named by the task's index, where readers look for it.
        logs = cluster.transport.run(["ls", f"{run.remote_dir}/logs"]).stdout_text.split()
        assert f"slurm-{job_ids[2]}_25.out" in logs, logs

    rerun = _cli("submit_julia_job.py", profile, "--rerun", run.run_id, "--only", "failed", "--json")
    assert rerun.returncode == 0, rerun.stderr
    attempt = json.loads(rerun.stdout)
    assert attempt["task_indices"] == list(SLOW) and len(attempt["job_ids"]) == 2, attempt

    with Cluster(str(profile)) as cluster:
        again = cluster.run(run_id=run.run_id)
        rows = [j for j in cluster.store.run_jobs(run.run_id) if j.attempt == 2]
        assert [(j.task_offset, j.task_indices) for j in rows] == [(12, (12, 13, 14)), (31, (31, 32, 33))]
        view = _settled(cluster, run.run_id)
        assert view.all_completed, view.counts()
        folder = again.collect(tmp_path / "results")
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["complete"] and metadata["finished_task_count"] == TASKS
        assert {t["state"] for t in metadata["tasks"]} == {"COMPLETED"}
        for task in metadata["tasks"]:
            expected = ["CANCELLED", "COMPLETED"] if task["task_index"] in SLOW else ["COMPLETED"]
            assert [a["state"] for a in task["attempts"]] == expected, task
        for index in (0, 15, 25, 34):
            status = json.loads((folder / "status" / f"{index:04d}.json").read_text())
            assert status["task_index"] == index


class LostAnswer(Exception):
    pass


def test_a_split_submission_interrupted_between_parts_resumes_without_doubling(
    testbed: Testbed, tmp_path: Path
) -> None:
    """The process dies right after part 1's sbatch: the next invocation adopts part 1 by its
    name, submits only part 2, and SLURM holds exactly one job per part name."""
    profile = load_profile(str(_profile(testbed, tmp_path)))
    script = tmp_path / "quick.jl"
    script.write_text("function run_custom(params, outdir)\n    nothing\nend\n")
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump({
        "parameters": {"script": str(script), "case": list(range(25))},
        "resources": {"time_min": 5, "mem_gb": 0.2, "cpus": 1},
    }))  # fmt: skip
    plan = build_plan("custom", config)

    def die(_answer: CommandResult) -> None:
        raise LostAnswer("the process was killed right after part 1's sbatch")

    assert profile.ssh is not None
    with SshTransport(profile.ssh) as transport, Store.open() as store:
        dying = AfterCommand(transport, "GLOBTIM_HPC_TASK_OFFSET=10", die)
        with pytest.raises(LostAnswer):
            submit_plan(plan, SubmitContext(profile, SlurmScheduler(dying), store), deployment=None)
        [pending] = store.unfinished_submissions(profile.name, plan.config_hash)
        try:
            assert pending.phase is RunPhase.SUBMITTING
            assert list(store.part_jobs(pending.run_id)) == [0]  # part 1 ran, unrecorded
            ctx = SubmitContext(profile, SlurmScheduler(transport), store)
            result = submit_plan(plan, ctx, deployment=None)
            assert result.run_id == pending.run_id and result.resumed
            assert len(set(result.part_job_ids)) == 3, result.to_dict()
            record = store.get_run(result.run_id)
            assert record is not None and record.phase is RunPhase.SUBMITTED
            for part, job_id in enumerate(result.part_job_ids):
                name = result.run_id if part == 0 else f"{result.run_id}.p{part}"
                # The array job's id (a started task also has an id of its own).
                named = {line.split("_")[0] for line in transport.run(
                    ["sacct", "-n", "-X", "-P", "-o", "JobID", "--name", name, "-S", "now-1hours"]
                ).stdout_text.split()}  # fmt: skip
                live = transport.run(["squeue", "-h", "-o", "%F", "--name", name]).stdout_text
                assert named | set(live.split()) == {job_id}, (name, named, live)
        finally:
            ids = store.job_ids(pending.run_id)
            if ids:
                transport.run(["scancel", *ids])
