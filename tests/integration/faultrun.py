"""Run one of the four commands with its SSH chain dropped at a chosen point.

``python -m tests.integration.faultrun --at N --mode MODE --hop HOP --record FILE -- deploy ARGS``
runs the command's real ``main`` in this process, with every SSH transport it opens wrapped so
that, at the N-th transport operation (a command, a stream, a file up or down; counted over the
whole process), this process drops its own connection to ``hop``:

- ``mack``: half-closes its TCP connection to mack (mack sees end-of-file and hangs up);
- ``falcon``: closes the tunnel through mack that carries the connection to falcon.

Only this process's connections go: the bed's other users are not disturbed. MODE says when:
``before`` the operation starts, ``during`` it (in a stream, once the first bytes moved; in a
command, from a second thread as it starts), or ``after`` it was answered (the next operation,
or the close, finds the link dead). The number of operations seen is written to the
record file, so a first clean run tells the harness how many drop points a command has.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import paramiko

from globtim_hpc.transport import factory
from globtim_hpc.transport.base import CommandResult, ProgressFn, Transport
from globtim_hpc.transport.recording import RecordingTransport
from globtim_hpc.transport.ssh.chain import SshTransport

COMMANDS = {
    "deploy": "globtim_hpc.cli.deploy",
    "submit": "globtim_hpc.cli.submit",
    "monitor": "globtim_hpc.cli.monitor",
    "collect": "globtim_hpc.cli.collect",
}


class _Plan:
    def __init__(self, at: int, mode: str, hop: str) -> None:
        self.at, self.mode, self.hop = at, mode, hop
        self.seen = 0
        self.dropped: str | None = None
        self.lock = threading.Lock()

    def next_op(self, what: str) -> bool:
        """Count one operation; True if it is the one to drop at."""
        with self.lock:
            self.seen += 1
            return self.seen == self.at


def _drop(ssh: SshTransport, hop: str) -> None:
    hops = ssh._hops
    if not hops:
        return  # not connected yet: the operation itself will connect
    if hop == "mack":
        first = hops[0].sock
        assert isinstance(first, socket.socket)
        with contextlib.suppress(OSError):  # already gone
            first.shutdown(socket.SHUT_WR)
    else:
        # the direct-tcpip channel through mack; if mack's link already died, so did it
        with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
            hops[-1].sock.close()


class _DroppingSink(io.RawIOBase):
    def __init__(self, inner: BinaryIO, drop: Callable[[], None]) -> None:
        self.inner, self.drop, self.done = inner, drop, False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.done:
            self.done = True
            self.drop()
        return self.inner.write(data)


class _DroppingSource(io.RawIOBase):
    def __init__(self, inner: BinaryIO, drop: Callable[[], None]) -> None:
        self.inner, self.drop, self.done = inner, drop, False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        if not self.done:
            self.done = True
            self.drop()
        return data


class DroppingTransport(RecordingTransport):
    def __init__(self, inner: SshTransport, plan: _Plan) -> None:
        super().__init__(inner)
        self.ssh = inner
        self.plan = plan
        self._after: Callable[[], None] | None = None

    def _fire(self, label: str) -> None:
        _drop(self.ssh, self.plan.hop)
        self.plan.dropped = label

    def _arm(self, what: str) -> Callable[[], None] | None:
        """Count the operation; drop now (before) or return the drop to call during it."""
        if not self.plan.next_op(what):
            return None
        label = f"{self.plan.mode} op {self.plan.at} ({what})"
        if self.plan.mode == "before":
            self._fire(label)
            return None
        return lambda: self._fire(label)

    def _in_thread(self, drop: Callable[[], None] | None) -> None:
        if drop is not None and self.plan.mode == "after":
            self._after = drop
        elif drop is not None:
            threading.Thread(target=drop, daemon=True).start()

    def _then(self) -> None:
        drop, self._after = self._after, None
        if drop is not None:
            drop()

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        self._in_thread(self._arm(f"run {argv[0]}"))
        try:
            return super().run(argv, timeout_s=timeout_s, stdin=stdin)
        finally:
            self._then()

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        drop = self._arm(f"stream {argv[0]}")
        if drop is not None and self.plan.mode == "after":
            self._in_thread(drop)
        elif drop is not None and stdout_sink is not None:
            stdout_sink = _DroppingSink(stdout_sink, drop)  # type: ignore[assignment]
        elif drop is not None and stdin_source is not None:
            stdin_source = _DroppingSource(stdin_source, drop)  # type: ignore[assignment]
        else:
            self._in_thread(drop)
        try:
            return super().stream(
                argv,
                stdin_source=stdin_source,
                stdout_sink=stdout_sink,
                timeout_s=timeout_s,
                progress=progress,
            )
        finally:
            self._then()

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        self._in_thread(self._arm("put"))
        try:
            super().put_bytes(data, remote_path, mode=mode)
        finally:
            self._then()

    def get_bytes(self, remote_path: str) -> bytes:
        self._in_thread(self._arm("get"))
        try:
            return super().get_bytes(remote_path)
        finally:
            self._then()

    def close(self) -> None:
        self.inner.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--at", type=int, default=0, help="0: never drop, only count")
    parser.add_argument("--mode", choices=["before", "during", "after"], default="before")
    parser.add_argument("--hop", choices=["mack", "falcon"], default="mack")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    plan = _Plan(options.at, options.mode, options.hop)
    original = factory.open_transport

    def open_dropping(kind: Any, ssh: Any, **kwargs: Any) -> Transport:
        inner = original(kind, ssh, **kwargs)
        return DroppingTransport(inner, plan) if isinstance(inner, SshTransport) else inner

    factory.open_transport = open_dropping  # type: ignore[assignment]
    cli = importlib.import_module(COMMANDS[options.command])
    args = [arg for arg in options.args if arg != "--"]
    try:
        code: int = cli.main(args)
    finally:
        options.record.write_text(json.dumps({"ops": plan.seen, "dropped": plan.dropped}))
    return code


if __name__ == "__main__":
    sys.exit(main())
