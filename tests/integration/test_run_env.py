"""Globtim 1.2.1's shape on the bed: the toolkit as it was (jobs run in the Globtim checkout
itself) fails at load_packages as Julia would; with the run environment the same deploy and
submit of 4d_benchmark complete, and the collected metadata names the manifest and Globtim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from globtim_hpc import Cluster
from globtim_hpc.registry.store import Store
from globtim_hpc.workflows.deploy import DeployOptions
from tests.integration.conftest import Testbed
from tests.integration.runwatch import small_child_config
from tests.integration.test_deploy import source  # noqa: F401  (the fixture in a fresh repo)

pytestmark = pytest.mark.integration


def test_the_old_project_fails_at_load_and_the_run_environment_completes(
    testbed: Testbed, tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_POLL_FLOOR_S", "1")
    with Cluster("testbed") as cluster:
        report = cluster.deploy(source, DeployOptions(source=source))
        record = report.record
        assert record["verified"] is True

        # As before this change: the checkout itself was instantiated and was JULIA_PROJECT.
        code = report.remote_dir
        testbed.as_user("falcon", (
            f"JULIA_PROJECT={code} JULIA_DEPOT_PATH={cluster.profile.depot_path} "
            f"{cluster.profile.julia_executable} {code}/.globtim-hpc/deploy_env.jl {code}/old.json"
        ))
        with Store.open() as store:
            store.record_deployment(
                deploy_id=report.deploy_id + "-old", cluster="testbed", git_sha=report.git_sha,
                dirty=False, remote_dir=report.remote_dir, verified=True, info={},
            )
        old = cluster.submit(cluster.plan("4d_benchmark", small_child_config(tmp_path)))
        old.wait(timeout_s=300)
        results = json.loads(testbed.as_user(
            "falcon", f"cat {old.remote_dir}/output/0000/results.json").stdout)
        assert results["status"] == "FAILED"
        assert results["error"]["stage"] == "load_packages"
        assert results["error"]["message"].startswith(
            "ArgumentError: Package HomotopyContinuation not found in current path.")

        # With the run environment: the same deployment, recorded as deploying records it.
        with Store.open() as store:
            store.record_deployment(
                deploy_id=report.deploy_id, cluster="testbed", git_sha=report.git_sha,
                dirty=False, remote_dir=report.remote_dir, verified=True, info=record,
            )
        run = cluster.submit(cluster.plan("4d_benchmark", small_child_config(tmp_path)))
        status = run.wait(timeout_s=300)
        assert set(status.counts()) == {"COMPLETED"}
        folder = run.collect(tmp_path / "results")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["run_env_manifest_sha256"] == record["run_env"]["manifest_sha256"]
    assert len(metadata["run_env_manifest_sha256"]) == 64
    assert metadata["globtim_version"] == "1.2.1"
    assert metadata["submission"]["julia_project"] == record["run_env"]["dir"]
    results = json.loads(testbed.as_user(
        "falcon", f"cat {run.remote_dir}/output/0000/results.json").stdout)
    assert results["globtim_version"] == "1.2.1"
    assert results["env"]["JULIA_PROJECT"] == record["run_env"]["dir"]
