"""The collect workflow: snapshot, states, manifest, transfer, description, placement, record."""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globtim_hpc.errors import GlobtimHpcError, IntegrityError, UsageError
from globtim_hpc.layout import (
    RemoteLayout,
    local_run_dir,
)
from globtim_hpc.models import JobState, TaskStatus
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.results.decoding import decodable
from globtim_hpc.results.manifest import ManifestEntry, manifest_file
from globtim_hpc.results.placement import (
    NoSpaceError,
    folder_lock,
    partial_folders,
    place_folder,
    space_error,
    sync_filesystem,
)
from globtim_hpc.results.recollect import (
    RECORD_NAME,
    Record,
    kept_choice,
    load_record,
    unchanged,
    write_record,
)
from globtim_hpc.results.summary import TaskRecord
from globtim_hpc.results.survey import Survey, SurveyEntry
from globtim_hpc.scheduler.base import PollResult, Scheduler, TrackedJob
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows.collect.compression import choose, fallback_note
from globtim_hpc.workflows.collect.describe import (
    build_task_records,
    fill_task_files,
    inputs_digest,
    run_attempts,
    wanted_entries,
    write_descriptions,
)
from globtim_hpc.workflows.collect.records import (
    CollectObserver,
    CollectOptions,
    CollectResult,
    SilentObserver,
)
from globtim_hpc.workflows.collect.snapshot import (
    MIN_STREAM_TIMEOUT_S,
    Snapshot,
    read_survey,
)
from globtim_hpc.workflows.collect.transfer import (
    disk_bytes,
    ensure_space,
    fetch_files,
    prepare_work,
    reusable_bytes,
    verify_placed,
)
from globtim_hpc.workflows.collect.views import after_placement
from globtim_hpc.workflows.monitor.poll import needs_poll, poll_runs, polled_jobs, stored_view

_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_POLL_AFTER_ERROR_WAIT_S = 5.0


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


