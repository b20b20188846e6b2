"""The paramiko SSH transport: ``chain`` (the hop chain and the Transport), ``hop`` (one hop),
``auth`` (authentication), ``hostkeys`` (known_hosts and the host key decision), ``exec``
(running a command on a channel), ``failures`` (what a broken link looks like), and
``config`` (ssh_config resolution, pure).

Importing this package does not import paramiko: ``config`` and ``hostkeys`` are pure, and
the modules that need paramiko import it themselves. ``SshTransport`` is still importable
from here (as before the split); it loads ``chain``, and with it paramiko, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from globtim_hpc.transport.ssh.chain import SshTransport

__all__ = ["SshTransport"]


def __getattr__(name: str) -> Any:
    if name == "SshTransport":
        from globtim_hpc.transport.ssh.chain import SshTransport

        return SshTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
