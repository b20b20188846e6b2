"""A deployment's environment step on the login node, in one remote command.

One ``bash -c`` script, after the profile's module loads:

1. ``julia --version`` (the laptop checks it against ``[compat] julia`` before it reads further);
2. ``Pkg.instantiate`` + ``Pkg.precompile`` of the run environment (julia/deploy_env.jl);
3. when the cluster already keeps a verification of this very environment (below), a load check
   of the new deployment on the login node, offline (julia/verify_env.jl).

Each part's result comes back on stdout in a section of its own, so the step needs no file
reads afterwards. Julia's own output goes to stderr.

**Verified environments.** A verification job proves that a run environment loads offline on a
compute node: that the depot is visible there, nothing is fetched lazily, and the caches suit
the node. Those are properties of the environment, which the run environment's Manifest.toml
pins (Globtim comes from ``path = "../.."``, so the manifest does not name the deployment; and
each deployment resolves a new one, whose ``julia_version`` names the Julia that made it), and
of the settings below. Where a verification job succeeded, the deployment writes
``<code root>/.verified/<manifest sha256>-<settings digest>.json``. A later deployment with the
same manifest and settings, whose own code loads on the login node, takes that verification
over instead of queueing a job: a change to Globtim's source costs no job, while a change to a
package version, Julia, the modules, the depot, the CPU target, the partition or the toolkit's
verification script runs one. ``--force`` always runs one.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from globtim_hpc import quoting
from globtim_hpc.errors import RemoteCommandError
from globtim_hpc.julia import env as juliaenv
from globtim_hpc.julia.compat import Version
from globtim_hpc.registry.records import utc_now
from globtim_hpc.settings.profile import ClusterProfile
from globtim_hpc.transport.base import CommandResult, Transport
from globtim_hpc.workflows.verification import loaded_versions

VERIFIED_DIR = ".verified"  # under the code root
_SECTION = re.compile(r"^globtim-section ([a-z_]+)(?: (-?\d+))?$")

# Each section header starts on a line of its own: a file printed before it may lack a newline.
_SCRIPT = """
printf 'globtim-section version\\n'
{version} || exit $?
mkdir -p -- {depot} || exit $?
{deploy_env} 1>&2
status=$?
printf '\\nglobtim-section env %s\\n' "$status"
cat -- {env_result} 2>/dev/null
[ "$status" -eq 0 ] || exit "$status"
mkdir -p -- {cache_dir} || exit 0
[ {lookup} = yes ] || exit 0
manifest={manifest}
[ -f "$manifest" ] || exit 0
sha=$(sha256sum < "$manifest") || exit 0
cache={cache_dir}/"${{sha%% *}}"{cache_suffix}
[ -f "$cache" ] || exit 0
printf '\\nglobtim-section verified\\n'
cat -- "$cache"
{verify_env} 1>&2
status=$?
printf '\\nglobtim-section login_check %s\\n' "$status"
cat -- {login_result} 2>/dev/null
exit 0
"""


@dataclass(frozen=True)
class Section:
    status: int | None
    text: str

    def json(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.text)
        except ValueError:  # json's decode error is one
            return None
        return loaded if isinstance(loaded, dict) else None


@dataclass(frozen=True)
class LoginStep:
    """What the environment step's one command printed."""

    result: CommandResult
    sections: dict[str, Section]

    def version(self, profile: ClusterProfile, where: str) -> tuple[Version, str]:
        printed = self.sections.get("version")
        if printed is None or not printed.text.strip():
            juliaenv.check_version_command(self.result, profile, where)
        return juliaenv.parse_version_output(printed.text if printed else "")

    def env_result(self, where: str) -> dict[str, Any]:
        """deploy_env.jl's report; raises when Pkg failed."""
        env = self.sections.get("env")
        reported = (env.json() if env else None) or {}
        if env is None or env.status != 0 or not reported.get("ok"):
            raise RemoteCommandError(
                f"Pkg.instantiate/Pkg.precompile failed on {where}: "
                f"{reported.get('error') or 'no result written'}",
                "check that the depot is writable (deploy_julia.py --check) and that the "
                "login node reaches the package servers",
                exit_status=env.status if env else self.result.exit_status,
                output_tail=self.result.output_tail(30),
            )
        return reported

    def inherited_verification(self, manifest_sha256: str | None, salt: str) -> dict[str, Any] | None:
        """The verification this deployment takes over, or None when a job must verify it."""
        cached = self.sections.get("verified")
        check = self.sections.get("login_check")
        if cached is None or check is None or check.status != 0:
            return None
        entry, loaded = cached.json(), check.json()
        if not entry or not loaded or not loaded.get("ok"):
            return None
        verification = entry.get("verification")
        if (
            not isinstance(verification, dict)
            or verification.get("ok") is not True
            or entry.get("salt") != salt
            or not manifest_sha256
            or entry.get("manifest_sha256") != manifest_sha256
            or loaded.get("manifest_sha256") != manifest_sha256
        ):
            return None
        return {
            **verification,
            "pending": False,
            "inherited_from": {
                "deploy_id": entry.get("deploy_id"),
                "job_id": verification.get("job_id"),
                "verified_at": entry.get("verified_at"),
            },
            "login_check": {
                "ok": True,
                "hostname": loaded.get("hostname"),
                "julia_version": loaded.get("julia_version"),
                "offline": loaded.get("offline"),
            },
            **loaded_versions(loaded),  # this deployment's own load, on the login node
        }


