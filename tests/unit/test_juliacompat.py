"""Julia [compat] specifiers and version lines, read as Pkg reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from globtim_hpc.errors import ConfigError, ExitCode
from globtim_hpc.julia.compat import (
    ProjectInfo,
    check_julia_compat,
    parse_compat,
    parse_julia_version,
    parse_project_toml_minimal,
    read_project,
)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "globtim_project"


@pytest.mark.parametrize(
    ("spec", "allowed", "refused"),
    [
        ("1.10", ["1.10.0", "1.10.4", "1.11.2", "1.99.0"], ["1.9.4", "2.0.0", "0.7.0"]),
        ("^1.10", ["1.10.0", "1.12.1"], ["1.9.9", "2.0.0"]),
        ("1.9, 1.10", ["1.9.0", "1.10.3", "1.11.0"], ["1.8.5", "2.0.0"]),
        ("~1.10", ["1.10.0", "1.10.9"], ["1.9.9", "1.11.0"]),
        ("~1", ["1.0.0", "1.11.0"], ["2.0.0", "0.9.9"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.2.2", "1.3.0"]),
        ("~0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
        (">=1.9", ["1.9.0", "1.10.0", "3.0.0"], ["1.8.9"]),
        (">= 1.9.2", ["1.9.2", "1.10.0"], ["1.9.1"]),
        ("≥1.9", ["1.9.0"], ["1.8.0"]),
        ("< 1.11", ["1.10.9", "0.1.0"], ["1.11.0"]),
        ("<= 1.10", ["1.10.9"], ["1.11.0"]),
        ("> 1.9", ["1.10.0"], ["1.9.9"]),
        ("=1.10.2", ["1.10.2"], ["1.10.3", "1.10.1"]),
        ("1.9 - 1.10", ["1.9.0", "1.10.7"], ["1.11.0", "1.8.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
        ("^0", ["0.0.0", "0.9.0"], ["1.0.0"]),
        ("1", ["1.0.0", "1.10.0"], ["2.0.0"]),
    ],
)
def test_compat_intervals_follow_pkg(spec: str, allowed: list[str], refused: list[str]) -> None:
    compat = parse_compat(spec)
    for text in allowed:
        assert compat.allows(parse_julia_version(f"julia version {text}")), (spec, text)
    for text in refused:
        assert not compat.allows(parse_julia_version(f"julia version {text}")), (spec, text)


@pytest.mark.parametrize("spec", ["", "1.x", "one", "1.10,", ">=", "1.2.3.4"])
def test_unreadable_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_compat(spec)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_julia_version_lines() -> None:
    assert parse_julia_version("julia version 1.10.4\n") == (1, 10, 4)
    assert parse_julia_version("julia version 1.11.0-rc1") == (1, 11, 0)
    assert parse_julia_version(
        "julia version 1.10.0 (globtim-hpc stand-in, not Julia)"
    ) == (1, 10, 0)
    with pytest.raises(ConfigError, match="cannot read a Julia version"):
        parse_julia_version("bash: julia: command not found")


def test_fixture_project_is_read() -> None:
    project = read_project(FIXTURE)
    assert project.name == "Globtim"
    assert project.version == "1.2.1"
    assert "HomotopyContinuation" not in project.deps  # a weak dependency, as upstream
    assert project.weakdeps == ("HomotopyContinuation",)
    assert project.extensions == ("GlobtimHomotopyContinuationExt",)
    assert project.julia_compat == "1.12"


def test_minimal_reader_agrees_with_tomllib_on_the_fixture() -> None:
    tomllib = pytest.importorskip("tomllib")
    text = (FIXTURE / "Project.toml").read_text()
    full = tomllib.loads(text)
    minimal = parse_project_toml_minimal(text)
    assert minimal["name"] == full["name"]
    assert minimal["compat"]["julia"] == full["compat"]["julia"]
    assert sorted(minimal["deps"]) == sorted(full["deps"])


def test_minimal_reader_ignores_comments() -> None:
    data = parse_project_toml_minimal('# top\n[compat]\njulia = "1.10" # the LTS\n')
    assert data == {"compat": {"julia": "1.10"}}


def test_missing_project_toml_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        read_project(tmp_path)


def test_compat_check_refuses_with_the_fix() -> None:
    project = ProjectInfo(name="X", version=None, deps=(), julia_compat="1.10")
    with pytest.raises(ConfigError) as caught:
        check_julia_compat((1, 9, 4), project, where="falcon")
    assert "1.9.4" in caught.value.message and "falcon" in caught.value.message
    assert caught.value.hint is not None and "julia.modules" in caught.value.hint
    assert check_julia_compat((1, 10, 4), project, where="falcon") is None
    open_project = ProjectInfo(name="X", version=None, deps=(), julia_compat=None)
    assert "no [compat]" in (check_julia_compat((0, 7, 0), open_project, where="falcon") or "")
