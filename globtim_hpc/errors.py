"""One exception hierarchy and one set of exit codes for the whole toolkit.

Only the CLI layer prints; everything below it raises one of these. Anything that is not a
``GlobtimHpcError`` is a bug and is shown with its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    CONNECTION = 4
    SCHEDULER = 5
    JOB_FAILED = 6
    INTERRUPTED = 130


class GlobtimHpcError(Exception):
    """Base of every expected failure: a message saying what went wrong, a hint saying how to fix it."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(GlobtimHpcError):
    exit_code = ExitCode.USAGE


class ConfigError(GlobtimHpcError):
    """A profile, job config or problem definition is wrong. Names the file and key where known."""

    exit_code = ExitCode.CONFIG

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        path: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = []
        if path:
            loc = path
            if line is not None:
                loc += f":{line}"
                if column is not None:
                    loc += f":{column}"
            where.append(loc)
        if key:
            where.append(f"key '{key}'")
        full = f"{', '.join(where)}: {message}" if where else message
        super().__init__(full, hint)
        self.path = path
        self.key = key
        self.line = line
        self.column = column


class ConnectError(GlobtimHpcError):
    """A hop of the SSH chain could not be reached or authenticated. Names the hop."""

    exit_code = ExitCode.CONNECTION

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        hop: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(f"{hop}: {message}" if hop else message, hint)
        self.hop = hop
        self.transient = transient


class AuthenticationError(ConnectError):
    """Authentication to a hop failed. Never retried."""


class HostKeyError(ConnectError):
    """A hop's host key is unknown or changed. Never retried, never silently accepted."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        hop: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        super().__init__(message, hint, hop=hop)
        self.fingerprint = fingerprint


class RemoteCommandError(GlobtimHpcError):
    """A command on the target host exited non-zero where success was required."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        argv: Sequence[str] = (),
        exit_status: int | None = None,
        output_tail: str = "",
    ) -> None:
        detail = message
        if exit_status is not None:
            detail += f" (exit status {exit_status})"
        if output_tail.strip():
            detail += "\n" + output_tail.rstrip()
        super().__init__(detail, hint)
        self.argv = list(argv)
        self.exit_status = exit_status
        self.output_tail = output_tail


class TransferError(GlobtimHpcError):
    """Moving files failed or produced something that does not verify."""


class IntegrityError(TransferError):
    """A file's content does not match its recorded hash, or an archive is unsafe to extract."""


class SchedulerError(GlobtimHpcError):
    """The scheduler refused or failed a request. ``transient`` says whether retrying may help."""

    exit_code = ExitCode.SCHEDULER

    def __init__(self, message: str, hint: str | None = None, *, transient: bool = False) -> None:
        super().__init__(message, hint)
        self.transient = transient


class TemplateError(GlobtimHpcError):
    """A batch script template could not be rendered."""


class StoreError(GlobtimHpcError):
    """The local registry could not be read or written."""


class JobFailedError(GlobtimHpcError):
    """A job (or some of its array tasks) ended in a state other than COMPLETED."""

    exit_code = ExitCode.JOB_FAILED


class WaitTimeoutError(GlobtimHpcError):
    """A wait for runs to finish ran out of time; the runs go on."""


class PreflightError(GlobtimHpcError):
    """A check before submission or deployment failed; nothing was changed."""
