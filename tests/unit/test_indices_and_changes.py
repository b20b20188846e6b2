"""Index lists (``0-3,7``) and "changed since last look" grouped by transition."""

from __future__ import annotations

import pytest

from globtim_hpc.cli.monitor_view import change_lines
from globtim_hpc.errors import UsageError
from globtim_hpc.indices import compress_indices, parse_index_list
from globtim_hpc.registry.records import StateChange
from globtim_hpc.workflows.monitor.changes import group_changes


def test_parse_and_compress_are_inverse() -> None:
    assert parse_index_list("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_index_list(" 7, 0-3 ,2") == [0, 1, 2, 3, 7]
    assert compress_indices([7, 3, 2, 1, 0, 9, 10]) == "0-3,7,9-10"
    assert compress_indices([5]) == "5"
    assert compress_indices([0, 1, 14], separator=", ") == "0-1, 14"


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "1,,2", "-2"])
def test_unreadable_lists_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_index_list(text)


def test_an_index_past_the_run_is_named() -> None:
    with pytest.raises(UsageError) as caught:
        parse_index_list("0-3,12,13", task_count=12)
    assert "no task 12-13" in caught.value.message and "12 task(s)" in caught.value.message
    assert "0 to 11" in (caught.value.hint or "")


def _change(n: int, index: int, old: str | None, new: str, run_id: str = "r1") -> StateChange:
    return StateChange(n, run_id, index, old, new, f"2026-12-02T10:00:{n % 60:02d}+00:00")


def test_a_thousand_tasks_that_finished_alike_are_one_line() -> None:
    changes = [_change(i + 1, i, "PENDING", "COMPLETED") for i in range(1000)]
    lines = change_lines(changes)
    latest = max(c.at for c in changes)
    assert lines == [f"r1: tasks 0-999: PENDING -> COMPLETED ({latest})"]


def test_groups_by_net_transition_per_task() -> None:
    changes = []
    n = 0
    for index in [*range(12), 14]:  # PENDING -> RUNNING -> COMPLETED: net PENDING -> COMPLETED
        n += 1
        changes.append(_change(n, index, "PENDING", "RUNNING"))
    for index in [*range(12), 14]:
        n += 1
        changes.append(_change(n, index, "RUNNING", "COMPLETED"))
    n += 1
    changes.append(_change(n, 12, "PENDING", "RUNNING"))
    n += 1
    changes.append(_change(n, 13, "PENDING", "FAILED"))
    n += 1
    changes.append(_change(n, 0, "NEW", "PENDING", run_id="r2"))
    groups = group_changes(changes)
    shown = [(g.run_id, g.tasks_text, g.old_state, g.new_state) for g in groups]
    assert shown == [
        ("r1", "tasks 0-11, 14", "PENDING", "COMPLETED"),
        ("r1", "task 12", "PENDING", "RUNNING"),
        ("r1", "task 13", "PENDING", "FAILED"),
        ("r2", "task 0", "NEW", "PENDING"),
    ]
    assert groups[0].to_dict()["tasks"] == "0-11,14"


def test_a_task_back_where_it_was_is_not_a_change() -> None:
    changes = [_change(1, 0, "RUNNING", "PENDING"), _change(2, 0, "PENDING", "RUNNING")]
    assert group_changes(changes) == []
