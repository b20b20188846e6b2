"""Deploy a GlobTim.jl checkout: ship its code, set up its Julia environment, verify it, record it.

Steps (each is skipped when its result is already there):

1. snapshot the local checkout (gitsource) and refuse a dirty tree if asked to;
2. ship it into ``<remote_root>/code/<deploy_id>/`` sending only new content (codeship);
   an existing deployment that was verified with the same Julia settings ends the work here,
   after one remote command;
3. check ``julia --version`` (after the profile's module loads) against ``[compat] julia``;
4. ``Pkg.instantiate`` + ``Pkg.precompile`` (julia/deploy_env.jl) where the network is: on the
   login node, in the same one command as step 3 (workflows.envstep), or in a job
   (``julia.precompile_on``);
5. a verification job on a compute node, offline, loads the packages and reports versions
   (julia/verify_env.jl); one still queued when the wait ends is left to run, and the
   deployment is recorded as pending on it (see workflows.verification). An environment a job
   verified before (same Manifest.toml, same settings) is taken over instead, once the new
   code has loaded on the login node (workflows.envstep);
6. write ``DEPLOY.json`` beside the code and record the deployment in the local registry.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globtim_hpc import paths
from globtim_hpc.errors import GlobtimHpcError, JobFailedError, RemoteCommandError
from globtim_hpc.julia import env as juliaenv
from globtim_hpc.julia import runenv
from globtim_hpc.julia.compat import (
    ProjectInfo,
    Version,
    check_julia_compat,
    format_version,
    read_project,
)
from globtim_hpc.layout import RemoteLayout
from globtim_hpc.registry.records import utc_now
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.base import Scheduler
from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.toolinfo import tool_info
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows import codeship, envstep, gitsource, jobwait
from globtim_hpc.workflows.deployrecord import (
    DeployReport,
    env_settings,
    env_summary,
    record_is_current,
)
from globtim_hpc.workflows.limits import refresh_limits
from globtim_hpc.workflows.verification import (
    VERIFY_RESULT,
    outcome_record,
    pending_record,
    read_json,
    settle_record,
    write_record,
)

PATCH_FILE = "DEPLOY.patch"
ENV_RESULT = "env_result.json"
LOGIN_CHECK_RESULT = "login_check.json"  # the new code loaded on the login node (envstep)

Notify = Callable[[str], None]


@dataclass(frozen=True)
class DeployOptions:
    source: Path
    require_clean: bool = False
    force: bool = False  # set up and verify again even if a verified record exists
    env_timeout_s: float = 7200.0
    verify_timeout_s: float = 1800.0
    # False: submit the verification job and record the deployment as pending on it.
    wait_verify: bool = True
    # A user's own Julia project whose [deps] and [compat] join the run environment.
    extra_project: Path | None = None


def toolkit_scripts() -> list[codeship.ExtraFile]:
    """The Julia scripts this toolkit runs on the cluster, placed in ``<deploy>/.globtim-hpc/``."""
    out = []
    for name in (juliaenv.DEPLOY_ENV_JL, juliaenv.VERIFY_ENV_JL, juliaenv.COMMON_IO_JL):
        path = paths.julia_dir() / name
        out.append(codeship.ExtraFile(f"{juliaenv.TOOL_DIR}/{name}", path.read_bytes()))
    return out


def packages_to_verify(extra: ProjectInfo | None = None) -> list[str]:
    """What the driver loads (and a user's own project adds), then the solver extension."""
    names = runenv.driver_package_names()
    if extra is not None:
        names += [dep for dep in extra.deps if dep not in names]
    return [*names, "--extension", f"{runenv.GLOBTIM}:{runenv.SOLVER_EXTENSION}"]


def runenv_file(project: ProjectInfo, extra: ProjectInfo | None) -> codeship.ExtraFile:
    text = runenv.project_toml(project, extra)
    return codeship.ExtraFile(f"{juliaenv.TOOL_DIR}/{runenv.RUNENV_DIR}/Project.toml", text.encode())


class Deployer:
    """One deployment of one source tree to one cluster."""

    def __init__(
        self,
        profile: ClusterProfile,
        transport: Transport,
        scheduler: Scheduler,
        store: Store,
        *,
        notify: Notify | None = None,
    ) -> None:
        self.profile = profile
        self.transport = transport
        self.scheduler = scheduler
        self.store = store
        self.layout = RemoteLayout(profile.remote_root)
        self.notify: Notify = notify or (lambda _message: None)

    # ---- the workflow -------------------------------------------------------------------

    def deploy(self, options: DeployOptions) -> DeployReport:
        started = time.monotonic()
        juliaenv.check_depot_location(self.profile)
        snap = gitsource.snapshot(options.source)
        if options.require_clean:
            gitsource.require_clean(snap)
        project = read_project(snap.root)
        runenv.check_globtim_project(project)
        extra = runenv.read_extra_project(options.extra_project)
        notes = [f"submodule {path} is not deployed" for path in snap.skipped]
        scripts = toolkit_scripts()
        extras = [*scripts, runenv_file(project, extra)]
        if snap.dirty:
            extras.append(codeship.ExtraFile(PATCH_FILE, snap.patch))
        self.notify(
            f"deploying {snap.root} as {snap.deploy_id}"
            + (" (local changes: dirty)" if snap.dirty else "")
        )
        shipped = codeship.ship(self.transport, self.layout.code_root, snap, extras)
        existing = shipped.existing_record
        if record_is_current(existing, snap, self.profile, pending_too=True) and existing:
            # Its verification job was still queued when the last deployment ended: one look.
            settled = settle_record(self.transport, self.scheduler, existing)
            if settled is not existing:
                write_record(self.transport, shipped.remote_dir, settled)
            existing = settled
        if not options.force and record_is_current(existing, snap, self.profile, pending_too=True):
            record = dict(existing or {})
            verified = record.get("verified") is True
            self._register(snap, shipped.remote_dir, record, verified=verified, noop=True)
            return self._report(snap, shipped, record, verified, started, notes, noop=True)
        if shipped.uploaded:
            self.notify(
                f"sent {shipped.new_objects} new file(s), {shipped.bytes_sent} bytes; "
                f"{shipped.reused_objects} already on {self.transport.label}"
            )
        else:
            self.notify(f"code already in {shipped.remote_dir}; setting up its environment again")
        packages = packages_to_verify(extra)
        # What a kept verification of this environment must also have been made with.
        salt = envstep.settings_salt(self.profile, packages, [s.data for s in scripts])
        record = self._setup_and_verify(
            snap, project, packages, salt, shipped.remote_dir, options, notes
        )
        verified = bool(record["verified"])
        write_record(self.transport, shipped.remote_dir, record)
        self._register(snap, shipped.remote_dir, record, verified=verified)
        report = self._report(snap, shipped, record, verified, started, notes, noop=False)
        if report.pending:
            job_id = record["verification"]["job_id"]
            notes.append(
                f"verification job {job_id} has not ended yet: the deployment is recorded as "
                "pending, and runs submitted meanwhile start once that job succeeds"
            )
        elif not verified:
            verification = record.get("verification") or {}
            raise JobFailedError(
                f"deployment {snap.deploy_id} did not verify on a compute node: "
                f"{verification.get('error') or 'see the job output'}",
                f"job output: {verification.get('output')}; the deployment is recorded as "
                "unverified, so submissions will not use it",
            )
        return report

    def _setup_and_verify(
        self,
        snap: gitsource.SourceSnapshot,
        project: ProjectInfo,
        packages: list[str],
        salt: str,
        code_dir: str,
        options: DeployOptions,
        notes: list[str],
    ) -> dict[str, Any]:
        inherited: dict[str, Any] | None = None
        if self.profile.precompile_on == "login":
            step = self._login_step(code_dir, packages, salt, options)
            version, version_line = step.version(self.profile, self.transport.label)
            self._check_compat(version, version_line, project, notes)
            reported = step.env_result(self.transport.label)
            env_result = env_summary(reported, "login", None)
            if not options.force:
                inherited = step.inherited_verification(reported.get("manifest_sha256"), salt)
        else:
            version, version_line = juliaenv.remote_julia_version(self.transport, self.profile)
            self._check_compat(version, version_line, project, notes)
            env_result = self._setup_env_in_job(code_dir, options)
        if inherited is not None:
            source = inherited["inherited_from"]
            self.notify(
                f"this environment was verified by job {source['job_id']} (deployment "
                f"{source['deploy_id']}); the new code loads on the login node"
            )
            verification = inherited
        else:
            self.notify("environment set up; verifying on a compute node")
            verification = self._verify(code_dir, packages, options)
            self._keep_verification(snap, verification, env_result, salt, notes)
        manifest = verification.get("manifest_sha256") or env_result.get("manifest_sha256")
        return {
            "deploy_id": snap.deploy_id,
            "cluster": self.profile.name,
            "git_sha": snap.git_sha,
            "dirty": snap.dirty,
            "patch_file": PATCH_FILE if snap.dirty else None,
            "untracked": list(snap.untracked),
            "tree_sha256": snap.tree_sha256,
            "file_count": len(snap.files),
            "byte_count": snap.total_bytes,
            "source": str(snap.root),
            "project": {
                "name": project.name,
                "version": project.version,
                "julia_compat": project.julia_compat,
            },
            # The run environment's Manifest.toml: exactly which package versions jobs load.
            "manifest_sha256": manifest,
            "run_env": {
                "dir": self._runenv(code_dir),
                "manifest": posixpath.join(self._runenv(code_dir), "Manifest.toml"),
                "manifest_sha256": manifest,
                "globtim_version": project.version,
            },
            "julia_version": format_version(version),
            "julia_version_line": version_line,
            **env_settings(self.profile),
            "env_setup": env_result,
            "verification": verification,
            "verified": bool(verification.get("ok")),
            "tool": tool_info(),
            "created_at": utc_now(),
        }

    # ---- environment --------------------------------------------------------------------

    def _render(self, body: list[str], job_dir: str, name: str, timeout_s: float) -> str:
        return jobwait.render_job(
            body,
            job_dir,
            name=name,
            time_limit_min=max(1, int(timeout_s // 60)),
            partition=self.profile.slurm_partition,
            account=self.profile.slurm_account,
        )

    def _tool_dir(self, code_dir: str) -> str:
        return posixpath.join(code_dir, juliaenv.TOOL_DIR)

    def _runenv(self, code_dir: str) -> str:
        return runenv.runenv_dir(code_dir, juliaenv.TOOL_DIR)

    def _julia_line(self, code_dir: str, script: str, args: list[str], *, offline: bool) -> str:
        # Both set-up and verification run in the run environment, as jobs will.
        project = self._runenv(code_dir)
        return juliaenv.shell_script(
            self.profile.julia_modules,
            juliaenv.julia_argv(
                self.profile, project, juliaenv.tool_script(code_dir, script), args
            ),
            juliaenv.julia_env(self.profile, project, offline=offline),
        )

    def _check_compat(
        self, version: Version, version_line: str, project: ProjectInfo, notes: list[str]
    ) -> None:
        note = check_julia_compat(version, project, where=self.transport.label)
        if note:
            notes.append(note)
        self.notify(
            f"{version_line} on {self.transport.label}; compat {project.julia_compat or 'any'}"
        )

    def _login_step(
        self, code_dir: str, packages: list[str], salt: str, options: DeployOptions
    ) -> envstep.LoginStep:
        self.notify("Pkg.instantiate + Pkg.precompile (login node)")
        tool_dir = self._tool_dir(code_dir)
        login_result = posixpath.join(tool_dir, LOGIN_CHECK_RESULT)
        return envstep.run_on_login(
            self.transport,
            self.profile,
            deploy_env_line=self._julia_line(
                code_dir, juliaenv.DEPLOY_ENV_JL, [posixpath.join(tool_dir, ENV_RESULT)],
                offline=False,
            ),
            verify_env_line=self._julia_line(
                code_dir, juliaenv.VERIFY_ENV_JL, [login_result, *packages], offline=True
            ),
            env_result_path=posixpath.join(tool_dir, ENV_RESULT),
            login_result_path=login_result,
            manifest_path=posixpath.join(self._runenv(code_dir), "Manifest.toml"),
            code_root=self.layout.code_root,
            salt=salt,
            lookup=not options.force,
            timeout_s=options.env_timeout_s,
        )

    def _keep_verification(
        self,
        snap: gitsource.SourceSnapshot,
        verification: dict[str, Any],
        env_result: dict[str, Any],
        salt: str,
        notes: list[str],
    ) -> None:
        """A job verified this environment: later deployments of it need none (envstep)."""
        manifest = verification.get("manifest_sha256")
        if (
            self.profile.precompile_on != "login"
            or verification.get("ok") is not True
            or not manifest
            or manifest != env_result.get("manifest_sha256")
        ):
            return
        entry = envstep.cache_entry(
            verification, deploy_id=snap.deploy_id, manifest_sha256=manifest, salt=salt
        )
        try:
            envstep.write_cache(
                self.transport, envstep.cache_path(self.layout.code_root, manifest, salt), entry
            )
        except GlobtimHpcError as exc:
            notes.append(f"the verification was not kept for later deployments: {exc}")

    def _setup_env_in_job(self, code_dir: str, options: DeployOptions) -> dict[str, Any]:
        result_path = posixpath.join(self._tool_dir(code_dir), ENV_RESULT)
        line = self._julia_line(code_dir, juliaenv.DEPLOY_ENV_JL, [result_path], offline=False)
        mkdir = juliaenv.shell_script((), ["mkdir", "-p", "--", self.profile.depot_path])
        self.notify("Pkg.instantiate + Pkg.precompile (in a job)")
        name, job_dir = jobwait.new_job_dir(
            posixpath.join(self._tool_dir(code_dir), "jobs"), "deploy_env"
        )
        script = self._render([mkdir, line], job_dir, name, options.env_timeout_s)
        outcome = jobwait.run_job(
            self.transport,
            self.scheduler,
            script,
            job_dir,
            name=name,
            timeout_s=options.env_timeout_s,
        )
        if not outcome.ok:
            raise jobwait.outcome_error(
                "setting up the Julia environment",
                outcome,
                "read the job output above; precompile_on: login runs it on the login node",
            )
        reported = read_json(self.transport, result_path, "environment set-up") or {}
        if outcome.exit_code != 0 or not reported.get("ok"):
            raise RemoteCommandError(
                "Pkg.instantiate/Pkg.precompile failed on "
                f"{self.transport.label}: {reported.get('error') or 'no result written'}",
                "check that the depot is writable (deploy_julia.py --check) and that the "
                "compute node reaches the package servers",
                exit_status=outcome.exit_code,
                output_tail=outcome.output_tail
                or jobwait.output_tail(self.transport, job_dir, outcome.job_id),
            )
        return env_summary(reported, "job", outcome.job_id)

    def _verify(
        self, code_dir: str, packages: list[str], options: DeployOptions
    ) -> dict[str, Any]:
        name, job_dir = jobwait.new_job_dir(
            posixpath.join(self._tool_dir(code_dir), "jobs"), "deploy_verify"
        )
        result_path = posixpath.join(job_dir, VERIFY_RESULT)
        line = self._julia_line(
            code_dir, juliaenv.VERIFY_ENV_JL, [result_path, *packages], offline=True
        )
        script = self._render([line], job_dir, name, options.verify_timeout_s)
        job = jobwait.start_job(
            self.transport, self.scheduler, script, job_dir, name=name,
            time_limit_s=int(options.verify_timeout_s),
        )  # fmt: skip
        self.notify(f"verification job {job.job_id} submitted")
        if not options.wait_verify:
            return pending_record(job)
        # A job still queued at the deadline keeps its place: the deployment waits on it.
        outcome = jobwait.wait_job(
            self.transport, self.scheduler, job,
            timeout_s=options.verify_timeout_s, cancel_on_timeout=False,
        )  # fmt: skip
        if outcome.timed_out:
            return pending_record(job, outcome.state.value if outcome.state else None)
        return outcome_record(self.transport, outcome, options.verify_timeout_s)

    # ---- bookkeeping --------------------------------------------------------------------

    def _register(
        self,
        snap: gitsource.SourceSnapshot,
        remote_dir: str,
        record: dict[str, Any],
        *,
        verified: bool,
        noop: bool = False,
    ) -> None:
        # A new environment is when the cluster may have changed: read its array limits again
        # (if the controller does not answer now, the first submission asks). A deployment
        # that changed nothing, or only code in an environment verified before, reads them
        # only if none are cached, so it stays one command or three.
        new_environment = not noop and "inherited_from" not in (record.get("verification") or {})
        if new_environment or self.store.cluster_limits(self.profile.name) is None:
            with contextlib.suppress(GlobtimHpcError):
                refresh_limits(self.scheduler, self.store, self.profile.name)
        self.store.record_deployment(
            deploy_id=snap.deploy_id,
            cluster=self.profile.name,
            git_sha=snap.git_sha,
            dirty=snap.dirty,
            remote_dir=remote_dir,
            verified=verified,
            info=record,
        )

    def _report(
        self,
        snap: gitsource.SourceSnapshot,
        shipped: codeship.ShipResult,
        record: dict[str, Any],
        verified: bool,
        started: float,
        notes: list[str],
        *,
        noop: bool,
    ) -> DeployReport:
        return DeployReport(
            deploy_id=snap.deploy_id,
            git_sha=snap.git_sha,
            dirty=snap.dirty,
            remote_dir=shipped.remote_dir,
            noop=noop,
            uploaded=shipped.uploaded,
            bytes_sent=shipped.bytes_sent,
            payload_bytes=shipped.payload_bytes,
            new_objects=shipped.new_objects,
            reused_objects=shipped.reused_objects,
            file_count=len(snap.files),
            verified=verified,
            record=record,
            elapsed_s=time.monotonic() - started,
            notes=notes,
        )


def deploy(
    profile: ClusterProfile,
    transport: Transport,
    scheduler: Scheduler,
    store: Store,
    options: DeployOptions,
    *,
    notify: Notify | None = None,
) -> DeployReport:
    """Deploy ``options.source`` to the cluster of ``profile``; see the module docstring."""
    return Deployer(profile, transport, scheduler, store, notify=notify).deploy(options)
