"""Whether a collection's stream is compressed, and with what: the codecs offered to the cluster.

The cluster takes the first offered codec it has (``transfer``'s stream script), so the offer is
the whole negotiation and costs no round trip. ``auto`` compresses only where it pays: over a
real link (a local transport copies through a pipe, where compressing only burns CPU), and when
most of the bytes are text. GlobTim writes CSV, JSON and logs, which shrink several-fold; data
that is already compressed (JLD2, HDF5, images, archives) does not shrink and would only cost
the login node CPU.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from globtim_hpc.errors import UsageError
from globtim_hpc.results.decoding import CODECS, GZIP, NONE, ZSTD

MODES = ("auto", ZSTD, GZIP, NONE)

# Anything else (JLD2, HDF5, images, archives, binaries of unknown kind) counts against
# compressing: better a plain stream than the login node's CPU spent on bytes that do not shrink.
TEXT_SUFFIXES = frozenset(
    {
        ".csv", ".tsv", ".json", ".jsonl", ".txt", ".log", ".out", ".err", ".md", ".jl",
        ".toml", ".yaml", ".yml", ".sbatch", ".sh", ".py", ".tex", ".xml", ".html", ".svg",
        ".dat",
    }
)  # fmt: skip

AUTO_TEXT_SHARE = 0.5  # compress when more than this share of the bytes is text
AUTO_MIN_BYTES = 256 << 10  # below this, the stream is over before compression could pay


@dataclass(frozen=True)
class Offer:
    codecs: tuple[str, ...]  # what the cluster may use, preferred first; () sends plain tar
    note: str | None = None  # said to the user when the request could not be met as asked


def check_mode(mode: str, where: str) -> str:
    if mode not in MODES:
        raise UsageError(
            f"{where} {mode!r} is not one of: {', '.join(MODES)}",
            "auto compresses text over a real link; zstd and gzip force one; none never",
        )
    return mode


def is_text(path: str) -> bool:
    suffix = posixpath.splitext(path)[1].lower()
    return suffix in TEXT_SUFFIXES


def text_share(files: Iterable[tuple[str, int]]) -> tuple[float, int]:
    """(share of the bytes in text files, total bytes) of (path, size) pairs."""
    text = total = 0
    for path, size in files:
        total += size
        if is_text(path):
            text += size
    return (text / total if total else 0.0), total


def choose(
    mode: str,
    files: Iterable[tuple[str, int]],
    *,
    local_link: bool,
    decodable: tuple[str, ...],
) -> Offer:
    """The codecs to offer the cluster for streaming ``files`` (path, size).

    ``decodable``: what this machine can decode, preferred first. An explicit ``zstd`` that this
    machine cannot decode falls back to gzip with a note (the collection still works, only less
    well); an explicit codec is honoured even on a local link (it is what was asked for)."""
    check_mode(mode, "collect.compression")
    if mode == NONE:
        return Offer(())
    if mode == ZSTD:
        if ZSTD in decodable:
            return Offer((ZSTD, GZIP))
        return Offer(
            (GZIP,),
            "zstd was asked for, but this machine cannot decode it (pip install "
            "'globtim-hpc[fast]' adds zstandard); gzip instead",
        )
    if mode == GZIP:
        return Offer((GZIP,))
    if local_link:
        return Offer(())
    share, total = text_share(files)
    if total < AUTO_MIN_BYTES or share <= AUTO_TEXT_SHARE:
        return Offer(())
    return Offer(tuple(c for c in CODECS if c in decodable))


def fallback_note(mode: str, offered: tuple[str, ...], used: str, where: str) -> str | None:
    """A note when the cluster could not use the codec that was asked for by name."""
    if mode in (ZSTD, GZIP) and offered and used != offered[0]:
        how = "uncompressed" if used == NONE else f"with {used}"
        return f"{offered[0]} is not installed on {where}; the files came {how}"
    return None
