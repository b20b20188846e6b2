"""The retry policy: validated with clear errors, and which settled failures it retries."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError
from globtim_hpc.jobs.plan import build_plan, plan_from_dict
from globtim_hpc.jobs.retry import RetryPolicy
from globtim_hpc.models import JobState, RunPhase, TaskStatus
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.workflows.monitor import RunView, TaskView
from globtim_hpc.workflows.retry import due_retries, retry_request

GOOD = "resources:\n  retry: {on: [OUT_OF_MEMORY, TIMEOUT], max: 2, mem_factor: 2, time_factor: 1.5}\n"


def _plan(tmp_path: Path, text: str):
    config = tmp_path / "c.yaml"
    config.write_text("parameters:\n  degree: 4\n" + text)
    return build_plan("4d_benchmark", config)


def test_a_retry_policy_is_read_and_kept_with_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, GOOD)
    assert plan.resources.retry == RetryPolicy(("OUT_OF_MEMORY", "TIMEOUT"), 2, 2.0, 1.5)
    assert plan_from_dict(plan.to_dict()) == plan
    assert "retry" not in _plan(tmp_path, "").resources.to_dict()  # old hashes unchanged


@pytest.mark.parametrize(
    "text,words",
    [
        ("resources:\n  retry: {on: [OOM], max: 2}\n", "'OOM' is not a failure"),
        ("resources:\n  retry: {on: [TIMEOUT]}\n", "needs 'max'"),
        ("resources:\n  retry: {on: [TIMEOUT], max: 2, mem_factor: 0.5}\n", "out of range"),
        ("resources:\n  retry: {on: [TIMEOUT], max: 2, tries: 3}\n", "tries"),
        ("resources:\n  retry: {max: 2}\n", "needs 'on'"),
    ],
)
def test_a_bad_retry_policy_says_what_and_where(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _plan(tmp_path, text)
    assert words in err.value.message and "c.yaml" in str(err.value)


def _view(*tasks: TaskStatus) -> RunView:
    run = RunRecord("x_20260101-000000_abcdef01", "x", "c", "slurm", "/r", RunPhase.SUBMITTED,
                    len(tasks), "h", None, None, {"resources": {}}, None, "t", "t", None, "7")  # fmt: skip
    return RunView(run, [TaskView(f"{t.task_index:04d}", t) for t in tasks])


def test_only_settled_named_failures_under_the_limit_are_due() -> None:
    policy = RetryPolicy(("OUT_OF_MEMORY", "TIMEOUT"), 2, 2.0, 1.5)
    view = _view(
        TaskStatus(0, JobState.OUT_OF_MEMORY),
        TaskStatus(1, JobState.FAILED),
        TaskStatus(2, JobState.TIMEOUT, attempt=3),  # had its 2 retries
        # Final in squeue, its accounting record (MaxRSS) still awaited: not settled yet.
        TaskStatus(3, JobState.OUT_OF_MEMORY, awaiting_accounting=True,
                   awaiting_since=datetime.now(timezone.utc).isoformat()),
        TaskStatus(4, JobState.TIMEOUT, attempt=2),
    )
    due = due_retries(view, policy)
    assert due == {"OUT_OF_MEMORY": [0], "TIMEOUT": [4]}
    request = retry_request("OUT_OF_MEMORY", [0], policy, 1)
    assert request.mem_factor == 2.0 and request.time_factor is None and request.only == "0"
    assert request.cause == "retry policy: OUT_OF_MEMORY, retry 1 of 2"
    later = retry_request("TIMEOUT", [4], policy, 2)
    assert later.time_factor == 1.5 and later.mem_factor is None
