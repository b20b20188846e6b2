"""``Match`` lines: which criteria hold for the host being resolved."""

from __future__ import annotations

from dataclasses import dataclass

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.model import LocalContext
from globtim_hpc.transport.ssh.config.patterns import match_pattern_list


@dataclass(frozen=True)
class MatchContext:
    """What the criteria are compared with, at the point of the file where Match stands."""

    host: str  # the host name as known so far (HostName applied; in the final pass, resolved)
    original_host: str
    user: str  # the remote user as known so far, else the local one
    local: LocalContext
    final_pass: bool


def evaluate_match(
    args: list[str], ctx: MatchContext, *, path: str, line: int
) -> tuple[bool, bool]:
    """Return (whether the block applies, whether it asks for a final pass)."""
    if not args:
        raise ConfigError("Match needs criteria", path=path, line=line)
    i = 0
    result = True
    wants_final_pass = False
    while i < len(args):
        word = args[i]
        negate = word.startswith("!")
        criterion = word[1:].lower() if negate else word.lower()
        i += 1
        if criterion == "all":
            if len(args) > 1 and not any(a.lower() in ("canonical", "final") for a in args):
                raise ConfigError("'Match all' must stand alone", path=path, line=line)
            matched = True
        elif criterion in ("canonical", "final"):
            if criterion == "final":
                wants_final_pass = True
            matched = ctx.final_pass
        else:
            if i >= len(args):
                raise ConfigError(f"Match {criterion} needs an argument", path=path, line=line)
            value = args[i]
            i += 1
            if not result:
                continue  # the outcome is settled; nothing left to evaluate
            if criterion == "host":
                matched = match_pattern_list(ctx.host, value, lower=True)
            elif criterion == "originalhost":
                matched = match_pattern_list(ctx.original_host, value, lower=True)
            elif criterion == "user":
                matched = match_pattern_list(ctx.user, value, lower=False)
            elif criterion == "localuser":
                matched = match_pattern_list(ctx.local.user, value, lower=False)
            else:
                raise ConfigError(
                    f"'Match {criterion}' is not supported here",
                    "set host, user, port and ProxyJump explicitly in the cluster profile",
                    path=path,
                    line=line,
                )
        if matched == negate:
            result = False
    return result, wants_final_pass
