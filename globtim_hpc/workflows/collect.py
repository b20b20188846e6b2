"""Collect a run from the cluster: verified, resumable, organised, and never half-placed.

One pass, through the open transport, nothing staged on any hop:

1. one command tars up ``submission.json``, ``status/`` and ``params/`` (small): which tasks
   have finished, with what parameters;
2. one command computes the SHA-256 manifest of the run folder on the cluster, leaving out
   the output of tasks still running;
3. what already exists locally (the previous collection, or an interrupted attempt) is hashed
   and reused when it matches; only missing or changed files are asked for, as one tar stream
   (file list on stdin), extracted by ``safe_tar`` and verified file by file;
4. the new folder is built beside the target under a hidden name
   (``.<name>.partial-<random>``), completed with ``MANIFEST.sha256``, ``metadata.json`` and
   ``summary.md``, then renamed into place (or atomically exchanged with the old version);
5. the registry records where, when and which manifest; only then, and only when asked, the
   remote run folder is removed.

An interrupted attempt leaves only its hidden partial folder, whose verified files the next
attempt reuses. Running out of local space removes it and says so.
"""

from __future__ import annotations

import errno
import io
import json
import os
import posixpath
import re
import secrets
import shutil
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from globtim_hpc import __version__
from globtim_hpc.errors import GlobtimHpcError, IntegrityError, TransferError, UsageError
from globtim_hpc.jobs.statusfile import StatusFile, parse_status_with_reason
from globtim_hpc.layout import (
    LOGS_DIR,
    OUTPUT_DIR,
    PARAMS_DIR,
    STATUS_DIR,
    SUBMISSION_JSON,
    RemoteLayout,
    local_run_dir,
)
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.store import RunRecord, Store, utc_now
from globtim_hpc.results.manifest import (
    MANIFEST_NAME,
    ManifestEntry,
    RemoteManifest,
    format_sha256sum,
    local_path,
    manifest_digest,
    matches,
    parse_remote_manifest,
    remote_manifest_argv,
)
from globtim_hpc.results.placement import (
    NoSpaceError,
    folder_lock,
    link_or_copy,
    nearest_existing,
    partial_folders,
    place_folder,
    space_error,
    sync_filesystem,
)
from globtim_hpc.results.safe_tar import ExtractingSink
from globtim_hpc.results.summary import (
    LOG_TAIL_LINES,
    TaskRecord,
    build_metadata,
    code_version,
    render_summary,
)
from globtim_hpc.scheduler.base import Scheduler
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.monitor import GONE_KEY

METADATA_NAME = "metadata.json"
SUMMARY_NAME = "summary.md"
GENERATED_NAMES = frozenset({MANIFEST_NAME, METADATA_NAME, SUMMARY_NAME})
RESULTS_NAME = "results.json"

BLOCK_BYTES = 4096  # what a small file costs on disk at least
SPACE_MARGIN_BYTES = 4 << 20  # metadata, summary, folders
MIN_STREAM_TIMEOUT_S = 3600.0
ASSUMED_MIN_RATE_BYTES_S = 1 << 20
LOG_TAIL_READ_BYTES = 64 << 10
SMALL_FILE_LIMIT_BYTES = 4 << 20

# $1 is the run folder. Exit 3 says "no such folder", which deserves its own message.
_SNAPSHOT_SCRIPT = (
    'cd -- "$1" 2>/dev/null || exit 3; '
    "exec tar -cz --ignore-failed-read -f - submission.json status params"
)
_LOG_NAME = re.compile(r"^" + LOGS_DIR + r"/slurm-[^/]+_(\d+)\.out$")
_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


# ---- how the caller sees progress, and what it gets back ----------------------------------------


class CollectObserver(Protocol):
    def phase(self, message: str) -> None: ...

    def transfer_started(self, byte_count: int, file_count: int) -> None: ...

    def transferred(self, byte_count: int) -> None:
        """Called with the number of stream bytes received since the previous call."""
        ...

    def transfer_finished(self) -> None: ...


