"""Looking at collected runs on this machine: no cluster, no connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from globtim_hpc.results.compare import compare_folders, find_run_folder
from globtim_hpc.results.index import INDEX_NAME, rebuild_index

COMPARISONS_DIR = "comparisons"


def compare_runs(
    run_a: str | Path, run_b: str | Path, results_root: str | Path = "results", *, write: bool = True
) -> dict[str, Any]:
    """The differences between two collected runs (folders, or run ids under ``results_root``):
    parameters, resources, code, and per-task metrics side by side. With ``write`` the result is
    also saved as ``<results_root>/comparisons/<run_a>__<run_b>.json`` (its path under
    ``"written"``)."""
    root = Path(results_root)
    folder_a = find_run_folder(str(run_a), root)
    folder_b = find_run_folder(str(run_b), root)
    result = compare_folders(folder_a, folder_b)
    if write:
        out_dir = root / COMPARISONS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{result['a']['run_id']}__{result['b']['run_id']}.json"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        tmp.replace(target)
        result["written"] = str(target)
    return result


def rebuild_results_index(results_root: str | Path = "results") -> Path:
    """Write ``<results_root>/index.csv`` anew from every run folder's metadata.json."""
    root = Path(results_root)
    root.mkdir(parents=True, exist_ok=True)
    return rebuild_index(root)


__all__ = ["INDEX_NAME", "compare_runs", "rebuild_results_index"]
