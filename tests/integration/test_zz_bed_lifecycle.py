"""Last in the session: the bed comes down without a trace and back up, idempotently.

The file name sorts last so that the other integration tests run on the bed first.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import TESTBED_SCRIPTS, Testbed

pytestmark = pytest.mark.integration


def _script(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TESTBED_SCRIPTS / name)], capture_output=True, text=True, timeout=900
    )


def _leftovers(testbed: Testbed) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if netns.strip():
        found.append(f"namespaces: {netns.strip()}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if "tb-" in links:
        found.append("tb-* links")
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    if "10.77." in routes:
        found.append("10.77 routes")
    try:
        pwd.getpwnam("globtim")
        found.append("user globtim")
    except KeyError:
        pass
    if testbed.dir.exists():
        found.append(f"{testbed.dir}")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = (
                Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if str(testbed.dir) in cmd and "pytest" not in cmd:
            found.append(f"process {pid}: {cmd[:80]}")
    return found


@pytest.mark.disruptive
def test_down_leaves_nothing_and_up_is_idempotent(testbed: Testbed) -> None:
    if os.geteuid() != 0:
        pytest.fail("bringing the bed down and up needs root")
    down = _script("down.sh")
    assert down.returncode == 0, down.stderr
    assert _leftovers(testbed) == []
    first = _script("up.sh")
    assert first.returncode == 0, first.stderr
    start = time.monotonic()
    second = _script("up.sh")
    second_s = time.monotonic() - start
    assert second.returncode == 0
    assert "already up" in (second.stdout + second.stderr)
    print(f"second up.sh took {second_s:.2f} s")
    assert _script("status.sh").returncode == 0
