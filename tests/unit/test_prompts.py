"""Answering SSH prompts without a terminal: refused with a way out, or by a given function."""

from __future__ import annotations

import io
import sys

import pytest

from globtim_hpc.errors import AuthenticationError
from globtim_hpc.prompts import answers, interactive_prompt


def test_no_terminal_is_refused_naming_the_hop_and_the_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    with pytest.raises(AuthenticationError) as caught:
        interactive_prompt("mack:2222", "Verification code: ", False)
    assert caught.value.message.startswith("mack:2222:") and "prompt=" in (caught.value.hint or "")


def test_answers_in_turn_then_refuses() -> None:
    prompt = answers("passphrase", "123456")
    assert prompt("falcon", "Enter passphrase", False) == "passphrase"
    assert prompt("mack", "code", False) == "123456"
    with pytest.raises(AuthenticationError):
        prompt("mack", "code", False)
