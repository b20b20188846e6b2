"""Reading tar headers: the 512-byte member headers, GNU long names and pax extended headers.

The collection stream is written by GNU tar (``--format=gnu``) on the cluster; a POSIX ustar
or pax archive (Python's ``tarfile`` default) reads the same way. This reads only what the
extractor needs (name, type, size, mode, mtime, link target) and checks each header's
checksum, which ``tarfile`` recomputes field by field at several times the cost: parsing the
headers was most of the laptop's time on a stream of small files.
"""

from __future__ import annotations

from typing import NamedTuple

from globtim_hpc.errors import IntegrityError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

REGULAR_TYPES = frozenset(b"0\x007")  # a file; "7" (contiguous) is one too, as in tarfile
GNU_LONG_NAME = ord("L")
GNU_LONG_LINK = ord("K")
PAX_HEADER = ord("x")
META_TYPES = frozenset({GNU_LONG_NAME, GNU_LONG_LINK, PAX_HEADER})
MAX_META_BYTES = 1 << 20  # a long name or pax header beyond this is not a real one

_POSIX_MAGIC = b"ustar\x00"  # GNU tar writes "ustar  \0", whose prefix field is not a prefix
_CHECKSUM_SPACES = 8 * ord(" ")
_KINDS = {
    ord("1"): "hard link",
    ord("2"): "symbolic link",
    ord("3"): "device file",
    ord("4"): "device file",
    ord("5"): "folder",
    ord("6"): "FIFO",
}


class Header(NamedTuple):
    name: str
    type: int  # the type flag's byte
    size: int
    mode: int
    mtime: int
    linkname: str


def decode_name(raw: bytes) -> str:
    """A name as the extractor compares it: UTF-8, other bytes kept as surrogates."""
    end = raw.find(0)
    return (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256, for sizes and times octal cannot hold
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xFF else value
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise IntegrityError(f"the file stream is corrupt: a tar header's {what} is {field!r}") from None


def parse_header(block: bytes) -> Header | None:
    """The member described by one 512-byte header; None for a zero block (the end)."""
    if block == ZERO_BLOCK:
        return None
    stored = _number(block[148:156], "checksum")
    unsigned = sum(block) - sum(block[148:156]) + _CHECKSUM_SPACES
    if stored != unsigned:  # old tars summed signed chars (the field itself counts as spaces)
        high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
        signed = unsigned - 256 * high
        if stored != signed:
            raise IntegrityError(
                "the file stream is corrupt: a tar header's checksum does not match",
                "nothing was placed; collect again",
            )
    name = decode_name(block[0:100])
    if block[257:263] == _POSIX_MAGIC and block[345] != 0:
        name = decode_name(block[345:500]) + "/" + name
    size = _number(block[124:136], "size")
    if size < 0:
        raise IntegrityError(f"the file stream is corrupt: a tar header's size is {size}")
    return Header(
        name=name,
        type=block[156],
        size=size,
        mode=_number(block[100:108], "mode"),
        mtime=_number(block[136:148], "mtime"),
        linkname=decode_name(block[157:257]),
    )


def parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header (``<length> <key>=<value>\\n`` each)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            length = 0
        record = data[space + 1 : pos + length]
        if space < 0 or length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise IntegrityError("the file stream is corrupt: a pax header record is malformed")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def pax_number(records: dict[str, str], key: str, default: int, *, fraction: bool = False) -> int:
    """A pax record's whole number (``fraction``: a time, which may carry one, dropped)."""
    if key not in records:
        return default
    value = records[key]
    whole, _, part = value.partition(".") if fraction else (value, "", "")
    if not whole.isdigit() or not (part == "" or part.isdigit()) or len(whole) > 20:
        raise IntegrityError(f"the file stream is corrupt: pax {key}={value!r}")
    return int(whole)


def kind(header: Header) -> str:
    """What a member that is not a regular file is, for a refusal message."""
    text = _KINDS.get(header.type, f"entry of tar type {chr(header.type)!r}")
    if header.type in (ord("1"), ord("2")):
        return f"{text} (-> {header.linkname!r})"
    return text
