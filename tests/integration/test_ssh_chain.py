"""The SSH hop chain against the real bed: host keys, MFA, outages, one TCP connection."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from globtim_hpc.errors import (
    AuthenticationError,
    ConnectError,
    ExitCode,
    HostKeyError,
)
from globtim_hpc.transport.ssh import hostkeys as kh
from globtim_hpc.transport.ssh.chain import SshTransport
from tests.integration.transport_fixtures import (
    TcpWatcher,
    bed_settings,
    known_hosts_copy,
    known_hosts_without,
    open_socket_fds,
    paramiko_threads,
    sshd_connections,
    wait_for_log_quiet,
)

__all__ = ["known_hosts_copy"]  # a fixture, imported so that pytest finds it here

if TYPE_CHECKING:  # imported for annotations only, so pytest does not collect it as a test
    from tests.integration.conftest import Testbed

pytestmark = pytest.mark.integration

FALCON_IP = "10.77.2.2"
MACK_IP = "10.77.1.2"


def recorded_key(known_hosts: Path, name: str) -> bytes:
    entries = kh.load_known_hosts([str(known_hosts)])
    found = kh.entries_for(entries, [name])
    assert found, f"{name} is not in {known_hosts}"
    return found[0].key_blob


def test_hostname_through_the_chain(testbed: Testbed) -> None:
    with SshTransport(bed_settings(testbed)) as ssh:
        assert [hop.alias for hop in ssh.chain] == ["mack", "falcon"]
        assert ssh.run(["hostname"]).check("hostname").stdout_text.strip() == "falcon"
        assert ssh.connection_count == 1


def test_both_hops_use_aes_gcm_with_the_real_sshd(testbed: Testbed) -> None:
    # paramiko's own order would pick aes128-ctr with hmac-sha2-256 (bench/transport.py).
    with SshTransport(bed_settings(testbed)) as ssh:
        ssh.run(["true"]).check("true")
        hops = ssh._hops
        assert len(hops) == 2
        for hop in hops:
            assert hop.transport.remote_cipher == "aes128-gcm@openssh.com"  # type: ignore[attr-defined]
            assert hop.transport.local_cipher == "aes128-gcm@openssh.com"


def test_aead_first_keeps_every_other_cipher_in_order() -> None:
    from globtim_hpc.transport.ssh.hop import aead_first

    given = ("aes128-ctr", "aes256-ctr", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com")
    assert aead_first(given) == (
        "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr"
    )
    assert aead_first(("aes128-ctr", "aes128-cbc")) == ("aes128-ctr", "aes128-cbc")


def test_laptop_has_no_route_to_falcon() -> None:
    with pytest.raises(OSError):
        socket.create_connection((FALCON_IP, 22), timeout=5).close()


def test_unknown_host_key_on_falcon(testbed: Testbed, known_hosts_copy: Path) -> None:
    expected = kh.fingerprint_sha256(recorded_key(testbed.known_hosts, FALCON_IP))
    known_hosts_without(known_hosts_copy, "falcon")
    before = known_hosts_copy.read_text()
    settings = bed_settings(testbed, known_hosts_files=(str(known_hosts_copy),))
    started = time.monotonic()
    with SshTransport(settings) as ssh, pytest.raises(HostKeyError) as caught:
        ssh.run(["true"])
    error = caught.value
    assert time.monotonic() - started < 10, "a host key failure must not be retried"
    assert error.hop is not None and error.hop.startswith("falcon")
    assert FALCON_IP in str(error)
    assert error.fingerprint == expected and expected.startswith("SHA256:")
    assert expected in str(error)
    assert "=" not in expected  # OpenSSH prints the digest without base64 padding
    assert error.hint is not None
    assert "ssh-keyscan" in error.hint and "accept-new" in error.hint
    assert error.exit_code == ExitCode.CONNECTION and int(error.exit_code) == 4
    assert known_hosts_copy.read_text() == before, "a strict run must not record keys"


def test_changed_host_key_on_mack_is_refused_even_with_accept_new(
    testbed: Testbed, known_hosts_copy: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    impostor = other.with_suffix(".pub").read_text().split()[1]
    lines = []
    for line in known_hosts_copy.read_text().splitlines():
        fields = line.split()
        if fields and "mack" in fields[0].split(","):
            fields[2] = impostor
        lines.append(" ".join(fields))
    known_hosts_copy.write_text("\n".join(lines) + "\n")
    before = known_hosts_copy.read_text()
    for policy in ("strict", "accept-new"):
        settings = bed_settings(
            testbed, known_hosts_files=(str(known_hosts_copy),), host_key_policy=policy
        )
        with SshTransport(settings) as ssh, pytest.raises(HostKeyError) as caught:
            ssh.run(["true"])
        assert caught.value.hop is not None and caught.value.hop.startswith("mack")
        assert "CHANGED" in str(caught.value) and "man-in-the-middle" in str(caught.value)
        assert caught.value.exit_code == ExitCode.CONNECTION
    assert known_hosts_copy.read_text() == before


def test_accept_new_records_the_key_and_the_next_run_is_silent(
    testbed: Testbed, known_hosts_copy: Path
) -> None:
    known_hosts_without(known_hosts_copy, "falcon")
    files = (str(known_hosts_copy),)
    with SshTransport(
        bed_settings(testbed, known_hosts_files=files, host_key_policy="accept-new")
    ) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
    assert recorded_key(known_hosts_copy, FALCON_IP) == recorded_key(testbed.known_hosts, FALCON_IP)
    after_first = known_hosts_copy.read_text()
    with SshTransport(bed_settings(testbed, known_hosts_files=files)) as strict:
        assert strict.run(["hostname"]).stdout_text.strip() == "falcon"
    assert known_hosts_copy.read_text() == after_first, "the second run must not write again"
    # and OpenSSH itself agrees with what was written
    check = subprocess.run(
        ["ssh-keygen", "-F", FALCON_IP, "-f", str(known_hosts_copy)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0 and FALCON_IP in check.stdout


def test_mfa_hop_prompts_once_per_transport(testbed: Testbed) -> None:
    password = (testbed.dir / "client" / "mfa_password").read_text().strip()
    calls: list[tuple[str, str, bool]] = []

    def prompt(hop: str, text: str, echo: bool) -> str:
        calls.append((hop, text, echo))
        return password

    settings = bed_settings(testbed, proxy_jump="mack:2222")
    with SshTransport(settings, prompt=prompt) as ssh:
        assert [(h.alias, h.port) for h in ssh.chain] == [("mack", 2222), ("falcon", 22)]
        for _ in range(3):
            assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
        scratch = ssh.run(["mktemp"]).check("mktemp").stdout_text.strip()
        ssh.put_bytes(b"mfa", scratch)
        assert ssh.get_bytes(scratch) == b"mfa"
        ssh.run(["rm", "-f", scratch])
    assert len(calls) == 1, calls
    hop, _text, echo = calls[0]
    assert hop.startswith("mack") and "2222" in hop
    assert echo is False


def test_mfa_without_answers_fails_naming_mack(testbed: Testbed) -> None:
    settings = bed_settings(testbed, proxy_jump="mack:2222")
    with SshTransport(settings) as ssh, pytest.raises(AuthenticationError) as caught:
        ssh.run(["true"])
    assert caught.value.hop is not None and caught.value.hop.startswith("mack")
    assert caught.value.exit_code == ExitCode.CONNECTION
    with (
        SshTransport(settings, prompt=lambda hop, text, echo: "wrong") as ssh,
        pytest.raises(AuthenticationError),
    ):
        ssh.run(["true"])


@pytest.mark.disruptive
def test_mack_down_then_back(testbed: Testbed) -> None:
    settings = bed_settings(testbed, connect_retries=2)
    testbed.script("sshd.sh", "mack", "stop")
    try:
        started = time.monotonic()
        with SshTransport(settings) as ssh, pytest.raises(ConnectError) as caught:
            ssh.run(["true"])
        elapsed_s = time.monotonic() - started
        error = caught.value
        assert not isinstance(error, (HostKeyError, AuthenticationError))
        assert error.hop is not None and error.hop.startswith("mack")
        assert MACK_IP in str(error)
        assert error.transient
        assert error.exit_code == ExitCode.CONNECTION and int(error.exit_code) == 4
        assert 1.0 <= elapsed_s < 20, "two retries with backoff, then give up"
    finally:
        testbed.script("sshd.sh", "mack", "start")
    with SshTransport(settings) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"


def test_one_tcp_connection_for_many_commands_and_transfers(testbed: Testbed) -> None:
    wait_for_log_quiet(testbed)
    before = len(sshd_connections(testbed))
    with TcpWatcher(MACK_IP, 22) as watcher, SshTransport(bed_settings(testbed)) as ssh:
        for i in range(20):
            assert ssh.run(["echo", str(i)]).stdout_text == f"{i}\n"
        scratch = ssh.run(["mktemp"]).check("mktemp").stdout_text.strip()
        ssh.put_bytes(b"payload", scratch)
        assert ssh.get_bytes(scratch) == b"payload"
        ssh.run(["rm", "-f", scratch])
        assert ssh.connection_count == 1
    assert len(watcher.local_ports) == 1, watcher.local_ports
    (port,) = watcher.local_ports
    wait_for_log_quiet(testbed)
    # other tests may use the bed at the same time: count mack's log lines for our port only
    ours = [line for line in sshd_connections(testbed)[before:] if f" port {port} on " in line]
    assert len(ours) == 1, ours


@pytest.mark.disruptive
def test_dropped_connection_is_transient_and_the_next_call_reconnects(testbed: Testbed) -> None:
    killed: list[BaseException | None] = []

    def kill_sessions() -> None:
        time.sleep(1.0)
        try:
            testbed.script("sshd.sh", "mack", "kill-sessions")
            killed.append(None)
        except BaseException as exc:  # reported below, in the test's thread
            killed.append(exc)

    with SshTransport(bed_settings(testbed)) as ssh:
        assert ssh.run(["true"]).ok
        killer = threading.Thread(target=kill_sessions)
        killer.start()
        try:
            with pytest.raises(ConnectError) as caught:
                ssh.run(["sleep", "120"], timeout_s=150)
        finally:
            killer.join()
        assert killed == [None], f"sshd.sh kill-sessions failed: {killed}"
        assert caught.value.transient
        assert caught.value.hop is not None and caught.value.hop.startswith("mack")
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
        assert ssh.connection_count == 2


def test_close_leaves_no_sockets_or_threads(testbed: Testbed) -> None:
    sockets_before = open_socket_fds()
    threads_before = set(paramiko_threads())
    ssh = SshTransport(bed_settings(testbed))
    ssh.run(["true"])
    ssh.put_bytes(b"x", "/tmp/globtim-close-test")
    ssh.run(["rm", "-f", "/tmp/globtim-close-test"])
    assert len(set(paramiko_threads()) - threads_before) == 2  # one per hop
    assert open_socket_fds() - sockets_before
    ssh.close()
    ssh.close()
    assert set(paramiko_threads()) - threads_before == set()
    assert open_socket_fds() - sockets_before == set()


def test_encrypted_key_asks_once_for_both_hops(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "locked_key"
    shutil.copyfile(testbed.identity, key)
    key.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-N", "open sesame", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    config = tmp_path / "ssh_config"
    config.write_text(testbed.ssh_config.read_text().replace(str(testbed.identity), str(key)))
    settings = bed_settings(testbed, config_file=str(config), use_agent=False)
    calls: list[str] = []

    def prompt(hop: str, text: str, echo: bool) -> str:
        calls.append(hop)
        return "open sesame"

    with SshTransport(settings, prompt=prompt) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
    assert len(calls) == 1 and calls[0].startswith("mack")

    monkeypatch.setenv("GLOBTIM_TEST_PASSPHRASE", "open sesame")
    with SshTransport(
        bed_settings(
            testbed,
            config_file=str(config),
            use_agent=False,
            passphrase_env="GLOBTIM_TEST_PASSPHRASE",
        )
    ) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"

    with SshTransport(settings) as ssh, pytest.raises(AuthenticationError) as caught:
        ssh.run(["true"])
    assert caught.value.hop is not None and caught.value.hop.startswith("mack")
    assert caught.value.hint is not None and "passphrase" in caught.value.hint


class _Discard:
    def __init__(self) -> None:
        self.byte_count = 0

    def write(self, data: bytes) -> int:
        self.byte_count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def test_past_paramikos_rekey_threshold_the_chain_keeps_working(testbed: Testbed) -> None:
    """More than 512 MiB (where paramiko would ask for new keys) through both hops, then more
    commands on the same chain: the client leaves rekeying to OpenSSH's own limits."""
    with SshTransport(bed_settings(testbed)) as transport:
        assert transport.run(["true"]).ok
        for hop in transport._hops:
            assert hop.transport.packetizer.REKEY_BYTES >= 2**36
        sink = _Discard()
        result = transport.stream(["head", "-c", "600M", "/dev/zero"], stdout_sink=sink)  # type: ignore[arg-type]
        assert result.ok and sink.byte_count == 600 * 2**20
        for _ in range(3):
            assert transport.run(["true"], timeout_s=60).ok
        assert transport.connection_count == 1
