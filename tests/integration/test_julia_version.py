"""A Julia below what Globtim 1.2.x needs (its Project.toml [compat] julia = "1.12") is refused
by deploy_julia.py and by the doctor, both naming the two versions and julia.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError
from globtim_hpc.settings.profile import load_profile
from globtim_hpc.transport.factory import open_transport
from tests.integration.conftest import REPO, Testbed
from tests.integration.test_deploy import run_deploy, source  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def old_julia_profile(testbed: Testbed, tmp_path: Path) -> Path:
    """The bed's profile with a Julia that says it is 1.10.4 (the stand-in, told so)."""
    wrapper = f"{testbed.remote_root}/old-julia/julia"
    stand_in = load_profile(str(testbed.profile)).julia_executable
    testbed.as_user("falcon", (
        f"mkdir -p {testbed.remote_root}/old-julia && printf '%s\\n' '#!/bin/sh' "
        f"'GLOBTIM_STAND_IN_JULIA_VERSION=1.10.4 exec {stand_in} \"$@\"' > {wrapper} && "
        f"chmod +x {wrapper}"
    ))
    text = testbed.profile.read_text()
    lines = [f"  executable: {wrapper}" if line.strip().startswith("executable:") else line
             for line in text.splitlines()]
    profile = tmp_path / "old-julia.yaml"
    profile.write_text("\n".join(lines).replace("name: testbed", "name: oldjulia") + "\n")
    return profile


def test_deploy_refuses_a_julia_below_the_deployed_compat(
    old_julia_profile: Path, source: Path  # noqa: F811
) -> None:
    profile = load_profile(str(old_julia_profile))
    with open_transport("ssh", profile.ssh) as transport, pytest.raises(ConfigError) as caught:
        run_deploy(profile, transport, source)
    message = caught.value.message
    assert "Julia 1.10.4" in message and 'julia = "1.12"' in message
    assert "julia.modules" in (caught.value.hint or "")


def test_the_doctor_refuses_it_too(old_julia_profile: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy_julia.py"), "--cluster", str(old_julia_profile),
         "--check", "--json"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    julia = checks["Julia"]
    assert julia["status"] == "fail"
    assert "1.10.4" in julia["detail"] and "1.12" in julia["detail"]
    assert "julia.modules" in (julia.get("hint") or julia.get("fix") or "")
