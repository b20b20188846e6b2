"""The doctor's look at the login shell: sshd runs every command as ``$SHELL -c LINE``.

Commands reach any login shell intact (``quoting.command_line``), but two things can still go
wrong there: startup files that print text (csh/tcsh read ``~/.cshrc`` even for ``-c``; bash
over ssh reads ``~/.bashrc``), which mixes into every command's output, and a cluster without
``base64``, which the lines that are not plain words are decoded with.
"""

from __future__ import annotations

import posixpath

from globtim_hpc.transport.base import Transport

OK, WARN, FAIL = "ok", "warn", "fail"
POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "mksh", "zsh", "ash", "yash", "busybox"})
_MARK = "@@globtim-shell"
# A plain line (goes to the login shell unwrapped); the second one is wrapped on purpose.
PLAIN_PROBE = ["printenv", "SHELL"]
WRAPPED_PROBE = ["sh", "-c", f"printf '%s\\n' {_MARK}\nexit 0\n"]


def assess(plain_stdout: str, wrapped_stdout: str | None) -> tuple[str, str, str | None]:
    """(status, detail, fix) from the two probes' output; ``None``: the wrapped probe failed."""
    lines = plain_stdout.splitlines()
    shell = lines[-1].strip() if lines else ""
    noise = [line for line in lines[:-1] if line.strip()]
    name = posixpath.basename(shell) or "unknown"
    kind = "POSIX" if name in POSIX_SHELLS else "not POSIX; commands are sent in a form it accepts"
    detail = f"{shell or 'unknown ($SHELL is not set)'} ({kind})"
    if wrapped_stdout is None or _MARK not in wrapped_stdout:
        return (
            FAIL,
            f"{detail}; a multi-line command did not run through it",
            "the toolkit decodes such commands with base64 (GNU coreutils): make sure "
            "`base64` is on the non-interactive PATH, or ask the admins",
        )
    if noise:
        return (
            WARN,
            f"{detail}; its startup files print text into every command's output "
            f"(first line: {noise[0][:80]!r})",
            "print only in interactive shells: in ~/.cshrc or ~/.tcshrc inside "
            "`if ($?prompt) then ... endif`, in ~/.bashrc after `[[ $- == *i* ]] || return`",
        )
    return OK, detail, None


def check(transport: Transport) -> tuple[str, str, str | None]:
    plain = transport.run(PLAIN_PROBE, timeout_s=60)
    wrapped = transport.run(WRAPPED_PROBE, timeout_s=60)
    return assess(plain.stdout_text, wrapped.stdout_text if wrapped.ok else None)
