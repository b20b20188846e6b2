"""The four commands: --help, start-up cost, error reporting and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["submit_julia_job.py", "monitor_jobs.py", "collect_results.py", "deploy_julia.py"]


def run(*argv: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=120, cwd=REPO
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_and_documents_exit_codes(script: str) -> None:
    proc = run(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--cluster" in proc.stdout and "--json" in proc.stdout
    assert "exit codes:" in proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_entry_scripts_are_executable_and_small(script: str) -> None:
    path = REPO / script
    assert path.stat().st_mode & 0o111
    code_lines = [
        line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert len(code_lines) <= 4


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_imports_no_heavy_modules(script: str) -> None:
    proc = run("-X", "importtime", script, "--help")
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("paramiko", "jinja2", "cryptography", "rich"):
        assert not any(name == heavy or name.startswith(heavy + ".") for name in imported), heavy


@pytest.mark.parametrize("script", SCRIPTS)
def test_show_config_prints_resolved_testbed_profile(script: str) -> None:
    proc = run(script, "--show-config", "--cluster", "testbed")
    assert proc.returncode == 0, proc.stderr
    assert "ssh.target" in proc.stdout and "falcon" in proc.stdout
    proc = run(script, "--show-config", "--cluster", "testbed", "--json")
    data = json.loads(proc.stdout)
    assert data["settings"]["remote_root"]["value"] == "/projects/globtim/hpc"
    assert data["settings"]["ssh.keepalive_s"]["layer"] == "default"


def test_json_errors_are_one_object_on_stdout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense_key: 1\n")
    proc = run("submit_julia_job.py", "--show-config", "--cluster", str(bad), "--json")
    assert proc.returncode == 3
    payload = json.loads(proc.stdout)
    assert payload["ok"] is False and payload["error"]["exit_code"] == 3
    assert "nonsense_key" in payload["error"]["message"]


def test_debug_shows_traceback_only_when_asked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense_key: 1\n")
    quiet = run("submit_julia_job.py", "--show-config", "--cluster", str(bad))
    loud = run("submit_julia_job.py", "--show-config", "--cluster", str(bad), "--debug")
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
    assert quiet.returncode == loud.returncode == 3


def test_unknown_flag_is_a_usage_error() -> None:
    proc = run("submit_julia_job.py", "--no-such-flag")
    assert proc.returncode == 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_disconnect_without_a_shared_connection_says_so_and_does_nothing_else(
    script: str,
) -> None:
    # the built-in client (the testbed profile) keeps no connection between commands: nothing
    # to end, and no connection is made to find that out
    proc = run(script, "--cluster", "testbed", "--disconnect", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "cluster": "testbed", "disconnected": False}
    plain = run(script, "--cluster", "local", "--disconnect")
    assert plain.returncode == 0 and "no shared connection" in plain.stdout, plain.stdout
