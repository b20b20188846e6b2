#!/usr/bin/env python3
"""Collection throughput on the test bed, against raw ``ssh … tar c | tar x`` and ``scp -r``.

Prints figures; passes or fails on nothing. Needs the bed up (tests/testbed/up.sh) and root
(to read the bed's client key). Sizes can be lowered for a quick run:

    BENCH_SMALL_COUNT=10000 BENCH_SMALL_BYTES=4096 BENCH_BIG_BYTES=1073741824 \
        .venv/bin/python bench/collect.py

Three fabricated runs are written on falcon (many small random files; one big random file;
GlobTim-like CSV files of floats), copied by raw ssh+tar (the baseline) and by scp, then
collected by the toolkit with each SSH client (paramiko, openssh) and collected again unchanged,
counting the remote commands of the re-collect. Each figure is the median of
``BENCH_REPEATS`` (3) turns in which the baseline and every case run one after the other, each
after a ``sync``; beside the time, the bench prints the CPU-seconds the whole machine spent busy
(/proc/stat): the bed's three hosts share the machine's cores, so on a small machine the
baseline and the toolkit compete for the same CPUs that a real laptop and cluster would not
share. The CSV run is collected both uncompressed and
with ``collect.compression: auto`` (zstd where both sides have it, else gzip), and the
compressed collection is set against the raw uncompressed tar; the bench says plainly when
compression does not pay on the link at hand.
Everything is removed afterwards, remotely and locally.

The bed's virtual link is as fast as memory, where compressing may cost more than it saves.
``BENCH_LINK_MBIT=200`` limits falcon's side of the falcon-mack link to that rate (a token
bucket, ``tc`` in falcon's network namespace, as root) for the whole benchmark, and removes
the limit afterwards: it slows every other user of the bed meanwhile. ``BENCH_ONLY=csv`` runs
the CSV case alone. ``BENCH_WORK_DIR=/dev/shm`` puts the local copies (the baseline's and the
toolkit's) in memory, so that a slow disk does not hide what the toolkit itself costs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from globtim_hpc.layout import RemoteLayout, new_run_id  # noqa: E402
from globtim_hpc.quoting import join  # noqa: E402
from globtim_hpc.scheduler.factory import make_scheduler  # noqa: E402

SMALL_COUNT = int(os.environ.get("BENCH_SMALL_COUNT", "10000"))
SMALL_BYTES = int(os.environ.get("BENCH_SMALL_BYTES", "4096"))
BIG_BYTES = int(os.environ.get("BENCH_BIG_BYTES", str(1 << 30)))
CSV_COUNT = int(os.environ.get("BENCH_CSV_COUNT", "100"))
CSV_BYTES = int(os.environ.get("BENCH_CSV_BYTES", str(1 << 20)))
LINK_MBIT = os.environ.get("BENCH_LINK_MBIT", "")
ONLY = os.environ.get("BENCH_ONLY", "")
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
WORK_DIR = os.environ.get("BENCH_WORK_DIR") or None  # where files land locally; default: TMPDIR  # the big case takes a third of them
LINK_DEVICE = "tb-f-m"  # falcon's end of the falcon-mack pair (tests/testbed/up.sh)
TARGET_SPEEDUP = 1.5
TESTBED_DIR = Path(os.environ.get("GLOBTIM_TESTBED_DIR", "/var/tmp/globtim-testbed"))
SSH_CONFIG = TESTBED_DIR / "client" / "ssh_config"

# Runs on falcon: a run folder with one finished task holding the benchmark's files.
FABRICATE = r"""
import json, os, sys
run, run_id, count, size, big = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def put(rel, data):
    path = os.path.join(run, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
put("submission.json", json.dumps({"run_id": run_id, "tasks": [{"index": 0, "task_id": "0000"}]}).encode())
put("status/0000.json", json.dumps({"schema": "globtim-hpc/status/1", "run_id": run_id, "task_id": "0000",
    "task_index": 0, "state": "EXITED", "exit_code": 0, "started_at": "2026-01-01T00:00:00Z",
    "ended_at": "2026-01-01T00:00:01Z"}).encode())
csv = os.environ.get("BENCH_KIND") == "csv"
for k in range(count):
    if csv:  # GlobTim-like output: rows of floats, with a header (compresses several-fold)
        rows = ["x1,x2,x3,z,gradnorm"]
        import random
        rng = random.Random(k)
        length = len(rows[0]) + 1  # a running total: summing the rows each time is quadratic
        while length < size:
            rows.append(",".join("%.17g" % rng.uniform(-1, 1) for _ in range(5)))
            length += len(rows[-1]) + 1
        put("output/0000/small/critical_points_%06d.csv" % k, ("\n".join(rows) + "\n").encode())
    else:
        put("output/0000/small/f%06d.bin" % k, os.urandom(size))
if big:
    path = os.path.join(run, "output/0000/big.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = big
        while left:
            chunk = os.urandom(min(left, 1 << 22))
            f.write(chunk)
            left -= len(chunk)
"""


def ssh(*argv: str, timeout_s: float = 3600) -> None:
    subprocess.run(["ssh", "-F", str(SSH_CONFIG), "falcon", join(argv)], check=True,
                   timeout=timeout_s, stdin=subprocess.DEVNULL)


def rate(byte_count: int, seconds: float) -> str:
    return f"{byte_count / max(seconds, 1e-9) / 1e6:8.1f} MB/s  ({seconds:6.1f} s)"


def busy_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy (/proc/stat): the bed's hosts share it."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Timed:
    """Wall and machine-wide busy CPU seconds of one measured step."""

    def __enter__(self) -> Timed:
        self.cpu_s, self.start_s = busy_cpu_s(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.start_s
        self.cpu_s = busy_cpu_s() - self.cpu_s


def collect_twice(profile: Any, client: str, mode: str, run_id: str, run_dir: str,
                  work: Path) -> dict[str, Any]:
    """Collect the run into a fresh folder, then again unchanged; the figures of both."""
    import dataclasses

    from globtim_hpc.registry.store import Store
    from globtim_hpc.transport.factory import open_transport
    from globtim_hpc.transport.recording import RecordingTransport
    from globtim_hpc.workflows.collect import CollectOptions, collect_run

    settings = dataclasses.replace(profile.ssh, client=client)
    state = Path(tempfile.mkdtemp(prefix=f"state-{client}-{mode}-", dir=work))
    with Store.open(state / "registry") as store:
        store.add_run(run_id=run_id, problem="bench", cluster=profile.name, scheduler="slurm",
                      remote_dir=run_dir, task_ids=["0000"], config_hash="bench",
                      deploy_id=None, git_sha=None, plan={}, submission=None)
        # A job no scheduler knows: task states come from the status files.
        store.record_job(run_id, profile.name, "59999999")
        run = store.get_run(run_id)
        assert run is not None
        options = CollectOptions(results_root=state / "results", compression=mode)
        with open_transport("ssh", settings) as transport:
            transport.run(["true"])  # connect before timing
            subprocess.run(["sync"], check=True)  # no writeback of earlier steps in this one
            with Timed() as first_t:
                first = collect_run(run, scheduler=make_scheduler(profile, transport),
                                    store=store, remote_root=profile.remote_root, options=options)
            recording = RecordingTransport(transport)
            with Timed() as again_t:
                again = collect_run(run, scheduler=make_scheduler(profile, recording),
                                    store=store, remote_root=profile.remote_root, options=options)
    shutil.rmtree(state, ignore_errors=True)
    return {"first_s": first_t.seconds, "first_cpu_s": first_t.cpu_s, "again_s": again_t.seconds,
            "first": first, "again": again, "commands": len(recording.commands)}


def raw_tar(run_dir: str, work: Path) -> tuple[Timed, int]:
    """The baseline once: ``ssh falcon tar c | tar x`` into a fresh folder; (timing, bytes)."""
    raw_dir = Path(tempfile.mkdtemp(prefix="raw-", dir=work))
    subprocess.run(["sync"], check=True)
    with Timed() as timed:
        subprocess.run(
            f"ssh -F {SSH_CONFIG} falcon {join(['tar', 'c', '-C', run_dir, '.'])} | tar x -C {raw_dir}",
            shell=True, check=True, timeout=3600, stdin=subprocess.DEVNULL,
        )
    total = sum(p.stat().st_size for p in raw_dir.rglob("*") if p.is_file())
    shutil.rmtree(raw_dir, ignore_errors=True)
    return timed, total


def bench_one(label: str, count: int, size: int, big: int, work: Path, kind: str = "random") -> None:
    from globtim_hpc.settings.profile import load_profile

    profile = load_profile(str(REPO / "configs" / "testbed.yaml"))
    assert profile.ssh is not None
    run_id = new_run_id("bench_collect")
    run_dir = RemoteLayout(profile.remote_root).run_dir(run_id)
    repeats = REPEATS if not big else max(1, REPEATS // 3)
    print(f"\n== {label} ({kind}): {count} files x {size} B + {big} B; medians of {repeats}",
          flush=True)
    try:
        ssh("env", f"BENCH_KIND={kind}", "python3", "-c", FABRICATE, run_dir, run_id, str(count),
            str(size), str(big))
        modes = ("none", "auto") if kind == "csv" else ("none",)
        cases = [(client, mode) for client in ("paramiko", "openssh") for mode in modes]
        raws: list[Timed] = []
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {case: [] for case in cases}
        total = 0
        for _ in range(repeats):  # the baseline and each case take turns: drift hits all alike
            timed, total = raw_tar(run_dir, work)
            raws.append(timed)
            for case in cases:
                runs[case].append(collect_twice(profile, *case, run_id, run_dir, work))
        raw_s = statistics.median([t.seconds for t in raws])
        raw_cpu_s = statistics.median([t.cpu_s for t in raws])
        print(f"  ssh falcon tar c | tar x      {rate(total, raw_s)}  (baseline; "
              f"{raw_cpu_s:5.1f} CPU-s busy on the machine)")
        scp_dir = work / "scp"
        scp_dir.mkdir()
        start = time.monotonic()
        subprocess.run(["scp", "-q", "-F", str(SSH_CONFIG), "-r", f"falcon:{run_dir}", str(scp_dir)],
                       check=True, timeout=3600, stdin=subprocess.DEVNULL)
        scp_s = time.monotonic() - start
        shutil.rmtree(scp_dir, ignore_errors=True)
        print(f"  scp -r                        {rate(total, scp_s)}  (once)")
        best: dict[str, float] = {}
        for (client, mode), figures in runs.items():
            first_s = statistics.median([f["first_s"] for f in figures])
            again_s = statistics.median([f["again_s"] for f in figures])
            cpu_s = statistics.median([f["first_cpu_s"] for f in figures])
            first, again = figures[-1]["first"], figures[-1]["again"]
            codec = first.compression or "none"
            print(f"  globtim collect [{client:8}] {codec:4}  {rate(first.content_bytes_received, first_s)}"
                  f"  {raw_s / first_s:5.2f}x raw tar, {scp_s / first_s:5.1f}x scp -r;"
                  f" {cpu_s:5.1f} CPU-s busy; {first.wire_bytes_received / 1e6:.1f} MB on the wire"
                  f" for {first.content_bytes_received / 1e6:.1f} MB of files")
            print(f"    unchanged re-collect        {again_s:6.2f} s = "
                  f"{100 * again_s / first_s:5.1f} % of the first, "
                  f"{figures[-1]['commands']} remote command(s), "
                  f"{again.stream_bytes_received} stream bytes, {again.files_reused} files reused")
            best[mode] = min(best.get(mode, first_s), first_s)
        if "auto" in best:
            speedup = raw_s / best["auto"]
            verdict = (
                f"meets the {TARGET_SPEEDUP}x target" if speedup >= TARGET_SPEEDUP
                else f"below the {TARGET_SPEEDUP}x target: compression does not pay on this link "
                f"({total / raw_s / 1e6:.0f} MB/s raw)"
            )
            print(f"  compressed collect vs raw uncompressed tar: {speedup:5.2f}x, {verdict}; "
                  f"vs the toolkit uncompressed: {best['none'] / best['auto']:5.2f}x")
    finally:
        ssh("rm", "-rf", "--", run_dir)
        for sub in work.iterdir():
            shutil.rmtree(sub, ignore_errors=True)


def _filesystem(path: str) -> str:
    done = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or "unknown file system"


def main() -> int:
    if not SSH_CONFIG.is_file():
        print(f"no test bed client config at {SSH_CONFIG}: bring the bed up (tests/testbed/up.sh)")
        return 1
    print(json.dumps({"small_count": SMALL_COUNT, "small_bytes": SMALL_BYTES, "big_bytes": BIG_BYTES,
                      "csv_count": CSV_COUNT, "csv_bytes": CSV_BYTES,
                      "link_mbit": LINK_MBIT or "unlimited", "repeats": REPEATS,
                      "cpus": os.cpu_count()}))
    limit = ["ip", "netns", "exec", "falcon", "tc", "qdisc"]
    if LINK_MBIT:
        subprocess.run([*limit, "replace", "dev", LINK_DEVICE, "root", "tbf", "rate",
                        f"{LINK_MBIT}mbit", "burst", "256kb", "latency", "100ms"], check=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-collect-", dir=WORK_DIR) as tmp:
            print(f"local files land in {tmp} ({_filesystem(tmp)})")
            if ONLY in ("", "small"):
                bench_one("many small files", SMALL_COUNT, SMALL_BYTES, 0, Path(tmp))
            if ONLY in ("", "big"):
                bench_one("one big file", 0, SMALL_BYTES, BIG_BYTES, Path(tmp))
            if ONLY in ("", "csv"):
                bench_one("GlobTim-like CSV", CSV_COUNT, CSV_BYTES, 0, Path(tmp), kind="csv")
    finally:
        if LINK_MBIT:
            subprocess.run([*limit, "del", "dev", LINK_DEVICE, "root"], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
