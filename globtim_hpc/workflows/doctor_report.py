"""The doctor's vocabulary: a check's row, the report, and the probes' shell text and parsers.

Kept apart from the checks themselves (``workflows.doctor``) so the report can be read and
rendered without the machinery that connects to a cluster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from globtim_hpc.errors import ExitCode

OK, FAIL, WARN, INFO, SKIP = "ok", "fail", "warn", "info", "skip"
DOCTOR_DIR = ".doctor"
INTERNET_HOST = "pkg.julialang.org"
INTERNET_TIMEOUT_S = 3


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None
    required: bool = True

    @property
    def passed(self) -> bool:
        return self.status != FAIL and not (self.required and self.status == SKIP)


@dataclass
class DoctorReport:
    cluster: str
    checks: list[Check] = field(default_factory=list)
    connected: bool = False

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def exit_code(self) -> int:
        if self.ok:
            return int(ExitCode.OK)
        return int(ExitCode.ERROR if self.connected else ExitCode.CONNECTION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "ok": self.ok,
            "connected": self.connected,
            "exit_code": self.exit_code,
            "checks": [asdict(check) for check in self.checks],
        }


def tool_problems(stdout: str, *, needs_bash_4_3: bool) -> list[str]:
    """What the login node lacks, from the TOOLS_SCRIPT probe's answer (empty: all there)."""
    facts = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    problems = []
    version = tuple(int(part) for part in facts.get("bash", "").split(".") if part.isdigit())
    wanted = (4, 3) if needs_bash_4_3 else (4, 0)
    if version < wanted:
        problems.append(
            f"bash {facts.get('bash') or 'not found'} (need {wanted[0]}.{wanted[1]} or newer)"
        )
    if facts.get("sha256sum") != "ok":
        problems.append("sha256sum has no --zero option (need a newer GNU coreutils)")
    if facts.get("tar") != "gnu":
        problems.append("tar is not GNU tar (needed for --null -T -)")
    return problems


def parse_df_available_kb(stdout: str) -> int | None:
    """Available 1K blocks from ``df -Pk PATH`` (last line, fourth field)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    try:
        return int(fields[3])
    except (IndexError, ValueError):
        return None


def mb(kb: int) -> str:
    return f"{kb / 1024:,.1f} MB"


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


# Constant shell text; values arrive as positional arguments.
WRITABLE_SCRIPT = r"""
dir=$1 probe=$2 depth=$3
mkdir -p -- "$dir" || exit 3
touch -- "$dir/$probe" || exit 4
rm -f -- "$dir/$probe" || exit 5
if [ "$depth" -gt 0 ]; then
    bad=$(find "$dir" -mindepth 1 -maxdepth "$depth" -type d ! -writable 2>/dev/null | head -n 5)
    if [ -n "$bad" ]; then printf '%s\n' "$bad"; exit 6; fi
fi
df -Pk -- "$dir"
"""
QUOTA_SCRIPT = 'if command -v quota >/dev/null 2>&1; then quota -s 2>&1; else echo "@@no-quota"; fi'
# The login node's tools that collection and the batch scripts rely on.
TOOLS_SCRIPT = r"""
printf 'bash=%s\n' "$(bash -c 'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}"' 2>/dev/null)"
if printf x | sha256sum --zero >/dev/null 2>&1; then echo "sha256sum=ok"; else echo "sha256sum=old"; fi
if tar --version 2>/dev/null | head -n 1 | grep -q 'GNU tar'; then echo "tar=gnu"; else echo "tar=other"; fi
"""
