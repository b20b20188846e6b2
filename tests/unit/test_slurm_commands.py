"""The SLURM argv builders and parsers, against outputs seen on the test bed (testbed-notes.md)."""

from __future__ import annotations

import pytest

from globtim_hpc.errors import SchedulerError
from globtim_hpc.models import JobState
from globtim_hpc.scheduler import slurm_commands as sc
from globtim_hpc.scheduler import slurm_fields as sf
from globtim_hpc.scheduler.slurm_fields import TaskKey

# sacct -P -n --format=<SACCT_FIELDS>, the rows of testbed-notes.md plus the bed's OOM job.
SACCT_BED = """\
1|COMPLETED|0:0|00:00:05|UNLIMITED||1G|1|00:01.002|falcon|2026-11-29T10:00:00|2026-11-29T10:00:05|None|hold
1.batch|COMPLETED|0:0|00:00:05||214260K||1|00:01.002|falcon|2026-11-29T10:00:00|2026-11-29T10:00:05||batch
2_0|COMPLETED|0:0|00:00:02|UNLIMITED||1G|1|00:00.002|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02|None|arr
2_0.batch|COMPLETED|0:0|00:00:02||2988K||1|00:00.002|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02||batch
2_1|COMPLETED|0:0|00:00:02|UNLIMITED||1G|1|00:00.002|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02|None|arr
2_[2-3]|PENDING|0:0|00:00:00|UNLIMITED||1G|1|00:00:00|None assigned|Unknown|Unknown|Priority|arr
3|FAILED|3:0|00:00:00|UNLIMITED||1G|1|00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:00|None|wrap
3.batch|FAILED|3:0|00:00:00|||||00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:00||batch
4|CANCELLED by 1001|0:0|00:00:00|UNLIMITED||1G|1|00:00:00|None assigned|2026-11-29T10:00:00|2026-11-29T10:00:00|None|wrap
5|TIMEOUT|0:0|00:01:18|00:01:00||1G|1|00:00.003|falcon|2026-11-29T10:00:00|2026-11-29T10:01:18|TimeLimit|slow
5.batch|CANCELLED|0:15|00:01:18||3024K||1|00:00.003|falcon|2026-11-29T10:00:00|2026-11-29T10:01:18||batch
5.extern|COMPLETED|0:0|00:01:18||1000K||1|00:00:00|falcon|2026-11-29T10:00:00|2026-11-29T10:01:18||extern
6|FAILED|0:9|00:00:02|UNLIMITED||100M|1|00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02|None|hog
6.batch|CANCELLED by 0|0:9|00:00:02||419272K||1|00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02||batch
7|FAILED|0:9|00:00:02|UNLIMITED||1G|1|00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02|None|killed
7.batch|FAILED|0:9|00:00:02||2000K||1|00:00.001|falcon|2026-11-29T10:00:00|2026-11-29T10:00:02||batch
8|OUT_OF_MEMORY|0:125|00:00:09|UNLIMITED||2Gc|2|00:00:01|falcon|2026-11-29T10:00:00|2026-11-29T10:00:09|None|cg
8.batch|OUT_OF_MEMORY|0:125|00:00:09||5000000K||2|00:00:01|falcon|2026-11-29T10:00:00|2026-11-29T10:00:09||batch
9|REVOKED|0:0|00:00:00|UNLIMITED||1G|1|00:00:00|falcon|Unknown|Unknown|None|fed
9_5|RUNNING|0:0|00:00:10|01:00:00||1G|1|00:00:00|falcon|2026-11-29T10:00:00|Unknown|None|fed
9_5.0|RUNNING|0:0|00:00:10||800000K||1|00:00:00|falcon|2026-11-29T10:00:00|Unknown||julia
"""

# squeue -h -r -t all -O <SQUEUE_FIELDS with ':|'>, as printed on the bed.
SQUEUE_BED = """\
2_4|2|4|2|COMPLETED|None|falcon|0:20|UNLIMITED|0|1G|2026-11-29T10:46:47|2026-11-29T10:47:07|probe_x|
2_2|2|2|8|RUNNING|None|falcon|0:20|1:00:00|0|1G|2026-11-29T10:46:27|2026-11-29T11:46:27|probe_x|
3|3|N/A|3|FAILED|NonZeroExitCode|falcon|0:00|UNLIMITED|768|1G|2026-11-29T10:46:47|2026-11-29T10:46:47|wrap|
4|4|N/A|4|FAILED|JobLaunchFailure|falcon|0:02|UNLIMITED|9|100M|2026-11-29T10:46:48|2026-11-29T10:46:50|wrap|
5_[3-6%2]|5|[3-6%2]|5|PENDING|Resources||0:00|UNLIMITED|0|1G|N/A|N/A|name|with|bars|
7|7|N/A|7|SPECIAL_EXIT|None|falcon|0:00|UNLIMITED|0|1G|N/A|N/A|odd|
garbage line
"""


