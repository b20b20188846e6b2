"""Submission against the real test bed: SLURM on falcon through mack, and the local profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from globtim_hpc.errors import ConnectError, UsageError
from globtim_hpc.jobs.plan import build_plan
from globtim_hpc.models import RunPhase
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import ClusterProfile, load_profile
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.transport.ssh.chain import SshTransport
from globtim_hpc.workflows.submit import SubmitContext, submit_plan
from tests.integration.conftest import Testbed
from tests.integration.hooks import AfterCommand
from tests.runenv_support import make_default_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOSTILE = 'it\'s "quoted"; $(touch /tmp/globtim-canary) `touch /tmp/globtim-canary` a\nb  *?[x] ünï'


def cli(
    *argv: str, env: dict[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def wait_for_status(
    transport: Any, run_dir: str, task_ids: list[str], deadline_s: float = 120
) -> dict[str, dict[str, Any]]:
    """Read each task's status file until all say the task ended (or the deadline passes)."""
    end = time.monotonic() + deadline_s
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        for task_id in task_ids:
            if task_id in found:
                continue
            result = transport.run(["cat", f"{run_dir}/status/{task_id}.json"])
            if result.ok:
                data = json.loads(result.stdout_text)
                if data["state"] != "RUNNING":
                    found[task_id] = data
        if len(found) == len(task_ids):
            return found
        time.sleep(1.0)
    raise AssertionError(
        f"tasks {sorted(set(task_ids) - set(found))} of {run_dir} did not end in time"
    )


@pytest.fixture
def bed_profile(testbed: Testbed) -> ClusterProfile:
    return load_profile("testbed")


@pytest.fixture
def bed_transport(testbed: Testbed, bed_profile: ClusterProfile) -> Iterator[Any]:
    with open_transport("ssh", bed_profile.ssh) as transport:
        yield transport


