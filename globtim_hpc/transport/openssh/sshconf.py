"""The ssh_config file the system ssh reads (``-F``), and the ssh command lines.

Options on ssh's command line reach only the first ssh process; for each ProxyJump hop ssh
starts another ``ssh -W`` that gets ``-F`` (and -l, -p, -J) but none of the ``-o`` options
(OpenSSH ssh.c, where ProxyJump becomes a ProxyCommand). So everything the profile says that
must hold on every hop is written into a generated file which then includes the user's own
configuration:

1. the profile's per-host values (``ssh.hosts``) as ``Host`` blocks;
2. what the profile imposes everywhere: StrictHostKeyChecking (strict -> yes, accept-new ->
   accept-new), the profile's known_hosts files, BatchMode, no agent if ``use_agent`` is off,
   extra identity files;
3. the ssh_config files ssh would read itself (``ssh.config_file``, or ~/.ssh/config and
   /etc/ssh/ssh_config);
4. the profile's defaults, where the files said nothing: ConnectTimeout, ServerAliveInterval.

For every option the first value obtained wins, so this order is the order of precedence.
Every value is quoted as ssh_config's own argv_split reads it.
"""

from __future__ import annotations

import glob
import math
import os
import re

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.settings import HopOverride, SshSettings
from globtim_hpc.transport.ssh.config import LocalContext, default_config_files, parse_proxy_jump

_HOST_ALIAS = re.compile(r"[A-Za-z0-9._@:\[\]-]+")


def config_word(value: str, *, tokens: bool = False) -> str:
    """One ssh_config argument, double-quoted; ``tokens``: the option expands ``%`` tokens."""
    if any(ch in value for ch in "\n\r\0"):
        raise ConfigError(f"{value!r} cannot be written into an ssh_config file")
    if tokens:
        if "${" in value:
            raise ConfigError(
                f"{value!r} contains '${{', which ssh would expand as an environment variable",
                "rename the file or folder",
            )
        value = value.replace("%", "%%")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(values: list[str] | tuple[str, ...], *, tokens: bool = False) -> str:
    return " ".join(config_word(v, tokens=tokens) for v in values)


def _seconds(value_s: float) -> str:
    return str(max(1, math.ceil(value_s)))


def _host_block(override: HopOverride) -> list[str]:
    if not _HOST_ALIAS.fullmatch(override.host):
        raise ConfigError(
            f"ssh.hosts: {override.host!r} is not a plain host name",
            "use the alias as written on the ssh command line (no spaces, *, ?, ! or commas)",
            key="ssh.hosts",
        )
    lines = [f"Host {override.host}"]
    if override.hostname:
        lines.append(f"    HostName {config_word(override.hostname, tokens=True)}")
    if override.user:
        if "%" in override.user:
            raise ConfigError(f"ssh.hosts.{override.host}.user must not contain '%'")
        lines.append(f"    User {config_word(override.user)}")
    if override.port:
        lines.append(f"    Port {int(override.port)}")
    if override.identity_file:
        lines.append(f"    IdentityFile {config_word(override.identity_file, tokens=True)}")
    return lines


def _include(path: str) -> list[str]:
    # an Include of a host block would otherwise apply only inside that block
    return ["Match all", f"Include {config_word(glob.escape(path))}"]


def user_config_files(settings: SshSettings, local: LocalContext | None = None) -> list[str]:
    """The files ssh would read without ``-F``, or the profile's own file."""
    if settings.config_file:
        if settings.config_file.lower() == "none":
            return []
        if not os.path.isfile(settings.config_file):
            raise ConfigError("ssh config file not found", path=settings.config_file)
        return [os.path.abspath(settings.config_file)]
    return [path for path, _system in default_config_files(local or LocalContext.current())]


def generated_config(
    settings: SshSettings, *, interactive: bool, local: LocalContext | None = None
) -> str:
    """The text of the ``-F`` file; ``interactive``: answers may be asked for (askpass)."""
    lines = [
        "# Written by globtim-hpc from a cluster profile's ssh settings, for the system ssh.",
        "# First the profile's values, then the ssh_config files, then the profile's defaults",
        "# (for each option ssh keeps the first value it obtains).",
    ]
    for override in settings.overrides:
        lines += _host_block(override)
    strict = "accept-new" if settings.host_key_policy == "accept-new" else "yes"
    lines += ["Match all", f"    StrictHostKeyChecking {strict}"]
    lines.append(f"    BatchMode {'no' if interactive else 'yes'}")
    if settings.known_hosts_files:
        lines.append(f"    UserKnownHostsFile {_words(settings.known_hosts_files, tokens=True)}")
    if not settings.use_agent:
        lines.append("    IdentityAgent none")
    for identity in settings.extra_identity_files:
        lines.append(f"    IdentityFile {config_word(identity, tokens=True)}")
    for path in user_config_files(settings, local):
        lines += _include(path)
    lines += ["Match all", f"    ConnectTimeout {_seconds(settings.connect_timeout_s)}"]
    if settings.keepalive_s > 0:
        lines.append(f"    ServerAliveInterval {_seconds(settings.keepalive_s)}")
    return "\n".join(lines) + "\n"


def ssh_options(settings: SshSettings, config: str, control_socket: str) -> list[str]:
    """Options of every ssh command line for this cluster (before the host)."""
    options = ["-F", config, "-o", f"ControlPath={control_socket}"]
    if settings.proxy_jump:
        parse_proxy_jump(settings.proxy_jump)  # refuse what ssh would read differently
        options += ["-o", f"ProxyJump={settings.proxy_jump}"]
    return options


def control_options(control_socket: str) -> list[str]:
    """Options of the ``-O`` requests to a master: they read no ssh_config file."""
    return ["-F", "none", "-o", f"ControlPath={control_socket}"]
