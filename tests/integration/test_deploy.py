"""deploy_julia.py against the test bed: code under /projects, DEPLOY.json, a SLURM verification
job, the registry, and how little is sent when little changed."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.errors import JobFailedError, PreflightError
from globtim_hpc.registry.store import Store
from globtim_hpc.scheduler.factory import make_scheduler
from globtim_hpc.settings.profile import ClusterProfile, load_profile
from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.factory import open_transport
from globtim_hpc.transport.recording import RecordingTransport
from globtim_hpc.workflows.deploy import DeployOptions, deploy
from globtim_hpc.workflows.deployrecord import DeployReport
from tests.integration.conftest import REPO, Testbed

pytestmark = pytest.mark.integration

FIXTURE = REPO / "tests" / "fixtures" / "globtim_project"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    ).stdout


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The fixture project in a fresh git repository, made unique so nothing is deployed yet."""
    root = tmp_path / "GlobTim.jl"
    shutil.copytree(FIXTURE, root)
    (root / "src" / "token.jl").write_text(f'const DEPLOY_TEST_TOKEN = "{secrets.token_hex(16)}"\n')
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "fixture")
    return root


@pytest.fixture
def profile(testbed: Testbed) -> ClusterProfile:
    return load_profile(str(testbed.profile))


@pytest.fixture
def transport(profile: ClusterProfile) -> Iterator[RecordingTransport]:
    with RecordingTransport(open_transport("ssh", profile.ssh)) as counting:
        yield counting


def run_deploy(profile: ClusterProfile, transport: Transport, source: Path, **options: Any) -> DeployReport:
    with Store.open() as store:
        return deploy(
            profile, transport, make_scheduler(profile, transport), store,
            DeployOptions(source=source, **options),
        )


