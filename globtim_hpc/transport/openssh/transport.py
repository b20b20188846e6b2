"""OpenSshTransport: the Transport contract through the system ``ssh`` and a shared connection.

Every command is one ``ssh -o ControlMaster=no`` process that runs through the cluster's
ControlMaster (see ``master``): no new TCP connection, no new authentication, a few
milliseconds of set-up. The master outlives this object and this process: every later
command of any of the four scripts, and of the Python API, reuses it until it has been idle
for ``ssh.control_persist_s``; ``disconnect()`` ends it at once.

ssh's own failures and a remote command's exit status 255 look alike. A 255 counts as the
command's when the master is still alive afterwards; otherwise the connection is gone and it
is a ConnectError (the next command starts a new master).

Quoting: the argv becomes the one line ssh sends by ``globtim_hpc.quoting.command_line``, exactly
as in the paramiko transport (a line every login shell accepts, tcsh included).
"""

from __future__ import annotations

import os
import time

from globtim_hpc.errors import ConfigError, ConnectError, RemoteCommandError, TransferError
from globtim_hpc.quoting import command_line
from globtim_hpc.transport import process
from globtim_hpc.transport.base import (
    CommandResult,
    CommandTransport,
    Invocation,
    PromptFn,
    temporary_beside,
)
from globtim_hpc.transport.openssh.diagnose import error_from_ssh, hop_named_in, relevant_lines
from globtim_hpc.transport.openssh.master import Master, MasterStatus
from globtim_hpc.transport.openssh.sshconf import ssh_options
from globtim_hpc.transport.settings import SshSettings

_SSH_FAILED = 255
_SETTLE_S = 0.3  # a master whose connection just died may need a moment to notice
# One line, so every login shell takes it (csh rejects a newline inside quotes). The file is
# created empty with the final mode before any byte lands, then renamed over the target.
_PUT_SCRIPT = (
    'set -C && : > "$1" && chmod "$2" "$1" && cat >| "$1" && mv -f -- "$1" "$3" '
    '|| { s=$?; rm -f -- "$1"; exit "$s"; }'
)


class OpenSshTransport(CommandTransport):
    """Runs commands and moves files on ``settings.target`` with the system ssh."""

    def __init__(self, settings: SshSettings, *, prompt: PromptFn | None = None) -> None:
        self._settings = settings
        self._prompt = prompt
        self._master: Master | None = None
        self._checked = False

    @property
    def label(self) -> str:
        return self._settings.target

    # -- the shared connection -------------------------------------------------------------

    @property
    def master(self) -> Master:
        if self._master is None:
            self._master = Master(self._settings, self._prompt)
        return self._master

    def master_status(self) -> MasterStatus:
        """Whether the shared connection is open (``ssh -O check``); it never connects."""
        return self.master.status()

    def disconnect(self) -> bool:
        """End the shared connection now (``ssh -O exit``); True if one was open.

        The next command connects (and authenticates) again.
        """
        self._checked = False
        return self.master.stop()

    def close(self) -> None:
        """Nothing to release here: the shared connection stays for the next command (see
        ``disconnect``), and every command's ssh has ended."""

    # -- protocol --------------------------------------------------------------------------

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        temporary = temporary_beside(remote_path, self.label)
        argv = ["sh", "-c", _PUT_SCRIPT, "sh", temporary, f"{mode:o}", remote_path]
        result = self.run(argv, stdin=data, timeout_s=600.0)
        if not result.ok:
            raise TransferError(
                f"{self.label}: cannot write {remote_path}: {result.output_tail(3) or 'failed'}"
            )

    def get_bytes(self, remote_path: str) -> bytes:
        result = self.run(["cat", "--", remote_path], timeout_s=600.0)
        if not result.ok:
            raise TransferError(
                f"{self.label}: cannot read {remote_path}: {result.output_tail(3) or 'failed'}"
            )
        return result.stdout

    # -- commands --------------------------------------------------------------------------

    def _execute(self, command: Invocation) -> CommandResult:
        args = command.args()
        client = self._client_argv(command_line(args))
        child = process.start(client)
        if child is None:
            raise ConnectError(f"cannot start {client[0]}", hop=self.label)
        try:
            stdout, stderr = process.serve(child, command)
        except process.ProcessTimeout as exc:
            raise RemoteCommandError(
                f"{self.label}: command timed out after {command.timeout_s:g} s and was abandoned",
                "raise timeout_s if the command needs longer",
                argv=args,
                output_tail=CommandResult(args, -1, exc.stdout, exc.stderr).output_tail(),
            ) from None
        if child.returncode == _SSH_FAILED or child.returncode < 0:
            self._raise_if_link_failed(args, stderr)
        return CommandResult(args, child.returncode, stdout, stderr)

    def _client_argv(self, command_line: str) -> list[str]:
        master = self.master
        if not self._checked or not os.path.exists(master.files.socket):
            master.ensure()
            self._checked = True
        options = ssh_options(self._settings, master.client_config, master.files.socket)
        # no terminal, no escape character: the bytes pass untouched; BatchMode: should the
        # master have gone, the fallback connection must not sit waiting for an answer
        return [
            master.ssh,
            *options,
            "-o",
            "ControlMaster=no",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-T",
            "-e",
            "none",
            "--",
            self._settings.target,
            command_line,
        ]

    def _raise_if_link_failed(self, args: tuple[str, ...], stderr: bytes) -> None:
        """Exit status 255: the command's own, unless the shared connection is gone."""
        deadline = time.monotonic() + _SETTLE_S
        while True:
            if not self.master.status().alive:
                break
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)
        self._checked = False  # the next command starts a new master
        text = stderr.decode("utf-8", errors="replace") + "\n" + _read_tail(self.master.files.log)
        error = error_from_ssh(text, self._settings, f"running {args[0]}")
        if isinstance(error, ConfigError):
            raise error
        detail = "; ".join(relevant_lines(text))
        raise ConnectError(
            f"connection lost while running {args[0]}" + (f" ({detail})" if detail else ""),
            "the next command reconnects; check the network and the hop's sshd if it persists",
            hop=hop_named_in(text, self._settings),
            transient=True,
        )


def _read_tail(path: str, size: int = 4096) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            start = max(0, handle.tell() - size)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    if start > 0:
        data = data.partition(b"\n")[2]  # the first line is cut
    return data.decode("utf-8", errors="replace")
