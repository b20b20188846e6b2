"""One contract, three transports: SshTransport (paramiko, laptop -> mack -> falcon),
OpenSshTransport (the system ssh through a shared connection, same chain) and LocalTransport.

The SSH cases run against the real test bed and are marked ``integration`` by their fixture
parameters; the local case needs nothing but this machine.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from globtim_hpc.errors import ConfigError, RemoteCommandError, TransferError
from globtim_hpc.transport.base import Transport
from globtim_hpc.transport.factory import open_transport
from tests.integration.transport_fixtures import Target, control_dir, target

__all__ = ["control_dir", "target"]  # fixtures, imported so that pytest finds them here

MIB = 1024 * 1024
ECHO_ARGV = ["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]

HOSTILE = [
    "two words",
    "'single'",
    '"double"',
    "both ' and \"",
    "a;b",
    "; echo injected",
    "$(touch {canary})",
    "`touch {canary}`",
    "${HOME}",
    "$HOME",
    "~",
    "line\nbreak",
    "tab\there",
    "*",
    "?",
    "[abc]",
    "*.py",
    "{a,b}",
    "non-ASCII: é ü ✓ 数",
    "-n",
    "--",
    "-rf",
    "",
    "back\\slash",
    "|pipe",
    "&",
    ">redirect",
    "<input",
    "#comment",
    "!bang",
    "trailing space ",
]


def test_exit_status(target: Target) -> None:
    assert target.transport.run(["true"]).exit_status == 0
    result = target.transport.run(["sh", "-c", "exit 7"])
    assert result.exit_status == 7
    assert not result.ok
    with pytest.raises(RemoteCommandError, match="exit status 7"):
        result.check("exiting")


def test_stdout_and_stderr_are_separate(target: Target) -> None:
    result = target.transport.run(["sh", "-c", "printf 'to out'; printf 'to err' >&2"])
    assert result.stdout == b"to out"
    assert result.stderr == b"to err"
    assert result.argv == ("sh", "-c", "printf 'to out'; printf 'to err' >&2")


def test_stdin_bytes_arrive_and_end(target: Target) -> None:
    payload = bytes(range(256)) * 64 + b"\nlast line without newline"
    assert target.transport.run(["cat"], stdin=payload).stdout == payload
    # no stdin: the command sees end-of-file at once instead of waiting for input
    assert target.transport.run(["cat"], timeout_s=20).stdout == b""


def test_eight_mib_on_each_stream_without_deadlock(target: Target) -> None:
    writer = (
        "import sys\n"
        "block = bytes(range(256)) * 256\n"  # 64 KiB
        "for _ in range(128):\n"
        "    sys.stdout.buffer.write(block); sys.stdout.buffer.flush()\n"
        "    sys.stderr.buffer.write(block[::-1]); sys.stderr.buffer.flush()\n"
    )
    started = time.monotonic()
    result = target.transport.run(["python3", "-c", writer], timeout_s=120)
    elapsed_s = time.monotonic() - started
    block = bytes(range(256)) * 256
    assert result.exit_status == 0
    assert len(result.stdout) == 8 * MIB and result.stdout == block * 128
    assert len(result.stderr) == 8 * MIB and result.stderr == block[::-1] * 128
    assert elapsed_s < 60


def test_hostile_arguments_arrive_byte_exact(target: Target) -> None:
    canary = f"/tmp/globtim-canary-{uuid.uuid4().hex}"
    hostile = [arg.replace("{canary}", canary) for arg in HOSTILE]
    result = target.transport.run([*ECHO_ARGV, *hostile]).check("echoing arguments")
    assert json.loads(result.stdout_text) == hostile
    assert target.transport.run(["test", "-e", canary]).exit_status == 1, "an argument was executed"
    # the program name itself is also passed through literally
    assert target.transport.run(["no such program; touch " + canary]).exit_status == 127
    assert target.transport.run(["test", "-e", canary]).exit_status == 1


def test_put_and_get_bytes(target: Target) -> None:
    path = f"{target.scratch}/data.bin"
    data = os.urandom(MIB) + b"\x00end"
    target.transport.put_bytes(data, path, mode=0o640)
    assert target.transport.get_bytes(path) == data
    mode = target.transport.run(["stat", "-c", "%a", path]).check("stat").stdout_text.strip()
    assert mode == "640"
    target.transport.put_bytes(b"replaced", path)  # atomic replacement of an existing file
    assert target.transport.get_bytes(path) == b"replaced"
    listing = target.transport.run(["ls", "-A", target.scratch]).check("ls").stdout_text.split()
    assert listing == ["data.bin"], "put_bytes left something besides the file"


def test_transfer_errors(target: Target) -> None:
    missing = f"{target.scratch}/no/such/folder/file.txt"
    with pytest.raises(TransferError):
        target.transport.put_bytes(b"x", missing)
    assert target.transport.run(["ls", "-A", target.scratch]).stdout_text == ""
    with pytest.raises(TransferError):
        target.transport.get_bytes(f"{target.scratch}/absent.txt")


def _tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_stream_tar_up_and_down(target: Target) -> None:
    files = {
        "code/main.jl": b"println(1)\n",
        "code/data/blob.bin": os.urandom(3 * MIB),
        "code/name with space.txt": "ünïcode ✓\n".encode(),
    }
    archive = _tar_of(files)
    moved_up: list[int] = []
    up = target.transport.stream(
        ["tar", "-x", "-f", "-", "-C", target.scratch],
        stdin_source=io.BytesIO(archive),
        progress=moved_up.append,
        timeout_s=120,
    )
    assert up.exit_status == 0, up.stderr_text
    assert sum(moved_up) == len(archive)

    sink = io.BytesIO()
    moved_down: list[int] = []
    down = target.transport.stream(
        ["tar", "-c", "-f", "-", "-C", target.scratch, "code"],
        stdout_sink=sink,
        progress=moved_down.append,
        timeout_s=120,
    )
    assert down.exit_status == 0, down.stderr_text
    assert down.stdout == b""
    assert sum(moved_down) == len(sink.getvalue())
    sink.seek(0)
    with tarfile.open(fileobj=sink, mode="r") as back:
        got = {
            m.name: back.extractfile(m).read()  # type: ignore[union-attr]
            for m in back.getmembers()
            if m.isfile()
        }
    assert got == files


def test_timeout_raises_and_transport_stays_usable(target: Target) -> None:
    started = time.monotonic()
    with pytest.raises(RemoteCommandError, match="timed out after 1 s"):
        target.transport.run(["sh", "-c", "echo started; sleep 30"], timeout_s=1)
    assert time.monotonic() - started < 10
    assert target.transport.run(["echo", "still here"]).stdout == b"still here\n"


class _RefusingSink:
    def write(self, data: bytes) -> int:
        raise _SinkGaveUp("the reader refused the stream")

    def flush(self) -> None:
        pass


class _SinkGaveUp(Exception):
    pass


def test_a_sink_that_gives_up_stops_the_command(target: Target) -> None:
    """The reader's own error comes back at once, not a timeout after the command blocked."""
    with pytest.raises(_SinkGaveUp):
        target.transport.stream(
            ["head", "-c", "64M", "/dev/zero"],
            stdout_sink=_RefusingSink(),  # type: ignore[arg-type]
            timeout_s=30,
        )
    assert target.transport.run(["true"]).ok


