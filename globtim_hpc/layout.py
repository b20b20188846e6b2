"""The one owner of every file and folder name, on the cluster and on the laptop.

Remote (under the profile's remote_root)::

    code/<deploy_id>/           deployed code, content-addressed
    depot/                      JULIA_DEPOT_PATH
    runs/<run_id>/
      job.sbatch                exactly what was submitted
      params/<task_id>.json     resolved parameters, one per array task
      submission.json           deploy id, git sha, config hash, tool version, who, when
      driver/                   the Julia driver (and a custom user script) that ran
      logs/slurm-<job>_<task>.out
      status/<task_id>.json     written by the job itself
      output/<task_id>/         what the driver writes (always the task's latest attempt)
      attempts/<n>/job.sbatch   the script of rerun attempt n (n >= 2), over the chosen tasks
      attempts/<n>/status/<task_id>.json, attempts/<n>/output/<task_id>/
                                attempt n's files, moved here when the task was run again

Local::

    results/<problem>/<YYYY-MM-DD>_<run_id>/
"""

from __future__ import annotations

import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from globtim_hpc.errors import UsageError

RUN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*_\d{8}-\d{6}_[0-9a-f]{8}$")
_PROBLEM_SAFE = re.compile(r"[^a-z0-9_]+")

LOG_NAME_PATTERN = "slurm-%A_%a.out"  # SLURM's own substitution: array job id, task index
SLURM_NO_ARRAY_INDEX = 4294967294  # what SLURM prints (and %a expands to) for a non-array job
STATUS_DIR = "status"
PARAMS_DIR = "params"
OUTPUT_DIR = "output"
LOGS_DIR = "logs"
DRIVER_DIR = "driver"
JOB_SCRIPT = "job.sbatch"
SUBMISSION_JSON = "submission.json"
DIRECT_DIR = "direct"


ATTEMPTS_DIR = "attempts"


def attempt_job_name(run_id: str, attempt: int) -> str:
    """The job name of an attempt: the run id for the first (as every run had before reruns
    existed), ``<run id>.a<n>`` for later ones, so each attempt's job is found by its name."""
    return run_id if attempt <= 1 else f"{run_id}.a{attempt}"


def part_job_name(run_id: str, attempt: int, part: int) -> str:
    """The job name of one part of a split submission (jobs.arrays): the attempt's name for
    the first part, ``<attempt name>.p<n>`` for the others, so a lost answer finds each part."""
    name = attempt_job_name(run_id, attempt)
    return name if part <= 0 else f"{name}.p{part}"


def task_id_width(task_count: int) -> int:
    return max(4, len(str(max(task_count - 1, 0))))


def task_id_for(index: int, task_count: int) -> str:
    """Stable, filename-safe, sortable id of a task: its array index, zero-padded."""
    return f"{index:0{task_id_width(task_count)}d}"


def new_run_id(problem: str, now: datetime | None = None) -> str:
    """``<problem>_<YYYYMMDD-HHMMSS>_<8 hex>``: reads well, sorts by time, unique."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    slug = _PROBLEM_SAFE.sub("_", problem.lower()).strip("_") or "run"
    return f"{slug}_{stamp}_{secrets.token_hex(4)}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise UsageError(
            f"'{run_id}' is not a run id",
            "run ids look like 4d_benchmark_20261129-104500_1a2b3c4d (see monitor_jobs.py output)",
        )
    return run_id


def run_date(run_id: str) -> str:
    """The YYYY-MM-DD of a run id's timestamp."""
    stamp = check_run_id(run_id).rsplit("_", 2)[-2]
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}"


@dataclass(frozen=True)
class RemoteLayout:
    root: str

    def _join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @property
    def code_root(self) -> str:
        return self._join("code")

    def code_dir(self, deploy_id: str) -> str:
        return self._join("code", deploy_id)

    @property
    def depot(self) -> str:
        return self._join("depot")

    @property
    def runs_root(self) -> str:
        return self._join("runs")

    def run_dir(self, run_id: str) -> str:
        return self._join("runs", check_run_id(run_id))


@dataclass(frozen=True)
class RunLayout:
    """Names inside one run folder; ``base`` is the run folder (remote or local)."""

    base: str

    def _join(self, *parts: str) -> str:
        return posixpath.join(self.base, *parts)

    @property
    def job_script(self) -> str:
        return self._join(JOB_SCRIPT)

    @property
    def submission(self) -> str:
        return self._join(SUBMISSION_JSON)

    @property
    def params_dir(self) -> str:
        return self._join(PARAMS_DIR)

    def params_file(self, task_id: str) -> str:
        return self._join(PARAMS_DIR, f"{task_id}.json")

    @property
    def logs_dir(self) -> str:
        return self._join(LOGS_DIR)

    @property
    def log_pattern(self) -> str:
        return self._join(LOGS_DIR, LOG_NAME_PATTERN)

    def log_file(self, array_job_id: str, task_index: int) -> str:
        return self._join(LOGS_DIR, f"slurm-{array_job_id}_{task_index}.out")

    def log_candidates(self, array_job_id: str, task_index: int) -> list[str]:
        """Where a task's output may be: its array name, or SLURM's non-array name for task 0."""
        found = [self.log_file(array_job_id, task_index)]
        if task_index == 0:
            found.append(self.log_file(array_job_id, SLURM_NO_ARRAY_INDEX))
        return found

    @property
    def status_dir(self) -> str:
        return self._join(STATUS_DIR)

    def status_file(self, task_id: str) -> str:
        return self._join(STATUS_DIR, f"{task_id}.json")

    @property
    def output_root(self) -> str:
        return self._join(OUTPUT_DIR)

    def output_dir(self, task_id: str) -> str:
        return self._join(OUTPUT_DIR, task_id)

    @property
    def driver_dir(self) -> str:
        return self._join(DRIVER_DIR)

    @property
    def direct_dir(self) -> str:
        return self._join(DIRECT_DIR)

    def attempt_dir(self, attempt: int) -> str:
        return self._join(ATTEMPTS_DIR, str(attempt))

    def attempt_script(self, attempt: int) -> str:
        """Where attempt ``attempt``'s batch script is (the first one's is job.sbatch)."""
        return self.job_script if attempt <= 1 else self._join(ATTEMPTS_DIR, str(attempt), JOB_SCRIPT)


def local_run_dir(results_root: Path, problem: str, run_id: str) -> Path:
    """``results/<problem>/<YYYY-MM-DD>_<run_id>/``."""
    return results_root / problem / f"{run_date(run_id)}_{run_id}"
