"""What the embedded ``local`` profile needs from this machine before it can run a job."""

from __future__ import annotations

import os
import shutil

from globtim_hpc.errors import ConfigError


def check_local_julia(executable: str) -> None:
    """Refuse before anything is recorded when the profile's Julia is not on this machine."""
    found = (
        shutil.which(executable)
        if "/" not in executable
        else (executable if os.access(executable, os.X_OK) else None)
    )
    if found is None:
        raise ConfigError(
            f"Julia was not found on this machine ('{executable}' is not an executable on PATH)",
            "install Julia (https://julialang.org/downloads/) and put it on PATH, set "
            "julia.executable in a profile (copy configs/local.yaml), or submit to a cluster with "
            "--cluster NAME (configs/falcon.example.yaml shows how)",
            key="julia.executable",
        )
