"""ssh_config resolution (transport.ssh.config): pure resolution rules (no ssh binary, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError
from globtim_hpc.transport.settings import HopOverride, SshSettings
from globtim_hpc.transport.ssh.config import (
    CommandLine,
    JumpSpec,
    LocalContext,
    match_host_patterns,
    parse_jump,
    parse_proxy_jump,
    parse_time_s,
    resolve_chain,
    resolve_host,
    split_arguments,
    split_line,
)


@pytest.fixture
def local(tmp_path: Path) -> LocalContext:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    return LocalContext(home=str(home), user="me", uid=1234, hostname="laptop.lan")


def write(local: LocalContext, text: str, name: str = "config") -> str:
    path = Path(local.home) / ".ssh" / name
    path.write_text(text)
    return str(path)


# -- lexing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Host a b", ("host", ["a", "b"])),
        ("  HOSTNAME=example.org", ("hostname", ["example.org"])),
        ("User = alice", ("user", ["alice"])),
        ('IdentityFile "/path/with space"', ("identityfile", ["/path/with space"])),
        ("IdentityFile '/single quoted'", ("identityfile", ["/single quoted"])),
        (r"IdentityFile /back\ slash", ("identityfile", ["/back slash"])),
        ("Port 22 # trailing comment", ("port", ["22"])),
        ("# only a comment", None),
        ("   ", None),
    ],
)
def test_split_line(line: str, expected: tuple[str, list[str]] | None) -> None:
    assert split_line(line) == expected


def test_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unterminated quote"):
        split_arguments('"open')


# -- patterns and jumps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "patterns", "matches"),
    [
        ("mack", ["mack"], True),
        ("mack", ["Mack"], False),  # Host patterns are case-sensitive
        ("node-01", ["node-??"], True),
        ("node-100", ["node-??"], False),
        ("a.example", ["*.example"], True),
        ("bad.example", ["*.example", "!bad.*"], False),
        ("x", ["!y"], False),  # a negation alone never selects
        ("x", ["*", "!y"], True),
    ],
)
def test_match_host_patterns(name: str, patterns: list[str], matches: bool) -> None:
    assert match_host_patterns(name, patterns) is matches


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mack", JumpSpec("mack")),
        ("u@mack", JumpSpec("mack", "u")),
        ("u@mack:2222", JumpSpec("mack", "u", 2222)),
        ("mack:2222", JumpSpec("mack", None, 2222)),
        ("[::1]:22", JumpSpec("::1", None, 22)),
        ("ssh://u@gw.example:2022", JumpSpec("gw.example", "u", 2022)),
        ("first.last@gw", JumpSpec("gw", "first.last")),
    ],
)
def test_parse_jump(text: str, expected: JumpSpec) -> None:
    assert parse_jump(text) == expected


@pytest.mark.parametrize("bad", ["mack:notaport", "mack:0", "@mack", "", "ssh://h/path"])
def test_parse_jump_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_jump(bad)


def test_parse_proxy_jump_lists_and_none() -> None:
    assert parse_proxy_jump("a,u@b:2") == (JumpSpec("a"), JumpSpec("b", "u", 2))
    assert parse_proxy_jump("none") == ()
    assert parse_proxy_jump("NONE") == ()
    assert str(JumpSpec("b", "u", 2)) == "u@b:2"
    assert str(JumpSpec("::1", None, 22)) == "[::1]:22"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("90s", 90.0), ("1m30s", 90.0), ("2h", 7200.0)]
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time_s(text) == seconds


def test_parse_time_rejects_garbage() -> None:
    assert parse_time_s("10x") is None
    assert parse_time_s("") is None


# -- resolution -------------------------------------------------------------------------------


def test_defaults_without_any_config(local: LocalContext) -> None:
    host = resolve_host("Some.Host", "none", local=local)
    assert host.hostname == "some.host"
    assert host.user == "me"
    assert host.port == 22
    assert host.identity_files[0] == f"{local.home}/.ssh/id_rsa"
    assert host.known_hosts_files == (
        f"{local.home}/.ssh/known_hosts",
        f"{local.home}/.ssh/known_hosts2",
    )
    assert host.strict_host_key_checking == "ask"
    assert host.connect_timeout_s is None
    assert host.proxy_jump == ()
    assert not host.identities_only


def test_first_obtained_value_wins_and_identity_files_accumulate(local: LocalContext) -> None:
    config = write(
        local,
        "Host a\n  User first\n  IdentityFile ~/k1\nHost *\n  User second\n  Port 2\n"
        "  IdentityFile ~/k2\n  IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n"
        "  ConnectTimeout 1m\n  ServerAliveInterval 15\n",
    )
    host = resolve_host("a", config, local=local)
    assert (host.user, host.port) == ("first", 2)
    assert host.identity_files == (f"{local.home}/k1", f"{local.home}/k2")
    assert host.identities_only
    assert host.strict_host_key_checking == "accept-new"
    assert host.connect_timeout_s == 60.0
    assert host.server_alive_interval_s == 15.0


def test_command_line_wins_over_the_file(local: LocalContext) -> None:
    config = write(local, "Host a\n  User fileuser\n  Port 2\n  ProxyJump gw\n")
    host = resolve_host(
        "a", config, command_line=CommandLine(user="cli", port=3, proxy_jump="none"), local=local
    )
    assert (host.user, host.port, host.proxy_jump) == ("cli", 3, ())


def test_tokens_in_identity_file_and_known_hosts(local: LocalContext) -> None:
    config = write(
        local,
        "Host t\n  HostName T.example\n  User r\n  Port 2200\n"
        "  IdentityFile %d/%u/%r@%h:%p/%n/%l/%L/%i/%%\n"
        "  UserKnownHostsFile ~/kh-%h %d/second\n",
    )
    host = resolve_host("t", config, local=local)
    assert host.identity_files == (f"{local.home}/me/r@t.example:2200/t/laptop.lan/laptop/1234/%",)
    assert host.known_hosts_files == (f"{local.home}/kh-t.example", f"{local.home}/second")


def test_unknown_token_is_an_error(local: LocalContext) -> None:
    config = write(local, "Host t\n  IdentityFile ~/%Z\n")
    with pytest.raises(ConfigError, match="%Z"):
        resolve_host("t", config, local=local)


def test_include_is_relative_to_dot_ssh_and_globbed(local: LocalContext) -> None:
    conf_d = Path(local.home) / ".ssh" / "conf.d"
    conf_d.mkdir()
    (conf_d / "b.conf").write_text("Host inc\n  Port 2\n")
    (conf_d / "a.conf").write_text("Host inc\n  User from-a\n  Port 1\n")
    config = write(local, "Include conf.d/*.conf\nHost inc\n  User later\n")
    host = resolve_host("inc", config, local=local)
    assert (host.user, host.port) == ("from-a", 1)  # sorted: a.conf before b.conf


def test_include_inside_an_inactive_block_never_applies(local: LocalContext) -> None:
    (Path(local.home) / ".ssh" / "inner").write_text("Host *\n  User inner\n")
    config = write(local, "Host other\n  Include inner\nHost *\n  Port 7\n")
    host = resolve_host("x", config, local=local)
    assert (host.user, host.port) == ("me", 7)


def test_missing_config_file_is_an_error(local: LocalContext) -> None:
    with pytest.raises(ConfigError, match="not found"):
        resolve_host("x", f"{local.home}/absent", local=local)


def test_match_host_user_and_all(local: LocalContext) -> None:
    config = write(
        local,
        "Host a\n  HostName real.example\n"
        "Match host real.example user me\n  Port 11\n"
        "Match originalhost b\n  Port 12\n"
        "Match !localuser me\n  User never\n"
        "Match all\n  User everyone\n",
    )
    assert resolve_host("a", config, local=local).port == 11
    assert resolve_host("b", config, local=local).port == 12
    assert resolve_host("c", config, local=local).user == "everyone"


def _recording_shell(local: LocalContext) -> tuple[Path, Path]:
    """A shell that logs each command it is given, then runs it with /bin/sh."""
    log = Path(local.home) / "exec.log"
    shell = Path(local.home) / "recording-sh"
    shell.write_text('#!/bin/sh\nprintf "%s|%s\\n" "$1" "$2" >> "$EXEC_LOG"\nexec /bin/sh "$@"\n')
    shell.chmod(0o755)
    return shell, log


def test_match_exec_runs_the_command_through_the_users_shell(
    local: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell, log = _recording_shell(local)
    monkeypatch.setenv("SHELL", str(shell))
    monkeypatch.setenv("EXEC_LOG", str(log))
    config = write(
        local,
        "Host a\n  HostName real.example\n  Port 2200\n"
        'Match exec "test %h:%p:%n:%r:%u = real.example:2200:a:me:me"\n  User matched\n'
        "Match !exec false\n  IdentityFile ~/negated\n",
    )
    host = resolve_host("a", config, local=local)
    assert host.user == "matched"
    assert f"{local.home}/negated" in host.identity_files
    assert log.read_text().splitlines() == [
        "-c|test real.example:2200:a:me:me = real.example:2200:a:me:me",
        "-c|false",
    ]
    other = resolve_host("b", config, local=local)
    assert other.user == "me", "a failing exec guards only its own block"


def test_match_exec_is_skipped_after_a_failed_criterion(
    local: LocalContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = Path(local.home) / "ran"
    config = write(local, f'Match host nothing exec "touch {marker}"\n  User x\n')
    assert resolve_host("a", config, local=local).user == "me"
    assert not marker.exists()
    # ...but its tokens are still expanded, and a bad one is an error, as with ssh
    config = write(local, 'Match host nothing exec "echo %Z"\n  User x\n')
    with pytest.raises(ConfigError, match="%Z"):
        resolve_host("a", config, local=local)


def test_match_exec_killed_by_a_signal_is_an_error(local: LocalContext) -> None:
    config = write(local, 'Match exec "kill -KILL $$"\n  User x\n')
    with pytest.raises(ConfigError, match="signal"):
        resolve_host("a", config, local=local)


def test_match_final_reparses_with_the_hostname(local: LocalContext) -> None:
    config = write(
        local,
        "Host s\n  HostName long.example\nMatch final\n  Port 99\nHost long.example\n  User l\n",
    )
    host = resolve_host("s", config, local=local)
    assert (host.hostname, host.port, host.user) == ("long.example", 99, "l")


def test_proxy_command_blocks_later_proxy_jump(local: LocalContext) -> None:
    config = write(local, "Host a\n  ProxyCommand nc %h %p\nHost *\n  ProxyJump gw\n")
    host = resolve_host("a", config, local=local)
    assert host.proxy_command == "nc %h %p"
    assert host.proxy_jump == ()
    with pytest.raises(ConfigError, match="ProxyCommand is not supported") as caught:
        resolve_chain(SshSettings(target="a", config_file=config), local=local)
    assert caught.value.hint is not None and "ssh.client: openssh" in caught.value.hint


# -- chains -----------------------------------------------------------------------------------

BED = """
Host mack
    HostName 10.77.1.2
