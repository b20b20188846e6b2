"""What the four commands share: common flags, output, and turning errors into exit codes.

Heavy imports (paramiko, Jinja2, rich) happen only inside functions that need them, so
``--help`` and configuration errors answer fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from globtim_hpc import __version__
from globtim_hpc.errors import ExitCode, GlobtimHpcError

if TYPE_CHECKING:
    from rich.console import Console

    from globtim_hpc.settings.profile import ClusterProfile

EXIT_CODES_HELP = """exit codes:
  0  ok            1  error             2  usage
  3  configuration 4  connection (SSH)  5  scheduler (SLURM)
  6  job failed    130 interrupted"""


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def base_parser(prog: str, description: str, epilog: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=(epilog.rstrip() + "\n\n" if epilog else "") + EXIT_CODES_HELP,
        formatter_class=Formatter,
    )
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--cluster",
        metavar="NAME|PATH",
        help="cluster profile: a name from configs/ or ~/.config/globtim-hpc/clusters/, or a YAML "
        "file (default: $GLOBTIM_HPC_CLUSTER, then default_cluster in "
        "~/.config/globtim-hpc/config.yaml, then 'local': this machine, no SSH, no SLURM)",
    )
    group.add_argument(
        "--show-config",
        action="store_true",
        help="print the resolved cluster profile and where each value came from, then exit",
    )
    group.add_argument(
        "--disconnect",
        action="store_true",
        help="end the shared SSH connection this cluster keeps between commands "
        "(ssh.client: openssh), then exit; the next command logs in again",
    )
    group.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout, nothing else"
    )
    group.add_argument("--debug", action="store_true", help="show tracebacks and transport details")
    group.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class Output:
    """Human output through rich on stderr/stdout; plain lines when not on a terminal."""

    def __init__(self, *, json_mode: bool, debug: bool = False) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self._console: Console | None = None
        self._err_console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # In --json mode stdout carries only the JSON object; human lines go to stderr.
            self._console = Console(stderr=self.json_mode, highlight=False, soft_wrap=True)
        return self._console

    @property
    def err_console(self) -> Console:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._err_console

    def info(self, message: str) -> None:
        self.console.print(message, markup=False) if not _has_markup(
            message
        ) else self.console.print(message)

    def warn(self, message: str) -> None:
        self.err_console.print(f"[yellow]warning:[/yellow] {_escape(message)}")

    def emit_json(self, payload: dict[str, Any], stream: TextIO | None = None) -> None:
        out = stream or sys.stdout
        out.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        out.flush()


def _has_markup(message: str) -> bool:
    return "[/" in message


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def load_profile_from_args(args: argparse.Namespace) -> ClusterProfile:
    from globtim_hpc.settings.profile import load_profile

    return load_profile(args.cluster)


def show_config(profile: ClusterProfile, out: Output) -> int:
    from globtim_hpc.settings.profile import profile_rows

    rows = profile_rows(profile)
    if out.json_mode:
        out.emit_json(
            {
                "profile": profile.name,
                "origin": profile.origin,
                "settings": {key: {"value": value, "layer": layer} for key, value, layer in rows},
            }
        )
        return ExitCode.OK
    from rich.table import Table

    table = Table(title=f"cluster profile '{profile.name}' ({profile.origin})")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("set by")
    for key, value, layer in rows:
        shown = (
            "-"
            if value is None or value == [] or value == {}
            else json.dumps(value)
            if not isinstance(value, str)
            else value
        )
        table.add_row(key, _escape(str(shown)), _escape(layer))
    out.console.print(table)
    return ExitCode.OK


def disconnect(args: argparse.Namespace, out: Output) -> int:
    from globtim_hpc.api import Cluster

    with Cluster(args.cluster) as cluster:
        ended = cluster.disconnect()
        target = cluster.profile.ssh.target if cluster.profile.ssh is not None else cluster.name
    if out.json_mode:
        out.emit_json({"ok": True, "cluster": cluster.name, "disconnected": ended})
    elif ended:
        out.info(f"ended the shared connection to {target}; the next command logs in again")
    else:
        out.info(f"no shared connection to {target} was open")
    return ExitCode.OK


def report_error(exc: GlobtimHpcError, *, debug: bool, json_mode: bool) -> int:
    code = int(exc.exit_code)
    if json_mode:
        payload = {
            "ok": False,
            "error": {
                "type": type(exc).__name__,
                "message": exc.message,
                "hint": exc.hint,
                "exit_code": code,
            },
        }
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.write(f"error: {exc.message}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    sys.stderr.flush()
    return code


def run_main(
    body: Callable[[argparse.Namespace, Output], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse args, run ``body``, and turn every expected failure into a message and exit code."""
    args = parser.parse_args(argv)
    if args.debug:
        os.environ.setdefault("GLOBTIM_HPC_DEBUG", "1")
    out = Output(json_mode=args.json, debug=args.debug)
    try:
        if args.show_config:
            return show_config(load_profile_from_args(args), out)
        if args.disconnect:
            return disconnect(args, out)
        return int(body(args, out))
    except GlobtimHpcError as exc:
        return report_error(exc, debug=args.debug, json_mode=args.json)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.ERROR)
