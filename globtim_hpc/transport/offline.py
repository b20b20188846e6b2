"""A transport for work that must not reach the cluster (``--dry-run``): every use is an error.

Schedulers are built over a transport; a dry run still asks its scheduler which files a run
folder needs, but must never connect. Anything that would is refused loudly, not silently.
"""

from __future__ import annotations

from globtim_hpc.errors import UsageError
from globtim_hpc.transport.base import CommandResult, CommandTransport, Invocation


class OfflineTransport(CommandTransport):
    def __init__(self, label: str = "offline") -> None:
        self._label = label

    @property
    def label(self) -> str:
        return self._label

    def _refuse(self, what: str) -> UsageError:
        return UsageError(
            f"{what} on {self._label}: this command works without the cluster",
            "drop --dry-run to reach the cluster",
        )

    def _execute(self, command: Invocation) -> CommandResult:
        argv = command.argv
        raise self._refuse(
            f"running {argv[0] if argv else 'a command'}" if command.whole else "streaming"
        )

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        raise self._refuse(f"writing {remote_path}")

    def get_bytes(self, remote_path: str) -> bytes:
        raise self._refuse(f"reading {remote_path}")

    def close(self) -> None:
        pass
