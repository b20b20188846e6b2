"""ProxyJump values: ``[user@]host[:port]``, ``[v6]:port``, ``ssh://`` URIs, lists and ``none``."""

from __future__ import annotations

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.ssh.config.model import JumpSpec


def _parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"bad port {text!r} in {what}")
    return int(text)


def parse_jump(text: str) -> JumpSpec:
    """Parse one ProxyJump element: ``[user@]host[:port]``, ``[v6]:port``, or an ssh:// URI."""
    spec = text.strip()
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://") :].rstrip("/")
        if "/" in spec:
            raise ConfigError(f"bad ProxyJump URI {text!r}: a path is not allowed")
    user: str | None = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
        if not user:
            raise ConfigError(f"bad ProxyJump element {text!r}: empty user")
    port: int | None = None
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise ConfigError(f"bad ProxyJump element {text!r}: unclosed '['")
        host, rest = spec[1:end], spec[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad ProxyJump element {text!r}")
            port = _parse_port(rest[1:], f"ProxyJump {text!r}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _parse_port(port_text, f"ProxyJump {text!r}")
    else:
        host = spec
    if not host:
        raise ConfigError(f"bad ProxyJump element {text!r}: empty host")
    return JumpSpec(host=host, user=user, port=port)


def parse_proxy_jump(value: str) -> tuple[JumpSpec, ...]:
    """Parse a whole ProxyJump value; ``none`` is the empty chain."""
    if value.strip().lower() == "none":
        return ()
    return tuple(parse_jump(part) for part in value.split(","))
