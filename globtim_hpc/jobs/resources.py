"""What a job asks the scheduler for: named presets plus explicit overrides from a YAML mapping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from globtim_hpc.jobs.retry import RetryPolicy, parse_retry
from globtim_hpc.settings.yamlio import KeyPath, YamlDoc, suggest, unknown_key_error


@dataclass(frozen=True)
class Resources:
    time_min: int
    mem_gb: float
    cpus: int
    partition: str | None = None
    account: str | None = None
    max_parallel: int | None = None  # array throttle (%N)
    preset: str | None = None
    retry: RetryPolicy | None = None  # failures run again by themselves (jobs.retry)

    # ``mem_gb: auto``: mem_gb is chosen from the estimate and what earlier runs used.
    mem_auto: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time_min": self.time_min,
            "mem_gb": self.mem_gb,
            "cpus": self.cpus,
            "partition": self.partition,
            "account": self.account,
            "max_parallel": self.max_parallel,
            "preset": self.preset,
        }
        if self.retry is not None:  # only then: configs without one keep their config hash
            out["retry"] = self.retry.to_dict()
        if self.mem_auto:  # only then, so configs without it keep their hash
            out["mem_auto"] = True
        return out


_PRESETS: dict[str, Resources] = {
    "quick": Resources(time_min=30, mem_gb=4.0, cpus=1, preset="quick"),
    "standard": Resources(time_min=120, mem_gb=16.0, cpus=4, preset="standard"),
    "extended": Resources(time_min=720, mem_gb=32.0, cpus=8, preset="extended"),
    "bigmem": Resources(time_min=720, mem_gb=128.0, cpus=8, preset="bigmem"),
}

# Far beyond any real GlobTim job on the target clusters; larger values are typos (minutes vs
# seconds, MB vs GB) and are refused rather than handed to sbatch.
MAX_TIME_MIN = 14 * 24 * 60
MAX_MEM_GB = 4096.0
MAX_CPUS = 256
MAX_PARALLEL = 10_000

RESOURCE_KEYS = (
    "preset", "time_min", "mem_gb", "cpus", "partition", "account", "max_parallel", "retry",
)


def resource_presets() -> dict[str, Resources]:
    return dict(_PRESETS)


def _preset(doc: YamlDoc, keypath: KeyPath, value: Any) -> Resources:
    if not isinstance(value, str):
        raise doc.error(
            keypath,
            f"expected a preset name, got {type(value).__name__} {value!r}",
            "presets: " + ", ".join(_PRESETS),
        )
    if value not in _PRESETS:
        near = suggest(value, _PRESETS)
        hint = (f"did you mean '{near}'? " if near else "") + "presets: " + ", ".join(_PRESETS)
        raise doc.error(keypath, f"unknown resource preset '{value}'", hint)
    return _PRESETS[value]


def _int_in(doc: YamlDoc, keypath: KeyPath, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(
            keypath,
            f"expected an integer, got {type(value).__name__} {value!r}",
            f"write a whole number between {low} and {high}",
        )
    if not low <= value <= high:
        raise doc.error(
            keypath,
            f"{value} is out of range [{low}, {high}]",
            f"use a value between {low} and {high}",
        )
    return value


AUTO = "auto"


def _mem_gb(doc: YamlDoc, keypath: KeyPath, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise doc.error(
            keypath,
            f"expected a number of gigabytes, got {type(value).__name__} {value!r}",
            "write e.g. 'mem_gb: 16', or 'mem_gb: auto' to size from the estimate and past runs",
        )
    mem = float(value)
    if not (math.isfinite(mem) and 0 < mem <= MAX_MEM_GB):
        raise doc.error(
            keypath,
            f"{value} is out of range (0, {MAX_MEM_GB:g}] GB",
            f"use a value above 0 and at most {MAX_MEM_GB:g}",
        )
    return mem


def _name(doc: YamlDoc, keypath: KeyPath, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        key = str(keypath[-1]) if keypath else "name"
        example = {"partition": "batch", "account": "my_group", "qos": "normal"}.get(key, "batch")
        raise doc.error(
            keypath, f"expected a name without spaces, got {value!r}", f"e.g. '{key}: {example}'"
        )
    return value


def apply_resources(base: Resources, doc: YamlDoc, keypath: KeyPath, section: Any) -> Resources:
    """``base`` updated by a ``resources:`` mapping: a preset first, explicit keys on top of it."""
    if section is None:
        return base
    if not isinstance(section, Mapping):
        raise doc.error(
            keypath,
            f"expected a mapping, got {type(section).__name__}",
            "write e.g. 'resources: {preset: standard, mem_gb: 8}'",
        )
    for key in section:
        if key not in RESOURCE_KEYS:
            raise unknown_key_error(doc, (*keypath, str(key)), RESOURCE_KEYS)
    out = base
    if "preset" in section:
        preset = _preset(doc, (*keypath, "preset"), section["preset"])
        # The preset replaces sizes only; placement (partition/account/throttle) survives.
        out = replace(
            out,
            time_min=preset.time_min,
            mem_gb=preset.mem_gb,
            cpus=preset.cpus,
            preset=preset.preset,
        )
    changes: dict[str, Any] = {}
    if "time_min" in section:
        changes["time_min"] = _int_in(
            doc, (*keypath, "time_min"), section["time_min"], 1, MAX_TIME_MIN
        )
    if section.get("mem_gb") == AUTO:
        changes["mem_auto"] = True
    elif "mem_gb" in section:
        changes["mem_gb"] = _mem_gb(doc, (*keypath, "mem_gb"), section["mem_gb"])
        changes["mem_auto"] = False
    if "cpus" in section:
        changes["cpus"] = _int_in(doc, (*keypath, "cpus"), section["cpus"], 1, MAX_CPUS)
    if "max_parallel" in section:
        value = section["max_parallel"]
        changes["max_parallel"] = (
            None
            if value is None
            else _int_in(doc, (*keypath, "max_parallel"), value, 1, MAX_PARALLEL)
        )
    for key in ("partition", "account"):
        if key in section:
            changes[key] = _name(doc, (*keypath, key), section[key])
    if "retry" in section:
        changes["retry"] = parse_retry(doc, (*keypath, "retry"), section["retry"])
    return replace(out, **changes) if changes else out
