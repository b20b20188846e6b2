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
from typing import TYPE_CHECKING, Any

from globtim_hpc.layout import STATUS_DIR
from globtim_hpc.models import STATUS_SCHEMA, StatusFile, status_file_from_dict

if TYPE_CHECKING:
    from globtim_hpc.transport.base import Transport

SCHEMA = STATUS_SCHEMA
FRAME_MARK = "@@globtim-status "

def parse_status_with_reason(text: str) -> tuple[StatusFile | None, str | None]:
    """Parse a status file; on failure return (None, why) instead of raising."""
    if not text.strip():
        return None, "the status file is empty"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the status file is not valid JSON ({exc.msg} at char {exc.pos}); truncated?"
    try:
        return StatusFile.from_dict(data), None
    except ValueError as exc:
        return None, str(exc)


def status_from_dict(data: Any) -> StatusFile | None:
    """A status file kept as a dict (for example in the registry), or None if it is not one."""
    return status_file_from_dict(data)


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
