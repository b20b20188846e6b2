"""What a collected folder says about itself: which tasks and files it holds, each task's
results and log tail, ``MANIFEST.sha256``, ``metadata.json`` and ``summary.md``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from globtim_hpc import __version__
from globtim_hpc.layout import (
    LOGS_DIR,
    OUTPUT_DIR,
    STATUS_DIR,
)
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.records import RunRecord, utc_now
from globtim_hpc.registry.store import Store
from globtim_hpc.results.attempts import attempt_entry
from globtim_hpc.results.manifest import (
    MANIFEST_NAME,
    ManifestEntry,
    local_path,
)
from globtim_hpc.results.recollect import RECORD_NAME
from globtim_hpc.results.summary import (
    LOG_TAIL_LINES,
    TaskRecord,
    build_metadata,
    code_version,
    render_summary,
)
from globtim_hpc.results.survey import Survey, SurveyEntry
from globtim_hpc.results.tables import TASKS_CSV_NAME
from globtim_hpc.workflows.collect.snapshot import Snapshot, json_object
from globtim_hpc.workflows.collect.views import is_view_path, write_views
from globtim_hpc.workflows.taskstate import outputs_final

METADATA_NAME = "metadata.json"


SUMMARY_NAME = "summary.md"


class _MadeHere(frozenset[str]):
    """Relative paths made locally at collection: these names, and the views (tasks.csv,
    plots/...). A file of such a name on the cluster is not collected over them."""

    def __contains__(self, path: object) -> bool:
        return super().__contains__(path) or (isinstance(path, str) and is_view_path(path))


GENERATED_NAMES = _MadeHere({MANIFEST_NAME, METADATA_NAME, SUMMARY_NAME, RECORD_NAME})


RESULTS_NAME = "results.json"


LOG_TAIL_READ_BYTES = 64 << 10


LOG_NAME = re.compile(r"^" + LOGS_DIR + r"/slurm-[^/]+_(\d+)\.out$")


def wanted_entries(survey: Survey, tasks: Sequence[TaskRecord], notes: list[str]) -> list[SurveyEntry]:
    unfinished = {t.task_index for t in tasks if not t.finished}
    wanted = []
    for entry in survey.files:
        if entry.path in GENERATED_NAMES:
            notes.append(f"the cluster's {entry.path} was not collected: that name is made locally")
            continue
        log = LOG_NAME.match(entry.path)
        if log and int(log.group(1)) in unfinished:
            continue
        wanted.append(entry)
    if survey.skipped:
        shown = ", ".join(f"{path} ({kind})" for kind, path in survey.skipped[:5])
        notes.append(
            f"{len(survey.skipped)} entries that are not regular files were not collected "
            f"(f: file, l: symlink, p: FIFO, s: socket): {shown}"
        )
    return wanted


def tail_lines(path: Path, line_count: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_READ_BYTES))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").rstrip("\n").splitlines()[-line_count:]


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", errors="backslashreplace"))


def metadata_json(metadata: dict[str, Any]) -> str:
    """metadata.json's text: indented, with one line per file. A run may hold tens of thousands
    of files, and ``json`` indents only in pure Python, several times slower than its C
    encoder, which writes each file's line here."""
    files = metadata.get("files")
    if not isinstance(files, list) or not files:
        return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    mark = f"files-{secrets.token_hex(16)}"
    text = json.dumps({**metadata, "files": mark}, indent=2, ensure_ascii=False)
    line = json.JSONEncoder(ensure_ascii=False).encode
    listed = "[\n    " + ",\n    ".join(map(line, files)) + "\n  ]"
    return text.replace(json.dumps(mark), listed, 1) + "\n"


def fill_task_files(
    work: Path, run: RunRecord, tasks: Sequence[TaskRecord], entries: Sequence[ManifestEntry]
) -> None:
    """Read each collected task's results.json and, for failures, the tail of its log."""
    paths = {e.path for e in entries}
    logs: dict[int, list[str]] = {}
    for path in sorted(paths):
        match = LOG_NAME.match(path)
        if match:
            logs.setdefault(int(match.group(1)), []).append(path)
    for task in tasks:
        if not task.collected:
            continue
        candidates = logs.get(task.task_index, [])
        # The latest attempt's log: its own job's (a rerun is another job than the run's first).
        job_id = (task.status_file or {}).get("array_job_id") or run.job_id
        preferred = f"{LOGS_DIR}/slurm-{job_id}_{task.task_index}.out"
        task.log_path = preferred if preferred in candidates else (candidates[-1] if candidates else None)
        results_rel = f"{OUTPUT_DIR}/{task.task_id}/{RESULTS_NAME}"
        if results_rel in paths:
            parsed = json_object(local_path(work, results_rel).read_text("utf-8", errors="replace"))
            if parsed is None:
                task.results_note = f"{results_rel} is not a JSON object"
            task.results = parsed
        else:
            task.results_note = f"no {results_rel}"
        if task.state != JobState.COMPLETED.value and task.log_path is not None:
            task.log_tail = tail_lines(local_path(work, task.log_path))


