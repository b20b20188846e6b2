"""The doctor's reading of the login node's tools."""

from __future__ import annotations

from globtim_hpc.workflows.doctor_report import tool_problems

GOOD = "bash=5.2\nsha256sum=ok\ntar=gnu\n"


def test_a_modern_login_node_has_no_problems() -> None:
    assert tool_problems(GOOD, needs_bash_4_3=True) == []


def test_old_bash_is_flagged_where_the_direct_runner_needs_4_3() -> None:
    old = GOOD.replace("bash=5.2", "bash=4.2")
    assert tool_problems(old, needs_bash_4_3=False) == []
    [problem] = tool_problems(old, needs_bash_4_3=True)
    assert "bash 4.2" in problem and "4.3" in problem


def test_missing_tools_are_each_named() -> None:
    problems = tool_problems("bash=\nsha256sum=old\ntar=other\n", needs_bash_4_3=False)
    assert len(problems) == 3
    assert "bash not found" in problems[0]
    assert "--zero" in problems[1] and "GNU tar" in problems[2]
