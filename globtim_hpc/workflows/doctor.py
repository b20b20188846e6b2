"""``deploy_julia.py --check``: is this cluster ready for deployments and runs? One row per check.

Every failed check says how to fix it. Required checks decide the exit status; informational
ones (quota, compute-node internet) never fail the doctor. A connection failure stops the
checks that need the cluster (they are shown as skipped).
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Callable
from pathlib import Path

from globtim_hpc import quoting
from globtim_hpc.errors import (
    ConfigError,
    ConnectError,
    GlobtimHpcError,
    HostKeyError,
)
from globtim_hpc.julia import env as juliaenv
from globtim_hpc.julia import runenv
from globtim_hpc.julia.compat import ProjectInfo, check_julia_compat, read_project
from globtim_hpc.layout import RemoteLayout
from globtim_hpc.scheduler.base import ClusterLimits, Scheduler
from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.transport.base import Transport
from globtim_hpc.workflows import jobwait, loginshell
from globtim_hpc.workflows.doctor_report import (
    DOCTOR_DIR,
    FAIL,
    INFO,
    INTERNET_HOST,
    INTERNET_TIMEOUT_S,
    OK,
    QUOTA_SCRIPT,
    SKIP,
    TOOLS_SCRIPT,
    WRITABLE_SCRIPT,
    Check,
    DoctorReport,
    first_line,
    mb,
    parse_df_available_kb,
    tool_problems,
)


class Doctor:
    def __init__(
        self,
        profile: ClusterProfile,
        open_transport: Callable[[], Transport],
        make_scheduler: Callable[[Transport], Scheduler],
        *,
        source: Path | None = None,
        probe_timeout_s: float = 120.0,
        notify: Callable[[str], None] | None = None,
        on_limits: Callable[[ClusterLimits], None] | None = None,
    ) -> None:
        self.on_limits = on_limits or (lambda _limits: None)
        self.profile = profile
        self.open_transport = open_transport
        self.make_scheduler = make_scheduler
        self.source = source
        self.probe_timeout_s = probe_timeout_s
        self.layout = RemoteLayout(profile.remote_root)
        self.report = DoctorReport(cluster=profile.name)
        self.notify = notify or (lambda _message: None)

    def add(
        self, name: str, status: str, detail: str, fix: str | None = None, *, required: bool = True
    ) -> Check:
        check = Check(name, status, detail, fix, required)
        self.report.checks.append(check)
        return check

    def _render(self, body: list[str], job_dir: str, name: str, *, time_limit_min: int) -> str:
        return jobwait.render_job(
            body,
            job_dir,
            name=name,
            time_limit_min=time_limit_min,
            partition=self.profile.slurm_partition,
            account=self.profile.slurm_account,
        )

    # ---- entry point --------------------------------------------------------------------

    def run(self) -> DoctorReport:
        self._check_depot_location()
        transport = self._connect()
        if transport is None:
            for name in ("home folder", "remote root", "Julia depot", "Julia"):
                self.add(name, SKIP, "not checked: no connection")
            return self.report
        # The transport is the caller's: it stays open for whatever the caller does next.
        # The login shell first: text its startup files print breaks the checks after it.
        self.add("login shell", *loginshell.check(transport), required=False)
        self._check_home(transport)
        self._check_quota(transport)
        root_ok = self._check_writable(
            transport,
            "remote root",
            self.profile.remote_root,
            self.profile.min_free_root_mb,
            "create it (mkdir -p) or set remote_root in the cluster profile to a writable "
            "folder on project space",
        )
        self._check_writable(
            transport,
            "Julia depot",
            self.profile.depot_path,
            0,
            f"make it writable (chmod -R u+w {self.profile.depot_path}) or set "
            "julia.depot_path to a writable folder under remote_root",
            depth=2,
        )
        self._check_tools(transport)
        self._check_julia(transport)
        self._check_scheduler(transport, root_ok)
        return self.report

    # ---- checks -------------------------------------------------------------------------

    def _check_depot_location(self) -> None:
        try:
            juliaenv.check_depot_location(self.profile)
        except ConfigError as exc:
            self.add("depot location", FAIL, exc.message, exc.hint)
            return
        self.add("depot location", OK, f"{self.profile.depot_path} (not under home)")

    def _hops(self) -> list[tuple[str, str]]:
        """(alias, label) of every SSH hop, first jump host first."""
        from globtim_hpc.transport.factory import hop_labels

        return hop_labels(self.profile.ssh)

    def _connect(self) -> Transport | None:
        hops = self._hops()
        transport: Transport | None = None
        try:
            transport = self.open_transport()
            transport.run(["true"], timeout_s=60).check(f"running 'true' on {transport.label}")
        except ConnectError as exc:
            self._report_hop_failure(hops, exc)
            return None
        except GlobtimHpcError as exc:
            self.add("connection", FAIL, exc.message, exc.hint)
            return None
        self.report.connected = True
        self._report_ssh_client(transport)
        if not hops:
            self.add("connection", OK, f"commands run on {transport.label}")
        for _alias, label in hops:
            self.add(f"ssh {label}", OK, "connected; host key matches known_hosts")
        return transport

    def _report_ssh_client(self, transport: Transport) -> None:
        if self.profile.ssh is None:
            return
        from globtim_hpc.transport.factory import ssh_client_summary

        self.add("ssh client", INFO, ssh_client_summary(transport), required=False)

    def _report_hop_failure(self, hops: list[tuple[str, str]], exc: ConnectError) -> None:
        failed = None
        for index, (alias, label) in enumerate(hops):
            if exc.hop in (alias, label) or (exc.hop or "").startswith(alias + " "):
                failed = index
                break
        if failed is None:
            self.add("connection", FAIL, exc.message, exc.hint)
            return
        what = "host key" if isinstance(exc, HostKeyError) else "connection"
        for index, (_alias, label) in enumerate(hops):
            if index < failed:
                self.add(f"ssh {label}", OK, "connected; host key matches known_hosts")
            elif index == failed:
                self.add(f"ssh {label}", FAIL, f"{what}: {exc.message}", exc.hint)
            else:
                self.add(f"ssh {label}", SKIP, "not reached")

    def _check_home(self, transport: Transport) -> None:
        home = self.profile.home_dir
        if not home:
            self.add(
                "home folder",
                INFO,
                "home_dir is not set in the profile: not checked",
                "set home_dir to check its free space",
                required=False,
            )
            return
        result = transport.run(["df", "-Pk", "--", home], timeout_s=60)
        available = parse_df_available_kb(result.stdout_text) if result.ok else None
        if available is None:
            self.add(
                "home folder",
                FAIL,
                f"cannot read free space of {home}: "
                f"{first_line(result.stderr_text) or 'no df output'}",
                "check home_dir in the cluster profile",
            )
            return
        need_kb = self.profile.min_free_home_mb * 1024
        if available < need_kb:
            self.add(
                "home folder",
                FAIL,
                f"{home}: only {mb(available)} free, below min_free_home_mb "
                f"({self.profile.min_free_home_mb} MB)",
                "free space in your home (du -sh ~/* ~/.[!.]* | sort -h shows what is big); "
                "SLURM and ssh need a little room there even though runs live under remote_root",
            )
        else:
            self.add("home folder", OK, f"{home}: {mb(available)} free")

    def _check_tools(self, transport: Transport) -> None:
        result = transport.run(["sh", "-c", TOOLS_SCRIPT], timeout_s=60)
        problems = tool_problems(
            result.stdout_text, needs_bash_4_3=self.make_scheduler(transport).needs_bash_4_3
        )
        if problems:
            self.add(
                "login node tools",
                FAIL,
                "; ".join(problems),
                "load newer tools with the profile's julia.modules or ask the admins; "
                "collection needs GNU tar and sha256sum --zero",
            )
        else:
            self.add("login node tools", OK, "bash, GNU tar and sha256sum --zero present")

    def _check_quota(self, transport: Transport) -> None:
        result = transport.run(["sh", "-c", QUOTA_SCRIPT], timeout_s=60)
        text = result.stdout_text.strip()
        if "@@no-quota" in text:
            self.add("quota", INFO, "quota command not installed (informational)", required=False)
        else:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            self.add("quota", INFO, " | ".join(lines[-3:]) or "no quota reported", required=False)

    def _check_writable(
        self,
        transport: Transport,
        name: str,
        folder: str,
        min_free_mb: int,
        fix: str,
        *,
        depth: int = 0,
    ) -> bool:
        """Create, write and remove a probe file; with ``depth``, also look for read-only
        folders that deep inside (Pkg writes into the depot's subfolders)."""
        probe = f".globtim-probe-{secrets.token_hex(4)}"
        result = transport.run(
            ["sh", "-c", WRITABLE_SCRIPT, "globtim-writable", folder, probe, str(depth)], timeout_s=60
        )
        reasons = {
            3: f"cannot create {folder}",
            4: f"{folder} is not writable",
            5: f"cannot remove a probe file in {folder}",
            6: f"not writable inside {folder}: {', '.join(result.stdout_text.split())}",
        }
        if not result.ok:
            detail = reasons.get(result.exit_status, f"check failed (exit {result.exit_status})")
            stderr = first_line(result.stderr_text)
            self.add(name, FAIL, detail + (f" ({stderr})" if stderr else ""), fix)
            return False
        available = parse_df_available_kb(result.stdout_text)
        if available is not None and available < min_free_mb * 1024:
            self.add(
                name,
                FAIL,
                f"{folder}: only {mb(available)} free (need {min_free_mb} MB)",
                "free space there, or point the profile at another file system",
            )
            return False
        free = f", {mb(available)} free" if available is not None else ""
        self.add(name, OK, f"{folder} writable{free}")
        return True

    def _check_julia(self, transport: Transport) -> None:
        try:
            version, line = juliaenv.remote_julia_version(transport, self.profile)
        except GlobtimHpcError as exc:
            modules = ", ".join(self.profile.julia_modules) or "none"
            self.add("Julia", FAIL, f"{exc.message} (modules loaded: {modules})", exc.hint)
            return
        detail = line
        if self.source is not None and (self.source / "Project.toml").is_file():
            try:
                note = check_julia_compat(version, read_project(self.source), where=transport.label)
            except ConfigError as exc:
                self.add("Julia", FAIL, exc.message, exc.hint)
                return
            detail += "; " + (note or f"satisfies the [compat] of {self.source}")
        else:
            # No checkout to read: the Julia that the supported Globtim releases need.
            needed = ProjectInfo(None, None, (), runenv.SUPPORTED_GLOBTIM_JULIA)
            try:
                check_julia_compat(version, needed, where=transport.label)
            except ConfigError as exc:
                self.add("Julia", FAIL, f"{exc.message}, as Globtim {runenv.SUPPORTED_GLOBTIM}.x "
                         "needs", exc.hint)
                return
            detail += f"; Globtim {runenv.SUPPORTED_GLOBTIM}.x needs julia {needed.julia_compat}"
        self.add("Julia", OK, detail)

    def _check_scheduler(self, transport: Transport, root_ok: bool) -> None:
        scheduler = self.make_scheduler(transport)
        test_argv = scheduler.test_submit_argv()
        name, job_dir = jobwait.new_job_dir(
            posixpath.join(self.profile.remote_root, DOCTOR_DIR), "doctor"
        )
        if not root_ok:
            skipped = [f"{scheduler.runs_on} sees run folders"]
            if test_argv is not None:
                skipped.insert(0, " ".join(test_argv))
            for check in skipped:
                self.add(check, SKIP, "not checked: remote root is not usable")
            return
        if test_argv is not None:
            self._check_test_submit(transport, scheduler, test_argv, name, job_dir)
        self._check_accounting(scheduler)
        self._check_limits(scheduler)
        self._check_compute_node(transport, scheduler, name, job_dir)

    def _check_test_submit(
        self,
        transport: Transport,
        scheduler: Scheduler,
        test_argv: list[str],
        name: str,
        job_dir: str,
    ) -> None:
        script = self._render(["true"], job_dir, name, time_limit_min=1)
        check = " ".join(test_argv)  # a label: "sbatch --test-only"
        try:
            result = transport.run(test_argv, stdin=script.encode("utf-8"), timeout_s=60)
            message = scheduler.parse_test_submit(result)
        except GlobtimHpcError as exc:
            self.add(check, FAIL, exc.message, exc.hint)
            return
        self.add(check, OK, first_line(message or "") or "accepted")

    def _check_limits(self, scheduler: Scheduler) -> None:
        """The cluster's array and job limits, cached for submissions (they split at them)."""
        try:
            limits = scheduler.read_limits()
        except GlobtimHpcError as exc:
            self.add("array limits", FAIL, exc.message, exc.hint, required=False)
            return
        if limits is None:
            return
        self.on_limits(limits)
        override = self.profile.slurm_max_array_size
        detail = f"MaxArraySize {limits.max_array_size}, MaxJobCount {limits.max_job_count}"
        if override:
            detail += f"; the profile's slurm.max_array_size {override}"
        self.add("array limits", OK, detail + " (bigger sweeps are split into several arrays)")

    def _check_accounting(self, scheduler: Scheduler) -> None:
        try:
            check = scheduler.check_accounting()
        except GlobtimHpcError as exc:
            self.add("accounting", FAIL, exc.message, exc.hint)
            return
        if check is None:
            return
        if check.ok:
            self.add(check.label, OK, check.detail)
            return
        self.add(
            check.label,
            FAIL,
            check.detail,
            "ask the cluster admins to enable job accounting (slurmdbd); without it, final job "
            "states vanish after MinJobAge and monitor_jobs.py relies on the jobs' status files",
        )

    def _compute_probe_body(self, token_file: str) -> list[str]:
        runs = self.layout.runs_root
        tcp = f"exec 3<>/dev/tcp/{INTERNET_HOST}/443"
        return [
            'printf "host=%s\\n" "$(hostname)"',
            f"if ls -1 -- {quoting.quote(runs)} >/dev/null; then echo runs=listed; "
            "else echo runs=missing; fi",
            f"token=$(cat -- {quoting.quote(token_file)} 2>/dev/null) || token=unreadable",
            'printf "token=%s\\n" "$token"',
            f"if getent hosts {quoting.quote(INTERNET_HOST)} >/dev/null 2>&1; then echo dns=ok; "
            "else echo dns=fail; fi",
            f"if {quoting.join(['timeout', INTERNET_TIMEOUT_S, 'bash', '-c', tcp])} 2>/dev/null; "
            "then echo tcp=ok; else echo tcp=fail; fi",
        ]

    def _check_compute_node(
        self, transport: Transport, scheduler: Scheduler, name: str, job_dir: str
    ) -> None:
        runs = self.layout.runs_root
        token = secrets.token_hex(8)
        token_file = posixpath.join(runs, f".doctor-probe-{token}")
        script = self._render(self._compute_probe_body(token_file), job_dir, name, time_limit_min=2)
        where = scheduler.runs_on
        try:
            transport.run(["mkdir", "-p", "--", runs], timeout_s=60).check(f"creating {runs}")
            transport.put_bytes(token.encode("ascii"), token_file)
            self.notify(f"....  submitting a probe job (waits up to {self.probe_timeout_s:.0f} s)")
            outcome = jobwait.run_job(
                transport, scheduler, script, job_dir, name=name, timeout_s=self.probe_timeout_s,
                time_limit_s=120, keep_output=True,
            )
        except GlobtimHpcError as exc:
            self.add(f"{where} sees run folders", FAIL, exc.message, exc.hint)
            self.add(f"{where} internet", INFO, "not checked", required=False)
            return
        finally:
            transport.run(["rm", "-f", "--", token_file], timeout_s=60)
        facts = dict(line.split("=", 1) for line in outcome.output_tail.splitlines() if "=" in line)
        host = facts.get("host", "?")
        if outcome.timed_out or outcome.exit_code is None:
            self.add(
                f"{where} sees run folders",
                FAIL,
                f"probe job {outcome.job_id} did not finish within {self.probe_timeout_s:.0f} s "
                f"(state {outcome.state.value if outcome.state else 'unknown'}); output in {job_dir}",
                "the queue may be busy: run the check again with a longer --probe-timeout, or "
                "look at 'squeue -u $USER' and 'sinfo' on the login node",
            )
        elif facts.get("runs") == "listed" and facts.get("token") == token:
            self.add(f"{where} sees run folders", OK, f"{runs} visible from {host}")
        else:
            self.add(
                f"{where} sees run folders",
                FAIL,
                f"{runs} is not shared with {host} (listing: {facts.get('runs', '?')}, probe "
                f"file: {'read' if facts.get('token') == token else 'not found'})",
                "set remote_root to a file system mounted on the compute nodes (project or "
                "scratch space, not a login-node-local disk)",
            )
        dns, tcp = facts.get("dns"), facts.get("tcp")
        if dns == "ok" and tcp == "ok":
            self.add(
                f"{where} internet", INFO, f"{host} reaches {INTERNET_HOST}:443", required=False
            )
        else:
            self.add(
                f"{where} internet",
                INFO,
                f"{host} cannot reach {INTERNET_HOST} (dns {dns}, tcp {tcp}): fine, packages "
                "are installed where the network is (julia.precompile_on: login)",
                required=False,
            )
        if outcome.ok:
            transport.run(["rm", "-rf", "--", job_dir], timeout_s=60)