def write_config(tmp_path: Path, data: dict[str, Any], name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def small_benchmark(tmp_path: Path, degrees: list[int] | int = 4, **resources: Any) -> Path:
    return write_config(
        tmp_path,
        {
            "parameters": {"function": "Sphere", "degree": degrees, "samples_per_dim": 6},
            "resources": {"preset": "quick", "cpus": 1, "mem_gb": 2, **resources},
        },
    )


def test_cli_submits_through_mack_and_job_runs_on_falcon(
    testbed: Testbed, bed_transport: Any, tmp_path: Path
) -> None:
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        "configs/4d_benchmark.yaml",
        "--cluster",
        "testbed",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["task_count"] == 8 and result["job_id"].isdigit()
    statuses = wait_for_status(bed_transport, result["run_dir"], ["0000"], deadline_s=180)
    assert statuses["0000"]["exit_code"] == 0
    assert statuses["0000"]["host"] == "falcon"
    assert statuses["0000"]["job_id"] is not None
    with Store.open() as store:
        run = store.get_run(result["run_id"])
        assert (
            run is not None and run.job_id == result["job_id"] and run.phase is RunPhase.SUBMITTED
        )
        assert len(store.task_rows(result["run_id"])) == 8
    # The whole array is one job (every task's array job id), found by its name exactly once.
    assert _job_ids_named(bed_transport, result["run_id"]) == {result["job_id"]}


def test_degree_sweep_is_one_throttled_array(
    bed_transport: Any, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    config = small_benchmark(tmp_path, [4, 6, 8, 10], max_parallel=2)
    plan = build_plan("4d_benchmark", config)
    with Store.open() as store:
        ctx = SubmitContext(bed_profile, SlurmScheduler(bed_transport), store)
        result = submit_plan(plan, ctx, deployment=None)
    script = bed_transport.run(["cat", f"{result.run_dir}/job.sbatch"]).check("cat").stdout_text
    assert "#SBATCH --array=0-3%2" in script
    assert result.remote_commands == 2  # pre-flight, then upload + sbatch in one command
    statuses = wait_for_status(bed_transport, result.run_dir, ["0000", "0001", "0002", "0003"])
    assert {s["array_job_id"] for s in statuses.values()} == {result.job_id}
    assert sorted(s["task_index"] for s in statuses.values()) == [0, 1, 2, 3]
    assert all(s["exit_code"] == 0 for s in statuses.values())


def test_hostile_values_reach_the_job_byte_exact(
    testbed: Testbed, bed_transport: Any, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    odd_dir = tmp_path / "my dir; $(touch canary) 'q' \"d\""
    odd_dir.mkdir()
    script = odd_dir / "it's a `script` $(x).jl"
    script.write_text("function run_custom(params, outdir)\n    nothing\nend\n")
    config = write_config(
        odd_dir,
        {
            "parameters": {"script": str(script), "label": HOSTILE, "tags": [HOSTILE, "-n"]},
            "resources": {"preset": "quick", "cpus": 1, "mem_gb": 2},
        },
    )
    plan = build_plan("custom", config)
    assert len(plan.tasks) == 2
    testbed.inhost("falcon", "rm", "-f", "/tmp/globtim-canary")
    with Store.open() as store:
        ctx = SubmitContext(bed_profile, SlurmScheduler(bed_transport), store)
        result = submit_plan(plan, ctx, deployment=None)
    statuses = wait_for_status(bed_transport, result.run_dir, ["0000", "0001"])
    assert all(s["exit_code"] == 0 for s in statuses.values()), statuses
    for task in plan.tasks:
        remote = bed_transport.run(["cat", f"{result.run_dir}/params/{task.task_id}.json"]).check(
            "cat"
        )
        assert json.loads(remote.stdout_text) == task.params
    assert (
        json.loads(bed_transport.run(["cat", f"{result.run_dir}/params/0000.json"]).stdout_text)[
            "label"
        ]
        == HOSTILE
    )
    shipped = bed_transport.run(["cat", f"{result.run_dir}/user/script.jl"]).check("cat").stdout
    assert shipped == script.read_bytes()
    for host in ("falcon", "mack"):
        assert (
            testbed.inhost(host, "test", "-e", "/tmp/globtim-canary", check=False).returncode == 1
        )
    assert not (Path.cwd() / "canary").exists() and not Path("/tmp/globtim-canary").exists()


def _job_ids_named(transport: Any, run_id: str, deadline_s: float = 60) -> set[str]:
    """Every job SLURM knows under this name: squeue (all states) plus sacct, which is fed
    asynchronously, so it is polled until it has an entry."""
    end = time.monotonic() + deadline_s
    while True:
        live = transport.run(["squeue", "-h", "-t", "all", "-n", run_id, "-o", "%F"]).stdout_text
        accounted = transport.run(
            ["sacct", "-n", "-X", "-P", "--name", run_id, "-o", "JobID", "-S", "now-1hour"]
        ).stdout_text
        ids = {line.split("_")[0] for line in (live + accounted).split()}
        if accounted.strip() or time.monotonic() > end:
            return ids
        time.sleep(1)


class LostAnswer(Exception):
    pass


@pytest.mark.disruptive
def test_connection_cut_after_sbatch_adopts_the_job(
    testbed: Testbed, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    """The answer to upload+sbatch is lost with the connection: the retry adopts, never resubmits."""
    plan = build_plan("4d_benchmark", small_benchmark(tmp_path))
    assert bed_profile.ssh is not None
    cut = {"done": False}

    def cut_connection(_answer: CommandResult) -> None:
        if not cut["done"]:
            cut["done"] = True
            testbed.script("sshd.sh", "mack", "kill-sessions")
            raise ConnectError(
                "the connection dropped before the answer arrived", hop="mack", transient=True
            )

    with SshTransport(bed_profile.ssh) as transport, Store.open() as store:
        cutting = AfterCommand(transport, "globtim-submit", cut_connection)
        ctx = SubmitContext(bed_profile, SlurmScheduler(cutting), store)
        result = submit_plan(plan, ctx, deployment=None)
        assert cut["done"] and result.adopted
        assert transport.connection_count >= 2  # the chain was really rebuilt
        run = store.get_run(result.run_id)
        assert run is not None and run.job_id == result.job_id
        ids = _job_ids_named(transport, result.run_id)
    assert ids == {result.job_id}


def _submit_and_die_after_sbatch(
    plan: Any, profile: ClusterProfile, transport: Any, store: Store
) -> Any:
    """Submit as a process killed right after sbatch would: the run is left SUBMITTING."""

    def die(_answer: CommandResult) -> None:
        raise LostAnswer("the process was killed right after sbatch")

    dying = AfterCommand(transport, "globtim-submit", die)
    ctx = SubmitContext(profile, SlurmScheduler(dying), store)
    with pytest.raises(LostAnswer):
        submit_plan(plan, ctx, deployment=None)
    [pending] = store.unfinished_submissions(profile.name, plan.config_hash)
    return pending


def test_interrupted_process_is_recovered_by_the_next_invocation(
    testbed: Testbed, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    plan = build_plan("4d_benchmark", small_benchmark(tmp_path, 6))

    with open_transport("ssh", bed_profile.ssh) as transport, Store.open() as store:
        pending = _submit_and_die_after_sbatch(plan, bed_profile, transport, store)
        assert pending.phase is RunPhase.SUBMITTING and pending.job_id is None
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        str(tmp_path / "job.yaml"),
        "--cluster",
        "testbed",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["run_id"] == pending.run_id and result["resumed"] and result["adopted"]
    with open_transport("ssh", bed_profile.ssh) as transport:
        ids = _job_ids_named(transport, pending.run_id)
    assert ids == {result["job_id"]}


def test_a_resume_whose_inputs_changed_is_refused_and_new_starts_over(
    testbed: Testbed, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    """The saved archive was made for no deployment; a deployment appeared since: refuse."""
    plan = build_plan("4d_benchmark", small_benchmark(tmp_path, 6))
    other = {"deploy_id": "deploy-since", "remote_dir": f"{testbed.remote_root}/code/x"}
    with open_transport("ssh", bed_profile.ssh) as transport, Store.open() as store:
        pending = _submit_and_die_after_sbatch(plan, bed_profile, transport, store)
        (lost,) = _job_ids_named(transport, pending.run_id)  # sbatch had taken it
        ctx = SubmitContext(bed_profile, SlurmScheduler(transport), store)
        with pytest.raises(UsageError) as caught:
            submit_plan(plan, ctx, deployment=other)
        assert pending.run_id in caught.value.message and "deploy_id" in caught.value.message
        assert "--new" in (caught.value.hint or "")
        assert _job_ids_named(transport, pending.run_id) == {lost}  # nothing more was sent
        # The same inputs as before resume it: the lost job is adopted, not submitted again.
        resumed = submit_plan(plan, ctx, deployment=None)
        assert resumed.run_id == pending.run_id and resumed.adopted and resumed.job_id == lost
        assert _job_ids_named(transport, pending.run_id) == {lost}


def _remote_runs(testbed: Testbed) -> list[str]:
    return sorted(
        testbed.as_user(
            "falcon", f"ls -a {testbed.remote_root}/runs 2>/dev/null || true"
        ).stdout.split()
    )


@pytest.mark.alone  # compares the listing of the runs folder every test writes to
def test_full_home_is_refused_before_anything_is_written(testbed: Testbed, tmp_path: Path) -> None:
    before = _remote_runs(testbed)
    testbed.as_user("falcon", "dd if=/dev/zero of=$HOME/fill bs=1M count=64 2>/dev/null || true")
    try:
        proc = cli(
            "submit_julia_job.py",
            "--problem",
            "4d_benchmark",
            "--config",
            str(small_benchmark(tmp_path)),
            "--cluster",
            "testbed",
        )
    finally:
        testbed.as_user("falcon", "rm -f $HOME/fill")
    assert proc.returncode == 1, proc.stderr
    assert "home falcon:/home/globtim is full" in proc.stderr and "hint:" in proc.stderr
    assert _remote_runs(testbed) == before
    with Store.open() as store:
        assert store.list_runs() == []


def test_unwritable_remote_root_is_refused_before_anything_is_written(
    testbed: Testbed, tmp_path: Path
) -> None:
    testbed.inhost("falcon", "mkdir", "-p", "/projects/locked")
    testbed.inhost("falcon", "chmod", "0755", "/projects/locked")
    profile = yaml.safe_load((REPO / "configs" / "testbed.yaml").read_text())
    profile["remote_root"] = "/projects/locked/hpc"
    path = write_config(tmp_path, profile, "locked.yaml")
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        str(small_benchmark(tmp_path)),
        "--cluster",
        str(path),
    )
    assert proc.returncode == 1
    assert "/projects/locked/hpc is not writable" in proc.stderr
    assert testbed.inhost("falcon", "ls", "-A", "/projects/locked").stdout == ""
    with Store.open() as store:
        assert store.list_runs() == []


@pytest.mark.alone  # compares the listing of the runs folder every test writes to
def test_invalid_partition_shows_slurms_message_and_exit_5(
    testbed: Testbed, tmp_path: Path
) -> None:
    before = _remote_runs(testbed)
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        str(small_benchmark(tmp_path, partition="nosuchpart")),
        "--cluster",
        "testbed",
    )
    assert proc.returncode == 5, proc.stderr
    assert "invalid partition" in proc.stderr.lower()
    assert "sinfo" in proc.stderr  # the hint
    assert "--test-only" in proc.stderr  # refused by the pre-flight, before any upload
    assert _remote_runs(testbed) == before
    with Store.open() as store:
        assert store.list_runs() == []


@pytest.mark.alone  # compares the listing of the runs folder every test writes to
def test_refusal_at_sbatch_itself_removes_the_run_folder(testbed: Testbed, tmp_path: Path) -> None:
    """With the pre-flight's test-only check off, sbatch's own refusal leaves nothing behind."""
    profile = yaml.safe_load((REPO / "configs" / "testbed.yaml").read_text())
    profile["slurm"]["test_only"] = False
    path = write_config(tmp_path, profile, "no-test-only.yaml")
    before = _remote_runs(testbed)
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        str(small_benchmark(tmp_path, cpus=64)),
        "--cluster",
        str(path),
    )
    assert proc.returncode == 5, proc.stderr
    assert "CPU request" in proc.stderr and "--test-only" not in proc.stderr
    assert _remote_runs(testbed) == before
    with Store.open() as store:
        [run] = store.list_runs()
        assert run.phase is RunPhase.ABANDONED and run.job_id is None


def test_local_profile_runs_the_stand_in_without_ssh_or_slurm(tmp_path: Path) -> None:
    env = {
        "PATH": f"{REPO / 'tests' / 'stand_in'}{os.pathsep}{os.environ['PATH']}",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    # No deployment: the job loads the driver's packages from the depot's default environment.
    make_default_env(tmp_path / "data" / "globtim-hpc" / "local" / "depot")
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        str(small_benchmark(tmp_path, [4, 6])),
        "--cluster",
        "local",
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["scheduler"] == "direct" and result["job_id"].startswith("d")
    assert result["run_dir"].startswith(str(tmp_path / "data"))
    from globtim_hpc.transport.local import LocalTransport

    statuses = wait_for_status(LocalTransport(), result["run_dir"], ["0000", "0001"])
    assert all(s["exit_code"] == 0 for s in statuses.values())
    assert (Path(result["run_dir"]) / "output" / "0001" / "results.json").is_file()
    with Store.open() as store:
        run = store.get_run(result["run_id"])
        assert run is not None and run.cluster == "local" and run.job_id == result["job_id"]


def test_local_profile_without_julia_says_so(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = cli(
        "submit_julia_job.py",
        "--problem",
        "4d_benchmark",
        "--config",
        "configs/4d_benchmark.yaml",
        env=env,
    )
    assert proc.returncode == 3
    assert "Julia was not found" in proc.stderr and "--cluster" in proc.stderr
    assert not (tmp_path / "data").exists()


class ForgetfulScheduler(SlurmScheduler):
    """SLURM after MinJobAge with accounting off: it no longer knows any finished job."""

    def find_job(self, run_id: str, run_dir: str) -> str | None:
        return None


def test_a_job_slurm_has_forgotten_is_adopted_from_its_own_traces(
    testbed: Testbed, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    plan = build_plan("4d_benchmark", small_benchmark(tmp_path, 8))

    with open_transport("ssh", bed_profile.ssh) as transport, Store.open() as store:
        pending = _submit_and_die_after_sbatch(plan, bed_profile, transport, store)
        statuses = wait_for_status(transport, pending.remote_dir, ["0000"])
        original = statuses["0000"]["array_job_id"]
        forgetful = SubmitContext(bed_profile, ForgetfulScheduler(transport), store)
        result = submit_plan(plan, forgetful, deployment=None)
        assert result.run_id == pending.run_id and result.adopted and result.job_id == original
        assert _job_ids_named(transport, pending.run_id) == {original}


def test_the_same_submission_twice_at_once_makes_one_job_per_run(
    testbed: Testbed, bed_profile: ClusterProfile, tmp_path: Path
) -> None:
    """Two commands started together, again and again: every run they report has exactly one
    job, no run folder is ever nested in another, and both always exit cleanly."""
    argv = [sys.executable, "submit_julia_job.py", "--problem", "4d_benchmark", "--cluster",
            "testbed", "--json", "--no-deployment"]  # fmt: skip
    reported: set[str] = set()
    for round_index in range(6):
        folder = tmp_path / f"round{round_index}"
        folder.mkdir()
        config = small_benchmark(folder)
        pair = [
            subprocess.Popen(
                [*argv, "--config", str(config)], cwd=REPO, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
            )
            for _ in range(2)
        ]
        answers = [proc.communicate(timeout=300) for proc in pair]
        for proc, (out, err) in zip(pair, answers, strict=True):
            assert proc.returncode == 0, err
            reported.add(json.loads(out)["run_id"])
    with open_transport("ssh", bed_profile.ssh) as transport:
        for run_id in reported:
            assert len(_job_ids_named(transport, run_id)) == 1, run_id
        nested = transport.run(
            ["sh", "-c", 'ls -d -- "$1"/runs/*/*_????????-??????_* 2>/dev/null || true', "x",
             bed_profile.remote_root]
        ).stdout_text.split()  # fmt: skip
    assert nested == []
