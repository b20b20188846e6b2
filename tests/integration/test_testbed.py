"""The test bed is what it claims to be: three hosts, one path, real SLURM."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
import uuid

import pytest

from tests.integration.conftest import Testbed

pytestmark = pytest.mark.integration


def test_laptop_cannot_reach_falcon_directly(testbed: Testbed) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        with pytest.raises(OSError) as info:
            sock.connect(("10.77.2.2", 22))
    assert info.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    direct = subprocess.run(
        [
            "ssh",
            "-F",
            str(testbed.ssh_config),
            "-o",
            "ProxyJump=none",
            "-o",
            "ConnectTimeout=3",
            "falcon",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert direct.returncode != 0 and "No route to host" in direct.stderr


def test_openssh_reaches_falcon_through_mack(testbed: Testbed) -> None:
    assert testbed.as_user("falcon", "hostname").stdout.strip() == "falcon"
    assert testbed.as_user("mack", "hostname").stdout.strip() == "mack"


def test_homes_are_private_and_projects_is_shared(testbed: Testbed) -> None:
    name = f"bed-check-{uuid.uuid4().hex[:8]}"
    testbed.as_user("falcon", f"echo private > ~/{name}")
    try:
        assert testbed.as_user("mack", f"test -e ~/{name}", check=False).returncode == 1
    finally:
        testbed.as_user("falcon", f"rm -f ~/{name}")
    testbed.as_user("mack", f"echo shared > /projects/globtim/{name}")
    try:
        assert testbed.as_user("falcon", f"cat /projects/globtim/{name}").stdout == "shared\n"
    finally:
        testbed.as_user("mack", f"rm -f /projects/globtim/{name}")
    # The laptop does not see the fileserver's export.
    assert not os.path.exists(f"/projects/globtim/{name}")


def test_falcon_home_is_small(testbed: Testbed) -> None:
    out = testbed.as_user("falcon", "df -Pk ~ | awk 'NR==2 {print $2}'").stdout.strip()
    assert int(out) <= 64 * 1024


def test_slurm_works_for_the_test_user(testbed: Testbed) -> None:
    job_id = testbed.as_user("falcon", "sbatch --parsable --wrap 'hostname'").stdout.strip()
    assert job_id.isdigit()
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = testbed.as_user(
            "falcon", f"sacct -n -X -P -j {job_id} -o State", check=False
        ).stdout.strip()
        if state == "COMPLETED":
            break
        time.sleep(1)
    assert state == "COMPLETED"
    assert testbed.as_user("falcon", f"squeue -h -j {job_id}", check=False).stdout.strip() == ""


@pytest.mark.disruptive
def test_sacct_fails_as_slurm_says_with_accounting_off(testbed: Testbed) -> None:
    testbed.script("accounting.sh", "off")
    try:
        proc = testbed.as_user("falcon", "sacct -n", check=False)
        assert proc.returncode == 1
        assert "Slurm accounting storage is disabled" in proc.stderr
        assert testbed.as_user("falcon", "sbatch --parsable --wrap true").stdout.strip().isdigit()
    finally:
        testbed.script("accounting.sh", "on")
    assert testbed.as_user("falcon", "sacct -n -X", check=False).returncode == 0
