"""Rendering of batch scripts: golden files, quoting, and the #SBATCH block."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from globtim_hpc.errors import TemplateError
from globtim_hpc.jobs.plan import JobPlan, TaskSpec
from globtim_hpc.jobs.render import (
    ScriptInputs,
    array_spec,
    format_mem,
    format_time_limit,
    render_script,
)
from globtim_hpc.jobs.resources import Resources
from globtim_hpc.settings.profile import load_profile

GOLDEN = Path(__file__).parent / "golden"
RUN_ID = "4d_benchmark_20260101-120000_0123abcd"


def _plan(task_count: int = 4, **resources: object) -> JobPlan:
    res = Resources(time_min=90, mem_gb=6.5, cpus=4, **resources)  # type: ignore[arg-type]
    tasks = tuple(
        TaskSpec(index=i, task_id=f"{i:04d}", params={"degree": 4 + 2 * i})
        for i in range(task_count)
    )
    return JobPlan(
        problem="4d_benchmark",
        description="test",
        driver="globtim_driver.jl",
        tasks=tasks,
        resources=res,
        config_path=None,
        config_hash="0" * 64,
        extra_files=(),
    )


def _profile(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_profile(str(path))


PROFILE = """\
transport: ssh
scheduler: slurm
remote_root: /projects/g/hpc
ssh: {target: falcon}
julia: {executable: /opt/julia/bin/julia, modules: [julia/1.11, "gcc/12 mpi"]}
slurm: {partition: batch, account: physics}
"""


@pytest.mark.parametrize(
    "name,task_count,attempt,indices",
    [("array4", 4, 1, None), ("single", 1, 1, None), ("rerun3", 50, 3, (3, 17, 40, 41, 42, 43, 44))],
)
def test_rendered_script_matches_golden_file(
    tmp_path: Path, name: str, task_count: int, attempt: int, indices: tuple[int, ...] | None
) -> None:
    profile = _profile(tmp_path, PROFILE)
    script = render_script(
        _plan(task_count, max_parallel=2),
        profile,
        ScriptInputs(
            RUN_ID, f"/projects/g/hpc/runs/{RUN_ID}", "/projects/g/hpc/code/abc123",
            attempt=attempt, task_indices=indices,
        ),
    )  # fmt: skip
    golden = GOLDEN / f"{name}.sbatch"
    if os.environ.get("GLOBTIM_UPDATE_GOLDEN") == "1":  # after a template change, then review
        golden.write_text(script)
    assert golden.exists(), f"{golden} is missing: run with GLOBTIM_UPDATE_GOLDEN=1 and review it"
    assert script == golden.read_text()


def test_array_throttle_and_sbatch_block(tmp_path: Path) -> None:
    script = render_script(
        _plan(4, max_parallel=3),
        _profile(tmp_path, PROFILE),
        ScriptInputs(RUN_ID, f"/projects/g/hpc/runs/{RUN_ID}", None),
    )
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --array=0-3%3" in sbatch
    assert sbatch == sorted(sbatch)
    assert f"#SBATCH --job-name={RUN_ID}" in sbatch
    assert f"#SBATCH --comment=globtim-hpc:{RUN_ID}" in sbatch
    assert "JULIA_PROJECT" not in script  # no deployment, no project


def test_default_throttle_is_present_for_sweeps(tmp_path: Path) -> None:
    script = render_script(
        _plan(4),
        _profile(tmp_path, PROFILE),
        ScriptInputs(RUN_ID, f"/projects/g/hpc/runs/{RUN_ID}", None),
    )
    assert re.search(r"^#SBATCH --array=0-3%\d+$", script, re.M)


def test_hostile_values_are_quoted_once_and_script_is_valid_bash(tmp_path: Path) -> None:
    import yaml

    hostile = "julia/1.11; touch /tmp/canary-$(id -u) `date` \"x\" 'y'\nz *"
    data = yaml.safe_load(PROFILE)
    data["julia"]["modules"] = [hostile]
    data["julia"]["executable"] = "/opt/my julia/$(touch canary)/julia"
    profile = _profile(tmp_path, yaml.safe_dump(data))
    script = render_script(
        _plan(2), profile, ScriptInputs(RUN_ID, f"/projects/g/hpc/runs/{RUN_ID}", None)
    )
    # bash -n parses the whole script: a quoting mistake would be a syntax error or a new command.
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    line = next(line for line in script.splitlines() if line.startswith("module load"))
    assert line.startswith("module load '")


def test_sbatch_values_must_be_plain_words(tmp_path: Path) -> None:
    profile = _profile(tmp_path, PROFILE.replace("/projects/g/hpc", "/projects/my group/hpc"))
    with pytest.raises(TemplateError, match="cannot carry"):
        render_script(
            _plan(2), profile, ScriptInputs(RUN_ID, f"/projects/my group/hpc/runs/{RUN_ID}", None)
        )


def _placeholder_offenders(text: str) -> list[str]:
    """Placeholders with a quote beside them, or without the quoting filter."""
    offenders = []
    for match in re.finditer(r"\{\{(.*?)\}\}", text):
        line = text[: match.start()].count("\n") + 1
        before = text[match.start() - 1 : match.start()]
        after = text[match.end() : match.end() + 1]
        if before in ("'", '"') or after in ("'", '"'):
            offenders.append(f"line {line}: quote beside {match.group(0)}")
        expr = match.group(1).replace(" ", "")
        if not expr.endswith("|q") and expr != "sbatch_block":
            offenders.append(f"line {line}: {match.group(0)} is not quoted by the q filter")
    return offenders


def test_placeholder_check_catches_quotes_and_missing_filter() -> None:
    assert _placeholder_offenders("X='{{ a | q }}'")
    assert _placeholder_offenders('X="$A"{{ a | q }}')
    assert _placeholder_offenders("X={{ a }}")
    assert _placeholder_offenders("X={{ a | q }}") == []


def test_no_template_puts_a_quote_next_to_a_placeholder() -> None:
    templates = Path(__file__).resolve().parents[2] / "templates"
    found = sorted(templates.glob("*.j2"))
    assert found, "no templates found"
    offenders = [f"{p.name} {o}" for p in found for o in _placeholder_offenders(p.read_text())]
    assert offenders == []


def test_formats() -> None:
    assert format_time_limit(90) == "01:30:00"
    assert format_time_limit(24 * 60 + 5) == "1-00:05:00"
    assert format_mem(6.5) == "6656M"
    assert array_spec(1, 5) == "0"
    assert array_spec(100, 10) == "0-99%10"
