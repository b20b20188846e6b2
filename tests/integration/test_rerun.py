"""Reruns on the bed: a 12-task sweep where three tasks fail (FAILED, over its memory, past its
time limit) is rerun as one array job over exactly those three, with more room; the collected
run has every task verified and shows both attempts; a deleted output is found as missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from globtim_hpc import Cluster
from globtim_hpc.errors import UsageError
from globtim_hpc.models import JobState
from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration

# Memory: the bed kills a task over --mem (OverMemoryKill, sampled every 2 s) and sacct's MaxRSS
# over the request makes it OUT_OF_MEMORY. Time: 90 s of sleep against a 1 min limit (SLURM
# checks limits every 30 s), in the first attempt only: that the rerun has the room is read from
# SLURM's own record of its time limit, so the second attempt need not sit out a minute.
SCRIPT = """\
function run_custom(params, outdir)
    nothing
end
# stand-in: task 3 attempt 1: exit 3
# stand-in: task 6: allocate-mb 300
# stand-in: task 6: sleep 6
# stand-in: task 9 attempt 1: sleep 90
"""


def _config(tmp_path: Path) -> Path:
    script = tmp_path / "script.jl"
    script.write_text(SCRIPT)
    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "parameters": {"script": str(script), "case": list(range(12))},
                "resources": {"time_min": 1, "mem_gb": 0.2, "cpus": 1, "max_parallel": 12},
            }
        )
    )
    return config


def _indices(job_field: str) -> list[int]:
    """Array indices in one sacct JobID: ``123_4``, or the still-pending ``123_[3,6-8%2]``."""
    _, sep, rest = job_field.partition("_")
    if not sep:
        return []
    if rest.isdigit():
        return [int(rest)]
    if not (rest.startswith("[") and rest.endswith("]")):
        return []
    out: list[int] = []
    for item in rest[1:-1].split("%")[0].split(","):
        low, _, high = item.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _sacct_indices(testbed: Testbed, job_id: str) -> list[int]:
    """The array indices SLURM holds for ``job_id`` (read until two reads agree)."""
    previous: list[int] | None = None
    for _ in range(30):
        out = testbed.inhost("falcon", "sacct", "-n", "-X", "-P", "-o", "JobID", "-j", job_id)
        now = sorted(index for line in out.stdout.split() for index in _indices(line))
        if now and now == previous:
            return now
        previous = now
        subprocess.run(["sleep", "1"], check=True)
    raise AssertionError(f"sacct never settled on the tasks of job {job_id}: {previous}")


def test_a_rerun_of_the_failed_tasks_with_more_room(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    with Cluster("testbed") as cluster:
        run = cluster.submit(cluster.plan("custom", _config(tmp_path)))
        view = run.wait(timeout_s=600, interval_s=2)
        states = {t.status.task_index: t.status.state for t in view.tasks}
        assert states[3] is JobState.FAILED, view.to_dict()["tasks"][3]
        assert states[6] is JobState.OUT_OF_MEMORY, view.to_dict()["tasks"][6]
        assert states[9] is JobState.TIMEOUT, view.to_dict()["tasks"][9]
        assert {states[i] for i in range(12) if i not in (3, 6, 9)} == {JobState.COMPLETED}
        with pytest.raises(UsageError):
            run.rerun("unfinished", mem_gb=1, mem_factor=2)  # contradictory room
        first_job = run.job_id

    # The command line, as a user runs it.
    proc = subprocess.run(
        [sys.executable, str(REPO / "submit_julia_job.py"), "--cluster", "testbed", "--rerun",
         run.run_id, "--only", "failed", "--mem-factor", "2", "--time-factor", "2", "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rerun = json.loads(proc.stdout)
    assert rerun["attempt"] == 2 and rerun["task_indices"] == [3, 6, 9], rerun
    assert rerun["array"] == "3,6,9" and len(rerun["job_ids"]) == 1, rerun
    assert rerun["resources"]["mem_gb"] == pytest.approx(0.4) and rerun["resources"]["time_min"] == 2
    (job_id,) = rerun["job_ids"]
    assert job_id != first_job

    with Cluster("testbed") as cluster:
        run = cluster.run(run_id=run.run_id)
        view = run.wait(timeout_s=600, interval_s=2)
        assert view.all_completed, view.counts()
        # Read once the tasks ended: while some are pending, sacct's rows for them come and go.
        assert _sacct_indices(testbed, job_id) == [3, 6, 9]
        limits = testbed.inhost("falcon", "sacct", "-n", "-X", "-P", "-o", "Timelimit", "-j", job_id)
        assert set(limits.stdout.split()) == {"00:02:00"}, limits.stdout
        assert {t.status.attempt for t in view.tasks if t.status.task_index in (3, 6, 9)} == {2}
        with pytest.raises(UsageError, match="no task to rerun"):
            run.rerun("failed")  # nothing failed any more
        folder = run.collect(tmp_path / "results")
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["complete"] and metadata["finished_task_count"] == 12
        assert {t["state"] for t in metadata["tasks"]} == {"COMPLETED"}
        for task in metadata["tasks"]:
            attempts = [a["state"] for a in task["attempts"]]
            expected = {3: ["FAILED", "COMPLETED"], 6: ["OUT_OF_MEMORY", "COMPLETED"],
                        9: ["TIMEOUT", "COMPLETED"]}.get(task["task_index"], ["COMPLETED"])  # fmt: skip
            assert attempts == expected, task["attempts"]
        assert [a["task_indices"] for a in metadata["attempts"]] == [[3, 6, 9]]
        summary = (folder / "summary.md").read_text()
        assert "## Attempts" in summary and "rerun --only failed" in summary
        # Each attempt's log is its own job's: the latest by default, the first on request.
        latest, first = run.log(3), run.log(3, attempt=1)
        assert (latest.attempt, latest.job_id) == (2, job_id), latest.to_dict()
        assert (first.attempt, first.job_id) == (1, first_job), first.to_dict()
        assert latest.path != first.path and latest.text and first.text
        with pytest.raises(UsageError, match="no attempt 2"):
            run.log(0, attempt=2)
        # The first attempt's files were kept apart, and came back too.
        assert (folder / "attempts" / "1" / "status" / "0003.json").is_file()
        assert json.loads((folder / "status" / "0003.json").read_text())["attempt"] == 2

        # A deleted output is found by --only missing (and nothing else is).
        cluster.transport.run(
            ["rm", "-f", f"{run.remote_dir}/output/0005/results.json"]
        ).check("rm")
        found = run.rerun("missing", dry_run=True)
        assert found.task_indices == [5] and "results.json" in found.reasons[5], found.to_dict()
        assert found.dry_run and not found.job_ids and "--array=5" in found.script


def test_a_retry_policy_reruns_an_oom_task_with_twice_the_memory_under_wait(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    script = tmp_path / "hog.jl"
    script.write_text(
        "function run_custom(params, outdir)\n    nothing\nend\n"
        "# stand-in: task 1: allocate-mb 300\n# stand-in: task 1: sleep 6\n"
    )
    config = tmp_path / "retry.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "parameters": {"script": str(script), "case": [0, 1]},
                "resources": {
                    "time_min": 2, "mem_gb": 0.2, "cpus": 1,
                    "retry": {"on": ["OUT_OF_MEMORY"], "max": 2, "mem_factor": 2},
                },
            }
        )
    )  # fmt: skip
    with Cluster("testbed") as cluster:
        run = cluster.submit(cluster.plan("custom", config))
    proc = subprocess.run(
        [sys.executable, str(REPO / "monitor_jobs.py"), "--cluster", "testbed", "--run-id",
         run.run_id, "--wait", "--interval", "2", "--json"],
        capture_output=True, text=True, env=dict(os.environ), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    with Cluster("testbed") as cluster:
        run = cluster.run(run_id=run.run_id)
        (attempt,) = cluster.store.attempts(run.run_id)
        assert attempt.task_indices == (1,) and attempt.resources["mem_gb"] == pytest.approx(0.4)
        assert attempt.cause == "retry policy: OUT_OF_MEMORY, retry 1 of 2"
        folder = run.collect(tmp_path / "results")
    metadata = json.loads((folder / "metadata.json").read_text())
    task = metadata["tasks"][1]
    assert [(a["state"], a["mem_gb"]) for a in task["attempts"]] == [
        ("OUT_OF_MEMORY", 0.2), ("COMPLETED", pytest.approx(0.4))
    ]
    assert "retry policy: OUT_OF_MEMORY, retry 1 of 2" in (folder / "summary.md").read_text()


def test_a_rerun_whose_answer_was_lost_is_adopted_not_submitted_twice(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from globtim_hpc.workflows.rerun import RerunRequest, build_spec
    from globtim_hpc.workflows.submit import SubmitContext
    from globtim_hpc.workflows.submit.attempt import _submit_command

    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    script = tmp_path / "once.jl"
    script.write_text(
        "function run_custom(params, outdir)\n    nothing\nend\n# stand-in: task 1 attempt 1: exit 3\n"
    )
    config = tmp_path / "once.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"script": str(script), "case": [0, 1]},
                                      "resources": {"time_min": 2, "mem_gb": 0.5, "cpus": 1}}))  # fmt: skip
    with Cluster("testbed") as cluster:
        run = cluster.submit(cluster.plan("custom", config))
        run.wait(timeout_s=600, interval_s=2)
        record, store = run.record, cluster.store
        # The rerun was recorded and its command reached SLURM, but the answer never came back.
        spec = build_spec(store, cluster.profile, record, {1: "FAILED"}, RerunRequest())
        assert store.claim_attempt(record.run_id, {1: 1}, spec.resources, spec.cause) == 2
        ctx = SubmitContext(cluster.profile, cluster.scheduler, store)
        lost = _submit_command(ctx, record, spec)
        assert store.task_attempt_numbers(record.run_id)[1] == 1  # the registry never heard
        again = run.rerun("failed")
        assert again.resumed and again.adopted and again.job_ids == [lost], again.to_dict()
        view = run.wait(timeout_s=600, interval_s=2)
        assert view.all_completed, view.counts()
    named = testbed.inhost(
        "falcon", "sacct", "-n", "-X", "-P", "-o", "JobID", f"--name={record.run_id}.a2",
        "-S", "now-1hours",
    ).stdout.split()
    assert {line.split("_", 1)[0] for line in named} == {lost}, named