class SchedulerQuery:
    """The scheduler's answer about a run's jobs, asked in a thread of its own: a collection
    lists the run folder meanwhile, so the two round trips to the cluster overlap."""

    def __init__(self, store: Store, scheduler: Scheduler, run: RunRecord) -> None:
        self._answer: PollResult | None = None
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        # Every task already settled in the registry (a re-collect): the scheduler has nothing
        # to add, and not asking saves its commands (squeue, sacct) on every later collection.
        if needs_poll(stored_view(store, run)):
            jobs = polled_jobs(store, [run])  # the registry is read here, in the caller's thread
            self._thread = threading.Thread(
                target=self._ask, args=(scheduler, jobs), name="globtim-poll", daemon=True
            )
            self._thread.start()

    def _ask(self, scheduler: Scheduler, jobs: list[TrackedJob]) -> None:
        try:
            self._answer = scheduler.poll(jobs)
        except BaseException as exc:  # raised again in the caller's thread, by answer()
            self._failure = exc

    @property
    def error(self) -> GlobtimHpcError | None:
        """Why the scheduler could not answer (a toolkit error; anything else is raised)."""
        return self._failure if isinstance(self._failure, GlobtimHpcError) else None

    def wait(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def answer(self) -> PollResult | None:
        """The answer (None if the scheduler was not asked or could not answer)."""
        self.wait()
        if self._failure is not None and self.error is None:
            raise self._failure
        return self._answer


def task_states(
    store: Store, scheduler: Scheduler, run: RunRecord, snapshot: Snapshot,
    query: SchedulerQuery | None,
) -> tuple[list[TaskStatus], list[str]]:  # fmt: skip
    """Each task's state now (``taskstate.decide`` through the monitor's poll), with the status
    files just read and the scheduler's answer to ``query``; without one, from those files and
    the registry."""
    given = {run.remote_dir: snapshot.status}
    notes: list[str] = []
    answer = query.answer() if query is not None else None
    if query is not None and query.error is not None:
        notes.append(
            f"the scheduler was not consulted ({query.error.message}); states come from the "
            "status files"
        )
    (view,) = poll_runs(
        store, scheduler, [run], mark_seen=False, status_files=given, ask_scheduler=False,
        answer=answer,
    )  # fmt: skip
    return [t.status for t in view.tasks], [*notes, *view.notes]


@dataclass(frozen=True)
class _Chosen:
    """What the cluster's run folder holds now, and which of its files a collection takes."""

    snapshot: Snapshot
    survey: Survey
    tasks: list[TaskRecord]
    notes: list[str]
    listing_notes: list[str]  # the part of ``notes`` that the choice of files made
    files: list[SurveyEntry]
    attempts: list[dict[str, Any]]
    inputs: str


def _kept_record_stamp(folder: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(folder / RECORD_NAME)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _kept_record(target: Path) -> tuple[Record, tuple[int, int, int] | None]:
    """The collected folder's record, and its file's stamp (read again only if it changed)."""
    if not target.is_dir() or target.is_symlink():
        return Record({}), None
    stamp = _kept_record_stamp(target)
    return load_record(target), stamp


def _choose(
    store: Store, scheduler: Scheduler, run: RunRecord, kept: Record, options: CollectOptions,
    query: SchedulerQuery | None,
) -> _Chosen:  # fmt: skip
    """Survey the run (``query`` asks the scheduler meanwhile), decide the task states, choose
    the files.

    A finished folder's record keeps the digest of the listing its files were chosen from: the
    cluster answers "same" for an unchanged listing, and the record's choice is taken again. It
    holds only while the inputs are the same too, which the caller checks (``inputs``).
    """
    transport = scheduler.transport
    kept_files = kept_choice(kept)
    try:
        snapshot, survey = read_survey(
            transport, run, kept.listing_sha256 if kept_files is not None else ""
        )
    except BaseException:
        if query is not None:  # the error comes first; the poll gives up with the link
            query.wait(timeout_s=_POLL_AFTER_ERROR_WAIT_S)
        raise
    states, state_notes = task_states(store, scheduler, run, snapshot, query)
    notes = [*snapshot.notes, *state_notes]
    tasks, exclude = build_task_records(store, run, snapshot, states)
    if survey.same and kept_files is not None:
        files, listing_notes = kept_files, list(kept.listing_notes)
    else:
        listing_notes = []
        files = wanted_entries(survey.without(exclude), tasks, listing_notes)
    notes += listing_notes
    attempts = run_attempts(store, run)
    inputs = inputs_digest(run, snapshot, tasks, notes, attempts, plots=options.plots)
    return _Chosen(snapshot, survey, tasks, notes, listing_notes, files, attempts, inputs)


def collect_run(
    run: RunRecord,
    *,
    store: Store,
    remote_root: str,
    options: CollectOptions,
    scheduler: Scheduler,
    observer: CollectObserver | None = None,
    ask_scheduler: bool = True,
) -> CollectResult:
    """Collect the finished tasks of ``run`` into ``results/<problem>/<date>_<run_id>/``.

    ``ask_scheduler`` False: task states come from the status files and the registry alone.
    """
    transport = scheduler.transport
    observer = observer or SilentObserver()
    result = CollectResult(run_id=run.run_id, problem=run.problem)
    target = local_run_dir(options.results_root, run.problem, run.run_id)
    kept, kept_stamp = _kept_record(target)
    observer.phase(f"reading the status of {run.run_id} on {transport.label}")
    query = SchedulerQuery(store, scheduler, run) if ask_scheduler else None
    chosen = _choose(store, scheduler, run, kept, options, query)
    if chosen.survey.same and chosen.inputs != kept.inputs_sha256:
        # The listing is the kept one but the tasks or notes changed: so may the choice. The
        # scheduler's answer holds; only the listing is asked for again.
        chosen = _choose(store, scheduler, run, Record({}), options, query)
    snapshot, tasks, notes, files, inputs, attempts = (
        chosen.snapshot, chosen.tasks, chosen.notes, chosen.files, chosen.inputs, chosen.attempts
    )
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
    stamps = {f.path: f for f in files}
    result.file_count, result.byte_count = len(files), sum(f.byte_count for f in files)
    parent = target.parent
    if not parent.is_dir():
        ensure_space(parent, disk_bytes(files))
        parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(parent):
        partials = partial_folders(parent, target.name)
        for stale in partials[1:]:
            shutil.rmtree(stale, ignore_errors=True)
        # Read once: whether the folder can stay as it is, and else which copies to reuse.
        plain_target = target.is_dir() and not target.is_symlink()
        in_target = kept if plain_target and _kept_record_stamp(target) == kept_stamp else (
            load_record(target) if plain_target else Record({})
        )
        same = None if partials else unchanged(target, in_target, stamps, inputs)
        if same is not None:  # nothing to fetch and nothing to rewrite: the folder stays
            digest = same.manifest_sha256
            result.manifest_sha256, result.files_reused = digest, same.file_count
            result.notes = [*notes, "unchanged since it was last collected: left as it is"]
        else:
            work = partials[0] if partials else parent / f".{target.name}.partial-{secrets.token_hex(4)}"
            if partials:
                notes.append(f"resumed from an interrupted collection ({work.name})")
            try:
                if not partials:
                    # Checked before anything is created: a full disk leaves no trace.
                    ensure_space(parent, disk_bytes(files) - reusable_bytes(target, files))
                    work.mkdir()
                observer.phase("checking local copies")
                reused, fetch = prepare_work(work, target, files, notes, in_target.files)
                result.files_reused = len(reused)
                ensure_space(parent, disk_bytes(fetch))
                arrived: dict[str, ManifestEntry] = {}
                if fetch:
                    offer = choose(
                        options.compression, ((e.path, e.byte_count) for e in fetch),
                        local_link=options.local_link, decodable=decodable(),
                    )  # fmt: skip
                    if offer.note:
                        notes.append(offer.note)
                    try:
                        fetch_files(
                            transport, run.remote_dir, work, fetch, observer, result, arrived,
                            offer.codecs,
                        )  # fmt: skip
                        late = fallback_note(
                            options.compression, offer.codecs, result.compression or "none",
                            transport.label,
                        )  # fmt: skip
                        if late:
                            notes.append(late)
                    except GlobtimHpcError as exc:
                        if not isinstance(exc, IntegrityError):
                            # A broken link: what arrived whole is kept for the next attempt.
                            write_record(work, [*reused, *arrived.values()], stamps)
                        raise
                entries = sorted([*reused, *arrived.values()])
                manifest, digest = manifest_file(entries)
                result.manifest_sha256 = digest
                verify_placed(work, entries, len(files), arrived)
                fill_task_files(work, run, tasks, entries)
                result.notes = [*notes, *result.notes]
                write_descriptions(
                    work, run, snapshot, tasks, entries, manifest, digest, result.notes,
                    attempts, plots=options.plots,
                )  # fmt: skip
                write_record(
                    work, entries, stamps, inputs_sha256=inputs, manifest_sha256=digest,
                    listing_sha256=chosen.survey.listing_sha256, listing_notes=chosen.listing_notes,
                )  # fmt: skip
                if options.fsync:
                    sync_filesystem(work)
                place_folder(work, target)
            except OSError as exc:
                if exc.errno not in _SPACE_ERRNOS:
                    raise
                shutil.rmtree(work, ignore_errors=True)
                raise space_error(parent, disk_bytes(files), None) from exc
            except NoSpaceError:
                shutil.rmtree(work, ignore_errors=True)
                raise
    result.local_dir = str(target)
    result.notes += after_placement(store, options.results_root, target)
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
