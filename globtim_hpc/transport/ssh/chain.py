"""SshTransport: one paramiko connection chain (laptop -> jump hosts -> target), reused.

Every hop after the first is a paramiko Transport running over a ``direct-tcpip`` channel of
the hop before it, so the laptop opens exactly one TCP connection however long the chain is.
The chain is built on first use and rebuilt on the next call after it broke (or when
that call finds it dead before anything of its work was sent).

This package (``globtim_hpc.transport.ssh``, apart from ``config`` and ``hostkeys``) is the
only code that imports paramiko.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import paramiko

from globtim_hpc.errors import ConnectError, TransferError
from globtim_hpc.quoting import command_line
from globtim_hpc.transport.base import (
    CommandResult,
    CommandTransport,
    Invocation,
    PromptFn,
    temporary_beside,
)
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.auth import Authenticator
from globtim_hpc.transport.ssh.config import ResolvedHost, resolve_chain
from globtim_hpc.transport.ssh.exec import StdinPump, close_channel, read_until_exit
from globtim_hpc.transport.ssh.failures import BROKEN, describe
from globtim_hpc.transport.ssh.hop import Hop, close_hop, connect_hop

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
_SETTLE_S = 1.0  # after a channel dies, how long hop threads get to notice

_Opened = TypeVar("_Opened")


class SshTransport(CommandTransport):
    """Runs commands and moves files on ``settings.target`` through its jump hosts."""

    def __init__(self, settings: SshSettings, *, prompt: PromptFn | None = None) -> None:
        self._settings = settings
        self._chain: list[ResolvedHost] | None = None
        self._hops: list[Hop] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._authenticator = Authenticator(settings, prompt)
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

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        temporary = temporary_beside(remote_path, self.label)
        sftp = self._sftp_client()
        try:
            with sftp.open(temporary, "wb") as handle:
                sftp.chmod(temporary, mode)  # before any data lands in it
                handle.set_pipelined(True)
                handle.write(data)
            sftp.posix_rename(temporary, remote_path)
        except BROKEN as exc:
            self._discard_temporary(sftp, temporary)
            self._raise_unless_answered(exc, f"writing {remote_path}")
            raise TransferError(
                f"{self.label}: cannot write {remote_path}: {describe(exc)}"
            ) from exc

    def get_bytes(self, remote_path: str) -> bytes:
        sftp = self._sftp_client()
        try:
            with sftp.open(remote_path, "rb") as handle:
                # No prefetch: its reader thread raises EOFError in the background when the
                # link drops (a traceback on stderr); these files are small, one thread suffices.
                return handle.read()
        except BROKEN as exc:
            self._raise_unless_answered(exc, f"reading {remote_path}")
            raise TransferError(
                f"{self.label}: cannot read {remote_path}: {describe(exc)}"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._teardown()

    # -- commands --------------------------------------------------------------------------

    def _execute(self, command: Invocation) -> CommandResult:
        # One path for a run and a stream: output is read concurrently either way.
        args = command.args()
        channel = self._open_session(args)
        pump = StdinPump(channel, command.source, command.progress)
        stdout, stderr = bytearray(), bytearray()
        try:
            channel.exec_command(command_line(args))
            pump.start()
            read_until_exit(
                channel,
                args,
                stdout,
                stderr,
                command.sink,
                command.timeout_s,
                command.progress,
                label=self.label,
            )
        except BROKEN as exc:
            close_channel(channel)
            self._raise_link_failure(exc, f"running {args[0]}")
        except BaseException:
            # The caller's sink or progress callback gave up (an unsafe archive, Ctrl-C): close
            # the channel so the remote command stops instead of running on unread.
            close_channel(channel)
            raise
        finally:
            pump.join()
        if channel.exit_status == -1 and not self._chain_alive(settle_s=_SETTLE_S):
            self._raise_broken(f"connection lost while running {args[0]}")
        if pump.error is not None and not isinstance(pump.error, BROKEN):
            raise pump.error  # reading the caller's stdin source failed
        close_channel(channel)
        return CommandResult(args, channel.exit_status, bytes(stdout), bytes(stderr))

    def _open_session(self, argv: tuple[str, ...]) -> paramiko.Channel:
        return self._open_on_target(
            lambda hop: hop.transport.open_session(timeout=hop.host.connect_timeout_s),
            f"opening a session for {argv[0]}",
        )

    def _open_on_target(self, open_on: Callable[[Hop], _Opened], what: str) -> _Opened:
        """Open a channel (a session, SFTP) on the target hop.

        A chain that died while idle, before paramiko noticed, fails right here. Nothing of
        the caller's work has been sent yet, so it is safe to build a fresh chain once and
        open the channel there; a chain that is still up refused the channel itself.
        """
        hops = self._connected()
        try:
            return open_on(hops[-1])
        except BROKEN as exc:
            if self._chain_alive(settle_s=_SETTLE_S, hops=hops):
                self._raise_link_failure(exc, what)
        with self._lock:
            if self._hops is hops:  # another thread may have rebuilt it meanwhile
                self._teardown()
        hops = self._connected()
        try:
            return open_on(hops[-1])
        except BROKEN as exc:
            self._raise_link_failure(exc, what)

    # -- files -----------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._lock:
            self._connected()  # a chain found dead is torn down, its SFTP client with it
            if self._sftp is None:
                try:
                    self._sftp = self._open_on_target(
                        lambda hop: paramiko.SFTPClient.from_transport(hop.transport),
                        "starting SFTP",
                    )
                except paramiko.SFTPError as exc:
                    # sshd starts the SFTP server through the login shell too: text its
                    # startup files print lands where the SFTP handshake is expected
                    raise TransferError(
                        f"{self.label}: SFTP could not start ({exc})",
                        "the login shell's startup files probably print text for "
                        "non-interactive shells (csh/tcsh read ~/.cshrc, bash over ssh "
                        "~/.bashrc); print only in interactive shells. "
                        "`deploy_julia.py --check` shows the login shell",
                    ) from exc
                if self._sftp is None:
                    raise TransferError(f"{self.label}: the server refused the SFTP subsystem")
            return self._sftp

    @staticmethod
    def _discard_temporary(sftp: paramiko.SFTPClient, path: str) -> None:
        # nothing was created, or the connection is gone and with it the chance to clean up
        with contextlib.suppress(*BROKEN):
            sftp.remove(path)

    # -- the chain -------------------------------------------------------------------------

    def _connected(self) -> list[Hop]:
        with self._lock:
            if self._hops and not self._chain_alive():
                self._teardown()
            if not self._hops:
                self._hops = self._connect_chain()
            return self._hops

    def _chain_alive(self, *, settle_s: float = 0.0, hops: list[Hop] | None = None) -> bool:
        deadline = time.monotonic() + settle_s
        while True:
            if all(hop.transport.is_active() for hop in (self._hops if hops is None else hops)):
                if time.monotonic() >= deadline:
                    return True
            else:
                return False
            time.sleep(0.05)

    @staticmethod
    def _answered(exc: BaseException) -> bool:
        # SFTP status errors (no such file, permission denied) carry an errno: the link is fine
        return isinstance(exc, OSError) and exc.errno is not None

    def _raise_unless_answered(self, exc: BaseException, what: str) -> None:
        """A file operation failed: unless the server answered with a status, the link did."""
        if self._answered(exc):
            if not self._hops or not self._chain_alive():
                self._raise_broken(f"connection lost while {what}: {describe(exc)}", exc)
            return
        self._raise_link_failure(exc, what)

    def _raise_link_failure(self, exc: BaseException, what: str) -> NoReturn:
        """A channel operation failed without an answer: always a ConnectError naming a hop.

        The first hop found dead is named; when every hop is still up (the server closed this
        one channel, or refused it), the target is.
        """
        if not self._hops or not self._chain_alive(settle_s=_SETTLE_S):
            self._raise_broken(f"connection lost while {what}: {describe(exc)}", exc)
        with self._lock:
            self._discard_sftp()  # it may be the channel that broke; the next use reopens it
        raise ConnectError(
            f"{what} failed: {describe(exc)}",
            "the next command opens a new channel; check the target's sshd log if it persists",
            hop=self._hops[-1].host.label,
            transient=True,
        ) from exc

    def _raise_broken(self, message: str, cause: BaseException | None = None) -> NoReturn:
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

    def _discard_sftp(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(*BROKEN):  # the channel may already be gone
                self._sftp.close()
            self._sftp = None

    def _teardown(self) -> None:
        self._discard_sftp()
        for hop in reversed(self._hops):
            close_hop(hop)
        self._hops = []

    def _connect_chain(self) -> list[Hop]:
        hops: list[Hop] = []
        try:
            for host in self.chain:
                hops.append(self._connect_hop_retrying(host, hops[-1] if hops else None))
        except BaseException:
            for hop in reversed(hops):
                close_hop(hop)
            raise
        finally:
            self._authenticator.release_agent()
        return hops

    def _connect_hop_retrying(self, host: ResolvedHost, previous: Hop | None) -> Hop:
        attempts = max(0, self._settings.connect_retries) + 1
        delay_s = _BACKOFF_FIRST_S
        for attempt in range(attempts):
            try:
                return connect_hop(
                    host,
                    previous,
                    self._settings,
                    self._authenticator,
                    on_tcp_connect=self._count_connection,
                )
            except ConnectError as exc:
                last_try = attempt == attempts - 1
                previous_gone = previous is not None and not previous.transport.is_active()
                if not exc.transient or last_try or previous_gone:
                    raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_connection(self) -> None:
        self._connections += 1
