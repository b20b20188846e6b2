"""collect_results.py: pull a run back from the cluster, verified, organised, with a summary."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from globtim_hpc.cli.common import Output, base_parser, run_main
from globtim_hpc.errors import ExitCode, GlobtimHpcError, UsageError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from globtim_hpc.api import Cluster, Run
    from globtim_hpc.workflows.collect import CollectResult

DESCRIPTION = """\
Collect a run's files into results/<problem>/<YYYY-MM-DD>_<run_id>/ with MANIFEST.sha256,
metadata.json and summary.md. Every file is checked against a SHA-256 manifest made on the
cluster; only missing or changed files are sent (one tar stream, nothing staged on the way).
A run folder appears only complete and verified. Tasks still running are left for later:
collect again when they have finished. An interrupted collection resumes where it stopped."""

EPILOG = """\
examples:
  collect_results.py --job-id 12345 --local-dir results/
  collect_results.py --run-id 4d_benchmark_20261129-104500_1a2b3c4d
  collect_results.py --all                       # every finished run not collected yet
  collect_results.py --job-id 12345 --clean-remote   # then delete the cluster's copy
  collect_results.py --compare RUN_A RUN_B           # what differs; local, no connection
  collect_results.py --rebuild-index                 # results/index.csv anew from the folders

Remote data is deleted only with --clean-remote, only for a run whose tasks have all
finished, and only after everything collected has verified."""

PLAIN_PROGRESS_STEP = 0.1  # off a terminal: one line per 10 % received


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("collect_results.py", DESCRIPTION, EPILOG)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job-id", metavar="ID", help="the run's SLURM job id")
    which.add_argument("--run-id", metavar="ID", help="the run id")
    which.add_argument(
        "--all", action="store_true", help="every finished run of this cluster not yet collected"
    )
    which.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="show and write (DIR/comparisons/) what differs between two collected runs "
        "(run ids or folders): parameters, resources, code, per-task metrics; no connection",
    )
    which.add_argument(
        "--rebuild-index",
        action="store_true",
        help="write DIR/index.csv anew from every run folder under DIR; no connection",
    )
    parser.add_argument(
        "--local-dir",
        metavar="DIR",
        default="results",
        help="results folder; runs go to DIR/<problem>/<YYYY-MM-DD>_<run_id>/ (default: results)",
    )
    parser.add_argument(
        "--clean-remote",
        action="store_true",
        help="after a verified, complete collection, delete the run folder on the cluster",
    )
    parser.add_argument(
        "--no-plots",
        action="store_true",
        help="do not draw plots/ (default: the profile's collect.plots, normally on)",
    )
    parser.add_argument(
        "--compression",
        choices=("auto", "zstd", "gzip", "none"),
        default=None,
        help="compress the file stream (default: the profile's collect.compression, auto: text "
        "over a real link; zstd needs globtim-hpc[fast] here and falls back to gzip)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, build_parser(), argv)


class ConsoleObserver:
    """Phases as lines; the transfer as a rich progress bar on a terminal, plain lines off one."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.live = out.err_console.is_terminal and not out.json_mode
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total_bytes = 0
        self._received_bytes = 0
        self._next_report = PLAIN_PROGRESS_STEP
        self._started_s = 0.0
        self._file_count = 0
        self._codec: str | None = None

    def _line(self, text: str) -> None:
        if not self.out.json_mode:
            self.out.err_console.print(text, markup=False, highlight=False)

    def phase(self, message: str) -> None:
        self._line(f"{message} …")

    def transfer_started(self, byte_count: int, file_count: int) -> None:
        from globtim_hpc.results.summary import format_bytes

        self._total_bytes = max(byte_count, 1)
        self._file_count = file_count
        self._codec = None
        self._received_bytes = 0
        self._next_report = PLAIN_PROGRESS_STEP
        self._started_s = time.monotonic()
        if self.live:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.out.err_console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(f"{file_count} files", total=self._total_bytes)
        else:
            self._line(f"receiving {file_count} files (about {format_bytes(byte_count)})")

    def stream_codec(self, codec: str) -> None:
        self._codec = codec
        shown = "uncompressed" if codec == "none" else codec
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{self._file_count} files, {shown}")
        else:
            self._line(f"  stream: {shown}")

    def transferred(self, byte_count: int) -> None:
        self._received_bytes += byte_count
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=byte_count)
            return
        fraction = self._received_bytes / self._total_bytes
        if fraction >= self._next_report and fraction < 1.0:
            from globtim_hpc.results.summary import format_bytes

            self._line(f"  {fraction:4.0%}  {format_bytes(self._received_bytes)}")
            while self._next_report <= fraction:
                self._next_report += PLAIN_PROGRESS_STEP

    def transfer_finished(self) -> None:
        from globtim_hpc.results.summary import format_bytes

        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        elapsed_s = max(time.monotonic() - self._started_s, 1e-6)
        rate = format_bytes(self._received_bytes / elapsed_s)
        codec = f", {self._codec}" if self._codec and self._codec != "none" else ""
        self._line(
            f"received {format_bytes(self._received_bytes)} in {elapsed_s:.1f} s ({rate}/s{codec})"
        )


