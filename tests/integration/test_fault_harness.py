"""The fault harness: the SSH chain dropped at every operation of deploy, submit, monitor and
collect, with what must hold after each drop.

Each point runs the real command (``tests.integration.faultrun``) with this process's own link
to mack, or its tunnel to falcon, dropped before or during the N-th transport operation; N runs
over every operation a clean run of that command makes. After each point: the exit code is 0 or
4 (connection) and a failure is one ``error:`` paragraph with a hint, never a traceback; the
registry passes SQLite's integrity check; the same command run again without a drop finishes
the work; SLURM holds exactly one job per run; no folder that is not hidden is partial (remote
run folders, local collected runs). One summary line lists the points and their outcomes.

Only this process's connections are dropped, so the bed's other users are not disturbed.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration

FIXTURE = REPO / "tests" / "fixtures" / "globtim_project"
CLUSTER = ["--cluster", "testbed"]
ALL_COMBOS = list(itertools.product(["before", "during", "after"], ["mack", "falcon"]))
DEPLOY_POINTS = 8  # per variant; a forced deploy point costs a verification job
DOCUMENTED_ON_A_DROP = {0, 4}
POINTS_AT_ONCE = 3  # a point mostly waits on SSH and SLURM; independent points overlap


@dataclass
class Outcome:
    command: str
    point: str
    exit_code: int
    message: str
    fired: bool  # the drop happened (the command may still finish: the chain is rebuilt)


def _faultrun(
    state: Path, record: Path, command: str, args: list[str], *, at: int = 0, mode: str = "before",
    hop: str = "mack",
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.faultrun", "--at", str(at), "--mode", mode,
         "--hop", hop, "--record", str(record), command, "--", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "GLOBTIM_HPC_STATE_DIR": str(state)},
    )


def _fired(record: Path) -> bool:
    return json.loads(record.read_text()).get("dropped") is not None


def _ops(record: Path) -> int:
    ops: int = json.loads(record.read_text())["ops"]
    return ops


def _check_message(done: subprocess.CompletedProcess[str], where: str) -> str:
    assert "Traceback" not in done.stderr, f"{where}: a traceback\n{done.stderr}"
    assert done.returncode in DOCUMENTED_ON_A_DROP, (
        f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    if done.returncode == 0:
        return ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{where}: not one error message\n{done.stderr}"
    assert "hint:" in done.stderr, f"{where}: no hint\n{done.stderr}"
    return errors[0]


def _check_registry(state: Path, where: str) -> None:
    with sqlite3.connect(state / "registry.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), where


def _copy_registry(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    with (
        sqlite3.connect(source / "registry.sqlite3") as src,
        sqlite3.connect(target / "registry.sqlite3") as dst,
    ):
        src.backup(dst)


def _runs(state: Path) -> list[tuple[str, str | None, str]]:
    with sqlite3.connect(state / "registry.sqlite3") as db:
        rows = db.execute("SELECT run_id, remote_dir, phase FROM runs").fetchall()
    return [(str(r[0]), r[1], str(r[2])) for r in rows]


def _slurm_jobs_named(testbed: Testbed, run_id: str) -> set[str]:
    """Array job ids SLURM holds (queued or ended within MinJobAge) for a job name."""
    shown = testbed.as_user("falcon", "scontrol -o show job 2>/dev/null || true").stdout
    ids = set()
    for line in shown.splitlines():
        if f" JobName={run_id} " not in f" {line} ":
            continue
        found = re.search(r"\bArrayJobId=(\d+)", line) or re.search(r"\bJobId=(\d+)", line)
        assert found is not None, line
        ids.add(found.group(1))
    return ids


def _check_remote_runs(testbed: Testbed, where: str) -> None:
    """Every visible run folder is complete (claimed whole), and none is nested in another."""
    runs = f"{testbed.remote_root}/runs"
    listing = testbed.as_user(
        "falcon",
        f"cd {runs} 2>/dev/null && for d in *; do [ -d \"$d\" ] || continue; "
        "printf '%s %s %s\\n' \"$d\" \"$([ -f \"$d/submission.json\" ] && echo whole || echo partial)\" "
        "\"$([ -d \"$d/$d\" ] && echo nested || echo flat)\"; done",
    ).stdout
    for line in listing.splitlines():
        name, whole, nested = line.split()
        assert (whole, nested) == ("whole", "flat"), f"{where}: {runs}/{name} is {whole}, {nested}"


def _check_local_results(results: Path, where: str) -> list[Path]:
    visible = [p for p in results.glob("*/*") if p.is_dir() and not p.name.startswith(".")]
    for folder in visible:
        assert (folder / "MANIFEST.sha256").is_file(), f"{where}: partial folder {folder}"
    return visible


def _fresh_commit(source: Path, token: str) -> None:
    (source / "src" / "token.jl").write_text(f'const FAULT_TOKEN = "{token}"\n')
    for args in (["add", "-A"], ["commit", "-qm", token]):
        subprocess.run(
            ["git", "-C", str(source), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
            check=True, capture_output=True,
        )


def _each_point(point: Callable[[int, str, str], Outcome], op_count: int) -> list[Outcome]:
    """Every (operation, moment, hop) point of one command, a few at a time: each point has its
    own registry, record and results, and only its own process's connections are dropped."""
    points = list(itertools.product(range(1, op_count + 1), ALL_COMBOS))
    with ThreadPoolExecutor(max_workers=POINTS_AT_ONCE) as pool:
        return list(pool.map(lambda p: point(p[0], *p[1]), points))


