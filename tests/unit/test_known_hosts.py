"""known_hosts: lookups and verdicts as OpenSSH gives them (hashed, ports, revoked, changed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import subprocess
from pathlib import Path

import pytest

from globtim_hpc.transport.ssh import hostkeys as kh


def blob(key_type: str, body: bytes) -> bytes:
    name = key_type.encode()
    return struct.pack(">I", len(name)) + name + struct.pack(">I", len(body)) + body


KEY_A = blob("ssh-ed25519", b"A" * 32)
KEY_B = blob("ssh-ed25519", b"B" * 32)
KEY_RSA = blob("ssh-rsa", b"R" * 64)


def line(hosts: str, key: bytes, marker: str = "") -> str:
    prefix = f"@{marker} " if marker else ""
    return f"{prefix}{hosts} {kh.key_type_of(key)} {base64.b64encode(key).decode()}\n"


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = base64.b64decode(key.with_suffix(".pub").read_text().split()[1])
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key.with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert kh.fingerprint_sha256(public) == out.split()[1]


def test_lookup_name_brackets_non_default_ports() -> None:
    assert kh.lookup_name("mack", 22) == "mack"
    assert kh.lookup_name("mack", 2222) == "[mack]:2222"


@pytest.mark.parametrize(
    ("hosts", "name", "matches"),
    [
        ("mack,10.77.1.2", "10.77.1.2", True),
        ("mack,10.77.1.2", "MACK", True),  # known_hosts names are case-insensitive
        ("[mack]:2222", "[mack]:2222", True),
        ("[mack]:2222", "mack", False),
        ("*.example,!bad.example", "good.example", True),
        ("*.example,!bad.example", "bad.example", False),
        (hashed("falcon"), "falcon", True),
        (hashed("falcon"), "mack", False),
        (hashed("[falcon]:2200"), "[falcon]:2200", True),
    ],
)
def test_hosts_field_matches(hosts: str, name: str, matches: bool) -> None:
    assert kh.hosts_field_matches(hosts, name) is matches


def test_judge_ok_unknown_changed_revoked() -> None:
    entries = kh.parse_known_hosts(line("mack,10.77.1.2", KEY_A) + line(hashed("falcon"), KEY_B))
    assert kh.judge(entries, ["10.77.1.2"], KEY_A) == "ok"
    assert kh.judge(entries, ["falcon"], KEY_B) == "ok"
    assert kh.judge(entries, ["10.77.1.2"], KEY_B) == "changed"
    assert kh.judge(entries, ["10.77.1.2"], KEY_RSA) == "unknown"  # another type: not recorded
    assert kh.judge(entries, ["elsewhere"], KEY_A) == "unknown"
    revoked = entries + kh.parse_known_hosts(line("*", KEY_A, "revoked"))
    assert kh.judge(revoked, ["10.77.1.2"], KEY_A) == "revoked"


def test_known_key_types_and_unreadable_lines_are_skipped() -> None:
    text = (
        "# comment\n\n"
        + line("mack", KEY_RSA)
        + "mack ssh-ed25519 not-base64!!\n"
        + "mack ssh-ed25519\n"
        + line("mack", KEY_A)
        + line("*", KEY_B, "cert-authority")
    )
    entries = kh.parse_known_hosts(text)
    assert kh.known_key_types(entries, ["mack"]) == ["ssh-rsa", "ssh-ed25519"]
    assert kh.judge(entries, ["mack"], KEY_B) == "changed"  # a CA line is no trusted host key


def test_append_entry_creates_a_private_file_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    kh.append_entry(str(path), ["[mack]:2222"], KEY_A)
    path.write_text(path.read_text().rstrip("\n"))  # a file without a final newline
    kh.append_entry(str(path), ["falcon"], KEY_B)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    entries = kh.load_known_hosts([str(path), str(tmp_path / "absent")])
    assert kh.judge(entries, ["[mack]:2222"], KEY_A) == "ok"
    assert kh.judge(entries, ["falcon"], KEY_B) == "ok"
