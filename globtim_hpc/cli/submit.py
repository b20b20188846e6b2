"""./submit_julia_job.py: render a batch script from a problem + job config, submit it, record it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from globtim_hpc.cli.common import Output, base_parser, run_main
from globtim_hpc.errors import ExitCode, UsageError

DESCRIPTION = """\
Submit a GlobTim computation to the cluster.

The problem (problems/<name>.yaml) says what runs; the job config (--config, YAML) overrides its
parameters and resources. Any parameter given as a list becomes a sweep: one array task per
combination. The run folder (script, parameters, driver) is uploaded as one archive and
submitted in the same remote command; the run is recorded in the local registry, and a lost
answer never makes a second job: running the same command again adopts the job if the
scheduler got it."""

EPILOG = """\
examples:
  ./submit_julia_job.py --problem 4d_benchmark --config configs/4d_benchmark.yaml --dry-run
  ./submit_julia_job.py --problem 4d_benchmark --config configs/4d_benchmark.yaml --cluster testbed
  ./submit_julia_job.py --problem refine --config refine.yaml --after RUN_ID   # chained
  ./submit_julia_job.py --list-problems
  ./submit_julia_job.py --rerun RUN_ID --only failed --mem-factor 2 --time-factor 2 --dry-run
then:
  ./monitor_jobs.py --run-id RUN_ID --watch
  ./collect_results.py --run-id RUN_ID --local-dir results/"""


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("submit_julia_job.py", DESCRIPTION, EPILOG)
    parser.add_argument("--problem", metavar="NAME", help="problem to run (see --list-problems)")
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="job config YAML (parameters, resources)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the tasks, the rendered script and the upload plan; touch nothing remote",
    )
    parser.add_argument(
        "--new",
        action="store_true",
        help="always make a new run, even if an earlier submission of this config was interrupted",
    )
    parser.add_argument(
        "--no-deployment",
        action="store_true",
        help="run without a verified deployment (JULIA_PROJECT unset)",
    )
    parser.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="start only after every job of RUN_ID completed well (afterok; repeatable); if "
        "that run fails, this one stays PENDING with reason DependencyNeverSatisfied",
    )
    parser.add_argument(
        "--list-problems", action="store_true", help="list the problem library and exit"
    )
    rerun = parser.add_argument_group(
        "rerun", "run some tasks of a run again, as its next attempt (one array job over them)"
    )
    rerun.add_argument("--rerun", metavar="RUN_ID", help="the run whose tasks to run again")
    rerun.add_argument(
        "--only",
        metavar="WHICH",
        default="failed",
        help="failed (default: FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, "
        "CANCELLED), missing (no status file, or outputs absent or changed on the cluster), "
        "unfinished (every ended task not COMPLETED), or task indices like 3,17,40-44",
    )
    mem = rerun.add_mutually_exclusive_group()
    mem.add_argument("--mem-gb", type=float, metavar="N", help="memory per task for the rerun")
    mem.add_argument("--mem-factor", type=float, metavar="F", help="multiply the memory by F")
    time = rerun.add_mutually_exclusive_group()
    time.add_argument("--time-min", type=int, metavar="N", help="time limit for the rerun")
    time.add_argument("--time-factor", type=float, metavar="F", help="multiply the time limit by F")
    return parser


def _list_problems(out: Output) -> int:
    from globtim_hpc.jobs.problems import list_problems, load_problem

    rows = [(name, load_problem(name).description) for name in list_problems()]
    if out.json_mode:
        out.emit_json({"problems": [{"name": n, "description": d} for n, d in rows]})
    else:
        for name, description in rows:
            out.console.print(f"{name:20} {description}", markup=False)
    return ExitCode.OK


def _body(args: argparse.Namespace, out: Output) -> int:
    if args.list_problems:
        return _list_problems(out)
    if args.rerun:
        return _rerun(args, out)
    if not args.problem:
        raise UsageError("no problem given", "pass --problem NAME (see --list-problems)")
    from globtim_hpc.api import Cluster
    from globtim_hpc.jobs.plan import check_plan

    with Cluster(args.cluster) as cluster:
        plan = cluster.plan(args.problem, args.config)
        warnings = [*plan.sizing_notes, *check_plan(plan)]
        for warning in warnings:
            out.warn(warning)
        use_deployment = not args.no_deployment
        if use_deployment and cluster.latest_deployment() is None:
            warnings.append(
                f"no verified deployment on '{cluster.name}': the job runs without JULIA_PROJECT; "
                "run ./deploy_julia.py first to pin the code it runs"
            )
            out.warn(warnings[-1])
        if args.dry_run:
            prepared = cluster.dry_run(plan, use_deployment=use_deployment)
            return _print_dry_run(out, plan, cluster.profile, prepared, warnings)
        run = cluster.submit(
            plan, new=args.new, use_deployment=use_deployment, after=args.after
        )
    result = run.submission
    assert result is not None
    for note in result.warnings:
        out.warn(note)
    result.warnings = warnings + result.warnings
    if out.json_mode:
        out.emit_json({"ok": True, **result.to_dict()})
        return ExitCode.OK
    verb = "adopted existing job" if result.adopted else "submitted job"
    if result.resumed:
        out.info(f"resumed the interrupted submission of run {result.run_id}")
    out.info(f"{verb} {result.job_id} on {result.cluster} ({result.task_count} task(s))")
    out.info(f"  run id:   {result.run_id}")
    out.info(f"  run dir:  {result.run_dir}")
    out.info(f"  logs:     {result.logs_dir}")
    out.info(f"  outputs:  {result.output_dir}")
    out.info(f"  deploy:   {result.deploy_id or '(none)'}")
    for parent in (run.record.submission or {}).get("after") or []:
        what = f"run {parent['run_id']}" if "run_id" in parent else (
            f"verification of deployment {parent.get('deployment')}"
        )
        out.info(f"  after:    {what} (jobs {', '.join(parent['job_ids'])})")
    cluster_flag = f" --cluster {args.cluster}" if args.cluster else ""
    out.info(f"next: ./monitor_jobs.py{cluster_flag} --run-id {result.run_id} --watch")
    out.info(
        f"      ./collect_results.py{cluster_flag} --run-id {result.run_id} --local-dir results/"
    )
    return ExitCode.OK


def _print_dry_run(out: Output, plan: Any, profile: Any, prepared: Any, warnings: list[str]) -> int:
    upload = prepared.upload_plan()
    if out.json_mode:
        out.emit_json(
            {
                "ok": True,
                "dry_run": True,
                "cluster": profile.name,
                "run_id": prepared.run_id,
                "run_dir": prepared.run_dir,
                "plan": plan.to_dict(),
                "script": prepared.script,
                "upload_plan": upload,
                "warnings": warnings,
            }
        )
        return ExitCode.OK
    out.info(
        f"problem {plan.problem}: {len(plan.tasks)} task(s) on cluster '{profile.name}' (dry run)"
    )
    res = plan.resources
    out.info(
        f"resources per task: {res.time_min} min, {res.mem_gb:g} GB"
        + (" (mem_gb: auto)" if res.mem_auto else "")
        + f", {res.cpus} CPU(s)"
        + (f", at most {res.max_parallel} at once" if res.max_parallel else "")
    )
    for task in plan.tasks:
        shown = {k: v for k, v in task.params.items() if k not in ("problem", "entry", "task_id")}
        out.console.print(f"  task {task.task_id}: {shown}", markup=False)
    out.info(f"\nrun folder {prepared.run_dir} would receive:")
    for item in upload:
        out.console.print(f"  {item['path']}  ({item['bytes']} bytes)", markup=False)
    out.info("\n--- job.sbatch ---")
    out.console.print(prepared.script, markup=False)
    out.info("(dry run: nothing was sent anywhere)")
    return ExitCode.OK


def _rerun(args: argparse.Namespace, out: Output) -> int:
    if args.problem or args.config:
        raise UsageError("--rerun takes the run's own problem and config", "drop --problem/--config")
    from globtim_hpc.api import Cluster

    with Cluster(args.cluster) as cluster:
        run = cluster.run(run_id=args.rerun)
        result = run.rerun(
            args.only, mem_gb=args.mem_gb, mem_factor=args.mem_factor, time_min=args.time_min,
            time_factor=args.time_factor, dry_run=args.dry_run,
        )  # fmt: skip
    for warning in result.warnings:
        out.warn(warning)
    if out.json_mode:
        data = {"ok": True, **result.to_dict()}
        if result.dry_run:
            data["script"] = result.script
        out.emit_json(data)
        return ExitCode.OK
    res = result.resources
    what = "would submit" if result.dry_run else ("adopted" if result.adopted else "submitted")
    jobs = ", ".join(result.job_ids) or "(dry run)"
    out.info(
        f"attempt {result.attempt} of run {result.run_id}: {what} job {jobs} over "
        f"{len(result.task_indices)} task(s), --array={result.array}"
    )
    out.info(f"  resources: {res['time_min']} min, {float(res['mem_gb']):g} GB, {res['cpus']} CPU(s)")
    out.info(f"  why:       {result.cause}")
    for index, why in sorted(result.reasons.items()):
        out.console.print(f"  task {index}: {why}", markup=False)
    if result.dry_run:
        out.info(f"\n--- {result.script_path} ---")
        out.console.print(result.script, markup=False)
        out.info("(dry run: nothing was submitted)")
    else:
        flag = f" --cluster {args.cluster}" if args.cluster else ""
        out.info(f"next: ./monitor_jobs.py{flag} --run-id {result.run_id} --wait")
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, build_parser(), argv)
