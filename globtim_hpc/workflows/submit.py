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
import getpass
import io
import json
import os
import posixpath
import socket
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from globtim_hpc import paths
from globtim_hpc.errors import ConnectError, PreflightError, SchedulerError, UsageError
from globtim_hpc.jobs.render import ScriptInputs, render_script
from globtim_hpc.layout import (
    DIRECT_DIR,
    DRIVER_DIR,
    JOB_SCRIPT,
    LOGS_DIR,
    OUTPUT_DIR,
    PARAMS_DIR,
    STATUS_DIR,
    SUBMISSION_JSON,
    RemoteLayout,
    RunLayout,
    new_run_id,
)
from globtim_hpc.models import RunPhase
from globtim_hpc.registry.store import RunRecord, Store, utc_now
from globtim_hpc.scheduler.direct import RUNNER_NAME, launch_argv, parse_launch
from globtim_hpc.toolinfo import tool_info
from globtim_hpc.transport.base import CommandResult, Transport

if TYPE_CHECKING:
    from globtim_hpc.jobs.plan import JobPlan
    from globtim_hpc.settings.profile import ClusterProfile

MAX_RECOVERY_ATTEMPTS = 4

# Constant shell text; every variable part is a positional argument (quoted by the transport).
_PREFLIGHT = r"""
root=$1 home=$2
probe=$root
while [ ! -d "$probe" ]; do probe=$(dirname -- "$probe"); done
printf '@@ROOT_EXISTING %s\n' "$probe"
df -Pk -- "$probe" | awk 'NR==2 {print "@@ROOT_AVAIL_KB", $4}'
if t=$(mktemp -d "$probe/.globtim-hpc-probe.XXXXXX" 2>/dev/null) && rmdir -- "$t"; then
    echo "@@ROOT_WRITABLE 1"
else
    echo "@@ROOT_WRITABLE 0"
fi
if [ -n "$home" ]; then
    if [ -d "$home" ]; then
        df -Pk -- "$home" | awk 'NR==2 {print "@@HOME_AVAIL_KB", $4}'
        f="$home/.globtim-hpc-probe.$$"
        if head -c 4096 /dev/zero > "$f" 2>/dev/null; then echo "@@HOME_WRITABLE 1"; else echo "@@HOME_WRITABLE 0"; fi
        rm -f -- "$f"
    else
        echo "@@HOME_MISSING"
    fi
fi
if [ "${3:-}" = sbatch-test-only ]; then
    # The batch script arrives on stdin: SLURM judges it before anything is written.
    out=$(sbatch --test-only 2>&1)
    printf '@@TEST_ONLY_RC %s\n' "$?"
    printf '%s\n' "$out" | sed 's/^/@@TEST_ONLY_OUT /'
fi
"""

_UPLOAD_AND_SUBMIT = r"""
runs=$1 run_id=$2; shift 2
final="$runs/$run_id"
tmp="$runs/.$run_id.partial.$$"
mkdir -p -- "$runs" || exit 90
if [ -e "$final" ]; then echo "@@EXISTS" >&2; exit 91; fi
mkdir -- "$tmp" || exit 92
if ! tar -xzf - -C "$tmp"; then rm -rf -- "$tmp"; exit 93; fi
if ! mv -- "$tmp" "$final"; then rm -rf -- "$tmp"; exit 94; fi
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
if [ -f "$d/direct/runner.pid" ]; then echo "@@JOB d$(cat "$d/direct/runner.pid")"; fi
"""

_REMOVE_RUN = 'case "$2" in "$1"/*) rm -rf -- "$2" ;; esac'


@dataclass
class PreparedRun:
    run_id: str
    run_dir: str
    script: str
    files: dict[str, bytes]  # name in the run folder -> content
    submission: dict[str, Any]
    deploy_id: str | None
    code_git_sha: str | None

    def archive(self) -> bytes:
        """A gzipped tar of the run folder, with the empty folders the job expects."""
        buffer = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for folder in (LOGS_DIR, STATUS_DIR, OUTPUT_DIR, PARAMS_DIR, DRIVER_DIR, DIRECT_DIR):
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = now
                tar.addfile(info)
            for name in sorted(self.files):
                data = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") or name == RUNNER_PATH else 0o644
                info.mtime = now
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def upload_plan(self) -> list[dict[str, Any]]:
        return [{"path": name, "bytes": len(self.files[name])} for name in sorted(self.files)]


