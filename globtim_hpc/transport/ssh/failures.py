"""What a failing link looks like from paramiko, and how such failures are described."""

from __future__ import annotations

import errno

import paramiko

# Everything paramiko (or the socket below it) raises when a connection or channel is unusable.
BROKEN = (paramiko.SSHException, EOFError, OSError)

_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EPIPE,
}


def is_transient_os_error(exc: OSError) -> bool:
    return isinstance(exc, (TimeoutError, ConnectionError)) or exc.errno in _TRANSIENT_ERRNOS


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
