# THIS IS NOT JULIA. How the `julia` stand-in decides, as Julia's code loading would, whether a
# script's `using`/`import` lines can be satisfied by the active project.
#
# Julia (base/loading.jl, `require`) lets Main load a package only when the active project's
# Project.toml lists it in [deps] (or it is the project itself), or it is in the standard
# library; it must then be recorded in the Manifest and installed in the depot. The active
# project is JULIA_PROJECT (or --project=DIR); without one, the default environment
# <depot>/environments/v<major>.<minor>/. Error texts are Julia's own (base/loading.jl):
#   ArgumentError: Package X not found in current path.
#   - Run `import Pkg; Pkg.add("X")` to install the X package.
#   ArgumentError: Package X [uuid] is required but does not seem to be installed:
#    - Run `Pkg.instantiate()` to install all recorded dependencies.
#
# The pretend Julia version is GLOBTIM_STAND_IN_JULIA_VERSION (default 1.12.1).
"""Package resolution for the julia stand-in (see the header comment). Not Julia."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_JULIA_VERSION = "1.12.1"

# The standard library of Julia 1.12 (its stdlib/ folder): loadable from any project.
STDLIBS = frozenset(["ArgTools", "Artifacts", "Base64", "CRC32c", "Dates", "DelimitedFiles", "Distributed", "Downloads", "FileWatching", "Future", "InteractiveUtils", "JuliaSyntaxHighlighting", "LazyArtifacts", "LibCURL", "LibGit2", "Libdl", "LinearAlgebra", "Logging", "Markdown", "Mmap", "NetworkOptions", "Pkg", "Printf", "Profile", "REPL", "Random", "SHA", "Serialization", "SharedArrays", "Sockets", "SparseArrays", "Statistics", "StyledStrings", "SuiteSparse", "TOML", "Tar", "Test", "UUIDs", "Unicode"])
BUILTIN_MODULES = frozenset({"Base", "Core", "Main"})


class JuliaError(Exception):
    """An exception as Julia would throw it: its type name and its showerror text."""

    def __init__(self, julia_type: str, message: str) -> None:
        super().__init__(message)
        self.julia_type = julia_type
        self.message = message


def julia_version() -> str:
    return os.environ.get("GLOBTIM_STAND_IN_JULIA_VERSION", "").strip() or DEFAULT_JULIA_VERSION


def version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.split(r"[-+]", text.strip().lstrip("v"), maxsplit=1)[0].split(".")]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


# ---- compat specifiers, as Pkg reads them (caret is the default) --------------------------


def _bump(parts: list[int], index: int) -> tuple[int, int, int]:
    out = [*parts[:index], parts[index] + 1]
    out += [0] * (3 - len(out))
    return out[0], out[1], out[2]


def _interval(term: str) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
    term = term.strip()
    op = ""
    for candidate in (">=", "=", "^", "~"):
        if term.startswith(candidate):
            op, term = candidate, term[len(candidate):].strip()
            break
    parts = [int(p) for p in term.split(".")]
    low = version_tuple(term)
    if op == ">=":
        return low, None
    if op == "=":
        return low, _bump(parts, len(parts) - 1)
    if op == "~":
        return low, _bump(parts, 0 if len(parts) == 1 else 1)
    nonzero = [i for i, p in enumerate(parts) if p != 0]
    return low, _bump(parts, nonzero[0] if nonzero else len(parts) - 1)


def compat_allows(spec: str, version: str) -> bool:
    v = version_tuple(version)
    for term in spec.split(","):
        low, high = _interval(term)
        if low <= v and (high is None or v < high):
            return True
    return False


# ---- projects ------------------------------------------------------------------------------


def read_toml(path: str) -> dict[str, Any]:
    import deploy_support  # the TOML reader shared with the deployment scripts

    with open(path, encoding="utf-8") as handle:
        return deploy_support.toml_loads(handle.read())


def depots() -> list[str]:
    entries = [p for p in os.environ.get("JULIA_DEPOT_PATH", "").split(":") if p]
    return entries or [os.path.expanduser("~/.julia")]


def active_project_dir(argv: list[str]) -> str | None:
    """JULIA_PROJECT, overridden by --project=DIR; None means the default environment."""
    project = os.environ.get("JULIA_PROJECT", "")
    for arg in argv:
        if arg.startswith("--project="):
            project = arg.split("=", 1)[1]
    if not project:
        major, minor, _ = version_tuple(julia_version())
        for depot in depots():
            folder = os.path.join(depot, "environments", f"v{major}.{minor}")
            if os.path.isfile(os.path.join(folder, "Project.toml")):
                return folder
        return None
    project = os.path.abspath(project)
    return os.path.dirname(project) if project.endswith(".toml") else project


def installed_slug(name: str, version: str) -> str:
    return hashlib.sha256(f"{name}@{version}".encode()).hexdigest()[:5]


@dataclass
class Environment:
    """The active project as code loading sees it."""

    folder: str | None
    project: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)
    has_manifest: bool = False

    @classmethod
    def load(cls, folder: str | None) -> Environment:
        env = cls(folder)
        if folder is None or not os.path.isfile(os.path.join(folder, "Project.toml")):
            return env
        env.project = read_toml(os.path.join(folder, "Project.toml"))
        for name in ("JuliaManifest.toml", "Manifest.toml"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                env.has_manifest = True
                for pkg, entries in (read_toml(path).get("deps") or {}).items():
                    if isinstance(entries, list) and entries:
                        env.manifest[pkg] = entries[0]
                break
        return env

    @property
    def deps(self) -> dict[str, str]:
        deps = self.project.get("deps")
        return deps if isinstance(deps, dict) else {}

    def source_dir(self, name: str) -> str | None:
        """A package's own folder when it comes from a path (its Project.toml is there)."""
        if self.folder is None:
            return None
        if name == self.project.get("name"):
            return self.folder
        path = self.manifest.get(name, {}).get("path")
        return os.path.normpath(os.path.join(self.folder, path)) if isinstance(path, str) else None

    def package_project(self, name: str) -> dict[str, Any]:
        folder = self.source_dir(name)
        if folder and os.path.isfile(os.path.join(folder, "Project.toml")):
            return read_toml(os.path.join(folder, "Project.toml"))
        return {}

    def version(self, name: str) -> str | None:
        if name in STDLIBS:
            return None
        own = self.package_project(name).get("version")
        if isinstance(own, str):
            return own
        version = self.manifest.get(name, {}).get("version")
        return str(version) if version is not None else None

    def require(self, name: str) -> None:
        """Raise what Julia's `using name` would raise in Main, or return."""
        if name in BUILTIN_MODULES or name in STDLIBS:
            return
        if name == self.project.get("name"):
            return
        if name not in self.deps:
            raise JuliaError(
                "ArgumentError",
                f"ArgumentError: Package {name} not found in current path.\n"
                f'- Run `import Pkg; Pkg.add("{name}")` to install the {name} package.',
            )
        entry = self.manifest.get(name)
        installed = entry is not None and (
            "path" in entry
            or any(
                os.path.isdir(os.path.join(depot, "packages", name,
                                           installed_slug(name, str(entry.get("version")))))
                for depot in depots()
            )
        )
        if not installed:
            raise JuliaError(
                "ArgumentError",
                f"ArgumentError: Package {name} [{self.deps[name]}] is required but does not "
                "seem to be installed:\n - Run `Pkg.instantiate()` to install all recorded "
                "dependencies.\n",
            )

    def extension_loads(self, package: str, extension: str, loaded: set[str]) -> bool:
        """Does `Base.get_extension(package, extension)` return a module after `loaded`?"""
        table = self.package_project(package).get("extensions")
        if not isinstance(table, dict) or extension not in table:
            return False
        triggers = table[extension]
        triggers = [triggers] if isinstance(triggers, str) else list(triggers)
        folder = self.source_dir(package)
        source = folder and (
            os.path.isfile(os.path.join(folder, "ext", f"{extension}.jl"))
            or os.path.isfile(os.path.join(folder, "ext", extension, f"{extension}.jl"))
        )
        return bool(source) and all(t in loaded for t in triggers)


