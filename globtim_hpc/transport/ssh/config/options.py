"""The options the toolkit interprets, and how one config line sets them (first value wins)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.jump import parse_proxy_jump
from globtim_hpc.transport.ssh.config.model import StrictHostKeyChecking


@dataclass
class Options:
    """Values obtained so far; None means 'not yet set' (first obtained value wins)."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_files: list[str] = field(default_factory=list)
    identities_only: bool | None = None
    proxy_jump: str | None = None
    proxy_command: str | None = None
    known_hosts_files: list[str] | None = None
    global_known_hosts_files: list[str] | None = None
    strict_host_key_checking: StrictHostKeyChecking | None = None
    connect_timeout_s: float | None = None
    connect_timeout_set: bool = False
    server_alive_interval_s: float | None = None
    host_key_alias: str | None = None
    canonicalize_hostname: bool = False


_BOOL = {"yes": True, "true": True, "no": False, "false": False}
_STRICT: dict[str, StrictHostKeyChecking] = {
    "yes": "yes",
    "true": "yes",
    "no": "no",
    "false": "no",
    "off": "no",
    "ask": "ask",
    "accept-new": "accept-new",
}
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_s(text: str) -> float | None:
    """OpenSSH time format: ``30``, ``90s``, ``1m30s``, ``2h`` ... -> seconds, or None if bad."""
    parts = re.findall(r"(\d+)([smhdwSMHDW]?)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return float(sum(int(n) * _TIME_UNITS[u.lower()] for n, u in parts))


def apply_option(opts: Options, keyword: str, args: list[str], *, path: str, line: int) -> None:
    """Record one active config line; keywords the toolkit does not use are ignored."""

    def one() -> str:
        if not args:
            raise ConfigError(f"{keyword} needs a value", path=path, line=line)
        return args[0]

    def boolean() -> bool:
        value = one().lower()
        if value not in _BOOL:
            raise ConfigError(f"{keyword} must be yes or no, not {value!r}", path=path, line=line)
        return _BOOL[value]

    def seconds() -> float | None:
        value = one()
        if value.lower() == "none":
            return None
        number = parse_time_s(value)
        if number is None:
            raise ConfigError(f"bad time {value!r} for {keyword}", path=path, line=line)
        return number

    if keyword == "hostname":
        if opts.hostname is None:
            opts.hostname = one()
    elif keyword == "user":
        if opts.user is None:
            opts.user = one()
    elif keyword == "port":
        value = one()
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ConfigError(f"bad port {value!r}", path=path, line=line)
        if opts.port is None:
            opts.port = int(value)
    elif keyword == "identityfile":
        opts.identity_files.append(one())
    elif keyword == "identitiesonly":
        flag = boolean()
        if opts.identities_only is None:
            opts.identities_only = flag
    elif keyword == "proxyjump":
        value = one()
        parse_proxy_jump(value)  # syntax is checked even where it does not apply
        if opts.proxy_jump is None and opts.proxy_command is None:
            opts.proxy_jump = value
            if value.lower() != "none":
                # OpenSSH turns a ProxyJump into a ProxyCommand; a later one no longer applies
                opts.proxy_command = "none"
    elif keyword == "proxycommand":
        if opts.proxy_command is None and opts.proxy_jump is None:
            opts.proxy_command = " ".join(args)
    elif keyword == "userknownhostsfile":
        if opts.known_hosts_files is None and args:
            opts.known_hosts_files = list(args)
    elif keyword == "globalknownhostsfile":
        if opts.global_known_hosts_files is None and args:
            opts.global_known_hosts_files = list(args)
    elif keyword == "stricthostkeychecking":
        value = one().lower()
        if value not in _STRICT:
            raise ConfigError(f"bad StrictHostKeyChecking {value!r}", path=path, line=line)
        if opts.strict_host_key_checking is None:
            opts.strict_host_key_checking = _STRICT[value]
    elif keyword == "connecttimeout":
        value_s = seconds()
        if not opts.connect_timeout_set:
            opts.connect_timeout_s, opts.connect_timeout_set = value_s, True
    elif keyword == "serveraliveinterval":
        value_s = seconds()
        if opts.server_alive_interval_s is None:
            opts.server_alive_interval_s = value_s or 0.0
    elif keyword == "hostkeyalias":
        if opts.host_key_alias is None:
            opts.host_key_alias = one()
    elif keyword == "canonicalizehostname" and one().lower() in ("yes", "always", "true"):
        opts.canonicalize_hostname = True
