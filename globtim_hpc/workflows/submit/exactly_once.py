"""Submission: one run folder, one archive upload, one scheduler command, exactly one job.

Exactly once: the run is recorded locally before anything remote happens; its phase is set to
SUBMITTING before the command that may reach the scheduler. Whenever the answer to that command
is lost (dropped connection, killed process), recovery first asks the scheduler for a job with
the run's name (the run id is the job name and is in the comment) and adopts it; only when none
exists, and the run folder is in place, is the script submitted again. A later invocation with
the same configuration finds the unfinished run in the registry and recovers it the same way.
"""

from __future__ import annotations

import fcntl
import functools
import posixpath
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from globtim_hpc import paths
from globtim_hpc.errors import ConnectError, PreflightError, SchedulerError, UsageError
from globtim_hpc.layout import RunLayout
from globtim_hpc.models import RunPhase
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler, SubmitRequest, submit_job
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.workflows.limits import array_limits, check_sweep_size
from globtim_hpc.workflows.submit.preflight import preflight
from globtim_hpc.workflows.submit.prepare import (
    PreparedRun,
    inputs_hash,
    prepare_run,
    submit_request,
    upload_inputs,
)

if TYPE_CHECKING:
    from globtim_hpc.jobs.plan import JobPlan
    from globtim_hpc.settings.profile import ClusterProfile

MAX_RECOVERY_ATTEMPTS = 4
LOCK_WAIT_S = 600.0  # a submission holds its run's lock for seconds, a slow link for minutes

T = TypeVar("T")

_UPLOAD_AND_SUBMIT = r"""
runs=$1 run_id=$2; shift 2
final="$runs/$run_id"
tmp="$runs/.$run_id.partial.$$"
mkdir -p -- "$runs" || exit 90
if [ -e "$final" ]; then echo "@@EXISTS" >&2; exit 91; fi
mkdir -- "$tmp" || exit 92
if ! tar -xzf - -C "$tmp"; then rm -rf -- "$tmp"; exit 93; fi
# -T: never move the folder INTO a final folder that appeared meanwhile; a run folder is never
# empty, so rename(2) refuses to replace one and only one submission can claim the name.
if ! mv -T -- "$tmp" "$final" 2>/dev/null; then rm -rf -- "$tmp"; echo "@@EXISTS" >&2; exit 91; fi
cd -- "$final" || exit 95
echo "@@UPLOADED"
exec "$@"
"""

# Whether the run folder is in place, and the id of any job that already ran in it: its
# status files and log names carry the job id even after SLURM has forgotten the job.
_EVIDENCE = r"""
d=$1
if [ ! -f "$d/job.sbatch" ]; then echo "@@ABSENT"; exit 0; fi
echo "@@PRESENT"
for f in "$d"/status/*.json; do
    [ -f "$f" ] && sed -n 's/.*"array_job_id": "\([^"]*\)".*/@@JOB \1/p' "$f"
done
for f in "$d"/logs/slurm-*; do
    [ -e "$f" ] || continue
    n=${f##*/slurm-}
    echo "@@JOB ${n%%_*}"
done
"""

_REMOVE_RUN = 'case "$2" in "$1"/*) rm -rf -- "$2" ;; esac'


@dataclass
class SubmitResult:
    run_id: str
    job_id: str | None
    cluster: str
    scheduler: str
    run_dir: str
    task_count: int
    logs_dir: str
    output_dir: str
    deploy_id: str | None
    adopted: bool = False
    resumed: bool = False
    dry_run: bool = False
    remote_commands: int = 0
    script: str = ""
    upload_plan: list[dict[str, Any]] = field(default_factory=list)
    part_job_ids: list[str] = field(default_factory=list)  # a split sweep's jobs, by part
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # The script is shown by --dry-run, not repeated in every result.
        return {key: value for key, value in asdict(self).items() if key != "script"}


@dataclass
class SubmitContext:
    profile: ClusterProfile
    scheduler: Scheduler  # talks to the cluster through its own transport
    store: Store
    commands: int = 0

    @property
    def label(self) -> str:
        return self.scheduler.transport.label

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float = 300
    ) -> CommandResult:
        self.commands += 1
        return self.scheduler.transport.run(argv, stdin=stdin, timeout_s=timeout_s)

    def submit(self, request: SubmitRequest) -> str:
        """The scheduler's own submit (the run folder is in place), counted like ``run``."""
        self.commands += 1
        return submit_job(self.scheduler, request, timeout_s=300)


def _scheduler_argv(ctx: SubmitContext, record: RunRecord) -> list[str]:
    """The scheduler's submit command, which the upload step runs from inside the run folder."""
    request = submit_request(
        record.run_id, record.remote_dir, record.plan, submission=record.submission
    )
    return ctx.scheduler.submit_argv(request)


