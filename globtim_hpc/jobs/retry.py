"""``resources.retry`` in a job config: which failures are run again by themselves, how often,
and with how much more room. Validated here, with the config's line in every error.

    resources:
      retry: {on: [OUT_OF_MEMORY, TIMEOUT], max: 2, mem_factor: 2, time_factor: 1.5}

``mem_factor`` scales the memory of a retry after OUT_OF_MEMORY, ``time_factor`` the time limit
after TIMEOUT; other failures are retried with the same resources. ``max`` counts retries per
task (attempts beyond the first, reruns by hand included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from globtim_hpc.settings.yamlio import KeyPath, YamlDoc, unknown_key_error

RETRY_KEYS = ("on", "max", "mem_factor", "time_factor")
RETRYABLE = ("OUT_OF_MEMORY", "TIMEOUT", "FAILED", "NODE_FAIL", "PREEMPTED")
MAX_RETRIES = 10
MAX_FACTOR = 16.0


@dataclass(frozen=True)
class RetryPolicy:
    on: tuple[str, ...]
    max_retries: int
    mem_factor: float = 1.0
    time_factor: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"on": list(self.on), "max": self.max_retries, "mem_factor": self.mem_factor,
                "time_factor": self.time_factor}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            on=tuple(data.get("on") or ()),
            max_retries=int(data.get("max") or 0),
            mem_factor=float(data.get("mem_factor") or 1.0),
            time_factor=float(data.get("time_factor") or 1.0),
        )


def _factor(doc: YamlDoc, keypath: KeyPath, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise doc.error(keypath, f"expected a number, got {type(value).__name__} {value!r}",
                        "write e.g. 'mem_factor: 2'")  # fmt: skip
    if not (math.isfinite(value) and 1.0 <= value <= MAX_FACTOR):
        raise doc.error(keypath, f"{value} is out of range [1, {MAX_FACTOR:g}]",
                        "a retry asks for at least as much as the attempt that failed")  # fmt: skip
    return float(value)


def parse_retry(doc: YamlDoc, keypath: KeyPath, section: Any) -> RetryPolicy | None:
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise doc.error(keypath, f"expected a mapping, got {type(section).__name__}",
                        "write e.g. 'retry: {on: [OUT_OF_MEMORY], max: 2, mem_factor: 2}'")  # fmt: skip
    # YAML 1.1 reads a bare ``on`` key as the boolean true: that is the 'on' written here.
    section = {("on" if key is True else key): value for key, value in section.items()}
    for key in section:
        if key not in RETRY_KEYS:
            raise unknown_key_error(doc, (*keypath, str(key)), RETRY_KEYS)
    states = section.get("on")
    if isinstance(states, str):
        states = [states]
    if not isinstance(states, list) or not states:
        raise doc.error((*keypath, "on"), "retry needs 'on': the failures to retry",
                        "e.g. 'on: [OUT_OF_MEMORY, TIMEOUT]'; one of " + ", ".join(RETRYABLE))  # fmt: skip
    for state in states:
        if state not in RETRYABLE:
            raise doc.error((*keypath, "on"), f"'{state}' is not a failure that can be retried",
                            "choose from " + ", ".join(RETRYABLE))  # fmt: skip
    count = section.get("max")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_RETRIES:
        raise doc.error((*keypath, "max"), f"retry needs 'max' between 1 and {MAX_RETRIES}, got {count!r}",
                        "the number of retries per task, e.g. 'max: 2'")  # fmt: skip
    return RetryPolicy(
        on=tuple(dict.fromkeys(states)),
        max_retries=count,
        mem_factor=_factor(doc, (*keypath, "mem_factor"), section.get("mem_factor", 1.0)),
        time_factor=_factor(doc, (*keypath, "time_factor"), section.get("time_factor", 1.0)),
    )
