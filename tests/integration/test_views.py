"""The views of collected runs on the bed: a 2 x 5 sweep through SLURM and the stand-in, its
tasks.csv, plots and index; and sizing that learns from a run whose tasks used more memory
than estimated (the stand-in allocates it; sacct measures it)."""

from __future__ import annotations

import json
import math
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from globtim_hpc import Cluster
from globtim_hpc.cli.collect import main as collect_main
from globtim_hpc.cli.submit import main as submit_main
from globtim_hpc.jobs.sizing import task_size
from globtim_hpc.results.index import INDEX_NAME
from tests.integration import bedenv
from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration
ALLOCATE_MB = 2200  # above the 1.5 GB baseline of every estimate, below the 4 GB requested


def _config(path: Path, functions: list[str], degrees: list[int], mem: str = "4") -> Path:
    path.write_text(
        f"parameters:\n  function: [{', '.join(functions)}]\n"
        f"  degree: [{', '.join(map(str, degrees))}]\n  samples_per_dim: 6\n"
        f"resources:\n  mem_gb: {mem}\n  time_min: 5\n  cpus: 1\n"
    )
    return path


@pytest.fixture
def knobs() -> Iterator[Path]:
    """The stand-in's knob file of this checkout on the bed (jobs' environment is not ours)."""
    path = bedenv._backing(bedenv.stand_in_dir()) / "knobs.env"
    yield path
    path.unlink(missing_ok=True)


