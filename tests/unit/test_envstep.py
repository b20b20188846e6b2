"""The one-command environment step and the kept verifications it takes over (workflows.envstep).

The shell plumbing runs here for real, through the local transport, with a small fake ``julia``
that writes the reports the toolkit's scripts write; the bed runs it against the stand-in."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from globtim_hpc.errors import RemoteCommandError
from globtim_hpc.settings.profile import ClusterProfile, load_profile
from globtim_hpc.transport.base import CommandResult
from globtim_hpc.transport.local import LocalTransport
from globtim_hpc.workflows import envstep

FAKE_JULIA = r"""#!/bin/sh
# --version, or: --project=... SCRIPT RESULT [PACKAGE...]; what it writes comes from FAKE_* files.
if [ "$1" = --version ]; then echo "julia version 1.12.1"; exit 0; fi
script=$4 result=$5
echo "noise on stdout from $script" ; printf 'no newline on stderr' >&2
case $script in
  *deploy_env.jl) cp "$FAKE_DIR/env.json" "$result"; exit "$(cat "$FAKE_DIR/env.rc")" ;;
  *verify_env.jl) echo "$@" > "$FAKE_DIR/verify.args"; cp "$FAKE_DIR/login.json" "$result"
                  exit "$(cat "$FAKE_DIR/login.rc")" ;;
