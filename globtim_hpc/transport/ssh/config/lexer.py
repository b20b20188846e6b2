"""Splitting ssh_config lines into a keyword and its arguments, as OpenSSH's argv_split does."""

from __future__ import annotations

import re

from globtim_hpc.errors import ConfigError


def split_arguments(text: str, *, where: str = "") -> list[str]:
    """Split a config line's arguments like OpenSSH's argv_split (quotes, backslash, comments)."""
    args: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is None and ch in " \t\r\n":
            if in_word:
                args.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        if quote is None and ch == "#" and not in_word:
            break
        # argv_split: \' \" \\ are escapes inside quotes too; an escaped space only outside
        escapable = "\\'\"" if quote is not None else "\\'\" "
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            current.append(text[i + 1])
            in_word = True
            i += 2
            continue
        if quote is None and ch in "'\"":
            quote, in_word = ch, True
        elif ch == quote:
            quote = None
        else:
            current.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        raise ConfigError("unterminated quote in ssh config line", path=where or None)
    if in_word:
        args.append("".join(current))
    return args


_KEYWORD = re.compile(r"\s*([^\s=]+)\s*(?:=\s*)?(.*)$", re.DOTALL)


def split_line(line: str, *, where: str = "") -> tuple[str, list[str]] | None:
    """Return (lower-case keyword, arguments) for one line, or None for blanks and comments."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    match = _KEYWORD.match(stripped)
    if match is None:  # pragma: no cover - the pattern accepts any non-blank text
        return None
    return match.group(1).lower(), split_arguments(match.group(2), where=where)
