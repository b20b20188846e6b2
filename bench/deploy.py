#!/usr/bin/env python3
"""Deployment on the test bed: bytes and time for a full deploy, a one-file change and a no-op,
against ``rsync -a -e 'ssh -F <bed ssh_config>'`` of the same tree to falcon (via mack);
``rsync -az`` is shown too, since the toolkit compresses its stream.

Prints figures; passes or fails on nothing. Needs the bed up (tests/testbed/up.sh) and root
(to read the bed's client key).

    .venv/bin/python bench/deploy.py [--files 400] [--file-kb 3]

The tree is the fixture project (tests/fixtures/globtim_project) plus ``--files`` generated
Julia-like source files, made unique per run so that nothing is on the cluster yet. The
toolkit's figures are for the whole deploy (code, Pkg set-up on the login node, a SLURM
verification job); its bytes and "ship" time are those of moving code (the probe, the
object-store query and the tar stream), without SSH framing.

Cases, each turn on two new trees (``--repeats`` turns, 3 by default; each figure a median):
``full + job`` (a tree deployed with ``--force``: what a tree costs whose run environment no
job verified yet: code, Pkg set-up and a verification job), ``full`` (a tree the cluster has
never seen, whose environment a job verified before: workflows/envstep.py), ``one file`` (one
source file edited), ``no-op`` (the same tree again) and ``forced`` (one more edit, with
``--force``). The last column sets each deploy against ``rsync -az`` of the same change (the
forced cases against their unforced twins).
rsync's bytes are its own ``--stats`` totals. Remote folders are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from globtim_hpc.registry.store import Store  # noqa: E402
from globtim_hpc.scheduler.factory import make_scheduler  # noqa: E402
from globtim_hpc.settings.profile import load_profile  # noqa: E402
from globtim_hpc.transport.factory import open_transport  # noqa: E402
from globtim_hpc.transport.recording import RecordingTransport  # noqa: E402
from globtim_hpc.workflows.deploy import DeployOptions, deploy  # noqa: E402

TESTBED_DIR = Path(os.environ.get("GLOBTIM_TESTBED_DIR", "/var/tmp/globtim-testbed"))
SSH_CONFIG = TESTBED_DIR / "client" / "ssh_config"
PROFILE = REPO / "configs" / "testbed.yaml"
FIXTURE = REPO / "tests" / "fixtures" / "globtim_project"


# The commands that move code: the probe (which also answers which objects are missing) and
# the tar stream.
_SHIP_MARKERS = ("globtim-probe",)


def shipping_figures(transport: RecordingTransport) -> tuple[float, int, int, int]:
    """(seconds, bytes sent, bytes received, remote commands) of what the deploy shipped.
    File transfers (DEPLOY.json written, a job's result read) are counted apart."""
    ship = [
        call for call in transport.commands
        if call.kind == "stream" or (len(call.what) > 3 and call.what[3] in _SHIP_MARKERS)
    ]
    return (
        sum(call.seconds for call in ship),
        sum(call.sent_bytes for call in ship),
        sum(call.received_bytes for call in ship),
        len(transport.commands),
    )


@dataclass
class Row:
    case: str
    tool: str
    sent: int
    received: int
    seconds: float
    extra: str = ""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=bench@example.org", "-c", "user.name=bench",
         *args],
        check=True, capture_output=True,
    )


