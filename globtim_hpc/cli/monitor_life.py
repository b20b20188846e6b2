"""monitor_jobs.py --cancel, --list and --log: presentation over Cluster/Run."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from globtim_hpc.cli.common import Output
from globtim_hpc.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from globtim_hpc.api import Cluster, Run
    from globtim_hpc.workflows.monitor.cancel import CancelPlan


def _describe(plan: CancelPlan) -> list[str]:
    from globtim_hpc.indices import compress_indices

    lines = []
    for job in plan.jobs:
        chosen = plan.indices[job.job_id]
        what = "all unfinished tasks" if job.job_id in plan.whole else "tasks"
        lines.append(
            f"run {job.run_id} (job {job.job_id}): {what} {compress_indices(chosen, separator=', ')}"
            f" ({len(chosen)} task(s))"
        )
    for run_id, final in plan.skipped.items():
        shown = compress_indices(final, separator=", ")
        lines.append(f"run {run_id}: task(s) {shown} already ended; left alone")
    return lines


def _confirm(out: Output, plan: CancelPlan) -> bool:
    out.err_console.print(
        f"cancel {plan.task_count} task(s) of {len(plan.jobs)} run(s)? [y/N] ", end="", markup=False
    )
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def show_cancel(cluster: Cluster, runs: list[Run], args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.cli.monitor_view import plain_lines
    from globtim_hpc.indices import parse_index_list
    from globtim_hpc.workflows.monitor.cancel import plan_cancel

    tasks = parse_index_list(args.tasks) if args.tasks is not None else None
    ask = not (args.yes or args.dry_run or out.json_mode) and sys.stdin.isatty()
    if ask:
        plan = plan_cancel(
            cluster.store, cluster._offline_scheduler(), [r.record for r in runs], tasks
        )
        for line in _describe(plan):
            out.info(line)
        if not _confirm(out, plan):
            out.info("nothing cancelled")
            return int(ExitCode.OK)
    result = cluster.cancel(runs, tasks, dry_run=args.dry_run)
    if out.json_mode:
        out.emit_json({"ok": True, "cluster": cluster.name, **result.to_dict()})
        return int(ExitCode.OK)
    if not ask:
        for line in _describe(result.plan):
            out.info(line)
    from globtim_hpc.quoting import join

    if result.dry_run:
        out.info(f"would run: {join(result.plan.argv)}")
        out.info("(dry run: nothing was cancelled)")
        return int(ExitCode.OK)
    out.info(f"cancelled with one command: {join(result.plan.argv)[:200]}")
    changes = [c for view in result.views for c in view.changes]
    for line in plain_lines(result.views, changes, []):
        out.console.print(line, markup=False, highlight=False)
    return int(ExitCode.OK)


def show_list(cluster: Cluster, args: argparse.Namespace, out: Output) -> int:
    runs = cluster.runs(
        since=args.since, problem=args.problem, state=args.state, newest_first=True
    )
    summaries = [run.summary() for run in runs]
    if out.json_mode:
        out.emit_json(
            {"ok": True, "cluster": cluster.name, "runs": [s.to_dict() for s in summaries]}
        )
        return int(ExitCode.OK)
    if not summaries:
        out.info(f"no runs on cluster '{cluster.name}' match (registry: {cluster.store.path})")
        return int(ExitCode.OK)
    for summary in summaries:
        run = summary.record
        counts = ", ".join(
            f"{n} {state}" for state, n in sorted(summary.counts.items(), key=lambda kv: -kv[1])
        )
        where = summary.collected_to[-1] if summary.collected_to else "not collected"
        out.console.print(
            f"{run.run_id}  job {run.job_id or '-'}  {summary.state}  {counts}  "
            f"submitted {run.submitted_at or '-'}  {where}",
            markup=False,
            highlight=False,
        )
    return int(ExitCode.OK)


def show_log(runs: list[Run], args: argparse.Namespace, out: Output) -> int:
    if len(runs) != 1:
        raise UsageError(f"--log needs exactly one run, {len(runs)} named", "name one run")
    log = runs[0].log(args.log, lines=args.lines, attempt=args.attempt)
    if out.json_mode:
        out.emit_json({"ok": True, **log.to_dict()})
        return int(ExitCode.OK)
    where = log.path or f"no log yet at {', '.join(log.candidates)}"
    out.err_console.print(
        f"task {log.task_index} ({log.task_id}) of run {log.run_id}, job {log.job_id}, "
        f"{log.state}; last {log.lines} line(s) of stdout+stderr: {where}",
        markup=False,
    )
    sys.stdout.write(log.text)
    sys.stdout.flush()
    return int(ExitCode.OK)