def remote_json(testbed: Testbed, path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(testbed.as_user("falcon", f"cat {path}").stdout)
    return loaded


def test_deploy_puts_code_on_falcon_verifies_under_slurm_and_records(
    testbed: Testbed, profile: ClusterProfile, transport: RecordingTransport, source: Path
) -> None:
    # --force: a job verifies it even when the cluster keeps a verification of its environment
    report = run_deploy(profile, transport, source, force=True)
    head = git(source, "rev-parse", "HEAD").strip()
    assert report.deploy_id == head[:12] and not report.dirty and report.uploaded
    assert report.remote_dir == f"{testbed.remote_root}/code/{report.deploy_id}"

    # the tree, as falcon's user sees it, has exactly the committed bytes
    listing = testbed.as_user(
        "falcon", f"cd {report.remote_dir} && sha256sum Project.toml src/token.jl && "
        "test -x scripts/run_local.sh && echo exec-ok"
    ).stdout
    for rel in ("Project.toml", "src/token.jl"):
        local = subprocess.run(["sha256sum", str(source / rel)], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        assert f"{local}  {rel}" in listing
    assert "exec-ok" in listing

    record = remote_json(testbed, f"{report.remote_dir}/DEPLOY.json")
    assert record["deploy_id"] == report.deploy_id and record["git_sha"] == head
    assert record["dirty"] is False and record["verified"] is True
    assert record["julia_version"] == "1.12.1"
    assert record["depot_path"] == profile.depot_path
    # the run environment beside the code: its Manifest.toml, written by instantiating it
    run_env = record["run_env"]
    assert run_env["dir"] == f"{report.remote_dir}/.globtim-hpc/runenv"
    assert run_env["globtim_version"] == "1.2.1"
    remote_sha = testbed.as_user("falcon", f"sha256sum {run_env['manifest']}").stdout.split()[0]
    assert record["manifest_sha256"] == run_env["manifest_sha256"] == remote_sha
    verification = record["verification"]
    assert verification["ok"] is True and verification["offline"] is True
    assert verification["job_id"].isdigit()  # a SLURM job id, not a direct run
    assert "inherited_from" not in verification
    assert verification["hostname"] == "falcon"
    assert verification["packages"] == {
        "Globtim": "1.2.1", "HomotopyContinuation": "2.0.0", "DataFrames": "1.6.0",
        "CSV": "0.10.0", "DynamicPolynomials": "0.6.0",
    }
    assert verification["extensions"] == {"GlobtimHomotopyContinuationExt": True}
    assert record["tool"]["name"] == "globtim-hpc" and record["created_at"]
    # SLURM knows the verification job by the name it was submitted with
    shown = testbed.as_user("falcon", f"scontrol show job {verification['job_id']}").stdout
    assert "JobName=deploy_verify_" in shown

    with Store.open() as store:
        latest = store.latest_deployment(profile.name)
    assert latest is not None
    assert latest["deploy_id"] == report.deploy_id and latest["verified"] is True
    assert latest["remote_dir"] == report.remote_dir
    assert latest["info"]["verification"]["job_id"] == verification["job_id"]


def test_one_changed_file_sends_only_it_and_an_unchanged_tree_is_a_no_op(
    profile: ClusterProfile, transport: RecordingTransport, source: Path
) -> None:
    first = run_deploy(profile, transport, source)
    changed = source / "src" / "token.jl"
    changed.write_text(changed.read_text() + f"# {secrets.token_hex(8)}\n")
    git(source, "commit", "-qam", "change one file")

    transport.clear()
    second = run_deploy(profile, transport, source)
    size = changed.stat().st_size
    shipping = [c for c in transport.commands
                if len(c.what) > 3 and c.what[3] in ("globtim-probe", "globtim-upload")]
    print(f"one-file change: {len(transport.commands)} remote commands, {len(shipping)} to ship "
          f"the code, the rest the Julia environment")
    # one query (tree there? which objects missing?) and one stream, however many files changed
    assert [c.what[3] for c in shipping] == ["globtim-probe", "globtim-upload"]
    assert transport.commands[:2] == shipping
    # ... and one for the environment: the first deployment's verification holds for the same
    # Manifest.toml and settings, once the new code has loaded on the login node
    assert len(transport.commands) == 3, [c.what[:3] for c in transport.commands]
    assert "globtim-section version" in transport.commands[2].what[-1]
    assert [c.kind for c in transport.calls if not c.is_command] == ["put"]  # DEPLOY.json
    taken = second.record["verification"]
    assert taken["ok"] is True and taken["inherited_from"]["job_id"].isdigit()
    assert taken["inherited_from"]["job_id"] == first.record["verification"]["job_id"]
    assert taken["login_check"]["ok"] is True and taken["login_check"]["offline"] is True
    assert taken["packages"]["Globtim"] == "1.2.1"
    assert second.record["manifest_sha256"] == first.record["manifest_sha256"]
    print(f"one-file change: {second.bytes_sent} bytes sent for a {size}-byte file "
          f"({second.file_count + 2} tar members, gzip'd)")
    assert second.deploy_id != first.deploy_id and second.verified
    assert second.new_objects == 1 and second.payload_bytes == size
    assert second.reused_objects == first.new_objects + first.reused_objects - 1
    # the compressed stream: the file, one link header per file and tar's end blocks
    assert second.bytes_sent < size + 1024

    transport.clear()
    third = run_deploy(profile, transport, source)
    file_ops = [call for call in transport.calls if not call.is_command]
    print(f"no-op: remote commands {[c.what[:1] for c in transport.commands]}, file operations {file_ops}")
    assert third.noop and not third.uploaded and third.bytes_sent == 0
    assert third.deploy_id == second.deploy_id
    assert len(transport.commands) == 1
    assert not any(call.kind == "stream" for call in transport.commands)
    assert file_ops == []


def test_dirty_tree_is_recorded_with_its_patch_and_refused_when_clean_is_required(
    testbed: Testbed, profile: ClusterProfile, transport: RecordingTransport, source: Path
) -> None:
    edited = source / "src" / "Globtim.jl"
    edited.write_text(edited.read_text() + "# a local experiment\n")
    (source / "scratch.jl").write_text("# untracked, not ignored\n")

    transport.clear()
    with pytest.raises(PreflightError, match="local changes") as caught:
        run_deploy(profile, transport, source, require_clean=True)
    assert caught.value.exit_code == 1 and "commit or stash" in (caught.value.hint or "")
    assert transport.commands == []  # refused before touching the cluster

    cli = subprocess.run(
        [sys.executable, str(REPO / "deploy_julia.py"), "--cluster", str(testbed.profile),
         "--source", str(source), "--require-clean", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout)["error"]["type"] == "PreflightError"

    report = run_deploy(profile, transport, source)
    assert report.dirty and "-dirty-" in report.deploy_id
    record = remote_json(testbed, f"{report.remote_dir}/DEPLOY.json")
    assert record["dirty"] is True and record["patch_file"] == "DEPLOY.patch"
    assert record["untracked"] == ["scratch.jl"]
    patch = testbed.as_user("falcon", f"cat {report.remote_dir}/DEPLOY.patch").stdout
    assert "+# a local experiment" in patch and "src/Globtim.jl" in patch
    shipped = testbed.as_user("falcon", f"cat {report.remote_dir}/scratch.jl").stdout
    assert "untracked" in shipped
    with Store.open() as store:
        latest = store.latest_deployment(profile.name)
    assert latest is not None and latest["dirty"] is True
    assert latest["deploy_id"] == report.deploy_id


def test_a_failed_verification_is_recorded_unverified(
    testbed: Testbed, profile: ClusterProfile, transport: RecordingTransport, source: Path
) -> None:
    # Without its [extensions] entry Globtim never builds the solver extension: the packages
    # all load on the compute node, but the extension does not, and verification names it.
    project = source / "Project.toml"
    project.write_text(project.read_text().replace(
        '[extensions]\nGlobtimHomotopyContinuationExt = "HomotopyContinuation"\n', ""))
    git(source, "commit", "-qam", "drop the solver extension")
    with Store.open() as store:
        store.record_deployment(
            deploy_id="older", cluster=profile.name, git_sha=None, dirty=False,
            remote_dir="/nowhere", verified=True, info={},
        )
    with pytest.raises(JobFailedError, match="GlobtimHomotopyContinuationExt") as caught:
        run_deploy(profile, transport, source)
    assert caught.value.exit_code == 6
    deploy_id = git(source, "rev-parse", "HEAD").strip()[:12]
    record = remote_json(testbed, f"{testbed.remote_root}/code/{deploy_id}/DEPLOY.json")
    assert record["verified"] is False and record["verification"]["exit_code"] == 1
    assert record["verification"]["extensions"] == {"GlobtimHomotopyContinuationExt": False}
    with Store.open() as store:
        assert store.latest_deployment(profile.name)["deploy_id"] == "older"  # type: ignore[index]
        unverified = store.latest_deployment(profile.name, verified_only=False)
    assert unverified is not None and unverified["deploy_id"] == deploy_id
    assert unverified["verified"] is False


def test_an_upgraded_toolkit_reaches_an_existing_deployment(
    testbed: Testbed, profile: ClusterProfile, transport: RecordingTransport, source: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deploy id covers the user's code; the toolkit's own scripts are tracked by a digest."""
    from globtim_hpc.workflows import deploy as deploy_module

    first = run_deploy(profile, transport, source)
    assert first.verified
    original = deploy_module.toolkit_scripts
    # new in every test run: the cluster keeps what each verification script verified
    newer = f"# a newer toolkit {secrets.token_hex(8)}\n".encode()

    def upgraded() -> list[Any]:
        scripts = original()
        return [
            type(s)(s.path, s.data + newer) if s.path.endswith("verify_env.jl") else s
            for s in scripts
        ]

    monkeypatch.setattr(deploy_module, "toolkit_scripts", upgraded)
    second = run_deploy(profile, transport, source)
    assert second.deploy_id == first.deploy_id
    assert not second.noop and second.verified  # set up and verified again with the new scripts
    # a new verification script is a new check: a job runs it, nothing kept is taken over
    assert "inherited_from" not in second.record["verification"]
    remote = testbed.as_user(
        "falcon", f"cat {second.remote_dir}/.globtim-hpc/verify_env.jl"
    ).stdout
    assert remote.endswith(newer.decode())
    third = run_deploy(profile, transport, source)
    assert third.noop
