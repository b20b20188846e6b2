"""What an SSH transport needs to know, as resolved from a cluster profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HostKeyPolicy = Literal["strict", "accept-new"]
SshClient = Literal["paramiko", "openssh"]


@dataclass(frozen=True)
class HopOverride:
    """Explicit settings for one host; None means 'ask ~/.ssh/config, then OpenSSH defaults'."""

    host: str
    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None


@dataclass(frozen=True)
class SshSettings:
    """The target host plus how to reach it.

    ``target`` is a host name or ssh_config alias. The chain of jump hosts comes from
    ``proxy_jump`` when set (OpenSSH syntax: "mack", "u@a:22,b", "none"), otherwise from the
    ssh_config file. ``overrides`` apply to the hosts they name, above ssh_config.
    """

    target: str
    config_file: str | None = None  # None: ~/.ssh/config if it exists
    proxy_jump: str | None = None
    overrides: tuple[HopOverride, ...] = ()
    known_hosts_files: tuple[str, ...] = ()  # empty: UserKnownHostsFile from ssh_config / default
    host_key_policy: HostKeyPolicy = "strict"
    connect_timeout_s: float = 15.0
    keepalive_s: float = 30.0
    connect_retries: int = 3
    passphrase_env: str | None = None
    use_agent: bool = True
    extra_identity_files: tuple[str, ...] = field(default_factory=tuple)
    # "openssh": the system ssh with a shared ControlMaster connection (transport/openssh)
    client: SshClient = "paramiko"
    control_persist_s: float = 600.0  # how long an idle shared connection stays open
    control_dir: str | None = None  # None: $XDG_RUNTIME_DIR/globtim-hpc, else /tmp/globtim-hpc-UID
