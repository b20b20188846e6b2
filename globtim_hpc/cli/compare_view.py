"""How ``collect_results.py --compare`` shows a comparison of two collected runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from globtim_hpc.cli.common import Output


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def _section(out: Output, title: str, diff: Mapping[str, Mapping[str, Any]]) -> None:
    if not diff:
        out.info(f"{title}: same")
        return
    out.info(f"{title}:")
    for key, pair in diff.items():
        out.info(f"  {key}: {_shown(pair['a'])} -> {_shown(pair['b'])}")


def print_comparison(out: Output, result: Mapping[str, Any]) -> None:
    a, b = result["a"], result["b"]
    out.info(f"A: {a['run_id']}  ({a['folder']})")
    out.info(f"B: {b['run_id']}  ({b['folder']})")
    _section(out, "problem", result["problem"])
    _section(out, "parameters", result["parameters"])
    _section(out, "resources", result["resources"])
    _section(out, "code", result["code"])
    tasks = result["tasks"]
    out.info(f"tasks ({len(tasks)}, matched on {', '.join(result['matched_on'])}):")
    metrics = ["l2_error", "n_critical_points", "n_minima", "best_value", "elapsed_s", "max_rss_gb"]
    header = "  " + f"{'task':34}" + "".join(f"{m:>24}" for m in metrics)
    out.console.print(header, markup=False, highlight=False)
    for task in tasks:
        match = task["match"]
        label = ", ".join(f"{k}={v}" for k, v in match.items() if v not in ("", None))
        cells = [
            f"{_shown(task['metrics'][m]['a'])} | {_shown(task['metrics'][m]['b'])}" for m in metrics
        ]
        line = "  " + f"{label[:34]:34}" + "".join(f"{c:>24}" for c in cells)
        out.console.print(line, markup=False, highlight=False)
    if result.get("written"):
        out.info(f"written to {result['written']}")
