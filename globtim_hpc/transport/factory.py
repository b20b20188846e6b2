"""Choose a transport by kind. paramiko is imported only when an SSH transport is made."""

from __future__ import annotations

from typing import Literal

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.base import PromptFn, Transport
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.transport.settings import SshSettings

TransportKind = Literal["ssh", "local"]


def open_transport(
    kind: TransportKind, ssh: SshSettings | None, prompt: PromptFn | None = None
) -> Transport:
    """A transport of the given kind; SSH connects lazily, on the first command."""
    if kind == "local":
        return LocalTransport()
    if kind == "ssh":
        if ssh is None:
            raise ConfigError("transport 'ssh' needs SSH settings (at least a target host)")
        # imported here so that commands which never reach a cluster never load paramiko
        from globtim_hpc.transport.ssh.chain import SshTransport

        return SshTransport(ssh, prompt=prompt)
    raise ConfigError(f"unknown transport {kind!r}", "use 'ssh' or 'local'")


def hop_labels(ssh: SshSettings | None) -> list[tuple[str, str]]:
    """(alias, label) of every SSH hop, first jump host first; none for a local transport."""
    if ssh is None:
        return []
    from globtim_hpc.transport.ssh.config import resolve_chain

    return [(hop.alias, hop.label) for hop in resolve_chain(ssh)]