RUNNER_PATH = posixpath.join(DIRECT_DIR, RUNNER_NAME)


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
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # The script is shown by --dry-run, not repeated in every result.
        return {key: value for key, value in asdict(self).items() if key != "script"}


def _driver_files(plan: JobPlan) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(paths.julia_dir().glob("*.jl")):
        files[posixpath.join(DRIVER_DIR, path.name)] = path.read_bytes()
    if posixpath.join(DRIVER_DIR, plan.driver) not in files:
        raise PreflightError(
            f"the driver {plan.driver} is missing from {paths.julia_dir()}",
            "restore julia/ from the repository",
        )
    return files


def prepare_run(
    plan: JobPlan,
    profile: ClusterProfile,
    deployment: dict[str, Any] | None,
    *,
    run_id: str | None = None,
) -> PreparedRun:
    """Everything the run folder will hold, rendered locally; nothing remote is touched."""
    run_id = run_id or new_run_id(plan.problem)
    run_dir = RemoteLayout(profile.remote_root).run_dir(run_id)
    julia_project = deployment["remote_dir"] if deployment else None
    script = render_script(plan, profile, ScriptInputs(run_id, run_dir, julia_project))
    files: dict[str, bytes] = {JOB_SCRIPT: script.encode()}
    files.update(_driver_files(plan))
    for task in plan.tasks:
        files[posixpath.join(PARAMS_DIR, f"{task.task_id}.json")] = (
            json.dumps(task.params, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        ).encode()
    for local, name in plan.extra_files:
        files[name] = Path(local).read_bytes()
    if profile.scheduler == "direct":
        files[RUNNER_PATH] = (paths.templates_dir() / "direct_runner.sh").read_bytes()
    deploy_id: str | None = deployment["deploy_id"] if deployment else None
    code_git_sha: str | None = deployment.get("git_sha") if deployment else None
    submission: dict[str, Any] = {
        "schema": "globtim-hpc/submission/1",
        "run_id": run_id,
        "problem": plan.problem,
        "description": plan.description,
        "cluster": profile.name,
        "scheduler": profile.scheduler,
        "remote_dir": run_dir,
        "created_at": utc_now(),
        "user": _user(),
        "submit_host": socket.gethostname(),
        "tool": tool_info(),
        "deploy_id": deploy_id,
        "git_sha": code_git_sha,
        "code_dirty": deployment.get("dirty") if deployment else None,
        "julia_project": julia_project,
        "julia_executable": profile.julia_executable,
        "julia_modules": list(profile.julia_modules),
        "depot_path": profile.depot_path,
        "config_path": plan.config_path,
        "config_hash": plan.config_hash,
        "driver": plan.driver,
        "resources": plan.resources.to_dict(),
        "tasks": [task.to_dict() for task in plan.tasks],
    }
    files[SUBMISSION_JSON] = (json.dumps(submission, indent=2, sort_keys=True) + "\n").encode()
    return PreparedRun(
        run_id=run_id,
        run_dir=run_dir,
        script=script,
        files=files,
        submission=submission,
        deploy_id=deploy_id,
        code_git_sha=code_git_sha,
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _kb(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def preflight(
    transport: Transport, profile: ClusterProfile, script: str | None = None
) -> dict[str, Any]:
    """Free space and writability of the remote root and of home and, given a batch script and
    a SLURM profile with ``slurm.test_only``, SLURM's verdict on it: one remote command."""
    home = profile.home_dir or ""
    argv = ["sh", "-c", _PREFLIGHT, "globtim-preflight", profile.remote_root, home]
    test_only = script is not None and profile.scheduler == "slurm" and profile.slurm_test_only
    if test_only:
        argv.append("sbatch-test-only")
    result = transport.run(
        argv, timeout_s=60, stdin=script.encode() if test_only and script is not None else None
    )
    result.check("the pre-flight check of the remote root and home")
    facts: dict[str, str] = {}
    test_output: list[str] = []
    for line in result.stdout_text.splitlines():
        if line.startswith("@@TEST_ONLY_OUT "):
            test_output.append(line[len("@@TEST_ONLY_OUT ") :])
        elif line.startswith("@@"):
            key, _, value = line[2:].partition(" ")
            facts[key] = value.strip()
    where = f"{transport.label}:{profile.remote_root}"
    if facts.get("ROOT_WRITABLE") != "1":
        raise PreflightError(
            f"the remote root {where} is not writable (nearest existing folder: "
            f"{facts.get('ROOT_EXISTING', '?')})",
            "fix its permissions or set remote_root in the cluster profile to a folder you own "
            "on project space; nothing was submitted",
        )
    root_kb = _kb(facts.get("ROOT_AVAIL_KB", ""))
    if root_kb is not None and root_kb < profile.min_free_root_mb * 1024:
        raise PreflightError(
            f"only {root_kb // 1024} MB free under {where}; at least {profile.min_free_root_mb} MB "
            "are needed",
            "free space there (old runs: collect them, then delete) or lower min_free_root_mb; "
            "nothing was submitted",
        )
    if home:
        if "HOME_MISSING" in facts:
            raise PreflightError(
                f"home_dir {transport.label}:{home} does not exist",
                "fix home_dir in the cluster profile",
            )
        home_kb = _kb(facts.get("HOME_AVAIL_KB", ""))
        if facts.get("HOME_WRITABLE") != "1" or (
            home_kb is not None and home_kb < profile.min_free_home_mb * 1024
        ):
            shown = f"{home_kb // 1024} MB free" if home_kb is not None else "not writable"
            raise PreflightError(
                f"home {transport.label}:{home} is full or over quota ({shown}; at least "
                f"{profile.min_free_home_mb} MB needed)",
                "a full home breaks SLURM output and logins: delete files there (a Julia depot in "
                "~/.julia is the usual culprit; the toolkit keeps its depot under remote_root); "
                "nothing was submitted",
            )
    if facts.get("TEST_ONLY_RC", "0") != "0":
        from globtim_hpc.scheduler.slurm_commands import parse_sbatch_error

        refusal = parse_sbatch_error("\n".join(test_output))
        refusal.hint = (refusal.hint or "") + " (sbatch --test-only; nothing was submitted)"
        raise refusal
    return facts


@dataclass
class SubmitContext:
    profile: ClusterProfile
    transport: Transport
    scheduler: Any  # SlurmScheduler or DirectScheduler
    store: Store
    # Called after a command that may have reached the scheduler has been sent: lets tests
    # cut the connection at exactly that moment.
    after_submit_sent: Callable[[], None] | None = None
    commands: int = 0

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float = 300
    ) -> CommandResult:
        self.commands += 1
        return self.transport.run(argv, stdin=stdin, timeout_s=timeout_s)


def _scheduler_argv(ctx: SubmitContext, run_dir: str, plan_dict: dict[str, Any]) -> list[str]:
    if ctx.profile.scheduler == "direct":
        resources = plan_dict["resources"]
        task_count = len(plan_dict["tasks"])
        return launch_argv(
            run_dir,
            task_count,
            int(resources.get("max_parallel") or 1),
            int(resources["time_min"]) * 60,
            int(resources["cpus"]),
        )
    from globtim_hpc.scheduler.slurm_commands import sbatch_argv

    return list(sbatch_argv(posixpath.join(run_dir, JOB_SCRIPT), chdir=run_dir))


def _parse_submit(ctx: SubmitContext, result: CommandResult) -> str:
    if ctx.profile.scheduler == "direct":
        return parse_launch(result)
    from globtim_hpc.scheduler.slurm_commands import parse_sbatch, parse_sbatch_error

    if result.exit_status != 0:
        raise parse_sbatch_error(result.stderr_text)
    return parse_sbatch(result.stdout_text)


@contextmanager
def _recovery_lock(run_id: str) -> Iterator[None]:
    """One process at a time recovers a run: two would both miss the job and both submit."""
    path = _pending_archive_path(run_id).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another submit command is recovering run {run_id} right now",
                "wait for it to finish, then look with ./monitor_jobs.py --run-id " + run_id,
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pending_archive_path(run_id: str) -> Path:
    return paths.state_dir() / "pending" / f"{run_id}.tar.gz"


def submit_plan(
    plan: JobPlan,
    ctx: SubmitContext,
    *,
    deployment: dict[str, Any] | None,
    resume: bool = True,
) -> SubmitResult:
    """Submit ``plan`` exactly once (or recover an unfinished submission of the same config)."""
    profile, store = ctx.profile, ctx.store
    if resume:
        unfinished = store.unfinished_submissions(profile.name, plan.config_hash)
        if unfinished:
            with _recovery_lock(unfinished[-1].run_id):
                return _finish(ctx, unfinished[-1], resumed=True)

    prepared = prepare_run(plan, profile, deployment)
    preflight(ctx.transport, profile, prepared.script)
    ctx.commands += 1
    archive = prepared.archive()
    pending = _pending_archive_path(prepared.run_id)
    pending.parent.mkdir(parents=True, exist_ok=True)
    pending.write_bytes(archive)
    plan_dict = plan.to_dict()
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
    added = store.get_run(prepared.run_id)
    assert added is not None
    result = _finish(ctx, added, resumed=False, archive=archive)
    result.script = prepared.script
    result.upload_plan = prepared.upload_plan()
    return result


def _finish(
    ctx: SubmitContext, record: RunRecord, *, resumed: bool, archive: bytes | None = None
) -> SubmitResult:
    """Drive one recorded run to SUBMITTED: upload + submit, recovering lost answers."""
    store = ctx.store
    pending = _pending_archive_path(record.run_id)
    if archive is None and pending.is_file():
        archive = pending.read_bytes()
    run = RunLayout(record.remote_dir)
    runs_root = posixpath.dirname(record.remote_dir)
    job_id: str | None = None
    adopted = False
    first_try = not resumed
    attempt = 0
    while job_id is None:
        attempt += 1
        try:
            if first_try:
                first_try = False
                if archive is None:
                    raise PreflightError(
                        f"run {record.run_id} has no saved upload archive", "submit again"
                    )
                store.set_phase(record.run_id, RunPhase.SUBMITTING)
                argv = [
                    "sh",
                    "-c",
                    _UPLOAD_AND_SUBMIT,
                    "globtim-submit",
                    runs_root,
                    record.run_id,
                    *_scheduler_argv(ctx, record.remote_dir, record.plan),
                ]
                result = ctx.run(argv, stdin=archive)
                if ctx.after_submit_sent is not None:
                    ctx.after_submit_sent()
                job_id = _accept(ctx, record, result)
            else:
                job_id, adopted = _recover(ctx, record, archive)
        except ConnectError as exc:
            if not exc.transient or attempt >= MAX_RECOVERY_ATTEMPTS:
                store.set_phase(record.run_id, RunPhase.SUBMITTING, error=str(exc))
                raise ConnectError(
                    f"the connection dropped while submitting run {record.run_id}: {exc.message}",
                    "run the same submit command again: it will find the job if SLURM got it, "
                    "and submit it otherwise (never twice)",
                    hop=None,
                ) from exc
            time.sleep(min(2.0 * attempt, 8.0))
    store.record_job(record.run_id, record.cluster, job_id, adopted=adopted)
    pending.unlink(missing_ok=True)
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
            f"uploading run {record.run_id} to {ctx.transport.label}:{record.remote_dir}",
            "check free space and permissions under remote_root; nothing was submitted",
        )
    if result.exit_status < 0:
        # No exit status came back (the command was killed or the channel cut): the job may
        # exist. That is a lost answer, not a refusal.
        raise ConnectError(
            "the submit command ended without an exit status",
            hop=ctx.transport.label,
            transient=True,
        )
    stdout = result.stdout_text.replace("@@UPLOADED\n", "", 1)
    trimmed = CommandResult(result.argv, result.exit_status, stdout.encode(), result.stderr)
    try:
        return _parse_submit(ctx, trimmed)
    except SchedulerError as exc:
        if exc.transient or result.exit_status == 0:
            # Exit 0 means the scheduler took something: never treat it as a refusal.
            ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING, error=exc.message)
            if result.exit_status == 0:
                found = ctx.scheduler.find_job(record.run_id)
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
    found = ctx.scheduler.find_job(record.run_id)
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
            f"inspect {ctx.transport.label}:{record.remote_dir}; submit with --new to start over",
        )
    if "@@PRESENT" in lines:
        ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING)
        argv = [
            "sh",
            "-c",
            'cd -- "$1" && shift && exec "$@"',
            "globtim-resubmit",
            record.remote_dir,
            *_scheduler_argv(ctx, record.remote_dir, record.plan),
        ]
        result = ctx.run(argv)
        if ctx.after_submit_sent is not None:
            ctx.after_submit_sent()
        return _parse_submit(ctx, result), False
    if archive is None:
        raise PreflightError(
            f"run {record.run_id} never reached the cluster and its upload archive is gone",
            "submit the job again with --new",
        )
    ctx.store.set_phase(record.run_id, RunPhase.SUBMITTING)
    argv = [
        "sh",
        "-c",
        _UPLOAD_AND_SUBMIT,
        "globtim-submit",
        posixpath.dirname(record.remote_dir),
        record.run_id,
        *_scheduler_argv(ctx, record.remote_dir, record.plan),
    ]
    result = ctx.run(argv, stdin=archive)
    if ctx.after_submit_sent is not None:
        ctx.after_submit_sent()
    return _accept(ctx, record, result), False
