"""./monitor_jobs.py against the bed: --wait exit codes, --json, --follow, and --watch in a terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.factory import open_transport
from tests.integration.conftest import REPO, Testbed
from tests.integration.monitor_support import BedRun, submit_run, unique_base

pytestmark = pytest.mark.integration

PYTHON = str(REPO / ".venv" / "bin" / "python")
MONITOR = str(REPO / "monitor_jobs.py")


@dataclass
class Cli:
    transport: Transport
    scheduler: SlurmScheduler
    base: str
    profile: str

    def submit(self, name: str, body: str, *, task_count: int = 1) -> BedRun:
        with Store.open() as store:
            return submit_run(
                self.transport, self.scheduler, store, self.base, name, body, task_count=task_count
            )

    def monitor(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, MONITOR, "--cluster", self.profile, *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=_env(),
            cwd=REPO,
        )


def _env() -> dict[str, str]:
    return {**os.environ, "GLOBTIM_HPC_POLL_FLOOR_S": "1"}


@pytest.fixture
def cli(testbed: Testbed) -> Iterator[Cli]:
    profile = load_profile(str(testbed.profile))
    with open_transport("ssh", profile.ssh) as transport:
        base = unique_base(transport)
        try:
            yield Cli(transport, SlurmScheduler(transport), base, str(testbed.profile))
        finally:
            transport.run(["rm", "-rf", base])


def test_wait_exit_codes_and_json(cli: Cli) -> None:
    good = cli.submit("cli_good", "sleep 1", task_count=2)
    bad = cli.submit("cli_bad", "exit 4")

    waited = cli.monitor("--job-id", good.job_id, "--wait", "--interval", "1")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "2 COMPLETED" in waited.stdout

    failed = cli.monitor("--job-id", bad.job_id, "--wait", "--interval", "1", "--json")
    assert failed.returncode == 6, failed.stdout + failed.stderr
    payload = json.loads(failed.stdout)  # one object, nothing else on stdout
    (run,) = payload["runs"]
    assert (run["run_id"], run["job_id"], run["all_final"]) == (bad.run_id, bad.job_id, True)
    (task,) = run["tasks"]
    assert (task["state"], task["exit_code"], task["task_id"]) == ("FAILED", 4, "0000")
    assert "status-file" in task["sources"]
    assert payload["all_completed"] is False
    assert any(c["new_state"] == "FAILED" for c in payload["changes"])

    # Both runs are final: a plain look reports them from the registry, and nothing changed.
    again = cli.monitor("--run-id", good.run_id, "--run-id", bad.run_id, "--json")
    assert again.returncode == 0
    shown = json.loads(again.stdout)
    assert [r["polled"] for r in shown["runs"]] == [False, False] and shown["changes"] == []

    unknown = cli.monitor("--job-id", "424242")
    assert unknown.returncode == 2 and "no run with job id 424242" in unknown.stderr


def test_follow_prints_the_task_output(cli: Cli) -> None:
    run = cli.submit("cli_follow", "for i in 1 2 3; do echo line-$i; sleep 1; done")
    followed = cli.monitor("--job-id", run.job_id, "--follow", "0", "--interval", "1")
    assert followed.returncode == 0, followed.stderr
    assert [line for line in followed.stdout.splitlines() if line.startswith("line-")] == [
        "line-1",
        "line-2",
        "line-3",
    ]
    assert "COMPLETED" in followed.stderr


def _tmux(socket: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_watch_updates_one_table_in_place(cli: Cli, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed to test --watch in a real terminal"
    run = cli.submit("cli_watch", "sleep 4", task_count=4)
    socket = f"globtim-monitor-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "exit_code"
    command = " ".join(
        [
            # pytest exports COLUMNS/LINES of its own; the pane's real size must win
            "env",
            "-u",
            "COLUMNS",
            "-u",
            "LINES",
            *(f"{k}={v}" for k, v in _env().items() if k.startswith(("GLOBTIM_", "XDG_"))),
            "TERM=xterm-256color",
            PYTHON,
            MONITOR,
            "--cluster",
            cli.profile,
            "--run-id",
            run.run_id,
            "--watch",
            "--interval",
            "1",
            f"; echo $? > {marker}; sleep 600",
        ]
    )
    _tmux(socket, "new-session", "-d", "-x", "160", "-y", "50", "-s", "watch", command)
    screens: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, "--watch did not end:\n" + (
                screens[-1] if screens else ""
            )
            screen = _tmux(socket, "capture-pane", "-p", "-t", "watch")
            if not screens or screen != screens[-1]:
                screens.append(screen)
            time.sleep(0.3)
        screens.append(_tmux(socket, "capture-pane", "-p", "-t", "watch"))
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)

    title = f"run {run.run_id}"
    drawn = [s for s in screens if title in s]
    assert drawn, "the table never appeared"
    # In place: every screen shows exactly one table, however many polls happened.
    assert all(s.count(title) == 1 for s in drawn), next(s for s in drawn if s.count(title) != 1)
    assert any("RUNNING" in s or "PENDING" in s for s in drawn), "no live state was ever shown"
    final = drawn[-1]
    assert "4 task(s): 4 COMPLETED" in final and "all tasks final" in final
    assert "4/4 final" in final
    assert len({s for s in drawn}) >= 2, "the table never changed"
    assert marker.read_text().strip() == "0"
