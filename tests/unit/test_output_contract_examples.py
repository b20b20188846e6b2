"""The examples in docs/output-contract.md parse as what they claim to be, and say what the
driver and the stand-in really do: the invocation is valid sh, the heartbeat line is the
stand-in's shape, the custom entry point is valid Julia with the driver's signature."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from globtim_hpc.julia import julia_ast

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "docs" / "output-contract.md"
STAND_IN_IO = REPO / "tests" / "stand_in" / "standin_io.py"
DRIVER = REPO / "julia" / "globtim_driver.jl"


def _blocks() -> list[tuple[str, str]]:
    text = CONTRACT.read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def _block_starting(prefix: str) -> tuple[str, str]:
    found = [(lang, body) for lang, body in _blocks() if body.lstrip().startswith(prefix)]
    assert len(found) == 1, f"docs/output-contract.md: one block starting {prefix!r}, got {found}"
    return found[0]


def test_the_invocation_is_valid_sh_and_sets_the_run_environment() -> None:
    _, body = _block_starting("JULIA_PROJECT=")
    # placeholders like <params.json> are redirections to sh: make them words first
    words = re.sub(r"<([^<>]+)>", r"PLACEHOLDER_\1", body).replace("$SLURM", "$X")
    checked = subprocess.run(["sh", "-n"], input=words, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert "globtim_driver.jl" in body and ".globtim-hpc/runenv" in body


def test_the_heartbeat_example_is_the_shape_the_stand_in_prints() -> None:
    _, body = _block_starting("HEARTBEAT ")
    record = json.loads(body.strip().removeprefix("HEARTBEAT "))
    assert set(record) == {"degree", "elapsed_s", "stage", "time"}, record
    stand_in = STAND_IN_IO.read_text(encoding="utf-8")
    for key in record:
        assert f'"{key}"' in stand_in, f"the stand-in's heartbeat has no {key!r}"
    stages = re.findall(r"`(\w+)`", CONTRACT.read_text(encoding="utf-8").split("Stages:", 1)[1][:200])
    driver = DRIVER.read_text(encoding="utf-8")
    for stage in stages:
        assert f'"{stage}"' in driver or f":{stage}" in driver, f"the driver never reports {stage}"


def test_the_custom_entry_point_is_julia_with_the_drivers_signature() -> None:
    lang, body = _block_starting("run_custom(")
    assert lang == "julia"
    root = julia_ast.parse(body.encode())
    assert not root.has_error, body
    driver = DRIVER.read_text(encoding="utf-8")
    assert "run_custom" in driver
