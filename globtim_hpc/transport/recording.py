"""A transport that records every call it passes on: what ran, bytes each way, how long.

Used to count remote round trips (tests, benchmarks) without replacing the real transport.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import BinaryIO

from globtim_hpc.transport.base import CommandResult, CommandTransport, Invocation, Transport


@dataclass
class Call:
    kind: str  # "run", "stream", "put", "get"
    what: tuple[str, ...]  # argv, or the remote path for put/get
    sent_bytes: int = 0
    received_bytes: int = 0
    seconds: float = 0.0

    @property
    def is_command(self) -> bool:
        return self.kind in ("run", "stream")


class _CountingReader:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.bytes_read += len(data)
        return data


class _CountingWriter:
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self.bytes_written += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


class RecordingTransport(CommandTransport):
    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: list[Call] = []

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def commands(self) -> list[Call]:
        return [call for call in self.calls if call.is_command]

    def clear(self) -> None:
        self.calls.clear()

    def _execute(self, command: Invocation) -> CommandResult:
        if command.whole:
            return self._record_run(command)
        return self._record_stream(command)

    def _record_run(self, command: Invocation) -> CommandResult:
        stdin = command.source.read() if command.source is not None else None
        started = time.perf_counter()
        result = self.inner.run(command.argv, timeout_s=command.timeout_s, stdin=stdin)
        self.calls.append(
            Call(
                "run",
                tuple(command.argv),
                len(stdin or b""),
                len(result.stdout) + len(result.stderr),
                time.perf_counter() - started,
            )
        )
        return result

    def _record_stream(self, command: Invocation) -> CommandResult:
        reader = _CountingReader(command.source) if command.source is not None else None
        writer = _CountingWriter(command.sink) if command.sink is not None else None
        started = time.perf_counter()
        result = self.inner.stream(
            command.argv,
            stdin_source=reader,  # type: ignore[arg-type]
            stdout_sink=writer,  # type: ignore[arg-type]
            timeout_s=command.timeout_s,
            progress=command.progress,
        )
        received = (writer.bytes_written if writer else len(result.stdout)) + len(result.stderr)
        self.calls.append(
            Call(
                "stream",
                tuple(command.argv),
                reader.bytes_read if reader else 0,
                received,
                time.perf_counter() - started,
            )
        )
        return result

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        started = time.perf_counter()
        self.inner.put_bytes(data, remote_path, mode=mode)
        self.calls.append(Call("put", (remote_path,), len(data), 0, time.perf_counter() - started))

    def get_bytes(self, remote_path: str) -> bytes:
        started = time.perf_counter()
        data = self.inner.get_bytes(remote_path)
        self.calls.append(Call("get", (remote_path,), 0, len(data), time.perf_counter() - started))
        return data

    def close(self) -> None:
        self.inner.close()

