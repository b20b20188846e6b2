"""LocalTransport: the Transport contract on this machine, through subprocess and no shell."""

from __future__ import annotations

import contextlib
import os
import shutil

from globtim_hpc.errors import RemoteCommandError, TransferError
from globtim_hpc.transport import process
from globtim_hpc.transport.base import (
    CommandResult,
    CommandTransport,
    Invocation,
    temporary_beside,
)

_COMMAND_NOT_FOUND = 127  # what a shell would report, so both transports agree
_NOT_EXECUTABLE = 126


class LocalTransport(CommandTransport):
    """Runs argv lists directly (no shell, so no quoting) and moves files on the local disk."""

    @property
    def label(self) -> str:
        return "local"

    def _execute(self, command: Invocation) -> CommandResult:
        args = command.args()
        child = process.start(args)
        if child is None:
            return _not_started(args)
        try:
            stdout, stderr = process.serve(child, command)
        except process.ProcessTimeout as exc:
            raise _timeout_error(args, command.timeout_s, exc.stdout, exc.stderr) from None
        return CommandResult(args, child.returncode, stdout, stderr)

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        temporary = temporary_beside(remote_path, "local")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, remote_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise TransferError(f"local: cannot write {remote_path}: {exc.strerror}") from exc

    def get_bytes(self, remote_path: str) -> bytes:
        try:
            with open(remote_path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise TransferError(f"local: cannot read {remote_path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Nothing to release: every command is its own process."""


def _not_started(args: tuple[str, ...]) -> CommandResult:
    """A program that cannot be found or executed, reported as a shell would report it."""
    if shutil.which(args[0]) is None and os.sep not in args[0]:
        return CommandResult(
            args, _COMMAND_NOT_FOUND, b"", f"{args[0]}: command not found\n".encode()
        )
    if not os.path.exists(args[0]):
        return CommandResult(
            args, _COMMAND_NOT_FOUND, b"", f"{args[0]}: No such file or directory\n".encode()
        )
    return CommandResult(args, _NOT_EXECUTABLE, b"", f"{args[0]}: Permission denied\n".encode())


def _timeout_error(
    args: tuple[str, ...], timeout_s: float, stdout: bytes | None, stderr: bytes | None
) -> RemoteCommandError:
    partial = CommandResult(args, -1, stdout or b"", stderr or b"")
    return RemoteCommandError(
        f"local: command timed out after {timeout_s:g} s and was killed",
        "raise timeout_s if the command needs longer",
        argv=args,
        output_tail=partial.output_tail(),
    )
