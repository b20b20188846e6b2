"""YAML loading that remembers where every key stood, so errors can name file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globtim_hpc.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """A parsed YAML mapping plus the 1-based (line, column) of every key and list item in it."""

    path: str
    data: dict[str, Any]
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, keypath: KeyPath) -> tuple[int | None, int | None]:
        """The position of ``keypath``, or of its nearest ancestor that has one."""
        probe = tuple(keypath)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return (None, None)

    def error(self, keypath: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        line, column = self.where(keypath)
        return ConfigError(
            message,
            hint,
            path=self.path,
            key=dotted(keypath) or None,
            line=line,
            column=column,
        )


def dotted(keypath: Iterable[str | int]) -> str:
    out = ""
    for part in keypath:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _walk(node: Any, prefix: KeyPath, positions: dict[KeyPath, tuple[int, int]]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            path = (*prefix, key)
            positions[path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, path, positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            positions[path] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, path, positions)


def parse_yaml_text(text: str, path: str) -> YamlDoc:
    """Parse YAML text that must be a mapping (an empty document is an empty mapping)."""
    import yaml

    try:
        loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        node = yaml.compose(text, Loader=loader_cls)
        data = yaml.load(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error: {problem}",
            "fix the YAML at that line (indentation, a missing ':' or an unclosed quote are usual)",
            path=path,
            line=line,
            column=column,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=path) from None
    if data is None:
        return YamlDoc(path=path, data={})
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys to values, not a {type(data).__name__}",
            "write 'key: value' lines at the top level",
            path=path,
            line=1,
        )
    positions: dict[KeyPath, tuple[int, int]] = {}
    if node is not None:
        _walk(node, (), positions)
    for key in data:
        if not isinstance(key, str):
            line, column = positions.get((str(key),), (None, None))
            raise ConfigError(
                f"key {key!r} is not a string", "quote the key", path=path, line=line, column=column
            )
    return YamlDoc(path=path, data=data, positions=positions)


def load_yaml_file(path: Path) -> YamlDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found",
            "check the path, or list the shipped files in configs/",
            path=str(path),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save the file as UTF-8",
            path=str(path),
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    return parse_yaml_text(text, str(path))


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid key to a mistyped one, if any is close enough to be a likely typo."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_error(doc: YamlDoc, keypath: KeyPath, valid: Iterable[str]) -> ConfigError:
    valid_sorted = sorted(valid)
    bad = str(keypath[-1])
    near = suggest(bad, valid_sorted)
    hint = f"did you mean '{near}'? " if near else ""
    hint += "valid keys here: " + ", ".join(valid_sorted)
    return doc.error(keypath, f"unknown key '{bad}'", hint)
