"""./submit_julia_job.py from the outside: dry runs touch nothing, bad configs exit 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def submit(*argv: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "submit_julia_job.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env_extra or {})},
    )


@pytest.mark.parametrize("cluster", ["local", "testbed"])
def test_dry_run_prints_tasks_script_and_plan_without_any_network(
    cluster: str, tmp_path: Path
) -> None:
    # A bed state folder that does not exist: any attempt to connect would fail loudly.
    env = {"GLOBTIM_TESTBED_DIR": str(tmp_path / "no-bed"), "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = submit(
        "--problem",
        "4d_benchmark",
        "--config",
        "configs/4d_benchmark.yaml",
        "--cluster",
        cluster,
        "--dry-run",
        env_extra=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("  task 00") == 8
    assert "'function': 'Rosenbrock'" in proc.stdout and "'degree': 10" in proc.stdout
    assert "#SBATCH --array=0-7%4" in proc.stdout
    assert "nothing was sent anywhere" in proc.stdout
    assert not (tmp_path / "data").exists()
    data = json.loads(
        submit(
            "--problem",
            "4d_benchmark",
            "--config",
            "configs/4d_benchmark.yaml",
            "--cluster",
            cluster,
            "--dry-run",
            "--json",
            env_extra=env,
        ).stdout
    )
    assert [t["task_id"] for t in data["plan"]["tasks"]] == [f"{i:04d}" for i in range(8)]
    assert {"path": "job.sbatch", "bytes": len(data["script"].encode())} in data["upload_plan"]


def test_dry_run_json_is_stable_across_invocations() -> None:
    first = json.loads(
        submit(
            "--problem",
            "4d_benchmark",
            "--config",
            "configs/4d_benchmark.yaml",
            "--dry-run",
            "--json",
        ).stdout
    )
    second = json.loads(
        submit(
            "--problem",
            "4d_benchmark",
            "--config",
            "configs/4d_benchmark.yaml",
            "--dry-run",
            "--json",
        ).stdout
    )
    assert first["plan"] == second["plan"]
    assert first["run_id"] != second["run_id"]


BAD_CONFIGS = {
    "unknown key": ("parameters:\n  degre: 4\n", "parameters.degre"),
    "wrong type": ("parameters:\n  degree: six\n", "parameters.degree"),
    "out of range": ("parameters:\n  degree: 400\n", "parameters.degree"),
    "YAML syntax error": ("parameters:\n  degree: [4, 6\n", None),
    "empty sweep list": ("parameters:\n  degree: []\n", "parameters.degree"),
    "absurd grid size": ("parameters:\n  samples_per_dim: 20736\n", "parameters.samples_per_dim"),
    "unknown problem": ("problem: 5d_nonsense\n", "problem"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_bad_configs_give_one_clear_message_and_exit_3(kind: str, tmp_path: Path) -> None:
    text, key = BAD_CONFIGS[kind]
    path = tmp_path / "job.yaml"
    path.write_text(text)
    proc = submit("--problem", "4d_benchmark", "--config", str(path), "--dry-run")
    assert proc.returncode == 3, (kind, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert str(path) in errors[0]
    if key is not None:
        assert f"key '{key}'" in errors[0], errors[0]
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_problem_on_the_command_line_lists_known_ones() -> None:
    proc = submit("--problem", "no_such_problem", "--dry-run")
    assert proc.returncode == 3
    assert "4d_benchmark" in proc.stderr and "deuflhard_2d" in proc.stderr


def test_missing_required_value_names_it(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("parameters:\n  label: x\n")
    proc = submit("--problem", "custom", "--config", str(path), "--dry-run")
    assert proc.returncode == 3
    assert "script" in proc.stderr and "missing required value" in proc.stderr


def test_list_problems() -> None:
    proc = submit("--list-problems", "--json")
    names = [p["name"] for p in json.loads(proc.stdout)["problems"]]
    assert {"4d_benchmark", "deuflhard_2d", "lotka_volterra_4d", "custom"} <= set(names)


def test_an_accepted_submission_with_an_odd_answer_is_never_treated_as_refused(
    tmp_path: Path,
) -> None:
    """sbatch exit 0 with no parsable id: look the job up by name; never delete the folder."""
    from globtim_hpc.registry.store import Store
    from globtim_hpc.scheduler.slurm import SlurmScheduler
    from globtim_hpc.settings.profile import load_profile
    from globtim_hpc.transport.base import CommandResult
    from globtim_hpc.transport.local import LocalTransport
    from globtim_hpc.workflows.submit import SubmitContext
    from globtim_hpc.workflows.submit.exactly_once import _accept

    profile_path = tmp_path / "p.yaml"
    profile_path.write_text(f"scheduler: slurm\nremote_root: {tmp_path / 'root'}\n")
    profile = load_profile(str(profile_path))
    run_id = "x_20260101-000000_abcdef01"
    run_dir = tmp_path / "root" / "runs" / run_id
    run_dir.mkdir(parents=True)

    asked: list[str] = []

    class Finder(SlurmScheduler):
        def find_job(self, run_id: str, run_dir: str) -> str | None:
            asked.append(run_id)
            return "4242"

    with Store.open(tmp_path / "state") as store:
        store.add_run(
            run_id=run_id,
            problem="x",
            cluster=profile.name,
            scheduler="slurm",
            remote_dir=str(run_dir),
            task_ids=["0000"],
            config_hash="h",
            deploy_id=None,
            git_sha=None,
            plan={"tasks": [], "resources": {}},
            submission=None,
        )
        record = store.get_run(run_id)
        assert record is not None
        ctx = SubmitContext(profile, Finder(LocalTransport()), store)
        answer = CommandResult(("sh",), 0, b"@@UPLOADED\nsbatch: a site plugin says hello\n", b"")
        assert _accept(ctx, record, answer) == "4242"
    assert asked == [run_id]
    assert run_dir.is_dir()
