"""Submission cost on the test bed: globtim-hpc vs plain OpenSSH, for 1 task and a 100-task sweep.

Prints wall time (median of N) and remote round trips for:
  - globtim-hpc: pre-flight + one archive upload that also runs sbatch, over one chain;
  - OpenSSH baseline: `ssh -F cfg falcon 'mkdir … && tar x'` with the same archive, then
    `ssh -F cfg falcon sbatch …` (two chains through mack, as a script would do it).
Figures only. Jobs are cancelled afterwards. Needs the bed up (tests/testbed/up.sh).

    .venv/bin/python -m bench.submit [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from globtim_hpc.jobs.plan import build_plan
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.slurm import SlurmScheduler
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.workflows.submit import SubmitContext, prepare_run, submit_plan

BED = Path(os.environ.get("GLOBTIM_TESTBED_DIR", "/var/tmp/globtim-testbed"))
SSH_CONFIG = BED / "client" / "ssh_config"


def _config(folder: Path, sweep: bool) -> Path:
    path = folder / f"job-{'sweep' if sweep else 'one'}.yaml"
    functions = ["Sphere", "Rosenbrock", "shubert_4d", "camel_4d", "Deuflhard_4d"]
    ranges = [round(1.0 + 0.1 * i, 1) for i in range(20)]
    path.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "function": functions if sweep else "Sphere",
                    "sample_range": ranges if sweep else 1.2,
                    "degree": 4,
                    "samples_per_dim": 6,
                },
                "resources": {"preset": "quick", "cpus": 1, "mem_gb": 2, "max_parallel": 2},
            }
        )
    )
    return path


def _ours(config: Path, job_ids: list[str]) -> tuple[float, int]:
    profile = load_profile("testbed")
    plan = build_plan("4d_benchmark", config)
    start = time.perf_counter()
    with Store.open() as store, open_transport("ssh", profile.ssh) as transport:
        ctx = SubmitContext(profile, SlurmScheduler(transport), store)
        result = submit_plan(plan, ctx, deployment=None, resume=False)
    elapsed = time.perf_counter() - start
    assert result.job_id is not None
    job_ids.append(result.job_id)
    return elapsed, result.remote_commands


def _openssh(config: Path, job_ids: list[str]) -> tuple[float, int]:
    profile = load_profile("testbed")
    plan = build_plan("4d_benchmark", config)
    prepared = prepare_run(plan, profile, None, {})
    archive = prepared.archive()
    start = time.perf_counter()
    subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), "falcon",
         f"mkdir -p {prepared.run_dir} && tar -xzf - -C {prepared.run_dir}"],
        input=archive, check=True, capture_output=True,
    )
    out = subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), "falcon", f"cd {prepared.run_dir} && sbatch --parsable job.sbatch"],
        check=True, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    job_ids.append(out.stdout.strip().split(";")[0])
    return elapsed, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    job_ids: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GLOBTIM_HPC_STATE_DIR"] = tmp
        folder = Path(tmp)
        cases = {"1 task": _config(folder, False), "100-task sweep": _config(folder, True)}
        print(f"{'case':16} {'method':22} {'median s':>9} {'min s':>7} {'remote cmds':>12}")
        try:
            for label, config in cases.items():
                figures = {}
                for name, fn in (("globtim-hpc", _ours), ("OpenSSH scp-style", _openssh)):
                    times, commands = [], 0
                    for _ in range(args.repeat):
                        elapsed, commands = fn(config, job_ids)
                        times.append(elapsed)
                    figures[name] = statistics.median(times)
                    print(f"{label:16} {name:22} {figures[name]:9.3f} {min(times):7.3f} {commands:12d}")
                ratio = figures["globtim-hpc"] / figures["OpenSSH scp-style"]
                print(f"{label:16} {'ratio ours/OpenSSH':22} {ratio:9.2f}")
        finally:
            if job_ids:
                subprocess.run(["ssh", "-F", str(SSH_CONFIG), "falcon", "scancel " + " ".join(job_ids)],
                               capture_output=True)


if __name__ == "__main__":
    main()
