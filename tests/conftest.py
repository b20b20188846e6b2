"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# Set by tests/integration for the checkout's own corner of the bed; unit tests see the
# profile's plain defaults.
BED_ENV = (
    "GLOBTIM_TESTBED_REMOTE_ROOT",
    "GLOBTIM_TESTBED_TCSH_REMOTE_ROOT",
    "GLOBTIM_TESTBED_STAND_IN",
)


@pytest.fixture(autouse=True)
def isolated_state(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Every test gets its own registry and user config: nothing touches the real ones."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("GLOBTIM_HPC_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.delenv("GLOBTIM_HPC_CLUSTER", raising=False)
    if request.node.get_closest_marker("integration") is None:
        for name in BED_ENV:
            monkeypatch.delenv(name, raising=False)
    yield state


@pytest.fixture
def repo() -> Path:
    return REPO