def inputs_digest(
    run: RunRecord,
    snapshot: Snapshot,
    tasks: Sequence[TaskRecord],
    notes: Sequence[str],
    attempts: Sequence[dict[str, Any]],
    *,
    plots: bool,
) -> str:
    """What write_descriptions makes a folder's descriptions from (besides the collected files
    themselves), as one SHA-256: equal digests over equal files give equal descriptions."""
    made_from = {
        "tool_version": __version__,
        "run": [run.run_id, run.problem, run.cluster, run.scheduler, run.job_id, run.remote_dir,
                run.config_hash, run.submitted_at, run.deploy_id, run.git_sha],
        "submission": snapshot.submission,
        "tasks": [dataclasses.asdict(task) for task in tasks],
        "notes": list(notes),
        "attempts": list(attempts),
        "plots": plots,
    }  # fmt: skip
    text = json.dumps(made_from, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_descriptions(
    work: Path,
    run: RunRecord,
    snapshot: Snapshot,
    tasks: Sequence[TaskRecord],
    entries: Sequence[ManifestEntry],
    manifest: bytes,
    digest: str,
    notes: Sequence[str],
    attempts: Sequence[dict[str, Any]] = (),
    *,
    plots: bool = True,
) -> None:
    """metadata.json, MANIFEST.sha256 (``manifest``: its bytes, named by ``digest``), the
    tables, plots and summary.md."""
    submission = snapshot.submission
    submitted_at = run.submitted_at or (submission or {}).get("created_at")
    metadata = build_metadata(
        run_id=run.run_id,
        problem=run.problem,
        cluster=run.cluster,
        scheduler=run.scheduler,
        job_id=run.job_id,
        remote_dir=run.remote_dir,
        config_hash=run.config_hash,
        submission=submission,
        submitted_at=submitted_at if isinstance(submitted_at, str) else None,
        version=code_version(submission, run.deploy_id, run.git_sha),
        tasks=tasks,
        entries=entries,
        manifest_sha256=digest,
        tool_version=__version__,
        collected_at=utc_now(),
        notes=notes,
        attempts=attempts,
    )
    (work / MANIFEST_NAME).write_bytes(manifest)
    _write(work / METADATA_NAME, metadata_json(metadata))
    drawn = write_views(work, metadata, tasks, plots=plots)
    tails = {t.task_id: t.log_tail for t in tasks if t.log_tail}
    summary = render_summary(
        metadata, tails, plots=drawn.figures, plots_note=drawn.note, tables=[TASKS_CSV_NAME]
    )
    _write(work / SUMMARY_NAME, summary)


def build_task_records(
    store: Store, run: RunRecord, snapshot: Snapshot, states: Sequence[TaskStatus]
) -> tuple[list[TaskRecord], list[str]]:
    """Every task with its state, and the relative paths to leave out (tasks still writing)."""
    planned: dict[str, Any] = {}
    for task in (snapshot.submission or {}).get("tasks") or []:
        if isinstance(task, dict) and isinstance(task.get("params"), dict):
            planned[str(task.get("task_id"))] = task["params"]
    by_index = {state.task_index: state for state in states}
    tasks: list[TaskRecord] = []
    exclude: list[str] = []
    history = task_attempts(store, run, by_index)
    for index, task_id, _, _ in store.task_rows(run.run_id):
        state = by_index.get(index) or TaskStatus(index, JobState.UNKNOWN)
        finished = outputs_final(state)
        status_file = snapshot.status.get(task_id) or state.status_file
        tasks.append(
            TaskRecord(
                task_index=index,
                task_id=task_id,
                state=state.state.value,
                finished=finished,
                collected=finished,
                params=snapshot.params.get(task_id) or planned.get(task_id),
                status_file=status_file.to_dict() if status_file is not None else None,
                scheduler=state,
                attempts=history.get(index, []),
            )
        )
        if not finished:
            # Files of a running task are still changing: their hashes would not hold.
            exclude += [f"{OUTPUT_DIR}/{task_id}", f"{STATUS_DIR}/{task_id}.json"]
    return tasks, exclude


def task_attempts(
    store: Store, run: RunRecord, current: dict[int, TaskStatus]
) -> dict[int, list[dict[str, Any]]]:
    """Every attempt of every task, oldest first (the last is the task's current state)."""
    records = {a.attempt: a for a in store.attempts(run.run_id)}
    first_jobs = [job.job_id for job in store.run_jobs(run.run_id) if job.attempt == 1]
    plan_resources = run.plan.get("resources") or {}
    out: dict[int, list[dict[str, Any]]] = {}
    earlier = store.earlier_attempts(run.run_id)
    for index in sorted(set(earlier) | set(current)):
        statuses = [*earlier.get(index, []), *([current[index]] if index in current else [])]
        items = []
        for status in statuses:
            record = records.get(status.attempt)
            items.append(attempt_entry(
                status,
                record.resources if record else plan_resources,
                record.cause if record else "submitted",
                (record.job_ids[0] if record and record.job_ids else None)
                if record else (first_jobs[0] if first_jobs else run.job_id),
            ))  # fmt: skip
        out[index] = items
    return out


def run_attempts(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    return [
        {"attempt": a.attempt, "task_indices": list(a.task_indices), "resources": a.resources,
         "cause": a.cause, "job_ids": list(a.job_ids), "created_at": a.created_at}
        for a in store.attempts(run.run_id)
    ]  # fmt: skip
