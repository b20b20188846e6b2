"""The three-host test bed as a pytest fixture.

Uses a bed that is already up, or brings it up once per session (as root). If it cannot be
brought up, every integration test fails with the reason: they are never silently skipped.

Several checkouts may test against the one bed at once: each gets its own remote root and
stand-in copy (bedenv.py), and a test marked ``disruptive`` (it stops daemons, drops
connections or reconfigures SLURM) runs alone, holding the bed's test lock exclusively while
every other integration test holds it shared.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration import bedenv

bedenv.export_environment()  # before any test reads configs/testbed.yaml

REPO = Path(__file__).resolve().parent.parent.parent
TESTBED_SCRIPTS = REPO / "tests" / "testbed"


def _testbed_dir() -> Path:
    return bedenv.testbed_dir()


@dataclass(frozen=True)
class Testbed:
    __test__ = False  # a fixture's value, not a test class

    dir: Path

    @property
    def client_dir(self) -> Path:
        return self.dir / "client"

    @property
    def ssh_config(self) -> Path:
        return self.client_dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.client_dir / "known_hosts"

    @property
    def identity(self) -> Path:
        return self.client_dir / "id_ed25519"

    @property
    def profile(self) -> Path:
        return REPO / "configs" / "testbed.yaml"

    @property
    def remote_root(self) -> str:
        return bedenv.remote_root()

    def inhost(
        self, host: str, *argv: str, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run argv as root inside a bed host (for fault injection and checks)."""
        return subprocess.run(
            ["bash", str(TESTBED_SCRIPTS / "inhost.sh"), host, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout_s,
        )

    def as_user(
        self, host: str, script: str, *, check: bool = True, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet as the bed's user on a host (through OpenSSH, like a person would)."""
        return subprocess.run(
            ["ssh", "-F", str(self.ssh_config), host, script],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def script(
        self, name: str, *argv: str, timeout_s: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(TESTBED_SCRIPTS / name), *argv],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout_s,
        )


def _bring_up() -> None:
    ok, report = _status_ok()
    if ok:
        return
    if os.geteuid() != 0:
        pytest.fail(f"the test bed is not up and bringing it up needs root:\n{report}")
    proc = subprocess.run(
        ["bash", str(TESTBED_SCRIPTS / "up.sh")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        pytest.fail(f"tests/testbed/up.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    ok, report = _status_ok()
    if not ok:
        pytest.fail(f"the test bed is not healthy after up.sh:\n{report}")


def _status_ok() -> tuple[bool, str]:
    proc = subprocess.run(
        ["bash", str(TESTBED_SCRIPTS / "status.sh")], capture_output=True, text=True, timeout=60
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    with bedenv.setup_lock():  # parallel workers: one brings the bed up, the others wait
        _bring_up()
        if bedenv.first_in_test_run("stand-in"):
            bedenv.install_stand_in(force=True)  # this checkout's stand-in, as it is now
            bedenv.install_default_env()  # for runs submitted without a deployment
    yield Testbed(dir=_testbed_dir())


@pytest.fixture(autouse=True)
def bed_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    exclusive = any(request.node.get_closest_marker(name) for name in ("disruptive", "alone"))
    with bedenv.bed_lock(exclusive=exclusive):
        if "testbed" in request.fixturenames:
            # A disruptive test elsewhere may have rebuilt the bed, and the copy with it.
            bedenv.install_stand_in()
        yield
