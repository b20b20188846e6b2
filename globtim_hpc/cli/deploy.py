"""``deploy_julia.py``: ship a GlobTim.jl checkout and verify its Julia environment; ``--check``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from globtim_hpc.cli.common import Output, base_parser, run_main
from globtim_hpc.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from globtim_hpc.settings.profile import ClusterProfile
    from globtim_hpc.workflows.deployrecord import DeployReport
    from globtim_hpc.workflows.doctor_report import DoctorReport

DESCRIPTION = """\
Deploy a GlobTim.jl checkout to the cluster and verify its Julia environment.

The git-tracked files (plus untracked files that are not ignored) go to
<remote_root>/code/<deploy_id>/, where deploy_id is the commit's short sha, with
-dirty-<hash> appended when the tree has local changes (their patch is kept as
DEPLOY.patch). Only content the cluster does not have yet is sent. Then
Pkg.instantiate + Pkg.precompile run where the network is (julia.precompile_on),
a job loads the packages offline on a compute node, and DEPLOY.json records it all.
Submissions use the latest verified deployment. A verification job still queued
when the wait ends (--no-wait, or --verify-timeout) keeps its place: the deployment
is recorded as pending, and runs submitted meanwhile are held on that job (SLURM
afterok): they start once it succeeds, and show DependencyNeverSatisfied if it fails.

--check runs the cluster doctor instead: SSH hops and host keys, free space in home
and remote_root, Julia, the depot, sbatch --test-only, sacct, and a probe job that
checks the run folders are visible from a compute node (and, for information only,
whether compute nodes reach the internet).
"""

EPILOG = """\
exit codes specific to this command:
  1  a dirty tree with --require-clean, a failed environment set-up, or (with --check)
     a required check failed
  3  configuration: no Project.toml, Julia outside [compat], depot under home
  4  connection: an SSH hop could not be reached (with --check: the doctor could not connect)
  6  the verification job failed (the deployment is recorded as unverified)"""


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("deploy_julia.py", DESCRIPTION, EPILOG)
    parser.add_argument(
        "--source",
        type=Path,
        metavar="PATH",
        help="the GlobTim.jl git checkout to deploy (default: 'source' in the cluster profile)",
    )
    parser.add_argument(
        "--require-clean",
        action="store_true",
        help="refuse to deploy a tree with uncommitted changes or untracked files",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="set up the environment again and verify it with a job on a compute node, even "
        "if this deployment, or another of the same environment, is verified",
    )
    parser.add_argument(
        "--verify-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="how long to wait for the verification job (default: 1800); one still queued "
        "then is left to run and the deployment is recorded as pending on it",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="submit the verification job and return: runs submitted before it ends wait on it",
    )
    parser.add_argument(
        "--env-project",
        type=Path,
        metavar="DIR",
        help="a Julia project whose [deps] and [compat] join the run environment "
        "(for a custom script that loads more packages)",
    )
    parser.add_argument("--check", action="store_true", help="run the cluster doctor instead")
    parser.add_argument(
        "--probe-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --check: how long to wait for the compute-node probe job (default: 120)",
    )
    return parser


def _source(args: argparse.Namespace, profile: ClusterProfile) -> Path | None:
    if args.source is not None:
        return Path(args.source)
    return Path(profile.source) if profile.source else None


def _body(args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.api import Cluster

    notify = _notifier(out)
    with Cluster(args.cluster) as cluster:
        source = _source(args, cluster.profile)
        if args.check:
            doctor_report = cluster.check(source, probe_timeout_s=args.probe_timeout, notify=notify)
            _print_doctor(out, doctor_report)
            return doctor_report.exit_code
        from globtim_hpc.workflows.deploy import DeployOptions

        if source is None:
            raise UsageError(
                "no source checkout to deploy",
                f"pass --source PATH/TO/GlobTim.jl, or set 'source' in {cluster.profile.origin}",
            )
        options = DeployOptions(
            source=source,
            require_clean=args.require_clean,
            force=args.force,
            verify_timeout_s=args.verify_timeout,
            wait_verify=not args.no_wait,
            extra_project=args.env_project,
        )
        report = cluster.deploy(options=options, notify=notify)
    _print_deploy(out, report)
    return int(ExitCode.OK)


def _notifier(out: Output) -> Callable[[str], None]:
    def notify(message: str) -> None:
        if not out.json_mode:
            out.err_console.print(message, markup=False, highlight=False)

    return notify


def _print_deploy(out: Output, report: DeployReport) -> None:
    if out.json_mode:
        out.emit_json({"ok": True, "deployment": report.to_dict()})
        return
    state = "dirty" if report.dirty else "clean"
    record = report.record
    verification = record.get("verification") or {}
    if report.noop:
        how = "being verified by job " + str(verification.get("job_id")) if report.pending else (
            "verified"
        )
        out.info(f"{report.deploy_id} ({state}) is already deployed and {how}: nothing sent")
        out.info(f"  {report.remote_dir}")
        return
    out.info(f"deployed {report.deploy_id} ({state}) to {report.remote_dir}")
    if report.uploaded:
        out.info(
            f"  sent {report.bytes_sent:,} bytes: {report.new_objects} new file(s) "
            f"({report.payload_bytes:,} bytes before compression), "
            f"{report.reused_objects} already on the cluster"
        )
    versions = ", ".join(
        f"{k} {v}" for k, v in sorted((verification.get("packages") or {}).items())
    )
    out.info(
        f"  Julia {record.get('julia_version')}, depot {record.get('depot_path')}, "
        f"Manifest sha256 {str(record.get('manifest_sha256'))[:12]}"
    )
    if report.pending:
        out.info(
            f"  verification job {verification.get('job_id')} has not ended "
            f"(output: {verification.get('output')})"
        )
    else:
        out.info(
            f"  verified by job {verification.get('job_id')} on {verification.get('hostname')}: "
            f"{versions or 'no packages listed'}"
        )
    for note in report.notes:
        out.warn(note)


_STYLE = {"ok": "green", "fail": "red", "warn": "yellow", "info": "cyan", "skip": "dim"}


def _print_doctor(out: Output, report: DoctorReport) -> None:
    if out.json_mode:
        out.emit_json(report.to_dict())
        return
    console = out.console
    if not console.is_terminal:
        for check in report.checks:
            out.info(f"{check.status:<4}  {check.name}: {check.detail}")
            if check.fix and check.status in ("fail", "warn"):
                out.info(f"      fix: {check.fix}")
        out.info(_verdict(report))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"cluster '{report.cluster}'")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        style = _STYLE.get(check.status, "")
        fix = check.fix if check.fix and check.status in ("fail", "warn") else ""
        table.add_row(
            escape(check.name),
            f"[{style}]{check.status}[/{style}]",
            escape(check.detail),
            escape(fix),
        )
    console.print(table)
    console.print(escape(_verdict(report)))


def _verdict(report: DoctorReport) -> str:
    failed = [check.name for check in report.checks if not check.passed]
    if not failed:
        return "all required checks passed"
    return f"{len(failed)} required check(s) failed: {', '.join(failed)}"


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, build_parser(), argv)
