"""Parameter declarations of a problem and the checking of one value against its declaration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from globtim_hpc.settings.yamlio import KeyPath, YamlDoc, suggest, unknown_key_error

PARAM_TYPES = ("int", "float", "str", "bool", "float_list", "path")
SPEC_KEYS = (
    "type",
    "default",
    "required",
    "nullable",
    "min",
    "max",
    "choices",
    "length",
    "sweep",
    "description",
)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False  # no default: the job config must give a value
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    length: int | None = None  # float_list only
    sweepable: bool = True

    @property
    def is_list_valued(self) -> bool:
        return self.type == "float_list"

    def allowed(self) -> str:
        """The allowed values in words, for error hints and listings."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = [
            {"float_list": "a list of numbers", "path": "a file path"}.get(self.type, self.type)
        ]
        if self.length is not None:
            parts.append(f"of length {self.length}")
        if self.minimum is not None or self.maximum is not None:
            low = "-inf" if self.minimum is None else f"{self.minimum:g}"
            high = "inf" if self.maximum is None else f"{self.maximum:g}"
            parts.append(f"in [{low}, {high}]")
        if self.nullable:
            parts.append("or null")
        return " ".join(parts)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_spec(doc: YamlDoc, keypath: KeyPath, name: str, raw: Any) -> ParamSpec:
    """One entry of a problem's ``parameters:`` mapping."""
    if not isinstance(raw, Mapping):
        raise doc.error(
            keypath,
            "a parameter declaration must be a mapping",
            "give at least 'type' and 'description'",
        )
    for key in raw:
        if key not in SPEC_KEYS:
            raise unknown_key_error(doc, (*keypath, str(key)), SPEC_KEYS)
    ptype = raw.get("type")
    if ptype not in PARAM_TYPES:
        raise doc.error(
            (*keypath, "type"),
            f"unknown parameter type {ptype!r}",
            "types: " + ", ".join(PARAM_TYPES),
        )
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise doc.error(
            (*keypath, "description"),
            "every parameter needs a description",
            "add 'description: ...'",
        )
    bounds: dict[str, float | None] = {}
    for key in ("min", "max"):
        value = raw.get(key)
        if value is not None and not _number(value):
            raise doc.error((*keypath, key), f"'{key}' must be a number", "e.g. 'min: 0'")
        bounds[key] = None if value is None else float(value)
    choices = raw.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices)
    ):
        raise doc.error(
            (*keypath, "choices"), "'choices' must be a non-empty list of strings", None
        )
    length = raw.get("length")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 1
    ):
        raise doc.error(
            (*keypath, "length"), "'length' must be a positive integer", "e.g. 'length: 4'"
        )
    spec = ParamSpec(
        name=name,
        type=ptype,
        description=description.strip(),
        required="default" not in raw or bool(raw.get("required", False)),
        nullable=bool(raw.get("nullable", False)),
        minimum=bounds["min"],
        maximum=bounds["max"],
        choices=tuple(choices) if choices else None,
        length=length,
        sweepable=bool(raw.get("sweep", True)),
    )
    if "default" in raw and raw["default"] is not None:
        # Defaults are checked like user values so a broken problem file fails at load time.
        default = check_value(spec, raw["default"], doc, (*keypath, "default"), None)
        spec = replace(spec, default=default)
    elif "default" in raw and not spec.nullable:
        raise doc.error(
            (*keypath, "default"),
            "default is null but the parameter is not nullable",
            "add 'nullable: true'",
        )
    return spec


def _type_error(
    doc: YamlDoc, keypath: KeyPath, spec: ParamSpec, value: Any, extra: str = ""
) -> Exception:
    shown = "a list" if isinstance(value, list) else f"{type(value).__name__} {value!r}"
    return doc.error(
        keypath,
        f"expected {spec.allowed()}, got {shown}{extra}",
        f"'{spec.name}': {spec.description}",
    )


def _check_range(doc: YamlDoc, keypath: KeyPath, spec: ParamSpec, value: float) -> None:
    if not math.isfinite(value):
        raise doc.error(keypath, f"{value} is not a finite number", f"use a value {spec.allowed()}")
    too_low = spec.minimum is not None and value < spec.minimum
    too_high = spec.maximum is not None and value > spec.maximum
    if too_low or too_high:
        raise doc.error(
            keypath, f"{value:g} is out of range for '{spec.name}'", f"use a value {spec.allowed()}"
        )


def check_value(
    spec: ParamSpec, value: Any, doc: YamlDoc, keypath: KeyPath, base_dir: Path | None
) -> Any:
    """One (non-sweep) value, checked and normalised (ints for float parameters become floats)."""
    if value is None:
        if spec.nullable:
            return None
        raise doc.error(keypath, f"'{spec.name}' cannot be null", f"give {spec.allowed()}")
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(doc, keypath, spec, value)
        _check_range(doc, keypath, spec, float(value))
        return value
    if spec.type == "float":
        if not _number(value):
            raise _type_error(doc, keypath, spec, value)
        _check_range(doc, keypath, spec, float(value))
        return float(value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise _type_error(doc, keypath, spec, value, " (write true or false)")
        return value
    if spec.type == "str":
        if not isinstance(value, str):
            raise _type_error(doc, keypath, spec, value)
        if spec.choices and value not in spec.choices:
            near = suggest(value, spec.choices)
            hint = (
                (f"did you mean '{near}'? " if near else "") + "choices: " + ", ".join(spec.choices)
            )
            raise doc.error(keypath, f"'{value}' is not a valid choice for '{spec.name}'", hint)
        return value
    if spec.type == "float_list":
        if not isinstance(value, list) or not all(_number(v) for v in value):
            raise _type_error(doc, keypath, spec, value)
        if spec.length is not None and len(value) != spec.length:
            raise doc.error(
                keypath,
                f"'{spec.name}' needs {spec.length} numbers, got {len(value)}",
                f"give {spec.allowed()}",
            )
        for index, item in enumerate(value):
            _check_range(doc, (*keypath, index), spec, float(item))
        return [float(v) for v in value]
    # path: must exist on this machine; relative paths are relative to the file naming them
    if not isinstance(value, str) or not value.strip():
        raise _type_error(doc, keypath, spec, value)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise doc.error(
            keypath,
            f"file not found: {path}",
            "give the path of an existing file (relative paths are relative to the config file)",
        )
    return str(path.resolve())
