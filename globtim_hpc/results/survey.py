"""One remote command that says what a run folder holds: every entry's type, size, mtime and
ctime (metadata only, no byte of content read), followed by a gzipped tar of the small files
that decide task states (``submission.json``, ``status/``, ``params/``).

Content hashes are not computed on the cluster: the file stream carries a CRC of everything it
sends (``stream.py``) and the laptop hashes each file while writing it. A file whose size,
mtime and ctime are those recorded at the previous collection is not read again on either side.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from globtim_hpc.errors import IntegrityError
from globtim_hpc.results.manifest import check_relative_path, is_sha256_hex

HEADER = b"globtim-survey/1"

# $1 is the run folder. Exit 3: no such folder; 4: find failed. Records are NUL-terminated
# ("<type> <size> <mtime> <ctime> <path>"), then one empty record, then the tar.gz bytes.
# $2, when given, is the sha256 of the listing the laptop kept from its last collection: a
# listing with that digest is answered with the one record "same" instead of all of them.
_SURVEY_SCRIPT = r"""
cd -- "$1" 2>/dev/null || exit 3
printf 'globtim-survey/1\0'
list() { find . -mindepth 1 ! -type d -printf '%y %s %T@ %C@ %P\0'; }
if [ -n "$2" ] && l=$(mktemp 2>/dev/null); then
  trap 'rm -f -- "$l"' EXIT
  trap 'exit 129' HUP INT TERM PIPE
  if list > "$l" 2>/dev/null && d=$(sha256sum < "$l"); then
    if [ "${d%% *}" = "$2" ]; then printf 'same\0'; else cat -- "$l" || exit 4; fi
  else
    list || exit 4  # no room for the listing here: send it as without a digest
  fi
else
  list || exit 4
fi
printf '\0'
tar -cz --ignore-failed-read -f - submission.json status params 2>/dev/null
"""

_SAME = b"same"


class SurveyEntry(NamedTuple):  # a tuple: one per file of a run, cheap to make and to sort
    path: str  # relative, as os.fsdecode gives it
    byte_count: int
    mtime: str  # find's %T@ / %C@ text: compared, never computed with
    ctime: str

    @property
    def stamp(self) -> list[object]:
        return [self.byte_count, self.mtime, self.ctime]


@dataclass(frozen=True)
class Survey:
    files: tuple[SurveyEntry, ...]  # regular files, sorted by path
    skipped: tuple[tuple[str, str], ...]  # (find type letter, path) of what is not a file
    snapshot_tgz: bytes
    listing_sha256: str = ""  # of the listing's bytes, as the cluster's find wrote them
    same: bool = False  # the listing is the kept one (listing_sha256): files are not sent

    def without(self, exclude: Sequence[str]) -> Survey:
        """The survey less ``exclude`` (relative paths, each with everything below it)."""
        prefixes = tuple(p.rstrip("/") + "/" for p in exclude)
        names = set(exclude)

        def kept(path: str) -> bool:
            return path not in names and not path.startswith(prefixes)

        return Survey(
            tuple(f for f in self.files if kept(f.path)),
            tuple(s for s in self.skipped if kept(s[1])),
            self.snapshot_tgz,
            self.listing_sha256,
            self.same,
        )


def survey_argv(run_dir: str, kept_listing_sha256: str = "") -> list[str]:
    """The survey command; ``kept_listing_sha256``: answer "same" for a listing of that digest."""
    if kept_listing_sha256 and not is_sha256_hex(kept_listing_sha256):
        raise ValueError(f"not a sha256 digest: {kept_listing_sha256!r}")
    return ["sh", "-c", _SURVEY_SCRIPT, "globtim-survey", run_dir, kept_listing_sha256]


def parse_survey(data: bytes, where: str = "the cluster", kept_listing_sha256: str = "") -> Survey:
    if not data.startswith(HEADER + b"\0"):
        start = data[:80].decode("utf-8", errors="replace")
        raise IntegrityError(
            f"the listing from {where} does not start with the expected header (got {start!r})",
            "something in the remote login (e.g. ~/.bashrc) may print to stdout; make it quiet "
            "for non-interactive shells",
        )
    pos = listing_at = len(HEADER) + 1
    if kept_listing_sha256 and data.startswith(_SAME + b"\0\0", pos):
        return Survey((), (), data[pos + len(_SAME) + 2 :], kept_listing_sha256, same=True)
    files: list[SurveyEntry] = []
    skipped: list[tuple[str, str]] = []
    while True:
        end = data.find(b"\0", pos)
        if end < 0:
            raise IntegrityError(f"the listing from {where} is truncated (no end record)")
        record = data[pos:end]
        pos = end + 1
        if not record:
            listing_sha256 = hashlib.sha256(data[listing_at:end]).hexdigest()
            break
        fields = record.split(b" ", 4)
        if len(fields) != 5 or not fields[1].isdigit():
            raise IntegrityError(f"bad record in the listing from {where}: {record[:120]!r}")
        kind, size, mtime, ctime, raw_path = fields
        path = check_relative_path(os.fsdecode(raw_path))
        if kind == b"f":
            files.append(SurveyEntry(path, int(size), mtime.decode("ascii"), ctime.decode("ascii")))
        else:
            skipped.append((kind.decode("ascii", errors="replace"), path))
    # Paths are unique: sorting by path alone gives the tuples' order, without comparing more.
    files.sort(key=itemgetter(0))
    skipped.sort(key=itemgetter(1))
    return Survey(tuple(files), tuple(skipped), data[pos:], listing_sha256)
