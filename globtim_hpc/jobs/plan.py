"""A job config (YAML) applied to a problem definition: the resolved tasks and resources of one job.

Sweep order is part of the contract: the Cartesian product runs over the problem's declared
parameters in their declaration order (free-form parameters of ``custom`` follow, sorted by
name), and the last one varies fastest. Task ``i`` is SLURM array index ``i``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from globtim_hpc.errors import ConfigError
from globtim_hpc.jobs.params import ParamSpec, check_value
from globtim_hpc.jobs.problems import (
    RESERVED_PARAMS,
    Problem,
    list_problems,
    load_problem,
    unknown_problem_error,
)
from globtim_hpc.jobs.resources import Resources, apply_resources, resource_presets
from globtim_hpc.jobs.retry import RetryPolicy
from globtim_hpc.jobs.sizing import MANY_PATHS, MAX_SAMPLES, TaskSize, task_size
from globtim_hpc.layout import task_id_for
from globtim_hpc.settings.yamlio import KeyPath, YamlDoc, load_yaml_file, unknown_key_error

__all__ = [
    "CONFIG_KEYS",
    "JobPlan",
    "Resources",
    "TaskSpec",
    "build_plan",
    "check_plan",
    "resource_presets",
]

CONFIG_KEYS = ("problem", "parameters", "resources")
MAX_TASKS = 10_000
MANY_TASKS = 1_000  # a common MaxArraySize; above it sbatch may refuse the array
OVERRIDES_SOURCE = "<command line>"


@dataclass(frozen=True)
class TaskSpec:
    index: int  # SLURM array index, 0..N-1, in the documented sweep order
    task_id: str  # stable, filename-safe; the params file is params/<task_id>.json
    params: dict[str, Any]  # fully resolved parameters for this task (JSON-serialisable)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "task_id": self.task_id, "params": self.params}


@dataclass(frozen=True)
class JobPlan:
    problem: str
    description: str
    driver: str
    tasks: tuple[TaskSpec, ...]
    resources: Resources
    config_path: str | None
    config_hash: str  # sha256 of the canonical JSON of (problem, resolved params, resources)
    extra_files: tuple[tuple[str, str], ...]  # (local path, name in the run folder)
    # What the sizing learned from earlier runs says about this plan (jobs/advice.py).
    sizing_notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "description": self.description,
            "driver": self.driver,
            "tasks": [task.to_dict() for task in self.tasks],
            "resources": self.resources.to_dict(),
            "config_path": self.config_path,
            "config_hash": self.config_hash,
            "extra_files": [list(pair) for pair in self.extra_files],
            "sizing_notes": list(self.sizing_notes),
        }


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_top(doc: YamlDoc, problem: str) -> None:
    for key in doc.data:
        if key not in CONFIG_KEYS:
            raise unknown_key_error(doc, (key,), CONFIG_KEYS)
    named = doc.data.get("problem")
    if named is not None and named != problem:
        raise doc.error(
            ("problem",),
            f"this config is for problem '{named}', but '{problem}' was asked for",
            f"use --problem {named}, or remove the 'problem:' line",
        )
    for key in ("parameters", "resources"):
        value = doc.data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise doc.error(
                (key,),
                f"'{key}' must be a mapping of names to values",
                f"indent one 'name: value' line per entry under '{key}:'",
            )


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def _sweep_items(
    spec: ParamSpec | None, name: str, value: Any, doc: YamlDoc, keypath: KeyPath
) -> list[Any] | None:
    """The items of a sweep, or None when ``value`` is one value."""
    if not isinstance(value, list):
        return None
    # For a list-valued parameter a flat list is the value itself; only a list of lists sweeps.
    list_valued = spec is not None and spec.is_list_valued
    if list_valued and (not value or not all(isinstance(item, list) for item in value)):
        return None
    if not value:
        raise doc.error(
            keypath,
            f"empty sweep list for '{name}'",
            "give at least one value, or remove the key to use the default",
        )
    if spec is not None and not spec.sweepable:
        raise doc.error(keypath, f"'{name}' cannot be swept", "give a single value")
    for index, item in enumerate(value):
        if isinstance(item, (list, dict)) and not (spec is not None and spec.is_list_valued):
            raise doc.error(
                (*keypath, index),
                f"a sweep over '{name}' must list single values; a list of lists is not a sweep",
                "write e.g. 'degree: [4, 6, 8]'",
            )
    return value


def _resolve_values(
    spec: ParamSpec | None,
    name: str,
    value: Any,
    doc: YamlDoc,
    keypath: KeyPath,
    base_dir: Path | None,
) -> list[Any]:
    items = _sweep_items(spec, name, value, doc, keypath)
    candidates = (
        [(value, keypath)]
        if items is None
        else [(item, (*keypath, i)) for i, item in enumerate(items)]
    )
    out: list[Any] = []
    seen: set[str] = set()
    for item, where in candidates:
        if spec is None:
            if not (_is_json_scalar(item) or isinstance(item, (list, dict))):
                raise doc.error(
                    where,
                    f"value of type {type(item).__name__} cannot be passed to Julia",
                    "use numbers, strings, true/false, lists or mappings",
                )
            checked = item
        else:
            checked = check_value(spec, item, doc, where, base_dir)
        try:
            key = canonical_json(checked)
        except (TypeError, ValueError):
            raise doc.error(
                where, "value cannot be written as JSON", "use numbers, strings, lists"
            ) from None
        if key in seen:
            raise doc.error(
                where,
                f"value {item!r} appears twice in the sweep over '{name}'",
                "remove the repeat",
            )
        seen.add(key)
        out.append(checked)
    return out


@dataclass(frozen=True)
class _Source:
    doc: YamlDoc
    base_dir: Path | None


def _parameter_values(problem: Problem, sources: Sequence[_Source]) -> list[tuple[str, list[Any]]]:
    """Each parameter with its list of values (one value unless swept), in sweep order."""
    chosen: dict[str, tuple[Any, _Source]] = {}
    for source in sources:
        section = source.doc.data.get("parameters") or {}
        for name, value in section.items():
            if name in RESERVED_PARAMS or name in problem.fixed:
                raise source.doc.error(
                    ("parameters", str(name)),
                    f"'{name}' is set by the toolkit or fixed by the problem",
                    f"remove it; its value comes from {problem.path}",
                )
            if problem.param(str(name)) is None and not problem.free_form:
                raise unknown_key_error(source.doc, ("parameters", str(name)), problem.param_names)
            chosen[str(name)] = (value, source)
    last = sources[0]  # a missing value is reported against the job config file
    resolved: list[tuple[str, list[Any]]] = []
    for spec in problem.parameters:
        if spec.name in chosen:
            value, source = chosen[spec.name]
            resolved.append(
                (
                    spec.name,
                    _resolve_values(
                        spec,
                        spec.name,
                        value,
                        source.doc,
                        ("parameters", spec.name),
                        source.base_dir,
                    ),
                )
            )
        elif spec.required:
            raise last.doc.error(
                ("parameters", spec.name),
                f"missing required value '{spec.name}' ({spec.description})",
                f"add under 'parameters:' a line '{spec.name}: ...' with {spec.allowed()}",
            )
        else:
            resolved.append((spec.name, [spec.default]))
    for name in sorted(n for n in chosen if problem.param(n) is None):
        value, source = chosen[name]
        resolved.append(
            (
                name,
                _resolve_values(
                    None, name, value, source.doc, ("parameters", name), source.base_dir
                ),
            )
        )
    return resolved


def _check_degrees(params: Mapping[str, Any], doc: YamlDoc) -> None:
    degree, degree_max = params.get("degree"), params.get("degree_max")
    if isinstance(degree, int) and isinstance(degree_max, int) and degree_max < degree:
        raise doc.error(
            ("parameters", "degree_max"),
            f"degree_max {degree_max} is below degree {degree}",
            "degree_max is the last degree run in the same task; make it >= degree or null",
        )


def build_plan(
    problem: str, config_path: Path | None, overrides: Mapping[str, Any] | None = None
) -> JobPlan:
    """Resolve ``problem`` + job config + overrides (same shape as a job config) into tasks."""
    if config_path is not None:
        config = load_yaml_file(config_path)
        sources = [_Source(config, config_path.resolve().parent)]
    else:
        sources = [_Source(YamlDoc(path="<defaults>", data={}), None)]
    if overrides:
        sources.append(_Source(YamlDoc(path=OVERRIDES_SOURCE, data=dict(overrides)), Path.cwd()))
    for source in sources:
        _check_top(source.doc, problem)
    if problem not in list_problems():
        raise unknown_problem_error(problem, sources[0].doc if config_path is not None else None)
    definition = load_problem(problem)

    resources = definition.default_resources
    for source in sources:
        resources = apply_resources(
            resources, source.doc, ("resources",), source.doc.data.get("resources")
        )

    values = _parameter_values(definition, sources)
    extra_files: list[tuple[str, str]] = []
    shipped: dict[str, str] = {}  # parameter -> name in the run folder
    input_sha256: dict[str, str] = {}
    for spec in definition.parameters:
        if spec.type != "path":
            continue
        local = dict(values)[spec.name][0]
        if local is None:
            continue
        run_name = f"user/{spec.name}{Path(local).suffix}"
        extra_files.append((local, run_name))
        shipped[spec.name] = run_name
        input_sha256[spec.name] = _sha256_file(Path(local))

    names = [name for name, _ in values]
    combos = list(itertools.product(*(vals for _, vals in values)))
    tasks: list[TaskSpec] = []
    for index, combo in enumerate(combos):
        task_id = task_id_for(index, len(combos))
        params: dict[str, Any] = {
            "problem": definition.name,
            "entry": definition.entry,
            "task_id": task_id,
        }
        params.update(definition.fixed)
        params.update(zip(names, combo, strict=True))
        params.update(shipped)
        if input_sha256:
            params["input_sha256"] = dict(input_sha256)
        _check_degrees(params, sources[-1].doc)
        tasks.append(TaskSpec(index=index, task_id=task_id, params=params))

    digest = plan_hash(definition.name, tasks, resources)
    plan = JobPlan(
        problem=definition.name,
        description=definition.description,
        driver=definition.driver,
        tasks=tuple(tasks),
        resources=resources,
        config_path=str(config_path) if config_path is not None else None,
        config_hash=digest,
        extra_files=tuple(extra_files),
    )
    if resources.mem_auto:
        from globtim_hpc.jobs.advice import apply_sizing

        plan = apply_sizing(plan, ())
    return plan


def plan_hash(problem: str, tasks: Sequence[TaskSpec], resources: Resources) -> str:
    """sha256 of the canonical JSON of (problem, resolved params, resources)."""
    return hashlib.sha256(
        canonical_json(
            {"problem": problem, "params": [t.params for t in tasks], "resources": resources.to_dict()}
        ).encode()
    ).hexdigest()


def _int_param(params: Mapping[str, Any], key: str) -> int | None:
    value = params.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def task_sizes(plan: JobPlan) -> list[tuple[TaskSpec, TaskSize]]:
    """Each task that says its grid, with the size of its largest degree."""
    return _task_sizes(plan)


def _task_sizes(plan: JobPlan) -> list[tuple[TaskSpec, TaskSize]]:
    sizes = []
    for task in plan.tasks:
        dim = _int_param(task.params, "dim")
        gn = _int_param(task.params, "samples_per_dim")
        degree = _int_param(task.params, "degree")
        if dim is None or gn is None or degree is None:
            continue  # e.g. a custom script that sizes itself
        top = max(degree, _int_param(task.params, "degree_max") or degree)
        sizes.append((task, task_size(dim, gn, top)))
    return sizes


def check_plan(plan: JobPlan) -> list[str]:
    """Pre-flight sanity. Raises ConfigError for requests that cannot work; returns warnings."""
    where = plan.config_path or "<job config>"
    warnings: list[str] = []
    count = len(plan.tasks)
    if count > MAX_TASKS:
        raise ConfigError(
            f"the sweep expands to {count:,} tasks, more than the {MAX_TASKS:,} allowed",
            "shorten the sweep lists; tasks = product of the list lengths",
            path=where,
            key="parameters",
        )
    if count > MANY_TASKS:
        warnings.append(
            f"{count:,} array tasks: many clusters cap arrays at {MANY_TASKS:,} (MaxArraySize)"
        )
    sizes = _task_sizes(plan)
    if not sizes:
        return warnings
    task, worst = max(sizes, key=lambda pair: (pair[1].samples, pair[1].mem_gb))
    if worst.samples > MAX_SAMPLES:
        raise ConfigError(
            f"absurd grid size in task {task.task_id}: (samples_per_dim+1)^dim = "
            f"({worst.samples_per_dim}+1)^{worst.dim} = {worst.samples:.3g} samples "
            f"(limit {MAX_SAMPLES:.0e}); {worst.describe()}",
            "lower samples_per_dim (GN); the grid grows as (GN+1)^dim",
            path=where,
            key="parameters.samples_per_dim",
        )
    task, worst = max(sizes, key=lambda pair: pair[1].mem_gb)
    mem_gb = plan.resources.mem_gb
    if worst.mem_gb > mem_gb:
        raise ConfigError(
            f"task {task.task_id} needs about {worst.mem_gb:,.1f} GB but {mem_gb:g} GB "
            f"is requested: {worst.describe()}",
            f"raise resources.mem_gb to at least {worst.mem_gb * 1.25:,.0f}, "
            "or lower samples_per_dim or the degree",
            path=where,
            key="resources.mem_gb",
        )
    if worst.mem_gb > 0.8 * mem_gb:
        warnings.append(
            f"task {task.task_id} is estimated at {worst.mem_gb:,.1f} GB "
            f"of the {mem_gb:g} GB requested"
        )
    for task, size in sizes:
        if size.samples < size.basis_size:
            warnings.append(
                f"task {task.task_id}: {size.samples:,} samples for {size.basis_size:,} "
                "basis functions; the least-squares fit is underdetermined, raise samples_per_dim"
            )
            break
    paths_task, paths_size = max(sizes, key=lambda pair: pair[1].paths)
    if paths_size.paths > MANY_PATHS:
        warnings.append(
            f"task {paths_task.task_id}: degree {paths_size.degree} in {paths_size.dim}-D tracks "
            f"{paths_size.paths:,} homotopy paths; expect a long solve"
        )
    return warnings


def plan_from_dict(data: Mapping[str, Any]) -> JobPlan:
    """The inverse of ``JobPlan.to_dict`` (the registry keeps plans so): a rerun renders its
    attempt's script from the plan the run was submitted with, not from today's config."""
    resources = {key: value for key, value in data["resources"].items() if key in _RESOURCE_FIELDS}
    if resources.get("retry") is not None:
        resources["retry"] = RetryPolicy.from_dict(resources["retry"])
    return JobPlan(
        problem=str(data["problem"]),
        description=str(data.get("description") or ""),
        driver=str(data["driver"]),
        tasks=tuple(
            TaskSpec(int(task["index"]), str(task["task_id"]), dict(task["params"]))
            for task in data["tasks"]
        ),
        resources=Resources(**resources),
        config_path=data.get("config_path"),
        config_hash=str(data["config_hash"]),
        extra_files=tuple((str(pair[0]), str(pair[1])) for pair in data.get("extra_files") or ()),
    )


_RESOURCE_FIELDS = frozenset(Resources.__dataclass_fields__)
