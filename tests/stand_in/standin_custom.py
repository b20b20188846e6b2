# THIS IS NOT JULIA. The `custom` problem in the julia stand-in: directive comments in the
# user's script (see the header of `julia` in this folder), performed in order.
"""Custom scripts for the julia stand-in. Not Julia."""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import time
from typing import Any

from standin_io import heartbeat
from standin_loading import JuliaError

DIRECTIVE = re.compile(
    r"^\s*#\s*stand-in:\s*(?:((?:(?:task|attempt)\s+[\d,]+\s*)+):\s*)?([a-z-]+)\s*(.*?)\s*$"
)
CONDITION = re.compile(r"(task|attempt)\s+([\d,]+)")
DEFINES_RUN_CUSTOM = re.compile(r"^\s*(function\s+run_custom\s*\(|run_custom\s*\(.*\)\s*=)", re.M)
MIB = 1024 * 1024
_HELD: list[bytearray] = []  # allocations held until the process ends


def _number(arg: str, directive: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise JuliaError("ErrorException", f"stand-in directive '{directive}' needs a number, got {arg!r}") from None
    if value < 0 or not math.isfinite(value):
        raise JuliaError("ErrorException", f"stand-in directive '{directive}' needs a non-negative number")
    return value


def _print_mb(stream: Any, size_mb: float, label: str) -> None:
    line = f"{label} filler line for output volume tests ................................\n"
    total = int(size_mb * MIB)
    count, rest = divmod(total, len(line))
    block = line * 1024
    for _ in range(count // 1024):
        stream.write(block)
    stream.write(line * (count % 1024) + line[:rest])
    stream.flush()


def run_directive(name: str, arg: str, outdir: str) -> None:
    if name == "exit":
        sys.stdout.flush()
        os._exit(int(_number(arg, name)))
    elif name == "sleep":
        time.sleep(_number(arg, name))
    elif name == "allocate-mb":
        block = bytearray(int(_number(arg, name) * MIB))
        # Touch every page so the memory is really resident, as Julia's arrays would be.
        block[::4096] = b"\x01" * len(range(0, len(block), 4096))
        _HELD.append(block)
    elif name == "files":
        for i in range(int(_number(arg, name))):
            with open(os.path.join(outdir, f"stand_in_file_{i:06d}.txt"), "w", encoding="utf-8") as handle:
                handle.write(f"small file {i}\n")
    elif name == "big-file-mb":
        # Incompressible, deterministic content, so transfer and hashing do real work.
        chunk = hashlib.shake_256(b"globtim-hpc stand-in").digest(MIB)
        remaining = int(_number(arg, name) * MIB)
        with open(os.path.join(outdir, "big_file.bin"), "wb") as handle:
            while remaining > 0:
                handle.write(chunk[: min(remaining, MIB)])
                remaining -= MIB
    elif name == "stdout-mb":
        _print_mb(sys.stdout, _number(arg, name), "stdout")
    elif name == "stderr-mb":
        _print_mb(sys.stderr, _number(arg, name), "stderr")
    elif name == "fail":
        raise JuliaError("ErrorException", arg or "the custom script failed (stand-in: fail)")
    else:
        raise JuliaError("ErrorException", f"unknown stand-in directive '{name}'")


def _applies(conditions: str) -> bool:
    """Whether a directive's ``task N,M`` / ``attempt N`` conditions hold for this task."""
    here = {
        "task": int(os.environ.get("GLOBTIM_HPC_TASK_ID") or 0),
        "attempt": int(os.environ.get("GLOBTIM_HPC_ATTEMPT") or 1),
    }
    for name, values in CONDITION.findall(conditions):
        if here[name] not in {int(v) for v in values.split(",") if v}:
            return False
    return True


def run_dir(params_path: str) -> str:
    override = os.environ.get("GLOBTIM_RUN_DIR")
    if override:
        return os.path.abspath(override)
    return os.path.dirname(os.path.dirname(params_path))


def run_custom(state: dict[str, Any], params: dict[str, Any], params_path: str, outdir: str) -> None:
    heartbeat("custom")
    t = time.monotonic()
    if "script" not in params:
        raise JuliaError("KeyError", 'KeyError: key "script" not found')
    script = str(params["script"])
    if not os.path.isabs(script):
        script = os.path.join(run_dir(params_path), script)
    if not os.path.isfile(script):
        raise JuliaError("ArgumentError", f"ArgumentError: custom script not found: {script}")
    with open(script, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    if not DEFINES_RUN_CUSTOM.search(text):
        raise JuliaError("ArgumentError", f"ArgumentError: {script} must define run_custom(params::Dict{{String,Any}}, outdir::String)")
    performed = []
    for line in text.splitlines():
        match = DIRECTIVE.match(line)
        if match and _applies(match.group(1) or ""):
            run_directive(match.group(2), match.group(3), outdir)
            performed.append(f"{match.group(2)} {match.group(3)}".strip())
    state["custom"] = {"stand_in": True, "directives": performed}
    state["timings_s"]["custom"] = time.monotonic() - t
    state["status"] = "COMPLETED"


