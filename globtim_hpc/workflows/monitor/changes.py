""""Changed since last look", grouped: tasks that went the same way share one line.

A task that changed several times since the last look counts once, from the state it had then
to the state it has now (PENDING -> RUNNING -> COMPLETED reads PENDING -> COMPLETED); a task
back where it started is left out. Tasks with the same (run, before, after) form one group, so
a 1,000-task array that finished prints one line, not a thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from globtim_hpc.indices import compress_indices
from globtim_hpc.registry.records import StateChange


@dataclass(frozen=True)
class ChangeGroup:
    run_id: str
    old_state: str | None  # None: the task had no state before (just recorded)
    new_state: str
    task_indices: tuple[int, ...]
    last_at: str  # when the latest change of the group was recorded

    @property
    def tasks_text(self) -> str:
        """``task 3`` or ``tasks 0-11, 14``."""
        word = "task" if len(self.task_indices) == 1 else "tasks"
        return f"{word} {compress_indices(self.task_indices, separator=', ')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "old_state": self.old_state,
            "new_state": self.new_state,
            "task_indices": list(self.task_indices),
            "tasks": compress_indices(self.task_indices),
            "last_at": self.last_at,
        }


def group_changes(changes: Sequence[StateChange]) -> list[ChangeGroup]:
    """Net change per task, then one group per (run, before, after), in order of first change."""
    net: dict[tuple[str, int], tuple[str | None, str, str]] = {}
    for change in sorted(changes, key=lambda c: c.id):
        key = (change.run_id, change.task_index)
        first_old = net[key][0] if key in net else change.old_state
        net[key] = (first_old, change.new_state, change.at)
    groups: dict[tuple[str, str | None, str], tuple[list[int], str]] = {}
    for (run_id, index), (old, new, at) in net.items():
        if old == new:
            continue
        indices, last = groups.setdefault((run_id, old, new), ([], at))
        indices.append(index)
        groups[(run_id, old, new)] = (indices, max(last, at))
    return [
        ChangeGroup(run_id, old, new, tuple(sorted(indices)), last)
        for (run_id, old, new), (indices, last) in groups.items()
    ]
