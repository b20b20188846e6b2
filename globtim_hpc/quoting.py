"""The one owner of shell quoting.

Every value that reaches a shell (a remote command line, a batch script) passes through
``quote`` exactly once. Nothing else in the code base builds command strings.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def quote(value: object) -> str:
    """Quote one value for POSIX sh: the result always stands for exactly that one word."""
    return shlex.quote(str(value))


def join(argv: Iterable[object]) -> str:
    """Quote every element of an argv and join them into one command line."""
    return " ".join(quote(part) for part in argv)
