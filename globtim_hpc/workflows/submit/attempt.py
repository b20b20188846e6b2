"""A rerun attempt, submitted exactly once: one command moves the chosen tasks' earlier files
aside, writes the attempt's script and submits it as one array job over only those tasks.

The attempt is recorded in the registry (phase ``submitting``) before anything remote happens.
When the answer is lost, recovery asks the scheduler for a job carrying the attempt's name
(``<run id>.a<n>``, see ``layout.attempt_job_name``) and adopts it; only when there is none is
the command run again. Moving files aside is idempotent (a file already moved stays moved), and
a refusal by the scheduler moves them back, so the run reads as before.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from globtim_hpc.errors import ConnectError, SchedulerError
from globtim_hpc.jobs.arrays import ArrayPart
from globtim_hpc.layout import (
    ATTEMPTS_DIR,
    JOB_SCRIPT,
    OUTPUT_DIR,
    STATUS_DIR,
    attempt_job_name,
    part_job_name,
)
from globtim_hpc.registry.records import RunRecord
from globtim_hpc.scheduler.base import SubmitRequest
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.workflows.submit.exactly_once import (
    SubmitContext,
    _recovery_lock,
    find_or_submit,
)

# $1 run folder, $2 attempt, $3 script path (relative), then task_id:earlier_attempt pairs,
# "--", then the scheduler's submit argv. The script text arrives on stdin.
_SUBMIT_ATTEMPT = r"""
run_dir=$1 attempt=$2 script=$3; shift 3
cd -- "$run_dir" || exit 95
moves=""
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do moves="$moves $1"; shift; done
shift
mkdir -p -- "ATTEMPTS/$attempt" || exit 90
tmp="$script.tmp.$$"
if ! { cat > "$tmp" && mv -f -- "$tmp" "$script"; }; then rm -f -- "$tmp"; exit 92; fi
moved=""
for m in $moves; do
    tid=${m%%:*} prev=${m#*:}
    dest="ATTEMPTS/$prev"
    mkdir -p -- "$dest/STATUS" "$dest/OUTPUT" || exit 90
    if [ -e "STATUS/$tid.json" ] && [ ! -e "$dest/STATUS/$tid.json" ]; then
        mv -- "STATUS/$tid.json" "$dest/STATUS/$tid.json" && moved="$moved s:$m"
    fi
    if [ -e "OUTPUT/$tid" ] && [ ! -e "$dest/OUTPUT/$tid" ]; then
        mv -T -- "OUTPUT/$tid" "$dest/OUTPUT/$tid" && moved="$moved o:$m"
    fi
done
out="ATTEMPTS/$attempt/.submit.out.$$" err="ATTEMPTS/$attempt/.submit.err.$$"
"$@" > "$out" 2> "$err"
rc=$?
cat -- "$out"; cat -- "$err" >&2
rm -f -- "$out" "$err"
if [ "$rc" -ne 0 ]; then
    # Refused: nothing runs, so the earlier attempt's files go back where readers look.
    for m in $moved; do
        kind=${m%%:*} rest=${m#*:}
        tid=${rest%%:*} prev=${rest#*:}
        case $kind in
            s) mv -- "ATTEMPTS/$prev/STATUS/$tid.json" "STATUS/$tid.json" ;;
            o) mv -T -- "ATTEMPTS/$prev/OUTPUT/$tid" "OUTPUT/$tid" ;;
        esac
    done
fi
exit "$rc"
""".replace("ATTEMPTS", ATTEMPTS_DIR).replace("STATUS", STATUS_DIR).replace("OUTPUT", OUTPUT_DIR)


@dataclass
class AttemptSpec:
    """What one attempt runs: the chosen tasks (index -> task id and its current attempt)."""

    run_id: str
    attempt: int
    task_indices: tuple[int, ...]
    task_ids: dict[int, str]
    earlier: dict[int, int]  # index -> the attempt whose files are moved aside
    resources: dict[str, Any]
    cause: str
    script: str
    # A rerun over task indices past the array limit runs as several parts (jobs.arrays);
    # empty: one job whose --array lists the task indices themselves.
    parts: tuple[ArrayPart, ...] = ()
    throttle: int | None = None

    @property
    def job_name(self) -> str:
        return attempt_job_name(self.run_id, self.attempt)

    def script_rel(self) -> str:
        return posixpath.join(ATTEMPTS_DIR, str(self.attempt), JOB_SCRIPT)


@dataclass
class AttemptResult:
    run_id: str
    attempt: int
    job_ids: list[str]
    task_indices: list[int]
    array: str
    resources: dict[str, Any]
    cause: str
    job_name: str
    script_path: str
    adopted: bool = False
    resumed: bool = False
    dry_run: bool = False
    remote_commands: int = 0
    reasons: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    script: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if key != "script"}
        data["reasons"] = {str(k): v for k, v in self.reasons.items()}
        return data


def _request(record: RunRecord, spec: AttemptSpec, part: int = 0) -> SubmitRequest:
    chosen = spec.parts[part] if spec.parts else None
    return SubmitRequest(
        run_id=part_job_name(spec.run_id, spec.attempt, part) if chosen else spec.job_name,
        run_dir=record.remote_dir,
        script_path=posixpath.join(record.remote_dir, spec.script_rel()),
        task_count=len(spec.task_indices),
        max_parallel=int(spec.resources.get("max_parallel") or 1),
        time_limit_s=int(spec.resources["time_min"]) * 60,
        cpus=int(spec.resources["cpus"]),
        job_tag=f"a{spec.attempt}",
        array=chosen.array_spec(spec.throttle) if chosen else None,
        task_offset=chosen.offset if chosen else 0,
    )


def _submit_command(ctx: SubmitContext, record: RunRecord, spec: AttemptSpec) -> str:
    pairs = [f"{spec.task_ids[i]}:{spec.earlier[i]}" for i in spec.task_indices]
    argv = [
        "sh", "-c", _SUBMIT_ATTEMPT, "globtim-rerun", record.remote_dir, str(spec.attempt),
        spec.script_rel(), *pairs, "--", *ctx.scheduler.submit_argv(_request(record, spec)),
    ]  # fmt: skip
    result = ctx.run(argv, stdin=spec.script.encode())
    return _accept(ctx, record, spec, result)


def _accept(ctx: SubmitContext, record: RunRecord, spec: AttemptSpec, result: CommandResult) -> str:
    if result.exit_status < 0:
        raise ConnectError(
            "the rerun's submit command ended without an exit status",
            hop=ctx.label,
            transient=True,
        )
    if result.exit_status in (90, 92, 95):
        result.check(
            f"writing attempt {spec.attempt} of run {record.run_id} into {record.remote_dir}",
            "check free space and permissions under remote_root; nothing was submitted",
        )
    try:
        return ctx.scheduler.parse_submit(result)
    except SchedulerError as exc:
        if result.exit_status == 0 or exc.transient:
            found = ctx.scheduler.find_job(spec.job_name, record.remote_dir)
            if found:
                return str(found)
        ctx.store.set_attempt_error(record.run_id, spec.attempt, exc.message)
        raise


def submit_attempt(
    ctx: SubmitContext, record: RunRecord, spec: AttemptSpec, *, resumed: bool
) -> AttemptResult:
    """Submit ``spec`` (already recorded in the registry) exactly once."""
    with _recovery_lock(spec.job_name):
        done = next(
            (a for a in ctx.store.attempts(record.run_id) if a.attempt == spec.attempt), None
        )
        if done is not None and done.phase == "submitted" and done.job_ids:
            return _result(ctx, spec, list(done.job_ids), resumed=True, adopted=False)
        job_id, adopted = _find_or_submit_part(
            ctx, record, spec, spec.job_name, lambda: _submit_command(ctx, record, spec),
            look_first=resumed, part="its first part" if spec.parts else "its job",
        )  # fmt: skip
        if not spec.parts:
            ctx.store.start_attempt(
                record.run_id, record.cluster, spec.attempt, [(job_id, spec.task_indices)],
                adopted=adopted,
            )  # fmt: skip
            return _result(ctx, spec, [job_id], resumed=resumed, adopted=adopted)
        job_ids = [job_id, *_other_parts(ctx, record, spec, look_first=resumed)]
        ctx.store.start_attempt(
            record.run_id, record.cluster, spec.attempt,
            [(job, part.indices) for job, part in zip(job_ids, spec.parts, strict=True)],
            adopted=adopted, offsets=[part.offset for part in spec.parts],
        )  # fmt: skip
        return _result(ctx, spec, job_ids, resumed=resumed, adopted=adopted)


def _other_parts(
    ctx: SubmitContext, record: RunRecord, spec: AttemptSpec, *, look_first: bool
) -> list[str]:
    """Parts 1.. of a split attempt (the first moved the files aside and wrote the script),
    each found by its name before it is submitted whenever an answer may have been lost."""
    job_ids: list[str] = []
    for part in spec.parts[1:]:
        request = _request(record, spec, part.part)
        submit = functools.partial(ctx.submit, request)
        job_id, _ = _find_or_submit_part(
            ctx, record, spec, request.run_id, submit, look_first=look_first,
            part=f"part {part.part}",
        )  # fmt: skip
        job_ids.append(job_id)
    return job_ids


def _find_or_submit_part(
    ctx: SubmitContext,
    record: RunRecord,
    spec: AttemptSpec,
    job_name: str,
    submit: Callable[[], str],
    *,
    look_first: bool,
    part: str,
) -> tuple[str, bool]:
    """One job of an attempt, exactly once; a failure is kept on the attempt's record."""
    return find_or_submit(
        ctx, job_name, record.remote_dir, submit, look_first=look_first,
        what=f"attempt {spec.attempt} of run {record.run_id} ({part})",
        advice="run the same rerun command again: it finds each job of the attempt SLURM got "
        "and submits only the others (never twice)",
        give_up=lambda exc: ctx.store.set_attempt_error(record.run_id, spec.attempt, str(exc)),
    )  # fmt: skip


def _result(
    ctx: SubmitContext, spec: AttemptSpec, job_ids: list[str], *, resumed: bool, adopted: bool
) -> AttemptResult:
    return attempt_result(
        spec, job_ids, adopted=adopted, resumed=resumed, remote_commands=ctx.commands
    )


def attempt_result(spec: AttemptSpec, job_ids: list[str], **outcome: Any) -> AttemptResult:
    """What an attempt was (from its spec) and what became of it (``outcome``: dry run,
    adopted, resumed, remote commands, reasons)."""
    from globtim_hpc.indices import compress_indices

    return AttemptResult(
        run_id=spec.run_id,
        attempt=spec.attempt,
        job_ids=job_ids,
        task_indices=list(spec.task_indices),
        array=compress_indices(spec.task_indices),
        resources=spec.resources,
        cause=spec.cause,
        job_name=spec.job_name,
        script_path=spec.script_rel(),
        script=spec.script,
        **outcome,
    )
