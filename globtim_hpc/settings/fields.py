"""Profile fields and their values: what kinds a field can be, and turning YAML into them.

The profile schema (``settings.profile.SCHEMA``) is a table of ``Field``s; this module owns what
each kind accepts, how paths and ``${VAR}`` are expanded, and the messages for a wrong value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from globtim_hpc.settings.yamlio import KeyPath, YamlDoc, unknown_key_error


@dataclass(frozen=True)
class Field:
    # "str", "int", "float", "bool", "str_list", "path" (local), "remote_path", "path_list", "hosts"
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    nullable: bool = True



HOST_KEYS: dict[str, Field] = {
    "hostname": Field("str", None, "address or DNS name"),
    "user": Field("str", None, "login name"),
    "port": Field("int", None, "TCP port", minimum=1),
    "identity_file": Field("path", None, "private key file"),
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_path(value: str) -> str:
    """Expand ``~``, ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` like a POSIX shell would."""
    return os.path.expanduser(expand_variables(value))


def expand_variables(value: str) -> str:
    """Expand ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` from this machine's environment."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        return match.group(0)

    return _VAR.sub(repl, value)


def type_name(kind: str) -> str:
    return {
        "str": "a string",
        "int": "a whole number",
        "float": "a number",
        "bool": "true or false",
        "str_list": "a list of strings",
        "path": "a path (string)",
        "remote_path": "an absolute path on the cluster",
        "path_list": "a list of paths",
        "hosts": "a mapping of host aliases to settings",
    }[kind]


def coerce(doc: YamlDoc, keypath: KeyPath, spec: Field, value: Any) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise doc.error(keypath, "must not be empty", f"set it to {type_name(spec.kind)}")
    kind = spec.kind
    bad = doc.error(
        keypath,
        f"expected {type_name(kind)}, got {type(value).__name__} {value!r}",
        f"write {type_name(kind)} here",
    )
    if kind in ("str", "path", "remote_path"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad
        text = str(value)
        if "\x00" in text:
            raise doc.error(keypath, "contains a NUL character", "remove it")
        if kind == "path":
            text = expand_path(text)
        elif kind == "remote_path":
            text = expand_variables(text)  # '~' is settled in _build, which knows the transport
        if spec.choices and text not in spec.choices:
            raise doc.error(
                keypath, f"'{text}' is not one of: {', '.join(spec.choices)}", "pick one of those"
            )
        return text
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if spec.minimum is not None and value < spec.minimum:
            raise doc.error(keypath, f"must be at least {spec.minimum:g}, got {value}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if spec.minimum is not None and value < spec.minimum:
            raise doc.error(keypath, f"must be at least {spec.minimum:g}, got {value}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind in ("str_list", "path_list"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise bad
        out = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise doc.error((*keypath, index), f"expected a string, got {item!r}")
            out.append(expand_path(str(item)) if kind == "path_list" else str(item))
        return out
    if kind == "hosts":
        if not isinstance(value, dict):
            raise bad
        hosts: dict[str, dict[str, Any]] = {}
        for alias, settings in value.items():
            if not isinstance(settings, dict):
                raise doc.error((*keypath, alias), "expected a mapping of host settings")
            entry: dict[str, Any] = {}
            for key, item in settings.items():
                if key not in HOST_KEYS:
                    raise unknown_key_error(doc, (*keypath, alias, key), HOST_KEYS)
                entry[key] = coerce(doc, (*keypath, alias, key), HOST_KEYS[key], item)
            hosts[str(alias)] = entry
        return hosts
    raise AssertionError(kind)
