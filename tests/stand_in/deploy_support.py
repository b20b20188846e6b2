# THIS IS NOT JULIA. Stand-ins for julia/deploy_env.jl and julia/verify_env.jl, used by the
# `julia` stand-in in this folder (it dispatches on the script's base name).
#
#   deploy_env.jl <result.json>
#       "instantiates and precompiles" the active project (JULIA_PROJECT or --project=DIR):
#       every package of its Manifest.toml (written from [deps] when missing) gets a marker in
#       <depot>/packages/<name>/<slug>/ and <depot>/compiled/v<major.minor>/<name>/; the project
#       itself, when it has a name, gets a compiled marker. Fails like Pkg when the depot is not
#       writable, or when JULIA_PKG_OFFLINE=true and a package is not in the depot yet.
#   verify_env.jl <result.json> <package>...
#       "loads" each package: it must be the project itself or in the Manifest, and installed
#       and compiled in the depot. Reports versions (from the Manifest, or Project.toml for the
#       project itself) and the Manifest's sha256, as julia/verify_env.jl does.
#
# Knob: GLOBTIM_STAND_IN_VERIFY_FAIL=NAME makes loading package NAME fail.
"""Stand-ins for the deployment scripts (see the header comment). Not Julia."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[list[str], int], int]


def _project_dir() -> str:
    project = os.environ.get("JULIA_PROJECT", "")
    for arg in sys.argv[1:]:
        if arg.startswith("--project="):
            project = arg.split("=", 1)[1]
    return os.path.abspath(project or ".")


def _depot() -> str:
    first = os.environ.get("JULIA_DEPOT_PATH", "").split(":")[0]
    return first or os.path.expanduser("~/.julia")


def toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the few shapes Pkg writes are enough
        return _toml_minimal(text)
    return tomllib.loads(text)


def _toml_minimal(text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    table: dict[str, Any] = data
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        array = re.match(r"^\[\[(.+)\]\]$", line)
        header = re.match(r"^\[(.+)\]$", line)
        if array:
            parent = data
            *heads, last = array.group(1).strip().split(".")
            for head in heads:
                parent = parent.setdefault(head, {})
            table = {}
            parent.setdefault(last, []).append(table)
        elif header:
            table = data
            for head in header.group(1).strip().split("."):
                table = table.setdefault(head, {})
        elif "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            table[key.strip('"')] = _toml_value(value)
    return data


def _toml_value(value: str) -> Any:
    """A string, an array of strings or an inline table of strings (what Pkg writes)."""
    if value.startswith("{") and value.endswith("}"):
        pairs = (item.split("=", 1) for item in value[1:-1].split(",") if "=" in item)
        return {k.strip().strip('"'): v.strip().strip('"') for k, v in pairs}
    if value.startswith("[") and value.endswith("]"):
        return [item.strip().strip('"') for item in value[1:-1].split(",") if item.strip()]
    return value.strip('"')


def _read(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return toml_loads(handle.read())


def _manifest_path(project: str) -> str:
    for name in ("JuliaManifest.toml", "Manifest.toml"):
        path = os.path.join(project, name)
        if os.path.isfile(path):
            return path
    return os.path.join(project, "Manifest.toml")


def _manifest_packages(project: str) -> dict[str, str]:
    path = _manifest_path(project)
    if not os.path.isfile(path):
        return {}
    deps = _read(path).get("deps", {})
    out: dict[str, str] = {}
    for name, entries in deps.items():
        entry = entries[0] if isinstance(entries, list) and entries else {}
        out[name] = str(entry.get("version", "0.0.0"))
    return out


def _slug(name: str, version: str) -> str:
    return hashlib.sha256(f"{name}@{version}".encode()).hexdigest()[:5]


def _write_json(path: str, value: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(value, handle, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def _compiled_dir(depot: str, julia_version: str, name: str) -> str:
    major_minor = ".".join(julia_version.split(".")[:2])
    return os.path.join(depot, "compiled", f"v{major_minor}", name)


def _mark(folder: str, name: str, payload: dict[str, Any]) -> None:
    os.makedirs(folder, exist_ok=True)
    _write_json(os.path.join(folder, name), payload)


def _lower_bound(spec: str | None) -> str:
    """The lowest version a compat entry allows: what the stand-in "resolves" to."""
    if not spec:
        return "0.1.0"
    first = spec.split(",")[0].strip().lstrip("^~=>")
    parts = [*first.split("."), "0", "0"][:3]
    return ".".join(parts)


def _resolve(project: str, info: dict[str, Any], julia_version: str) -> dict[str, dict[str, Any]]:
    """Manifest entries for the project's [deps], as Pkg.resolve would choose them.

    Fails like Pkg when a package from a path source is missing or when a julia compat entry
    (the project's own, or a path source's) excludes the running Julia.
    """
    import standin_loading as loading

    def check_julia(name: str, uuid: str, data: dict[str, Any]) -> None:
        spec = (data.get("compat") or {}).get("julia")
        if isinstance(spec, str) and not loading.compat_allows(spec, julia_version):
            short = uuid[:8]
            raise loading.JuliaError(
                "Pkg.Resolve.ResolverError",
                f"Unsatisfiable requirements detected for package {name} [{short}]:\n"
                f" {name} [{short}] log:\n"
                f" ├─{name} [{short}] compat julia = \"{spec}\"\n"
                f" └─restricted by julia compatibility requirements to versions: uninstalled "
                f"— no versions left (julia is {julia_version})",
            )

    sources = info.get("sources") if isinstance(info.get("sources"), dict) else {}
    compat = info.get("compat") if isinstance(info.get("compat"), dict) else {}
    entries: dict[str, dict[str, Any]] = {}
    for name, uuid in sorted((info.get("deps") or {}).items()):
        if name in loading.STDLIBS:
            continue
        source = sources.get(name)
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            folder = os.path.normpath(os.path.join(project, source["path"]))
            toml = os.path.join(folder, "Project.toml")
            if not os.path.isfile(toml):
                raise loading.JuliaError(
                    "Pkg.Types.PkgError", f"expected package `{name}` to exist at path `{folder}`"
                )
            data = _read(toml)
            check_julia(name, str(uuid), data)
            entry: dict[str, Any] = {"uuid": uuid, "path": source["path"],
                                     "version": str(data.get("version", "0.0.0"))}
            if data.get("weakdeps"):
                entry["weakdeps"] = sorted(data["weakdeps"])
            if data.get("extensions"):
                entry["extensions"] = dict(data["extensions"])
        else:
            entry = {"uuid": uuid, "version": _lower_bound(compat.get(name))}
        entries[name] = entry
    check_julia(str(info.get("name") or "julia"), str(info.get("uuid") or "1222c4b2"), info)
    return entries


def _write_manifest(path: str, julia_version: str, entries: dict[str, dict[str, Any]]) -> None:
    lines = ["# stand-in manifest (written by the julia stand-in, not Pkg)\n",
             f'julia_version = "{julia_version}"\n', 'manifest_format = "2.0"\n']
    for name, entry in sorted(entries.items()):
        lines.append(f"\n[[deps.{name}]]\n")
        for key in ("path", "uuid", "version"):
            if key in entry:
                lines.append(f'{key} = "{entry[key]}"\n')
        if "weakdeps" in entry:
            lines.append("weakdeps = [" + ", ".join(f'"{w}"' for w in entry["weakdeps"]) + "]\n")
        if "extensions" in entry:
            lines.append(f"\n    [deps.{name}.extensions]\n")
            for ext, trigger in sorted(entry["extensions"].items()):
                lines.append(f'    {ext} = "{trigger}"\n')
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)


def make_deploy_env(julia_version: str) -> Handler:
    def deploy_env(args: list[str], threads: int) -> int:
        import standin_loading as loading

        started = time.monotonic()
        project, depot = _project_dir(), _depot()
        result: dict[str, Any] = {
            "julia_version": julia_version,
            "project": project,
            "depot": os.environ.get("JULIA_DEPOT_PATH", depot),
            "hostname": socket.gethostname(),
            "stand_in": True,
        }
        ok = True
        try:
            info = _read(os.path.join(project, "Project.toml"))
            manifest = _manifest_path(project)
            if not os.path.isfile(manifest):
                _write_manifest(manifest, julia_version, _resolve(project, info, julia_version))
            packages = _manifest_packages(project)
            offline = os.environ.get("JULIA_PKG_OFFLINE", "") == "true"
            for name, version in sorted(packages.items()):
                installed = os.path.join(depot, "packages", name, _slug(name, version))
                if offline and not os.path.isdir(installed):
                    raise RuntimeError(f"Pkg is in offline mode and {name} {version} is not installed")
                _mark(installed, "stand_in_installed.json", {"name": name, "version": version})
                _mark(_compiled_dir(depot, julia_version, name), "stand_in_compiled.json",
                      {"name": name, "version": version})
            if isinstance(info.get("name"), str):
                _mark(_compiled_dir(depot, julia_version, info["name"]), "stand_in_compiled.json",
                      {"name": info["name"], "version": info.get("version")})
            result["packages"] = {k: v for k, v in packages.items() if k in (info.get("deps") or {})}
            with open(manifest, "rb") as handle:
                result["manifest_sha256"] = hashlib.sha256(handle.read()).hexdigest()
        except loading.JuliaError as exc:
            ok = False
            result["error"] = exc.message
            print(f"ERROR: {exc.message}", file=sys.stderr)
        except (OSError, RuntimeError, ValueError) as exc:
            ok = False
            result["error"] = f"{type(exc).__name__}: {exc}"
            print(f"ERROR: {result['error']}", file=sys.stderr)
        result["ok"] = ok
        result["elapsed_s"] = round(time.monotonic() - started, 3)
        if args:
            _write_json(args[0], result)
        return 0 if ok else 1

    return deploy_env


def _verify_args(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    packages: list[str] = []
    extensions: list[tuple[str, str]] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--extension":
            owner, _, ext = next(rest, ":").partition(":")
            extensions.append((owner, ext))
        else:
            packages.append(arg)
    return packages, extensions


def _wait_for_gate(gate: str, limit_s: float = 600.0) -> None:
    """GLOBTIM_STAND_IN_VERIFY_GATE=PATH: verification runs only once PATH is gone, so a test
    can keep a verification job running while it submits against its deployment."""
    deadline = time.monotonic() + limit_s
    while gate and os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.5)


def make_verify_env(julia_version: str) -> Handler:
    def verify_env(args: list[str], threads: int) -> int:
        import standin_loading as loading

        if not args:
            print("usage: verify_env.jl RESULT.json PACKAGE... [--extension PKG:EXT]...",
                  file=sys.stderr)
            return 2
        _wait_for_gate(os.environ.get("GLOBTIM_STAND_IN_VERIFY_GATE", ""))
        project, depot = _project_dir(), _depot()
        env = loading.Environment.load(project)
        failing = os.environ.get("GLOBTIM_STAND_IN_VERIFY_FAIL", "")
        names, extensions = _verify_args(args[1:])
        packages: dict[str, Any] = {}
        loaded: set[str] = set()
        for name in names:
            try:
                if name == failing:
                    raise loading.JuliaError("ErrorException", f"stand-in told to fail loading {name}")
                env.require(name)
                if name not in loading.STDLIBS and not os.path.isdir(
                    _compiled_dir(depot, julia_version, name)
                ):
                    raise loading.JuliaError(
                        "ErrorException", f"{name} is not precompiled and JULIA_PKG_OFFLINE=true"
                    )
            except loading.JuliaError as exc:
                packages[name] = {"loaded": False, "error": exc.message}
                continue
            loaded.add(name)
            packages[name] = {"loaded": True, "version": env.version(name)}
        found: dict[str, Any] = {}
        for owner, ext in extensions:
            if ext == failing or owner not in loaded or not env.extension_loads(owner, ext, loaded):
                found[ext] = {
                    "loaded": False,
                    "package": owner,
                    "error": f"Base.get_extension({owner}, :{ext}) returned nothing: the "
                    f"extension did not load",
                }
            else:
                found[ext] = {"loaded": True, "package": owner}
        manifest_file = _manifest_path(project)
        sha = None
        if os.path.isfile(manifest_file):
            with open(manifest_file, "rb") as handle:
                sha = hashlib.sha256(handle.read()).hexdigest()
        ok = all(entry["loaded"] for entry in (*packages.values(), *found.values()))
        for name, entry in (*packages.items(), *found.items()):
            if not entry["loaded"]:
                print(f"cannot load {name}: {entry['error']}", file=sys.stderr)
        _write_json(args[0], {
            "ok": ok,
            "julia_version": julia_version,
            "hostname": socket.gethostname(),
            "project": project,
            "depot": os.environ.get("JULIA_DEPOT_PATH", depot),
            "offline": os.environ.get("JULIA_PKG_OFFLINE", "") == "true",
            "manifest_sha256": sha,
            "packages": packages,
            "extensions": found,
            "stand_in": True,
        })
        return 0 if ok else 1

    return verify_env


def scripts(*, julia_version: str) -> dict[str, Handler]:
    """Entries for the stand-in's dispatch table (script base name -> handler)."""
    return {
        "deploy_env.jl": make_deploy_env(julia_version),
        "verify_env.jl": make_verify_env(julia_version),
    }
