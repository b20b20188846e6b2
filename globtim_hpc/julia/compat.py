"""Julia version numbers and ``[compat]`` specifiers, as Pkg reads them.

Only what deploying needs: does the cluster's Julia satisfy the project's ``julia = "..."``
entry? Supported forms (comma-separated unions of them): ``1.10`` and ``^1.10`` (caret),
``~1.10`` (tilde), ``=1.10.2`` (equality), ``>= 1.9``, ``> 1.9``, ``<= 1.11``, ``< 1.11``
(also ``≥``/``≤``), and hyphen ranges ``1.9 - 1.11``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from globtim_hpc.errors import ConfigError

Version = tuple[int, int, int]

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_JULIA_VERSION_LINE = re.compile(r"julia version\s+v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.\-+]*)?")


@dataclass(frozen=True)
class Interval:
    """Versions ``lower <= v < upper``; ``upper`` None means no upper bound."""

    lower: Version
    upper: Version | None

    def contains(self, version: Version) -> bool:
        return self.lower <= version and (self.upper is None or version < self.upper)

    def __str__(self) -> str:
        low = ".".join(map(str, self.lower))
        high = "∞" if self.upper is None else ".".join(map(str, self.upper))
        return f"[{low}, {high})"


@dataclass(frozen=True)
class CompatSpec:
    text: str
    intervals: tuple[Interval, ...]

    def allows(self, version: Version) -> bool:
        return any(interval.contains(version) for interval in self.intervals)


def _parse_parts(text: str, spec: str) -> tuple[int, ...]:
    match = _VERSION.match(text.strip())
    if not match:
        raise ConfigError(
            f"cannot read version '{text.strip()}' in compat entry '{spec}'",
            'write versions as MAJOR[.MINOR[.PATCH]], e.g. julia = "1.10"',
        )
    return tuple(int(part) for part in match.groups() if part is not None)


def _pad(parts: tuple[int, ...]) -> Version:
    padded = (*parts, 0, 0, 0)
    return (padded[0], padded[1], padded[2])


def _bump(parts: tuple[int, ...], index: int) -> Version:
    """The version just above every version that shares ``parts[:index+1]``."""
    bumped = [*parts[:index], parts[index] + 1]
    return _pad(tuple(bumped))


def _caret(parts: tuple[int, ...]) -> Interval:
    # Pkg: the first non-zero given component may not change; all-zero specs bump their last one.
    nonzero = [i for i, part in enumerate(parts) if part != 0]
    index = nonzero[0] if nonzero else len(parts) - 1
    return Interval(_pad(parts), _bump(parts, index))


def _tilde(parts: tuple[int, ...]) -> Interval:
    if len(parts) == 1:
        return Interval(_pad(parts), _bump(parts, 0))
    if len(parts) == 3 and parts[0] == 0 and parts[1] == 0:
        return Interval(_pad(parts), _bump(parts, 2))
    return Interval(_pad(parts), _bump(parts, 1))


def _equal(parts: tuple[int, ...]) -> Interval:
    return Interval(_pad(parts), _bump(parts, len(parts) - 1))


def _one(term: str, spec: str) -> Interval:
    term = term.strip().replace("≥", ">=").replace("≤", "<=")
    if not term:
        raise ConfigError(f"empty term in compat entry '{spec}'", "remove the stray comma")
    if " - " in term:
        low, high = term.split(" - ", 1)
        high_parts = _parse_parts(high, spec)
        return Interval(_pad(_parse_parts(low, spec)), _bump(high_parts, len(high_parts) - 1))
    for operator in (">=", "<=", ">", "<", "=", "^", "~"):
        if term.startswith(operator):
            parts = _parse_parts(term[len(operator) :], spec)
            break
    else:
        return _caret(_parse_parts(term, spec))
    if operator == ">=":
        return Interval(_pad(parts), None)
    if operator == ">":
        return Interval(_bump(parts, len(parts) - 1), None)
    if operator == "<=":
        return Interval((0, 0, 0), _bump(parts, len(parts) - 1))
    if operator == "<":
        return Interval((0, 0, 0), _pad(parts))
    if operator == "=":
        return _equal(parts)
    if operator == "~":
        return _tilde(parts)
    return _caret(parts)


def parse_compat(text: str) -> CompatSpec:
    """Parse a Pkg compat specifier such as ``"1.9, 1.10"`` or ``">=1.9"``."""
    terms = text.split(",")
    return CompatSpec(text=text, intervals=tuple(_one(term, text) for term in terms))


def parse_julia_version(output: str) -> Version:
    """The version in ``julia --version`` output (``julia version 1.10.4``).

    A pre-release such as ``1.11.0-rc1`` counts as ``1.11.0``.
    """
    match = _JULIA_VERSION_LINE.search(output)
    if not match:
        raise ConfigError(
            f"cannot read a Julia version from {output.strip()[:200]!r}",
            "check julia.executable and julia.modules in the cluster profile: "
            "'julia --version' should print 'julia version X.Y.Z'",
        )
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def parse_version(text: str) -> Version:
    """``1.2.1`` (or ``v1.2``) as a version triple; a pre-release counts as its release."""
    core = re.split(r"[-+]", text.strip(), maxsplit=1)[0]
    return _pad(_parse_parts(core, text))


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


# ---- Project.toml ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectInfo:
    """What deploying needs from a Julia Project.toml."""

    name: str | None
    version: str | None
    deps: tuple[str, ...]
    julia_compat: str | None
    uuid: str | None = None
    dep_uuids: dict[str, str] = field(default_factory=dict)
    compat: dict[str, str] = field(default_factory=dict)
    weakdeps: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()


_HEADER = re.compile(r"^\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\s*(?:#.*)?$")
_ASSIGN = re.compile(r"^([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=\s*(.*?)\s*(?:#[^\"]*)?$")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_project_toml_minimal(text: str) -> dict[str, Any]:
    """A reader for the TOML that Pkg writes: ``[section]`` headers and ``key = "value"`` lines.

    Used where ``tomllib`` is missing (Python 3.10). Arrays and inline tables are kept as raw
    text, which is enough for the keys read here.
    """
    data: dict[str, Any] = {}
    table: dict[str, Any] = data
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _HEADER.match(line)
        if header:
            table = data.setdefault(_unquote(header.group(1)), {})
            continue
        assign = _ASSIGN.match(line)
        if assign:
            table[_unquote(assign.group(1))] = _unquote(assign.group(2))
    return data


def _load_toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    return parse_project_toml_minimal(text)


def read_project(path: Path) -> ProjectInfo:
    """Read ``Project.toml`` (or ``JuliaProject.toml``) from a project folder."""
    for name in ("JuliaProject.toml", "Project.toml"):
        candidate = path / name
        if candidate.is_file():
            break
    else:
        raise ConfigError(
            f"no Project.toml in {path}",
            "point --source (or 'source' in the cluster profile) at a GlobTim.jl checkout",
        )
    try:
        data = _load_toml(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {candidate}: {exc}", "fix the TOML syntax") from exc
    deps = _table(data, "deps")
    compat = _table(data, "compat")
    julia = compat.get("julia")
    return ProjectInfo(
        name=data.get("name") if isinstance(data.get("name"), str) else None,
        version=data.get("version") if isinstance(data.get("version"), str) else None,
        deps=tuple(sorted(deps)),
        julia_compat=julia,
        uuid=data.get("uuid") if isinstance(data.get("uuid"), str) else None,
        dep_uuids=deps,
        compat=compat,
        weakdeps=tuple(sorted(_table(data, "weakdeps"))),
        extensions=tuple(sorted(_table(data, "extensions"))),
    )


def _table(data: dict[str, Any], name: str) -> dict[str, str]:
    table = data.get(name)
    if not isinstance(table, dict):
        return {}
    return {str(k): v for k, v in table.items() if isinstance(v, str)}


def check_julia_compat(version: Version, project: ProjectInfo, *, where: str) -> str | None:
    """Raise ConfigError if ``version`` breaks the project's compat; return a note, or None."""
    if project.julia_compat is None:
        return "Project.toml has no [compat] entry for julia; any version is accepted"
    spec = parse_compat(project.julia_compat)
    if not spec.allows(version):
        allowed = " or ".join(str(i) for i in spec.intervals)
        raise ConfigError(
            f"Julia {format_version(version)} on {where} does not satisfy the project's "
            f'[compat] julia = "{project.julia_compat}" (allowed: {allowed})',
            "load a matching Julia module via julia.modules (or set julia.executable) in the "
            "cluster profile",
        )
    return None
