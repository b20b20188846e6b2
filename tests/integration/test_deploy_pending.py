"""A deployment whose verification job has not ended: runs submitted meanwhile wait on it.

The stand-in's verify_env.jl waits while a gate file exists (GLOBTIM_STAND_IN_VERIFY_GATE in its
knob file), so the verification job is held running while a run is submitted against it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.api import Cluster
from globtim_hpc.errors import JobFailedError
from globtim_hpc.workflows.deploy import DeployOptions
from tests.integration import bedenv
from tests.integration.conftest import Testbed
from tests.integration.runwatch import small_child_config, wait_for_reason
from tests.integration.test_deploy import (
    git,
    source,  # noqa: F401  (the fixture in a fresh repo)
)

# The stand-in's knob file holds every verification of this checkout: no other may run meanwhile.
pytestmark = [pytest.mark.integration, pytest.mark.alone]


@dataclass
class Gate:
    """The stand-in's knob file, and the gate its verification waits behind."""

    knobs: Path
    local: Path  # the gate as this namespace reaches it
    remote: str  # ... and as the compute node sees it

    def close(self, **more: str) -> None:
        self.local.write_text("closed\n")
        lines = [f"GLOBTIM_STAND_IN_VERIFY_GATE={self.remote}"]
        lines += [f"{key}={value}" for key, value in more.items()]
        self.knobs.write_text("\n".join(lines) + "\n")

    def open(self) -> None:
        self.local.unlink(missing_ok=True)


@pytest.fixture
def gate() -> Iterator[Gate]:
    folder = bedenv.stand_in_dir()
    knobs = bedenv._backing(folder) / "knobs.env"
    name = f"verify-{secrets.token_hex(4)}.gate"
    held = Gate(knobs, bedenv._backing(folder) / name, f"{folder}/{name}")
    yield held
    held.open()
    knobs.unlink(missing_ok=True)


@pytest.fixture
def cluster(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    with Cluster(str(testbed.profile)) as opened:
        yield opened


def _remote_record(testbed: Testbed, remote_dir: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(testbed.as_user("falcon", f"cat {remote_dir}/DEPLOY.json").stdout)
    return loaded


def test_a_run_submitted_while_verification_runs_waits_on_it(
    testbed: Testbed, cluster: Cluster, gate: Gate, source: Path, tmp_path: Path  # noqa: F811
) -> None:
    gate.close()
    report = cluster.deploy(source, DeployOptions(source, wait_verify=False, force=True))
    assert report.pending and not report.verified
    job_id = report.record["verification"]["job_id"]
    assert _remote_record(testbed, report.remote_dir)["verification"]["pending"] is True
    assert cluster.latest_deployment()["deploy_id"] == report.deploy_id  # type: ignore[index]

    child = cluster.submit("4d_benchmark", small_child_config(tmp_path))
    submission = child.record.submission or {}
    assert submission["deploy_id"] == report.deploy_id
    assert submission["after"] == [{"deployment": report.deploy_id, "job_ids": [job_id]}]
    assert any("still being verified" in note for note in child.submission.warnings)  # type: ignore[union-attr]
    assert "PENDING Dependency" in wait_for_reason(cluster, child.run_id, "Dependency")

    gate.open()
    settled = child.wait(timeout_s=240, interval_s=1)
    assert settled.counts() == {"COMPLETED": 1}
    # The next deployment of the same tree looks at the job once and records how it ended.
    again = cluster.deploy(source)
    assert again.noop and again.verified and not again.pending
    record = _remote_record(testbed, report.remote_dir)
    assert record["verified"] is True and record["verification"]["job_id"] == job_id
    assert record["verification"]["packages"]["Globtim"] == "1.2.1"
    latest = cluster.store.latest_deployment(cluster.name)
    assert latest is not None and latest["deploy_id"] == report.deploy_id


def test_a_failed_verification_never_starts_its_held_run(
    testbed: Testbed, cluster: Cluster, gate: Gate, source: Path, tmp_path: Path  # noqa: F811
) -> None:
    gate.close(GLOBTIM_STAND_IN_VERIFY_FAIL="Globtim")
    report = cluster.deploy(source, DeployOptions(source, wait_verify=False, force=True))
    assert report.pending
    child = cluster.submit("4d_benchmark", small_child_config(tmp_path))
    assert (child.record.submission or {})["after"][0]["deployment"] == report.deploy_id
    gate.open()
    assert "DependencyNeverSatisfied" in wait_for_reason(cluster, child.run_id, "DependencyNeverSatisfied")

    # The next submission finds out: the deployment is recorded as failed and not used.
    later = cluster.submit("4d_benchmark", small_child_config(tmp_path), new=True)
    notes = later.submission.warnings  # type: ignore[union-attr]
    assert any(f"deployment {report.deploy_id} failed its verification" in n for n in notes)
    assert (later.record.submission or {})["deploy_id"] != report.deploy_id
    assert (later.record.submission or {})["after"] == []
    record = _remote_record(testbed, report.remote_dir)
    assert record["verified"] is False and record["verification"].get("pending") is not True
    assert "Globtim" in record["verification"]["error"]
    unverified = cluster.store.latest_deployment(cluster.name, verified_only=False)
    assert unverified is not None and unverified["verified"] is False
    for run in (child, later):
        run.cancel()


def test_a_kept_verification_is_not_taken_over_when_the_new_code_does_not_load(
    testbed: Testbed, cluster: Cluster, gate: Gate, source: Path  # noqa: F811
) -> None:
    first = cluster.deploy(source, DeployOptions(source))
    assert first.verified  # by its own job, or by one of the same environment before
    changed = source / "src" / "token.jl"
    changed.write_text(changed.read_text() + "# breaks loading (the stand-in is told so)\n")
    git(source, "commit", "-qam", "a change that does not load")
    gate.knobs.write_text("GLOBTIM_STAND_IN_VERIFY_FAIL=Globtim\n")
    with pytest.raises(JobFailedError, match="Globtim"):
        cluster.deploy(source, DeployOptions(source))
    deploy_id = git(source, "rev-parse", "HEAD").strip()[:12]
    record = _remote_record(testbed, f"{testbed.remote_root}/code/{deploy_id}")
    # the login-node check failed, so a job of its own decided, and failed too
    verification = record["verification"]
    assert record["verified"] is False and "inherited_from" not in verification
    assert verification["job_id"] != first.record["verification"]["job_id"]
    assert "Globtim" in verification["error"]
