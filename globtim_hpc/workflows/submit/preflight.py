"""The remote pre-flight: one command that checks remote_root and home, and asks the scheduler
to judge the batch script (when it can), before anything is written or recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from globtim_hpc.errors import PreflightError
from globtim_hpc.scheduler.base import Scheduler
from globtim_hpc.transport.base import CommandResult

if TYPE_CHECKING:
    from globtim_hpc.settings.profile import ClusterProfile

# Constant shell text; every variable part is a positional argument (quoted by the transport).
# Any further arguments are the scheduler's test command, which reads the script from stdin.
_PREFLIGHT = r"""
root=$1 home=$2; shift 2
probe=$root
while [ ! -d "$probe" ]; do probe=$(dirname -- "$probe"); done
printf '@@ROOT_EXISTING %s\n' "$probe"
df -Pk -- "$probe" | awk 'NR==2 {print "@@ROOT_AVAIL_KB", $4}'
if t=$(mktemp -d "$probe/.globtim-hpc-probe.XXXXXX" 2>/dev/null) && rmdir -- "$t"; then
    echo "@@ROOT_WRITABLE 1"
else
    echo "@@ROOT_WRITABLE 0"
fi
if [ -n "$home" ]; then
    if [ -d "$home" ]; then
        df -Pk -- "$home" | awk 'NR==2 {print "@@HOME_AVAIL_KB", $4}'
        f="$home/.globtim-hpc-probe.$$"
        if head -c 4096 /dev/zero > "$f" 2>/dev/null; then echo "@@HOME_WRITABLE 1"; else echo "@@HOME_WRITABLE 0"; fi
        rm -f -- "$f"
    else
        echo "@@HOME_MISSING"
    fi
fi
if [ $# -gt 0 ]; then
    out=$("$@" 2>&1)
    printf '@@TEST_RC %s\n' "$?"
    printf '%s\n' "$out" | sed 's/^/@@TEST_OUT /'
fi
"""


def _kb(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def preflight(
    scheduler: Scheduler, profile: ClusterProfile, script: str | None = None
) -> dict[str, Any]:
    """Free space and writability of the remote root and of home and, given a batch script and
    a scheduler that can judge one (``slurm.test_only`` on), its verdict: one remote command."""
    transport = scheduler.transport
    home = profile.home_dir or ""
    argv = ["sh", "-c", _PREFLIGHT, "globtim-preflight", profile.remote_root, home]
    test_argv = scheduler.test_submit_argv() if script is not None and profile.slurm_test_only else None
    if test_argv is not None:
        argv += test_argv
    result = transport.run(
        argv, timeout_s=60, stdin=script.encode() if test_argv is not None and script else None
    )
    result.check("the pre-flight check of the remote root and home")
    facts: dict[str, str] = {}
    test_output: list[str] = []
    for line in result.stdout_text.splitlines():
        if line.startswith("@@TEST_OUT "):
            test_output.append(line[len("@@TEST_OUT ") :])
        elif line.startswith("@@"):
            key, _, value = line[2:].partition(" ")
            facts[key] = value.strip()
    where = f"{transport.label}:{profile.remote_root}"
    if facts.get("ROOT_WRITABLE") != "1":
        raise PreflightError(
            f"the remote root {where} is not writable (nearest existing folder: "
            f"{facts.get('ROOT_EXISTING', '?')})",
            "fix its permissions or set remote_root in the cluster profile to a folder you own "
            "on project space; nothing was submitted",
        )
    root_kb = _kb(facts.get("ROOT_AVAIL_KB", ""))
    if root_kb is not None and root_kb < profile.min_free_root_mb * 1024:
        raise PreflightError(
            f"only {root_kb // 1024} MB free under {where}; at least {profile.min_free_root_mb} MB "
            "are needed",
            "free space there (old runs: collect them, then delete) or lower min_free_root_mb; "
            "nothing was submitted",
        )
    if home:
        if "HOME_MISSING" in facts:
            raise PreflightError(
                f"home_dir {transport.label}:{home} does not exist",
                "fix home_dir in the cluster profile",
            )
        home_kb = _kb(facts.get("HOME_AVAIL_KB", ""))
        if facts.get("HOME_WRITABLE") != "1" or (
            home_kb is not None and home_kb < profile.min_free_home_mb * 1024
        ):
            shown = f"{home_kb // 1024} MB free" if home_kb is not None else "not writable"
            raise PreflightError(
                f"home {transport.label}:{home} is full or over quota ({shown}; at least "
                f"{profile.min_free_home_mb} MB needed)",
                "a full home breaks SLURM output and logins: delete files there (a Julia depot in "
                "~/.julia is the usual culprit; the toolkit keeps its depot under remote_root); "
                "nothing was submitted",
            )
    if test_argv is not None and "TEST_RC" in facts:
        verdict = CommandResult(
            tuple(test_argv), int(facts["TEST_RC"]), b"", "\n".join(test_output).encode()
        )
        scheduler.parse_test_submit(verdict)  # raises on refusal: nothing was submitted
    return facts
