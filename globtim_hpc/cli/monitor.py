"""monitor_jobs.py: the state of submitted runs, once, live (--watch), or until done (--wait)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from globtim_hpc.cli.common import Output, base_parser, run_main
from globtim_hpc.errors import ExitCode, UsageError
from globtim_hpc.models import JobState

if TYPE_CHECKING:
    from globtim_hpc.api import Cluster, Run
    from globtim_hpc.registry.records import StateChange
    from globtim_hpc.settings.profile import ClusterProfile
    from globtim_hpc.workflows.monitor import PollInterval, RunView

DESCRIPTION = """\
Show the state of submitted runs: per task the state, pending reason, node, elapsed time and
limit, and exit code; array runs as counts per state plus a row for each task that has not
completed. Without --job-id/--run-id: every active run of the selected cluster."""

EPILOG = """\
examples:
  monitor_jobs.py --job-id 12345
  monitor_jobs.py --run-id 4d_benchmark_20261129-104500_1a2b3c4d --watch
  monitor_jobs.py --job-id 12345 --follow 3      # tail task 3's output
  monitor_jobs.py --job-id 12345 --wait --json   # block until every task is final
  monitor_jobs.py --job-id 12345 --cancel --tasks 0-3,7 --yes
  monitor_jobs.py --list --since 3d --state FAILED   # runs of this cluster, newest first
  monitor_jobs.py --run-id RUN_ID --log 3 --lines 100

