"""The OpenSSH transport's pure parts: the generated ssh_config, socket paths, ssh's messages
as errors, and the askpass bridge (a real client process talking to a real server)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from globtim_hpc.errors import AuthenticationError, ConfigError, ConnectError, HostKeyError
from globtim_hpc.transport.openssh import askpass_client
from globtim_hpc.transport.openssh.askpass import AskpassServer, user_askpass
from globtim_hpc.transport.openssh.diagnose import error_from_ssh
from globtim_hpc.transport.openssh.runtime import connection_name, control_files
from globtim_hpc.transport.openssh.sshconf import config_word, generated_config
from globtim_hpc.transport.settings import HopOverride, SshSettings
from globtim_hpc.transport.ssh.config import LocalContext, split_arguments

SSH = shutil.which("ssh")


@pytest.mark.parametrize(
    "value",
    ["plain", "with space", 'a "quoted" word', "back\\slash", "it's", "%h literal", "#hash"],
)
def test_config_words_read_back_as_written(value: str) -> None:
    (word,) = split_arguments(config_word(value))
    assert word == value
    assert split_arguments(config_word("50%", tokens=True)) == ["50%%"]  # ssh reads %% as %


def test_config_word_refuses_what_ssh_cannot_read() -> None:
    for bad in ("two\nlines", "nul\0"):
        with pytest.raises(ConfigError):
            config_word(bad)
    with pytest.raises(ConfigError, match=r"\$\{"):
        config_word("/keys/${HOME}/id", tokens=True)


def _settings(tmp_path: Path, **changes: object) -> SshSettings:
    config = tmp_path / "user config"
    config.write_text("Host falcon\n  HostName 10.77.2.2\n")
    values: dict[str, object] = {"target": "falcon", "config_file": str(config)}
    values.update(changes)
    return SshSettings(**values)  # type: ignore[arg-type]


def test_generated_config_puts_the_profile_first_and_its_defaults_last(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        overrides=(HopOverride(host="mack", hostname="10.0.0.1", user="u", port=2222),),
        known_hosts_files=("/kh/a b",),
        host_key_policy="accept-new",
        use_agent=False,
        connect_timeout_s=7.5,
        keepalive_s=0,
    )
    text = generated_config(settings, interactive=True)
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert lines[:5] == ["Host mack", 'HostName "10.0.0.1"', 'User "u"', "Port 2222", "Match all"]
    assert "StrictHostKeyChecking accept-new" in lines and "BatchMode no" in lines
    assert 'UserKnownHostsFile "/kh/a b"' in lines and "IdentityAgent none" in lines
    include = lines.index(f'Include "{tmp_path}/user config"')
    assert lines[include - 1] == "Match all"
    assert lines.index("ConnectTimeout 8") > include  # a default: after the user's files
    assert not any(line.startswith("ServerAliveInterval") for line in lines)
    strict = generated_config(_settings(tmp_path), interactive=False)
    assert "StrictHostKeyChecking yes" in strict and "BatchMode yes" in strict


def test_generated_config_is_read_by_ssh_as_intended(tmp_path: Path) -> None:
    assert SSH is not None
    settings = _settings(
        tmp_path, overrides=(HopOverride(host="falcon", user="override"),), keepalive_s=0
    )
    path = tmp_path / "generated"
    path.write_text(generated_config(settings, interactive=False))
    out = subprocess.run(
        [SSH, "-G", "-F", str(path), "falcon"], capture_output=True, text=True, check=True
    ).stdout
    seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert seen["hostname"] == "10.77.2.2"  # from the user's file
    assert seen["user"] == "override"  # the profile wins
    assert seen["stricthostkeychecking"] == "true" and seen["batchmode"] == "yes"
    assert seen["connecttimeout"] == "15"


def test_generated_config_refuses_patterns_as_host_aliases(tmp_path: Path) -> None:
    settings = _settings(tmp_path, overrides=(HopOverride(host="mack*", user="u"),))
    with pytest.raises(ConfigError, match="mack"):
        generated_config(settings, interactive=False)


def test_socket_paths_are_short_private_and_per_settings(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    files = control_files(SshSettings(target="falcon", control_dir=str(folder)))
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert files.socket.startswith(str(folder)) and len(files.socket) + 17 < 108
    assert connection_name(SshSettings(target="falcon")) != connection_name(
        SshSettings(target="falcon", proxy_jump="mack:2222")
    )
    assert connection_name(SshSettings(target="falcon")) == connection_name(
        SshSettings(target="falcon", control_persist_s=5)
    ), "how long it persists is not a different connection"
    with pytest.raises(ConfigError, match="too long"):
        control_files(SshSettings(target="falcon", control_dir="/tmp/" + "x" * 90))
    with pytest.raises(ConfigError, match="characters"):
        control_files(SshSettings(target="falcon", control_dir="/tmp/a b"))


# What ssh 9.2 printed on the bed in each situation (master log, -v lines removed or not).
MACK_REFUSED = (
    "ssh: connect to host 10.77.1.2 port 22: Connection refused\n"
    "kex_exchange_identification: Connection closed by remote host\n"
    "Connection closed by UNKNOWN port 65535\n"
)
MFA_REFUSED = (
    "debug1: Authentications that can continue: keyboard-interactive\n"
    "globtim@10.77.1.2: Permission denied (keyboard-interactive).\n"
    "kex_exchange_identification: Connection closed by remote host\n"
)
UNKNOWN_KEY = (
    "No ED25519 host key is known for 10.77.2.2 and you have requested strict checking.\n"
    "Host key verification failed.\n"
)


def test_ssh_messages_become_the_matching_errors(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.write_text("Host mack\n  HostName 10.77.1.2\nHost falcon\n  HostName 10.77.2.2\n")
    settings = SshSettings(target="falcon", config_file=str(config), proxy_jump="mack")
    refused = error_from_ssh(MACK_REFUSED, settings, "connecting")
    assert type(refused) is ConnectError and refused.transient
    assert refused.hop is not None and refused.hop.startswith("mack (")
    denied = error_from_ssh(MFA_REFUSED, settings, "connecting")
    assert isinstance(denied, AuthenticationError) and not denied.transient
    assert denied.hop is not None and denied.hop.startswith("mack")
    assert "debug1" not in denied.message
    key = error_from_ssh(UNKNOWN_KEY, settings, "connecting")
    assert isinstance(key, HostKeyError) and key.hop is not None and key.hop.startswith("falcon")
    bad = error_from_ssh("/x/cfg line 3: Bad configuration option: nosuch\n", settings, "x")
    assert isinstance(bad, ConfigError)


def test_user_askpass_is_chosen_as_ssh_would() -> None:
    assert user_askpass({"SSH_ASKPASS": "/a", "SSH_ASKPASS_REQUIRE": "force"}, have_prompt=True)
    assert not user_askpass({"SSH_ASKPASS": "/a", "DISPLAY": ":0"}, have_prompt=True)
    assert user_askpass({"SSH_ASKPASS": "/a", "DISPLAY": ":0"}, have_prompt=False)
    assert not user_askpass(
        {"SSH_ASKPASS": "/a", "SSH_ASKPASS_REQUIRE": "never"}, have_prompt=False
    )
    assert not user_askpass({"SSH_ASKPASS_REQUIRE": "force"}, have_prompt=False)


def _ask(
    server: AskpassServer, text: str, kind: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.environment()}
    env.pop("SSH_ASKPASS_PROMPT", None)
    if kind is not None:
        env["SSH_ASKPASS_PROMPT"] = kind
    return subprocess.run(
        [server.environment()["SSH_ASKPASS"], text],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_askpass_bridge_hands_the_question_to_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = control_files(SshSettings(target="falcon", control_dir=str(tmp_path / "c")))
    asked: list[tuple[str, str, bool]] = []

    def prompt(hop: str, text: str, echo: bool) -> str:
        asked.append((hop, text, echo))
        if "fail" in text:
            raise AuthenticationError("no terminal to answer on", hop=hop)
        return "s3cret 'quoted'"

    monkeypatch.setenv("GLOBTIM_TEST_PASSPHRASE", "from the environment")
    with AskpassServer(
        files, prompt, label="falcon", passphrase_env="GLOBTIM_TEST_PASSPHRASE"
    ) as server:
        answered = _ask(server, "(globtim@10.77.1.2) Password: ")
        assert answered.returncode == 0 and answered.stdout == "s3cret 'quoted'\n"
        assert asked == [("falcon via globtim@10.77.1.2", "(globtim@10.77.1.2) Password: ", False)]
        passphrase = _ask(server, "Enter passphrase for key '/k/id': ")
        assert passphrase.stdout == "from the environment\n" and len(asked) == 1
        assert _ask(server, "Are you sure?", kind="confirm").returncode == 1, "never a yes"
        assert _ask(server, "please fail").returncode == 1
        assert isinstance(server.error, AuthenticationError)
        # a client without the server's token gets nothing
        env = {**os.environ, **server.environment(), "GLOBTIM_HPC_ASKPASS_TOKEN": "forged"}
        forged = subprocess.run(
            [sys.executable, askpass_client.__file__, "Password: "],
            capture_output=True, text=True, env=env, timeout=30,
        )  # fmt: skip
        assert forged.returncode == 1 and forged.stdout == ""
    assert not Path(server.environment()["GLOBTIM_HPC_ASKPASS_SOCKET"]).exists()


def test_local_context_is_what_the_generated_config_includes(tmp_path: Path) -> None:
    local = LocalContext(home=str(tmp_path), user="me", uid=1, hostname="h")
    text = generated_config(SshSettings(target="falcon"), interactive=False, local=local)
    assert f'Include "{tmp_path}/.ssh/config"' in text
    assert 'Include "/etc/ssh/ssh_config"' in text