# ---- the script's using/import lines ------------------------------------------------------

_LOAD = re.compile(r"^\s*(?:using|import)\s+([^#\n]+)", re.M)
_INCLUDE = re.compile(r'include\(\s*joinpath\(\s*@__DIR__\s*,\s*"([^"]+)"\s*\)\s*\)')
_TRIPLE = re.compile(r'"""(?:.|\n)*?"""')


def loaded_packages(script: str) -> list[str]:
    """Top-level package names of every using/import in script and the files it includes
    from its own folder, in order of appearance."""
    seen: list[str] = []
    todo = [os.path.abspath(script)]
    visited: set[str] = set()
    while todo:
        path = todo.pop(0)
        if path in visited or not os.path.isfile(path):
            continue
        visited.add(path)
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = _TRIPLE.sub("", handle.read())
        code = "\n".join(line.split("#", 1)[0] if "#" in line else line for line in text.splitlines())
        for match in _LOAD.finditer(code):
            clause = match.group(1).split(":", 1)
            names = [clause[0]] if len(clause) == 2 else clause[0].split(",")
            for item in names:
                name = item.strip().split(" as ")[0].split(".")[0].strip()
                if name and not item.strip().startswith(".") and name not in seen:
                    seen.append(name)
        for match in _INCLUDE.finditer(code):
            todo.append(os.path.join(os.path.dirname(path), match.group(1)))
    return seen
