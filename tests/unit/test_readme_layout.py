"""README.md's layout section names every folder of the tree and of the library, and no other."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "globtim_hpc"
# Folders that hold no project content of their own.
UNLISTED = {".git", ".venv", ".ci", "__pycache__", "build", "dist", "results"}


def _layout_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def _named_folders(block: str) -> set[str]:
    return set(re.findall(r"(?:^|\s)([\w.]+(?:/[\w.]+)*)/(?=\s)", block, re.MULTILINE))


def test_readme_layout_names_the_top_level_folders() -> None:
    named = _named_folders(_layout_block())
    actual = {
        path.name
        for path in REPO.iterdir()
        if path.is_dir() and path.name not in UNLISTED and not path.name.startswith(".")
        and not path.name.endswith(".egg-info")
    }
    top_named = {name.split("/")[0] for name in named}
    assert actual - top_named == set(), f"folders missing from README's layout: {actual - top_named}"
    tests_named = {name.split("/")[1] for name in named if name.startswith("tests/")}
    tests_actual = {
        path.name for path in (REPO / "tests").iterdir()
        if path.is_dir() and path.name not in UNLISTED
    }
    assert tests_actual - tests_named == set(), f"tests/ folders missing: {tests_actual - tests_named}"


def test_readme_layout_names_every_subpackage_and_nothing_else() -> None:
    block = _layout_block()
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("globtim_hpc/"))
    listed = set()
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        match = re.match(r"\s+([\w]+)/\s", line)
        if match:
            listed.add(match.group(1))
    actual = {
        path.name for path in PACKAGE.iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    assert listed == actual, f"README lists {sorted(listed)}, the package has {sorted(actual)}"