def test_empty_argv_is_a_programming_error(target: Target) -> None:
    with pytest.raises(ValueError):
        target.transport.run([])


def test_close_is_idempotent_and_a_context_manager(target: Target) -> None:
    transport: Transport = target.transport
    assert isinstance(transport, Transport)
    assert transport.label in ("local", "falcon")
    transport.run(["true"])
    transport.close()
    transport.close()
    with transport as same:
        assert same is transport
    transport.close()


def test_factory_chooses_and_keeps_paramiko_out_until_needed() -> None:
    probe = (
        "import sys\n"
        "from globtim_hpc.transport.factory import open_transport\n"
        "from globtim_hpc.transport.settings import SshSettings\n"
        "assert isinstance(open_transport('local', None), LocalTransport)\n"
        "assert 'paramiko' not in sys.modules, 'imported too early'\n"
        "o = open_transport('ssh', SshSettings(target='falcon', client='openssh'))\n"
        "assert type(o).__name__ == 'OpenSshTransport' and o.label == 'falcon'\n"
        "assert 'paramiko' not in sys.modules, 'the OpenSSH transport needs no paramiko'\n"
        "t = open_transport('ssh', SshSettings(target='falcon'))\n"
        "assert 'paramiko' in sys.modules and t.label == 'falcon'\n"
    )
    setup = "from globtim_hpc.transport.local import LocalTransport\n"
    proc = subprocess.run(
        [sys.executable, "-c", setup + probe], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(ConfigError):
        open_transport("ssh", None)
