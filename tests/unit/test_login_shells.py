"""Command lines that every login shell accepts: sshd runs them as ``$SHELL -c LINE``.

The shells are the real ones (tcsh comes with tests/testbed/packages.sh); each must hand the
remote program exactly the argv it was given, with its stdin and its exit status.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from globtim_hpc.quoting import command_line, join

HOSTILE = [
    "a\nb",
    "it's",
    "x!y",
    "!!",
    "back\\slash\\",
    "ünï",
    "$(touch /tmp/globtim-canary) `touch /tmp/globtim-canary`",
    "*?[x] {a,b} ~",
    "",
    "trailing\n",
]
SHELLS = ["sh", "bash", "tcsh"]
ECHO_ARGV = ["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


def _shell(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (tests/testbed/packages.sh installs tcsh)"
    return path


@pytest.mark.parametrize("shell", SHELLS)
def test_every_argv_reaches_the_program_unchanged(shell: str) -> None:
    argv = [*ECHO_ARGV, *HOSTILE]
    done = subprocess.run(
        [_shell(shell), "-c", command_line(argv)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == HOSTILE


@pytest.mark.parametrize("shell", SHELLS)
def test_a_multi_line_script_keeps_its_stdin_and_exit_status(shell: str) -> None:
    script = 'read -r line\nprintf "%s|%s\\n" "$line" "$1"\nexit 7\n'
    done = subprocess.run(
        [_shell(shell), "-c", command_line(["sh", "-c", script, "sh", "x!y"])],
        input="from stdin\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (7, "from stdin|x!y\n", "")


def test_tcsh_refuses_the_plain_line_that_the_wrapped_one_replaces() -> None:
    """The reason for the wrapping: the POSIX quoting alone breaks in tcsh."""
    for argv in (["printf", "a\nb"], ["echo", "x!y"]):
        plain = subprocess.run([_shell("tcsh"), "-c", join(argv)], capture_output=True, timeout=30)
        assert plain.returncode != 0, argv


def test_a_line_of_plain_words_goes_as_it_is() -> None:
    argv = ["squeue", "--noheader", "--format=%i|%T", "-n", "run_2024 x", "'quoted'"]
    assert command_line(argv) == join(argv)
    assert "\n" not in command_line(["sh", "-c", "a\nb"])
