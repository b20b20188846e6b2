"""The askpass program ssh runs for a passphrase, password or one-time code (SSH_ASKPASS).

ssh runs it as ``PROGRAM PROMPT`` and reads the answer from its stdout; exit status 0 means
answered. It hands the question to the globtim-hpc process that started ssh, through the
Unix socket named in its environment, and prints the answer that comes back.

Standard library only, and no import of globtim_hpc: it runs as a file, in a fresh Python
(``askpass.sh`` starts it with the Python of the process that wrote that script).
"""

from __future__ import annotations

import json
import os
import socket
import sys


def main(argv: list[str]) -> int:
    text = argv[1] if len(argv) > 1 else ""
    # ssh says what kind of question it is: "confirm" (yes/no), "none" (a notice), or nothing
    kind = os.environ.get("SSH_ASKPASS_PROMPT") or "ask"
    try:
        path = os.environ["GLOBTIM_HPC_ASKPASS_SOCKET"]
        token = os.environ["GLOBTIM_HPC_ASKPASS_TOKEN"]
    except KeyError:
        sys.stderr.write("globtim-hpc askpass: not started by globtim-hpc\n")
        return 1
    request = json.dumps({"token": token, "kind": kind, "text": text}).encode() + b"\n"
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.sendall(request)
            while not reply.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:
        sys.stderr.write(f"globtim-hpc askpass: {exc.strerror or exc}\n")
        return 1
    try:
        answer = json.loads(reply.decode())["answer"]
    except (ValueError, KeyError):
        return 1
    if not isinstance(answer, str):
        return 1  # refused, or the question could not be answered
    sys.stdout.write(answer + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
