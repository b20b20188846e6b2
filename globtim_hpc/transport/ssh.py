"""SshTransport: one paramiko connection chain (laptop -> jump hosts -> target), reused.

Every hop after the first is a paramiko Transport running over a ``direct-tcpip`` channel of
the hop before it, so the laptop opens exactly one TCP connection however long the chain is.
The chain is built on first use and rebuilt on the next call after it broke.

This is the only module that imports paramiko.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import os
import posixpath
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import paramiko

from globtim_hpc.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    TransferError,
)
from globtim_hpc.quoting import join, quote
from globtim_hpc.transport import known_hosts as kh
from globtim_hpc.transport.base import ClosesOnExit, CommandResult, ProgressFn, PromptFn
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.sshconfig import ResolvedHost, resolve_chain

_CHUNK = 64 * 1024
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
_AUTH_TIMEOUT_S = 300.0  # a person may be typing an OTP while paramiko waits
_REKEY_AFTER_BYTES = 2**36  # OpenSSH: 2**32 blocks of 16 bytes
_REKEY_AFTER_PACKETS = 2**31
_JOIN_TIMEOUT_S = 5.0
_SETTLE_S = 1.0  # after a channel dies, how long hop threads get to notice
_PASSPHRASE_ATTEMPTS = 3
_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EPIPE,
}
# For an RSA host key recorded in known_hosts, these are the signature algorithms to ask for.
_ALGORITHMS_FOR_KEY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
_BROKEN = (paramiko.SSHException, EOFError, OSError)
# paramiko reports a wrong passphrase for PEM keys, `cryptography` for OpenSSH-format keys
_WRONG_PASSPHRASE = (paramiko.SSHException, ValueError, TypeError)
_LOCKED = paramiko.PKey()  # stands for "an encrypted key nobody could unlock"


@dataclass
class _Hop:
    host: ResolvedHost
    transport: paramiko.Transport
    sock: socket.socket | paramiko.Channel


@dataclass
class _Pump:
    """Feeds a channel's stdin from a file in a thread, so reading output never waits on it."""

    channel: paramiko.Channel
    source: BinaryIO | None
    progress: ProgressFn | None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None)

    def start(self) -> None:
        if self.source is None:
            self.channel.shutdown_write()  # the command sees EOF at once, like </dev/null
            return
        self.thread = threading.Thread(target=self._run, name="globtim-ssh-stdin", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.source is not None
        try:
            while chunk := self.source.read(_CHUNK):
                self.channel.sendall(chunk)
                if self.progress is not None:
                    self.progress(len(chunk))
            self.channel.shutdown_write()
        except BaseException as exc:  # handed to the caller's thread by join()
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(_JOIN_TIMEOUT_S)


def _is_transient_os_error(exc: OSError) -> bool:
    return isinstance(exc, (TimeoutError, ConnectionError)) or exc.errno in _TRANSIENT_ERRNOS


class SshTransport(ClosesOnExit):
    """Runs commands and moves files on ``settings.target`` through its jump hosts."""

    def __init__(self, settings: SshSettings, *, prompt: PromptFn | None = None) -> None:
        self._settings = settings
        self._prompt = prompt
        self._chain: list[ResolvedHost] | None = None
        self._hops: list[_Hop] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._keys: dict[str, paramiko.PKey | None] = {}
        self._agent: paramiko.Agent | None = None
        self._connections = 0

    # -- protocol --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self._settings.target

    @property
    def connection_count(self) -> int:
        """TCP connections opened so far (one per chain set-up)."""
        return self._connections

    @property
    def chain(self) -> list[ResolvedHost]:
        """The hops, first jump first, target last (resolved from ssh_config on first use)."""
        if self._chain is None:
            self._chain = resolve_chain(self._settings)
        return self._chain

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 120.0,
        stdin: bytes | None = None,
    ) -> CommandResult:
        source = io.BytesIO(stdin) if stdin is not None else None
        return self._execute(argv, source, None, timeout_s, None)

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        return self._execute(argv, stdin_source, stdout_sink, timeout_s, progress)

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        folder, name = posixpath.split(remote_path)
        if not name:
            raise TransferError(f"{self.label}: {remote_path!r} names a folder, not a file")
        temporary = posixpath.join(folder, f".{name}.tmp-{secrets.token_hex(6)}")
        sftp = self._sftp_client()
        try:
            with sftp.open(temporary, "wb") as handle:
                sftp.chmod(temporary, mode)  # before any data lands in it
                handle.set_pipelined(True)
                handle.write(data)
            sftp.posix_rename(temporary, remote_path)
        except _BROKEN as exc:
            self._discard_temporary(sftp, temporary)
            self._raise_if_broken(exc, f"writing {remote_path}")
            raise TransferError(
                f"{self.label}: cannot write {remote_path}: {_describe(exc)}"
            ) from exc

    def get_bytes(self, remote_path: str) -> bytes:
        sftp = self._sftp_client()
        try:
            with sftp.open(remote_path, "rb") as handle:
                handle.prefetch()
                return handle.read()
        except _BROKEN as exc:
            self._raise_if_broken(exc, f"reading {remote_path}")
            raise TransferError(
                f"{self.label}: cannot read {remote_path}: {_describe(exc)}"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._teardown()


    # -- commands --------------------------------------------------------------------------

    def _execute(
        self,
        argv: Sequence[str],
        source: BinaryIO | None,
        sink: BinaryIO | None,
        timeout_s: float,
        progress: ProgressFn | None,
    ) -> CommandResult:
        args = tuple(argv)
        if not args:
            raise ValueError("argv must not be empty")
        channel = self._open_session(args)
        pump = _Pump(channel, source, progress)
        stdout, stderr = bytearray(), bytearray()
        try:
            channel.exec_command(join(args))
            pump.start()
            self._pump_output(channel, args, stdout, stderr, sink, timeout_s, progress)
        except _BROKEN as exc:
            channel.close()
            self._raise_if_broken(exc, f"running {args[0]}")
            raise
        except BaseException:
            # The caller's sink or progress callback gave up (an unsafe archive, Ctrl-C): close
            # the channel so the remote command stops instead of running on unread.
            channel.close()
            raise
        finally:
            pump.join()
        if channel.exit_status == -1 and not self._chain_alive(settle_s=_SETTLE_S):
            self._raise_broken(f"connection lost while running {args[0]}")
        if pump.error is not None and not isinstance(pump.error, _BROKEN):
            raise pump.error  # reading the caller's stdin source failed
        channel.close()
        return CommandResult(args, channel.exit_status, bytes(stdout), bytes(stderr))

    def _pump_output(
        self,
        channel: paramiko.Channel,
        argv: tuple[str, ...],
        stdout: bytearray,
        stderr: bytearray,
        sink: BinaryIO | None,
        timeout_s: float,
        progress: ProgressFn | None,
    ) -> None:
        """Read stdout and stderr as they arrive until the command is over (or times out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            while channel.recv_ready():
                data = channel.recv(_CHUNK)
                if not data:
                    break
                if sink is not None:
                    sink.write(data)
                else:
                    stdout += data
                if progress is not None:
                    progress(len(data))
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(_CHUNK)
            if (
                (channel.closed or channel.eof_received)
                and channel.exit_status_ready()
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
            ):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _signal(channel, "KILL")
                channel.close()
                raise RemoteCommandError(
                    f"{self.label}: command timed out after {timeout_s:g} s and was abandoned",
                    "raise timeout_s if the command needs longer",
                    argv=argv,
                    output_tail=CommandResult(argv, -1, bytes(stdout), bytes(stderr)).output_tail(),
                )
            select.select([channel], [], [], min(remaining, 1.0))

    def _open_session(self, argv: tuple[str, ...]) -> paramiko.Channel:
        hops = self._connected()
        try:
            return hops[-1].transport.open_session(timeout=hops[-1].host.connect_timeout_s)
        except _BROKEN as exc:
            self._raise_if_broken(exc, f"opening a session for {argv[0]}")
            raise ConnectError(
                f"cannot open a session: {_describe(exc)}", hop=hops[-1].host.label, transient=True
            ) from exc

    # -- files -----------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            hops = self._connected()
            if self._sftp is None:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(hops[-1].transport)
                except _BROKEN as exc:
                    self._raise_if_broken(exc, "starting SFTP")
                    raise TransferError(
                        f"{self.label}: cannot start SFTP: {_describe(exc)}"
                    ) from exc
                if self._sftp is None:
                    raise TransferError(f"{self.label}: the server refused the SFTP subsystem")
            return self._sftp

    @staticmethod
    def _discard_temporary(sftp: paramiko.SFTPClient, path: str) -> None:
        # nothing was created, or the connection is gone and with it the chance to clean up
        with contextlib.suppress(*_BROKEN):
            sftp.remove(path)

    # -- the chain -------------------------------------------------------------------------

    def _connected(self) -> list[_Hop]:
        with self._lock:
            if self._hops and not self._chain_alive():
                self._teardown()
            if not self._hops:
                self._hops = self._connect_chain()
            return self._hops

    def _chain_alive(self, *, settle_s: float = 0.0) -> bool:
        deadline = time.monotonic() + settle_s
        while True:
            if all(hop.transport.is_active() for hop in self._hops):
                if time.monotonic() >= deadline:
                    return True
            else:
                return False
            time.sleep(0.05)

    def _raise_if_broken(self, exc: BaseException, what: str) -> None:
        """Turn a failure caused by a dead hop into a transient ConnectError naming that hop."""
        # SFTP status errors (no such file, permission denied) carry an errno: the link is fine
        answered = isinstance(exc, OSError) and exc.errno is not None
        settle_s = 0.0 if answered or not self._hops else _SETTLE_S
        if not self._hops or not self._chain_alive(settle_s=settle_s):
            self._raise_broken(f"connection lost while {what}: {_describe(exc)}", exc)

    def _raise_broken(self, message: str, cause: BaseException | None = None) -> None:
        """Name the first hop that died; forget the chain so that the next call rebuilds it."""
        dead = next((h for h in self._hops if not h.transport.is_active()), None)
        label = (
            dead.host.label
            if dead is not None
            else (self.chain[-1].label if self.chain else self.label)
        )
        with self._lock:
            self._teardown()
        raise ConnectError(
            message,
            "the next command reconnects; check the network and the hop's sshd if it persists",
            hop=label,
            transient=True,
        ) from cause

    def _teardown(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(*_BROKEN):  # the channel may already be gone
                self._sftp.close()
            self._sftp = None
        for hop in reversed(self._hops):
            _close_hop(hop)
        self._hops = []

    def _connect_chain(self) -> list[_Hop]:
        hops: list[_Hop] = []
        try:
            for host in self.chain:
                hops.append(self._connect_hop_retrying(host, hops[-1] if hops else None))
        except BaseException:
            for hop in reversed(hops):
                _close_hop(hop)
            raise
        finally:
            # agent keys sign through this connection; once every hop is in, it is not needed
            if self._agent is not None:
                self._agent.close()
                self._agent = None
        return hops

    def _connect_hop_retrying(self, host: ResolvedHost, previous: _Hop | None) -> _Hop:
        attempts = max(0, self._settings.connect_retries) + 1
        delay_s = _BACKOFF_FIRST_S
        for attempt in range(attempts):
            try:
                return self._connect_hop(host, previous)
            except ConnectError as exc:
                last_try = attempt == attempts - 1
                previous_gone = previous is not None and not previous.transport.is_active()
                if not exc.transient or last_try or previous_gone:
                    raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect_hop(self, host: ResolvedHost, previous: _Hop | None) -> _Hop:
        timeout_s = host.connect_timeout_s or self._settings.connect_timeout_s
        sock = self._open_socket(host, previous, timeout_s)
        transport = paramiko.Transport(sock)
        # paramiko asks for new keys after 512 MiB, and its own request can stall against
        # channel traffic ("Key-exchange timed out waiting for key negotiation", paramiko
        # issue 822; seen here after a 1 GiB collection). Ask no sooner than OpenSSH's client
        # does for 128-bit block ciphers; the server still rekeys whenever it wants to.
        transport.packetizer.REKEY_BYTES = _REKEY_AFTER_BYTES
        transport.packetizer.REKEY_PACKETS = _REKEY_AFTER_PACKETS
        hop = _Hop(host, transport, sock)
        try:
            transport.banner_timeout = timeout_s
            transport.handshake_timeout = timeout_s
            transport.auth_timeout = _AUTH_TIMEOUT_S
            entries = kh.load_known_hosts((*host.known_hosts_files, *host.global_known_hosts_files))
            transport.get_security_options().key_types = _preferred_key_types(
                transport, kh.known_key_types(entries, _lookup_names(host))
            )
            try:
                transport.start_client(timeout=timeout_s)
            except _BROKEN as exc:
                raise ConnectError(
                    f"SSH handshake failed: {_describe(exc)}", hop=host.label, transient=True
                ) from exc
            self._verify_host_key(host, transport, entries)
            self._authenticate(host, transport)
            interval_s = host.server_alive_interval_s or self._settings.keepalive_s
            if interval_s > 0:
                transport.set_keepalive(max(1, round(interval_s)))
        except BaseException:
            _close_hop(hop)
            raise
        return hop

    def _open_socket(
        self, host: ResolvedHost, previous: _Hop | None, timeout_s: float
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
                    f"cannot connect: {_describe(exc)}",
                    "is the host up and its sshd running?",
                    hop=host.label,
                    transient=_is_transient_os_error(exc),
                ) from exc
            self._connections += 1
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
        except _BROKEN as exc:
            raise ConnectError(
                f"connection through {previous.host.alias} failed: {_describe(exc)}",
                hop=host.label,
                transient=True,
            ) from exc

    # -- host keys -------------------------------------------------------------------------

    def _verify_host_key(
        self, host: ResolvedHost, transport: paramiko.Transport, entries: list[kh.KnownHostEntry]
    ) -> None:
        blob = transport.get_remote_server_key().asbytes()
        names = _lookup_names(host)
        verdict = kh.judge(entries, names, blob)
        if verdict == "ok":
            return
        fingerprint = kh.fingerprint_sha256(blob)
        key_text = f"{kh.key_type_of(blob)} {fingerprint}"
        record_in = host.known_hosts_files[0] if host.known_hosts_files else "~/.ssh/known_hosts"
        if verdict == "revoked":
            raise HostKeyError(
                f"host key {key_text} is marked @revoked in known_hosts",
                "this key must not be trusted; ask the cluster administrators",
                hop=host.label,
                fingerprint=fingerprint,
            )
        if verdict == "changed":
            raise HostKeyError(
                f"HOST KEY HAS CHANGED: the server presents {key_text}, which differs from the "
                f"key recorded for {names[0]} in {', '.join(host.known_hosts_files)}. Someone may "
                "be intercepting the connection (man-in-the-middle), or the host was reinstalled.",
                "verify the new fingerprint with the administrators; only then remove the old "
                f"entry with: ssh-keygen -R {quote(names[0])} -f {quote(record_in)}",
                hop=host.label,
                fingerprint=fingerprint,
            )
        # StrictHostKeyChecking=no makes OpenSSH record new keys too; it never accepts changed ones
        accept = self._settings.host_key_policy == "accept-new" or (
            host.strict_host_key_checking in ("accept-new", "no")
        )
        if accept and host.known_hosts_files:
            try:
                kh.append_entry(record_in, [names[0]], blob)
            except OSError as exc:
                raise HostKeyError(
                    f"cannot record the new host key in {record_in}: {_describe(exc)}",
                    hop=host.label,
                    fingerprint=fingerprint,
                ) from exc
            return
        keyscan = join(
            ["ssh-keyscan", "-p", str(host.port), "-t", kh.key_type_of(blob), host.hostname]
        )
        raise HostKeyError(
            f"host key for {host.address} is not known: {key_text}",
            "check the fingerprint with the administrators, then record it with "
            f"`{keyscan} >> {quote(record_in)}` (run where {host.hostname} is reachable) "
            "or set host_key_policy: accept-new in the cluster profile",
            hop=host.label,
            fingerprint=fingerprint,
        )

    # -- authentication --------------------------------------------------------------------

    def _authenticate(self, host: ResolvedHost, transport: paramiko.Transport) -> None:
        try:
            transport.auth_none(host.user)
            allowed: list[str] = []
        except paramiko.BadAuthenticationType as exc:
            allowed = list(exc.allowed_types)
        except _BROKEN as exc:
            raise ConnectError(
                f"connection lost during authentication: {_describe(exc)}",
                hop=host.label,
                transient=True,
            ) from exc
        tried: list[str] = []
        attempts: dict[
            str, Callable[[ResolvedHost, paramiko.Transport, list[str]], list[str] | None]
        ] = {
            "publickey": self._auth_publickey,
            "keyboard-interactive": self._auth_interactive,
            "password": self._auth_password,
        }
        while not transport.is_authenticated():
            method = next((m for m in attempts if m in allowed and m not in tried), None)
            if method is None:
                needs_answers = {"keyboard-interactive", "password"} & set(allowed)
                hint = (
                    "this hop asks for a password or one-time code; run interactively so that "
                    "it can be prompted for"
                    if needs_answers and self._prompt is None
                    else "check IdentityFile, the ssh agent and the user name"
                )
                locked = [path for path, key in self._keys.items() if key is _LOCKED]
                if locked:
                    hint += (
                        f"; {', '.join(locked)} needs a passphrase: set the variable named by "
                        "passphrase_env, or run interactively"
                    )
                raise AuthenticationError(
                    f"authentication as {host.user} failed (server accepts: "
                    f"{', '.join(allowed) or 'nothing'}; tried: {', '.join(tried) or 'nothing'})",
                    hint,
                    hop=host.label,
                )
            tried.append(method)
            try:
                remaining = attempts[method](host, transport, tried)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                continue
            except paramiko.AuthenticationException:
                continue
            except _BROKEN as exc:
                raise ConnectError(
                    f"connection lost during {method} authentication: {_describe(exc)}",
                    hop=host.label,
                    transient=True,
                ) from exc
            if remaining:  # partial success: the server wants another method as well
                allowed = remaining

    def _auth_publickey(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        for key in self._candidate_keys(host):
            try:
                remaining = transport.auth_publickey(host.user, key)
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException:
                continue
            return list(remaining)
        return None

    def _auth_interactive(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        prompt = self._prompt
        if prompt is None:
            return None
        failure: list[BaseException] = []

        # paramiko calls this from its own thread; exceptions are carried back by hand
        def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            answers = []
            for text, echo in prompts:
                try:
                    answers.append(prompt(host.label, text, echo))
                except BaseException as exc:
                    failure.append(exc)
                    return []
            return answers

        try:
            remaining = transport.auth_interactive(host.user, handler)
        finally:
            if failure:
                raise failure[0]
        return list(remaining)

    def _auth_password(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        if self._prompt is None:
            return None
        answer = self._prompt(host.label, f"{host.user}@{host.hostname}'s password: ", False)
        return list(transport.auth_password(host.user, answer))

    def _candidate_keys(self, host: ResolvedHost) -> list[paramiko.PKey]:
        """Agent keys and key files in OpenSSH's order; with IdentitiesOnly only the files' keys."""
        agent_keys: list[paramiko.PKey] = []
        if self._settings.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                if self._agent is None:
                    self._agent = paramiko.Agent()
                agent_keys = list(self._agent.get_keys())
            except paramiko.SSHException:
                agent_keys = []  # an unreachable agent is not an error; key files may do
        agent_by_blob = {k.asbytes(): k for k in agent_keys}
        keys: list[paramiko.PKey] = []
        used: set[bytes] = set()
        for path in host.identity_files:
            public = _public_blob(path)
            if public is not None and public in agent_by_blob:
                keys.append(agent_by_blob[public])
                used.add(public)
                continue
            key = self._load_key(host, path)
            if key is not None and key.asbytes() not in used:
                keys.append(key)
                used.add(key.asbytes())
        if not host.identities_only:
            keys[0:0] = [k for k in agent_keys if k.asbytes() not in used]
        return keys

    def _load_key(self, host: ResolvedHost, path: str) -> paramiko.PKey | None:
        if path in self._keys:
            cached = self._keys[path]
            return None if cached is _LOCKED else cached
        key: paramiko.PKey | None = None
        if os.path.isfile(path):
            try:
                key = paramiko.PKey.from_path(path)
            except (paramiko.PasswordRequiredException, TypeError):
                # TypeError: how `cryptography` says an OpenSSH-format key needs a passphrase
                key = self._load_encrypted_key(host, path)
            except (paramiko.SSHException, ValueError, OSError):
                key = None  # not a key paramiko can use; OpenSSH would skip it as well
        self._keys[path] = key
        return None if key is _LOCKED else key

    def _load_encrypted_key(self, host: ResolvedHost, path: str) -> paramiko.PKey | None:
        env = self._settings.passphrase_env
        if env and os.environ.get(env):
            try:
                return _load_with_passphrase(path, os.environ[env])
            except _WRONG_PASSPHRASE as exc:
                raise AuthenticationError(
                    f"the passphrase in ${env} does not decrypt {path}", hop=host.label
                ) from exc
        if self._prompt is None:
            return _LOCKED
        for _ in range(_PASSPHRASE_ATTEMPTS):
            passphrase = self._prompt(host.label, f"Enter passphrase for key '{path}': ", False)
            if not passphrase:
                return None
            try:
                return _load_with_passphrase(path, passphrase)
            except _WRONG_PASSPHRASE:
                continue
        return None


def _load_with_passphrase(path: str, passphrase: str) -> paramiko.PKey:
    # PKey.from_path hands the passphrase to `cryptography` unchanged, which wants bytes
    # (paramiko's own annotation says str)
    return paramiko.PKey.from_path(path, passphrase.encode())  # type: ignore[arg-type]


def _public_blob(private_path: str) -> bytes | None:
    """The public key beside a private key file (``path.pub``), if present and readable."""
    try:
        with open(private_path + ".pub", encoding="ascii") as handle:
            fields = handle.read().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, ValueError):
        return None


def _lookup_names(host: ResolvedHost) -> list[str]:
    """Names under which the hop's key may be recorded: HostKeyAlias, else hostname and alias."""
    if host.host_key_alias:
        return [kh.lookup_name(host.host_key_alias, host.port)]
    names = [kh.lookup_name(host.hostname, host.port)]
    alias = kh.lookup_name(host.alias, host.port)
    if alias not in names:
        names.append(alias)
    return names


def _preferred_key_types(transport: paramiko.Transport, known_types: list[str]) -> list[str]:
    """Ask for host key types already recorded first, as OpenSSH does, so a recorded host with
    several keys is not reported as unknown because another type was negotiated."""
    available = list(transport.get_security_options().key_types)
    first: list[str] = []
    for key_type in known_types:
        for algorithm in _ALGORITHMS_FOR_KEY_TYPE.get(key_type, (key_type,)):
            if algorithm in available and algorithm not in first:
                first.append(algorithm)
    return first + [a for a in available if a not in first]


def _signal(channel: paramiko.Channel, name: str) -> None:
    """Ask sshd to signal the command's process group (RFC 4254 "signal"); without this an
    abandoned command keeps running on the login node, as no terminal hangs up on it."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(name)
    with contextlib.suppress(*_BROKEN):
        # paramiko has no public call for this request
        channel.get_transport()._send_user_message(message)  # type: ignore[attr-defined]


def _close_hop(hop: _Hop) -> None:
    hop.transport.close()
    if hop.transport.is_alive() and hop.transport is not threading.current_thread():
        hop.transport.join(_JOIN_TIMEOUT_S)
    with contextlib.suppress(OSError):  # usually already closed with its transport
        hop.sock.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
