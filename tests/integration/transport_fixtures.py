"""Fixtures for the transport tests: transports on the test bed and on this machine.

Import the fixtures you use into the test module (pytest finds them there).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.transport.openssh.transport import OpenSshTransport
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.chain import SshTransport
from tests.integration.conftest import Testbed

SSHD_LOG = "logs/mack-sshd.log"


@dataclass
class Target:
    """A transport plus a private scratch folder on the host it reaches."""

    kind: str
    transport: Transport
    scratch: str


def bed_settings(testbed: Testbed, **changes: object) -> SshSettings:
    """Settings for falcon through mack, as the bed's own ssh_config describes them."""
    values: dict[str, object] = {
        "target": "falcon",
        "config_file": str(testbed.ssh_config),
        "connect_retries": 1,
        "connect_timeout_s": 10.0,
    }
    values.update(changes)
    return SshSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def control_dir() -> Iterator[str]:
    """A short private folder for the OpenSSH transport's sockets; every master started in
    it is stopped at the end of the session."""
    folder = tempfile.mkdtemp(prefix="gh-", dir="/tmp")
    try:
        yield folder
    finally:
        for socket_path in Path(folder).glob("cm-*"):
            if socket_path.is_socket():
                subprocess.run(
                    ["ssh", "-F", "none", "-o", f"ControlPath={socket_path}", "-O", "exit", "x"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
        shutil.rmtree(folder, ignore_errors=True)


def openssh_settings(testbed: Testbed, control_dir: str, **changes: object) -> SshSettings:
    """bed_settings for the OpenSSH transport, its sockets in ``control_dir``."""
    return bed_settings(testbed, client="openssh", control_dir=control_dir, **changes)


@pytest.fixture(
    params=[
        "local",
        pytest.param("ssh", marks=pytest.mark.integration),
        pytest.param("openssh", marks=pytest.mark.integration),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "local":
        with LocalTransport() as local:
            yield Target("local", local, str(tmp_path))
        return
    testbed: Testbed = request.getfixturevalue("testbed")
    remote: Transport
    if request.param == "openssh":
        remote = OpenSshTransport(openssh_settings(testbed, request.getfixturevalue("control_dir")))
    else:
        remote = SshTransport(bed_settings(testbed))
    with remote:
        scratch = remote.run(["mktemp", "-d", "/tmp/globtim-contract.XXXXXX"]).check("mktemp")
        folder = scratch.stdout_text.strip()
        try:
            yield Target(request.param, remote, folder)
        finally:
            remote.run(["rm", "-rf", "--", folder])


@pytest.fixture
def known_hosts_copy(testbed: Testbed, tmp_path: Path) -> Path:
    """A private copy of the bed's known_hosts that a test may rewrite freely."""
    copy = tmp_path / "known_hosts"
    shutil.copyfile(testbed.known_hosts, copy)
    return copy


def known_hosts_without(path: Path, host: str) -> None:
    """Drop every line naming ``host`` (by name, in any of the entry's host patterns)."""
    keep = [
        line
        for line in path.read_text().splitlines(keepends=True)
        if host not in re.split(r"[,\s\[\]]", line.split(" ", 1)[0])
    ]
    path.write_text("".join(keep))


def sshd_connections(testbed: Testbed) -> list[str]:
    """The 'Connection from' lines mack's sshd has logged so far (one per TCP connection)."""
    log = testbed.dir / SSHD_LOG
    return [
        line for line in log.read_text(errors="replace").splitlines() if "Connection from" in line
    ]


def wait_for_log_quiet(testbed: Testbed, settle_s: float = 0.5) -> None:
    """sshd writes its log asynchronously; wait until the line count stops changing."""
    before = -1
    while True:
        now = len(sshd_connections(testbed))
        if now == before:
            return
        before = now
        time.sleep(settle_s)


def paramiko_threads() -> list[threading.Thread]:
    import paramiko

    return [t for t in threading.enumerate() if isinstance(t, paramiko.Transport) and t.is_alive()]


def open_socket_fds() -> set[str]:
    """Socket inodes held by this process (from /proc/self/fd)."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            link = fd.readlink()
        except OSError:
            continue
        if str(link).startswith("socket:"):
            found.add(str(link))
    return found


def _hex_ipv4(address: str, port: int) -> str:
    """An address as /proc/net/tcp writes it (little-endian hex, then the port in hex)."""
    packed = bytes(int(part) for part in address.split("."))
    return f"{packed[::-1].hex().upper()}:{port:04X}"


class TcpWatcher:
    """Collects the local ports of every TCP connection this process holds to address:port.

    Polls /proc every few milliseconds while active. Unlike sshd's log, it sees only this
    process, so tests running in parallel against the same bed do not disturb the count.
    """

    def __init__(self, address: str, port: int, interval_s: float = 0.002) -> None:
        self._remote = _hex_ipv4(address, port)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.local_ports: set[int] = set()

    def __enter__(self) -> TcpWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(self._interval_s)

    def _poll(self) -> None:
        mine = {link.removeprefix("socket:[").rstrip("]") for link in open_socket_fds()}
        for row in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[2] == self._remote and fields[9] in mine:
                self.local_ports.add(int(fields[1].split(":")[1], 16))
