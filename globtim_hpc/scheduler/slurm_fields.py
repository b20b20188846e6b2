"""How SLURM prints times, sizes, exit codes, states and job references: pure parsing.

Shared by the squeue and sacct readers (slurm_commands.py). Nothing here runs anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from globtim_hpc.layout import SLURM_NO_ARRAY_INDEX as NON_ARRAY_TASK_ID
from globtim_hpc.models import JobState

UNLIMITED_WORDS = frozenset({"UNLIMITED", "INFINITE", "NONE", "N/A", "PARTITION_LIMIT", ""})
JOB_ID = re.compile(r"^\d+$")


def parse_duration_s(text: str | None) -> float | None:
    """``[D-]HH:MM:SS``, ``MM:SS`` or ``MM:SS.mmm`` as SLURM prints them; None if unlimited."""
    if text is None:
        return None
    value = text.strip()
    if value.upper() in UNLIMITED_WORDS or value.upper() == "INVALID":
        return None
    days = 0
    if "-" in value:
        day_text, value = value.split("-", 1)
        if not day_text.isdigit():
            return None
        days = int(day_text)
    parts = value.split(":")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return None
    if len(numbers) == 3:
        hours, minutes, seconds = numbers
    elif len(numbers) == 2:
        hours, (minutes, seconds) = 0.0, numbers
    elif len(numbers) == 1 and days:
        hours, minutes, seconds = numbers[0], 0.0, 0.0
    else:
        return None
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)(n|c)?$", re.IGNORECASE)
_SIZE_KB = {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024**2, "T": 1024**3, "P": 1024**4}


def parse_size_kb(text: str | None, *, default_unit: str = "") -> int | None:
    """``419272K``, ``100M``, ``1G``, ``100Mn``, ``2Gc`` -> KiB (bare: default_unit)."""
    if not text:
        return None
    match = _SIZE.match(text.strip())
    if not match:
        return None
    unit = (match.group(2) or default_unit).upper()
    return int(float(match.group(1)) * _SIZE_KB[unit])


def per_cpu(text: str) -> bool:
    return text.strip().lower().endswith("c")


def split_exit_code(text: str | None) -> tuple[int | None, int | None]:
    """sacct/scontrol ``ExitCode`` ``3:0`` -> (3, None); ``0:15`` -> (0, 15)."""
    if not text or ":" not in text:
        return None, None
    code_text, signal_text = text.strip().split(":", 1)
    try:
        code, signal = int(code_text), int(signal_text)
    except ValueError:
        return None, None
    return code, (signal or None)


def split_wait_status(text: str | None) -> tuple[int | None, int | None]:
    """squeue's ``exit_code`` field is a raw wait status: 768 -> (3, None); 9 -> (None, 9)."""
    if not text or not text.strip().isdigit():
        return None, None
    status = int(text)
    if status & 0x7F:
        return None, status & 0x7F
    return status >> 8, None


def clean(text: str | None) -> str | None:
    if text is None:
        return None
    value = text.strip()
    return None if value in ("", "None", "(null)", "N/A", "Unknown", "None assigned") else value


def state_and_reason(text: str) -> tuple[JobState, str | None]:
    state = JobState.parse(text)
    match = re.match(r"^\s*CANCELLED by (\d+)", text, re.IGNORECASE)
    if match:
        return state, f"cancelled by uid {match.group(1)}"
    if state is JobState.UNKNOWN and text.strip():
        return state, f"SLURM state {text.strip()!r} is not one this tool knows"
    return state, None


# ---- job ids and array indices ------------------------------------------------------------


@dataclass(frozen=True)
class TaskKey:
    job_id: str  # the array job id (or the job id of a plain job)
    task_index: int


def expand_index_ranges(text: str) -> list[int]:
    """``[4-9]``, ``[1,3,5-7]``, ``[0-999%10]`` -> the listed indices."""
    body = text.strip().strip("[]").split("%", 1)[0]
    indices: list[int] = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_text = part.split(":", 1)
            step = int(step_text)
        if "-" in part:
            first, last = part.split("-", 1)
            indices.extend(range(int(first), int(last) + 1, step))
        else:
            indices.append(int(part))
    return indices


def parse_job_ref(job_ref: str) -> list[TaskKey] | None:
    """``12`` -> [12/0]; ``12_3`` -> [12/3]; ``12_[4-6]`` -> [12/4, 12/5, 12/6]; else None."""
    ref = job_ref.strip()
    if JOB_ID.match(ref):
        return [TaskKey(ref, 0)]
    match = re.match(r"^(\d+)_(\d+)$", ref)
    if match:
        return [TaskKey(match.group(1), int(match.group(2)))]
    match = re.match(r"^(\d+)_(\[[^\]]*\])$", ref)
    if match:
        try:
            return [TaskKey(match.group(1), index) for index in expand_index_ranges(match.group(2))]
        except ValueError:
            return None
    return None


def task_indices(text: str) -> list[int] | None:
    value = text.strip()
    if value in ("N/A", "", str(NON_ARRAY_TASK_ID)):
        return [0]
    if value.isdigit():
        return [int(value)]
    try:
        return expand_index_ranges(value)
    except ValueError:
        return None


