"""Closing a hop's packetizer over a link that is already dead never raises."""

from __future__ import annotations

import pytest
from paramiko.packet import Packetizer

from globtim_hpc.transport.ssh.hop import QuietPacketizer


class _DeadLink:
    """What a hop's channel looks like once the link below it died: its close must write a
    message, and the write fails (paramiko's Channel.close() raises EOFError)."""

    def __init__(self) -> None:
        self.close_calls = 0

    def settimeout(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        self.close_calls += 1
        raise EOFError


def test_plain_packetizer_close_raises_over_a_dead_link() -> None:
    with pytest.raises(EOFError):
        Packetizer(_DeadLink()).close()  # type: ignore[arg-type]


def test_quiet_packetizer_closes_and_stays_quiet() -> None:
    link = _DeadLink()
    packetizer = QuietPacketizer(link)  # type: ignore[arg-type]
    packetizer.close()
    assert link.close_calls == 1, "the close was still attempted"
    assert packetizer.closed
