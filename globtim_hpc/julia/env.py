"""How Julia is started on the cluster: module loads, environment, and the command line.

Every command is a ``bash -c`` script assembled from ``quoting.join`` pieces joined by
``&&``; the only fixed text is the prelude that makes ``module`` available in a
non-interactive shell.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from globtim_hpc import quoting
from globtim_hpc.errors import ConfigError
from globtim_hpc.julia.compat import Version, parse_julia_version
from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.transport.base import CommandResult, Transport

# Non-interactive shells on many clusters do not define `module`; these are the usual places
# that do (Environment Modules and Lmod).
MODULE_PRELUDE = (
    "if ! type module >/dev/null 2>&1; then "
    "for f in /etc/profile.d/modules.sh /etc/profile.d/lmod.sh "
    "/usr/share/lmod/lmod/init/bash /usr/share/Modules/init/bash; do "
    'if [ -r "$f" ]; then . "$f"; break; fi; done; fi'
)

TOOL_DIR = ".globtim-hpc"  # inside a deployment: the toolkit's Julia scripts and job files
DEPLOY_ENV_JL = "deploy_env.jl"
VERIFY_ENV_JL = "verify_env.jl"
COMMON_IO_JL = "common_io.jl"  # included by both: JSON and atomic writes


def is_under(path: str, folder: str) -> bool:
    path_n = posixpath.normpath(path)
    folder_n = posixpath.normpath(folder)
    return path_n == folder_n or path_n.startswith(folder_n.rstrip("/") + "/")


def check_depot_location(profile: ClusterProfile) -> None:
    """Refuse a depot in the home folder: it is small and quota-limited on clusters."""
    if profile.home_dir and is_under(profile.depot_path, profile.home_dir):
        raise ConfigError(
            f"the Julia depot {profile.depot_path} is under the home folder {profile.home_dir}",
            "set julia.depot_path to a folder under remote_root (project space), or remove it "
            "to use <remote_root>/depot",
            path=profile.origin,
            key="julia.depot_path",
        )


def shell_script(
    modules: Sequence[str], argv: Sequence[str], env: Mapping[str, str] | None = None
) -> str:
    """``module load A && module load B && env K=V argv...`` as one script for ``bash -c``."""
    pieces = [module_lines(modules)] if modules else []
    command = list(argv)
    if env:
        command = ["env", *(f"{key}={value}" for key, value in sorted(env.items())), *command]
    pieces.append(quoting.join(command))
    return " && ".join(pieces)


def module_lines(modules: Sequence[str]) -> str:
    """``module load A && module load B`` (with the prelude that defines ``module``), or ""."""
    if not modules:
        return ""
    loads = [quoting.join(["module", "load", module]) for module in modules]
    return " && ".join([MODULE_PRELUDE, *loads])


def bash_argv(script: str) -> list[str]:
    return ["bash", "-c", script]


def julia_env(profile: ClusterProfile, code_dir: str, *, offline: bool) -> dict[str, str]:
    env = {"JULIA_DEPOT_PATH": profile.depot_path, "JULIA_PROJECT": code_dir}
    if profile.julia_cpu_target:
        # The same target when precompiling and in jobs: otherwise every job rebuilds caches.
        env["JULIA_CPU_TARGET"] = profile.julia_cpu_target
    if offline:
        env["JULIA_PKG_OFFLINE"] = "true"
    return env


def julia_argv(
    profile: ClusterProfile, code_dir: str, script: str, args: Sequence[str]
) -> list[str]:
    return [
        profile.julia_executable,
        "--color=no",
        "--startup-file=no",
        f"--project={code_dir}",
        script,
        *args,
    ]


def tool_script(code_dir: str, name: str) -> str:
    return posixpath.join(code_dir, TOOL_DIR, name)


def version_command(profile: ClusterProfile) -> list[str]:
    return [profile.julia_executable, "--version"]


def version_argv(profile: ClusterProfile) -> list[str]:
    return bash_argv(shell_script(profile.julia_modules, version_command(profile)))


def remote_julia_version(transport: Transport, profile: ClusterProfile) -> tuple[Version, str]:
    """(version, the line Julia printed), after the profile's module loads."""
    result = transport.run(version_argv(profile), timeout_s=120)
    check_version_command(result, profile, transport.label)
    return parse_version_output(result.stdout_text)


def check_version_command(result: CommandResult, profile: ClusterProfile, where: str) -> None:
    """Raise if ``julia --version`` (or a module load before it) failed in ``result``."""
    result.check(
        f"'{profile.julia_executable} --version' on {where}",
        "check julia.executable and julia.modules in the cluster profile "
        "(try 'module avail julia' on the login node)",
    )


def parse_version_output(printed: str) -> tuple[Version, str]:
    text = printed.strip()
    return parse_julia_version(text), text.splitlines()[0] if text else ""
