"""Plain records shared by the workflows: job states, status files, task status. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

STATUS_SCHEMA = "globtim-hpc/status/1"
STATUS_STATES = ("RUNNING", "EXITED", "SIGNALLED")


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
    """Where a run stands in the submission protocol (see workflows/submit: exactly-once)."""

    PREPARED = "prepared"  # recorded locally, nothing remote yet
    SUBMITTING = "submitting"  # the submit command may have reached the scheduler
    SUBMITTED = "submitted"  # job id known
    ABANDONED = "abandoned"  # failed before submission; nothing runs


SIGNAL_NUMBERS = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "ABRT": 6,
    "KILL": 9,
    "USR1": 10,
    "SEGV": 11,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
    "CONT": 18,
    "STOP": 19,
    "XCPU": 24,
}


@dataclass(frozen=True)
class StatusFile:
    run_id: str
    task_id: str
    task_index: int
    job_id: str | None
    array_job_id: str | None
    host: str | None
    started_at: str | None
    ended_at: str | None
    exit_code: int | None
    signal: str | None
    state: str  # RUNNING | EXITED | SIGNALLED
    julia_version: str | None
    attempt: int = 1  # which attempt of the task wrote it (files of older jobs have none: 1)

    @property
    def ended(self) -> bool:
        return self.state != "RUNNING"

    @property
    def signal_number(self) -> int | None:
        if not self.signal:
            return None
        name = self.signal.upper().removeprefix("SIG")
        if name.isdigit():
            return int(name)
        return SIGNAL_NUMBERS.get(name)

    @property
    def elapsed_s(self) -> float | None:
        start, end = parse_iso(self.started_at), parse_iso(self.ended_at)
        if start is None or end is None:
            return None
        return max(0.0, (end - start).total_seconds())

    @classmethod
    def from_dict(cls, data: Any) -> StatusFile:
        """Validate a decoded status file; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError("the status file does not hold a JSON object")
        schema = data.get("schema")
        if schema != STATUS_SCHEMA:
            raise ValueError(f"the status file has schema {schema!r}, expected {STATUS_SCHEMA!r}")
        state = data.get("state")
        if state not in STATUS_STATES:
            raise ValueError(
                f"the status file has state {state!r}, expected one of {', '.join(STATUS_STATES)}"
            )
        try:
            task_index = _opt_int(data.get("task_index"))
            exit_code = _opt_int(data.get("exit_code"))
        except (TypeError, ValueError):
            raise ValueError(
                "the status file's task_index or exit_code is not a whole number"
            ) from None
        if task_index is None:
            raise ValueError("the status file has no task_index")
        if state == "EXITED" and exit_code is None:
            raise ValueError("the status file says EXITED but has no exit_code")
        return cls(
            run_id=str(data.get("run_id") or ""),
            task_id=str(data.get("task_id") or ""),
            task_index=task_index,
            job_id=_opt_str(data, "job_id"),
            array_job_id=_opt_str(data, "array_job_id"),
            host=_opt_str(data, "host"),
            started_at=_opt_str(data, "started_at"),
            ended_at=_opt_str(data, "ended_at"),
            exit_code=exit_code,
            signal=_opt_str(data, "signal"),
            state=state,
            julia_version=_opt_str(data, "julia_version"),
            attempt=_opt_int(data.get("attempt")) or 1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "task_index": self.task_index,
            "job_id": self.job_id,
            "array_job_id": self.array_job_id,
            "host": self.host,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "state": self.state,
            "julia_version": self.julia_version,
            "attempt": self.attempt,
        }


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def status_file_from_dict(data: Any) -> StatusFile | None:
    """A status file kept as a dict (the registry keeps them so), or None if it is not one."""
    try:
        return StatusFile.from_dict(data)
    except ValueError:
        return None


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return int(value)


@dataclass
class TaskStatus:
    """What is known about one task of a run at one moment.

    The scheduler fills the first block; ``workflows.taskstate`` (the one owner of a task's
    state) adds what it learned from the task's status file and from earlier polls.
    """

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
    scheduler_state: str | None = None  # SLURM's own word when this tool inferred another state
    awaiting_accounting: bool = False  # final in squeue, not yet in sacct
    awaiting_since: str | None = None  # when a poll first waited for the accounting record
    lost: bool = False  # the scheduler no longer knows this task
    cancel_requested_at: str | None = None  # when this tool asked the scheduler to cancel it
    status_file: StatusFile | None = None  # the task's own record, as last read
    attempt: int = 1  # which attempt of the task this is (a rerun is a new attempt)

    @property
    def julia_version(self) -> str | None:
        return self.status_file.julia_version if self.status_file else None

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
            "scheduler_state": self.scheduler_state,
            "awaiting_accounting": self.awaiting_accounting,
            "awaiting_since": self.awaiting_since,
            "lost": self.lost,
            "cancel_requested_at": self.cancel_requested_at,
            "julia_version": self.julia_version,
            "status_file": self.status_file.to_dict() if self.status_file else None,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStatus:
        """The inverse of ``to_dict``; also reads registries written by versions that kept some
        of these fields in an ``extra`` mapping."""
        legacy = data.get("extra") if isinstance(data.get("extra"), dict) else {}
        assert isinstance(legacy, dict)

        def pick(name: str, legacy_name: str) -> Any:
            return data[name] if name in data else legacy.get(legacy_name)

        return cls(
            task_index=int(data.get("task_index") or 0),
            state=JobState.parse(data.get("state")),
            exit_code=data.get("exit_code"),
            signal=data.get("signal"),
            reason=data.get("reason"),
            node=data.get("node"),
            elapsed_s=data.get("elapsed_s"),
            time_limit_s=data.get("time_limit_s"),
            max_rss_kb=data.get("max_rss_kb"),
            total_cpu_s=data.get("total_cpu_s"),
            started_at=data.get("started_at"),
            ended_at=data.get("ended_at"),
            sources=list(data.get("sources") or []),
            scheduler_state=pick("scheduler_state", "slurm_state"),
            awaiting_accounting=bool(pick("awaiting_accounting", "awaiting_accounting")),
            awaiting_since=data.get("awaiting_since"),
            lost=bool(pick("lost", "gone")),
            cancel_requested_at=data.get("cancel_requested_at"),
            status_file=status_file_from_dict(pick("status_file", "status_file")),
            attempt=int(data.get("attempt") or 1),
        )
