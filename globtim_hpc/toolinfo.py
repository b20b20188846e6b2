"""What this toolkit is: version and, when run from a checkout, its git commit."""

from __future__ import annotations

import subprocess
from functools import lru_cache

from globtim_hpc import __version__, paths


@lru_cache(maxsize=1)
def tool_git() -> tuple[str | None, bool]:
    """(commit sha, dirty) of the toolkit's own checkout, or (None, False) outside one."""
    if not (paths.REPO_DIR / ".git").exists():
        return None, False
    try:
        sha = subprocess.run(
            ["git", "-C", str(paths.REPO_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(paths.REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return None, False
    return sha or None, dirty


def tool_info() -> dict[str, object]:
    sha, dirty = tool_git()
    return {"name": "globtim-hpc", "version": __version__, "git_sha": sha, "git_dirty": dirty}