esac
exit 9
"""


def _profile(tmp_path: Path, executable: Path) -> ClusterProfile:
    path = tmp_path / "p.yaml"
    path.write_text(
        "transport: local\nscheduler: direct\n"
        f"remote_root: {tmp_path / 'root'}\n"
        f"julia: {{executable: {executable}, depot_path: {tmp_path / 'root' / 'depot'}}}\n"
    )
    return load_profile(str(path))


class Bed:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "fake"
        self.dir.mkdir()
        julia = tmp_path / "bin" / "julia"
        julia.parent.mkdir()
        julia.write_text(FAKE_JULIA)
        julia.chmod(0o755)
        self.profile = _profile(tmp_path, julia)
        self.code_root = str(tmp_path / "root" / "code")
        self.tool = tmp_path / "root" / "code" / "d1" / ".globtim-hpc"
        (self.tool / "runenv").mkdir(parents=True)
        self.manifest = self.tool / "runenv" / "Manifest.toml"
        self.manifest.write_text('julia_version = "1.12.1"\n')
        self.manifest_sha = hashlib.sha256(self.manifest.read_bytes()).hexdigest()
        self.set(env={"ok": True, "manifest_sha256": self.manifest_sha}, env_rc=0,
                 login={"ok": True, "manifest_sha256": self.manifest_sha, "offline": True,
                        "hostname": "login1", "packages": {"Globtim": {"loaded": True,
                                                                     "version": "1.2.1"}}},
                 login_rc=0)  # fmt: skip

    def set(self, *, env: dict[str, Any], env_rc: int, login: dict[str, Any], login_rc: int) -> None:
        (self.dir / "env.json").write_text(json.dumps(env))
        (self.dir / "env.rc").write_text(str(env_rc))
        (self.dir / "login.json").write_text(json.dumps(login))
        (self.dir / "login.rc").write_text(str(login_rc))

    def keep(self, salt: str, **changes: Any) -> None:
        entry = envstep.cache_entry(
            {"ok": True, "job_id": "41", "hostname": "node7", "output_tail": "x"},
            deploy_id="d0", manifest_sha256=self.manifest_sha, salt=salt,
        )  # fmt: skip
        entry.update(changes)
        path = Path(envstep.cache_path(self.code_root, self.manifest_sha, salt))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry))

    def run(self, *, lookup: bool = True, salt: str = "s" * 32) -> envstep.LoginStep:
        line = f"env FAKE_DIR={self.dir} {self.profile.julia_executable} --color=no --startup-file=no"
        return envstep.run_on_login(
            LocalTransport(),
            self.profile,
            deploy_env_line=f"{line} --project=x {self.tool}/deploy_env.jl {self.tool}/env.json",
            verify_env_line=f"{line} --project=x {self.tool}/verify_env.jl {self.tool}/login.json "
            "Globtim --extension Globtim:Ext",
            env_result_path=str(self.tool / "env.json"),
            login_result_path=str(self.tool / "login.json"),
            manifest_path=str(self.manifest),
            code_root=self.code_root,
            salt=salt,
            lookup=lookup,
            timeout_s=60,
        )


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    return Bed(tmp_path)


def test_without_a_kept_verification_the_step_is_version_and_pkg_only(bed: Bed) -> None:
    step = bed.run()
    assert step.result.exit_status == 0
    assert step.version(bed.profile, "here") == ((1, 12, 1), "julia version 1.12.1")
    assert step.env_result("here")["manifest_sha256"] == bed.manifest_sha
    assert "verified" not in step.sections and "login_check" not in step.sections
    assert not (bed.dir / "verify.args").exists()  # no load check without anything to take over
    assert step.inherited_verification(bed.manifest_sha, "s" * 32) is None
    # the folder the deployment keeps its verification in exists for the write afterwards
    assert Path(bed.code_root, envstep.VERIFIED_DIR).is_dir()


def test_a_kept_verification_is_taken_over_after_a_login_node_load_check(bed: Bed) -> None:
    salt = "s" * 32
    bed.keep(salt)
    step = bed.run(salt=salt)
    assert (bed.dir / "verify.args").read_text().split()[-3:] == ["Globtim", "--extension", "Globtim:Ext"]
    taken = step.inherited_verification(bed.manifest_sha, salt)
    assert taken is not None and taken["ok"] is True and taken["pending"] is False
    assert taken["inherited_from"] == {"deploy_id": "d0", "job_id": "41",
                                       "verified_at": taken["inherited_from"]["verified_at"]}
    assert taken["hostname"] == "node7"  # where the job verified the environment
    assert taken["login_check"]["hostname"] == "login1" and taken["packages"] == {"Globtim": "1.2.1"}
    assert "output_tail" not in taken


@pytest.mark.parametrize(
    "case",
    ["other settings", "login check fails", "login check not ok", "kept one failed",
     "manifest differs", "login saw another manifest", "no lookup (--force)"],
)
def test_nothing_is_taken_over_unless_everything_matches(bed: Bed, case: str) -> None:
    salt = "s" * 32
    login = {"ok": True, "manifest_sha256": bed.manifest_sha}
    bed.keep(salt)
    run_salt, manifest, lookup = salt, bed.manifest_sha, True
    if case == "other settings":
        run_salt = "t" * 32
    elif case == "login check fails":
        bed.set(env={"ok": True}, env_rc=0, login=login, login_rc=1)
    elif case == "login check not ok":
        bed.set(env={"ok": True}, env_rc=0, login={**login, "ok": False}, login_rc=0)
    elif case == "kept one failed":
        bed.keep(salt, verification={"ok": False, "job_id": "41"})
    elif case == "manifest differs":
        manifest = "0" * 64
    elif case == "login saw another manifest":
        bed.set(env={"ok": True}, env_rc=0, login={**login, "manifest_sha256": "1" * 64}, login_rc=0)
    else:
        lookup = False
    step = bed.run(salt=run_salt, lookup=lookup)
    assert step.inherited_verification(manifest, run_salt) is None


def test_a_failed_pkg_step_is_an_error_with_the_output(bed: Bed) -> None:
    bed.set(env={"ok": False, "error": "Unsatisfiable requirements"}, env_rc=1, login={}, login_rc=0)
    bed.keep("s" * 32)
    step = bed.run()
    assert step.result.exit_status == 1 and "verified" not in step.sections  # stopped there
    with pytest.raises(RemoteCommandError, match="Unsatisfiable requirements") as caught:
        step.env_result("falcon")
    assert "no newline on stderr" in (caught.value.output_tail or "")


def test_a_julia_that_does_not_start_is_named(bed: Bed, tmp_path: Path) -> None:
    profile = replace(bed.profile, julia_executable=str(tmp_path / "no-such-julia"))
    bed.profile = profile
    step = bed.run()
    assert "env" not in step.sections
    with pytest.raises(RemoteCommandError, match="no-such-julia --version' on falcon failed"):
        step.version(profile, "falcon")


def test_sections_survive_output_without_trailing_newlines() -> None:
    text = 'globtim-section version\njulia version 1.12.1\n\nglobtim-section env 0\n{"ok": true}' \
           "\nglobtim-section login_check 3\n{}"
    sections = envstep.parse_sections(text)
    assert sections["version"].text == "julia version 1.12.1"
    assert sections["env"].status == 0 and sections["env"].json() == {"ok": True}
    assert sections["login_check"].status == 3
    assert envstep.Section(None, "not json").json() is None


def test_every_setting_a_verification_rests_on_changes_the_salt(bed: Bed) -> None:
    base = envstep.settings_salt(bed.profile, ["Globtim"], [b"verify"])
    changed = [
        envstep.settings_salt(replace(bed.profile, julia_executable="/other/julia"), ["Globtim"], [b"verify"]),
        envstep.settings_salt(replace(bed.profile, julia_modules=("julia/1.12",)), ["Globtim"], [b"verify"]),
        envstep.settings_salt(replace(bed.profile, depot_path="/elsewhere"), ["Globtim"], [b"verify"]),
        envstep.settings_salt(replace(bed.profile, julia_cpu_target="generic"), ["Globtim"], [b"verify"]),
        envstep.settings_salt(replace(bed.profile, slurm_partition="gpu"), ["Globtim"], [b"verify"]),
        envstep.settings_salt(bed.profile, ["Globtim", "Extra"], [b"verify"]),
        envstep.settings_salt(bed.profile, ["Globtim"], [b"verify v2"]),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    assert envstep.settings_salt(bed.profile, ["Globtim"], [b"verify"]) == base


def test_the_step_script_is_valid_sh_for_bash(bed: Bed) -> None:
    rendered = envstep._SCRIPT.format(
        version="julia --version", depot="/d", deploy_env="true", env_result="/r",
        cache_dir="/c", cache_suffix="-s.json", manifest="/m", lookup="yes", verify_env="true",
        login_result="/l",
    )  # fmt: skip
    subprocess.run(["bash", "-n", "-c", rendered], check=True)


def test_a_result_with_no_sections_asks_for_the_version_command(bed: Bed) -> None:
    failed = CommandResult(("bash",), 127, b"", b"module: command not found")
    step = envstep.LoginStep(failed, {})
    with pytest.raises(RemoteCommandError, match="--version' on falcon failed"):
        step.version(bed.profile, "falcon")
