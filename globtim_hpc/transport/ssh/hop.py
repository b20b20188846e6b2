"""Connecting one hop: a TCP socket (first hop) or a ``direct-tcpip`` channel of the hop before
it, then the SSH handshake, the host key check and authentication."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko
from paramiko.packet import Packetizer

from globtim_hpc.errors import ConnectError
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh import hostkeys as kh
from globtim_hpc.transport.ssh.auth import Authenticator
from globtim_hpc.transport.ssh.config import ResolvedHost
from globtim_hpc.transport.ssh.failures import BROKEN, describe, is_transient_os_error

_AUTH_TIMEOUT_S = 300.0  # a person may be typing an OTP while paramiko waits
_REKEY_AFTER_BYTES = 2**36  # OpenSSH: 2**32 blocks of 16 bytes
_REKEY_AFTER_PACKETS = 2**31
_JOIN_TIMEOUT_S = 5.0


class QuietPacketizer(Packetizer):
    """A packetizer whose close never raises.

    A hop after the first runs over a channel of the hop before it, and closing the
    packetizer closes that channel, which writes a close message. When the link below died
    before its thread noticed, that write raises EOFError; paramiko's transport thread makes
    this close when it ends on its own (its channel saw EOF first), outside any try, so the
    error would end up as a thread traceback on the user's terminal (paramiko PR 1585, open).
    """

    def close(self) -> None:
        with contextlib.suppress(*BROKEN):
            super().close()


@dataclass
class Hop:
    host: ResolvedHost
    transport: paramiko.Transport
    sock: socket.socket | paramiko.Channel


def connect_hop(
    host: ResolvedHost,
    previous: Hop | None,
    settings: SshSettings,
    authenticator: Authenticator,
    *,
    on_tcp_connect: Callable[[], None],
) -> Hop:
    """A connected, verified and authenticated hop; ConnectError (or a subclass) otherwise."""
    timeout_s = host.connect_timeout_s or settings.connect_timeout_s
    sock = _open_socket(host, previous, timeout_s, on_tcp_connect)
    transport = paramiko.Transport(sock, packetizer_class=QuietPacketizer)
    # paramiko asks for new keys after 512 MiB, and its own request can stall against
    # channel traffic ("Key-exchange timed out waiting for key negotiation", paramiko
    # issue 822; seen here after a 1 GiB collection). Ask no sooner than OpenSSH's client
    # does for 128-bit block ciphers; the server still rekeys whenever it wants to.
    transport.packetizer.REKEY_BYTES = _REKEY_AFTER_BYTES
    transport.packetizer.REKEY_PACKETS = _REKEY_AFTER_PACKETS
    hop = Hop(host, transport, sock)
    try:
        transport.banner_timeout = timeout_s
        transport.handshake_timeout = timeout_s
        transport.auth_timeout = _AUTH_TIMEOUT_S
        entries = kh.load_known_hosts((*host.known_hosts_files, *host.global_known_hosts_files))
        options = transport.get_security_options()
        options.key_types = kh.preferred_key_types(
            list(options.key_types), kh.known_key_types(entries, kh.lookup_names(host))
        )
        options.ciphers = aead_first(options.ciphers)
        try:
            transport.start_client(timeout=timeout_s)
        except BROKEN as exc:
            raise ConnectError(
                f"SSH handshake failed: {describe(exc)}", hop=host.label, transient=True
            ) from exc
        blob = transport.get_remote_server_key().asbytes()
        kh.verify_host_key(host, blob, entries, settings.host_key_policy)
        authenticator.authenticate(host, transport)
        interval_s = host.server_alive_interval_s or settings.keepalive_s
        if interval_s > 0:
            transport.set_keepalive(max(1, round(interval_s)))
    except BaseException:
        close_hop(hop)
        raise
    return hop


# AES-GCM authenticates as it decrypts, in one OpenSSL call per packet. paramiko's default
# (AES-CTR with HMAC-SHA2) builds a Python HMAC object for every packet, on every hop: a
# stream through the two hops to falcon moved about 30 % slower with it (bench/transport.py).
_AEAD_CIPHERS: tuple[str, ...] = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def aead_first(ciphers: Sequence[str]) -> tuple[str, ...]:
    """``ciphers`` with the AES-GCM ones this paramiko has first, the others in their order."""
    aead = tuple(c for c in _AEAD_CIPHERS if c in ciphers)
    return (*aead, *(c for c in ciphers if c not in aead))


def _open_socket(
    host: ResolvedHost,
    previous: Hop | None,
    timeout_s: float,
    on_tcp_connect: Callable[[], None],
) -> socket.socket | paramiko.Channel:
    if previous is None:
        try:
            sock = socket.create_connection((host.hostname, host.port), timeout=timeout_s)
        except socket.gaierror as exc:
            raise ConnectError(
                f"cannot resolve {host.hostname}: {exc.strerror}",
                "check HostName in ssh_config or the cluster profile",
                hop=host.label,
            ) from exc
        except OSError as exc:
            raise ConnectError(
                f"cannot connect: {describe(exc)}",
                "is the host up and its sshd running?",
                hop=host.label,
                transient=is_transient_os_error(exc),
            ) from exc
        on_tcp_connect()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    try:
        return previous.transport.open_channel(
            "direct-tcpip", (host.hostname, host.port), ("127.0.0.1", 0), timeout=timeout_s
        )
    except paramiko.ChannelException as exc:
        prohibited = exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        raise ConnectError(
            f"{previous.host.alias} could not open a connection to it: {exc.text}",
            (
                f"allow TCP forwarding (AllowTcpForwarding) on {previous.host.alias}"
                if prohibited
                else f"is {host.alias} up and reachable from {previous.host.alias}?"
            ),
            hop=host.label,
            transient=not prohibited,
        ) from exc
    except BROKEN as exc:
        raise ConnectError(
            f"connection through {previous.host.alias} failed: {describe(exc)}",
            hop=host.label,
            transient=True,
        ) from exc


def close_hop(hop: Hop) -> None:
    """Close a hop; never raises. A hop over a dead link closes its channel on the hop before
    it, and that close message cannot be written any more (paramiko raises EOFError)."""
    with contextlib.suppress(*BROKEN):
        hop.transport.close()
    if hop.transport.is_alive() and hop.transport is not threading.current_thread():
        hop.transport.join(_JOIN_TIMEOUT_S)
    with contextlib.suppress(*BROKEN):  # usually already closed with its transport
        hop.sock.close()