def _runs(args: argparse.Namespace, cluster: Cluster) -> list[Run]:
    if args.all:
        return cluster.runs(uncollected=True)
    if not (args.job_id or args.run_id):
        raise UsageError("say which run to collect", "give --job-id ID, --run-id ID or --all")
    return [cluster.run(args.run_id, job_id=args.job_id)]


def _report(out: Output, result: CollectResult) -> None:
    from globtim_hpc.results.summary import format_bytes

    if result.skipped:
        out.info(f"{result.run_id}: not collected: {result.skipped}")
        return
    out.info(f"collected {result.run_id} -> {result.local_dir}")
    wire = ""
    if result.compression and result.compression != "none":
        wire = f", {format_bytes(result.wire_bytes_received)} on the wire with {result.compression}"
    out.info(
        f"  {result.file_count} files, {format_bytes(result.byte_count)}; received "
        f"{result.files_fetched} ({format_bytes(result.content_bytes_received)}{wire}), "
        f"reused {result.files_reused} already here"
    )
    finished = len(result.finished_tasks)
    line = f"  tasks: {finished} of {result.task_count} finished"
    if result.failed_tasks:
        failed = ", ".join(f"{t['task_id']} {t['state']}" for t in result.failed_tasks[:8])
        line += f"; not successful: {failed}"
    out.info(line)
    if result.unfinished_tasks:
        waiting = ", ".join(f"{t['task_id']} {t['state']}" for t in result.unfinished_tasks[:8])
        more = len(result.unfinished_tasks) - 8
        out.info(f"  still running (collect again later): {waiting}" + (f" … +{more}" if more > 0 else ""))
    if result.remote_removed:
        out.info("  the run folder on the cluster was removed")
    for note in result.notes:
        out.info(f"  note: {note}")
    out.info(f"  read first: {Path(result.local_dir or '') / 'summary.md'}  (table: tasks.csv)")


def _compare(args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.api import compare_runs
    from globtim_hpc.cli.compare_view import print_comparison

    result = compare_runs(args.compare[0], args.compare[1], Path(args.local_dir))
    if out.json_mode:
        out.emit_json({"ok": True, **result})
    else:
        print_comparison(out, result)
    return ExitCode.OK


def _rebuild_index(args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.api import rebuild_results_index

    path = rebuild_results_index(Path(args.local_dir))
    rows = max(len(path.read_text(encoding="utf-8").splitlines()) - 1, 0)
    if out.json_mode:
        out.emit_json({"ok": True, "index": str(path), "runs": rows})
    else:
        out.info(f"wrote {path} ({rows} runs)")
    return ExitCode.OK


def _body(args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.api import Cluster

    if args.compare:
        return _compare(args, out)
    if args.rebuild_index:
        return _rebuild_index(args, out)

    results: list[dict[str, Any]] = []
    first_error: GlobtimHpcError | None = None
    with Cluster(args.cluster) as cluster:
        runs = _runs(args, cluster)
        if not runs:
            if out.json_mode:
                out.emit_json({"ok": True, "collections": []})
            else:
                out.info(f"nothing to collect: every submitted run of '{cluster.name}' is collected")
            return ExitCode.OK
        for run in runs:
            try:
                result = cluster.collect(
                    run, Path(args.local_dir), clean_remote=args.clean_remote,
                    require_complete=args.all, observer=ConsoleObserver(out),
                    plots=False if args.no_plots else None, compression=args.compression,
                )  # fmt: skip
            except GlobtimHpcError as exc:
                if not args.all:
                    raise
                first_error = first_error or exc
                results.append({"run_id": run.run_id, "error": exc.message, "hint": exc.hint})
                sys.stderr.write(f"error: {run.run_id}: {exc.message}\n")
                continue
            results.append(result.to_dict())
            if not out.json_mode:
                _report(out, result)
    if out.json_mode:
        out.emit_json({"ok": first_error is None, "collections": results})
    return int(first_error.exit_code) if first_error else ExitCode.OK
