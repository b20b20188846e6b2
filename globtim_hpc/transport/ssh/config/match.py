"""``Match`` lines: which criteria hold for the host being resolved.

``Match exec`` is evaluated as OpenSSH 9.x does (readconf.c, match_cfg_line and
execute_in_shell): the command's ``%`` tokens are expanded (an unknown token is an error even
where the command is not run), it is skipped once an earlier criterion of the line failed,
and otherwise runs as ``$SHELL -c COMMAND`` (``/bin/sh`` without SHELL) with stdin and stdout
on /dev/null; exit status 0 is a match. A command killed by a signal is an error, as it is
for ssh. ``localnetwork`` is refused rather than guessed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.model import DEFAULT_PORT, LocalContext
from globtim_hpc.transport.ssh.config.patterns import match_pattern_list
from globtim_hpc.transport.ssh.config.tokens import expand_percent

# ssh waits for ever; a toolkit command should rather say which line hangs
_EXEC_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class MatchContext:
    """What the criteria are compared with, at the point of the file where Match stands."""

    host: str  # the host name as known so far (HostName applied; in the final pass, resolved)
    original_host: str
    user: str  # the remote user as known so far, else the local one
    local: LocalContext
    final_pass: bool
    port: int | None = None  # as known so far; OpenSSH's default where unset
    host_key_alias: str | None = None
    proxy_jump: str = ""  # %j of newer OpenSSH


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
            if criterion == "exec":
                _exec_command(value, ctx)  # OpenSSH expands (and rejects bad tokens) first
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
            elif criterion == "exec":
                matched = run_match_exec(_exec_command(value, ctx), path=path, line=line)
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


def _exec_command(command: str, ctx: MatchContext) -> str:
    """The command with the tokens ``Match exec`` knows, from the values known so far."""
    port = ctx.port or DEFAULT_PORT
    digest = hashlib.sha1(f"{ctx.local.hostname}{ctx.host}{port}{ctx.user}".encode()).hexdigest()
    tokens = {
        "C": digest,
        "L": ctx.local.hostname.split(".", 1)[0],
        "d": ctx.local.home,
        "h": ctx.host,
        "i": str(ctx.local.uid),
        "j": ctx.proxy_jump,
        "k": ctx.host_key_alias or ctx.host,
        "l": ctx.local.hostname,
        "n": ctx.original_host,
        "p": str(port),
        "r": ctx.user,
        "u": ctx.local.user,
    }
    return expand_percent(command, tokens, what="Match exec")


def run_match_exec(command: str, *, path: str, line: int) -> bool:
    """Run a Match exec command through the user's shell; True when it exits with status 0."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not os.access(shell, os.X_OK):
        raise ConfigError(
            f"Match exec: the shell {shell!r} (from $SHELL) is not executable",
            "set SHELL to your login shell",
            path=path,
            line=line,
        )
    try:
        done = subprocess.run(
            [shell, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=_EXEC_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"Match exec {command!r} did not finish within {_EXEC_TIMEOUT_S:g} s",
            "make the command return quickly (ssh would wait for it as well)",
            path=path,
            line=line,
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Match exec: cannot run {shell}: {exc.strerror}", path=path, line=line
        ) from exc
    if done.returncode < 0:
        raise ConfigError(
            f"Match exec {command!r} was killed by signal {-done.returncode}",
            "ssh refuses such a line too; fix the command",
            path=path,
            line=line,
        )
    return done.returncode == 0
