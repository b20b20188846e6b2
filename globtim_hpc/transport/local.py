"""LocalTransport: the Transport contract on this machine, through subprocess and no shell."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, BinaryIO

from globtim_hpc.errors import RemoteCommandError, TransferError
from globtim_hpc.transport.base import ClosesOnExit, CommandResult, ProgressFn

_CHUNK = 64 * 1024
_COMMAND_NOT_FOUND = 127  # what a shell would report, so both transports agree
_NOT_EXECUTABLE = 126


class LocalTransport(ClosesOnExit):
    """Runs argv lists directly (no shell, so no quoting) and moves files on the local disk."""

    @property
    def label(self) -> str:
        return "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 120.0,
        stdin: bytes | None = None,
    ) -> CommandResult:
        args = _checked(argv)
        process = self._start(args)
        if process is None:
            return _not_started(args)
        try:
            # communicate() reads stdout and stderr in parallel, so large outputs never block
            stdout, stderr = process.communicate(stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill(process)
            raise _timeout_error(args, timeout_s, exc.stdout, exc.stderr) from None
        except BaseException:
            _kill(process)
            raise
        return CommandResult(args, process.returncode, stdout, stderr)

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin_source: BinaryIO | None = None,
        stdout_sink: BinaryIO | None = None,
        timeout_s: float = 3600.0,
        progress: ProgressFn | None = None,
    ) -> CommandResult:
        args = _checked(argv)
        process = self._start(args)
        if process is None:
            return _not_started(args)
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        stdout = bytearray()
        stderr = bytearray()
        errors: list[BaseException] = []

        def feed() -> None:
            assert process.stdin is not None
            try:
                while stdin_source is not None and (chunk := stdin_source.read(_CHUNK)):
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
                while chunk := pipe.read1(_CHUNK):  # type: ignore[attr-defined]
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
                _kill(process)

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
            _kill(process)
            for thread in threads:
                thread.join()
            raise _timeout_error(args, timeout_s, bytes(stdout), bytes(stderr)) from None
        except BaseException:
            _kill(process)
            raise
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return CommandResult(args, process.returncode, bytes(stdout), bytes(stderr))

    def put_bytes(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        folder, name = os.path.split(remote_path)
        if not name:
            raise TransferError(f"local: {remote_path!r} names a folder, not a file")
        temporary = os.path.join(folder, f".{name}.tmp-{secrets.token_hex(6)}")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, remote_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise TransferError(f"local: cannot write {remote_path}: {exc.strerror}") from exc

    def get_bytes(self, remote_path: str) -> bytes:
        try:
            with open(remote_path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise TransferError(f"local: cannot read {remote_path}: {exc.strerror}") from exc

    def close(self) -> None:
        """Nothing to release: every command is its own process."""


    @staticmethod
    def _start(args: tuple[str, ...]) -> subprocess.Popen[bytes] | None:
        try:
            return subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a timeout kills the command's whole process group
            )
        except (FileNotFoundError, PermissionError):
            return None


def _checked(argv: Sequence[str]) -> tuple[str, ...]:
    args = tuple(argv)
    if not args:
        raise ValueError("argv must not be empty")
    return args


def _not_started(args: tuple[str, ...]) -> CommandResult:
    """A program that cannot be found or executed, reported as a shell would report it."""
    if shutil.which(args[0]) is None and os.sep not in args[0]:
        return CommandResult(
            args, _COMMAND_NOT_FOUND, b"", f"{args[0]}: command not found\n".encode()
        )
    if not os.path.exists(args[0]):
        return CommandResult(
            args, _COMMAND_NOT_FOUND, b"", f"{args[0]}: No such file or directory\n".encode()
        )
    return CommandResult(args, _NOT_EXECUTABLE, b"", f"{args[0]}: Permission denied\n".encode())


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    process.wait()


def _timeout_error(
    args: tuple[str, ...], timeout_s: float, stdout: bytes | None, stderr: bytes | None
) -> RemoteCommandError:
    partial = CommandResult(args, -1, stdout or b"", stderr or b"")
    return RemoteCommandError(
        f"local: command timed out after {timeout_s:g} s and was killed",
        "raise timeout_s if the command needs longer",
        argv=args,
        output_tail=partial.output_tail(),
    )
