"""POSIX ``cksum`` (CRC-32, polynomial 0x04C11DB7, not reflected) computed on the laptop.

The cluster runs coreutils' ``cksum`` over the tar stream it sends (it reads ~1.4 GB/s, far
faster than ``sha256sum``), so the laptop must reproduce it. zlib's ``crc32`` is the same
polynomial, reflected: feeding it bit-reversed bytes, starting from an all-zero register and
bit-reversing the result gives cksum's CRC, at zlib's speed.
"""

from __future__ import annotations

import zlib

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


def cksum(data: bytes) -> int:
    crc = Cksum()
    crc.update(data)
    return crc.value()
