"""Where the shared connection lives: a private folder and the files of one cluster's master.

The folder is ``$XDG_RUNTIME_DIR/globtim-hpc`` (the user's runtime folder, emptied at logout),
else ``/tmp/globtim-hpc-<uid>``, or the profile's ``ssh.control_dir``. It must belong to the
user and be closed to everyone else (0700), since its socket gives a shell on the cluster.

Paths are kept short and plain: a Unix socket path holds at most 107 bytes (sun_path), and
ssh first binds the master's socket under a temporary name 17 characters longer; ssh also
pastes the ``-F`` path unquoted into the command it runs for ProxyJump, and expands ``%``,
``~`` and ``${...}`` in ControlPath.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.settings import SshSettings

_SUN_PATH_MAX = 107  # bytes, without the terminating NUL
_SSH_TEMPORARY_SUFFIX = 17  # ssh binds "<ControlPath>.<16 random characters>" first
_PLAIN_PATH = re.compile(r"[A-Za-z0-9._/+-]+")


@dataclass(frozen=True)
class ControlFiles:
    """The files of one shared connection (one per set of SSH settings)."""

    folder: str
    name: str

    def _path(self, suffix: str) -> str:
        return os.path.join(self.folder, self.name + suffix)

    @property
    def socket(self) -> str:
        return self._path("")

    @property
    def lock(self) -> str:
        return self._path(".lock")

    @property
    def log(self) -> str:
        return self._path(".log")

    def config(self, *, interactive: bool) -> str:
        return self._path(".ask.conf" if interactive else ".batch.conf")

    @property
    def askpass_script(self) -> str:
        return os.path.join(self.folder, "askpass.sh")

    def askpass_socket(self, token: str) -> str:
        return os.path.join(self.folder, f"ap-{token[:10]}")


def connection_name(settings: SshSettings) -> str:
    """A short name that changes with everything deciding where and how ssh connects."""
    identity = repr(
        (
            settings.target,
            settings.config_file,
            settings.proxy_jump,
            settings.overrides,
            settings.known_hosts_files,
            settings.host_key_policy,
            settings.use_agent,
            settings.extra_identity_files,
        )
    )
    return "cm-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def default_folder() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _PLAIN_PATH.fullmatch(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "globtim-hpc")
    return f"/tmp/globtim-hpc-{os.getuid()}"


def control_files(settings: SshSettings) -> ControlFiles:
    """The shared connection's files, in a folder made private if it is new."""
    folder = os.path.abspath(settings.control_dir or default_folder())
    name = connection_name(settings)
    files = ControlFiles(folder, name)
    where = "ssh.control_dir" if settings.control_dir else "the runtime folder"
    if not _PLAIN_PATH.fullmatch(folder):
        raise ConfigError(
            f"{where} {folder!r} has characters ssh would treat specially",
            "set ssh.control_dir to a path of letters, digits and . _ - + /",
            key="ssh.control_dir",
        )
    longest = len(files.askpass_socket("x" * 10).encode()) + _SSH_TEMPORARY_SUFFIX
    longest = max(longest, len(files.socket.encode()) + _SSH_TEMPORARY_SUFFIX)
    if longest > _SUN_PATH_MAX:
        raise ConfigError(
            f"{where} {folder!r} is too long for a Unix socket path",
            f"set ssh.control_dir to a folder of at most "
            f"{_SUN_PATH_MAX - _SSH_TEMPORARY_SUFFIX - len(name) - 1} characters, e.g. /tmp/gh",
            key="ssh.control_dir",
        )
    _ensure_private_folder(folder)
    return files


def _ensure_private_folder(folder: str) -> None:
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder for the shared SSH connection: {exc.strerror}",
            "set ssh.control_dir to a folder you can write",
            path=folder,
        ) from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(
            "the folder for the shared SSH connection is not a folder of yours",
            "remove it, or set ssh.control_dir to a private folder",
            path=folder,
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)  # ours: close it rather than refuse


def write_private(path: str, text: str, *, mode: int = 0o600) -> None:
    """Replace a file atomically with ``text`` (unchanged files are left alone)."""
    target = Path(path)
    try:
        if (
            target.read_text(encoding="utf-8") == text
            and stat.S_IMODE(target.stat().st_mode) == mode
        ):
            return
    except OSError:
        pass
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, target)
