"""The problem library: one YAML file per problem under ``problems/``, loaded and checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globtim_hpc import paths
from globtim_hpc.errors import ConfigError
from globtim_hpc.jobs.params import ParamSpec, parse_spec
from globtim_hpc.jobs.resources import Resources, apply_resources, resource_presets
from globtim_hpc.settings.yamlio import YamlDoc, load_yaml_file, suggest, unknown_key_error

__all__ = [
    "ENTRIES",
    "RESERVED_PARAMS",
    "ParamSpec",
    "Problem",
    "Resources",
    "list_problems",
    "load_problem",
    "problems_dir",
    "resource_presets",
    "unknown_problem_error",
]

# What the driver does with a task; the driver dispatches on this value.
ENTRIES = ("benchmark", "lotka_volterra", "custom")
# Keys the toolkit puts into every task's parameters; problems may not declare them.
RESERVED_PARAMS = ("problem", "entry", "task_id")
PROBLEM_KEYS = (
    "name",
    "description",
    "driver",
    "entry",
    "fixed",
    "resources",
    "free_form",
    "parameters",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    driver: str
    entry: str
    fixed: Mapping[str, Any]  # passed to the driver unchanged; not settable from a job config
    parameters: tuple[ParamSpec, ...]
    default_resources: Resources
    free_form: bool  # job configs may add parameters the problem does not declare
    path: str

    def param(self, name: str) -> ParamSpec | None:
        for spec in self.parameters:
            if spec.name == name:
                return spec
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.parameters)


def problems_dir() -> Path:
    return paths.problems_dir()


def list_problems() -> list[str]:
    folder = problems_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if _NAME.match(p.stem))


def unknown_problem_error(name: str, doc: YamlDoc | None = None) -> ConfigError:
    """The error for a name not in the library; ``doc`` is the job config naming it, if any."""
    known = list_problems()
    near = suggest(name, known)
    hint = (f"did you mean '{near}'? " if near else "") + (
        "known problems: " + ", ".join(known) if known else f"no problems found in {problems_dir()}"
    )
    message = f"unknown problem '{name}'"
    if doc is not None:
        return doc.error(("problem",), message, hint)
    return ConfigError(message, hint, key="problem")


def load_problem(name: str) -> Problem:
    if not _NAME.match(name) or name not in list_problems():
        raise unknown_problem_error(name)
    doc = load_yaml_file(problems_dir() / f"{name}.yaml")
    return _parse_problem(name, doc)


def _parse_problem(name: str, doc: YamlDoc) -> Problem:
    data = doc.data
    for key in data:
        if key not in PROBLEM_KEYS:
            raise unknown_key_error(doc, (key,), PROBLEM_KEYS)
    if data.get("name", name) != name:
        raise doc.error(
            ("name",),
            f"name '{data['name']}' does not match the file name '{name}'",
            "rename the file or fix 'name'",
        )
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise doc.error(("description",), "a problem needs a description", "add 'description: ...'")
    driver = data.get("driver", "globtim_driver.jl")
    if not isinstance(driver, str) or not driver.endswith(".jl") or "/" in driver:
        raise doc.error(
            ("driver",),
            f"driver must be a .jl file name in julia/, got {driver!r}",
            "e.g. 'driver: globtim_driver.jl'",
        )
    entry = data.get("entry")
    if entry not in ENTRIES:
        raise doc.error(("entry",), f"unknown entry {entry!r}", "entries: " + ", ".join(ENTRIES))
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        raise doc.error(("fixed",), "'fixed' must be a mapping", "e.g. 'fixed: {dim: 4}'")
    free_form = data.get("free_form", False)
    if not isinstance(free_form, bool):
        raise doc.error(("free_form",), "'free_form' must be true or false", "write true or false")
    raw_params = data.get("parameters") or {}
    if not isinstance(raw_params, Mapping):
        raise doc.error(
            ("parameters",),
            "'parameters' must be a mapping of name to declaration",
            "indent one declaration per parameter under 'parameters:'",
        )
    specs: list[ParamSpec] = []
    for pname, raw in raw_params.items():
        keypath = ("parameters", str(pname))
        if pname in RESERVED_PARAMS or pname in fixed:
            raise doc.error(
                keypath,
                f"'{pname}' is reserved or fixed and cannot be a parameter",
                "rename the parameter",
            )
        specs.append(parse_spec(doc, keypath, str(pname), raw))
    presets = resource_presets()
    base = presets["standard"]
    resources = apply_resources(base, doc, ("resources",), data.get("resources"))
    return Problem(
        name=name,
        description=description.strip(),
        driver=driver,
        entry=str(entry),
        fixed=dict(fixed),
        parameters=tuple(specs),
        default_resources=resources,
        free_form=free_form,
        path=doc.path,
    )
