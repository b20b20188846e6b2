"""The run environment: the Julia project that jobs of one deployment run in.

Globtim 1.2.x keeps HomotopyContinuation as a weak dependency (its ``[weakdeps]`` and
``[extensions] GlobtimHomotopyContinuationExt``), and Julia lets a script load only what the
active project's ``[deps]`` hold (plus the standard library). So the deployed Globtim checkout
cannot itself be the active project of the driver: the driver loads HomotopyContinuation,
DynamicPolynomials, DataFrames and CSV too. The run environment is a project of its own,
``<deployment>/.globtim-hpc/runenv/``, whose ``[deps]`` hold exactly what the driver loads, with
Globtim taken from the deployed tree through ``[sources]`` (Julia 1.11+). Deploying instantiates
it (writing its ``Manifest.toml``), precompiles it, and verifies it offline; jobs run with
``JULIA_PROJECT`` set to it.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from globtim_hpc.errors import ConfigError
from globtim_hpc.julia.compat import ProjectInfo, parse_compat, read_project

RUNENV_DIR = "runenv"  # inside the deployment's tool folder (.globtim-hpc)
GLOBTIM = "Globtim"
SOLVER_EXTENSION = "GlobtimHomotopyContinuationExt"
# The Globtim releases whose API julia/globtim_api.json describes (checked at 527db3b9, v1.2.1).
SUPPORTED_GLOBTIM = "1.2"
# The julia compat of those releases (Globtim 1.2.1 Project.toml [compat] julia = "1.12"); the
# deployed tree's own [compat] decides when there is one.
SUPPORTED_GLOBTIM_JULIA = "1.12"


@dataclass(frozen=True)
class Package:
    name: str
    uuid: str
    compat: str


# Every package julia/globtim_driver.jl loads besides the standard library, in the order it
# loads them (tests/unit/test_globtim_api.py checks this list against the driver's `using`
# lines). UUIDs and compat bounds are those of Globtim 1.2.1's own Project.toml.
DRIVER_PACKAGES: tuple[Package, ...] = (
    Package("DataFrames", "a93c6f00-e57d-5684-b7b6-d8193f3e46c0", "1.6"),
    Package("CSV", "336ed68f-0bac-5ca0-87d4-7b16caf5d00b", "0.10"),
    Package("DynamicPolynomials", "7c1d4256-1411-5781-91ec-d7bc3513ac07", "0.6"),
    Package("HomotopyContinuation", "f213a82b-91d6-5c5d-acf7-10f1c761b327", "2"),
)
DRIVER_STDLIBS = ("Dates",)


def driver_package_names() -> list[str]:
    return [p.name for p in DRIVER_PACKAGES] + [GLOBTIM]


def check_globtim_project(project: ProjectInfo) -> None:
    """Refuse a source tree that is not a Globtim release the driver was checked against."""
    if project.name != GLOBTIM or not project.uuid:
        raise ConfigError(
            f"the source's Project.toml names the package {project.name!r}, not {GLOBTIM}",
            "point --source (or 'source' in the cluster profile) at a Globtim.jl checkout",
        )
    from globtim_hpc.julia.compat import parse_version

    if project.version is None or not parse_compat(SUPPORTED_GLOBTIM).allows(
        parse_version(project.version)
    ):
        raise ConfigError(
            f"Globtim {project.version} is not a version this toolkit supports "
            f"(supported: {SUPPORTED_GLOBTIM}.x, whose API julia/globtim_api.json describes)",
            f"check out a Globtim {SUPPORTED_GLOBTIM}.x release (git checkout v1.2.1)",
        )


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def project_toml(globtim: ProjectInfo, extra: ProjectInfo | None = None) -> str:
    """The run environment's Project.toml for a deployed Globtim tree.

    ``extra`` is a user's own project (for a ``custom`` script that loads more packages): its
    ``[deps]`` and ``[compat]`` are added; the driver's own entries win on a clash.
    """
    deps = {GLOBTIM: globtim.uuid or ""}
    compat = {GLOBTIM: SUPPORTED_GLOBTIM}
    if extra is not None:
        deps.update({k: v for k, v in extra.dep_uuids.items() if k not in deps})
        compat.update({k: v for k, v in extra.compat.items() if k != "julia"})
    for package in DRIVER_PACKAGES:
        deps[package.name] = package.uuid
        compat[package.name] = package.compat
    if globtim.julia_compat:
        compat["julia"] = globtim.julia_compat
    lines = [
        "# The run environment of one globtim-hpc deployment: what julia/globtim_driver.jl",
        "# loads. Globtim comes from the deployed tree; Manifest.toml is written by",
        "# Pkg.instantiate when deploying.",
        "[deps]",
        *(f"{name} = {_toml_string(uuid)}" for name, uuid in sorted(deps.items())),
        "",
        "[sources]",
        # The deployed tree is two levels up: <deployment>/.globtim-hpc/runenv.
        f"{GLOBTIM} = {{path = {_toml_string('../..')}}}",
        "",
        "[compat]",
        *(f"{name} = {_toml_string(spec)}" for name, spec in sorted(compat.items())),
        "",
    ]
    return "\n".join(lines)


def runenv_dir(code_dir: str, tool_dir: str) -> str:
    return posixpath.join(code_dir, tool_dir, RUNENV_DIR)


def read_extra_project(path: Path | None) -> ProjectInfo | None:
    if path is None:
        return None
    folder = path if path.is_dir() else path.parent
    return read_project(folder)


def manifest_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()
