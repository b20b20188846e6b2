"""Lists of array indices as people and SLURM write them: ``0-3,7`` (the one owner of that form).

``parse_index_list`` reads what a user types (``--tasks 0-3,7``); ``compress_indices`` writes the
shortest such list (for ``scancel JOB_[0-3,7]`` and for "tasks 0-11, 14" in the monitor).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from globtim_hpc.errors import UsageError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_index_list(text: str, *, task_count: int | None = None) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]`` (sorted, no repeats). With ``task_count``, an index
    outside ``0..task_count-1`` is a UsageError naming it."""
    found: set[int] = set()
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        match = _PART.match(part)
        if match is None:
            raise UsageError(
                f"cannot read task list {text!r}: {part!r} is not an index or a range",
                "write indices and ranges separated by commas, e.g. 0-3,7",
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise UsageError(
                f"task range {part!r} runs backwards", f"write it as {high}-{low}"
            )
        found.update(range(low, high + 1))
    ordered = sorted(found)
    if task_count is not None:
        outside = [index for index in ordered if index >= task_count]
        if outside:
            raise UsageError(
                f"no task {compress_indices(outside)}: the run has {task_count} task(s)",
                f"give indices from 0 to {task_count - 1}",
            )
    return ordered


def index_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged runs of consecutive indices: ``[0, 1, 2, 7]`` -> ``[(0, 2), (7, 7)]``."""
    ranges: list[tuple[int, int]] = []
    for index in sorted(set(indices)):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], index)
        else:
            ranges.append((index, index))
    return ranges


def compress_indices(indices: Iterable[int], *, separator: str = ",") -> str:
    """``[0, 1, 2, 3, 7]`` -> ``"0-3,7"`` (SLURM's array syntax with the default separator)."""
    return separator.join(
        str(low) if low == high else f"{low}-{high}" for low, high in index_ranges(indices)
    )
