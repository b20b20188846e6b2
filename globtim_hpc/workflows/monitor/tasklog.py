"""A task's log tail, for a finished or running task, without collecting the run.

SLURM writes a task's stdout and stderr into one file (the batch script's ``--output`` and
``--error`` are the same pattern), so one tail shows both, in the order they were written. One
remote command reads it: the first candidate name that exists (SLURM's array name, or its
non-array name for task 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from globtim_hpc.errors import UsageError
from globtim_hpc.layout import RunLayout
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.monitor.logs import parse_task_selector
from globtim_hpc.workflows.monitor.poll import stored_view

MAX_LINES = 100_000

# Candidates are $2...; $1 is the line count. Prints the chosen path first, then the tail.
_TAIL = r"""
n=$1; shift
for f in "$@"; do
    if [ -f "$f" ]; then printf '@@PATH %s\n' "$f"; exec tail -n "$n" -- "$f"; fi
done
printf '@@NONE\n'
"""


@dataclass(frozen=True)
class TaskLog:
    run_id: str
    job_id: str
    task_index: int
    task_id: str
    state: str
    attempt: int
    path: str | None  # None: no log yet (the task has not started, or the file was removed)
    candidates: tuple[str, ...]
    text: str
    lines: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "job_id": self.job_id, "task_index": self.task_index,
            "task_id": self.task_id, "state": self.state, "attempt": self.attempt,
            "path": self.path, "candidates": list(self.candidates), "lines": self.lines,
            "text": self.text, "streams": "stdout and stderr (one file)",
        }  # fmt: skip


def read_task_log(
    transport: Transport,
    store: Store,
    run: RunRecord,
    task: int | str,
    *,
    lines: int = 50,
    attempt: int | None = None,
) -> TaskLog:
    """The last ``lines`` lines of task ``task``'s log (see the module docstring)."""
    if not 1 <= lines <= MAX_LINES:
        raise UsageError(f"--lines {lines} is out of range", f"give 1 to {MAX_LINES}")
    if run.job_id is None:
        raise UsageError(f"run {run.run_id} has no job yet, so no logs", "submit it first")
    view = stored_view(store, run)
    index = parse_task_selector(str(task), view)
    status = view.tasks[index]
    chosen = attempt if attempt is not None else status.status.attempt
    job_id = _attempt_job(store, run, index, chosen)
    candidates = RunLayout(run.remote_dir).log_candidates(job_id, index)
    result = transport.run(["sh", "-c", _TAIL, "globtim-log", str(lines), *candidates])
    result.check(f"reading the log of task {index} of run {run.run_id}")
    head, _, body = result.stdout_text.partition("\n")
    path = head.removeprefix("@@PATH ") if head.startswith("@@PATH ") else None
    return TaskLog(
        run_id=run.run_id,
        job_id=job_id,
        task_index=index,
        task_id=status.task_id,
        state=status.status.state.value,
        attempt=chosen,
        path=path,
        candidates=tuple(candidates),
        text=body if path is not None else "",
        lines=lines,
    )


def _attempt_job(store: Store, run: RunRecord, index: int, attempt: int) -> str:
    """The job that ran task ``index`` in ``attempt`` (each attempt's logs carry its job id)."""
    rows = store.run_jobs(run.run_id)
    held = [
        row.job_id
        for row in rows
        if row.attempt == attempt and (row.task_indices is None or index in row.task_indices)
    ]
    if held:
        return held[-1]
    if attempt == 1 and run.job_id is not None and not rows:
        return run.job_id
    made = sorted({row.attempt for row in rows if row.task_indices is None or index in row.task_indices})
    raise UsageError(
        f"task {index} of run {run.run_id} has no attempt {attempt}",
        f"its attempts: {', '.join(map(str, made)) or '1'} (--attempt N)",
    )
