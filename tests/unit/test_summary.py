"""metadata.json (validated against its schema) and summary.md; the task states they show.

The last tests run a whole collection on this machine (LocalTransport), so that the metadata
checked here is the one the workflow really writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from globtim_hpc.jobs.statusfile import parse_status
from globtim_hpc.layout import new_run_id
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.summary import (
    CodeVersion,
    TaskRecord,
    build_metadata,
    code_version,
    render_summary,
)
from globtim_hpc.scheduler.direct import DirectScheduler
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.workflows.collect import CollectOptions, collect_run
from globtim_hpc.workflows.taskstate import decide, outputs_final

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((REPO / "schemas" / "metadata.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def status_dict(index: int, state: str, exit_code: int | None, signal: str | None = None) -> dict[str, Any]:
    return {
        "schema": "globtim-hpc/status/1", "run_id": "r", "task_id": f"{index:04d}",
        "task_index": index, "job_id": f"7_{index}", "array_job_id": "7", "host": "falcon",
        "started_at": "2026-11-29T10:00:00Z",
        "ended_at": None if state == "RUNNING" else "2026-11-29T10:02:05Z",
        "exit_code": exit_code, "signal": signal, "state": state, "julia_version": "1.11.2",
    }


def sample_metadata() -> dict[str, Any]:
    tasks = [
        TaskRecord(0, "0000", "COMPLETED", True, True, params={"function": "Sphere", "degree": 4},
                   status_file=status_dict(0, "EXITED", 0),
                   scheduler=TaskStatus(0, JobState.COMPLETED, exit_code=0, max_rss_kb=214260,
                                        total_cpu_s=12.5, node="falcon", sources=["sacct"]),
                   results={"status": "COMPLETED", "l2_error": 1.5e-4, "n_critical_points": 9,
                            "n_minima": 1, "best_value": -2.0, "extra": "ignored"},
                   log_path="logs/slurm-7_0.out"),
        TaskRecord(1, "0001", "FAILED", True, True, params={"function": "Ro|senbrock", "degree": 6},
                   status_file=status_dict(1, "EXITED", 3),
                   results={"status": "FAILED", "l2_error": "NaN", "n_critical_points": -1,
                            "n_minima": True, "best_value": None},
                   log_path="logs/slurm-7_1.out",
                   log_tail=["ERROR: LoadError", "``` a fence inside the log", "exit 3"]),
        TaskRecord(2, "0002", "RUNNING", False, False, params={"degree": 8},
                   status_file=status_dict(2, "RUNNING", None)),
    ]
    return build_metadata(
        run_id="4d_benchmark_20261129-100000_0123abcd", problem="4d_benchmark", cluster="testbed",
        scheduler="slurm", job_id="7", remote_dir="/projects/globtim/hpc/runs/x", config_hash="c",
        submission={"user": "ada", "deploy_id": "d-1"}, submitted_at="2026-11-29T09:59:00+00:00",
        version=CodeVersion("d-1", "0123456789abcdef", True), tasks=tasks,
        entries=[ManifestEntry("job.sbatch", 12, SHA), ManifestEntry("output/0000/results.json", 99, SHA)],
        manifest_sha256=SHA, tool_version="0.1.0", collected_at="2026-11-29T11:00:00+00:00",
        notes=["sacct: accounting storage is disabled"],
    )


def test_metadata_validates_and_carries_what_a_reader_needs() -> None:
    metadata = sample_metadata()
    validator().validate(metadata)
    assert metadata["gitcommit"] == "0123456789abcdef-dirty"
    assert metadata["complete"] is False and metadata["finished_task_count"] == 2
    done, failed, running = metadata["tasks"]
    assert done["resources"]["max_rss_kb"] == 214260 and done["resources_note"] is None
    assert done["timing"]["elapsed_s"] == 125.0
    assert done["results"] == {"status": "COMPLETED", "l2_error": 1.5e-4, "n_critical_points": 9,
                               "n_minima": 1, "best_value": -2.0}
    assert failed["resources"] is None and "no scheduler data" in failed["resources_note"]
    # wrong types in a results.json become null, never a crash or a lie
    assert failed["results"] == {"status": "FAILED", "l2_error": None, "n_critical_points": None,
                                 "n_minima": None, "best_value": None}
    assert running["timing"]["ended_at"] is None and running["collected"] is False


def test_schema_rejects_what_it_should() -> None:
    metadata = sample_metadata()
    metadata["files"][0]["sha256"] = "not-a-hash"
    metadata["tasks"][0]["state"] = "DONE"
    del metadata["gitcommit"]
    errors = list(validator().iter_errors(metadata))
    assert len(errors) >= 3


def test_summary_reads_well() -> None:
    text = render_summary(sample_metadata(), {"0001": ["ERROR: LoadError", "``` x", "exit 3"]})
    assert text.startswith("# Run `4d_benchmark_20261129-100000_0123abcd`")
    assert "deploy `d-1`, git `0123456789abcdef`, with local changes (dirty)" in text
    assert "| 0000 | function=Sphere, degree=4 | COMPLETED | 0 | 2:05 | 209.2 MiB | 0.00015 | 9 | 1 | -2 |" in text
    assert "function=Ro\\|senbrock" in text  # a pipe in a value does not break the table
    assert "### Task 0001: FAILED (exit code 3)" in text
    assert "````text\nERROR: LoadError\n``` x\nexit 3\n````" in text  # fence longer than the log's
    assert "## Not finished yet\n\n- task 0002: RUNNING" in text
    assert "- sacct: accounting storage is disabled" in text
    assert "partial: 2 of 3 tasks finished" in text


def test_code_version_from_submission() -> None:
    version = code_version({"deploy_id": "d9", "git_sha": "feed", "code_dirty": False}, None, None)
    assert (version.deploy_id, version.gitcommit, version.git_dirty) == ("d9", "feed", False)
    assert code_version(None, "d1", None).gitcommit is None


@pytest.mark.parametrize(
    ("file_state", "exit_code", "signal", "sched", "expected"),
    [
        ("EXITED", 0, None, None, (JobState.COMPLETED, True)),
        ("EXITED", 3, None, None, (JobState.FAILED, True)),
        # SIGTERM with no time limit known: cancel or limit cannot be told; the files are final
        ("SIGNALLED", None, "TERM", None, (JobState.UNKNOWN, True)),
        ("SIGNALLED", None, "TERM", JobState.TIMEOUT, (JobState.TIMEOUT, True)),
        ("EXITED", 2, None, JobState.COMPLETED, (JobState.FAILED, True)),  # never success on doubt
        ("RUNNING", None, None, None, (JobState.RUNNING, False)),
        ("RUNNING", None, None, JobState.RUNNING, (JobState.RUNNING, False)),
        ("RUNNING", None, None, JobState.CANCELLED, (JobState.CANCELLED, True)),
        (None, None, None, JobState.PENDING, (JobState.PENDING, False)),
        (None, None, None, None, (JobState.PENDING, False)),  # from the registry
    ],
)
def test_task_state(
    file_state: str | None, exit_code: int | None, signal: str | None,
    sched: JobState | None, expected: tuple[JobState, bool],
) -> None:
    """What collect sees: one decision per task, the scheduler asked when it had a view."""
    status = parse_status(json.dumps(status_dict(0, file_state, exit_code, signal))) if file_state else None
    view = TaskStatus(0, sched, sources=["sacct"]) if sched else None
    task = decide(0, previous=TaskStatus(0, JobState.PENDING), scheduler=view,
                  scheduler_asked=view is not None, status_file=status)
    assert (task.state, outputs_final(task)) == expected


def test_lost_task_counts_as_finished() -> None:
    status = parse_status(json.dumps(status_dict(0, "RUNNING", None)))
    task = decide(0, previous=TaskStatus(0, JobState.RUNNING), scheduler=None,
                  scheduler_asked=True, status_file=status)
    assert (task.state, task.lost, outputs_final(task)) == (JobState.UNKNOWN, True, True)


# ---- a whole collection on this machine --------------------------------------------------------


def fabricate(root: Path, run_id: str, states: dict[str, tuple[str, int | None]]) -> Path:
    run = root / "runs" / run_id
    for sub in ("params", "status", "logs"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    tasks = [{"index": i, "task_id": tid, "params": {"degree": 4 + 2 * i}} for i, tid in enumerate(states)]
    (run / "submission.json").write_text(json.dumps(
        {"deploy_id": "d1", "git_sha": "abc123", "code_dirty": False, "user": "ada", "tasks": tasks}))
    (run / "job.sbatch").write_text("#!/bin/bash\n")
    for index, (tid, (state, code)) in enumerate(states.items()):
        (run / "params" / f"{tid}.json").write_text(json.dumps({"degree": 4 + 2 * index}))
        (run / "status" / f"{tid}.json").write_text(json.dumps(status_dict(index, state, code)))
        (run / "logs" / f"slurm-7_{index}.out").write_text("".join(f"step {k}\n" for k in range(25)))
        out = run / "output" / tid
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(
            {"status": "COMPLETED", "l2_error": 0.01, "n_critical_points": 3, "n_minima": 1, "best_value": 0.5}))
        (out / "critical_points_deg_4.csv").write_text("x1,z\n0.1,0.5\n")
    return run


def registered(store: Store, run_id: str, run_dir: Path, task_ids: list[str]) -> RunRecord:
    """A fabricated run in the registry, submitted as job 7 of the local cluster."""
    store.add_run(run_id=run_id, problem="4d_benchmark", cluster="local", scheduler="direct",
                  remote_dir=str(run_dir), task_ids=task_ids, config_hash="h",
                  deploy_id="d1", git_sha="abc123", plan={}, submission=None)
    store.record_job(run_id, "local", "7")
    run = store.get_run(run_id)
    assert run is not None
    return run


def test_local_collection_partial_then_complete(tmp_path: Path) -> None:
    remote_root = tmp_path / "remote"
    run_id = new_run_id("4d_benchmark")
    run_dir = fabricate(remote_root, run_id, {"0000": ("EXITED", 0), "0001": ("RUNNING", None)})
    with Store.open() as store:
        run = registered(store, run_id, run_dir, ["0000", "0001"])
        options = CollectOptions(results_root=tmp_path / "results", fsync=False)

        def collect() -> Any:
            # A fabricated run has no runner to ask: the status files decide.
            return collect_run(run, store=store, scheduler=DirectScheduler(LocalTransport()),
                               remote_root=str(remote_root), options=options, ask_scheduler=False)

        first = collect()
        target = Path(first.local_dir)
        assert not first.complete and first.unfinished_tasks == [{"task_id": "0001", "state": "RUNNING"}]
        assert (target / "output" / "0000" / "results.json").is_file()
        assert not (target / "output" / "0001").exists()
        assert not (target / "logs" / "slurm-7_1.out").exists()
        metadata = json.loads((target / "metadata.json").read_text())
        validator().validate(metadata)
        assert "## Not finished yet" in (target / "summary.md").read_text()

        again = collect()
        assert (again.content_bytes_received, again.stream_bytes_received) == (0, 0)

        (run_dir / "status" / "0001.json").write_text(json.dumps(status_dict(1, "EXITED", 4)))
        (target / "my-notes.txt").write_text("kept")  # a file the user put there
        final = collect()
        assert final.complete and final.failed_tasks == [{"task_id": "0001", "state": "FAILED"}]
        assert final.files_fetched == 4  # 0001's status, log, results.json, csv
        assert final.files_reused == first.file_count
        assert (target / "my-notes.txt").read_text() == "kept"
        summary = (target / "summary.md").read_text()
        assert "### Task 0001: FAILED (exit code 4)" in summary and "step 24" in summary
        assert [c["complete"] for c in store.collections(run_id)] == [0, 0, 1]
        assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # nothing hidden left


def test_split_params_separates_sweep_axes_from_shared_values() -> None:
    from globtim_hpc.results.summary import split_params

    tasks = [
        {"params": {"problem": "p", "task_id": "0000", "function": "Sphere", "degree": 4, "dim": 4}},
        {"params": {"problem": "p", "task_id": "0001", "function": "Sphere", "degree": 6, "dim": 4}},
    ]
    shared, varying = split_params(tasks)
    assert varying == ["degree"]
    assert shared == {"function": "Sphere", "dim": 4}


def test_metadata_json_lists_one_file_per_line_and_reads_back_the_same() -> None:
    from globtim_hpc.workflows.collect.describe import metadata_json

    files = [{"path": name, "bytes": 3, "sha256": "ab" * 32}
             for name in ("a.csv", 'odd "q" \\ name\n', "ünï.json", "files-0000")]
    metadata = {"schema": "s", "tasks": [{"task_id": "0000", "params": {"files": "x"}}],
                "files": files, "file_count": 4, "notes": ["files"]}
    text = metadata_json(metadata)
    assert json.loads(text) == metadata
    assert list(json.loads(text)) == list(metadata)  # the keys keep their order
    assert text == json.dumps(dict(metadata, files=[]), indent=2, ensure_ascii=False).replace(
        '"files": []', '"files": [\n    ' + ",\n    ".join(
            json.dumps(f, ensure_ascii=False) for f in files) + "\n  ]") + "\n"
    assert metadata_json({"files": []}) == '{\n  "files": []\n}\n'
