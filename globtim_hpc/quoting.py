"""The one owner of shell quoting.

Every value that reaches a shell (a remote command line, a batch script) passes through
``quote`` exactly once. Nothing else in the code base builds command strings; ``command_line``
is what both SSH transports send, a line every login shell (sh, bash, csh, tcsh) accepts.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable


def quote(value: object) -> str:
    """Quote one value for POSIX sh: the result always stands for exactly that one word."""
    return shlex.quote(str(value))


def join(argv: Iterable[object]) -> str:
    """Quote every element of an argv and join them into one command line."""
    return " ".join(quote(part) for part in argv)


# What every login shell reads literally inside single quotes: csh/tcsh reject a newline there
# and expand `!` (history) even under -c; fish reads `\` as an escape. Anything else is ASCII
# text the POSIX quoting above already makes safe in those shells too.
_LOGIN_SHELL_UNSAFE = frozenset("!\\")


def _login_shell_safe(line: str) -> bool:
    return all(" " <= char <= "~" and char not in _LOGIN_SHELL_UNSAFE for char in line)


def command_line(argv: Iterable[object]) -> str:
    """The one line an SSH server hands to the user's login shell (``$SHELL -c LINE``).

    sshd runs a command through whatever login shell the account has, which need not be POSIX.
    A line of plain ASCII words is the same in sh, bash, csh, tcsh and fish and goes as it is;
    any other (a multi-line script, ``!``, a backslash, non-ASCII) travels base64-encoded inside
    a line made only of such words, and a POSIX ``sh`` decodes and runs it: the argv the remote
    command receives is exactly the same in both cases, and so are its stdin and exit status.
    """
    line = join(argv)
    if _login_shell_safe(line):
        return line
    encoded = base64.b64encode(f"exec {line}".encode()).decode("ascii")
    return join(["exec", "sh", "-c", f'eval "$(printf %s {encoded} | base64 -d)"'])
