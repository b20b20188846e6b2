"""Expansion of ``~``, ``${ENV}`` and ``%`` tokens, as OpenSSH applies them to option values."""

from __future__ import annotations

import hashlib
import os
import pwd
import re

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.model import LocalContext


def expand_hostname(value: str, original_host: str) -> str:
    """HostName knows only %h (the host as given) and %%."""
    return expand_percent(value, {"h": original_host}, what="HostName")


def expand_tilde(path: str, local: LocalContext) -> str:
    if path == "~" or path.startswith("~/"):
        return local.home + path[1:]
    if path.startswith("~"):
        name, _, rest = path[1:].partition("/")
        try:
            home = pwd.getpwnam(name).pw_dir
        except KeyError:
            raise ConfigError(f"unknown user in path {path!r}") from None
        return f"{home}/{rest}" if rest else home
    return path


def expand_percent(value: str, tokens: dict[str, str], *, what: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(value):
            raise ConfigError(f"{what}: '%' at the end of {value!r}")
        token = value[i + 1]
        if token == "%":
            out.append("%")
        elif token in tokens:
            out.append(tokens[token])
        else:
            raise ConfigError(f"{what}: unknown token %{token} in {value!r}")
        i += 2
    return "".join(out)


def _expand_env(value: str, what: str) -> str:
    def env(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{what}: environment variable {name} is not set (in {value!r})")
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", env, value)


def expand_path(value: str, tokens: dict[str, str], local: LocalContext, *, what: str) -> str:
    """Tilde, then ``${ENV}``, then % tokens: how OpenSSH expands IdentityFile and friends."""
    return expand_percent(_expand_env(expand_tilde(value, local), what), tokens, what=what)


def connection_tokens(
    *,
    hostname: str,
    original: str,
    port: int,
    user: str,
    jump: str,
    key_alias: str | None,
    local: LocalContext,
) -> dict[str, str]:
    short = local.hostname.split(".", 1)[0]
    digest = hashlib.sha1(f"{local.hostname}{hostname}{port}{user}".encode()).hexdigest()
    return {
        "C": digest,
        "d": local.home,
        "h": hostname,
        "i": str(local.uid),
        "j": jump,
        "k": key_alias or original,
        "L": short,
        "l": local.hostname,
        "n": original,
        "p": str(port),
        "r": user,
        "u": local.user,
    }