def parse_sections(stdout: str) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    name: str | None = None
    status: int | None = None
    lines: list[str] = []

    def close() -> None:
        if name is not None:
            sections[name] = Section(status, "\n".join(lines).strip())

    for line in stdout.splitlines():
        match = _SECTION.match(line)
        if match:
            close()
            name, lines = match.group(1), []
            status = int(match.group(2)) if match.group(2) is not None else None
        elif name is not None:
            lines.append(line)
    close()
    return sections


def settings_salt(profile: ClusterProfile, packages: list[str], scripts: list[bytes]) -> str:
    """A digest of everything besides the manifest that a verification job's success rests on."""
    basis = {
        "julia_executable": profile.julia_executable,
        "julia_modules": list(profile.julia_modules),
        "depot_path": profile.depot_path,
        "cpu_target": profile.julia_cpu_target,
        "partition": profile.slurm_partition,
        "packages": packages,
        "scripts": [hashlib.sha256(data).hexdigest() for data in scripts],
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:32]


def _cache_suffix(salt: str) -> str:
    return f"-{salt}.json"  # after the manifest's sha256, which the step's script computes


def cache_path(code_root: str, manifest_sha256: str, salt: str) -> str:
    return posixpath.join(code_root, VERIFIED_DIR, manifest_sha256 + _cache_suffix(salt))


def run_on_login(
    transport: Transport,
    profile: ClusterProfile,
    *,
    deploy_env_line: str,
    verify_env_line: str,
    env_result_path: str,
    login_result_path: str,
    manifest_path: str,
    code_root: str,
    salt: str,
    lookup: bool,
    timeout_s: float,
) -> LoginStep:
    """Run the step; without ``lookup`` (``--force``) no kept verification is looked for."""
    body = _SCRIPT.format(
        version=quoting.join(juliaenv.version_command(profile)),
        depot=quoting.quote(profile.depot_path),
        deploy_env=deploy_env_line,
        env_result=quoting.quote(env_result_path),
        cache_dir=quoting.quote(posixpath.join(code_root, VERIFIED_DIR)),
        cache_suffix=quoting.quote(_cache_suffix(salt)),
        manifest=quoting.quote(manifest_path),
        lookup="yes" if lookup else "no",
        verify_env=verify_env_line,
        login_result=quoting.quote(login_result_path),
    )
    modules = juliaenv.module_lines(profile.julia_modules)
    script = (f"{modules} || exit $?\n" if modules else "") + body
    result = transport.run(juliaenv.bash_argv(script), timeout_s=timeout_s)
    return LoginStep(result, parse_sections(result.stdout_text))


def cache_entry(
    verification: dict[str, Any], *, deploy_id: str, manifest_sha256: str, salt: str
) -> dict[str, Any]:
    return {
        "deploy_id": deploy_id,
        "manifest_sha256": manifest_sha256,
        "salt": salt,
        "verification": {k: v for k, v in verification.items() if k != "output_tail"},
        "verified_at": utc_now(),
    }


def write_cache(transport: Transport, path: str, entry: dict[str, Any]) -> None:
    """Keep a job's verification for later deployments (the step made the folder)."""
    payload = json.dumps(entry, indent=2, sort_keys=True).encode() + b"\n"
    transport.put_bytes(payload, path)
