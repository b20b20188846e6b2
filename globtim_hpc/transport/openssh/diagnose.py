"""Turning what the system ssh printed into the toolkit's errors, naming the hop that failed.

ssh reports everything with exit status 255 and a few lines of text; the text says which
kind of failure it was (credentials refused, host key, network, configuration) and usually
which host. The hop is named by its alias where the built-in resolver can work the chain out
(it cannot for a ProxyCommand), otherwise by the address ssh printed.
"""

from __future__ import annotations

import re

from globtim_hpc.errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    GlobtimHpcError,
    HostKeyError,
)
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.config import ResolvedHost, resolve_chain

_MAX_LINES = 6
_DEBUG = ("debug1:", "debug2:", "debug3:", "OpenSSH_", "Authenticated to ", "Transferred:")
_NOISE = (
    "Warning: Permanently added",
    "Pseudo-terminal",
    "Shared connection to",
    "Bytes per second",
    "client_loop: send disconnect",
)
_HOST_KEY = (
    "Host key verification failed",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "host key is known for",
    "has changed and you have requested strict checking",
    "REVOKED HOST KEY",
)
_AUTH = ("Permission denied", "Too many authentication failures")
_CONFIG = (
    "Bad configuration option",
    "bad configuration options",
    "Bad owner or permissions",
    "Unsupported option",
    "garbage at end of line",
    "Can't open user config file",
    "Invalid -J argument",
)
_TRANSIENT = (
    "Connection refused",
    "timed out",
    "Connection closed",
    "closed by remote host",
    "Connection reset",
    "No route to host",
    "Network is unreachable",
    "Host is down",
    "Broken pipe",
    "kex_exchange_identification",
    "banner exchange",
    "connect failed",
    "Control socket connect",
)
_ADDRESS = (
    re.compile(r"connect to host (?P<host>\S+) port (?P<port>\d+)"),
    re.compile(
        r"Connection (?:to|closed by|reset by) (?!remote host)(?P<host>[^\s:]+)"
        r"(?: port (?P<port>\d+))?"
    ),
    re.compile(r"\S+@(?P<host>[^\s:]+): Permission denied"),
    re.compile(r"host key is known for (?P<host>\S+?)(?::(?P<port>\d+))? and"),
    re.compile(r"Host key for (?P<host>\S+) has changed"),
    re.compile(r"Could not resolve hostname (?P<host>[^\s:]+)"),
    re.compile(r"\((?P<who>[^()\s]+)@(?P<host>[^()\s]+)\) "),
)
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]+")


def without_debug(text: str) -> str:
    """ssh's messages without its -v output (the master runs with -v; see master.py)."""
    lines = [line.strip() for line in text.replace("\r", "").splitlines()]
    return "\n".join(line for line in lines if line and not line.startswith(_DEBUG))


def relevant_lines(text: str) -> list[str]:
    lines = without_debug(text).splitlines()
    kept = [line for line in lines if not line.startswith(_NOISE) and "@@@" not in line]
    return kept[-_MAX_LINES:]


def _chain(settings: SshSettings) -> list[ResolvedHost] | None:
    try:
        return resolve_chain(settings)
    except GlobtimHpcError:  # a ProxyCommand, or something only ssh understands
        return None


def hop_named_in(text: str, settings: SshSettings) -> str:
    """The first hop the text names: its resolved label, the address ssh printed, or the
    target (the first one named is where the failure started, e.g. the jump host)."""
    text = without_debug(text)
    found = sorted(
        (match.start(), match) for pattern in _ADDRESS for match in pattern.finditer(text)
    )
    chain: list[ResolvedHost] | None = None
    for _position, match in found:
        host = match.group("host").strip("[]")
        if host.upper() == "UNKNOWN":
            continue
        port = match.groupdict().get("port")
        if chain is None:
            chain = _chain(settings) or []
        for hop in chain:
            if host in (hop.hostname, hop.alias) and (port is None or int(port) == hop.port):
                return hop.label
        return f"{host}:{port}" if port else host
    return settings.target


def error_from_ssh(text: str, settings: SshSettings, what: str) -> GlobtimHpcError:
    """The error for an ssh that failed while doing ``what`` (its stderr or log as ``text``)."""
    text = without_debug(text)
    lines = relevant_lines(text)
    detail = "; ".join(lines) or "ssh failed without saying why"
    message = f"{what} failed (ssh): {detail}"
    if any(marker in text for marker in _CONFIG):
        return ConfigError(message, "fix the ssh_config file or the profile's ssh settings")
    hop = hop_named_in(text, settings)
    if any(marker in text for marker in _HOST_KEY):
        fingerprint = _FINGERPRINT.search(text)
        return HostKeyError(
            message,
            "check the host key with the administrators; record it in the known_hosts file "
            "(ssh-keyscan) or set host_key_policy: accept-new for a key never seen before",
            hop=hop,
            fingerprint=fingerprint.group(0) if fingerprint else None,
        )
    if any(marker in text for marker in _AUTH):
        return AuthenticationError(
            message,
            "check IdentityFile, the ssh agent and the user name; a password or one-time "
            "code needs a terminal or an askpass program (SSH_ASKPASS)",
            hop=hop,
        )
    if "administratively prohibited" in text:
        return ConnectError(
            message, "allow TCP forwarding (AllowTcpForwarding) on the jump host", hop=hop
        )
    if "Could not resolve hostname" in text:
        return ConnectError(message, "check HostName in ssh_config or the cluster profile", hop=hop)
    transient = any(marker in text for marker in _TRANSIENT)
    return ConnectError(
        message,
        "the next command reconnects; check the network and the hop's sshd if it persists"
        if transient
        else "run the same ssh by hand with -v to see more",
        hop=hop,
        transient=transient,
    )