--wait and --watch exit 0 when every task COMPLETED and 6 when any did not. --list reads the
local registry only (no connection); --log reads one file with one remote command."""


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("monitor_jobs.py", DESCRIPTION, EPILOG)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job-id", action="append", metavar="ID", help="SLURM job id (repeatable)")
    which.add_argument("--run-id", action="append", metavar="ID", help="run id (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--watch",
        action="store_true",
        help="live table, refreshed in place, until all tasks are final",
    )
    mode.add_argument(
        "--follow",
        nargs="?",
        const="",
        metavar="TASK",
        help="print a task's output as it grows (TASK: array index or task id; default: the "
        "first running task) until the task is final",
    )
    mode.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the run's unfinished tasks (or those of --tasks), pending and running, in "
        "one scheduler command; asks first on a terminal unless --yes",
    )
    mode.add_argument(
        "--list",
        action="store_true",
        help="every run of the cluster, newest first: state, task counts, submitted, where it "
        "was collected (the registry only; nothing is asked of the cluster)",
    )
    mode.add_argument(
        "--log",
        metavar="TASK",
        help="the end of a task's log (stdout and stderr, one file; TASK: index or task id)",
    )
    parser.add_argument("--wait", action="store_true", help="block until every task is final")
    parser.add_argument("--tasks", metavar="LIST", help="with --cancel: task indices, e.g. 0-3,7")
    parser.add_argument("--yes", action="store_true", help="with --cancel: do not ask")
    parser.add_argument(
        "--dry-run", action="store_true", help="with --cancel: show the command, cancel nothing"
    )
    parser.add_argument("--since", metavar="WHEN", help="with --list: 2026-12-01, 12h, 3d, 2w")
    parser.add_argument("--problem", metavar="NAME", help="with --list: runs of this problem")
    parser.add_argument(
        "--state",
        metavar="STATE",
        help="with --list: ACTIVE, COMPLETED, FAILED, or runs with a task in this state",
    )
    parser.add_argument(
        "--lines", type=int, default=50, metavar="N", help="with --log: lines to show (50)"
    )
    parser.add_argument(
        "--attempt", type=int, metavar="N", help="with --log: which attempt of the task (1)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between polls (default 5; backs off to 60 while nothing changes)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, build_parser(), argv)


class _Session:
    """The cluster and the runs this command watches."""

    def __init__(self, cluster: Cluster, runs: list[Run]) -> None:
        self.cluster = cluster
        self.runs = runs

    def poll(self) -> list[RunView]:
        return self.cluster.poll(self.runs)

    def try_poll(self, notes: list[str]) -> list[RunView] | None:
        views, failure = self.cluster.try_poll(self.runs)
        if failure:
            notes.append(failure)
        return views


def _select_runs(cluster: Cluster, args: argparse.Namespace) -> list[Run]:
    if args.job_id:
        return [cluster.run(job_id=job_id) for job_id in args.job_id]
    if args.run_id:
        return [cluster.run(run_id) for run_id in args.run_id]
    return cluster.runs(active=True)


def _notes(views: Sequence[RunView]) -> list[str]:
    seen: list[str] = []
    for view in views:
        for note in view.notes:
            if note not in seen:
                seen.append(note)
    return seen


def _changes(views: Sequence[RunView]) -> list[StateChange]:
    return [change for view in views for change in view.changes]


def _payload(
    profile: ClusterProfile, views: Sequence[RunView], changes: Sequence[StateChange]
) -> dict[str, Any]:
    from globtim_hpc.workflows.monitor import change_to_dict

    return {
        "ok": True,
        "cluster": profile.name,
        "runs": [view.to_dict() for view in views],
        "notes": _notes(views),
        "changes": [change_to_dict(c) for c in changes],
        "all_final": all(view.all_settled for view in views),
        "all_completed": all(view.all_completed for view in views),
    }


def _final_code(views: Sequence[RunView]) -> int:
    return int(ExitCode.OK if all(v.all_completed for v in views) else ExitCode.JOB_FAILED)


def _body(args: argparse.Namespace, out: Output) -> int:
    if args.json and (args.watch or args.follow is not None):
        raise UsageError("--json cannot be combined with --watch or --follow", "drop one of them")
    from globtim_hpc.api import Cluster
    from globtim_hpc.workflows.monitor import PollInterval

    _check_flag_pairs(args)
    interval = PollInterval(args.interval)
    with Cluster(args.cluster) as cluster:
        if args.list:
            from globtim_hpc.cli.monitor_life import show_list

            return show_list(cluster, args, out)
        if args.cancel or args.log is not None:
            from globtim_hpc.cli.monitor_life import show_cancel, show_log

            if not (args.job_id or args.run_id):
                raise UsageError(
                    f"{'--cancel' if args.cancel else '--log'} needs a run",
                    "name it with --job-id or --run-id",
                )
            chosen = _select_runs(cluster, args)
            return show_cancel(cluster, chosen, args, out) if args.cancel else show_log(
                chosen, args, out
            )
        runs = _select_runs(cluster, args)
        if not runs:
            if out.json_mode:
                out.emit_json(_payload(cluster.profile, [], []))
            else:
                out.info(
                    f"no active runs on cluster '{cluster.name}' (registry: {cluster.store.path})"
                )
            return int(ExitCode.OK)
        session = _Session(cluster, runs)
        if args.follow is not None:
            return _follow(session, args.follow, interval, out)
        if args.watch:
            return _watch(session, interval, out)
        if args.wait:
            return _wait(session, args.interval, out)
        return _once(session, out)


_ONLY_WITH = {
    "tasks": "cancel", "yes": "cancel", "dry_run": "cancel", "since": "list", "problem": "list",
    "state": "list", "attempt": "log",
}  # fmt: skip


def _check_flag_pairs(args: argparse.Namespace) -> None:
    for flag, mode in _ONLY_WITH.items():
        value = getattr(args, flag)
        mode_on = getattr(args, mode) not in (None, False)
        if value not in (None, False) and not mode_on:
            raise UsageError(
                f"--{flag.replace('_', '-')} only goes with --{mode}", f"add --{mode} or drop it"
            )
    if args.list and (args.job_id or args.run_id):
        raise UsageError("--list shows every run; it takes no --job-id/--run-id", "drop them")


def _once(session: _Session, out: Output) -> int:
    views = session.cluster.poll(session.runs)
    changes = _changes(views)
    if out.json_mode:
        out.emit_json(_payload(session.cluster.profile, views, changes))
    else:
        _print_views(out, views, changes)
    return int(ExitCode.OK)


def _wait(session: _Session, interval_s: float | None, out: Output) -> int:
    from globtim_hpc.cli.monitor_view import change_lines

    changes: list[StateChange] = []

    def show(views: Sequence[RunView]) -> None:
        fresh = _changes(views)
        changes.extend(fresh)
        if not out.json_mode:
            for line in change_lines(fresh):
                out.console.print(line, markup=False, highlight=False)

    views = session.cluster.wait(session.runs, interval_s=interval_s, on_poll=show)
    if out.json_mode:
        out.emit_json(_payload(session.cluster.profile, views, changes))
    else:
        _print_views(out, views, [])
    return _final_code(views)


def _print_views(out: Output, views: Sequence[RunView], changes: Sequence[StateChange]) -> None:
    from globtim_hpc.cli.monitor_view import plain_lines, rich_view

    notes = _notes(views)
    if out.console.is_terminal:
        out.console.print(rich_view(views, changes, notes))
    else:
        for line in plain_lines(views, changes, notes):
            out.console.print(line, markup=False, highlight=False)


def _watch(session: _Session, interval: PollInterval, out: Output) -> int:
    from globtim_hpc.cli.monitor_view import change_lines, plain_lines, rich_view

    views = session.poll()
    recent: list[StateChange] = list(_changes(views))
    if not out.console.is_terminal:
        # Off a terminal there is no "in place": the table once, then one line per change.
        for line in plain_lines(views, recent, _notes(views)):
            out.console.print(line, markup=False)
        while not all(v.all_settled for v in views):
            time.sleep(interval.next(bool(_changes(views))))
            polled = session.try_poll([])
            if polled is not None:
                views = polled
                for line in change_lines(_changes(views)):
                    out.console.print(line, markup=False)
        _print_views(out, views, [])
        return _final_code(views)

    from rich.live import Live

    notes: list[str] = []
    hint = "Ctrl-C stops watching; the jobs keep running"
    with Live(console=out.console, auto_refresh=False, transient=False) as live:
        while not all(v.all_settled for v in views):
            delay_s = interval.next(bool(_changes(views)))
            footer = f"next poll in {delay_s:.0f} s  ({hint})"
            live.update(
                rich_view(views, recent, _notes(views) + notes[-3:], footer=footer), refresh=True
            )
            time.sleep(delay_s)
            polled = session.try_poll(notes)
            if polled is not None:
                views = polled
                recent = (recent + _changes(views))[-12:]
        live.update(rich_view(views, recent, _notes(views), footer="all tasks final"), refresh=True)
    return _final_code(views)


def _follow(session: _Session, selector: str, interval: PollInterval, out: Output) -> int:
    from globtim_hpc.workflows.monitor import LogFollower, log_candidates, parse_task_selector
    from globtim_hpc.workflows.taskstate import is_settled as task_is_settled

    views = session.poll()
    if len(views) != 1:
        raise UsageError(
            f"--follow needs exactly one run, {len(views)} selected",
            "name it with --job-id or --run-id",
        )
    view = views[0]
    if view.job_id is None:
        raise UsageError(f"run {view.run.run_id} has no job yet", "submit it first")
    index = parse_task_selector(selector or None, view)
    follower = LogFollower(session.cluster.transport, log_candidates(view.run, index))
    err = out.err_console
    err.print(f"following task {index} of run {view.run.run_id} (job {view.job_id})", markup=False)
    sink = sys.stdout.buffer
    next_poll = time.monotonic() + interval.start_s
    last_state = None
    while True:
        task = view.tasks[index].status
        if task.state is not last_state:
            err.print(f"[task {index}: {task.state.value}]", markup=False)
            last_state = task.state
        chunk = follower.read_new()
        if chunk:
            sink.write(chunk)
            sink.flush()
        if task_is_settled(task):
            sink.write(follower.read_new())
            sink.flush()
            if follower.path is None:
                err.print(f"no log found at {', '.join(follower.candidates)}", markup=False)
            return int(ExitCode.OK if task.state is JobState.COMPLETED else ExitCode.JOB_FAILED)
        time.sleep(interval.floor_s)
        if time.monotonic() >= next_poll:
            polled = session.try_poll([])
            if polled is not None:
                view = polled[0]
            changed = bool(polled and _changes(polled))
            next_poll = time.monotonic() + interval.next(changed)
