"""Resolving one host, and the whole jump chain, from ssh_config files and profile values."""

from __future__ import annotations

import os
from dataclasses import replace

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.config.jump import parse_proxy_jump
from globtim_hpc.transport.ssh.config.model import (
    DEFAULT_GLOBAL_KNOWN_HOSTS,
    DEFAULT_PORT,
    CommandLine,
    LocalContext,
    ResolvedHost,
)
from globtim_hpc.transport.ssh.config.options import Options
from globtim_hpc.transport.ssh.config.reader import Reader
from globtim_hpc.transport.ssh.config.tokens import (
    connection_tokens,
    expand_hostname,
    expand_path,
    expand_tilde,
)

SYSTEM_CONFIG = "/etc/ssh/ssh_config"
_MAX_JUMP_DEPTH = 16
_DEFAULT_IDENTITY_FILES = (
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
)
_DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")


def default_config_files(local: LocalContext) -> list[tuple[str, bool]]:
    """Without -F OpenSSH reads ~/.ssh/config, then /etc/ssh/ssh_config."""
    return [(os.path.join(local.home, ".ssh", "config"), False), (SYSTEM_CONFIG, True)]


def resolve_host(
    host: str,
    config_file: str | None = None,
    *,
    command_line: CommandLine | None = None,
    local: LocalContext | None = None,
) -> ResolvedHost:
    """Resolve ``host`` as ``ssh [-F config_file] [command-line options] host`` would.

    ``config_file=None`` reads ~/.ssh/config and /etc/ssh/ssh_config like OpenSSH does; the
    string ``"none"`` reads no file at all.
    """
    local = local or LocalContext.current()
    cmd = command_line or CommandLine()
    if config_file is None:
        files = default_config_files(local)
    elif config_file.lower() == "none":
        files = []
    else:
        files = [(expand_tilde(config_file, local), False)]

    start = Options(
        hostname=cmd.hostname,
        user=cmd.user,
        port=cmd.port,
        identity_files=list(cmd.identity_files),
        known_hosts_files=list(cmd.known_hosts_files) or None,
    )
    if cmd.proxy_jump is not None:
        parse_proxy_jump(cmd.proxy_jump)
        start.proxy_jump = cmd.proxy_jump
        if cmd.proxy_jump.lower() != "none":
            start.proxy_command = "none"

    reader = Reader(original_host=host, local=local, host=host, options=start)
    for path, system in files:
        reader.read_file(path, system=system, active=True, never_match=False, depth=0)
    if reader.wants_final_pass or reader.options.canonicalize_hostname:
        reader.final_pass = True
        reader.host = expand_hostname(reader.options.hostname or host, host).lower()
        reader.options.hostname = reader.host
        for path, system in files:
            reader.read_file(path, system=system, active=True, never_match=False, depth=0)
    return _finish(host, reader.options, local)


def _finish(host: str, opts: Options, local: LocalContext) -> ResolvedHost:
    hostname = expand_hostname(opts.hostname or host, host).lower()
    user = opts.user or local.user
    port = opts.port or DEFAULT_PORT
    jumps = parse_proxy_jump(opts.proxy_jump) if opts.proxy_jump else ()
    proxy_command = opts.proxy_command if opts.proxy_command not in (None, "none") else None
    if proxy_command is not None:
        jumps = ()
    tokens = connection_tokens(
        hostname=hostname,
        original=host,
        port=port,
        user=user,
        jump=jumps[-1].host if jumps else "",
        key_alias=opts.host_key_alias,
        local=local,
    )
    identity_files = tuple(
        expand_path(p, tokens, local, what="IdentityFile")
        for p in (opts.identity_files or _DEFAULT_IDENTITY_FILES)
    )
    known_hosts = tuple(
        expand_path(p, tokens, local, what="UserKnownHostsFile")
        for p in (opts.known_hosts_files or _DEFAULT_USER_KNOWN_HOSTS)
        if p.lower() != "none"
    )
    global_known_hosts = tuple(
        expand_path(p, tokens, local, what="GlobalKnownHostsFile")
        for p in (opts.global_known_hosts_files or DEFAULT_GLOBAL_KNOWN_HOSTS)
        if p.lower() != "none"
    )
    return ResolvedHost(
        alias=host,
        hostname=hostname,
        user=user,
        port=port,
        identity_files=identity_files,
        identities_only=bool(opts.identities_only),
        proxy_jump=jumps,
        known_hosts_files=known_hosts,
        strict_host_key_checking=opts.strict_host_key_checking or "ask",
        connect_timeout_s=opts.connect_timeout_s,
        server_alive_interval_s=opts.server_alive_interval_s,
        global_known_hosts_files=global_known_hosts,
        host_key_alias=opts.host_key_alias,
        proxy_command=proxy_command,
        original_host=host,
    )


