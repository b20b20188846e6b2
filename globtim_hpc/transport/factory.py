"""Choose a transport by kind (and, for SSH, by client). paramiko is imported only when the
paramiko client is made."""

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
        if ssh.client == "openssh":
            from globtim_hpc.transport.openssh.transport import OpenSshTransport

            return OpenSshTransport(ssh, prompt=prompt)
        if ssh.client != "paramiko":
            raise ConfigError(
                f"unknown SSH client {ssh.client!r}",
                "use 'paramiko' or 'openssh'",
                key="ssh.client",
            )
        # imported here so that commands which never reach a cluster never load paramiko
        from globtim_hpc.transport.ssh.chain import SshTransport

        return SshTransport(ssh, prompt=prompt)
    raise ConfigError(f"unknown transport {kind!r}", "use 'ssh' or 'local'")


def hop_labels(ssh: SshSettings | None) -> list[tuple[str, str]]:
    """(alias, label) of every SSH hop, first jump host first; none for a local transport.

    With ``ssh.client: openssh`` a chain the built-in resolver cannot follow (a ProxyCommand)
    gives none: only the system ssh knows it.
    """
    if ssh is None:
        return []
    from globtim_hpc.transport.ssh.config import resolve_chain

    try:
        return [(hop.alias, hop.label) for hop in resolve_chain(ssh)]
    except ConfigError:
        if ssh.client != "openssh":
            raise
        return []


def disconnect(ssh: SshSettings | None) -> bool:
    """End the shared connection a profile keeps open between commands; True if one was open.

    Only ``ssh.client: openssh`` keeps one (an ssh ControlMaster, alive for
    ``ssh.control_persist_s`` after its last use); the paramiko client's connection ends with
    each process, so there is nothing to end. This is what a ``--disconnect`` flag calls.
    """
    if ssh is None or ssh.client != "openssh":
        return False
    from globtim_hpc.transport.openssh.transport import OpenSshTransport

    return OpenSshTransport(ssh).disconnect()


def ssh_client_summary(transport: Transport) -> str:
    """Which SSH client a transport is, and whether its shared connection is open (for the
    doctor); asking never connects."""
    from globtim_hpc.transport.openssh.transport import OpenSshTransport

    if not isinstance(transport, OpenSshTransport):
        return "paramiko (built in)"
    master = transport.master_status()
    if master.alive:
        return f"openssh; shared connection alive (pid {master.pid}, {master.socket})"
    return "openssh; no shared connection open"