class SilentObserver:
    def phase(self, message: str) -> None:
        pass

    def transfer_started(self, byte_count: int, file_count: int) -> None:
        pass

    def transferred(self, byte_count: int) -> None:
        pass

    def transfer_finished(self) -> None:
        pass


@dataclass
class SchedulerView:
    """The scheduler's (sacct's) view of each task, by array index; notes to show once."""

    tasks: dict[int, TaskStatus] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


SchedulerViewFn = Callable[[RunRecord], SchedulerView]
ManifestHook = Callable[[RemoteManifest], None]


@dataclass(frozen=True)
class CollectOptions:
    results_root: Path
    clean_remote: bool = False
    require_complete: bool = False  # skip (do not partly collect) runs with unfinished tasks
    fsync: bool = True


@dataclass
class CollectResult:
    run_id: str
    problem: str
    local_dir: str | None = None
    skipped: str | None = None  # why nothing was collected
    complete: bool = False
    task_count: int = 0
    finished_tasks: list[str] = field(default_factory=list)
    unfinished_tasks: list[dict[str, str]] = field(default_factory=list)
    failed_tasks: list[dict[str, str]] = field(default_factory=list)
    file_count: int = 0
    byte_count: int = 0
    files_fetched: int = 0
    files_reused: int = 0
    content_bytes_received: int = 0  # sum of the sizes of the files that came over the wire
    stream_bytes_received: int = 0  # tar stream bytes, headers and padding included
    manifest_sha256: str | None = None
    remote_removed: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "problem": self.problem,
            "local_dir": self.local_dir,
            "skipped": self.skipped,
            "complete": self.complete,
            "task_count": self.task_count,
            "finished_tasks": list(self.finished_tasks),
            "unfinished_tasks": list(self.unfinished_tasks),
            "failed_tasks": list(self.failed_tasks),
            "file_count": self.file_count,
            "byte_count": self.byte_count,
            "files_fetched": self.files_fetched,
            "files_reused": self.files_reused,
            "content_bytes_received": self.content_bytes_received,
            "stream_bytes_received": self.stream_bytes_received,
            "manifest_sha256": self.manifest_sha256,
            "remote_removed": self.remote_removed,
            "notes": list(self.notes),
        }


# ---- finding runs -----------------------------------------------------------------------------


def find_run(store: Store, cluster: str, *, job_id: str | None, run_id: str | None) -> RunRecord:
    """The registered run named by job id or run id, or a UsageError saying how to find it."""
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError(
                f"no run {run_id} in the registry ({store.path})",
                "list runs with monitor_jobs.py; GLOBTIM_HPC_STATE_DIR selects another registry",
            )
    elif job_id is not None:
        found = store.run_for_job(cluster, job_id) or store.run_for_job(None, job_id)
        if found is None:
            raise UsageError(
                f"job {job_id} is not in the registry for cluster '{cluster}'",
                "give --run-id instead, or pick the cluster the job was submitted to with --cluster",
            )
        run = found
    else:  # pragma: no cover - the CLI requires one of them
        raise UsageError("name a run: --job-id or --run-id")
    if run.cluster != cluster:
        raise UsageError(
            f"run {run.run_id} was submitted to cluster '{run.cluster}', not '{cluster}'",
            f"add --cluster {run.cluster}",
        )
    return run


def uncollected_runs(store: Store, cluster: str) -> list[RunRecord]:
    """Submitted runs of ``cluster`` with no complete collection yet (for ``--all``)."""
    found = []
    for run in store.list_runs(cluster=cluster):
        if run.job_id is None:
            continue
        if any(c["complete"] for c in store.collections(run.run_id)):
            continue
        found.append(run)
    return found


