"""The registry's records: what a run and a state change look like when read back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from globtim_hpc.models import RunPhase


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    problem: str
    cluster: str
    scheduler: str
    remote_dir: str
    phase: RunPhase
    task_count: int
    config_hash: str
    deploy_id: str | None
    git_sha: str | None
    plan: dict[str, Any]
    submission: dict[str, Any] | None
    created_at: str
    submitted_at: str | None
    error: str | None
    job_id: str | None
    inputs_hash: str | None = None


@dataclass(frozen=True)
class StateChange:
    id: int
    run_id: str
    task_index: int
    old_state: str | None
    new_state: str
    at: str


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a run: which tasks, with what resources, why, and its job (once known)."""

    run_id: str
    attempt: int
    task_indices: tuple[int, ...]
    resources: dict[str, Any]
    cause: str
    phase: str  # "submitting" until its job is recorded, then "submitted"
    error: str | None
    created_at: str
    job_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRow:
    """One scheduler job of a run; ``task_indices`` None: every task of the run."""

    job_id: str
    attempt: int
    task_indices: tuple[int, ...] | None
    submitted_at: str
    part: int = 0  # which part of its attempt (a sweep split at MaxArraySize, jobs.arrays)
    task_offset: int = 0  # array index + offset = task index