def test_sbatch_argv_is_parsable_with_chdir_and_run_name() -> None:
    argv = sc.sbatch_argv(
        "/r/job.sbatch",
        chdir="/r",
        job_name="p_20261129-000000_abcdef12",
        comment="c",
        partition="batch",
    )
    assert argv[:3] == ["sbatch", "--parsable", "--chdir=/r"]
    assert "--job-name=p_20261129-000000_abcdef12" in argv and "--partition=batch" in argv
    assert argv[-1] == "/r/job.sbatch"
    assert "--test-only" in sc.sbatch_argv("/r/job.sbatch", chdir="/r", test_only=True)


@pytest.mark.parametrize(("stdout", "job_id"), [("123\n", "123"), ("123;falcon\n", "123")])
def test_parse_sbatch(stdout: str, job_id: str) -> None:
    assert sc.parse_sbatch(stdout) == job_id


def test_parse_sbatch_rejects_non_ids() -> None:
    with pytest.raises(SchedulerError):
        sc.parse_sbatch("Submitted batch job 12\n")
    with pytest.raises(SchedulerError) as info:
        sc.parse_sbatch("")
    assert info.value.transient


def test_sbatch_errors_have_hints() -> None:
    partition = sc.parse_sbatch_error(
        "sbatch: error: invalid partition specified: nosuchpart\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert (
        "nosuchpart" in partition.message and partition.hint and "sinfo -h -o %P" in partition.hint
    )
    assert not partition.transient
    memory = sc.parse_sbatch_error(
        "sbatch: error: Memory specification can not be satisfied\n"
        "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
    )
    assert "memory" in memory.message and memory.hint and "mem_gb" in memory.hint
    limit = sc.parse_sbatch_error(
        "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)\n"
    )
    assert "time limit" in limit.message and limit.hint and "time_min" in limit.hint
    for text in (
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
    ):
        assert sc.parse_sbatch_error(text).transient
    assert sc.parse_sbatch_error("sbatch: error: something new").exit_code == 5


def test_squeue_argv_is_one_call_for_all_jobs() -> None:
    argv = sc.squeue_argv(["12", "3", "12", "100"])
    assert argv[:6] == ["squeue", "-h", "-r", "-t", "all", "-j"]
    assert argv[6] == "3,12,100"
    assert argv[-1].endswith("Name:|")


def test_parse_squeue_bed_lines() -> None:
    parsed = sc.parse_squeue(SQUEUE_BED)
    tasks = parsed.tasks
    assert tasks[TaskKey("2", 4)].state is JobState.COMPLETED
    assert tasks[TaskKey("2", 4)].exit_code == 0
    running = tasks[TaskKey("2", 2)]
    assert (running.state, running.node, running.elapsed_s, running.time_limit_s) == (
        JobState.RUNNING,
        "falcon",
        20.0,
        3600.0,
    )
    assert running.ended_at is None and running.exit_code is None
    failed = tasks[TaskKey("3", 0)]
    assert (failed.state, failed.exit_code, failed.signal) == (JobState.FAILED, 3, None)
    killed = tasks[TaskKey("4", 0)]
    assert (killed.state, killed.exit_code, killed.signal) == (JobState.FAILED, None, 9)
    # A pending range without -r: every index gets a line; a name with '|' survives.
    for index in range(3, 7):
        pending = tasks[TaskKey("5", index)]
        assert pending.state is JobState.PENDING and pending.reason == "Resources"
    assert tasks[TaskKey("7", 0)].state is JobState.UNKNOWN
    assert parsed.unparsed == ["garbage line"]


def test_sacct_argv_steps_included_and_window() -> None:
    argv = sc.sacct_argv(["5", "2"], since="2026-11-28T10:00:00")
    assert "-X" not in argv
    assert argv[argv.index("-j") + 1] == "2,5"
    assert argv[argv.index("-S") + 1] == "2026-11-28T10:00:00"
    assert any(a.startswith("--format=JobID,State,ExitCode") and "MaxRSS" in a for a in argv)


