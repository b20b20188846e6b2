#!/usr/bin/env python3
"""Describe the part of Globtim's API that julia/*.jl uses, from Globtim's own source.

    scripts/describe_globtim_api.py <Globtim.jl checkout> [--commit SHA] [-o julia/globtim_api.json]

Reads every .jl file under src/ and ext/ with tree-sitter-julia and writes, for each Globtim
name the toolkit's Julia files reference (``Globtim.<name>``) and each benchmark function the
problem files offer: its methods (file:line, positional arity, keyword names), whether it is
exported; and the fields of the structs whose values the driver reads. The result is pinned
in julia/globtim_api.json and checked by tests/unit/test_globtim_api.py; rerun this on a new
Globtim checkout to refresh it, and review the diff.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from globtim_hpc.julia import julia_ast  # noqa: E402

# What the driver's values are: the struct a call returns, read off the source at the
# commit described (Structures.jl TestInput's constructor; Main_Gen.jl Constructor's return).
RETURNS = {"TestInput": "TestInput", "Constructor": "ApproxPoly"}
STRUCTS = ("TestInput", "ApproxPoly")


def referenced_names() -> set[str]:
    names: set[str] = set()
    for path in sorted((REPO / "julia").glob("*.jl")):
        root = julia_ast.parse(path.read_bytes())
        names.update(name for name, _ in julia_ast.module_references(root, "Globtim"))
    for problem in sorted((REPO / "problems").glob("*.yaml")):
        spec = yaml.safe_load(problem.read_text()) or {}
        choices = ((spec.get("parameters") or {}).get("function") or {}).get("choices") or []
        names.update(str(c) for c in choices)
        default = ((spec.get("parameters") or {}).get("function") or {}).get("default")
        fixed = (spec.get("fixed") or {}).get("function")
        names.update(n for n in (default, fixed) if isinstance(n, str))
    return names


def describe(checkout: Path, commit: str | None) -> dict[str, Any]:
    wanted = referenced_names()
    functions: dict[str, list[dict[str, Any]]] = {}
    structs: dict[str, dict[str, Any]] = {}
    exports: set[str] = set()
    for path in sorted([*checkout.glob("src/**/*.jl"), *checkout.glob("ext/**/*.jl")]):
        rel = path.relative_to(checkout).as_posix()
        root = julia_ast.parse(path.read_bytes())
        for name, found in julia_ast.methods(root).items():
            if name in wanted:
                functions.setdefault(name, []).extend(
                    {"file": rel, **m.to_dict()} for m in found
                )
        for name, info in julia_ast.structs(root).items():
            if name in STRUCTS:
                structs[name] = {"file": rel, **info}
        for node in julia_ast.walk(root):
            if node.type == "export_statement":
                exports.update(julia_ast.text(c) for c in node.named_children)
    missing = sorted(wanted - set(functions) - set(structs))
    project = (checkout / "Project.toml").read_text()
    version = next((line.split('"')[1] for line in project.splitlines()
                    if line.startswith("version")), None)
    return {
        "globtim": {"version": version, "commit": commit},
        "generated_by": "scripts/describe_globtim_api.py",
        "functions": {
            name: {"exported": name in exports, "returns": RETURNS.get(name), "methods": found}
            for name, found in sorted(functions.items())
        },
        "structs": dict(sorted(structs.items())),
        "not_found": missing,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("--commit", help="the commit the checkout is at (recorded)")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "julia" / "globtim_api.json")
    args = parser.parse_args(argv)
    commit = args.commit
    if commit is None and (args.checkout / ".git").exists():
        commit = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    description = describe(args.checkout, commit)
    args.output.write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    if description["not_found"]:
        print(f"not found in Globtim: {', '.join(description['not_found'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
