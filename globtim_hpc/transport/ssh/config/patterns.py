"""OpenSSH's host patterns: ``*``, ``?`` and ``!negation`` (used by Host, Match and known_hosts)."""

from __future__ import annotations

import re


def match_pattern(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: ``*`` any run, ``?`` one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def match_host_patterns(name: str, patterns: list[str]) -> bool:
    """A ``Host`` line: some positive pattern matches and no negated one does."""
    matched = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if match_pattern(name, pattern[1:]):
                return False
        elif match_pattern(name, pattern):
            matched = True
    return matched


def match_pattern_list(name: str, pattern_list: str, *, lower: bool) -> bool:
    """A comma-separated list as in ``Match host a,b,!c`` (negation vetoes)."""
    if lower:
        name, pattern_list = name.lower(), pattern_list.lower()
    return match_host_patterns(name, [p for p in pattern_list.split(",") if p])