Host falcon
    HostName 10.77.2.2
    ProxyJump mack
Host mack falcon
    User globtim
    IdentityFile /keys/id
    IdentitiesOnly yes
"""


def test_chain_follows_proxy_jump(local: LocalContext) -> None:
    config = write(local, BED)
    chain = resolve_chain(SshSettings(target="falcon", config_file=config), local=local)
    assert [(h.alias, h.hostname, h.user, h.port) for h in chain] == [
        ("mack", "10.77.1.2", "globtim", 22),
        ("falcon", "10.77.2.2", "globtim", 22),
    ]
    assert all(h.identity_files == ("/keys/id",) for h in chain)
    assert chain[0].connect_timeout_s == 15.0  # the profile's default fills what ssh_config lacks
    assert chain[0].server_alive_interval_s == 30.0


def test_settings_proxy_jump_with_user_and_port_keeps_the_rest_of_the_config(
    local: LocalContext,
) -> None:
    config = write(local, BED)
    settings = SshSettings(target="falcon", config_file=config, proxy_jump="other@mack:2222")
    mack, falcon = resolve_chain(settings, local=local)
    assert (mack.hostname, mack.user, mack.port) == ("10.77.1.2", "other", 2222)
    assert mack.identity_files == ("/keys/id",) and mack.identities_only
    assert falcon.proxy_jump == (JumpSpec("mack", "other", 2222),)


def test_jump_list_reaches_the_last_through_the_first(local: LocalContext) -> None:
    config = write(local, "Host t\n  ProxyJump a,b\nHost b\n  ProxyJump c\n")
    chain = resolve_chain(SshSettings(target="t", config_file=config), local=local)
    # OpenSSH runs `ssh -J a b`: b's own ProxyJump (c) is overridden by the list
    assert [h.alias for h in chain] == ["a", "b", "t"]


def test_jump_hosts_own_proxy_jump_is_followed(local: LocalContext) -> None:
    config = write(local, "Host t\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    chain = resolve_chain(SshSettings(target="t", config_file=config), local=local)
    assert [h.alias for h in chain] == ["a", "b", "t"]


def test_proxy_jump_none_and_direct(local: LocalContext) -> None:
    config = write(local, BED)
    chain = resolve_chain(
        SshSettings(target="falcon", config_file=config, proxy_jump="none"), local=local
    )
    assert [h.alias for h in chain] == ["falcon"]


def test_jump_loops_are_config_errors(local: LocalContext) -> None:
    config = write(local, "Host *\n  ProxyJump gw\n")
    with pytest.raises(ConfigError, match="loop"):
        resolve_chain(SshSettings(target="x", config_file=config), local=local)
    config = write(local, "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ConfigError, match="loop"):
        resolve_chain(SshSettings(target="a", config_file=config), local=local)


def test_overrides_apply_to_the_hosts_they_name(local: LocalContext) -> None:
    config = write(local, BED)
    settings = SshSettings(
        target="falcon",
        config_file=config,
        overrides=(HopOverride(host="mack", user="admin", port=2022, identity_file="/keys/mine"),),
        known_hosts_files=("/kh/profile",),
        extra_identity_files=("/keys/extra",),
        connect_timeout_s=5.0,
        keepalive_s=10.0,
    )
    mack, falcon = resolve_chain(settings, local=local)
    assert (mack.user, mack.port) == ("admin", 2022)
    assert mack.identity_files == ("/keys/mine", "/keys/extra", "/keys/id")
    assert falcon.identity_files == ("/keys/extra", "/keys/id")
    assert mack.known_hosts_files == falcon.known_hosts_files == ("/kh/profile",)
    assert (falcon.connect_timeout_s, falcon.server_alive_interval_s) == (5.0, 10.0)


def test_labels_name_alias_and_address(local: LocalContext) -> None:
    config = write(local, BED)
    mack = resolve_host("mack", config, local=local)
    assert mack.label == "mack (globtim@10.77.1.2:22)"
    assert mack.address == "10.77.1.2:22"
