"""The four commands for an account whose login shell is tcsh (the bed's user globtimtc).

sshd runs every command as ``$SHELL -c LINE``; tcsh rejects a newline inside quotes and
expands ``!``, so this is where a multi-line remote script sent as it is would fail.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.transport.settings import SshClient
from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration

FIXTURE = REPO / "tests" / "fixtures" / "globtim_project"
PROFILE = "testbed-tcsh"


def _cli(*argv: str, timeout_s: float = 300) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, *argv, "--cluster", PROFILE, "--json"],
        capture_output=True, text=True, timeout=timeout_s, cwd=REPO, env=dict(os.environ),
    )
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _fixture_source(tmp_path: Path) -> Path:
    root = tmp_path / "GlobTim.jl"
    shutil.copytree(FIXTURE, root)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
        subprocess.run(
            ["git", "-C", str(root), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
            check=True, capture_output=True,
        )
    return root


@pytest.fixture(autouse=True, scope="module")
def tcsh_user(testbed: Testbed) -> None:
    """up.sh adds the tcsh user to a bed that is already up (a bed built by an older checkout's
    up.sh lacks it); on a bed that has it, it is a quick no-op."""
    testbed.script("up.sh")


def test_the_bed_user_logs_in_with_tcsh(testbed: Testbed) -> None:
    with open_transport("ssh", load_profile(PROFILE).ssh) as ssh:
        shell = ssh.run(["sh", "-c", 'printf "%s\\n" "$SHELL"']).check("echo $SHELL")
        assert shell.stdout_text.strip().endswith("/tcsh")


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
def test_multi_line_scripts_and_bangs_reach_sh_through_tcsh(
    testbed: Testbed, client: SshClient
) -> None:
    ssh_settings = load_profile(PROFILE).ssh
    assert ssh_settings is not None
    settings = dataclasses.replace(ssh_settings, client=client)
    script = 'read -r line\nprintf "%s|%s|%s\\n" "$line" "$1" "$(id -un)"\nexit 3\n'
    with open_transport("ssh", settings) as ssh:
        done = ssh.run(["sh", "-c", script, "sh", "it's x!y ünï"], stdin=b"in\n")
    assert (done.exit_status, done.stdout_text) == (3, "in|it's x!y ünï|globtimtc\n"), done.stderr_text


def test_deploy_submit_monitor_collect_with_a_tcsh_login_shell(
    testbed: Testbed, tmp_path: Path
) -> None:
    deployed = _cli("deploy_julia.py", "--source", str(_fixture_source(tmp_path)))
    assert deployed["ok"] is True
    submitted = _cli(
        "submit_julia_job.py", "--problem", "4d_benchmark", "--config", "configs/4d_benchmark.yaml"
    )
    job_id = str(submitted["job_id"])
    assert str(submitted["run_dir"]).startswith("/projects/globtimtc/")
    watched = _cli("monitor_jobs.py", "--job-id", job_id, "--wait", timeout_s=600)
    assert watched["ok"] is True
    collected = _cli(
        "collect_results.py", "--job-id", job_id, "--local-dir", str(tmp_path / "results")
    )
    assert collected["ok"] is True
    summaries = list((tmp_path / "results").glob("4d_benchmark/*/summary.md"))
    assert len(summaries) == 1, summaries
    statuses = list(summaries[0].parent.glob("status/*.json"))
    assert len(statuses) == int(str(submitted["task_count"]))


@pytest.mark.alone  # rewrites the tcsh user's .cshrc, which the other tcsh tests log in through
def test_the_doctor_reports_tcsh_and_a_cshrc_that_prints(testbed: Testbed) -> None:
    def login_shell() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "deploy_julia.py", "--cluster", PROFILE, "--check", "--json"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        rows = {row["name"]: row for row in json.loads(done.stdout)["checks"]}
        row: dict[str, object] = rows["login shell"]
        return row

    quiet = login_shell()
    assert quiet["status"] == "ok", quiet
    assert quiet["detail"] == "/usr/bin/tcsh (not POSIX; commands are sent in a form it accepts)"
    cshrc = "/home/globtimtc/.cshrc"
    testbed.inhost("falcon", "sh", "-c", f"echo 'echo Welcome to falcon' > {cshrc}")
    try:
        noisy = login_shell()
    finally:
        testbed.inhost("falcon", "rm", "-f", cshrc)
    assert noisy["status"] == "warn", noisy
    assert "Welcome to falcon" in str(noisy["detail"]) and "$?prompt" in str(noisy["fix"])
