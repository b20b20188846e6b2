"""The layout keeps its promise: workflows talk to seams, not to concrete schedulers or
transports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent.parent / "globtim_hpc"
WORKFLOWS = sorted((PACKAGE / "workflows").rglob("*.py"))
CONCRETE = (
    "globtim_hpc.scheduler.slurm",
    "globtim_hpc.scheduler.slurm_commands",
    "globtim_hpc.scheduler.slurm_fields",
    "globtim_hpc.scheduler.direct",
    "globtim_hpc.transport.local",
    "globtim_hpc.transport.ssh",
    "globtim_hpc.transport.openssh",
)
SCHEDULER_NAMES = {"slurm", "direct"}


def _imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _name_tests(tree: ast.AST) -> list[str]:
    """Comparisons of anything with the literal name of a scheduler ("slurm", "direct")."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            if any(isinstance(p, ast.Constant) and p.value in SCHEDULER_NAMES for p in parts):
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_workflows_use_the_seams_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    concrete = [m for m in _imports(tree) if m.startswith(CONCRETE)]
    assert concrete == [], f"{path.name} imports a concrete scheduler or transport"
    assert _name_tests(tree) == [], f"{path.name} branches on a scheduler's name"


def test_the_check_would_see_a_violation() -> None:
    tree = ast.parse(
        "from globtim_hpc.scheduler.slurm import SlurmScheduler\n"
        "if profile.scheduler == 'direct': pass\n"
    )
    assert [m for m in _imports(tree) if m.startswith(CONCRETE)]
    assert _name_tests(tree) == ["profile.scheduler == 'direct'"]
