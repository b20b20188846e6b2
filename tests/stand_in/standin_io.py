# THIS IS NOT JULIA. Files and heartbeat lines written the way julia/globtim_driver.jl writes
# them, for the `julia` stand-in in this folder.
"""Heartbeats, atomic writes and small helpers for the julia stand-in. Not Julia."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import time
from typing import Any

T0 = time.monotonic()


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def heartbeat(stage: str, degree: int | None = None) -> None:
    beat: dict[str, Any] = {"time": utc_now(), "stage": stage, "elapsed_s": round(time.monotonic() - T0, 3)}
    if degree is not None:
        beat["degree"] = degree
    sys.stdout.write("HEARTBEAT " + json.dumps(beat, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def write_atomic(path: str, text: str) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
