"""Attempts: the latest attempt wins (taskstate rule 8), a rerun's job reports only its tasks,
and the rerun's choice of tasks and resources."""

from __future__ import annotations

from dataclasses import replace

import pytest

from globtim_hpc.errors import UsageError
from globtim_hpc.indices import compress_indices
from globtim_hpc.jobs.render import indices_spec
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.scheduler.base import TrackedJob
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.workflows.rerun import (
    RerunRequest,
    attempt_resources,
    parse_task_list,
    select_tasks,
)
from globtim_hpc.workflows.taskstate import decide
from tests.unit.test_taskstate import (
    RUN_DIR,
    RUN_ID,
    ScriptedTransport,
    result,
    squeue_line,
    status,
)


def test_an_earlier_attempts_status_file_is_no_word_on_the_new_attempt() -> None:
    old = status("EXITED", exit_code=3)  # attempt 1 failed; the rerun's job is queued
    fresh = TaskStatus(0, JobState.PENDING, attempt=2)
    task = decide(0, previous=fresh, scheduler=None, scheduler_asked=False, status_file=old,
                  attempt=2)  # fmt: skip
    assert task.state is JobState.PENDING and task.attempt == 2 and task.status_file is None
    mine = replace(status("EXITED", exit_code=0), attempt=2)
    done = decide(0, previous=fresh, scheduler=None, scheduler_asked=True, status_file=mine,
                  attempt=2)  # fmt: skip
    assert done.state is JobState.COMPLETED and done.attempt == 2


def test_an_earlier_attempts_final_state_does_not_hold_the_new_attempt() -> None:
    failed = TaskStatus(0, JobState.FAILED, attempt=1)
    live = TaskStatus(0, JobState.RUNNING, sources=["squeue"])
    task = decide(0, previous=failed, scheduler=live, scheduler_asked=True, status_file=None,
                  attempt=2)  # fmt: skip
    assert task.state is JobState.RUNNING  # rule 7 keeps only this attempt's final states


def test_a_poll_of_two_attempts_reads_each_task_from_its_latest_job() -> None:
    task_ids = tuple(f"{i:04d}" for i in range(4))
    first = TrackedJob(RUN_ID, "7", RUN_DIR, task_ids, task_indices=(0, 2))
    second = TrackedJob(RUN_ID, "20", RUN_DIR, task_ids, task_indices=(1, 3),
                        job_name=f"{RUN_ID}.a2")  # fmt: skip
    lines = [
        squeue_line("7", 0, "COMPLETED"), squeue_line("7", 1, "FAILED"),
        squeue_line("7", 2, "COMPLETED"), squeue_line("7", 3, "FAILED"),
        squeue_line("20", 1, "RUNNING", name=f"{RUN_ID}.a2"),
        squeue_line("20", 3, "PENDING", name=f"{RUN_ID}.a2"),
    ]  # fmt: skip
    transport = ScriptedTransport({"squeue": result(0, "\n".join(lines) + "\n"),
                                   "sacct": result(0, "")})  # fmt: skip
    poll = SlurmScheduler(transport).poll([first, second])
    assert poll.scheduler_calls == 2
    got = {i: s.state for i, s in poll.tasks[RUN_ID].items()}
    assert got == {0: JobState.COMPLETED, 1: JobState.RUNNING, 2: JobState.COMPLETED,
                   3: JobState.PENDING}  # fmt: skip


def test_a_job_named_for_another_attempt_is_not_this_one() -> None:
    job = TrackedJob(RUN_ID, "20", RUN_DIR, ("0000", "0001"), task_indices=(1,),
                     job_name=f"{RUN_ID}.a2")  # fmt: skip
    transport = ScriptedTransport({"squeue": result(0, squeue_line("20", 1, "RUNNING") + "\n"),
                                   "sacct": result(0, "")})  # fmt: skip
    assert SlurmScheduler(transport).poll([job]).tasks[RUN_ID] == {}


def test_index_lists_are_compressed_and_parsed_back() -> None:
    assert compress_indices([44, 3, 17, 40, 41, 42, 43, 3]) == "3,17,40-44"
    assert indices_spec([3, 17, 40, 41], 5) == "3,17,40-41%5" and indices_spec([8], 5) == "8"
    assert parse_task_list("3,17,40-44", 50) == [3, 17, 40, 41, 42, 43, 44]
    with pytest.raises(UsageError, match="no task 50"):
        parse_task_list("3,50", 50)
    with pytest.raises(UsageError, match="is not an index or a range"):
        parse_task_list("3,x", 50)


def _tasks(*states: JobState) -> dict[int, TaskStatus]:
    return {i: TaskStatus(i, state) for i, state in enumerate(states)}


def test_failed_takes_every_failure_kind_and_refuses_running_tasks() -> None:
    tasks = _tasks(JobState.COMPLETED, JobState.FAILED, JobState.OUT_OF_MEMORY, JobState.TIMEOUT,
                   JobState.NODE_FAIL, JobState.PREEMPTED, JobState.CANCELLED)  # fmt: skip
    ids = {i: f"{i:04d}" for i in tasks}
    assert list(select_tasks(tasks, ids, "failed")) == [1, 2, 3, 4, 5, 6]
    assert list(select_tasks(tasks, ids, "0,2")) == [0, 2]
    busy = {**tasks, 7: TaskStatus(7, JobState.RUNNING)}
    with pytest.raises(UsageError, match="0007 \\(RUNNING\\)"):
        select_tasks(busy, {**ids, 7: "0007"}, "6,7")
    lost = {0: TaskStatus(0, JobState.UNKNOWN, lost=True), 1: TaskStatus(1, JobState.COMPLETED)}
    assert list(select_tasks(lost, ids, "unfinished")) == [0]
    assert list(select_tasks(lost, ids, "failed")) == []


def test_more_room_scales_the_largest_current_request() -> None:
    current = [{"mem_gb": 2.0, "time_min": 10, "cpus": 1}, {"mem_gb": 4.0, "time_min": 5, "cpus": 1}]
    doubled = attempt_resources(current, RerunRequest(mem_factor=2, time_factor=1.5))
    assert doubled["mem_gb"] == 8.0 and doubled["time_min"] == 15
    fixed = attempt_resources(current, RerunRequest(mem_gb=3, time_min=7))
    assert fixed["mem_gb"] == 3.0 and fixed["time_min"] == 7
    with pytest.raises(UsageError, match="not both"):
        RerunRequest(mem_gb=1, mem_factor=2).check()
    with pytest.raises(UsageError, match="out of range"):
        RerunRequest(time_factor=0).check()