def _overrides_for(settings: SshSettings, host: str) -> CommandLine:
    for override in settings.overrides:
        if override.host == host:
            return CommandLine(
                hostname=override.hostname,
                user=override.user,
                port=override.port,
                identity_files=(override.identity_file,) if override.identity_file else (),
            )
    return CommandLine()


def _merge(first: CommandLine, second: CommandLine) -> CommandLine:
    """Combine two sets of command-line options; ``first`` wins where both say something."""
    return CommandLine(
        hostname=first.hostname or second.hostname,
        user=first.user or second.user,
        port=first.port or second.port,
        proxy_jump=first.proxy_jump if first.proxy_jump is not None else second.proxy_jump,
        identity_files=first.identity_files + second.identity_files,
        known_hosts_files=first.known_hosts_files or second.known_hosts_files,
    )


def resolve_chain(
    settings: SshSettings, *, local: LocalContext | None = None
) -> list[ResolvedHost]:
    """Every hop from the first jump host to the target (last), as OpenSSH would connect."""
    local = local or LocalContext.current()
    common = CommandLine(
        identity_files=tuple(settings.extra_identity_files),
        known_hosts_files=tuple(settings.known_hosts_files),
    )
    target_cmd = _merge(
        _merge(
            CommandLine(proxy_jump=settings.proxy_jump), _overrides_for(settings, settings.target)
        ),
        common,
    )
    chain = _resolve_recursive(settings, settings.target, target_cmd, common, local, depth=0)
    return [_fill_defaults(hop, settings) for hop in chain]


def _resolve_recursive(
    settings: SshSettings,
    host: str,
    cmd: CommandLine,
    common: CommandLine,
    local: LocalContext,
    *,
    depth: int,
) -> list[ResolvedHost]:
    if depth > _MAX_JUMP_DEPTH:
        raise ConfigError(
            f"ProxyJump chain deeper than {_MAX_JUMP_DEPTH} hops (a loop?) at {host!r}"
        )
    resolved = resolve_host(host, settings.config_file, command_line=cmd, local=local)
    if resolved.proxy_command is not None:
        raise ConfigError(
            f"{host}: ProxyCommand is not supported by the built-in SSH client "
            f"({resolved.proxy_command!r})",
            "set 'ssh.client: openssh' in the cluster profile (the system ssh runs ProxyCommand "
            "itself), or use ProxyJump in ssh_config or proxy_jump in the profile",
        )
    if not resolved.proxy_jump:
        return [resolved]
    last, extra = resolved.proxy_jump[-1], resolved.proxy_jump[:-1]
    if (last.host, last.port or DEFAULT_PORT, last.user or resolved.user) == (
        resolved.hostname,
        resolved.port,
        resolved.user,
    ):
        raise ConfigError(f"{host}: ProxyJump loop via {last.host}")
    jump_cmd = _merge(
        CommandLine(
            user=last.user,
            port=last.port,
            proxy_jump=",".join(str(j) for j in extra) if extra else None,
        ),
        _merge(_overrides_for(settings, last.host), common),
    )
    before = _resolve_recursive(settings, last.host, jump_cmd, common, local, depth=depth + 1)
    return [*before, resolved]


def _fill_defaults(hop: ResolvedHost, settings: SshSettings) -> ResolvedHost:
    """Profile values apply where ssh_config said nothing."""
    return replace(
        hop,
        connect_timeout_s=hop.connect_timeout_s
        if hop.connect_timeout_s
        else settings.connect_timeout_s,
        server_alive_interval_s=(
            hop.server_alive_interval_s if hop.server_alive_interval_s else settings.keepalive_s
        ),
    )
