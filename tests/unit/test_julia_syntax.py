"""Every Julia file in the repository parses: Julia is not installed here, so this is the guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_julia

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", ".git", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}


def julia_files() -> list[Path]:
    return sorted(
        path
        for path in REPO.rglob("*.jl")
        if not SKIP_DIRS.intersection(path.relative_to(REPO).parts)
    )


def syntax_problems(source: bytes) -> list[str]:
    """ERROR and MISSING nodes of the parse tree, as 'line:column kind text'."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))
    tree = parser.parse(source)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            row, column = node.start_point
            text = source[node.start_byte : node.end_byte][:60].decode(errors="replace")
            found.append(f"{row + 1}:{column + 1} {kind} {node.type} {text!r}")
        stack.extend(node.children)
    return sorted(found)


def test_the_driver_is_among_the_checked_files() -> None:
    names = {path.relative_to(REPO).as_posix() for path in julia_files()}
    assert "julia/globtim_driver.jl" in names


@pytest.mark.parametrize("path", julia_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_julia_file_parses(path: Path) -> None:
    assert syntax_problems(path.read_bytes()) == []


GOOD = b"""
function f(x::Vector{Float64}; scale = 2.0)
    total = sum(abs2, x .* scale)
    return isfinite(total) ? total : nothing
end
const T = Dict{String,Any}("a" => [1, 2], "b" => nothing)
try
    using Nothing_Here
catch err
    println(stderr, sprint(showerror, err))
end
"""


@pytest.mark.parametrize(
    "bad",
    [
        b"function f(x)\n    return x +\n",  # unterminated function, dangling operator
        b"x = [1, 2\ny = 3\n",  # unclosed bracket
        b'if x > 1\n    println("big")\n',  # if without end
        b'd = Dict("a" => 1,, "b" => 2)\n',  # doubled comma
        b's = "unterminated\n',
    ],
)
def test_a_syntax_error_is_caught(bad: bytes) -> None:
    assert syntax_problems(GOOD) == []
    assert syntax_problems(bad) != []
    assert syntax_problems(GOOD + bad) != []


def test_every_included_julia_file_is_shipped_with_its_includer() -> None:
    """The scripts include common_io.jl from their own folder; both ship paths must carry it."""
    import re

    from globtim_hpc.workflows.deploy import toolkit_scripts

    julia_dir = Path(__file__).resolve().parents[2] / "julia"
    shipped_by_deploy = {Path(extra.path).name for extra in toolkit_scripts()}
    for script in julia_dir.glob("*.jl"):
        for name in re.findall(r'include\(joinpath\(@__DIR__, "([^"]+)"\)\)', script.read_text()):
            assert (julia_dir / name).is_file(), f"{script.name} includes missing {name}"
            if script.name in shipped_by_deploy:
                assert name in shipped_by_deploy, f"deploy ships {script.name} without {name}"
