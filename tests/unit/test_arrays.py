"""Big sweeps: splitting at the array limit, the cluster's limits, and parts read back."""

from __future__ import annotations

import pytest

from globtim_hpc.errors import PreflightError
from globtim_hpc.jobs.arrays import ArrayPart, parts_from_dicts, split_indices
from globtim_hpc.scheduler import slurm_commands as sc
from globtim_hpc.scheduler.base import SubmitRequest, TrackedJob
from globtim_hpc.scheduler.slurm import cancel_target
from globtim_hpc.workflows.limits import ArrayLimits, check_sweep_size


def test_a_sweep_within_the_limit_stays_one_job_at_offset_0() -> None:
    assert split_indices(range(10), 10) == [ArrayPart(0, 0, tuple(range(10)))]
    assert split_indices([3, 7], None) == [ArrayPart(0, 0, (3, 7))]


def test_35_tasks_at_limit_10_become_4_parts_each_array_0_to_k() -> None:
    parts = split_indices(range(35), 10)
    assert [(p.part, p.offset, len(p.indices)) for p in parts] == [
        (0, 0, 10), (1, 10, 10), (2, 20, 10), (3, 30, 5),
    ]  # fmt: skip
    assert [p.array_spec(4) for p in parts] == ["0-9%4", "0-9%4", "0-9%4", "0-4%4"]
    assert parts_from_dicts([p.to_dict() for p in parts]) == parts


def test_a_rerun_past_the_limit_keeps_low_indices_as_they_are_and_offsets_the_rest() -> None:
    parts = split_indices([2, 3, 12, 13, 31, 40], 10)
    assert [(p.offset, p.indices) for p in parts] == [(0, (2, 3)), (12, (12, 13)), (31, (31, 40))]
    assert [p.array_spec(None) for p in parts] == ["2-3", "0-1", "0,9"]
    # Every later part's offset is above its array indices: a renamed log never meets another.
    for part in parts[1:]:
        assert part.offset >= 10 > max(part.array_indices)


def test_scontrol_show_config_gives_both_limits() -> None:
    text = "Configuration data as of 2026-12-02T10:00:00\nMaxArraySize            = 1001\n"
    text += "MaxJobCount             = 10000\nMaxStepCount            = 40000\n"
    assert sc.parse_config_limits(text) == (1001, 10000)
    assert sc.parse_config_limits("nothing here") == (None, None)


def test_the_cluster_refuses_more_tasks_than_it_holds_and_warns_about_parts() -> None:
    limits = ArrayLimits(max_array_size=10, cluster_max_array_size=1001, max_job_count=100)
    (warning,) = check_sweep_size(35, limits, "falcon")
    assert "4 array jobs" in warning
    with pytest.raises(PreflightError, match="MaxJobCount"):
        check_sweep_size(101, limits, "falcon")
    huge = ArrayLimits(max_array_size=1001, cluster_max_array_size=1001, max_job_count=None)
    assert any("very large" in w for w in check_sweep_size(20_000, huge, "falcon"))


def test_a_part_is_submitted_with_its_array_name_and_offset_and_cancelled_by_array_index() -> None:
    from globtim_hpc.scheduler.slurm import SlurmScheduler

    request = SubmitRequest(
        run_id="r.p2", run_dir="/d", script_path="/d/job.sbatch", task_count=35,
        max_parallel=1, time_limit_s=60, cpus=1, array="0-9%4", task_offset=20,
    )  # fmt: skip
    argv = SlurmScheduler.submit_argv(SlurmScheduler.__new__(SlurmScheduler), request)
    assert "--array=0-9%4" in argv and "--job-name=r.p2" in argv
    assert "--export=ALL,GLOBTIM_HPC_TASK_OFFSET=20" in argv
    job = TrackedJob("r", "77", "/d", tuple(f"{i:04d}" for i in range(35)),
                     task_indices=tuple(range(20, 30)), task_offset=20)  # fmt: skip
    assert cancel_target(job, [21, 22, 25]) == "77_[1-2,5]"
    assert cancel_target(job, list(range(20, 30))) == "77"
