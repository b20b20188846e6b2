"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own registry and user config: nothing touches the real ones."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("GLOBTIM_HPC_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.delenv("GLOBTIM_HPC_CLUSTER", raising=False)
    yield state


@pytest.fixture
def repo() -> Path:
    return REPO
