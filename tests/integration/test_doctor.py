"""deploy_julia.py --check against the test bed: green when healthy, and each injected fault
(accounting off, falcon's home full, depot not writable, unknown host key) flagged with a fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration


def doctor(profile: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy_julia.py"), "--cluster", str(profile), "--check",
         "--json", *extra],
        capture_output=True, text=True, timeout=300,
    )
    try:
        payload: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"--check --json printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, payload


def by_name(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in payload["checks"]}


def failed(payload: dict[str, Any]) -> set[str]:
    return {check["name"] for check in payload["checks"] if check["status"] == "fail"}


def test_healthy_bed_is_all_green(testbed: Testbed) -> None:
    code, payload = doctor(testbed.profile)
    checks = by_name(payload)
    assert code == 0 and payload["ok"] is True, payload
    for name in (
        "ssh mack (globtim@10.77.1.2:22)", "ssh falcon (globtim@10.77.2.2:22)", "home folder",
        "remote root", "Julia depot", "Julia", "sbatch --test-only", "sacct (accounting)",
        "compute node sees run folders", "login shell",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["login shell"]["detail"] == "/bin/bash (POSIX)"
    # informational rows never fail: the bed's compute node has no internet
    internet = checks["compute node internet"]
    assert internet["status"] == "info" and internet["required"] is False
    assert "cannot reach" in internet["detail"]


@pytest.mark.alone  # fills falcon's home and locks this checkout's depot: every job would see it
def test_home_full_and_depot_not_writable_are_flagged_with_fixes(testbed: Testbed) -> None:
    depot = f"{testbed.remote_root}/depot"
    try:
        testbed.as_user("falcon", "dd if=/dev/zero of=~/fill bs=1M count=40 2>/dev/null; true")
        testbed.as_user("falcon", f"mkdir -p {depot} && chmod a-w {depot}")
        code, payload = doctor(testbed.profile)
    finally:
        testbed.as_user("falcon", "rm -f ~/fill", check=False)
        testbed.as_user("falcon", f"chmod u+w {depot}", check=False)
    checks = by_name(payload)
    assert code == 1 and payload["ok"] is False
    # other checks are not asserted green here: other test sessions share the bed's SLURM
    assert {"home folder", "Julia depot"} <= failed(payload), payload
    assert not {"remote root", "Julia"} & failed(payload), payload
    home = checks["home folder"]
    assert "only 0.0 MB free" in home["detail"] and "du -sh" in home["fix"]
    depot_check = checks["Julia depot"]
    assert "not writable" in depot_check["detail"] and "chmod" in depot_check["fix"]
    assert checks["sbatch --test-only"]["status"] == "ok"  # the rest still ran

    _code, payload = doctor(testbed.profile)
    # and both are well again once the faults are gone (the whole table is asserted green in
    # test_healthy_bed_is_all_green; other sessions may be injecting their own faults now)
    assert not {"home folder", "Julia depot"} & failed(payload), payload


@pytest.mark.disruptive
def test_accounting_off_is_flagged(testbed: Testbed) -> None:
    try:
        testbed.script("accounting.sh", "off")
        code, payload = doctor(testbed.profile)
    finally:
        # other test sessions may hold the bed's lock for a while: wait for it, then restore
        testbed.script("accounting.sh", "on", timeout_s=900)
    checks = by_name(payload)
    assert code == 1 and "sacct (accounting)" in failed(payload), payload
    sacct = checks["sacct (accounting)"]
    assert "accounting storage is disabled" in sacct["detail"].lower()
    assert "slurmdbd" in sacct["fix"]


def test_unknown_host_key_of_the_jump_host_stops_at_that_hop(testbed: Testbed, tmp_path: Path) -> None:
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    profile = tmp_path / "bed-unknown-keys.yaml"
    profile.write_text(
        testbed.profile.read_text().replace(
            "  host_key_policy: strict\n",
            f"  host_key_policy: strict\n  known_hosts: [{empty_known_hosts}]\n",
        )
    )
    code, payload = doctor(profile)
    checks = by_name(payload)
    assert code == 4 and payload["connected"] is False, payload
    mack = checks["ssh mack (globtim@10.77.1.2:22)"]
    assert mack["status"] == "fail" and "host key" in mack["detail"] and mack["fix"]
    assert checks["ssh falcon (globtim@10.77.2.2:22)"]["status"] == "skip"
    assert checks["remote root"]["status"] == "skip"
