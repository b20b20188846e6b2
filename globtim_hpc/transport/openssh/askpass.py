"""Answering ssh's questions through the toolkit's prompt callback (SSH_ASKPASS).

ssh asks for passphrases, passwords and one-time codes through an askpass program when it
has no terminal (the toolkit starts it without one) and ``SSH_ASKPASS_REQUIRE=force`` is set
(OpenSSH readpass.c). The program is ``askpass.sh`` in the private control folder, which runs
``askpass_client.py``; that connects back to an ``AskpassServer`` in this process, which asks
the prompt callback (the terminal, in the CLI) and sends the answer.

- A key passphrase is taken from the variable named by ``ssh.passphrase_env`` when it is set.
- Yes/no confirmations (SSH_ASKPASS_PROMPT=confirm) are refused: host keys are decided by
  StrictHostKeyChecking, never by a click.
- Notices (SSH_ASKPASS_PROMPT=none, e.g. "touch your security key") are written to stderr.

A user's own askpass program is used instead when the environment asks for it:
``SSH_ASKPASS`` set and ``SSH_ASKPASS_REQUIRE`` = force or prefer (or, without a prompt
callback, a ``DISPLAY``), as ssh itself would.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import socket
import sys
import threading
from collections.abc import Mapping

from globtim_hpc.closing import ClosesOnExit
from globtim_hpc.transport.base import PromptFn
from globtim_hpc.transport.openssh import askpass_client
from globtim_hpc.transport.openssh.runtime import ControlFiles, write_private

# Constant text: the paths it needs come from the environment ssh passes on to it.
_SCRIPT = (
    "#!/bin/sh\n"
    "# globtim-hpc: hands ssh's question to the globtim-hpc process that started ssh\n"
    'exec "$GLOBTIM_HPC_ASKPASS_PYTHON" "$GLOBTIM_HPC_ASKPASS_CLIENT" "$@"\n'
)
_WHO = re.compile(r"^\((?P<who>[^()\s]+@[^()\s]+)\) ")  # ssh's "(user@host) Password: "
_PASSPHRASE = "Enter passphrase for key "


def user_askpass(environment: Mapping[str, str], *, have_prompt: bool) -> bool:
    """Whether ssh should use the user's own askpass program, as ssh would decide."""
    if not environment.get("SSH_ASKPASS"):
        return False
    require = environment.get("SSH_ASKPASS_REQUIRE", "").lower()
    if require in ("force", "prefer"):
        return True
    return require != "never" and not have_prompt and bool(environment.get("DISPLAY"))


class AskpassServer(ClosesOnExit):
    """Serves the askpass program while one ssh authenticates (a context manager)."""

    def __init__(
        self,
        files: ControlFiles,
        prompt: PromptFn,
        *,
        label: str,
        passphrase_env: str | None,
    ) -> None:
        self._files = files
        self._prompt = prompt
        self._label = label
        self._passphrase_env = passphrase_env
        self._token = secrets.token_hex(16)
        self._path = files.askpass_socket(self._token)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.questions = 0
        self.error: BaseException | None = None  # the first failure of the prompt callback

    def environment(self) -> dict[str, str]:
        """What ssh's environment needs so that its askpass reaches this server."""
        return {
            "SSH_ASKPASS": self._files.askpass_script,
            "SSH_ASKPASS_REQUIRE": "force",
            "GLOBTIM_HPC_ASKPASS_PYTHON": sys.executable,
            "GLOBTIM_HPC_ASKPASS_CLIENT": os.path.abspath(askpass_client.__file__),
            "GLOBTIM_HPC_ASKPASS_SOCKET": self._path,
            "GLOBTIM_HPC_ASKPASS_TOKEN": self._token,
        }

    def __enter__(self) -> AskpassServer:
        write_private(self._files.askpass_script, _SCRIPT, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self._path)  # inside the private folder: only this user can connect
        listener.listen(4)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="globtim-askpass", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; the ``with`` block's end calls it."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        if self._thread is not None:
            self._thread.join(5.0)

    def _serve(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by close()
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        with contextlib.suppress(OSError):
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        answer: str | None = None
        try:
            request = json.loads(data.decode())
            if hmac.compare_digest(str(request.get("token", "")), self._token):
                answer = self._decide(str(request.get("kind", "ask")), str(request.get("text", "")))
        except ValueError:
            answer = None
        except BaseException as exc:  # the callback's failure is the caller's to see
            if self.error is None:
                self.error = exc
            answer = None
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"answer": answer}).encode() + b"\n")

    def _decide(self, kind: str, text: str) -> str | None:
        if kind == "confirm":
            return None
        if kind == "none":
            sys.stderr.write(f"[{self._label}] {text.strip()}\n")
            sys.stderr.flush()
            return ""
        env = self._passphrase_env
        if text.startswith(_PASSPHRASE) and env and os.environ.get(env):
            return os.environ[env]
        self.questions += 1
        who = _WHO.match(text)
        hop = f"{self._label} via {who.group('who')}" if who else self._label
        return self._prompt(hop, text, False)
