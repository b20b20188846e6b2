"""The OpenSSH transport's files and command lines, and more of ssh's messages as errors.

The private folder and its files (runtime.py), the options of every ssh command line
(sshconf.py), how a hop is named from what ssh printed (diagnose.py), and the askpass
program's answers to notices and to a call from outside the toolkit (askpass*.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from globtim_hpc.errors import AuthenticationError, ConfigError, ConnectError
from globtim_hpc.transport.openssh import askpass_client
from globtim_hpc.transport.openssh.askpass import AskpassServer
from globtim_hpc.transport.openssh.diagnose import (
    error_from_ssh,
    hop_named_in,
    relevant_lines,
    without_debug,
)
from globtim_hpc.transport.openssh.master import Master
from globtim_hpc.transport.openssh.runtime import control_files, default_folder, write_private
from globtim_hpc.transport.openssh.sshconf import (
    control_options,
    generated_config,
    ssh_options,
    user_config_files,
)
from globtim_hpc.transport.settings import HopOverride, SshSettings

SSH = shutil.which("ssh")


# -- the private folder ---------------------------------------------------------------------


def test_the_default_folder_is_in_the_users_runtime_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_folder() == f"{tmp_path}/globtim-hpc"
    # a runtime folder that does not exist, or whose name ssh would expand, is passed over
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert default_folder() == f"/tmp/globtim-hpc-{os.getuid()}"
    odd = tmp_path / "50%"
    odd.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(odd))
    assert default_folder() == f"/tmp/globtim-hpc-{os.getuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_folder() == f"/tmp/globtim-hpc-{os.getuid()}"


def test_a_folder_others_can_read_is_closed_and_a_link_is_refused() -> None:
    # Not pytest's tmp_path: under a test worker it is too long for a socket path.
    tmp_path = Path(tempfile.mkdtemp(prefix="gh-", dir="/tmp"))
    opened = tmp_path / "open"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)
    control_files(SshSettings(target="falcon", control_dir=str(opened)))
    assert opened.stat().st_mode & 0o777 == 0o700
    link = tmp_path / "link"
    link.symlink_to(opened)
    with pytest.raises(ConfigError, match="not a folder of yours"):
        control_files(SshSettings(target="falcon", control_dir=str(link)))
    plain_file = tmp_path / "file"
    plain_file.write_text("")
    with pytest.raises(ConfigError):
        control_files(SshSettings(target="falcon", control_dir=str(plain_file)))
    shutil.rmtree(tmp_path)


def test_write_private_replaces_whole_files_and_leaves_equal_ones_alone(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    write_private(str(path), "one\n")
    assert path.read_text() == "one\n" and path.stat().st_mode & 0o777 == 0o600
    inode = path.stat().st_ino
    write_private(str(path), "one\n")
    assert path.stat().st_ino == inode, "an equal file is not rewritten"
    write_private(str(path), "two\n")
    assert path.read_text() == "two\n" and path.stat().st_ino != inode, "replaced, not edited"
    path.chmod(0o644)
    write_private(str(path), "two\n")
    assert path.stat().st_mode & 0o777 == 0o600, "a wrong mode is a difference too"
    script = tmp_path / "run.sh"
    write_private(str(script), "#!/bin/sh\n", mode=0o700)
    assert script.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no leftovers"


# -- command lines and the generated file ----------------------------------------------------


def test_every_command_line_names_the_generated_file_and_the_socket() -> None:
    settings = SshSettings(target="falcon", proxy_jump="u@mack:2222")
    assert ssh_options(settings, "/c/f.conf", "/c/cm-1") == [
        "-F", "/c/f.conf", "-o", "ControlPath=/c/cm-1", "-o", "ProxyJump=u@mack:2222",
    ]  # fmt: skip
    assert ssh_options(SshSettings(target="falcon"), "/c/f", "/c/s") == [
        "-F", "/c/f", "-o", "ControlPath=/c/s",
    ]  # fmt: skip
    with pytest.raises(ConfigError):
        ssh_options(SshSettings(target="falcon", proxy_jump="mack:notaport"), "/c/f", "/c/s")
    # a request to the master reads no ssh_config: nothing in it can change the answer
    assert control_options("/c/s") == ["-F", "none", "-o", "ControlPath=/c/s"]


def test_generated_config_writes_every_profile_value(tmp_path: Path) -> None:
    settings = SshSettings(
        target="falcon",
        config_file="none",
        overrides=(HopOverride(host="falcon", identity_file="~/keys/50%/id", port=22),),
        extra_identity_files=("/k/extra",),
        keepalive_s=12.5,
    )
    text = generated_config(settings, interactive=False)
    assert 'IdentityFile "~/keys/50%%/id"' in text, "ssh would read % as a token"
    assert 'IdentityFile "/k/extra"' in text and "ServerAliveInterval 13" in text
    assert "Include" not in text, "config_file: none reads no file"
    assert user_config_files(settings) == []
    with pytest.raises(ConfigError, match="not found"):
        user_config_files(SshSettings(target="falcon", config_file=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="%"):
        generated_config(
            SshSettings(target="falcon", overrides=(HopOverride(host="falcon", user="a%b"),)),
            interactive=False,
        )


def test_ssh_reads_the_profile_values_on_every_hop(tmp_path: Path) -> None:
    """What a ProxyJump helper ssh sees: only the -F file, no -o option."""
    assert SSH is not None
    user_config = tmp_path / "cfg"
    user_config.write_text("Host mack\n  HostName 10.77.1.2\n  User from-file\n")
    settings = SshSettings(
        target="falcon",
        config_file=str(user_config),
        known_hosts_files=(str(tmp_path / "kh"),),
        host_key_policy="accept-new",
        use_agent=False,
    )
    path = tmp_path / "generated"
    path.write_text(generated_config(settings, interactive=True))
    out = subprocess.run(
        [SSH, "-G", "-F", str(path), "mack"], capture_output=True, text=True, check=True
    ).stdout
    seen: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        seen.setdefault(key, value)
    assert (seen["hostname"], seen["user"]) == ("10.77.1.2", "from-file")
    assert seen["stricthostkeychecking"] == "accept-new" and seen["batchmode"] == "no"
    assert seen["userknownhostsfile"] == str(tmp_path / "kh")
    assert seen["identityagent"] == "none"


# -- ssh's messages ---------------------------------------------------------------------------


def _bed_settings(tmp_path: Path, **changes: object) -> SshSettings:
    config = tmp_path / "cfg"
    config.write_text("Host mack\n  HostName 10.77.1.2\nHost falcon\n  HostName 10.77.2.2\n")
    values: dict[str, object] = {
        "target": "falcon",
        "config_file": str(config),
        "proxy_jump": "mack",
    }
    values.update(changes)
    return SshSettings(**values)  # type: ignore[arg-type]


def test_the_hop_is_named_by_its_alias_or_the_address_ssh_printed(tmp_path: Path) -> None:
    settings = _bed_settings(tmp_path)
    falcon_closed = "Connection to 10.77.2.2 closed by remote host.\n"
    assert hop_named_in(falcon_closed, settings).startswith("falcon (")
    # the first host named is where it started: the jump host, here
    both = "ssh: connect to host 10.77.1.2 port 22: Connection refused\n" + falcon_closed
    assert hop_named_in(both, settings).startswith("mack (")
    # a port the chain does not use is another host; a ProxyCommand chain is unknown
    assert hop_named_in("ssh: connect to host 10.77.1.2 port 2200: x\n", settings) == (
        "10.77.1.2:2200"
    )
    proxy = tmp_path / "proxy"
    proxy.write_text("Host falcon\n  ProxyCommand nc %h %p\n")
    via_command = SshSettings(target="falcon", config_file=str(proxy))
    printed = "Connection closed by 192.0.2.9 port 22\n"
    assert hop_named_in(printed, via_command) == "192.0.2.9:22"
    assert hop_named_in("nothing to go by\n", settings) == "falcon"
    assert hop_named_in("debug1: Connecting to 10.77.1.2 port 22.\n", settings) == "falcon"


def test_messages_drop_debug_output_and_noise_and_keep_the_last_lines() -> None:
    text = (
        "OpenSSH_9.2p1 Debian\ndebug1: Reading configuration data /c\n"
        "Warning: Permanently added '10.77.2.2' (ED25519) to the list of known hosts.\n"
        + "".join(f"line {i}\n" for i in range(10))
    )
    assert "debug1" not in without_debug(text) and "OpenSSH_" not in without_debug(text)
    assert relevant_lines(text) == [f"line {i}" for i in range(4, 10)]


def test_what_each_kind_of_failure_becomes(tmp_path: Path) -> None:
    settings = _bed_settings(tmp_path)
    forwarding = error_from_ssh(
        "channel 0: open failed: administratively prohibited: open failed\n"
        "stdio forwarding failed\n",
        settings,
        "connecting",
    )
    assert type(forwarding) is ConnectError and not forwarding.transient
    assert forwarding.hint is not None and "AllowTcpForwarding" in forwarding.hint
    unknown = error_from_ssh(
        "ssh: Could not resolve hostname nosuch: Name or service not known\n", settings, "x"
    )
    assert type(unknown) is ConnectError and unknown.hop == "nosuch"
    assert unknown.hint is not None and "HostName" in unknown.hint
    lost = error_from_ssh("Connection reset by 10.77.2.2 port 22\n", settings, "running ls")
    assert type(lost) is ConnectError and lost.transient and "running ls failed" in lost.message
    assert lost.hop is not None and lost.hop.startswith("falcon")
    odd = error_from_ssh("something ssh never said\n", settings, "x")
    assert type(odd) is ConnectError and not odd.transient
    silent = error_from_ssh("", settings, "x")
    assert "without saying why" in silent.message
    too_many = error_from_ssh(
        "Received disconnect from 10.77.1.2 port 22:2: Too many authentication failures\n",
        settings,
        "x",
    )
    assert isinstance(too_many, AuthenticationError)


# -- the askpass program ----------------------------------------------------------------------


def test_askpass_notices_are_shown_and_the_client_alone_does_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = control_files(SshSettings(target="falcon", control_dir=str(tmp_path / "c")))
    asked: list[str] = []

    def prompt(hop: str, text: str, echo: bool) -> str:
        asked.append(hop)
        return "answer"

    with AskpassServer(files, prompt, label="falcon", passphrase_env=None) as server:
        env = {**os.environ, **server.environment(), "SSH_ASKPASS_PROMPT": "none"}
        notice = subprocess.run(
            [server.environment()["SSH_ASKPASS"], "Confirm user presence for key"],
            capture_output=True, text=True, env=env, timeout=30,
        )  # fmt: skip
        assert notice.returncode == 0 and notice.stdout == "\n"
        env.pop("SSH_ASKPASS_PROMPT")
        plain = subprocess.run(
            [server.environment()["SSH_ASKPASS"], "Password: "],
            capture_output=True, text=True, env=env, timeout=30,
        )  # fmt: skip
        assert plain.stdout == "answer\n"
        assert server.questions == 1 and asked == ["falcon"], "a notice is not a question"
    assert "[falcon] Confirm user presence for key" in capsys.readouterr().err
    bare = {k: v for k, v in os.environ.items() if not k.startswith("GLOBTIM_HPC_ASKPASS")}
    alone = subprocess.run(
        [sys.executable, askpass_client.__file__, "Password: "],
        capture_output=True, text=True, env=bare, timeout=30,
    )  # fmt: skip
    assert alone.returncode == 1 and alone.stdout == ""
    assert "not started by globtim-hpc" in alone.stderr


# -- the master, asked without any connection ------------------------------------------------


def test_with_no_master_running_check_and_exit_say_so(tmp_path: Path) -> None:
    settings = SshSettings(target="falcon", control_dir=str(tmp_path / "c"))
    master = Master(settings, None)
    status = master.status()
    assert (status.alive, status.pid, status.socket) == (False, None, master.files.socket)
    assert master.stop() is False
