"""OpenSshTransport's own decisions, with a stand-in ``ssh`` program first on PATH.

The stand-in answers ``-O check`` / ``-O exit`` from a state folder, "starts a master" on
``-N``, and otherwise reports the command line it was given. So these tests see exactly what
the transport asks ssh for and how it reads the answers: the one command line it sends,
when a master is started, and whether an exit status 255 is the command's own or a lost
connection. The real ssh on the bed is in tests/integration/test_openssh.py and the
transport contract suite.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from globtim_hpc.errors import AuthenticationError, ConnectError
from globtim_hpc.quoting import command_line
from globtim_hpc.transport.openssh.transport import OpenSshTransport
from globtim_hpc.transport.settings import SshSettings

STAND_IN = r"""#!/usr/bin/env python3
import json, os, sys
state = os.environ["FAKE_SSH_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\n")
alive = os.path.join(state, "alive")
if "-O" in args:
    request = args[args.index("-O") + 1]
    if os.path.exists(alive):
        if request == "exit":
            os.unlink(alive)
            sys.stderr.write("Exit request sent.\r\n")
        else:
            sys.stderr.write("Master running (pid=4242)\r\n")
        sys.exit(0)
    sys.stderr.write("Control socket connect(x): No such file or directory\r\n")
    sys.exit(255)
if "-N" in args:  # start a master: fail as told, once per line of the 'start' file
    plan = os.path.join(state, "start")
    lines = open(plan).read().splitlines() if os.path.exists(plan) else []
    if lines:
        open(plan, "w").write("".join(line + "\n" for line in lines[1:]))
        sys.stderr.write(lines[0] + "\n")
        sys.exit(255)
    open(alive, "w").close()
    sys.exit(0)
command = args[-1]
if command == "die":  # the connection goes away under the command
    os.unlink(alive)
    sys.stderr.write("Connection to 10.77.2.2 closed by remote host.\n")
    sys.exit(255)
if command == "exit255":
    sys.exit(255)
sys.stdout.write(json.dumps({"argv": args, "stdin": sys.stdin.read()}))
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stand-in ssh first on PATH, and its state folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "ssh"
    program.write_text(STAND_IN)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_SSH_STATE", str(tmp_path))
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    yield tmp_path


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[SshSettings]:
    config = tmp_path / "cfg"
    config.write_text("Host mack\n  HostName 10.77.1.2\nHost falcon\n  HostName 10.77.2.2\n")
    with tempfile.TemporaryDirectory(prefix="gh-", dir="/tmp") as control:
        yield SshSettings(
            target="falcon",
            config_file=str(config),
            proxy_jump="mack",
            control_dir=control,
            control_persist_s=95.0,
            connect_retries=1,
        )


def _calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def _starts(state: Path) -> list[list[str]]:
    return [call for call in _calls(state) if "-N" in call]


def test_one_command_line_through_the_master_without_a_terminal(
    state: Path, settings: SshSettings
) -> None:
    argv = ["printf", "%s\n", "it's", "$(x)", "a b"]
    with OpenSshTransport(settings) as transport:
        result = transport.run(argv, stdin=b"in")
    seen = json.loads(result.stdout)
    assert seen["stdin"] == "in"
    sent = seen["argv"]
    assert sent[-2:] == ["falcon", command_line(argv)], "the argv quoted once, by quoting"
    assert sent[-3] == "--", "nothing after the options is read as one"
    options = sent[: sent.index("--")]
    for pair in (["-o", "ControlMaster=no"], ["-o", "BatchMode=yes"], ["-e", "none"]):
        assert any(options[i : i + 2] == pair for i in range(len(options))), pair
    assert "-T" in options
    socket_option = next(o for o in options if o.startswith("ControlPath="))
    assert socket_option.removeprefix("ControlPath=").startswith(settings.control_dir or "?")
    # the master was started once, with the profile's ControlPersist, in the background
    (start,) = _starts(state)
    assert "ControlPersist=95" in start and "ControlMaster=yes" in start and "-f" in start


def test_later_commands_and_transports_reuse_the_running_master(
    state: Path, settings: SshSettings
) -> None:
    with OpenSshTransport(settings) as transport:
        assert transport.run(["true"]).ok
    for _ in range(3):
        with OpenSshTransport(settings) as again:
            assert again.run(["true"]).ok
            assert again.master_status().pid == 4242
    assert len(_starts(state)) == 1


def test_exit_status_255_is_the_commands_own_while_the_master_lives(
    state: Path, settings: SshSettings
) -> None:
    with OpenSshTransport(settings) as transport:
        assert transport.run(["exit255"]).exit_status == 255


def test_a_connection_lost_under_a_command_is_a_connect_error_naming_the_hop(
    state: Path, settings: SshSettings
) -> None:
    with OpenSshTransport(settings) as transport:
        assert transport.run(["true"]).ok
        with pytest.raises(ConnectError) as caught:
            transport.run(["die"])
        assert type(caught.value) is ConnectError and caught.value.transient
        assert caught.value.hop is not None and caught.value.hop.startswith("falcon (")
        assert "running die" in caught.value.message
        assert transport.run(["true"]).ok, "the next command starts a new master"
    assert len(_starts(state)) == 2


def test_a_transient_start_failure_is_retried_and_a_refusal_is_not(
    state: Path, settings: SshSettings
) -> None:
    (state / "start").write_text("ssh: connect to host 10.77.1.2 port 22: Connection refused\n")
    with OpenSshTransport(settings) as transport:
        assert transport.run(["true"]).ok
    assert len(_starts(state)) == 2
    assert OpenSshTransport(settings).disconnect() is True
    (state / "start").write_text("globtim@10.77.1.2: Permission denied (publickey).\n" * 2)
    with OpenSshTransport(settings) as transport, pytest.raises(AuthenticationError) as caught:
        transport.run(["true"])
    assert caught.value.hop is not None and caught.value.hop.startswith("mack (")
    assert len(_starts(state)) == 3, "a refusal is not retried"


def test_disconnect_ends_the_master_and_the_next_command_starts_one(
    state: Path, settings: SshSettings
) -> None:
    transport = OpenSshTransport(settings)
    assert transport.run(["true"]).ok
    assert transport.disconnect() is True
    assert not transport.master_status().alive
    assert transport.disconnect() is False
    assert transport.run(["true"]).ok
    assert len(_starts(state)) == 2
