"""Plain records shared by the workflows: job states, task status, runs. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    CANCELLED = "CANCELLED"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    UNKNOWN = "UNKNOWN"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_success(self) -> bool:
        return self is JobState.COMPLETED

    @classmethod
    def parse(cls, text: str | None) -> JobState:
        """Map any scheduler spelling to a state; anything unrecognised is UNKNOWN, never success."""
        if not text:
            return cls.UNKNOWN
        word = text.strip().split()[0].upper().rstrip("+")
        aliases = {
            "PD": cls.PENDING,
            "R": cls.RUNNING,
            "CG": cls.COMPLETING,
            "CD": cls.COMPLETED,
            "F": cls.FAILED,
            "TO": cls.TIMEOUT,
            "OOM": cls.OUT_OF_MEMORY,
            "CA": cls.CANCELLED,
            "NF": cls.NODE_FAIL,
            "PR": cls.PREEMPTED,
            "S": cls.SUSPENDED,
            "BF": cls.BOOT_FAIL,
            "DL": cls.DEADLINE,
            "CONFIGURING": cls.PENDING,
            "CF": cls.PENDING,
            "REQUEUED": cls.PENDING,
            "RQ": cls.PENDING,
            "RESIZING": cls.RUNNING,
        }
        if word in aliases:
            return aliases[word]
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN


FINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.TIMEOUT,
        JobState.OUT_OF_MEMORY,
        JobState.CANCELLED,
        JobState.NODE_FAIL,
        JobState.PREEMPTED,
        JobState.BOOT_FAIL,
        JobState.DEADLINE,
    }
)


class RunPhase(str, Enum):
    """Where a run stands in the submission protocol (see submit.py: exactly-once)."""

    PREPARED = "prepared"  # recorded locally, nothing remote yet
    UPLOADED = "uploaded"  # run folder complete on the cluster
    SUBMITTING = "submitting"  # the submit command may have reached the scheduler
    SUBMITTED = "submitted"  # job id known
    ABANDONED = "abandoned"  # failed before submission; nothing runs


@dataclass
class TaskStatus:
    """What is known about one task of a run at one moment."""

    task_index: int
    state: JobState
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    node: str | None = None
    elapsed_s: float | None = None
    time_limit_s: float | None = None
    max_rss_kb: int | None = None
    total_cpu_s: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    sources: list[str] = field(default_factory=list)  # e.g. ["squeue"], ["sacct", "status-file"]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_index": self.task_index,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": self.reason,
            "node": self.node,
            "elapsed_s": self.elapsed_s,
            "time_limit_s": self.time_limit_s,
            "max_rss_kb": self.max_rss_kb,
            "total_cpu_s": self.total_cpu_s,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "sources": list(self.sources),
            **({"extra": self.extra} if self.extra else {}),
        }