def test_drops_at_every_operation_of_the_four_commands(testbed: Testbed, tmp_path: Path) -> None:
    outcomes: list[Outcome] = []
    record = tmp_path / "record.json"
    source = tmp_path / "GlobTim.jl"
    shutil.copytree(FIXTURE, source)
    subprocess.run(["git", "-C", str(source), "init", "-q"], check=True)
    base = tmp_path / "state-base"

    # ---- deploy: a new commit per point, so every point deploys for real. Plain deploys take
    # over the environment's kept verification (3 commands); forced ones run a job.
    for variant in ([], ["--force"]):
        _fresh_commit(source, f"count{''.join(variant)}")
        deploy_args = [*CLUSTER, "--source", str(source), *variant]
        done = _faultrun(base, record, "deploy", deploy_args)
        assert done.returncode == 0, done.stderr
        deploy_ops = _ops(record)
        step = max(1, deploy_ops // DEPLOY_POINTS)
        for index, at in enumerate(range(1, deploy_ops + 1, step)):
            mode, hop = ALL_COMBOS[index % len(ALL_COMBOS)]
            where = f"deploy {' '.join(variant)} {mode} op {at} at {hop}"
            _fresh_commit(source, f"point-{at}{''.join(variant)}")
            done = _faultrun(base, record, "deploy", deploy_args, at=at, mode=mode, hop=hop)
            outcomes.append(Outcome("deploy", where, done.returncode, _check_message(done, where), _fired(record)))
            _check_registry(base, where)
            if done.returncode != 0:
                again = _faultrun(base, record, "deploy", deploy_args)
                assert again.returncode == 0, f"{where}: the rerun failed\n{again.stderr}"

    # ---- submit: every point starts from the registry as deploy left it
    submit_args = [*CLUSTER, "--problem", "4d_benchmark", "--config", "configs/4d_benchmark.yaml"]
    counting = tmp_path / "state-count"
    _copy_registry(base, counting)
    done = _faultrun(counting, record, "submit", submit_args)
    assert done.returncode == 0, done.stderr
    submit_ops = _ops(record)
    def submit_point(at: int, mode: str, hop: str) -> Outcome:
        where = f"submit {mode} op {at} at {hop}"
        state = tmp_path / f"state-submit-{at}-{mode}-{hop}"
        point_record = tmp_path / f"record-submit-{at}-{mode}-{hop}.json"
        _copy_registry(base, state)
        done = _faultrun(state, point_record, "submit", submit_args, at=at, mode=mode, hop=hop)
        outcome = Outcome("submit", where, done.returncode, _check_message(done, where), _fired(point_record))
        _check_registry(state, where)
        if done.returncode != 0:  # a finished submission rerun would be a new run, rightly
            again = _faultrun(state, point_record, "submit", submit_args)
            assert again.returncode == 0, f"{where}: the rerun failed\n{again.stderr}"
        runs = _runs(state)
        assert len(runs) == 1, f"{where}: {runs}"
        assert len(_slurm_jobs_named(testbed, runs[0][0])) == 1, f"{where}: not one job"
        _check_remote_runs(testbed, where)
        return outcome

    outcomes += _each_point(submit_point, submit_ops)

    # ---- monitor and collect: one finished run; every point from the registry before them
    submitted = tmp_path / "state-submitted"
    _copy_registry(base, submitted)
    done = _faultrun(submitted, record, "submit", [*submit_args, "--json"])
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["job_id"]
    waited = tmp_path / "state-waited"
    _copy_registry(submitted, waited)
    done = _faultrun(waited, record, "monitor", [*CLUSTER, "--job-id", job_id, "--wait"])
    assert done.returncode == 0, done.stderr

    monitor_args = [*CLUSTER, "--job-id", job_id]
    probe = tmp_path / "state-monitor-count"
    _copy_registry(submitted, probe)
    assert _faultrun(probe, record, "monitor", monitor_args).returncode == 0
    monitor_ops = _ops(record)
    def monitor_point(at: int, mode: str, hop: str) -> Outcome:
        where = f"monitor {mode} op {at} at {hop}"
        state = tmp_path / f"state-monitor-{at}-{mode}-{hop}"
        point_record = tmp_path / f"record-monitor-{at}-{mode}-{hop}.json"
        _copy_registry(submitted, state)
        done = _faultrun(state, point_record, "monitor", monitor_args, at=at, mode=mode, hop=hop)
        outcome = Outcome("monitor", where, done.returncode, _check_message(done, where), _fired(point_record))
        _check_registry(state, where)
        again = _faultrun(state, point_record, "monitor", [*monitor_args, "--json"])
        assert again.returncode == 0, f"{where}: the rerun failed\n{again.stderr}"
        assert json.loads(again.stdout)["ok"] is True
        return outcome

    outcomes += _each_point(monitor_point, monitor_ops)

    probe = tmp_path / "state-collect-count"
    _copy_registry(waited, probe)
    collect_args = [*CLUSTER, "--job-id", job_id, "--local-dir"]
    assert _faultrun(probe, record, "collect", [*collect_args, str(tmp_path / "r0")]).returncode == 0
    collect_ops = _ops(record)
    # one listing and one stream: every moment of both, at either hop
    def collect_point(at: int, mode: str, hop: str) -> Outcome:
        where = f"collect {mode} op {at} at {hop}"
        state = tmp_path / f"state-collect-{at}-{mode}-{hop}"
        point_record = tmp_path / f"record-collect-{at}-{mode}-{hop}.json"
        results = tmp_path / f"results-{at}-{mode}-{hop}"
        _copy_registry(waited, state)
        args = [*collect_args, str(results)]
        done = _faultrun(state, point_record, "collect", args, at=at, mode=mode, hop=hop)
        outcome = Outcome("collect", where, done.returncode, _check_message(done, where), _fired(point_record))
        _check_registry(state, where)
        _check_local_results(results, where)
        again = _faultrun(state, point_record, "collect", args)
        assert again.returncode == 0, f"{where}: the rerun failed\n{again.stderr}"
        assert len(_check_local_results(results, where)) == 1, where
        return outcome

    outcomes += _each_point(collect_point, collect_ops)

    by_command = collections.Counter(o.command for o in outcomes)
    by_code = collections.Counter(o.exit_code for o in outcomes)
    print(
        f"\nfault harness: {len(outcomes)} drop points "
        f"({', '.join(f'{c} {n}' for c, n in by_command.items())}); "
        f"outcomes: {by_code[0]} finished despite the drop, {by_code[4]} exit 4 (connection); "
        "0 tracebacks, 0 duplicate jobs, 0 partial folders, every rerun finished"
    )
    for message, count in collections.Counter(o.message for o in outcomes if o.message).items():
        print(f"  {count} x {message}")
    assert len(outcomes) >= 50, by_command
    fired = sum(o.fired for o in outcomes)
    assert fired >= 50, f"only {fired} of {len(outcomes)} drop points dropped the chain"
