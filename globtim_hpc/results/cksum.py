"""POSIX ``cksum`` (CRC-32, polynomial 0x04C11DB7, not reflected) computed on the laptop.

The cluster runs coreutils' ``cksum`` over the tar stream it sends (it reads ~1.4 GB/s, far
faster than ``sha256sum``), so the laptop must reproduce it. zlib's ``crc32`` is the same
polynomial, reflected: feeding it bit-reversed bytes, starting from an all-zero register and
bit-reversing the result gives cksum's CRC, at zlib's speed.

That still costs the laptop's Python about a second per GiB (the byte reversal holds the
interpreter lock), where the system's own ``cksum`` (coreutils 9 uses carry-less multiply)
takes a tenth of it, off the lock. ``stream_cksum`` therefore pipes the stream through a local
``cksum`` when there is one that gives POSIX's CRC, and falls back to ``Cksum`` otherwise.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import zlib
from typing import Protocol

from globtim_hpc.errors import IntegrityError

_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

_ZERO_REGISTER = 0xFFFFFFFF  # zlib complements its argument first: this starts from 0


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


class Cksum:
    """Running ``cksum``: ``update`` with the data, then ``value()`` (CRC) and ``byte_count``."""

    def __init__(self) -> None:
        self._register = _ZERO_REGISTER
        self.byte_count = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._register = zlib.crc32(bytes(data).translate(_REVERSED), self._register)
        self.byte_count += len(data)

    def value(self) -> int:
        # cksum appends the length, least significant byte first, as few bytes as it needs.
        length = bytearray()
        n = self.byte_count
        while n:
            length.append(n & 0xFF)
            n >>= 8
        register = zlib.crc32(bytes(length).translate(_REVERSED), self._register)
        return _reverse32(register)

    def close(self) -> None:
        """Nothing to release (the piped one has a process)."""


def cksum(data: bytes) -> int:
    crc = Cksum()
    crc.update(data)
    return crc.value()


class StreamCksum(Protocol):
    byte_count: int

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def value(self) -> int: ...

    def close(self) -> None: ...


_PROBE = b"globtim-hpc cksum probe\n" * 3
_ANSWER_TIMEOUT_S = 600


@functools.cache
def _system_cksum() -> str | None:
    """The local ``cksum``, if it is there and agrees with POSIX's CRC on a probe."""
    program = shutil.which("cksum")
    if program is None:
        return None
    try:
        done = subprocess.run([program], input=_PROBE, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return program if _answer(done.stdout) == (cksum(_PROBE), len(_PROBE)) else None


def _answer(out: bytes) -> tuple[int, int] | None:
    """(CRC, byte count) from cksum's line for its standard input, or None."""
    fields = out.split()
    if len(fields) != 2 or not all(field.isdigit() for field in fields):
        return None
    return int(fields[0]), int(fields[1])


class PipedCksum:
    """``cksum`` running beside the caller: the bytes are written into its stdin."""

    def __init__(self, program: str) -> None:
        self.byte_count = 0
        self._process = subprocess.Popen(
            [program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C stops the collection, not its checksum first
        )  # fmt: skip
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()
        self._value: int | None = None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self.byte_count += len(view)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise IntegrityError(
                f"the local cksum that checks the file stream stopped: {exc}",
                "collect again (verified files are kept)",
            ) from exc

    def value(self) -> int:
        """The CRC, once every byte was given (it ends cksum's input)."""
        if self._value is not None:
            return self._value
        try:
            out, _ = self._process.communicate(timeout=_ANSWER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out = b"nothing in %d s" % _ANSWER_TIMEOUT_S
        answer = _answer(out)
        if answer is None or answer[1] != self.byte_count:
            raise IntegrityError(
                f"the local cksum that checks the file stream answered {out[:80]!r}",
                "collect again (verified files are kept)",
            )
        self._value = answer[0]
        return self._value

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()


def stream_cksum() -> StreamCksum:
    """A running cksum for a collection stream: the system's where it can be, else Python's."""
    program = _system_cksum()
    if program is not None:
        try:
            return PipedCksum(program)
        except OSError:  # gone since the probe, or no process to be had: Python's will do
            pass
    return Cksum()
