"""The status file a task writes about itself: ``<run_dir>/status/<task_id>.json``.

The batch script writes it when the task starts and rewrites it from a bash ``trap`` when the
task ends, also when SLURM sends SIGTERM (scancel, time limit). A task killed with SIGKILL
(memory enforcement, node failure) cannot run its trap, so its file keeps saying RUNNING.
Without accounting, this file is the only record of how a task ended once SLURM forgets the job.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from globtim_hpc.layout import STATUS_DIR

if TYPE_CHECKING:
    from globtim_hpc.transport.base import Transport

SCHEMA = "globtim-hpc/status/1"
STATES = ("RUNNING", "EXITED", "SIGNALLED")
FRAME_MARK = "@@globtim-status "
STATUS_TEXT_KEY = "status_file_text"  # TaskStatus.extra key: a status file a scheduler already read

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
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
        }


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
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


def parse_status_with_reason(text: str) -> tuple[StatusFile | None, str | None]:
    """Parse a status file; on failure return (None, why) instead of raising."""
    if not text.strip():
        return None, "the status file is empty"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the status file is not valid JSON ({exc.msg} at char {exc.pos}); truncated?"
    if not isinstance(data, dict):
        return None, "the status file does not hold a JSON object"
    schema = data.get("schema")
    if schema != SCHEMA:
        return None, f"the status file has schema {schema!r}, expected {SCHEMA!r}"
    state = data.get("state")
    if state not in STATES:
        return None, f"the status file has state {state!r}, expected one of {', '.join(STATES)}"
    try:
        task_index = _opt_int(data.get("task_index"))
        exit_code = _opt_int(data.get("exit_code"))
    except (TypeError, ValueError):
        return None, "the status file's task_index or exit_code is not a whole number"
    if task_index is None:
        return None, "the status file has no task_index"
    if state == "EXITED" and exit_code is None:
        return None, "the status file says EXITED but has no exit_code"
    return (
        StatusFile(
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
        ),
        None,
    )


def status_from_dict(data: Any) -> StatusFile | None:
    """A status file kept as a dict (for example in the registry), or None if it is not one."""
    if not isinstance(data, dict):
        return None
    return parse_status_with_reason(json.dumps(data))[0]


def parse_status(text: str) -> StatusFile | None:
    """The status file, or None when it is empty, truncated or not one of ours."""
    return parse_status_with_reason(text)[0]


def status_files_argv(run_dirs: Sequence[str]) -> list[str]:
    """ONE command printing every status file of the given runs, each after a frame line.

    ``find`` lists them (a missing folder is a message on stderr, not a failure of the rest);
    one ``awk`` per batch of files prints ``@@globtim-status <path>`` before each file's
    lines. Both are on any compute node; no shell, no python.
    """
    folders = [posixpath.join(run_dir, STATUS_DIR) for run_dir in run_dirs]
    program = f'FNR == 1 {{ print "{FRAME_MARK.rstrip()} " FILENAME }} {{ print }}'
    return [
        "find",
        *folders,
        "-maxdepth",
        "1",
        "-type",
        "f",
        "-name",
        "*.json",
        "-exec",
        "awk",
        program,
        "{}",
        "+",
    ]


def split_status_listing(stdout: str) -> dict[str, str]:
    """Output of ``status_files_argv`` -> {path: file text}."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(FRAME_MARK):
            current = files.setdefault(line[len(FRAME_MARK) :], [])
            continue
        if current is not None:
            current.append(line)
    return {path: "\n".join(lines) for path, lines in files.items()}


@dataclass
class StatusListing:
    """Status files found for some runs: run_dir -> task_id -> StatusFile, plus what went wrong."""

    by_run: dict[str, dict[str, StatusFile]]
    problems: list[str]

    def get(self, run_dir: str, task_id: str) -> StatusFile | None:
        return self.by_run.get(run_dir, {}).get(task_id)


def parse_status_listing(stdout: str, run_dirs: Iterable[str]) -> StatusListing:
    dirs = {posixpath.join(run_dir, STATUS_DIR): run_dir for run_dir in run_dirs}
    listing = StatusListing(by_run={run_dir: {} for run_dir in dirs.values()}, problems=[])
    for path, text in split_status_listing(stdout).items():
        folder, name = posixpath.split(path)
        run_dir = dirs.get(folder)
        if run_dir is None or not name.endswith(".json"):
            continue
        parsed, why = parse_status_with_reason(text)
        if parsed is None:
            listing.problems.append(f"{path}: {why}")
            continue
        listing.by_run[run_dir][name[: -len(".json")]] = parsed
    return listing


def read_status_files(
    transport: Transport, run_dirs: Sequence[str], *, timeout_s: float = 120.0
) -> StatusListing:
    """Fetch and parse the status files of ``run_dirs`` with one remote command."""
    if not run_dirs:
        return StatusListing(by_run={}, problems=[])
    result = transport.run(status_files_argv(run_dirs), timeout_s=timeout_s)
    listing = parse_status_listing(result.stdout_text, run_dirs)
    if not result.ok:
        # find exits 1 when a run has no status folder yet; that is "no files", not an error.
        for line in result.stderr_text.splitlines():
            if line.strip() and "No such file or directory" not in line:
                where = f"reading status files on {transport.label}"
                listing.problems.append(f"{where}: {line.strip()}")
    return listing
