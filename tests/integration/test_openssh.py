"""The OpenSSH transport (ssh.client: openssh) on the bed: one login for a working session,
ssh_config that only ssh understands (ProxyCommand, Match exec), host keys, drops.

The contract every transport keeps is in test_transport_contract.py; this file covers what
only the shared connection does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from globtim_hpc import Cluster
from globtim_hpc.errors import AuthenticationError, ConnectError, ExitCode, HostKeyError
from globtim_hpc.transport.factory import disconnect, open_transport
from globtim_hpc.transport.openssh.transport import OpenSshTransport
from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh import hostkeys as kh
from globtim_hpc.transport.ssh.chain import SshTransport
from tests.integration import bedenv
from tests.integration.conftest import REPO
from tests.integration.transport_fixtures import (
    bed_settings,
    control_dir,
    known_hosts_copy,
    known_hosts_without,
    openssh_settings,
)
from tests.unit.test_sshconfig_parity import assert_same

if TYPE_CHECKING:  # imported for annotations only, so pytest does not collect it as a test
    from tests.integration.conftest import Testbed

__all__ = ["control_dir", "known_hosts_copy"]  # fixtures, imported so that pytest finds them

pytestmark = pytest.mark.integration

FALCON_IP = "10.77.2.2"


def _mfa_password(testbed: Testbed) -> str:
    return (testbed.client_dir / "mfa_password").read_text().strip()


def test_commands_share_one_master_across_transports(testbed: Testbed, control_dir: str) -> None:
    settings = openssh_settings(testbed, control_dir)
    first = OpenSshTransport(settings)
    assert first.run(["hostname"]).stdout_text.strip() == "falcon"
    master = first.master_status()
    assert master.alive and master.pid is not None
    assert len(master.socket.encode()) + 17 < 108  # ssh binds <socket>.<16 characters> first
    for _ in range(5):
        # a new transport, as a new command of the CLI would make: same master, no new login
        with OpenSshTransport(settings) as again:
            assert again.run(["echo", "hi"]).stdout == b"hi\n"
            assert again.master_status().pid == master.pid
    assert disconnect(settings) is True
    assert not first.master_status().alive
    assert disconnect(settings) is False, "nothing left to end"
    assert first.run(["true"]).ok, "the next command connects again"
    assert first.master_status().pid != master.pid


@pytest.mark.disruptive
def test_commands_keep_working_while_no_new_connection_is_possible(
    testbed: Testbed, control_dir: str
) -> None:
    """With mack's sshd not accepting connections, commands still run: they use the master's
    connection, never a new one."""
    transport = OpenSshTransport(openssh_settings(testbed, control_dir))
    assert transport.run(["true"]).ok
    testbed.script("sshd.sh", "mack", "stop")
    try:
        for i in range(5):
            assert transport.run(["echo", str(i)]).stdout_text == f"{i}\n"
        scratch = transport.run(["mktemp"]).check("mktemp").stdout_text.strip()
        transport.put_bytes(b"through the master", scratch)
        assert transport.get_bytes(scratch) == b"through the master"
        transport.run(["rm", "-f", scratch])
    finally:
        testbed.script("sshd.sh", "mack", "start")
        # its session now belongs to no listener (kill-sessions would not find it): end it
        transport.disconnect()


def test_mfa_asks_once_for_a_working_session_and_again_after_disconnect(
    testbed: Testbed, control_dir: str
) -> None:
    """Through the toolkit's own askpass: ssh's questions reach the prompt callback."""
    password = _mfa_password(testbed)
    asked: list[tuple[str, str, bool]] = []

    def prompt(hop: str, text: str, echo: bool) -> str:
        asked.append((hop, text, echo))
        return password

    settings = openssh_settings(testbed, control_dir, proxy_jump="mack:2222")
    disconnect(settings)
    for _ in range(5):
        with open_transport("ssh", settings, prompt=prompt) as transport:
            assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    assert len(asked) == 1, asked
    hop, text, echo = asked[0]
    assert "Password" in text and "10.77.1.2" in hop and echo is False
    assert disconnect(settings) is True
    with open_transport("ssh", settings, prompt=prompt) as transport:
        assert transport.run(["true"]).ok
    assert len(asked) == 2
    disconnect(settings)


def test_mfa_without_any_way_to_answer_fails_naming_mack(
    testbed: Testbed, control_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    settings = openssh_settings(testbed, control_dir, proxy_jump="mack:2222", connect_retries=0)
    disconnect(settings)
    with OpenSshTransport(settings) as transport, pytest.raises(AuthenticationError) as caught:
        transport.run(["true"])
    assert caught.value.hop is not None and caught.value.hop.startswith("mack")
    assert "2222" in caught.value.hop
    assert caught.value.exit_code == ExitCode.CONNECTION
    # a wrong answer is a refusal as well
    with (
        OpenSshTransport(settings, prompt=lambda hop, text, echo: "wrong") as transport,
        pytest.raises(AuthenticationError),
    ):
        transport.run(["true"])


def _write_askpass(folder: Path, password: str) -> tuple[Path, Path]:
    """A user's own askpass program: logs each question, prints the password."""
    log = folder / "askpass.log"
    script = folder / "user-askpass"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{log}'\nprintf '%s\\n' '{password}'\n")
    script.chmod(0o700)
    return script, log


