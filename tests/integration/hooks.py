"""A transport wrapper that runs a hook right after a chosen command has been answered.

Tests use it to lose an answer at exactly the moment that matters (after the command that may
have reached SLURM, after the manifest was computed) without any hook in the product itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from globtim_hpc.transport.base import CommandResult, Transport
from globtim_hpc.transport.recording import RecordingTransport

Hook = Callable[[CommandResult], None]


class AfterCommand(RecordingTransport):
    """Delegates to ``inner``; after a ``run`` whose argv holds ``marker``, calls ``hook``."""

    def __init__(self, inner: Transport, marker: str, hook: Hook) -> None:
        super().__init__(inner)
        self.marker = marker
        self.hook = hook

    def run(
        self, argv: Sequence[str], *, timeout_s: float = 120.0, stdin: bytes | None = None
    ) -> CommandResult:
        result = super().run(argv, timeout_s=timeout_s, stdin=stdin)
        if any(self.marker in part for part in argv):
            self.hook(result)
        return result

    def close(self) -> None:
        pass  # the inner transport belongs to the caller
