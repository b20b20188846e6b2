"""Running one command on an open session channel: stdin fed from a thread, stdout and stderr
read as they arrive (so neither side can block the other), timeouts, and signals."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import paramiko

from globtim_hpc.errors import RemoteCommandError
from globtim_hpc.transport.base import CommandResult, ProgressFn
from globtim_hpc.transport.ssh.failures import BROKEN

CHUNK = 64 * 1024
_JOIN_TIMEOUT_S = 5.0


@dataclass
class StdinPump:
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
            while chunk := self.source.read(CHUNK):
                self.channel.sendall(chunk)
                if self.progress is not None:
                    self.progress(len(chunk))
            self.channel.shutdown_write()
        except BaseException as exc:  # handed to the caller's thread by join()
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(_JOIN_TIMEOUT_S)


def read_until_exit(
    channel: paramiko.Channel,
    argv: tuple[str, ...],
    stdout: bytearray,
    stderr: bytearray,
    sink: BinaryIO | None,
    timeout_s: float,
    progress: ProgressFn | None,
    *,
    label: str,
) -> None:
    """Read stdout and stderr as they arrive until the command is over (or times out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        while channel.recv_ready():
            data = channel.recv(CHUNK)
            if not data:
                break
            if sink is not None:
                sink.write(data)
            else:
                stdout += data
            if progress is not None:
                progress(len(data))
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(CHUNK)
        if (
            (channel.closed or channel.eof_received)
            and channel.exit_status_ready()
            and not channel.recv_ready()
            and not channel.recv_stderr_ready()
        ):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            send_signal(channel, "KILL")
            close_channel(channel)
            raise RemoteCommandError(
                f"{label}: command timed out after {timeout_s:g} s and was abandoned",
                "raise timeout_s if the command needs longer",
                argv=argv,
                output_tail=CommandResult(argv, -1, bytes(stdout), bytes(stderr)).output_tail(),
            )
        select.select([channel], [], [], min(remaining, 1.0))


def send_signal(channel: paramiko.Channel, name: str) -> None:
    """Ask sshd to signal the command's process group (RFC 4254 "signal"); without this an
    abandoned command keeps running on the login node, as no terminal hangs up on it."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string(name)
    with contextlib.suppress(*BROKEN):
        # paramiko has no public call for this request
        channel.get_transport()._send_user_message(message)  # type: ignore[attr-defined]


def close_channel(channel: paramiko.Channel) -> None:
    """Close a channel whatever state its connection is in.

    paramiko's ``Channel.close()`` writes a close message, and on a connection that died but
    whose thread has not noticed yet that write raises (EOFError); the caller is then already
    reporting a failure, or has its result, and the close must not replace either.
    """
    with contextlib.suppress(*BROKEN):
        channel.close()
