"""The OpenSSH transport's shared connection on the bed: started once even by commands that
start at once, a dead master's socket replaced, and its end after ssh.control_persist_s idle.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from globtim_hpc.transport.factory import disconnect
from globtim_hpc.transport.openssh.transport import OpenSshTransport
from tests.integration.transport_fixtures import control_dir, openssh_settings

if TYPE_CHECKING:  # imported for annotations only, so pytest does not collect it as a test
    from tests.integration.conftest import Testbed

__all__ = ["control_dir"]  # a fixture, imported so that pytest finds it

pytestmark = pytest.mark.integration


def _masters(socket_path: str) -> list[int]:
    """Pids of the ssh processes started as the master of this socket (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ControlMaster=yes" in argv and f"ControlPath={socket_path}".encode() in argv:
            found.append(int(entry.name))
    return found


def test_commands_starting_at_once_start_one_master(testbed: Testbed, control_dir: str) -> None:
    """Without the start lock each would start its own: the later ones find the socket taken
    and stay behind as separate background connections."""
    settings = openssh_settings(testbed, control_dir)
    disconnect(settings)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def one_command() -> None:
        try:
            transport = OpenSshTransport(settings)
            barrier.wait(timeout=30)
            assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one_command) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    status = OpenSshTransport(settings).master_status()
    assert _masters(status.socket) == [status.pid]
    disconnect(settings)


def test_a_stale_socket_of_a_dead_master_is_replaced(testbed: Testbed, control_dir: str) -> None:
    settings = openssh_settings(testbed, control_dir)
    transport = OpenSshTransport(settings)
    transport.disconnect()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(transport.master.files.socket)  # bound, never listening: a dead master's
    stale.close()
    assert os.path.exists(transport.master.files.socket)
    assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    assert transport.master_status().alive
    transport.disconnect()


def test_the_shared_connection_ends_after_control_persist_s_idle(
    testbed: Testbed, control_dir: str
) -> None:
    settings = openssh_settings(testbed, control_dir, control_persist_s=5)
    transport = OpenSshTransport(settings)
    transport.disconnect()
    assert transport.run(["true"]).ok
    deadline = time.monotonic() + 60  # a bound for a loaded machine, not a measurement
    # each check is itself a use of the master (it restarts the idle clock): look seldom
    while time.monotonic() < deadline:
        time.sleep(settings.control_persist_s + 2)
        if not transport.master_status().alive:
            break
    assert not transport.master_status().alive, "the master outlived ControlPersist"
    assert transport.run(["true"]).ok, "and the next command starts a new one"
    transport.disconnect()
