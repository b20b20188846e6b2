"""The library stays in small modules: a module over the limit is a sign it holds two jobs."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "globtim_hpc"
MAX_LINES = 500


def test_no_module_is_over_the_limit() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): count
        for path in sorted(PACKAGE.rglob("*.py"))
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines (split them by job): {too_long}"
