"""Poll wall time for 1, 100 and 1,000 tracked tasks, against one raw OpenSSH squeue.

Needs the test bed (tests/testbed/up.sh). Submits held arrays (nothing runs), times
SlurmScheduler.poll over the toolkit's open SSH connection (one squeue + one sacct), and
``ssh -F <bed ssh_config> falcon squeue`` (a new OpenSSH connection through mack each time).
Prints medians and ratios only; it passes or fails on nothing.

    .venv/bin/python bench/monitor.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from globtim_hpc.scheduler.base import TrackedJob  # noqa: E402
from globtim_hpc.scheduler.slurm import SlurmScheduler  # noqa: E402
from globtim_hpc.settings.profile import load_profile  # noqa: E402
from globtim_hpc.transport.factory import open_transport  # noqa: E402
from tests.integration.monitor_support import unique_base  # noqa: E402
from tests.integration.test_poll_cost import _submit_held  # noqa: E402

SIZES = (1, 100, 1000)


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    bed_dir = Path(os.environ.get("GLOBTIM_TESTBED_DIR", "/var/tmp/globtim-testbed"))
    ssh_config = bed_dir / "client" / "ssh_config"
    profile = load_profile(str(REPO / "configs" / "testbed.yaml"))
    with open_transport("ssh", profile.ssh) as transport:
        scheduler = SlurmScheduler(transport)
        base = unique_base(transport)
        jobs: list[TrackedJob] = []
        try:
            jobs = [_submit_held(transport, base, size) for size in SIZES]
            scheduler.poll(jobs[:1])  # connect once, outside the timings
            raw_s = _median_s(
                lambda: subprocess.run(
                    ["ssh", "-F", str(ssh_config), "falcon", "squeue", "-h"],
                    capture_output=True,
                    check=True,
                    stdin=subprocess.DEVNULL,
                ),
                args.repeat,
            )
            print(
                f"raw OpenSSH 'ssh falcon squeue' (new connection via mack): median {raw_s * 1000:.0f} ms"
            )
            for job in jobs:
                poll_s = _median_s(partial(scheduler.poll, [job]), args.repeat)
                print(
                    f"poll of {job.task_count:>5} tracked task(s) (squeue + sacct, open connection): "
                    f"median {poll_s * 1000:.0f} ms, {poll_s / raw_s:.2f}x the raw squeue"
                )
            all_s = _median_s(lambda: scheduler.poll(jobs), args.repeat)
            total = sum(job.task_count for job in jobs)
            print(
                f"poll of all {total} tasks in one go: median {all_s * 1000:.0f} ms, {all_s / raw_s:.2f}x"
            )
        finally:
            scheduler.cancel(jobs)
            transport.run(["rm", "-rf", base])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