def _profile(testbed: Testbed, folder: Path, control_dir: str) -> Path:
    data = yaml.safe_load(testbed.profile.read_text())
    data["name"] = "testbed-openssh"
    data["remote_root"] = testbed.remote_root
    data["julia"]["executable"] = f"{bedenv.stand_in_dir()}/julia"
    data["ssh"].update(
        {
            "config_file": str(testbed.ssh_config),
            "proxy_jump": "mack:2222",
            "client": "openssh",
            "control_dir": control_dir,
            "control_persist_s": 300,
        }
    )
    path = folder / "testbed-openssh.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(script: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_five_cli_commands_ask_for_the_one_time_code_once(
    testbed: Testbed, control_dir: str, tmp_path: Path
) -> None:
    """deploy --check, submit, monitor --wait, collect, monitor: one question in all; after a
    disconnect the next command asks again. Answered by a user's askpass program."""
    askpass, log = _write_askpass(tmp_path, _mfa_password(testbed))
    profile = _profile(testbed, tmp_path, control_dir)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    env["GLOBTIM_HPC_POLL_FLOOR_S"] = "1"
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "parameters": {"function": "Sphere", "degree": 4, "samples_per_dim": 6},
                "resources": {"preset": "quick", "cpus": 1, "mem_gb": 2},
            }
        )
    )
    from globtim_hpc.settings.profile import load_profile

    settings = load_profile(str(profile)).ssh
    assert settings is not None and settings.client == "openssh"
    disconnect(settings)
    cluster = ["--cluster", str(profile)]

    check = _cli("deploy_julia.py", *cluster, "--check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    rows = {row["name"]: row for row in json.loads(check.stdout)["checks"]}
    assert "shared connection alive" in rows["ssh client"]["detail"]
    submit = _cli(
        "submit_julia_job.py", *cluster, "--problem", "4d_benchmark", "--config", str(job),
        "--json", env=env,
    )  # fmt: skip
    assert submit.returncode == 0, submit.stderr
    job_id = json.loads(submit.stdout)["job_id"]
    wait = _cli(
        "monitor_jobs.py", *cluster, "--job-id", job_id, "--wait", "--interval", "1", env=env
    )
    assert wait.returncode == 0, wait.stdout + wait.stderr
    collect = _cli(
        "collect_results.py", *cluster, "--job-id", job_id, "--local-dir", str(tmp_path / "r"),
        env=env,
    )  # fmt: skip
    assert collect.returncode == 0, collect.stdout + collect.stderr
    status = _cli("monitor_jobs.py", *cluster, "--job-id", job_id, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(log.read_text().splitlines()) == 1, log.read_text()

    ended = _cli("collect_results.py", *cluster, "--disconnect", "--json", env=env)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert json.loads(ended.stdout)["disconnected"] is True
    assert _master_gone(settings)
    again = _cli("deploy_julia.py", *cluster, "--check", "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(log.read_text().splitlines()) == 2
    for script in ("monitor_jobs.py", "submit_julia_job.py", "deploy_julia.py"):
        closed = _cli(script, *cluster, "--disconnect", env=env)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        assert _master_gone(settings)
    assert len(log.read_text().splitlines()) == 2, "--disconnect itself never logs in"


def _master_gone(settings: SshSettings) -> bool:
    return not OpenSshTransport(settings).master_status().alive


def _bed_client_lines(testbed: Testbed) -> str:
    """The bed config's common block (user, key, known_hosts, strictness) for both hosts."""
    text = testbed.ssh_config.read_text()
    return text[text.index("Host mack falcon") :]


def test_proxy_command_reaches_falcon(testbed: Testbed, control_dir: str, tmp_path: Path) -> None:
    config = tmp_path / "proxycommand_config"
    config.write_text(
        "Host mack\n    HostName 10.77.1.2\n"
        "Host falcon\n    HostName 10.77.2.2\n"
        f"    ProxyCommand ssh -F {config} -W %h:%p mack\n" + _bed_client_lines(testbed)
    )
    settings = openssh_settings(testbed, control_dir, config_file=str(config))
    with OpenSshTransport(settings) as transport:
        assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    disconnect(settings)
    # the built-in client refuses it, and says what to use instead
    from globtim_hpc.errors import ConfigError

    with (
        SshTransport(bed_settings(testbed, config_file=str(config))) as ssh,
        pytest.raises(ConfigError) as caught,
    ):
        ssh.run(["true"])
    assert caught.value.hint is not None and "ssh.client: openssh" in caught.value.hint


def test_match_exec_config_reaches_falcon_with_both_clients(
    testbed: Testbed, control_dir: str, tmp_path: Path
) -> None:
    marker = tmp_path / "on-the-vpn"
    config = tmp_path / "match_exec_config"
    config.write_text(
        "Host mack\n    HostName 10.77.1.2\n"
        "Host falcon\n    HostName 10.77.2.2\n"
        f'Match exec "test -e {marker}"\n    User nobody-at-all\n'
        'Match host 10.77.2.2 exec "test %n = falcon"\n    ProxyJump mack\n'
        + _bed_client_lines(testbed)
    )
    settings = openssh_settings(testbed, control_dir, config_file=str(config))
    with OpenSshTransport(settings) as transport:
        assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    disconnect(settings)
    with SshTransport(bed_settings(testbed, config_file=str(config))) as ssh:
        assert ssh.run(["hostname"]).stdout_text.strip() == "falcon"
        assert [hop.alias for hop in ssh.chain] == ["mack", "falcon"]
    # and the built-in resolver reads every host of it as ssh -G does, the others included
    for host in ("falcon", "mack", "other.example", FALCON_IP):
        assert_same(config, host)


def test_host_key_policy_maps_to_strict_host_key_checking(
    testbed: Testbed, control_dir: str, known_hosts_copy: Path
) -> None:
    known_hosts_without(known_hosts_copy, "falcon")
    files = (str(known_hosts_copy),)
    strict = openssh_settings(testbed, control_dir, known_hosts_files=files, connect_retries=0)
    before = known_hosts_copy.read_text()
    with OpenSshTransport(strict) as transport, pytest.raises(HostKeyError) as caught:
        transport.run(["true"])
    assert caught.value.hop is not None and caught.value.hop.startswith("falcon")
    assert known_hosts_copy.read_text() == before, "strict never records a key"

    accept_new = openssh_settings(
        testbed, control_dir, known_hosts_files=files, host_key_policy="accept-new"
    )
    with OpenSshTransport(accept_new) as transport:
        assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    disconnect(accept_new)
    recorded = kh.entries_for(kh.load_known_hosts(files), [FALCON_IP])
    original = kh.entries_for(kh.load_known_hosts([str(testbed.known_hosts)]), [FALCON_IP])
    assert [e.key_blob for e in recorded] == [e.key_blob for e in original]
    with OpenSshTransport(strict) as transport:
        assert transport.run(["true"]).ok, "the recorded key now satisfies strict checking"
    disconnect(strict)


@pytest.mark.disruptive
def test_a_drop_is_a_connect_error_and_the_next_command_reconnects(
    testbed: Testbed, control_dir: str
) -> None:
    settings = openssh_settings(testbed, control_dir)
    transport = OpenSshTransport(settings)
    transport.disconnect()  # a master of its own, whose session kill-sessions can find
    assert transport.run(["true"]).ok
    first = transport.master_status().pid
    errors: list[BaseException] = []

    def drop_soon() -> None:
        try:
            time.sleep(1.0)
            testbed.script("sshd.sh", "mack", "kill-sessions")
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    killer = threading.Thread(target=drop_soon)
    killer.start()
    try:
        with pytest.raises(ConnectError) as caught:
            transport.run(["sleep", "60"], timeout_s=90)
    finally:
        killer.join()
    assert errors == []
    assert type(caught.value) is ConnectError and caught.value.transient
    assert "sleep" in caught.value.message
    assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    assert transport.master_status().pid != first
    # a remote exit status 255 is the command's own while the connection is fine
    assert transport.run(["sh", "-c", "exit 255"]).exit_status == 255


def test_control_folder_is_private_and_paths_short(testbed: Testbed, control_dir: str) -> None:
    from globtim_hpc.errors import ConfigError

    folder = Path(control_dir) / "ctl"  # short: a socket path has at most 107 bytes
    settings = bed_settings(testbed, client="openssh", control_dir=str(folder))
    transport = OpenSshTransport(settings)
    transport.master_status()
    assert folder.stat().st_mode & 0o777 == 0o700
    too_long = "/tmp/" + "x" * 90
    with pytest.raises(ConfigError, match="too long"):
        OpenSshTransport(bed_settings(testbed, client="openssh", control_dir=too_long)).run(
            ["true"]
        )
    shutil.rmtree(folder)


def test_the_python_api_logs_in_once_for_several_cluster_objects(
    testbed: Testbed, control_dir: str, tmp_path: Path
) -> None:
    """Cluster objects (a notebook, a script run twice) share the one login until disconnect."""
    password = _mfa_password(testbed)
    asked: list[str] = []

    def notebook_prompt(hop: str, text: str, echo: bool) -> str:
        asked.append(hop)
        return password

    profile = _profile(testbed, tmp_path, control_dir)
    first = Cluster(profile, prompt=notebook_prompt)
    assert first.profile.ssh is not None and first.profile.ssh.client == "openssh"
    disconnect(first.profile.ssh)
    for _ in range(3):
        with Cluster(profile, prompt=notebook_prompt) as cluster:
            result = cluster.transport.run(["hostname"]).check("hostname")
            assert result.stdout_text.strip() == "falcon"
    assert len(asked) == 1 and "10.77.1.2" in asked[0], asked
    with Cluster(profile, prompt=notebook_prompt) as cluster:
        assert cluster.transport.run(["true"]).ok
        assert cluster.disconnect() is True
        assert cluster.disconnect() is False, "nothing left to end"
        assert cluster.transport.run(["true"]).ok, "the same object logs in again"
    assert len(asked) == 2
    assert first.disconnect() is True


@pytest.mark.disruptive
def test_a_drop_while_the_one_time_code_is_asked_is_a_drop_not_a_refusal(
    testbed: Testbed, control_dir: str
) -> None:
    password = _mfa_password(testbed)
    asked: list[str] = []

    def prompt_then_drop(hop: str, text: str, echo: bool) -> str:
        asked.append(hop)
        if len(asked) == 1:  # ssh is waiting for this answer: drop the connection now
            testbed.script("sshd.sh", "mack-mfa", "kill-sessions")
        return password

    settings = openssh_settings(testbed, control_dir, proxy_jump="mack:2222", connect_retries=0)
    disconnect(settings)
    with (
        OpenSshTransport(settings, prompt=prompt_then_drop) as transport,
        pytest.raises(ConnectError) as caught,
    ):
        transport.run(["true"])
    assert type(caught.value) is ConnectError, f"a drop reported as {caught.value!r}"
    assert caught.value.transient
    assert caught.value.hop is not None and caught.value.hop.startswith("mack"), caught.value
    assert "Permission denied" not in caught.value.message

    # with a retry allowed the dropped attempt is retried, asks again, and gets in
    asked.clear()
    retrying = openssh_settings(testbed, control_dir, proxy_jump="mack:2222", connect_retries=1)
    with OpenSshTransport(retrying, prompt=prompt_then_drop) as transport:
        assert transport.run(["hostname"]).stdout_text.strip() == "falcon"
    assert len(asked) == 2
    disconnect(retrying)
