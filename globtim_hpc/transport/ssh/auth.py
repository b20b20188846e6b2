"""Authenticating one hop: public keys (agent and files), keyboard-interactive, password.

The order and the key choice follow OpenSSH: agent keys and IdentityFile keys, with
IdentitiesOnly only the files' keys. Answers (passphrases, passwords, one-time codes) come from
the prompt callback; a key's passphrase may also come from the variable named by
``passphrase_env``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import paramiko

from globtim_hpc.errors import AuthenticationError, ConnectError
from globtim_hpc.transport.base import PromptFn
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.config import ResolvedHost
from globtim_hpc.transport.ssh.failures import BROKEN, describe

_PASSPHRASE_ATTEMPTS = 3
# paramiko reports a wrong passphrase for PEM keys, `cryptography` for OpenSSH-format keys
_WRONG_PASSPHRASE = (paramiko.SSHException, ValueError, TypeError)
_LOCKED = paramiko.PKey()  # stands for "an encrypted key nobody could unlock"


class Authenticator:
    """Logs a user in on each hop; remembers unlocked keys so a passphrase is asked for once."""

    def __init__(self, settings: SshSettings, prompt: PromptFn | None) -> None:
        self._settings = settings
        self._prompt = prompt
        self._keys: dict[str, paramiko.PKey | None] = {}
        self._agent: paramiko.Agent | None = None

    def release_agent(self) -> None:
        """Agent keys sign through this connection; once every hop is in, it is not needed."""
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def authenticate(self, host: ResolvedHost, transport: paramiko.Transport) -> None:
        try:
            transport.auth_none(host.user)
            allowed: list[str] = []
        except paramiko.BadAuthenticationType as exc:
            allowed = list(exc.allowed_types)
        except BROKEN as exc:
            raise _lost(host, "none", exc) from exc
        tried: list[str] = []
        attempts: dict[
            str, Callable[[ResolvedHost, paramiko.Transport, list[str]], list[str] | None]
        ] = {
            "publickey": self._auth_publickey,
            "keyboard-interactive": self._auth_interactive,
            "password": self._auth_password,
        }
        while not transport.is_authenticated():
            method = next((m for m in attempts if m in allowed and m not in tried), None)
            if method is None:
                _raise_if_gone(host, transport, tried[-1] if tried else "none")
                needs_answers = {"keyboard-interactive", "password"} & set(allowed)
                hint = (
                    "this hop asks for a password or one-time code; run interactively so that "
                    "it can be prompted for"
                    if needs_answers and self._prompt is None
                    else "check IdentityFile, the ssh agent and the user name"
                )
                locked = [path for path, key in self._keys.items() if key is _LOCKED]
                if locked:
                    hint += (
                        f"; {', '.join(locked)} needs a passphrase: set the variable named by "
                        "passphrase_env, or run interactively"
                    )
                raise AuthenticationError(
                    f"authentication as {host.user} failed (server accepts: "
                    f"{', '.join(allowed) or 'nothing'}; tried: {', '.join(tried) or 'nothing'})",
                    hint,
                    hop=host.label,
                )
            tried.append(method)
            try:
                remaining = attempts[method](host, transport, tried)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                continue
            except paramiko.AuthenticationException as exc:
                # paramiko says "Authentication failed" also when the connection went away
                # while it waited for the answer (EOF): that is a drop, not a refusal
                _raise_if_gone(host, transport, method, exc)
                continue
            except BROKEN as exc:
                raise _lost(host, method, exc) from exc
            if remaining:  # partial success: the server wants another method as well
                allowed = remaining

    def _auth_publickey(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        for key in self._candidate_keys(host):
            try:
                remaining = transport.auth_publickey(host.user, key)
            except paramiko.BadAuthenticationType:
                raise
            except paramiko.AuthenticationException as exc:
                _raise_if_gone(host, transport, "publickey", exc)
                continue
            return list(remaining)
        return None

    def _auth_interactive(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        prompt = self._prompt
        if prompt is None:
            return None
        failure: list[BaseException] = []

        # paramiko calls this from its own thread; exceptions are carried back by hand
        def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            answers = []
            for text, echo in prompts:
                try:
                    answers.append(prompt(host.label, text, echo))
                except BaseException as exc:
                    failure.append(exc)
                    return []
            return answers

        try:
            remaining = transport.auth_interactive(host.user, handler)
        finally:
            if failure:
                raise failure[0]
        return list(remaining)

    def _auth_password(
        self, host: ResolvedHost, transport: paramiko.Transport, tried: list[str]
    ) -> list[str] | None:
        if self._prompt is None:
            return None
        answer = self._prompt(host.label, f"{host.user}@{host.hostname}'s password: ", False)
        return list(transport.auth_password(host.user, answer))

    def _candidate_keys(self, host: ResolvedHost) -> list[paramiko.PKey]:
        """Agent keys and key files in OpenSSH's order; with IdentitiesOnly only the files' keys."""
        agent_keys: list[paramiko.PKey] = []
        if self._settings.use_agent and os.environ.get("SSH_AUTH_SOCK"):
            try:
                if self._agent is None:
                    self._agent = paramiko.Agent()
                agent_keys = list(self._agent.get_keys())
            except paramiko.SSHException:
                agent_keys = []  # an unreachable agent is not an error; key files may do
        agent_by_blob = {k.asbytes(): k for k in agent_keys}
        keys: list[paramiko.PKey] = []
        used: set[bytes] = set()
        for path in host.identity_files:
            public = _public_blob(path)
            if public is not None and public in agent_by_blob:
                keys.append(agent_by_blob[public])
                used.add(public)
                continue
            key = self._load_key(host, path)
            if key is not None and key.asbytes() not in used:
                keys.append(key)
                used.add(key.asbytes())
        if not host.identities_only:
            keys[0:0] = [k for k in agent_keys if k.asbytes() not in used]
        return keys

    def _load_key(self, host: ResolvedHost, path: str) -> paramiko.PKey | None:
        if path in self._keys:
            cached = self._keys[path]
            return None if cached is _LOCKED else cached
        key: paramiko.PKey | None = None
        if os.path.isfile(path):
            try:
                key = paramiko.PKey.from_path(path)
            except (paramiko.PasswordRequiredException, TypeError):
                # TypeError: how `cryptography` says an OpenSSH-format key needs a passphrase
                key = self._load_encrypted_key(host, path)
            except (paramiko.SSHException, ValueError, OSError):
                key = None  # not a key paramiko can use; OpenSSH would skip it as well
        self._keys[path] = key
        return None if key is _LOCKED else key

    def _load_encrypted_key(self, host: ResolvedHost, path: str) -> paramiko.PKey | None:
        env = self._settings.passphrase_env
        if env and os.environ.get(env):
            try:
                return _load_with_passphrase(path, os.environ[env])
            except _WRONG_PASSPHRASE as exc:
                raise AuthenticationError(
                    f"the passphrase in ${env} does not decrypt {path}", hop=host.label
                ) from exc
        if self._prompt is None:
            return _LOCKED
        for _ in range(_PASSPHRASE_ATTEMPTS):
            passphrase = self._prompt(host.label, f"Enter passphrase for key '{path}': ", False)
            if not passphrase:
                return None
            try:
                return _load_with_passphrase(path, passphrase)
            except _WRONG_PASSPHRASE:
                continue
        return None


def _lost(host: ResolvedHost, method: str, cause: BaseException | None) -> ConnectError:
    detail = f": {describe(cause)}" if cause is not None else ""
    return ConnectError(
        f"connection lost during {method} authentication{detail}",
        "the server did not refuse the credentials: the connection went away; try again, and "
        "check the network and the hop's sshd if it persists",
        hop=host.label,
        transient=True,
    )


def _raise_if_gone(
    host: ResolvedHost,
    transport: paramiko.Transport,
    method: str,
    cause: BaseException | None = None,
) -> None:
    """A refusal only counts as one while the connection is still there to have made it."""
    if not transport.is_active():
        raise _lost(host, method, cause) from cause


def _load_with_passphrase(path: str, passphrase: str) -> paramiko.PKey:
    # PKey.from_path hands the passphrase to `cryptography` unchanged, which wants bytes
    # (paramiko's own annotation says str)
    return paramiko.PKey.from_path(path, passphrase.encode())  # type: ignore[arg-type]


def _public_blob(private_path: str) -> bytes | None:
    """The public key beside a private key file (``path.pub``), if present and readable."""
    try:
        with open(private_path + ".pub", encoding="ascii") as handle:
            fields = handle.read().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, ValueError):
        return None
