"""Running one local process with its three pipes served at once (no deadlock either way).

Shared by the transports that work through a local program: LocalTransport (the command
itself) and OpenSshTransport (the system ``ssh``). Each process starts in its own session, so
that a timeout kills its whole process group and it has no controlling terminal to read
from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import IO, BinaryIO

from globtim_hpc.transport.base import Invocation, ProgressFn

CHUNK = 64 * 1024


class ProcessTimeout(Exception):
    """The process ran past its time and was killed; what it wrote until then is kept."""

    def __init__(self, stdout: bytes, stderr: bytes) -> None:
        super().__init__("timed out")
        self.stdout = stdout
        self.stderr = stderr


def start(
    args: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes] | None:
    """The started process, or None when the program cannot be found or executed."""
    try:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a timeout kills the command's whole process group
            env=dict(env) if env is not None else None,
        )
    except (FileNotFoundError, PermissionError):
        return None


def serve(process: subprocess.Popen[bytes], command: Invocation) -> tuple[bytes, bytes]:
    """Serve the started ``command``'s pipes: all at once for a ``run``, streamed otherwise."""
    if command.whole:
        stdin = command.source.read() if command.source is not None else None
        return communicate(process, stdin, command.timeout_s)
    return pump(process, command.source, command.sink, command.timeout_s, command.progress)


def communicate(
    process: subprocess.Popen[bytes], stdin: bytes | None, timeout_s: float
) -> tuple[bytes, bytes]:
    """Feed ``stdin`` (or nothing), collect stdout and stderr; ProcessTimeout past the time."""
    try:
        # communicate() reads stdout and stderr in parallel, so large outputs never block
        return process.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        kill(process)
        raise ProcessTimeout(exc.stdout or b"", exc.stderr or b"") from None
    except BaseException:
        kill(process)
        raise


def pump(
    process: subprocess.Popen[bytes],
    stdin_source: BinaryIO | None,
    stdout_sink: BinaryIO | None,
    timeout_s: float,
    progress: ProgressFn | None,
) -> tuple[bytes, bytes]:
    """Stream stdin from a file and stdout into a file (or memory); stderr into memory.

    An error of the source, the sink or the progress callback kills the process (nobody
    would read its pipe any more) and is raised here, in the caller's thread.
    """
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    stdout = bytearray()
    stderr = bytearray()
    errors: list[BaseException] = []

    def feed() -> None:
        assert process.stdin is not None
        try:
            while stdin_source is not None and (chunk := stdin_source.read(CHUNK)):
                process.stdin.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        except BrokenPipeError:
            pass  # the command stopped reading; its exit status tells the rest
        except BaseException as exc:
            errors.append(exc)
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()

    def drain(pipe: IO[bytes], sink: BinaryIO | None, into: bytearray, count: bool) -> None:
        try:
            while chunk := pipe.read1(CHUNK):  # type: ignore[attr-defined]
                if sink is not None:
                    sink.write(chunk)
                else:
                    into += chunk
                if count and progress is not None:
                    progress(len(chunk))
        except BaseException as exc:
            errors.append(exc)
            # Nobody reads the pipe any more: stop the command rather than let it block
            # on a full pipe until the timeout (SSH closes its channel for the same reason).
            kill(process)

    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(
            target=drain, args=(process.stdout, stdout_sink, stdout, True), daemon=True
        ),
        threading.Thread(target=drain, args=(process.stderr, None, stderr, False), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(process)
        for thread in threads:
            thread.join()
        raise ProcessTimeout(bytes(stdout), bytes(stderr)) from None
    except BaseException:
        kill(process)
        raise
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return bytes(stdout), bytes(stderr)


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the process and its group, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    process.wait()
