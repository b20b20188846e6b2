"""A sweep larger than the cluster's ``MaxArraySize`` split into several array jobs ("parts").

SLURM refuses an array index at or above ``MaxArraySize``, whatever the array's length, so
each part is submitted as ``--array=0..k-1`` (or a compressed list below ``MaxArraySize``) with
an index offset that the job script adds back: ``SLURM_ARRAY_TASK_ID + offset`` is the task's
index in the run. Parts are one run everywhere: the registry records each part's job with its
offset, and every reader maps array indices back to task indices through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from globtim_hpc.indices import compress_indices

OFFSET_ENV = "GLOBTIM_HPC_TASK_OFFSET"  # what the job script adds to SLURM_ARRAY_TASK_ID


@dataclass(frozen=True)
class ArrayPart:
    part: int  # 0 for the first (or only) job of a submission
    offset: int  # task index = array index + offset
    indices: tuple[int, ...]  # the run's task indices this part holds

    @property
    def array_indices(self) -> tuple[int, ...]:
        return tuple(index - self.offset for index in self.indices)

    def array_spec(self, throttle: int | None) -> str:
        spec = compress_indices(self.array_indices)
        if throttle is not None and len(self.indices) > 1:
            spec += f"%{throttle}"
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "offset": self.offset, "indices": compress_indices(self.indices)}


def split_indices(indices: Sequence[int], max_array_size: int | None) -> list[ArrayPart]:
    """The parts holding ``indices``: the indices below the limit at offset 0 (one part, as
    every run had before parts existed, when all fit); the rest in consecutive chunks, each
    starting at its first index and spanning fewer than ``max_array_size`` indices.

    Every later part's offset is at least ``max_array_size``, above any of its array indices,
    so the job script can rename a log from its array index to its task index (see
    templates/job.sbatch.j2) without ever meeting another task's log.
    """
    ordered = sorted(set(indices))
    if max_array_size is None:
        return [ArrayPart(0, 0, tuple(ordered))] if ordered else []
    low = tuple(index for index in ordered if index < max_array_size)
    parts = [ArrayPart(0, 0, low)] if low else []
    chunk: list[int] = []
    for index in ordered[len(low):]:
        if chunk and index - chunk[0] >= max_array_size:
            parts.append(ArrayPart(len(parts), chunk[0], tuple(chunk)))
            chunk = []
        chunk.append(index)
    if chunk:
        parts.append(ArrayPart(len(parts), chunk[0], tuple(chunk)))
    return parts


def parts_from_dicts(rows: Sequence[dict[str, Any]]) -> list[ArrayPart]:
    from globtim_hpc.indices import parse_index_list

    return [
        ArrayPart(int(row["part"]), int(row["offset"]), tuple(parse_index_list(str(row["indices"]))))
        for row in rows
    ]
