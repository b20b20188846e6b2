"""Following a task's output while it runs, and naming a task on the command line."""

from __future__ import annotations

from collections.abc import Sequence

from globtim_hpc.errors import UsageError
from globtim_hpc.layout import RunLayout
from globtim_hpc.models import JobState
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.monitor.poll import RunView


def log_candidates(run: RunRecord, task_index: int) -> list[str]:
    """Where a task's stdout may be: ``logs/slurm-<job>_<index>.out`` (or SLURM's non-array %a)."""
    assert run.job_id is not None
    return RunLayout(run.remote_dir).log_candidates(run.job_id, task_index)


class LogFollower:
    """Reads what was appended to a remote file since the last read (``tail -c +OFFSET``)."""

    def __init__(self, transport: Transport, candidates: Sequence[str]) -> None:
        self.transport = transport
        self.candidates = list(candidates)
        self.path: str | None = None
        self.offset = 0

    def read_new(self) -> bytes:
        paths = [self.path] if self.path else self.candidates
        for path in paths:
            result = self.transport.run(["tail", "-c", f"+{self.offset + 1}", path], timeout_s=120)
            if result.ok:
                self.path = path
                self.offset += len(result.stdout)
                return result.stdout
        return b""


def parse_task_selector(text: str | None, view: RunView) -> int:
    """``--follow`` argument: an array index or a task id; default: the first running task."""
    if text is None:
        running = [t for t in view.tasks if t.status.state is JobState.RUNNING]
        return (running[0] if running else view.tasks[0]).status.task_index
    for task in view.tasks:
        if text == task.task_id:
            return task.status.task_index
    if text.isdigit() and int(text) < len(view.tasks):
        return int(text)
    raise UsageError(
        f"run {view.run.run_id} has no task {text!r}",
        f"give an index from 0 to {len(view.tasks) - 1}, or a task id like {view.tasks[0].task_id}",
    )
