"""The Transport protocol: run an argv and move bytes on one target host.

A transport knows nothing of SLURM. Quoting happens inside each transport, once, at the
boundary (``globtim_hpc.quoting.join`` for SSH; no shell at all for local).
"""

from __future__ import annotations

import io
import posixpath
import secrets
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, runtime_checkable

from globtim_hpc.closing import ClosesOnExit
from globtim_hpc.errors import RemoteCommandError, TransferError

ProgressFn = Callable[[int], None]
"""Called with the number of bytes moved since the previous call."""

PromptFn = Callable[[str, str, bool], str]
"""Answers one authentication prompt: (hop label, prompt text, echo) -> answer."""


def _tail(data: bytes, max_lines: int = 20) -> str:
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-max_lines:])


def temporary_beside(path: str, label: str) -> str:
    """A fresh name beside ``path`` for writing it atomically (write, then rename over it)."""
    folder, name = posixpath.split(path)
    if not name:
        raise TransferError(f"{label}: {path!r} names a folder, not a file")
    return posixpath.join(folder, f".{name}.tmp-{secrets.token_hex(6)}")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    def output_tail(self, max_lines: int = 20) -> str:
        return _tail(self.stderr or self.stdout, max_lines)

    def check(self, what: str, hint: str | None = None) -> CommandResult:
        """Return self if the command succeeded, else raise a RemoteCommandError about ``what``."""
        if self.exit_status != 0:
            raise RemoteCommandError(
                f"{what} failed",
                hint,
                argv=self.argv,
                exit_status=self.exit_status,
                output_tail=self.output_tail(),
            )
        return self


@runtime_checkable
class Transport(Protocol):
    """Runs commands and moves files on one target host (falcon, or this machine)."""

    @property
    def label(self) -> str:
        """A short name for the target, used in messages (e.g. 'falcon' or 'local')."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 120.0,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run argv on the target; stdout and stderr are read while it runs (no deadlock)."""
        ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        """Run argv, feeding stdin from ``stdin_source`` and copying stdout into ``stdout_sink``.

        Used for tar streams up and down. The returned result's ``stdout`` is empty when a sink
        was given; ``progress`` is told of bytes moved in either direction.
        """
        ...

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        """Write a whole file atomically (temporary name beside it, then rename)."""
        ...

    def get_bytes(self, remote_path: str) -> bytes:
        """Read a whole (small) file."""
        ...

    def close(self) -> None:
        """Release every connection; safe to call twice."""
        ...

    def __enter__(self) -> Transport: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True)
class Invocation:
    """One command for ``CommandTransport._execute``: a ``run`` (``whole``: output kept in
    memory, ``source`` the given stdin) or a ``stream``."""

    argv: Sequence[str]
    source: BinaryIO | None
    sink: BinaryIO | None
    timeout_s: float
    progress: ProgressFn | None
    whole: bool

    def args(self) -> tuple[str, ...]:
        """The argv as run; an empty one is a caller's mistake, not a failed command."""
        args = tuple(self.argv)
        if not args:
            raise ValueError("argv must not be empty")
        return args


class CommandTransport(ClosesOnExit):
    """``run`` and ``stream`` for a transport that executes every command one way
    (``_execute``): every transport here, the offline one that refuses them all included."""

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 120.0,
        stdin: bytes | None = None,
    ) -> CommandResult:
        source = io.BytesIO(stdin) if stdin is not None else None
        return self._execute(Invocation(argv, source, None, timeout_s, None, whole=True))

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        command = Invocation(argv, stdin_source, stdout_sink, timeout_s, progress, whole=False)
        return self._execute(command)

    @abstractmethod
    def _execute(self, command: Invocation) -> CommandResult: ...
