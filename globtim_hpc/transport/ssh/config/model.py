"""What resolving a host produces and what it starts from (plain data, no parsing)."""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass
from typing import Literal

StrictHostKeyChecking = Literal["yes", "no", "ask", "accept-new"]

DEFAULT_PORT = 22
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


@dataclass(frozen=True)
class JumpSpec:
    """One element of a ProxyJump list: ``[user@]host[:port]`` or ``ssh://[user@]host[:port]``."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        text = f"[{self.host}]" if ":" in self.host else self.host
        if self.user:
            text = f"{self.user}@{text}"
        if self.port is not None:
            text = f"{text}:{self.port}"
        return text


@dataclass(frozen=True)
class ResolvedHost:
    """Everything the SSH transport needs about one hop, as OpenSSH would use it."""

    alias: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]
    identities_only: bool
    proxy_jump: tuple[JumpSpec, ...]
    known_hosts_files: tuple[str, ...]
    strict_host_key_checking: StrictHostKeyChecking
    connect_timeout_s: float | None
    server_alive_interval_s: float | None
    global_known_hosts_files: tuple[str, ...] = DEFAULT_GLOBAL_KNOWN_HOSTS
    host_key_alias: str | None = None
    proxy_command: str | None = None
    original_host: str = ""

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        """How a hop is named in messages: its alias and where it really is."""
        return f"{self.alias} ({self.user}@{self.address})"


@dataclass(frozen=True)
class CommandLine:
    """Options that win over every config file, like ``ssh -l/-p/-J/-i/-o`` would."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    proxy_jump: str | None = None
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalContext:
    """Facts about the local machine that tokens and defaults refer to (injectable for tests)."""

    home: str
    user: str
    uid: int
    hostname: str

    @classmethod
    def current(cls) -> LocalContext:
        # OpenSSH takes the home folder from the password database, not from $HOME.
        entry = pwd.getpwuid(os.getuid())
        return cls(
            home=entry.pw_dir, user=entry.pw_name, uid=os.getuid(), hostname=socket.gethostname()
        )
