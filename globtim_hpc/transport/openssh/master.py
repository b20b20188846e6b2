"""The shared connection: an ssh ControlMaster per cluster, started once, reused until idle.

``ssh -O check`` says whether it is alive, ``ssh -O exit`` stops it. It is started as
``ssh -N -f -o ControlMaster=yes -o ControlPersist=N``: ssh authenticates every hop (asking
through askpass if it must), then goes to the background and keeps the socket open until it
has been idle for N seconds (ssh_config(5) ControlPersist). Its log (``-E``) and the stderr of
its ProxyJump helpers go to a file beside the socket: a pipe would be held open by those
helpers for the master's whole life.

Two commands starting at once must not both start a master (the second would run on, without
a socket, in the background): the start holds a lock file beside the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from globtim_hpc.errors import ConfigError, ConnectError
from globtim_hpc.transport.base import PromptFn
from globtim_hpc.transport.openssh.askpass import AskpassServer, user_askpass
from globtim_hpc.transport.openssh.diagnose import error_from_ssh
from globtim_hpc.transport.openssh.runtime import ControlFiles, control_files, write_private
from globtim_hpc.transport.openssh.sshconf import control_options, generated_config, ssh_options
from globtim_hpc.transport.process import kill as process_kill
from globtim_hpc.transport.settings import SshSettings

_REQUEST_TIMEOUT_S = 15.0
_ANSWER_TIME_S = 300.0  # a person may be typing a one-time code
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
_EXIT_WAIT_S = 5.0
_LOG_LIMIT_BYTES = 1024 * 1024
# ControlPersist floor: with less, a master started on a busy laptop can go idle and exit
# before the command it was started for reaches it (the profile field has the same minimum).
MIN_CONTROL_PERSIST_S = 5
_PID = re.compile(r"Master running \(pid=(\d+)\)")


@dataclass(frozen=True)
class MasterStatus:
    """Whether a shared connection is open for these settings, and where."""

    alive: bool
    pid: int | None
    socket: str


def ssh_binary() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise ConfigError(
            "ssh.client is 'openssh' but the OpenSSH client (ssh) is not installed",
            "install it (Debian: openssh-client), or set ssh.client: paramiko",
            key="ssh.client",
        )
    return found


class Master:
    """Checks, starts and stops the ControlMaster for one set of SSH settings."""

    def __init__(self, settings: SshSettings, prompt: PromptFn | None) -> None:
        self._settings = settings
        self._prompt = prompt
        self.files: ControlFiles = control_files(settings)
        self.ssh = ssh_binary()
        self._client_config: str | None = None

    @property
    def client_config(self) -> str:
        """The ``-F`` file of ordinary commands (they never ask anything: BatchMode); written
        once per Master, as the settings do not change."""
        if self._client_config is None:
            path = self.files.config(interactive=False)
            write_private(path, generated_config(self._settings, interactive=False))
            self._client_config = path
        return self._client_config

    def status(self) -> MasterStatus:
        done = self._request("check")
        found = _PID.search(done.stderr)
        alive = done.returncode == 0 and found is not None
        return MasterStatus(
            alive, int(found.group(1)) if alive and found else None, self.files.socket
        )

    def stop(self) -> bool:
        """Ask the master to exit; True if one was running. Waits until its socket is gone."""
        stopped = self._request("exit").returncode == 0
        deadline = time.monotonic() + _EXIT_WAIT_S
        while os.path.exists(self.files.socket) and time.monotonic() < deadline:
            time.sleep(0.02)
        return stopped

    def ensure(self) -> MasterStatus:
        """A live master: the one already running, or a new one (authenticating now)."""
        with self._locked():
            status = self.status()
            if status.alive:
                self._trim_log()
                return status
            with contextlib.suppress(FileNotFoundError):
                # a master that died without cleaning up; ssh would refuse to replace it
                os.unlink(self.files.socket)
            self._start_retrying()
            status = self.status()
        if not status.alive:
            raise ConnectError(
                "the shared connection started but does not answer",
                f"see {self.files.log}; stop stray masters with: ssh -O exit -o "
                f"ControlPath={self.files.socket} {self._settings.target}",
                hop=self._settings.target,
                transient=True,
            )
        return status

    # -- internals -------------------------------------------------------------------------

    def _trim_log(self) -> None:
        # the master appends a few -v lines per command; keep the file small
        with contextlib.suppress(OSError):
            if os.path.getsize(self.files.log) > _LOG_LIMIT_BYTES:
                os.truncate(self.files.log, 0)

    def _request(self, command: str) -> subprocess.CompletedProcess[str]:
        argv = [self.ssh, *control_options(self.files.socket), "-O", command, "--"]
        try:
            return subprocess.run(
                [*argv, self._settings.target],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_REQUEST_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ConnectError(
                f"the shared connection did not answer 'ssh -O {command}'",
                f"stop it by hand: ssh -O exit -o ControlPath={self.files.socket} x",
                hop=self._settings.target,
                transient=True,
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _start_retrying(self) -> None:
        attempts = max(0, self._settings.connect_retries) + 1
        delay_s = _BACKOFF_FIRST_S
        for attempt in range(attempts):
            try:
                self._start()
                return
            except ConnectError as exc:
                if not exc.transient or attempt == attempts - 1:
                    raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, _BACKOFF_MAX_S)

    def _start(self) -> None:
        own_askpass = user_askpass(os.environ, have_prompt=self._prompt is not None)
        require_never = os.environ.get("SSH_ASKPASS_REQUIRE", "").lower() == "never"
        bridge = self._prompt is not None and not own_askpass and not require_never
        interactive = own_askpass or bridge
        config = self.files.config(interactive=interactive)
        write_private(config, generated_config(self._settings, interactive=interactive))
        argv = [
            self.ssh,
            *ssh_options(self._settings, config, self.files.socket),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPersist={max(MIN_CONTROL_PERSIST_S, round(self._settings.control_persist_s))}",
            "-E",
            self.files.log,
            # With ControlPersist ssh sends its ProxyJump/ProxyCommand helper's stderr to
            # /dev/null unless -v is given (sshconnect.c); without it a jump host's own error
            # ("Permission denied", "Connection refused") would never be seen.
            "-v",
            "-N",
            "-f",
            "--",
            self._settings.target,
        ]
        environment = dict(os.environ)
        server: AskpassServer | None = None
        if bridge:
            assert self._prompt is not None
            server = AskpassServer(
                self.files,
                self._prompt,
                label=self._settings.target,
                passphrase_env=self._settings.passphrase_env,
            )
            environment.update(server.environment())
        with contextlib.ExitStack() as stack:
            if server is not None:
                stack.enter_context(server)
            # ssh appends its own log (-E) to the same file: append here too, or the two
            # writers overwrite each other
            Path(self.files.log).write_bytes(b"")
            os.chmod(self.files.log, 0o600)
            log = stack.enter_context(open(self.files.log, "ab"))
            returncode = self._wait(argv, environment, log.fileno())
        if returncode == 0:
            return
        if server is not None and server.error is not None:
            raise server.error  # e.g. no terminal to ask on: its own message says so
        text = Path(self.files.log).read_text(encoding="utf-8", errors="replace")
        raise error_from_ssh(text, self._settings, f"connecting to {self._settings.target}")

    def _wait(self, argv: list[str], environment: dict[str, str], log_fd: int) -> int:
        timeout_s = _ANSWER_TIME_S + 4 * self._settings.connect_timeout_s
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
            env=environment,
            start_new_session=True,  # no terminal: ssh asks through askpass, or not at all
        )
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process_kill(process)
            raise ConnectError(
                f"connecting took longer than {timeout_s:g} s and was abandoned",
                f"see {self.files.log}",
                hop=self._settings.target,
                transient=True,
            ) from None
        except BaseException:
            process_kill(process)
            raise