def make_tree(root: Path, files: int, file_kb: int) -> Path:
    shutil.copytree(FIXTURE, root)
    token = secrets.token_hex(8)
    for index in range(files):
        folder = root / "src" / f"part{index % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(
            f"f_{token}_{index}_{line}(x) = sum(abs2, x) * {line} + {index}  # line {line}\n"
            for line in range(max(1, file_kb * 1024 // 60))
        )
        (folder / f"module_{index:04d}.jl").write_text(body)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bench tree")
    return root


_STAT = re.compile(r"Total bytes (sent|received):\s+([\d,.]+)")


def rsync(flags: str, src: Path, dest: str) -> tuple[int, int, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        ["rsync", flags, "--stats", "-e", f"ssh -F {SSH_CONFIG}", f"{src}/", f"falcon:{dest}/"],
        capture_output=True, text=True, check=True,
    )
    elapsed = time.perf_counter() - started
    totals = {kind: int(value.replace(",", "").replace(".", "")) for kind, value in
              _STAT.findall(proc.stdout)}
    return totals.get("sent", -1), totals.get("received", -1), elapsed


# (case, which tree, --force, edit one file first, rsync the tree too)
_CASES = (
    ("full + job", "fresh", True, False, False),
    ("full", "tree", False, False, True),
    ("one file", "tree", False, True, True),
    ("no-op", "tree", False, False, True),
    ("forced", "tree", True, True, False),
)
# Which rsync figure a case is set against: a forced deploy moves what its unforced twin does.
_BASELINE = {"full + job": "full", "forced": "one file"}


def one_turn(
    profile: Any, transport: RecordingTransport, scheduler: Any, store: Store, work: Path,
    turn: int, args: argparse.Namespace,
) -> tuple[list[Row], int, int, int]:
    """Every case once, on two new trees: rows, and the tree's file count, bytes, changed bytes."""
    trees = {
        name: make_tree(work / f"{name}-{turn}" / "GlobTim.jl", args.files, args.file_kb)
        for name in ("fresh", "tree")
    }
    tree = trees["tree"]
    changed = tree / "src" / "part00" / "module_0000.jl"
    files = [p for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts]
    rsync_dest = f"{profile.remote_root}/bench-rsync-{secrets.token_hex(4)}"
    rows: list[Row] = []
    try:
        for case, which, force, edit, with_rsync in _CASES:
            if edit:
                changed.write_text(changed.read_text() + f"# edit {secrets.token_hex(4)}\n")
                git(tree, "commit", "-qam", "one edit")
            transport.clear()
            started = time.perf_counter()
            options = DeployOptions(source=trees[which], force=force)
            report = deploy(profile, transport, scheduler, store, options)
            elapsed = time.perf_counter() - started
            ship_s, ship_sent, ship_received, commands = shipping_figures(transport)
            transfers = len(transport.calls) - commands
            verification = report.record.get("verification") or {}
            how = "no job: environment verified before" if "inherited_from" in verification \
                else "a verification job"
            rows.append(Row(
                case, "deploy_julia", ship_sent, ship_received, elapsed,
                f"ship {ship_s:.2f} s, {commands} remote commands + {transfers} file "
                f"transfers, {report.new_objects} new files; " + (how if not report.noop else "no-op"),
            ))
            if with_rsync:
                for flags in ("-a", "-az"):
                    sent, received, seconds = rsync(flags, tree, f"{rsync_dest}{flags}")
                    rows.append(Row(case, f"rsync {flags}", sent, received, seconds))
    finally:
        for flags in ("-a", "-az"):
            transport.run(["rm", "-rf", "--", f"{rsync_dest}{flags}"], timeout_s=300)
    return rows, len(files), sum(p.stat().st_size for p in files), changed.stat().st_size


def medians(turns: list[list[Row]]) -> list[Row]:
    """One row per (case, tool), in the first turn's order: median time and bytes; the last
    turn's notes."""
    by_key: dict[tuple[str, str], list[Row]] = {}
    for rows in turns:
        for row in rows:
            by_key.setdefault((row.case, row.tool), []).append(row)
    return [
        Row(case, tool,
            int(statistics.median(r.sent for r in group)),
            int(statistics.median(r.received for r in group)),
            statistics.median(r.seconds for r in group), group[-1].extra)
        for (case, tool), group in by_key.items()
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400, help="generated source files")
    parser.add_argument("--file-kb", type=int, default=3, help="size of each generated file")
    parser.add_argument("--repeats", type=int, default=3, help="turns; each figure is a median")
    args = parser.parse_args()

    profile = load_profile(str(PROFILE))
    turns: list[list[Row]] = []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        os.environ["GLOBTIM_HPC_STATE_DIR"] = str(Path(tmp) / "state")
        with RecordingTransport(open_transport("ssh", profile.ssh)) as transport, Store.open() as store:
            scheduler = make_scheduler(profile, transport)
            for turn in range(args.repeats):
                rows, file_count, tree_bytes, changed_bytes = one_turn(
                    profile, transport, scheduler, store, Path(tmp), turn, args
                )
                turns.append(rows)

    table = medians(turns)
    rsync_az = {row.case: row.seconds for row in table if row.tool == "rsync -az"}
    print(f"tree: {file_count} files, {tree_bytes:,} bytes (changed file: {changed_bytes:,} "
          f"bytes); medians of {args.repeats} turns")
    print(f"{'case':<10} {'tool':<13} {'sent B':>10} {'received B':>11} {'time s':>7} "
          f"{'/rsync -az':>10}  notes")
    for row in table:
        baseline = rsync_az.get(_BASELINE.get(row.case, row.case))
        ratio = f"{row.seconds / baseline:.2f}x" if baseline and row.tool != "rsync -az" else ""
        print(f"{row.case:<10} {row.tool:<13} {row.sent:>10,} {row.received:>11,} "
              f"{row.seconds:>7.2f} {ratio:>10}  {row.extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