def monitor_view(store: Store, transport: Transport, scheduler: Scheduler) -> SchedulerViewFn:
    """A SchedulerViewFn backed by the monitor's poll (squeue + sacct, merged with status files).

    The poll records what it learns in the registry, like monitor_jobs.py does, but leaves the
    monitor's "changes not shown yet" alone.
    """

    def view(run: RunRecord) -> SchedulerView:
        from globtim_hpc.workflows.monitor import poll_runs

        if run.job_id is None:
            return SchedulerView(notes=["no job id is recorded for this run"])
        (polled,) = poll_runs(store, transport, scheduler, [run], mark_seen=False)
        return SchedulerView(
            tasks={t.status.task_index: t.status for t in polled.tasks}, notes=list(polled.notes)
        )

    return view


# ---- task states ------------------------------------------------------------------------------


def task_state(
    status: StatusFile | None, sched: TaskStatus | None, registry_state: str
) -> tuple[JobState, bool]:
    """(state, finished) from the task's own status file and the scheduler's view.

    Success needs every source that has an opinion to agree; a scheduler's specific final
    state (TIMEOUT, OUT_OF_MEMORY, CANCELLED…) names a failure better than "FAILED".
    """
    file_final = status is not None and status.ended
    # A task the scheduler lost for good (killed without its exit trap) will not change again.
    sched_lost = sched is not None and sched.state is JobState.UNKNOWN and bool(sched.extra.get(GONE_KEY))
    sched_final = sched is not None and (sched.state.is_final or sched_lost)
    if not (file_final or sched_final):
        if sched is not None and sched.state is not JobState.UNKNOWN:
            return sched.state, False
        if status is not None:
            return JobState.RUNNING, False
        return JobState.parse(registry_state), False
    file_ok = status is None or not status.ended or (
        status.state == "EXITED" and status.exit_code == 0
    )
    sched_ok = sched is None or not sched_final or sched.state is JobState.COMPLETED
    if file_ok and sched_ok:
        return JobState.COMPLETED, True
    if sched is not None and sched_final and sched.state is not JobState.COMPLETED:
        return sched.state, True  # TIMEOUT, CANCELLED… say more than FAILED; UNKNOWN if lost
    return JobState.FAILED, True


# ---- remote reads -----------------------------------------------------------------------------


@dataclass
class _Snapshot:
    submission: dict[str, Any] | None
    status: dict[str, StatusFile]
    params: dict[str, dict[str, Any]]
    notes: list[str]


def _read_snapshot(transport: Transport, run: RunRecord) -> _Snapshot:
    argv = ["sh", "-c", _SNAPSHOT_SCRIPT, "globtim-snapshot", run.remote_dir]
    result = transport.run(argv, timeout_s=600.0)
    if result.exit_status == 3:
        raise TransferError(
            f"the run folder {run.remote_dir} does not exist on {transport.label}",
            "was it removed (collect_results.py --clean-remote) or never uploaded? the registry "
            "lists earlier collections of this run",
        )
    result.check(f"reading the run's status files on {transport.label}")
    snapshot = _Snapshot(None, {}, {}, [])
    try:
        with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r:gz") as archive:
            for member in archive:
                if not member.isreg() or member.size > SMALL_FILE_LIMIT_BYTES:
                    continue
                handle = archive.extractfile(member)
                if handle is None:  # pragma: no cover - regular members have data
                    continue
                _take_snapshot_file(snapshot, member.name, handle.read())
    except (tarfile.TarError, EOFError) as exc:
        raise TransferError(
            f"the status files of {run.run_id} could not be read from {transport.label}: {exc}"
        ) from exc
    return snapshot


