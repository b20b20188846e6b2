"""A transport wrapper that runs a hook right after a chosen command has been answered.

Tests use it to lose an answer at exactly the moment that matters (after the command that may
have reached SLURM, after the manifest was computed) without any hook in the product itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

from globtim_hpc.transport.base import ClosesOnExit, CommandResult, ProgressFn, Transport

Hook = Callable[[CommandResult], None]


class AfterCommand(ClosesOnExit):
    """Delegates to ``inner``; after a ``run`` whose argv holds ``marker``, calls ``hook``."""

    def __init__(self, inner: Transport, marker: str, hook: Hook) -> None:
        self.inner = inner
        self.marker = marker
        self.hook = hook

    @property
    def label(self) -> str:
        return self.inner.label

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        result = self.inner.run(argv, timeout_s=timeout_s, stdin=stdin)
        if any(self.marker in part for part in argv):
            self.hook(result)
        return result

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        return self.inner.stream(
            argv, stdin_source=stdin_source, stdout_sink=stdout_sink, timeout_s=timeout_s,
            progress=progress,
        )  # fmt: skip

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        self.inner.put_bytes(data, remote_path, mode=mode)

    def get_bytes(self, remote_path: str) -> bytes:
        return self.inner.get_bytes(remote_path)

    def close(self) -> None:
        pass  # the inner transport belongs to the caller
