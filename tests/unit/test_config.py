"""Cluster profiles: selection, layers, validation messages and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError, ExitCode
from globtim_hpc.settings.fields import expand_path
from globtim_hpc.settings.profile import load_profile, profile_rows

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_is_the_embedded_local_profile() -> None:
    profile = load_profile(None)
    assert profile.name == "local"
    assert profile.transport == "local" and profile.scheduler == "direct"


def test_environment_variable_selects_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOBTIM_HPC_CLUSTER", "testbed")
    assert load_profile(None).name == "testbed"
    assert load_profile("local").name == "local"  # the flag wins over the variable


def test_user_config_default_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_home = Path(os.environ["XDG_CONFIG_HOME"]) / "globtim-hpc"
    config_home.mkdir(parents=True)
    (config_home / "config.yaml").write_text("default_cluster: testbed\n")
    assert load_profile(None).name == "testbed"


def test_shipped_profiles_load() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if path.name in ("4d_benchmark.yaml",) or "job" in path.name:
            continue
        text = path.read_text()
        if "transport:" not in text:
            continue
        profile = load_profile(str(path))
        assert profile.remote_root.startswith("/")


def test_testbed_profile_resolves_bed_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOBTIM_TESTBED_DIR", "/srv/bed")
    profile = load_profile("testbed")
    assert profile.ssh is not None
    assert profile.ssh.config_file == "/srv/bed/client/ssh_config"
    assert profile.ssh.target == "falcon"
    assert profile.depot_path == "/projects/globtim/hpc/depot"


def test_layers_are_reported() -> None:
    rows = {key: layer for key, _value, layer in profile_rows(load_profile("testbed"))}
    assert rows["ssh.target"].startswith("profile ")
    assert rows["ssh.keepalive_s"] == "default"
    assert rows["julia.depot_path"] == "derived from remote_root"


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "transport: ssh\nssh:\n  target: [falcon\n")
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert info.value.exit_code == ExitCode.CONFIG
    assert str(path) in info.value.message
    assert info.value.line is not None


def test_unknown_key_lists_valid_keys_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "transport: ssh\nremote_root: /p\nssh:\n  targte: falcon\n")
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert "unknown key 'targte'" in info.value.message
    assert f"{path}:4:3" in info.value.message
    assert info.value.hint is not None and "did you mean 'target'" in info.value.hint
    assert "config_file" in info.value.hint


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "transport: ssh\nremote_root: /p\nssh:\n  target: falcon\n  connect_timeout_s: soon\n",
    )
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert "ssh.connect_timeout_s" in info.value.message
    assert "expected a number" in info.value.message


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, "slurm:\n  max_array_parallel: true\n")
    with pytest.raises(ConfigError, match=r"slurm\.max_array_parallel"):
        load_profile(str(path))


def test_choices_are_enforced(tmp_path: Path) -> None:
    path = write(tmp_path, "scheduler: pbs\n")
    with pytest.raises(ConfigError, match="not one of: slurm, direct"):
        load_profile(str(path))


def test_ssh_without_target_or_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ssh\.target"):
        load_profile(str(write(tmp_path, "transport: ssh\nremote_root: /p\n")))
    with pytest.raises(ConfigError, match="remote_root is not set"):
        load_profile(str(write(tmp_path, "transport: ssh\nssh: {target: falcon}\n", "b.yaml")))


def test_unknown_profile_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("nosuchcluster")
    assert info.value.hint is not None and "testbed" in info.value.hint


def test_profile_name_with_shell_characters_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a valid profile name"):
        load_profile("x;rm -rf ~")


def test_expand_path() -> None:
    os.environ["GLOBTIM_TEST_X"] = "/a"
    assert expand_path("${GLOBTIM_TEST_X}/b") == "/a/b"
    assert expand_path("${GLOBTIM_TEST_NOPE:-/d}/b") == "/d/b"
    assert expand_path("~/x") == str(Path.home() / "x")


@pytest.mark.parametrize(
    "text,needle",
    [
        ("transport: ssh\nssh:\n  target: [falcon\n", "YAML syntax error"),
        ("transport: ssh\nremote_root: /p\nssh:\n  targte: falcon\n", "unknown key 'targte'"),
        ("remote_root: 5\nslurm:\n  test_only: maybe\n", "slurm.test_only"),
    ],
)
def test_cli_reports_profile_errors_with_exit_code_3(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path, text)
    for script in (
        "submit_julia_job.py",
        "monitor_jobs.py",
        "collect_results.py",
        "deploy_julia.py",
    ):
        proc = subprocess.run(
            [sys.executable, str(REPO / script), "--show-config", "--cluster", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3, (script, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and str(path) in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_cluster_paths_take_variables_but_not_this_machines_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUP_ROOT", "/projects/grp")
    profile_path = tmp_path / "c.yaml"
    profile_path.write_text(
        "transport: ssh\nscheduler: slurm\nremote_root: ${GROUP_ROOT}/me\n"
        "ssh: {target: falcon}\njulia:\n  executable: ${JL:-/opt/julia}/bin/julia\n"
    )
    profile = load_profile(str(profile_path))
    assert profile.remote_root == "/projects/grp/me"
    assert profile.julia_executable == "/opt/julia/bin/julia"
    profile_path.write_text(
        "transport: ssh\nscheduler: slurm\nremote_root: /projects/x\nssh: {target: falcon}\n"
        "julia: {depot_path: ~/.julia}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_profile(str(profile_path))
    assert "julia.depot_path" in caught.value.message and "~" in caught.value.message
    local = tmp_path / "l.yaml"
    local.write_text("transport: local\nremote_root: ~/globtim-runs\n")
    assert load_profile(str(local)).remote_root == os.path.expanduser("~/globtim-runs")


def test_ssh_client_keys_reach_the_ssh_settings(tmp_path: Path) -> None:
    base = "transport: ssh\nremote_root: /projects/x\nssh:\n  target: falcon\n"
    default = load_profile(str(write(tmp_path, base)))
    assert default.ssh is not None and default.ssh.client == "paramiko"
    chosen = load_profile(
        str(
            write(
                tmp_path,
                base + "  client: openssh\n  control_persist_s: 1800\n  control_dir: /tmp/gh\n",
            )
        )
    )
    assert chosen.ssh is not None
    assert (chosen.ssh.client, chosen.ssh.control_persist_s, chosen.ssh.control_dir) == (
        "openssh",
        1800.0,
        "/tmp/gh",
    )
    with pytest.raises(ConfigError, match="'putty' is not one of: paramiko, openssh"):
        load_profile(str(write(tmp_path, base + "  client: putty\n")))
    with pytest.raises(ConfigError, match="control_persist_s"):
        load_profile(str(write(tmp_path, base + "  control_persist_s: 0\n")))