def _take_snapshot_file(snapshot: _Snapshot, name: str, data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    folder, _, base = name.rpartition("/")
    if name == SUBMISSION_JSON:
        parsed = _json_object(text)
        if parsed is None:
            snapshot.notes.append(f"{SUBMISSION_JSON} is not a JSON object; ignored")
        snapshot.submission = parsed
    elif folder == STATUS_DIR and base.endswith(".json"):
        status, why = parse_status_with_reason(text)
        if status is None:
            snapshot.notes.append(f"{name}: {why}")
        else:
            snapshot.status[base[: -len(".json")]] = status
    elif folder == PARAMS_DIR and base.endswith(".json"):
        params = _json_object(text)
        if params is not None:
            snapshot.params[base[: -len(".json")]] = params


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _fetch_manifest(
    transport: Transport, remote_dir: str, exclude: Sequence[str]
) -> RemoteManifest:
    result = transport.run(remote_manifest_argv(remote_dir, exclude), timeout_s=MIN_STREAM_TIMEOUT_S)
    result.check(
        f"computing the manifest of {remote_dir} on {transport.label}",
        "the run folder must be readable; GNU find and coreutils' sha256sum must be on PATH",
    )
    return parse_remote_manifest(result.stdout, transport.label)


def _tail_lines(path: Path, line_count: int = LOG_TAIL_LINES) -> list[str]:
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


# ---- the workflow -----------------------------------------------------------------------------


def _task_rows(store: Store, run: RunRecord, snapshot: _Snapshot) -> list[tuple[int, str, str]]:
    """(index, task_id, registry state) of every task; the registry first, submission.json else."""
    rows = [(index, task_id, state) for index, task_id, state, _ in store.task_rows(run.run_id)]
    if rows:
        return rows
    for position, task in enumerate((snapshot.submission or {}).get("tasks") or []):
        if isinstance(task, dict) and isinstance(task.get("task_id"), str):
            index = task.get("index")
            rows.append((index if isinstance(index, int) else position, task["task_id"], "UNKNOWN"))
    return rows


def _tasks(
    rows: Sequence[tuple[int, str, str]], snapshot: _Snapshot, view: SchedulerView
) -> tuple[list[TaskRecord], list[str]]:
    """Every task with its state, and the relative paths to leave out (unfinished tasks)."""
    planned: dict[str, Any] = {}
    for task in (snapshot.submission or {}).get("tasks") or []:
        if isinstance(task, dict) and isinstance(task.get("params"), dict):
            planned[str(task.get("task_id"))] = task["params"]
    tasks: list[TaskRecord] = []
    exclude: list[str] = []
    for index, task_id, registry_state in rows:
        status = snapshot.status.get(task_id)
        sched = view.tasks.get(index)
        state, finished = task_state(status, sched, registry_state)
        tasks.append(
            TaskRecord(
                task_index=index,
                task_id=task_id,
                state=state.value,
                finished=finished,
                collected=finished,
                params=snapshot.params.get(task_id) or planned.get(task_id),
                status_file=status.to_dict() if status is not None else None,
                scheduler=sched,
            )
        )
        if not finished:
            # Files of a running task are still changing: their hashes would not hold.
            exclude += [f"{OUTPUT_DIR}/{task_id}", f"{STATUS_DIR}/{task_id}.json"]
    return tasks, exclude


def _wanted(manifest: RemoteManifest, tasks: Sequence[TaskRecord], notes: list[str]) -> list[ManifestEntry]:
    unfinished = {t.task_index for t in tasks if not t.finished}
    wanted = []
    for entry in manifest.entries:
        if entry.path in GENERATED_NAMES:
            notes.append(f"the cluster's {entry.path} was not collected: that name is made locally")
            continue
        log = _LOG_NAME.match(entry.path)
        if log and int(log.group(1)) in unfinished:
            continue
        wanted.append(entry)
    if manifest.skipped:
        shown = ", ".join(f"{path} ({kind})" for kind, path in manifest.skipped[:5])
        notes.append(
            f"{len(manifest.skipped)} entries that are not regular files were not collected "
            f"(f: file, l: symlink, p: FIFO, s: socket): {shown}"
        )
    return wanted


def _disk_bytes(entries: Sequence[ManifestEntry]) -> int:
    return sum(-(-e.byte_count // BLOCK_BYTES) * BLOCK_BYTES for e in entries) + SPACE_MARGIN_BYTES


def _ensure_space(folder: Path, needed: int) -> None:
    where = nearest_existing(folder)
    free = shutil.disk_usage(where).free
    if free < needed:
        raise space_error(where, needed, free)


def _tar_estimate(entries: Sequence[ManifestEntry]) -> int:
    header = 512
    total = 1024  # end-of-archive blocks
    for e in entries:
        long_name = len(os.fsencode(e.path)) >= 100
        total += header + -(-e.byte_count // 512) * 512
        if long_name:
            total += header + -(-(len(os.fsencode(e.path)) + 1) // 512) * 512
    return total


def _fetch(
    transport: Transport,
    remote_dir: str,
    work: Path,
    fetch: Sequence[ManifestEntry],
    observer: CollectObserver,
    result: CollectResult,
) -> None:
    """Stream ``fetch`` as one tar into ``work``; every file verified on arrival."""
    expected = {e.path: e for e in fetch}
    # One syncfs before the folder is placed is far cheaper than an fsync per file.
    sink = ExtractingSink(work, expected, fsync=False, on_bytes=observer.transferred).start()
    file_list = b"".join(os.fsencode(e.path) + b"\0" for e in fetch)
    estimate = _tar_estimate(fetch)
    argv = [
        "tar", "-c", "-f", "-", "--format=gnu", "-C", remote_dir,
        "--null", "--verbatim-files-from", "--no-unquote", "--no-recursion", "--hard-dereference",
        "-T", "-",
    ]
    observer.transfer_started(estimate, len(fetch))
    try:
        try:
            outcome = transport.stream(
                argv,
                stdin_source=io.BytesIO(file_list),
                stdout_sink=cast(BinaryIO, sink),
                timeout_s=max(MIN_STREAM_TIMEOUT_S, estimate / ASSUMED_MIN_RATE_BYTES_S),
            )
        except BaseException as exc:
            first = sink.abort()
            if first is not None and not isinstance(exc, KeyboardInterrupt):
                raise first from exc
            raise
        written = sink.finish()
    finally:
        result.stream_bytes_received += sink.bytes_received
        observer.transfer_finished()
    result.files_fetched += len(written)
    result.content_bytes_received += sum(expected[p].byte_count for p in written)
    if not outcome.ok:
        # Every file arrived and verified, so the data is right; say what tar complained about.
        result.notes.append(
            f"tar on {transport.label} exited with {outcome.exit_status} although every file "
            f"verified: {outcome.output_tail(3)}"
        )


def _prepare_work(
    work: Path, target: Path, entries: Sequence[ManifestEntry], notes: list[str]
) -> tuple[list[ManifestEntry], int]:
    """Fill ``work`` with every matching local file; return (files still to fetch, reused)."""
    wanted = {e.path for e in entries}
    # Anything in an adopted partial folder that is not part of this manifest goes.
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder) / name
            if path.relative_to(work).as_posix() not in wanted:
                path.unlink()
    fetch: list[ManifestEntry] = []
    reused = 0
    have_target = target.is_dir() and not target.is_symlink()
    for entry in entries:
        in_work = local_path(work, entry.path)
        if matches(in_work, entry):
            reused += 1
            continue
        in_target = local_path(target, entry.path)
        if have_target and matches(in_target, entry):
            link_or_copy(in_target, in_work)
            reused += 1
            continue
        fetch.append(entry)
    if have_target:
        kept = []
        for folder, _, names in os.walk(target):
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(target).as_posix()
                if rel in wanted or rel in GENERATED_NAMES or path.is_symlink():
                    continue
                link_or_copy(path, work / rel)
                kept.append(rel)
        if kept:
            notes.append(
                f"kept {len(kept)} local files that are not in the cluster's run folder: "
                + ", ".join(sorted(kept)[:5])
            )
    return fetch, reused


def _verify_placed(work: Path, entries: Sequence[ManifestEntry]) -> None:
    import stat

    for entry in entries:
        path = local_path(work, entry.path)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise IntegrityError(f"{entry.path!r} is missing after the transfer") from None
        if not stat.S_ISREG(info.st_mode) or info.st_size != entry.byte_count:
            raise IntegrityError(
                f"{entry.path!r} has {info.st_size} bytes locally, the manifest says "
                f"{entry.byte_count}"
            )


def _fill_task_files(
    work: Path, run: RunRecord, tasks: Sequence[TaskRecord], entries: Sequence[ManifestEntry]
) -> None:
    """Read each collected task's results.json and, for failures, the tail of its log."""
    paths = {e.path for e in entries}
    logs: dict[int, list[str]] = {}
    for path in sorted(paths):
        match = _LOG_NAME.match(path)
        if match:
            logs.setdefault(int(match.group(1)), []).append(path)
    for task in tasks:
        if not task.collected:
            continue
        candidates = logs.get(task.task_index, [])
        preferred = f"{LOGS_DIR}/slurm-{run.job_id}_{task.task_index}.out"
        task.log_path = preferred if preferred in candidates else (candidates[-1] if candidates else None)
        results_rel = f"{OUTPUT_DIR}/{task.task_id}/{RESULTS_NAME}"
        if results_rel in paths:
            parsed = _json_object(local_path(work, results_rel).read_text("utf-8", errors="replace"))
            if parsed is None:
                task.results_note = f"{results_rel} is not a JSON object"
            task.results = parsed
        else:
            task.results_note = f"no {results_rel}"
        if task.state != JobState.COMPLETED.value and task.log_path is not None:
            task.log_tail = _tail_lines(local_path(work, task.log_path))


def _write_descriptions(
    work: Path,
    run: RunRecord,
    snapshot: _Snapshot,
    tasks: Sequence[TaskRecord],
    entries: Sequence[ManifestEntry],
    digest: str,
    notes: Sequence[str],
) -> None:
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
    )
    (work / MANIFEST_NAME).write_bytes(format_sha256sum(entries))
    _write(work / METADATA_NAME, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    tails = {t.task_id: t.log_tail for t in tasks if t.log_tail}
    _write(work / SUMMARY_NAME, render_summary(metadata, tails))


def _remove_remote(transport: Transport, run: RunRecord, remote_root: str) -> None:
    """``rm -rf`` the run folder, after checking it is exactly <remote_root>/runs/<run_id>."""
    root = posixpath.normpath(remote_root or "")
    expected = posixpath.normpath(RemoteLayout(root).run_dir(run.run_id))
    actual = posixpath.normpath(run.remote_dir)
    if not posixpath.isabs(root) or root == "/" or actual != expected or run.run_id not in actual:
        raise UsageError(
            f"not removing {run.remote_dir}: it is not {expected} (remote_root/runs/<run id>)",
            "remove it by hand if it really should go",
        )
    transport.run(["rm", "-rf", "--", actual], timeout_s=MIN_STREAM_TIMEOUT_S).check(
        f"removing {actual} on {transport.label}"
    )


def collect_run(
    run: RunRecord,
    *,
    transport: Transport,
    store: Store,
    remote_root: str,
    options: CollectOptions,
    observer: CollectObserver | None = None,
    scheduler_view: SchedulerViewFn | None = None,
    after_manifest: ManifestHook | None = None,
) -> CollectResult:
    """Collect the finished tasks of ``run`` into ``results/<problem>/<date>_<run_id>/``.

    ``after_manifest`` is called between the manifest and the transfer (a seam for tests).
    """
    observer = observer or SilentObserver()
    result = CollectResult(run_id=run.run_id, problem=run.problem)
    observer.phase(f"reading the status of {run.run_id} on {transport.label}")
    snapshot = _read_snapshot(transport, run)
    view = SchedulerView()
    if scheduler_view is not None:
        try:
            view = scheduler_view(run)
        except GlobtimHpcError as exc:
            view = SchedulerView(notes=[f"the scheduler was not consulted ({exc.message}); "
                                        "states come from the status files"])
    notes = [*snapshot.notes, *view.notes]
    tasks, exclude = _tasks(_task_rows(store, run, snapshot), snapshot, view)
    result.task_count = len(tasks)
    result.finished_tasks = [t.task_id for t in tasks if t.finished]
    result.unfinished_tasks = [{"task_id": t.task_id, "state": t.state} for t in tasks if not t.finished]
    result.failed_tasks = [
        {"task_id": t.task_id, "state": t.state}
        for t in tasks if t.finished and t.state != JobState.COMPLETED.value
    ]
    result.complete = not result.unfinished_tasks
    if options.require_complete and not result.complete:
        result.skipped = f"{len(result.unfinished_tasks)} of {len(tasks)} tasks have not finished"
        result.notes = notes
        return result

    observer.phase(f"computing checksums on {transport.label}")
    manifest = _fetch_manifest(transport, run.remote_dir, exclude)
    entries = _wanted(manifest, tasks, notes)
    digest = manifest_digest(entries)
    result.file_count, result.byte_count = len(entries), sum(e.byte_count for e in entries)
    result.manifest_sha256 = digest
    if after_manifest is not None:
        after_manifest(manifest)

    target = local_run_dir(options.results_root, run.problem, run.run_id)
    parent = target.parent
    if not parent.is_dir():
        _ensure_space(parent, _disk_bytes(entries))
        parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(parent):
        partials = partial_folders(parent, target.name)
        for stale in partials[1:]:
            shutil.rmtree(stale, ignore_errors=True)
        work = partials[0] if partials else parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        if partials:
            notes.append(f"resumed from an interrupted collection ({work.name})")
        try:
            if not partials:
                # Checked before anything is created: a full disk leaves no trace.
                _ensure_space(parent, _disk_bytes(entries) - _reusable_bytes(target, entries))
                work.mkdir()
            observer.phase("checking local copies")
            fetch, result.files_reused = _prepare_work(work, target, entries, notes)
            _ensure_space(parent, _disk_bytes(fetch))
            if fetch:
                _fetch(transport, run.remote_dir, work, fetch, observer, result)
            _verify_placed(work, entries)
            _fill_task_files(work, run, tasks, entries)
            result.notes = [*notes, *result.notes]
            _write_descriptions(work, run, snapshot, tasks, entries, digest, result.notes)
            if options.fsync:
                sync_filesystem(work)
            place_folder(work, target)
        except OSError as exc:
            if exc.errno not in _SPACE_ERRNOS:
                raise
            shutil.rmtree(work, ignore_errors=True)
            raise space_error(parent, _disk_bytes(entries), None) from exc
        except NoSpaceError:
            shutil.rmtree(work, ignore_errors=True)
            raise
    result.local_dir = str(target)
    store.record_collection(
        run_id=run.run_id,
        local_dir=str(target),
        manifest_sha256=digest,
        file_count=result.file_count,
        byte_count=result.byte_count,
        complete=result.complete,
    )
    if options.clean_remote:
        if result.complete:
            observer.phase(f"removing {run.remote_dir} on {transport.label}")
            _remove_remote(transport, run, remote_root)
            result.remote_removed = True
        else:
            result.notes.append(
                f"the run folder on {transport.label} was kept: "
                f"{len(result.unfinished_tasks)} tasks have not finished"
            )
    return result


def _reusable_bytes(target: Path, entries: Sequence[ManifestEntry]) -> int:
    """Bytes of entries a previous collection already holds with the same size (hard-linked)."""
    if not target.is_dir():
        return 0
    total = 0
    for entry in entries:
        try:
            if local_path(target, entry.path).lstat().st_size == entry.byte_count:
                total += -(-entry.byte_count // BLOCK_BYTES) * BLOCK_BYTES
        except OSError:
            continue
    return total

