"""Waiting on one task's scheduler state through the Python API, for tests of held runs."""

from __future__ import annotations

import time
from pathlib import Path

from globtim_hpc.api import Cluster


def small_child_config(tmp_path: Path) -> Path:
    """A one-task 4d_benchmark config, small enough to start at once on the bed."""
    config = tmp_path / "child.yaml"
    config.write_text("parameters:\n  degree: 4\nresources:\n  time_min: 5\n  cpus: 1\n")
    return config


def wait_for_reason(cluster: Cluster, run_id: str, want: str, deadline_s: float = 120) -> str:
    """Task 0's "STATE reason" once it contains ``want``; fails after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    seen = ""
    while time.monotonic() < end:
        task = cluster.run(run_id).status().tasks[0].status
        seen = f"{task.state.value} {task.reason}"
        if want in seen:
            return seen
        time.sleep(2)
    raise AssertionError(f"never saw {want!r}; last {seen!r}")
