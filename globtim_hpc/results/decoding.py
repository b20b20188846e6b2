"""Undo the compression of a collection stream on its way into the extractor.

The cluster chooses the codec (the first of those offered that it has), so the laptop learns it
from the stream's first bytes: zstd and gzip frames begin with fixed magic numbers, and a plain
tar begins with a member name, which cannot start with either (both contain a byte that is not
valid as the first byte of a UTF-8 name). The trailer names the codec too; ``DecodingSink.codec``
is checked against it.

zstd is decoded only when the ``zstandard`` package is importable (the optional extra ``fast``);
gzip needs only zlib from the standard library.
"""

from __future__ import annotations

import importlib.util
import io
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from globtim_hpc.errors import IntegrityError

NONE = "none"
ZSTD = "zstd"
GZIP = "gzip"
CODECS = (ZSTD, GZIP)  # the order of preference: zstd packs CSV as well, several times faster

_MAGIC = {ZSTD: b"\x28\xb5\x2f\xfd", GZIP: b"\x1f\x8b"}
_SNIFF_BYTES = max(len(m) for m in _MAGIC.values())


class _Writer(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


def decodable() -> tuple[str, ...]:
    """The codecs this machine can decode, preferred first."""
    if importlib.util.find_spec("zstandard") is not None:
        return CODECS
    return (GZIP,)


def sniff(head: bytes) -> str:
    """The codec of a stream beginning with ``head`` (at least 4 bytes, or the whole stream)."""
    for codec, magic in _MAGIC.items():
        if head.startswith(magic):
            return codec
    return NONE


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    @property
    def eof(self) -> bool: ...


def _decoder(codec: str) -> _Decoder | None:
    if codec == GZIP:
        return zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer, not raw deflate
    if codec == ZSTD:
        import zstandard

        obj: Any = zstandard.ZstdDecompressor().decompressobj()
        return obj  # type: ignore[no-any-return]
    return None


class DecodingSink(io.RawIOBase):
    """A writable sink that decodes what is written to it (zstd, gzip or nothing, as sniffed)
    and writes the tar bytes into ``inner``. ``wire_bytes`` counts what came over the link.

    ``accept``: the codecs offered to the cluster; a stream in any other is refused (a plain tar
    is always accepted, the cluster may have none of them)."""

    def __init__(
        self,
        inner: _Writer,
        accept: tuple[str, ...],
        *,
        on_codec: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.codec: str | None = None
        self.wire_bytes = 0
        self._accept = accept
        self._on_codec = on_codec
        self._head = bytearray()
        self._decoder: _Decoder | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        size = len(data)
        self.wire_bytes += size
        if self.codec is None:
            self._head += data
            if len(self._head) < _SNIFF_BYTES:
                return size
            self._choose()
            data, self._head = bytes(self._head), bytearray()
        self._feed(data)
        return size

    def _choose(self) -> None:
        codec = sniff(bytes(self._head)) if self._accept else NONE
        if codec != NONE and codec not in self._accept:
            raise IntegrityError(
                f"the file stream came compressed with {codec}, which was not asked for",
                "collect again; if it persists, set collect.compression: none in the profile",
            )
        self.codec = codec
        self._decoder = _decoder(codec)
        if self._on_codec is not None:
            self._on_codec(codec)

    def _feed(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._decoder is None:
            self.inner.write(data)
            return
        if self._decoder.eof:
            raise IntegrityError(f"the {self.codec} file stream goes on after its end")
        try:
            out = self._decoder.decompress(bytes(data))
        except Exception as exc:  # zlib.error, zstandard.ZstdError: both mean damaged bytes
            raise IntegrityError(
                f"the {self.codec} file stream is corrupt: {exc}", "nothing was placed; collect again"
            ) from exc
        if out:
            self.inner.write(out)

    def finish(self) -> str:
        """The stream has ended: pass on what waited for the sniff; return the codec."""
        if self.codec is None:
            self._choose()
            data, self._head = bytes(self._head), bytearray()
            self._feed(data)
        assert self.codec is not None
        if self._decoder is not None and self.wire_bytes and not self._decoder.eof:
            raise IntegrityError(
                f"the {self.codec} file stream broke off before its end",
                "the connection may have dropped; collect again (verified files are kept)",
            )
        return self.codec
