"""Answering SSH authentication prompts (key passphrase, password, one-time code).

A prompt function takes (hop label, prompt text, echo) and returns the answer. The commands use
the terminal; a notebook or a script passes its own function to ``Cluster(prompt=...)``.
"""

from __future__ import annotations

import getpass
import sys

from globtim_hpc.errors import AuthenticationError
from globtim_hpc.transport.base import PromptFn


def _in_notebook() -> bool:
    # ipykernel answers getpass through the notebook's front end, without a terminal.
    return "ipykernel" in sys.modules


def interactive_prompt(hop: str, text: str, echo: bool) -> str:
    """Ask on the terminal (or in a Jupyter notebook); refuse clearly when there is neither."""
    if not sys.stdin.isatty() and not _in_notebook():
        raise AuthenticationError(
            f"asks '{text.strip()}' but there is no terminal to answer on",
            "run the command in a terminal, load the key into ssh-agent, set the profile's "
            "ssh.passphrase_env, or pass prompt=<function> to globtim_hpc.Cluster",
            hop=hop,
        )
    label = f"[{hop}] {text.strip()} "
    if echo:
        sys.stderr.write(label)
        sys.stderr.flush()
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(label)


def answers(*replies: str) -> PromptFn:
    """A prompt function that gives ``replies`` in turn (scripts, tests); then refuses."""
    queue = list(replies)

    def prompt(hop: str, text: str, echo: bool) -> str:
        if not queue:
            raise AuthenticationError(
                f"asks '{text.strip()}' and no answer is left", "give one more answer", hop=hop
            )
        return queue.pop(0)

    return prompt
