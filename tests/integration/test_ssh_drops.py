"""Connections dropped at chosen moments: every failure is a ConnectError naming the hop.

A drop is either the bed's sshd killing its session processes (``sshd.sh HOST kill-sessions``,
a disruptive test) or, where the moment must be exact, this process half-closing its own TCP
connection to mack: the server then sees end-of-file and hangs up, while paramiko still thinks
the link is up for a moment, which is when its writes raise.
"""

from __future__ import annotations

import io
import random
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from globtim_hpc.errors import AuthenticationError, ConnectError, HostKeyError
from globtim_hpc.transport.ssh.chain import SshTransport
from tests.integration.transport_fixtures import bed_settings

if TYPE_CHECKING:  # imported for annotations only, so pytest does not collect it as a test
    from tests.integration.conftest import Testbed

pytestmark = [
    pytest.mark.integration,
    # a paramiko thread that dies with an exception prints a traceback to the user's terminal
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

MIB = 1024 * 1024


class _GaveUp(Exception):
    pass


def _half_close(ssh: SshTransport) -> None:
    """Stop this process writing to mack: the next write on the chain fails at once."""
    first = ssh._hops[0].sock
    assert isinstance(first, socket.socket)
    first.shutdown(socket.SHUT_WR)


def _drop(testbed: Testbed, host: str) -> None:
    testbed.script("sshd.sh", host, "kill-sessions")


def _assert_a_drop(error: ConnectError, hop: str) -> None:
    assert type(error) is ConnectError, f"a drop reported as {type(error).__name__}: {error}"
    assert error.transient
    assert error.hop is not None and error.hop.startswith(hop), error
    assert error.hint


def test_a_close_on_a_dead_link_never_hides_the_callers_error(testbed: Testbed) -> None:
    """The reader gives up just as the link dies: its own error comes back, and close() is
    quiet, though paramiko's Channel.close() raises EOFError on such a link."""
    ssh = SshTransport(bed_settings(testbed))
    assert ssh.run(["true"]).ok

    class DyingSink(io.RawIOBase):
        def write(self, data: object) -> int:
            _half_close(ssh)
            raise _GaveUp("the reader refused the stream")

    with pytest.raises(_GaveUp):
        ssh.stream(["head", "-c", "8M", "/dev/zero"], stdout_sink=DyingSink(), timeout_s=60)  # type: ignore[arg-type]
    ssh.close()
    ssh.close()
    assert ssh.run(["hostname"]).stdout_text.strip() == "falcon", "the next call reconnects"
    assert ssh.connection_count == 2
    ssh.close()


def test_a_link_that_died_while_idle_is_rebuilt_by_the_next_command(testbed: Testbed) -> None:
    with SshTransport(bed_settings(testbed)) as ssh:
        assert ssh.run(["true"]).ok
        _half_close(ssh)
        deadline = time.monotonic() + 10
        while ssh._hops[0].transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
        assert ssh.connection_count == 2


def test_a_link_found_dead_when_opening_a_session_is_rebuilt_once(testbed: Testbed) -> None:
    """Dead before paramiko noticed: the session request itself fails. Nothing of the command
    was sent yet, so the transport builds a new chain and runs it there."""
    with SshTransport(bed_settings(testbed)) as ssh:
        assert ssh.run(["true"]).ok
        _half_close(ssh)
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
        assert ssh.connection_count == 2


def test_a_link_found_dead_when_starting_sftp_is_rebuilt_once(testbed: Testbed) -> None:
    """The same for the first file transfer: SFTP's channel cannot open, nothing was written
    yet, so a new chain carries the file."""
    with SshTransport(bed_settings(testbed)) as ssh:
        path = ssh.run(["mktemp"]).check("mktemp").stdout_text.strip()
        _half_close(ssh)
        ssh.put_bytes(b"after the rebuild", path)
        assert ssh.connection_count == 2
        assert ssh.get_bytes(path) == b"after the rebuild"
        ssh.run(["rm", "-f", "--", path])


def test_a_hop_over_a_dead_link_ends_without_a_thread_traceback(
    testbed: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the link under falcon's hop dies, falcon's transport thread often ends first (its
    channel saw EOF) and then closes that channel on the dead link, outside any try: without
    care an EOFError traceback from that thread reached the terminal in about one try in
    eight here. Forty tries, none."""
    escaped: list[str] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: escaped.append(f"{args.thread}: {args.exc_type}")
    )
    for _ in range(40):
        with SshTransport(bed_settings(testbed)) as ssh:
            assert ssh.run(["true"]).ok
            _half_close(ssh)
            assert ssh.run(["true"]).ok
    assert escaped == []


@pytest.mark.disruptive
def test_a_drop_during_keyboard_interactive_is_a_drop_not_a_refusal(testbed: Testbed) -> None:
    password = (testbed.client_dir / "mfa_password").read_text().strip()
    asked: list[str] = []

    def prompt_then_drop(hop: str, text: str, echo: bool) -> str:
        asked.append(hop)
        if len(asked) == 1:  # the server is waiting for this answer: drop it now
            _drop(testbed, "mack-mfa")
        return password

    settings = bed_settings(testbed, proxy_jump="mack:2222", connect_retries=0)
    with (
        SshTransport(settings, prompt=prompt_then_drop) as ssh,
        pytest.raises(ConnectError) as caught,
    ):
        ssh.run(["true"])
    _assert_a_drop(caught.value, "mack")
    assert "keyboard-interactive" in caught.value.message
    assert "authentication as" not in caught.value.message

    # with a retry allowed the dropped attempt is retried, asks again, and gets in
    asked.clear()
    retrying = bed_settings(testbed, proxy_jump="mack:2222", connect_retries=1)
    with SshTransport(retrying, prompt=prompt_then_drop) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
    assert len(asked) == 2


@pytest.mark.disruptive
@pytest.mark.parametrize("host", ["mack", "falcon"])
def test_a_drop_while_streaming_names_the_hop_that_died(testbed: Testbed, host: str) -> None:
    with SshTransport(bed_settings(testbed)) as ssh:
        assert ssh.run(["true"]).ok
        received: list[int] = []

        class DroppingSink(io.RawIOBase):
            def write(self, data: object) -> int:
                assert isinstance(data, (bytes, bytearray, memoryview))
                if not received:
                    _drop(testbed, host)
                received.append(len(data))
                return len(data)

        with pytest.raises(ConnectError) as caught:
            ssh.stream(["sh", "-c", "head -c 4M /dev/zero; sleep 60"], stdout_sink=DroppingSink())  # type: ignore[arg-type]
        _assert_a_drop(caught.value, host)
        assert "sh" in caught.value.message
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"


@pytest.mark.disruptive
def test_a_drop_while_streaming_up_is_a_connect_error(testbed: Testbed) -> None:
    class DroppingSource(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            if self.reads == 4:
                _drop(testbed, "mack")
            return b"\0" * (size if size > 0 else 65536)

    with SshTransport(bed_settings(testbed)) as ssh:
        with pytest.raises(ConnectError) as caught:
            ssh.stream(["sh", "-c", "cat > /dev/null"], stdin_source=DroppingSource(), timeout_s=60)  # type: ignore[arg-type]
        _assert_a_drop(caught.value, "mack")
        assert ssh.run(["true"]).ok


def _steps(ssh: SshTransport, scratch: str) -> None:
    """One of each kind of work: a command, a file up and back, a stream each way."""
    assert ssh.run(["echo", "hello"]).stdout == b"hello\n"
    path = f"{scratch}/f"
    ssh.put_bytes(b"x" * 65536, path)
    assert ssh.get_bytes(path) == b"x" * 65536
    sink = io.BytesIO()
    assert ssh.stream(["head", "-c", "2M", "/dev/zero"], stdout_sink=sink).ok
    up = ssh.stream(["sh", "-c", "cat > /dev/null"], stdin_source=io.BytesIO(b"\0" * 2 * MIB))
    assert up.ok


def _drop_after_connect(
    testbed: Testbed,
    transport: SshTransport,
    host: str,
    delay_s: float,
    errors: list[BaseException],
) -> None:
    """Wait until the transport has opened its TCP connection, then drop ``host``'s sessions."""
    try:
        deadline = time.monotonic() + 10
        while transport.connection_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay_s)
        _drop(testbed, host)
    except BaseException as exc:  # reported in the test's thread
        errors.append(exc)


@pytest.mark.disruptive
def test_drops_at_random_moments_are_always_connect_errors(testbed: Testbed) -> None:
    """Drops of mack's or falcon's sessions 0-300 ms after the chain's TCP connection opened:
    in the handshake, authentication, a command, a transfer or a stream. Each try ends in
    success or in a ConnectError naming a hop, and the transport works again afterwards."""
    rng = random.Random(20240613)
    with SshTransport(bed_settings(testbed)) as setup:
        scratch = setup.run(["mktemp", "-d"]).check("mktemp").stdout_text.strip()
    outcomes: list[str] = []
    for attempt in range(12):
        host = "mack" if attempt % 2 == 0 else "falcon"
        delay_s = rng.uniform(0.0, 0.3)
        ssh = SshTransport(bed_settings(testbed, connect_retries=0))
        killer_errors: list[BaseException] = []
        killer = threading.Thread(
            target=_drop_after_connect, args=(testbed, ssh, host, delay_s, killer_errors)
        )
        killer.start()
        try:
            _steps(ssh, scratch)
            outcomes.append("done")
        except ConnectError as exc:
            assert not isinstance(exc, (AuthenticationError, HostKeyError)), exc
            assert exc.transient, exc
            assert exc.hop is not None and exc.hop.split()[0] in ("mack", "falcon"), exc
            outcomes.append(f"dropped at {exc.hop.split()[0]}")
        finally:
            killer.join()
        assert killer_errors == []
        assert ssh.run(["true"]).ok, "the transport reconnects after a drop"
        ssh.close()
        ssh.close()
    with SshTransport(bed_settings(testbed)) as cleanup:
        cleanup.run(["rm", "-rf", "--", scratch])
    assert any(o.startswith("dropped") for o in outcomes), outcomes