def test_a_2x5_sweep_collected_on_the_bed(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    results = tmp_path / "results"
    config = _config(tmp_path / "sweep.yaml", ["Sphere", "Rosenbrock"], [4, 6, 8, 10, 12])
    with Cluster("testbed") as cluster:
        run = cluster.submit(cluster.plan("4d_benchmark", config), use_deployment=False)
        run.wait(timeout_s=600, interval_s=1)
        folder = Path(cluster.collect(run, results).local_dir or "")
    frame = pd.read_csv(folder / "tasks.csv")
    assert len(frame) == 10 and (frame.state == "COMPLETED").all()
    assert frame.l2_error.notna().all() and frame.requested_mem_gb.eq(4).all()
    schema = json.loads((REPO / "schemas" / "tasks.schema.json").read_text())
    for row in json.loads(frame.to_json(orient="records")):
        jsonschema.validate(row, schema)
    summary = (folder / "summary.md").read_text()
    sidecar = json.loads((folder / "plots" / "plots.json").read_text())
    for figure in sidecar["figures"].values():
        assert f"]({figure['png']})" in summary
        assert (folder / figure["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for line in sidecar["figures"]["l2_error"]["metrics"]["l2_error"]["series"]:
        rows = frame[frame.param_function == line["group"]["function"]].sort_values("degree")
        assert line["y"] == pytest.approx(rows.l2_error.tolist(), rel=1e-12)
    index = pd.read_csv(results / INDEX_NAME)
    assert list(index.run_id) == [run.run_id] and int(index.n_completed[0]) == 10


@pytest.mark.alone  # the stand-in's knob file reaches every job of this checkout
def test_sizing_learns_from_a_run_that_used_more_than_estimated(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, knobs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    knobs.write_text(f"GLOBTIM_STAND_IN_ALLOCATE_MB=6:{ALLOCATE_MB}\nGLOBTIM_STAND_IN_HOLD_S=6\n")
    with Cluster("testbed") as cluster:
        first = _config(tmp_path / "first.yaml", ["Sphere"], [4, 6])
        run = cluster.submit(cluster.plan("4d_benchmark", first), use_deployment=False)
        run.wait(timeout_s=600, interval_s=1)
        folder = Path(cluster.collect(run, tmp_path / "results").local_dir or "")
    knobs.unlink()
    sizing = {s["degree"]: s for s in json.loads((folder / "metadata.json").read_text())["sizing"]}
    estimate_6 = task_size(4, 6, 6).mem_gb
    assert sizing[6]["max_rss_gb"] > ALLOCATE_MB / 1024 * 0.95, sizing
    ratio = sizing[6]["mem_over_estimate"]
    assert ratio == pytest.approx(sizing[6]["max_rss_gb"] / estimate_6, rel=1e-3) and ratio > 1.2
    # A task over before sacct's first 2 s sample may have no MaxRSS; if it has one, it is small.
    assert (sizing.get(4, {}).get("mem_over_estimate") or 0.0) < 1.0

    bigger = _config(tmp_path / "bigger.yaml", ["Sphere"], [6, 8, 10])
    assert submit_main(["--cluster", "testbed", "--problem", "4d_benchmark", "--config",
                        str(bigger), "--dry-run"]) == 0  # fmt: skip
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert f"degree 6 used {ratio:.1f}x the estimate last time" in text, text
    assert "raise resources.mem_gb" not in text  # 4 GB still covers it

    auto = _config(tmp_path / "auto.yaml", ["Sphere"], [6, 8, 10], mem="auto")
    want_gb = math.ceil(task_size(4, 6, 10).mem_gb * ratio * 1.25)
    assert submit_main(["--cluster", "testbed", "--problem", "4d_benchmark", "--config",
                        str(auto), "--dry-run", "--json"]) == 0  # fmt: skip
    dry = json.loads(capsys.readouterr().out)
    assert dry["plan"]["resources"]["mem_gb"] == want_gb
    assert any(f"requesting {want_gb:g} GB" in note for note in dry["plan"]["sizing_notes"])
    assert f"--mem={want_gb * 1024}M" in dry["script"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t",
                    *args], check=True, capture_output=True, text=True)  # fmt: skip


def test_compare_two_bed_runs_differing_in_one_parameter_and_one_commit(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    source = tmp_path / "GlobTim.jl"
    shutil.copytree(REPO / "tests" / "fixtures" / "globtim_project", source)
    (source / "src" / "token.jl").write_text(f'const TOKEN = "{secrets.token_hex(16)}"\n')
    _git(source, "init", "-q")
    _git(source, "add", "-A")
    _git(source, "commit", "-qm", "first")
    results = tmp_path / "results"
    runs = []
    with Cluster("testbed") as cluster:
        for gn, change in ((6, None), (8, "# a change to the code\n")):
            if change:
                (source / "src" / "token.jl").write_text(change)
                _git(source, "commit", "-qam", "second")
            cluster.deploy(source)
            config = _config(tmp_path / f"gn{gn}.yaml", ["Sphere", "Rosenbrock"], [4, 6])
            text = config.read_text().replace("samples_per_dim: 6", f"samples_per_dim: {gn}")
            config.write_text(text)
            runs.append(cluster.submit(cluster.plan("4d_benchmark", config)))
        for run in runs:
            run.wait(timeout_s=600, interval_s=1)
            cluster.collect(run, results, plots=False)
    a, b = (run.run_id for run in runs)
    assert collect_main(["--compare", a, b, "--local-dir", str(results), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parameters"] == {"samples_per_dim": {"a": 6, "b": 8}}
    assert set(result["code"]) == {"git_sha", "deploy_id"}, result["code"]
    assert result["resources"] == {} and len(result["tasks"]) == 4
    assert all(t["task_a"] and t["task_b"] for t in result["tasks"])
    assert collect_main(["--compare", a, b, "--local-dir", str(results)]) == 0
    shown = capsys.readouterr()
    assert "samples_per_dim: 6 -> 8" in shown.out + shown.err


def test_three_bed_runs_indexed_two_collected_at_once_and_rebuilt(
    testbed: Testbed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    results = tmp_path / "results"
    deuflhard = tmp_path / "deuflhard.yaml"
    deuflhard.write_text("parameters:\n  degree: 6\n  samples_per_dim: 20\n"
                         "resources:\n  mem_gb: 4\n  time_min: 5\n")
    with Cluster("testbed") as cluster:
        # Two problems: collections into one problem's folder take turns by design (its lock);
        # the index is shared by all of them.
        runs = [cluster.submit(cluster.plan("deuflhard_2d", deuflhard), use_deployment=False)]
        runs += [cluster.submit(cluster.plan("4d_benchmark", _config(
                     tmp_path / f"r{i}.yaml", ["Sphere"], [4 + 2 * i])), use_deployment=False)
                 for i in range(2)]  # fmt: skip
        for run in runs:
            run.wait(timeout_s=600, interval_s=1)
    cli = [sys.executable, str(REPO / "collect_results.py"), "--cluster", "testbed",
           "--local-dir", str(results), "--no-plots", "--run-id"]  # fmt: skip
    both = [subprocess.Popen([*cli, run.run_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for run in runs[:2]]  # fmt: skip
    for proc in both:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert sorted(pd.read_csv(results / INDEX_NAME).run_id) == sorted(r.run_id for r in runs[:2])
    assert subprocess.run([*cli, runs[2].run_id], capture_output=True).returncode == 0
    assert sorted(pd.read_csv(results / INDEX_NAME).run_id) == sorted(r.run_id for r in runs)
    (results / INDEX_NAME).unlink()
    assert subprocess.run([*cli, runs[0].run_id], capture_output=True).returncode == 0
    index = pd.read_csv(results / INDEX_NAME)
    assert sorted(index.run_id) == sorted(r.run_id for r in runs) and index.complete.all()
