"""transport.ssh.config resolves hosts exactly as the real OpenSSH client does.

``ssh -G -F FILE HOST`` needs no network: it prints the options it would use. For a jump host,
OpenSSH runs ``ssh [-l user] [-p port] [-J rest] -F FILE jumphost -W target``; the reference
chain below is built from ``ssh -G`` with those same arguments, so the comparison covers the
recursion as well. IdentityFile tokens are expanded only when ssh loads the keys, so that
case reads ``ssh -v`` output of a connection that goes nowhere (``ProxyCommand 'sleep 0'``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from globtim_hpc.transport.settings import SshSettings
from globtim_hpc.transport.ssh.config import parse_proxy_jump, resolve_chain, resolve_host

SSH = shutil.which("ssh")


@pytest.fixture(autouse=True)
def _openssh_client() -> None:
    # The parity reference is the real client; tests/testbed/packages.sh installs it.
    if SSH is None:
        pytest.fail("the OpenSSH client (ssh) is not installed: run tests/testbed/packages.sh")


@dataclass(frozen=True)
class Seen:
    hostname: str
    user: str
    port: int
    proxy_jump: str | None


def ssh_g(config: Path, host: str, *extra: str) -> Seen:
    assert SSH is not None
    out = subprocess.run(
        [SSH, "-G", "-F", str(config), *extra, host],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    ).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, value)
    return Seen(values["hostname"], values["user"], int(values["port"]), values.get("proxyjump"))


def reference_chain(config: Path, host: str, *extra: str) -> list[Seen]:
    """The hops OpenSSH would connect through, first jump first, target last."""
    seen = ssh_g(config, host, *extra)
    if not seen.proxy_jump or seen.proxy_jump == "none":
        return [seen]
    jumps = parse_proxy_jump(seen.proxy_jump)
    last, rest = jumps[-1], jumps[:-1]
    args: list[str] = []
    if last.user:
        args += ["-l", last.user]
    if last.port:
        args += ["-p", str(last.port)]
    if rest:
        args += ["-J", ",".join(str(j) for j in rest)]
    return [*reference_chain(config, last.host, *args), seen]


def assert_same(config: Path, host: str) -> None:
    expected = reference_chain(config, host)
    got = resolve_chain(SshSettings(target=host, config_file=str(config)))
    assert [(h.hostname, h.user, h.port) for h in got] == [
        (s.hostname, s.user, s.port) for s in expected
    ]
    target = resolve_host(host, str(config))
    jump_text = expected[-1].proxy_jump
    assert target.proxy_jump == (parse_proxy_jump(jump_text) if jump_text else ())


CASES: dict[str, tuple[str, list[str]]] = {
    "alias": (
        """
        Host mack
          HostName 10.77.1.2
          User globtim
        """,
        ["mack", "other"],
    ),
    "wildcards": (
        """
        Host web-?? !web-99
          HostName %h.cluster.example
          Port 2201
        Host *.example
          User wild
        Host *
          User fallback
        """,
        ["web-01", "web-99", "web-100", "x.example"],
    ),
    "one_jump": (
        """
        Host falcon
          HostName 10.77.2.2
          ProxyJump mack
        Host mack
          HostName 10.77.1.2
          User globtim
        Host *
          User default
        """,
        ["falcon", "mack"],
    ),
    "two_jumps_list": (
        """
        Host target
          ProxyJump j1,j2
        Host j1
          HostName one.example
          Port 2022
        Host j2
          HostName two.example
          User twouser
          ProxyJump ignored-because-not-first
        Host ignored-because-not-first
          HostName should.not.appear
        """,
        ["target"],
    ),
    "recursive_jumps": (
        """
        Host falcon
          ProxyJump mack
        Host mack
          ProxyJump gate
          User macky
        Host gate
          HostName gate.example
          Port 4022
        """,
        ["falcon"],
    ),
    "user_host_port_jump": (
        """
        Host target
          HostName t.example
          ProxyJump jumper@mack:2222
        Host mack
          HostName 10.77.1.2
          User configured-but-overridden
          Port 22
        """,
        ["target"],
    ),
    "proxyjump_none": (
        """
        Host direct
          ProxyJump none
        Host gw
          ProxyJump none
        Host *
          ProxyJump gw
        """,
        ["direct", "elsewhere", "gw"],
    ),
    "overrides_first_wins": (
        """
        Host special
          Port 1234
          User first
        Host special
          Port 5678
          User second
        Host *
          Port 9999
          User last
          HostName fallback.example
        """,
        ["special", "plain"],
    ),
    "equals_and_quotes": (
        """
        Host=quoted
          HostName = "q.example"
          User="with space"
          Port=2200
        """,
        ["quoted"],
    ),
    "match_blocks": (
        """
        Host a
          HostName real-a.example
        Match host real-a.example
          User matched-host
        Match originalhost b
          Port 2002
        Match user nobody-special
          Port 9
        Match all
          User everyone
        """,
        ["a", "b", "c"],
    ),
    "match_final": (
        """
        Host short
          HostName long.example
        Match final host long.example
          User final-user
        Host long.example
          Port 3333
        """,
        ["short", "long.example"],
    ),
    "match_exec": (
        """
        Host gw
          HostName gw.example
        Match exec "test %n = guarded"
          User guarded-user
          Port 2022
        Match exec false
          User never
          HostName never.example
        Match originalhost nothing exec "false"
          Port 1
        Match host *.example !exec "test %p = 2022"
          Port 4444
        Match exec "test %n = jumped" exec "test %r = %u"
          ProxyJump gw
        Host *
          User everyone
        """,
        ["guarded", "other", "gw", "x.example", "jumped"],
    ),
    "escapes_inside_quotes": (
        r"""
        Host single
          User 'it\'s'
        Host double
          User "say \"hi\" \\ bye"
        Host bare
          User back\ slash
        """,
        ["single", "double", "bare"],
    ),
    "case_sensitivity": (
        """
        Host Foo
          Port 1111
        Host foo
          Port 2222
        """,
        ["Foo", "foo", "FOO"],
    ),
    "percent_in_hostname": (
        """
        Host n-*
          HostName %h.nodes.example
        """,
        ["n-1"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_ssh_G(name: str, tmp_path: Path) -> None:
    text, hosts = CASES[name]
    config = tmp_path / "config"
    config.write_text("\n".join(line.strip() for line in text.splitlines()) + "\n")
    for host in hosts:
        assert_same(config, host)


def test_include_globs_and_inactive_blocks(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-a.conf").write_text("Host inc\n  Port 1010\n  User from-a\n")
    (conf_d / "20-b.conf").write_text("Host inc\n  Port 2020\nHost other\n  User nope\n")
    (conf_d / "ignored.txt").write_text("Host inc\n  User txt\n")
    (tmp_path / "never.conf").write_text("Host *\n  User never\n")
    config = tmp_path / "config"
    config.write_text(
        f"Host elsewhere\n  Include {tmp_path}/never.conf\n"
        f"Host *\n  Include {conf_d}/*.conf\n  HostName after-include.example\n"
    )
    for host in ("inc", "other", "elsewhere"):
        assert_same(config, host)


def _identity_files_seen_by_ssh(config: Path, host: str) -> list[str]:
    assert SSH is not None
    proc = subprocess.run(
        [
            SSH,
            "-v",
            "-F",
            str(config),
            "-o",
            "ProxyCommand=sleep 0",
            "-o",
            "BatchMode=yes",
            host,
            "true",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    files = []
    for line in proc.stderr.splitlines():
        if line.startswith("debug1: identity file "):
            path = line[len("debug1: identity file ") :].rsplit(" type ", 1)[0]
            if not path.endswith("-cert"):
                files.append(path)
    return files


def test_identity_file_tokens(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host tok\n"
        "  HostName Tok.Example\n"
        "  User remote\n"
        "  Port 2200\n"
        "  IdentityFile ~/.ssh/id_%h_%r_%p\n"
        "  IdentityFile %d/keys/%u-%n-%l-%L-%i\n"
        "  IdentityFile /tmp/%C\n"
        '  IdentityFile "/tmp/with space/%%literal"\n'
    )
    expected = _identity_files_seen_by_ssh(config, "tok")
    assert expected, "ssh -v printed no identity files"
    assert list(resolve_host("tok", str(config)).identity_files) == expected


def test_default_identity_files_and_known_hosts(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("Host x\n  UserKnownHostsFile ~/kh1 %d/kh2\n")
    assert list(resolve_host("x", str(config)).identity_files) == _identity_files_seen_by_ssh(
        config, "x"
    )
    assert SSH is not None
    out = subprocess.run(
        [SSH, "-G", "-F", str(config), "x"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("userknownhostsfile "))
    assert list(resolve_host("x", str(config)).known_hosts_files) == line.split()[1:]