@contextmanager
def _recovery_lock(run_id: str) -> Iterator[None]:
    """One process at a time submits or recovers a run: two would both miss the job and both
    submit. A second one waits (it will then find the job and adopt it)."""
    path = _pending_archive_path(run_id).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_S
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UsageError(
                        f"another submit command has been submitting run {run_id} of this "
                        f"config for over {LOCK_WAIT_S:.0f} s",
                        "look with ./monitor_jobs.py --run-id " + run_id
                        + ", or pass --new to start a separate run",
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def retry_submission(
    step: Callable[[int], T],
    *,
    what: str,
    advice: str,
    give_up: Callable[[ConnectError], None] = lambda _exc: None,
) -> T:
    """``step(try number)`` until it returns. A dropped connection may have lost an answer, so
    it is tried again after a pause (the step then looks before it submits); when the link stays
    down, ``give_up`` records why and the error names ``what`` and how to resume (``advice``)."""
    for tries in range(1, MAX_RECOVERY_ATTEMPTS + 1):
        try:
            return step(tries)
        except ConnectError as exc:
            if not exc.transient or tries >= MAX_RECOVERY_ATTEMPTS:
                give_up(exc)
                raise ConnectError(
                    f"the connection dropped while submitting {what}: {exc.message}",
                    advice,
                    hop=None,
                ) from exc
            time.sleep(min(2.0 * tries, 8.0))
    raise AssertionError("the last try returns or raises")


def find_or_submit(
    ctx: SubmitContext,
    name: str,
    remote_dir: str,
    submit: Callable[[], str],
    *,
    look_first: bool,
    what: str,
    advice: str,
    give_up: Callable[[ConnectError], None] = lambda _exc: None,
) -> tuple[str, bool]:
    """(job id, adopted): the job called ``name`` if the scheduler has one, else ``submit()``'s.
    It looks first when told to, and before every retry, as an earlier answer may have been lost."""

    def step(tries: int) -> tuple[str, bool]:
        if look_first or tries > 1:
            ctx.commands += 1
            found = ctx.scheduler.find_job(name, remote_dir)
            if found:
                return str(found), True
        return submit(), False

    return retry_submission(step, what=what, advice=advice, give_up=give_up)


def _pending_archive_path(run_id: str) -> Path:
    return paths.state_dir() / "pending" / f"{run_id}.tar.gz"


def submit_plan(
    plan: JobPlan,
    ctx: SubmitContext,
    *,
    deployment: dict[str, Any] | None,
    resume: bool = True,
    after: Mapping[str, Sequence[str]] | None = None,
) -> SubmitResult:
    """Submit ``plan`` exactly once (or recover an unfinished submission of the same config).
    ``after`` (run id -> its job ids) holds the job until all those jobs completed well."""
    profile, store = ctx.profile, ctx.store
    if resume:
        unfinished = store.unfinished_submissions(profile.name, plan.config_hash)
        if unfinished:
            record = unfinished[-1]
            _check_same_inputs(record, upload_inputs(plan, deployment, ctx.scheduler.run_files()))
            with _recovery_lock(record.run_id):
                fresh = store.get_run(record.run_id) or record
                if fresh.phase is RunPhase.SUBMITTED and fresh.job_id:
                    return _result(ctx, fresh, fresh.job_id, resumed=True, adopted=False)
                return _finish(ctx, fresh, resumed=True)

    limits = array_limits(ctx.scheduler, store, profile)
    size_warnings = check_sweep_size(len(plan.tasks), limits, profile.name)
    prepared = prepare_run(
        plan, profile, deployment, ctx.scheduler.run_files(), after=after,
        max_array_size=limits.max_array_size,
    )  # fmt: skip
    # The direct runner refuses --after here, before anything is recorded or uploaded.
    ctx.scheduler.submit_argv(
        submit_request(prepared.run_id, prepared.run_dir, plan.to_dict(), submission=prepared.submission)
    )
    preflight(ctx.scheduler, profile, prepared.script)
    ctx.commands += 1
    archive = prepared.archive()
    pending = _pending_archive_path(prepared.run_id)
    pending.parent.mkdir(parents=True, exist_ok=True)
    pending.write_bytes(archive)
    plan_dict = plan.to_dict()
    # Held from the moment the run is recorded until it has its job: a second command started
    # now sees an unfinished run, and must not "recover" it while this one is submitting it.
    with _recovery_lock(prepared.run_id):
        result = _record_and_submit(ctx, plan, prepared, archive, plan_dict)
    result.warnings.extend(size_warnings)
    return result


def _record_and_submit(
    ctx: SubmitContext,
    plan: JobPlan,
    prepared: PreparedRun,
    archive: bytes,
    plan_dict: dict[str, Any],
) -> SubmitResult:
    profile, store = ctx.profile, ctx.store
    store.add_run(
        run_id=prepared.run_id,
        problem=plan.problem,
        cluster=profile.name,
        scheduler=profile.scheduler,
        remote_dir=prepared.run_dir,
        task_ids=[task.task_id for task in plan.tasks],
        config_hash=plan.config_hash,
        deploy_id=prepared.deploy_id,
        git_sha=prepared.code_git_sha,
        plan=plan_dict,
        submission=prepared.submission,
    )
    store.set_inputs_hash(prepared.run_id, inputs_hash(prepared.submission["inputs"]))
    added = store.get_run(prepared.run_id)
    assert added is not None
    result = _finish(ctx, added, resumed=False, archive=archive)
    result.script = prepared.script
    result.upload_plan = prepared.upload_plan()
    return result


def _check_same_inputs(record: RunRecord, now: dict[str, Any]) -> None:
    """An interrupted run resumes with the archive saved then; refuse if that is stale now."""
    if record.inputs_hash is None or record.inputs_hash == inputs_hash(now):
        return  # a run recorded before inputs were kept resumes as it always did
    before = (record.submission or {}).get("inputs") or {}
    changed = [key for key in sorted(now) if before.get(key) != now[key]]
    shown = "; ".join(f"{key}: {before.get(key)!r} then, {now[key]!r} now" for key in changed)
    raise UsageError(
        f"run {record.run_id} of this config was interrupted before it was submitted, but what "
        f"its upload was made from has changed since ({shown or 'inputs differ'})",
        "submit with --new to start a new run from what is here now, or restore what changed "
        "to resume the interrupted one",
    )


def _finish(
    ctx: SubmitContext, record: RunRecord, *, resumed: bool, archive: bytes | None = None
) -> SubmitResult:
    """Drive one recorded run to SUBMITTED: upload + submit, recovering lost answers."""
    store = ctx.store
    pending = _pending_archive_path(record.run_id)
    if archive is None and pending.is_file():
        archive = pending.read_bytes()
    job_id: str | None = None
    adopted = False
    if resumed and (record.submission or {}).get("array_parts"):
        # A split sweep interrupted after its first part was recorded: only the rest is left.
        job_id = store.part_jobs(record.run_id).get(0)
        adopted = job_id is not None

    def step(tries: int) -> tuple[str, bool]:
        if tries > 1 or resumed:  # an answer may have been lost: find what came of it first
            return _recover(ctx, record, archive)
        if archive is None:
            raise PreflightError(f"run {record.run_id} has no saved upload archive", "submit again")
        return _upload_and_submit(ctx, record, archive), False

    if job_id is None:
        job_id, adopted = retry_submission(
            step,
            what=f"run {record.run_id}",
            advice="run the same submit command again: it will find the job if SLURM got it, "
            "and submit it otherwise (never twice)",
            give_up=lambda exc: store.set_phase(record.run_id, RunPhase.SUBMITTING, error=str(exc)),
        )
    parts = (record.submission or {}).get("array_parts") or []
    if parts:
        store.record_job(record.run_id, record.cluster, job_id, adopted=adopted, part=0)
        _submit_other_parts(ctx, record, len(parts), look_first=resumed)
    else:
        store.record_job(record.run_id, record.cluster, job_id, adopted=adopted)
    pending.unlink(missing_ok=True)
    return _result(ctx, record, job_id, resumed=resumed, adopted=adopted)


def _submit_other_parts(
    ctx: SubmitContext, record: RunRecord, part_count: int, *, look_first: bool
) -> None:
    """Parts 1.. of a split sweep (the first came with the upload), each exactly once: a part
    already recorded is skipped, and one whose answer was lost is found by its name."""
    for part in range(1, part_count):
        if part in ctx.store.part_jobs(record.run_id):
            continue
        request = submit_request(
            record.run_id, record.remote_dir, record.plan, submission=record.submission,
            part=part,
        )  # fmt: skip
        job_id, adopted = find_or_submit(
            ctx, request.run_id, record.remote_dir, functools.partial(ctx.submit, request),
            look_first=look_first,
            what=f"part {part} of run {record.run_id}",
            advice="run the same submit command again: it finds the parts SLURM got and "
            "submits only the others (never twice)",
        )  # fmt: skip
        ctx.store.record_job(record.run_id, record.cluster, job_id, adopted=adopted, part=part)


def _result(
    ctx: SubmitContext, record: RunRecord, job_id: str, *, resumed: bool, adopted: bool
) -> SubmitResult:
    run = RunLayout(record.remote_dir)
    return SubmitResult(
        run_id=record.run_id,
        job_id=job_id,
        cluster=record.cluster,
        scheduler=record.scheduler,
        run_dir=record.remote_dir,
        task_count=record.task_count,
        logs_dir=run.logs_dir,
        output_dir=run.output_root,
        deploy_id=record.deploy_id,
        adopted=adopted,
        resumed=resumed,
        remote_commands=ctx.commands,
        part_job_ids=[job for _, job in sorted(ctx.store.part_jobs(record.run_id).items())]
        if (record.submission or {}).get("array_parts")
        else [],
    )


def _accept(ctx: SubmitContext, record: RunRecord, result: CommandResult) -> str:
    """Interpret the upload-and-submit command's answer."""
    uploaded = "@@UPLOADED" in result.stdout_text
    if result.exit_status == 91:
        # The folder exists already: an earlier attempt got this far. Recover instead.
        job_id, _ = _recover(ctx, record, None)
        return job_id
    if not uploaded:
        ctx.store.set_phase(record.run_id, RunPhase.ABANDONED, error=result.output_tail())
        result.check(
            f"uploading run {record.run_id} to {ctx.label}:{record.remote_dir}",
            "check free space and permissions under remote_root; nothing was submitted",
        )
    if result.exit_status < 0:
        # No exit status came back (the command was killed or the channel cut): the job may
        # exist. That is a lost answer, not a refusal.
        raise ConnectError(
            "the submit command ended without an exit status",
            hop=ctx.label,
            transient=True,
        )
    stdout = result.stdout_text.replace("@@UPLOADED\n", "", 1)
    trimmed = CommandResult(result.argv, result.exit_status, stdout.encode(), result.stderr)
    try:
        return ctx.scheduler.parse_submit(trimmed)
    except SchedulerError as exc:
        if exc.transient or result.exit_status == 0:
            # Exit 0 means the scheduler took something: never treat it as a refusal.
            ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING, error=exc.message)
            if result.exit_status == 0:
                found = ctx.scheduler.find_job(record.run_id, record.remote_dir)
                if found:
                    return str(found)
                raise SchedulerError(
                    f"the scheduler accepted run {record.run_id} but its answer had no job id: "
                    f"{exc.message}",
                    "run the same submit command again: it looks the job up by name first",
                    transient=True,
                ) from exc
            raise
        # A refusal: nothing runs. Remove the folder so nothing half-made stays behind.
        ctx.store.set_phase(record.run_id, RunPhase.ABANDONED, error=exc.message)
        ctx.run(
            [
                "sh",
                "-c",
                _REMOVE_RUN,
                "globtim-remove",
                posixpath.dirname(record.remote_dir),
                record.remote_dir,
            ]
        )
        raise


