"""A static check of julia/*.jl against Globtim 1.2.1's API (julia/globtim_api.json, made by
scripts/describe_globtim_api.py from Globtim's source at 527db3b9), with tree-sitter-julia."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from globtim_hpc.julia import julia_ast, runenv

REPO = Path(__file__).resolve().parents[2]
API: dict[str, Any] = json.loads((REPO / "julia" / "globtim_api.json").read_text())
# Standard library modules the toolkit's scripts load (they are in every Julia).
STDLIBS = {"Dates", "Pkg", "SHA", "Base"}


def problems_offered_functions() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "problems").glob("*.yaml"):
        spec = yaml.safe_load(path.read_text()) or {}
        function = (spec.get("parameters") or {}).get("function") or {}
        names.update(function.get("choices") or [])
        fixed = (spec.get("fixed") or {}).get("function")
        if fixed:
            names.add(fixed)
    return names


def check(folder: Path) -> list[str]:
    """Every problem found in the .jl files of folder, as 'file:line: what'."""
    problems: list[str] = []
    provided = set(runenv.driver_package_names()) | STDLIBS
    for path in sorted(folder.glob("*.jl")):
        root = julia_ast.parse(path.read_bytes())
        where = path.name
        for name, line in julia_ast.loads(root):
            if name not in provided:
                problems.append(f"{where}:{line}: loads {name}, which the run environment lacks")
        typed: dict[str, str] = {}  # variable -> the Globtim struct it holds
        for node in julia_ast.walk(root):
            if node.type == "assignment" and node.named_children[-1].type == "call_expression":
                lhs, call = node.named_children[0], node.named_children[-1]
                callee = julia_ast.text(call.named_children[0])
                ret = API["functions"].get(callee.removeprefix("Globtim."), {}).get("returns")
                if callee.startswith("Globtim.") and ret and lhs.type == "identifier":
                    typed[julia_ast.text(lhs)] = ret
        for call in julia_ast.module_calls(root, "Globtim"):
            spec = API["functions"].get(call.name)
            if spec is None:
                problems.append(f"{where}:{call.line}: Globtim.{call.name} is not in Globtim's API")
                continue
            fits = [
                m for m in spec["methods"]
                if (call.splat or m["min_positional"] <= call.positional)
                and (m["max_positional"] is None or call.positional <= m["max_positional"])
                and (m["any_keyword"] or set(call.keywords) <= set(m["keywords"]))
            ]
            if not fits:
                problems.append(
                    f"{where}:{call.line}: Globtim.{call.name}({call.positional} positional; "
                    f"{', '.join(call.keywords)}) matches no method of Globtim's"
                )
        for name, line in julia_ast.module_references(root, "Globtim"):
            if name not in API["functions"] and name not in API["structs"]:
                problems.append(f"{where}:{line}: Globtim.{name} is not in Globtim's API")
        for node in julia_ast.walk(root):
            if node.type == "field_expression":
                var, field = (julia_ast.text(c) for c in (node.named_children[0], node.named_children[-1]))
                fields = API["structs"].get(typed.get(var, ""), {}).get("fields")
                if fields is not None and field not in fields:
                    problems.append(f"{where}:{node.start_point[0] + 1}: {var}.{field}: "
                                    f"{typed[var]} has no field {field}")
        text = path.read_text()
        for var, field in re.findall(r"hasproperty\((\w+), :(\w+)\)", text):
            fields = API["structs"].get(typed.get(var, ""), {}).get("fields")
            if fields is not None and field not in fields:
                problems.append(f"{where}: hasproperty({var}, :{field}): {typed[var]} has no such field")
    return problems


def test_the_driver_uses_only_globtims_api() -> None:
    assert API["globtim"] == {"version": "1.2.1", "commit": "527db3b9313fff9be6e232d3f0be0e7104cc342b"}
    assert API["not_found"] == []
    assert check(REPO / "julia") == []


def test_every_offered_benchmark_function_is_exported_by_globtim() -> None:
    for name in problems_offered_functions():
        assert API["functions"][name]["exported"], name


def test_the_run_environment_holds_exactly_what_the_driver_loads() -> None:
    root = julia_ast.parse((REPO / "julia" / "globtim_driver.jl").read_bytes())
    loaded = [name for name, _ in julia_ast.loads(root) if name not in STDLIBS]
    assert loaded == runenv.driver_package_names()


def test_the_driver_solves_through_the_approximant() -> None:
    root = julia_ast.parse((REPO / "julia" / "globtim_driver.jl").read_bytes())
    called = {c.name for c in julia_ast.module_calls(root, "Globtim")}
    assert "solve_polynomial_system_from_approx" in called
    assert "solve_polynomial_system" not in called  # its defaults ignore the fit's basis


def test_the_lotka_volterra_objective_keeps_the_inputs_element_type() -> None:
    text = (REPO / "julia" / "globtim_driver.jl").read_text()
    body = text[text.index("function lv_trajectory"):text.index("function lotka_volterra_objective")]
    assert "Matrix{Float64}" not in body and "promote_type(eltype(p), Float64)" in body
    assert "Matrix{T}(undef" in body


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("basis = Symbol(params[\"basis\"])", "basiss = Symbol(params[\"basis\"])", "matches no method"),
        ("Globtim.process_crit_pts(", "Globtim.process_critical_pts(", "not in Globtim's API"),
        ("pol.nrm", "pol.norm", "has no field norm"),
        ("tol_dist = Float64", "tol_distance = Float64", "matches no method"),
        ("using CSV\n", "using CSV\n    using Optim\n", "loads Optim"),
        ("Globtim.TestInput(\n        f;", "Globtim.TestInput(\n        f, 2;", "matches no method"),
    ],
)
def test_a_mutated_driver_fails_the_check(tmp_path: Path, old: str, new: str, expected: str) -> None:
    for path in (REPO / "julia").glob("*.jl"):
        shutil.copy(path, tmp_path / path.name)
    driver = tmp_path / "globtim_driver.jl"
    text = driver.read_text()
    assert old in text
    driver.write_text(text.replace(old, new, 1))
    problems = check(tmp_path)
    assert any(expected in p for p in problems), problems
