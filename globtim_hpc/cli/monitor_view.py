"""How monitor_jobs.py shows runs: plain lines off a terminal, rich tables on one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.records import StateChange
from globtim_hpc.workflows.monitor import RunView, TaskView

if TYPE_CHECKING:
    from rich.console import RenderableType

MAX_TASK_ROWS = 40  # beyond this, --json lists every task
MAX_CHANGE_LINES = 12  # groups, in the live view
STATE_STYLES = {
    JobState.COMPLETED: "green",
    JobState.RUNNING: "cyan",
    JobState.PENDING: "yellow",
    JobState.COMPLETING: "cyan",
    JobState.UNKNOWN: "magenta",
}
COLUMNS = ("task", "state", "reason", "node", "elapsed / limit", "exit")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def format_exit(status: TaskStatus) -> str:
    if status.signal:
        return f"signal {status.signal}" + (f" ({status.exit_code})" if status.exit_code else "")
    return "-" if status.exit_code is None else str(status.exit_code)


NEVER_STARTS_TEXT = (
    "a job it waits on (a run given with --after, or its deployment's verification) did "
    "not complete, so it will never start; cancel it (--cancel) and submit again"
)


def reason_text(status: TaskStatus) -> str:
    from globtim_hpc.workflows.taskstate import never_starts

    if never_starts(status):
        return f"{status.reason}: {NEVER_STARTS_TEXT}"
    return status.reason or ""


def task_row(task: TaskView) -> tuple[str, ...]:
    status = task.status
    limit = format_duration(status.time_limit_s) if status.time_limit_s is not None else "-"
    return (
        f"{status.task_index} ({task.task_id})",
        status.state.value,
        reason_text(status),
        status.node or "",
        f"{format_duration(status.elapsed_s)} / {limit}",
        format_exit(status),
    )


def shown_tasks(view: RunView) -> tuple[list[TaskView], int]:
    """Rows worth a line: every task of a single job; the non-completed ones of an array."""
    if len(view.tasks) <= 1:
        return list(view.tasks), 0
    rows = [t for t in view.tasks if t.status.state is not JobState.COMPLETED]
    return rows[:MAX_TASK_ROWS], max(0, len(rows) - MAX_TASK_ROWS)


def counts_text(view: RunView) -> str:
    counts = Counter(t.status.state.value for t in view.tasks)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def run_title(view: RunView) -> str:
    job = view.job_id or "-"
    return (
        f"run {view.run.run_id}  job {job}  on {view.run.cluster} ({view.run.scheduler})  "
        f"{len(view.tasks)} task(s): {counts_text(view)}"
    )


def change_lines(changes: Sequence[StateChange]) -> list[str]:
    """One line per (run, before, after): ``RUN: tasks 0-11, 14: PENDING -> COMPLETED (at)``."""
    from globtim_hpc.workflows.monitor.changes import group_changes

    return [
        f"{g.run_id}: {g.tasks_text}: {g.old_state or '-'} -> {g.new_state} ({g.last_at})"
        for g in group_changes(changes)
    ]


def plain_lines(
    views: Sequence[RunView], changes: Sequence[StateChange], notes: Sequence[str]
) -> list[str]:
    lines: list[str] = []
    for view in views:
        lines.append(run_title(view))
        rows, hidden = shown_tasks(view)
        if rows:
            table = [COLUMNS, *[task_row(t) for t in rows]]
            widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
            for row in table:
                lines.append(
                    "  "
                    + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                )
        if hidden:
            lines.append(f"  ... and {hidden} more task(s) not completed (--json lists them all)")
    for note in notes:
        lines.append(f"note: {note}")
    if changes:
        lines.append("changed since last look:")
        lines.extend(f"  {line}" for line in change_lines(changes))
    return lines


def rich_view(
    views: Sequence[RunView],
    changes: Sequence[StateChange],
    notes: Sequence[str],
    *,
    footer: str | None = None,
) -> RenderableType:
    from rich.console import Group
    from rich.markup import escape
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    for view in views:
        parts.append(Text(run_title(view), style="bold"))
        if len(view.tasks) > 1:
            done = sum(1 for t in view.tasks if t.status.state.is_final)
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=len(view.tasks), completed=done, width=50),
                Text(f"{done}/{len(view.tasks)} final"),
            )
            parts.append(bar)
        rows, hidden = shown_tasks(view)
        if rows:
            table = Table(show_edge=False, pad_edge=False)
            for column in COLUMNS:
                table.add_column(column)
            for task in rows:
                cells = list(task_row(task))
                style = STATE_STYLES.get(task.status.state, "red")
                cells[1] = f"[{style}]{cells[1]}[/{style}]"
                table.add_row(*[cells[0], cells[1], *(escape(c) for c in cells[2:])])
            parts.append(table)
        if hidden:
            parts.append(
                Text(f"... and {hidden} more task(s) not completed (--json lists them all)")
            )
    for note in notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    if changes:
        parts.append(Text("changed since last look:"))
        parts.extend(Text(f"  {line}") for line in change_lines(changes)[-MAX_CHANGE_LINES:])
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)
