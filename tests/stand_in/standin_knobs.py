"""The stand-in's knobs that are read from a file as well as from the environment. Not Julia.

On the bed a job's environment cannot be set from the laptop, so knobs may also be given in
``knobs.env`` beside the stand-in (KEY=VALUE lines); the environment wins.
"""

from __future__ import annotations

import math
import os
import time

MIB = 1024 * 1024


def load_knob_file() -> None:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "knobs.env")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("GLOBTIM_STAND_IN_"):
            os.environ.setdefault(key, value)


def allocations_mb() -> dict[int, float]:
    """GLOBTIM_STAND_IN_ALLOCATE_MB=D:MB[,D:MB...]: degree -> MiB to hold at that degree."""
    out: dict[int, float] = {}
    for item in (os.environ.get("GLOBTIM_STAND_IN_ALLOCATE_MB") or "").split(","):
        degree, sep, size = item.partition(":")
        if not (sep and degree.strip().isdigit()):
            continue
        try:
            value = float(size.strip())
        except ValueError:
            raise ValueError(f"GLOBTIM_STAND_IN_ALLOCATE_MB needs a number, got {size!r}") from None
        if value < 0 or not math.isfinite(value):
            raise ValueError("GLOBTIM_STAND_IN_ALLOCATE_MB needs a non-negative number")
        out[int(degree)] = value
    return out


def hold_memory(size_mb: float) -> None:
    """Allocate, touch every page (resident, as Julia's arrays are), hold, release."""
    block = bytearray(int(size_mb * MIB))
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    # long enough for SLURM's 2 s accounting sample to see it in MaxRSS
    time.sleep(float(os.environ.get("GLOBTIM_STAND_IN_HOLD_S") or 5))
    del block