def test_parse_sacct_bed_rows() -> None:
    parsed = sc.parse_sacct(SACCT_BED)
    tasks = parsed.tasks
    assert parsed.unparsed == []
    done = tasks[TaskKey("1", 0)]
    assert (done.state, done.exit_code, done.max_rss_kb, done.elapsed_s) == (
        JobState.COMPLETED,
        0,
        214260,
        5.0,
    )
    assert tasks[TaskKey("2", 0)].max_rss_kb == 2988
    assert tasks[TaskKey("2", 1)].state is JobState.COMPLETED
    assert tasks[TaskKey("2", 2)].state is JobState.PENDING
    assert tasks[TaskKey("2", 3)].reason == "Priority"
    failed = tasks[TaskKey("3", 0)]
    assert (failed.state, failed.exit_code, failed.signal) == (JobState.FAILED, 3, None)
    cancelled = tasks[TaskKey("4", 0)]
    assert cancelled.state is JobState.CANCELLED and cancelled.reason == "cancelled by uid 1001"
    assert cancelled.node is None
    timeout = tasks[TaskKey("5", 0)]
    assert (timeout.state, timeout.signal, timeout.time_limit_s, timeout.max_rss_kb) == (
        JobState.TIMEOUT,
        15,
        60.0,
        3024,
    )


def test_oom_inferred_only_with_rss_over_request() -> None:
    tasks = sc.parse_sacct(SACCT_BED).tasks
    hog = tasks[TaskKey("6", 0)]
    assert hog.state is JobState.OUT_OF_MEMORY
    assert hog.scheduler_state == "FAILED" and "inferred" in (hog.reason or "")
    # Killed by signal 9 but well inside its memory: a failure, not an invented OOM.
    killed = tasks[TaskKey("7", 0)]
    assert (killed.state, killed.signal) == (JobState.FAILED, 9)
    # sacct's own OUT_OF_MEMORY, per-CPU request (2Gc x 2 CPUs).
    assert tasks[TaskKey("8", 0)].state is JobState.OUT_OF_MEMORY
    assert sc.requested_memory_kb("2Gc", "2") == 4 * 1024 * 1024


def test_unknown_states_never_succeed() -> None:
    tasks = sc.parse_sacct(SACCT_BED).tasks
    revoked = tasks[TaskKey("9", 0)]
    assert revoked.state is JobState.UNKNOWN and "REVOKED" in (revoked.reason or "")
    # An array task and its srun step: MaxRSS comes from the step.
    assert tasks[TaskKey("9", 5)].max_rss_kb == 800000


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("12", [("12", 0)]),
        ("12_3", [("12", 3)]),
        ("12_[4-6]", [("12", 4), ("12", 5), ("12", 6)]),
        ("12_[1,3,5-6%2]", [("12", 1), ("12", 3), ("12", 5), ("12", 6)]),
        ("12+0", None),
        ("abc", None),
    ],
)
def test_parse_job_ref(ref: str, expected: list[tuple[str, int]] | None) -> None:
    keys = sf.parse_job_ref(ref)
    assert (None if keys is None else [(k.job_id, k.task_index) for k in keys]) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:01:18", 78.0),
        ("1:00", 60.0),
        ("2-01:00:00", 176400.0),
        ("00:00.002", 0.002),
        ("UNLIMITED", None),
        ("365-00:00:00", 31536000.0),
        ("INVALID", None),
        ("", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert sf.parse_duration_s(text) == seconds


def test_exit_code_forms() -> None:
    assert sf.split_exit_code("3:0") == (3, None)
    assert sf.split_exit_code("0:15") == (0, 15)
    assert sf.split_exit_code("") == (None, None)
    assert sf.split_wait_status("768") == (3, None)
    assert sf.split_wait_status("9") == (None, 9)
    assert sf.split_wait_status("N/A") == (None, None)


def test_accounting_unavailable_messages() -> None:
    assert "disabled" in (sc.accounting_unavailable("Slurm accounting storage is disabled\n") or "")
    refused = (
        "sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection to "
        "host:falcon:6819: Connection refused\n"
        "sacct: error: Sending PersistInit msg: Connection refused\n"
        "sacct: error: Problem talking to the database: Connection refused\n"
    )
    assert "slurmdbd" in (sc.accounting_unavailable(refused) or "")
    assert sc.accounting_unavailable("sacct: error: Invalid field requested") is None


def test_by_name_parsers_and_unknown_ids() -> None:
    assert sc.squeue_by_name_argv("r_1")[sc.squeue_by_name_argv("r_1").index("-n") + 1] == "r_1"
    assert sc.parse_squeue_by_name("5|5|RUNNING|r|\n5|6|PENDING|r|\n9|9|PENDING|r|\n") == ["5", "9"]
    assert sc.parse_sacct_by_name("5_0|r|COMPLETED\n5_1|r|COMPLETED\n") == ["5"]
    assert sc.squeue_unknown_ids("slurm_load_jobs error: Invalid job id specified\n")