def _recover(ctx: SubmitContext, record: RunRecord, archive: bytes | None) -> tuple[str, bool]:
    """After a lost answer: adopt the job if the scheduler has it, else (re)submit it."""
    ctx.commands += 1
    found = ctx.scheduler.find_job(record.run_id, record.remote_dir)
    if found:
        return str(found), True
    evidence = ctx.run(["sh", "-c", _EVIDENCE, "globtim-evidence", record.remote_dir])
    lines = evidence.stdout_text.splitlines()
    ran = sorted({line.split(" ", 1)[1] for line in lines if line.startswith("@@JOB ")})
    if len(ran) == 1:
        # The scheduler has forgotten the job (aged out, no accounting), but it ran here.
        return ran[0], True
    if len(ran) > 1:
        raise SchedulerError(
            f"jobs {', '.join(ran)} all ran in the folder of run {record.run_id}",
            f"inspect {ctx.label}:{record.remote_dir}; submit with --new to start over",
        )
    if "@@PRESENT" in lines:
        ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING)
        request = submit_request(
            record.run_id, record.remote_dir, record.plan, submission=record.submission
        )
        return ctx.submit(request), False
    if archive is None:
        raise PreflightError(
            f"run {record.run_id} never reached the cluster and its upload archive is gone",
            "submit the job again with --new",
        )
    return _upload_and_submit(ctx, record, archive), False


def _upload_and_submit(ctx: SubmitContext, record: RunRecord, archive: bytes) -> str:
    """One command: unpack the archive as the run folder, then submit from inside it."""
    ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING)
    argv = [
        "sh",
        "-c",
        _UPLOAD_AND_SUBMIT,
        "globtim-submit",
        posixpath.dirname(record.remote_dir),
        record.run_id,
        *_scheduler_argv(ctx, record),
    ]
    return _accept(ctx, record, ctx.run(argv, stdin=archive))
