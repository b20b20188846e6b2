"""``tasks.csv``: one row per task and degree of a collected run, the tidy table a researcher
loads with ``pandas.read_csv`` or ``CSV.read(path, DataFrame)``.

Plain RFC 4180: a header row, comma separated, fields quoted only when needed, ``\\r\\n`` line
ends as the RFC says (both readers accept them), no index column; an empty cell is a missing
value. The columns are documented in docs/output-contract.md and described by
``schemas/tasks.schema.json``; the parameters follow as ``param_<name>`` columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from globtim_hpc.results import taskdata as td

TASKS_CSV_NAME = "tasks.csv"
PARAM_PREFIX = "param_"

# The fixed columns, in order. Parameter columns come after ``degree_status``.
LEAD_COLUMNS = (
    "run_id",
    "task_index",
    "task_id",
    "attempt",
    "state",
    "task_status",
    "degree",
    "degree_status",
)
# Columns that are a DegreeResult's attribute of the same name.
DEGREE_COLUMNS = (
    "l2_error",
    "condition_number",
    "n_critical_points",
    "n_minima",
    "best_value",
    "best_point",
    "samples",
    "basis_size",
)
METRIC_COLUMNS = (
    *DEGREE_COLUMNS,
    *(f"time_{stage}_s" for stage in td.DEGREE_STAGES if stage != "total"),
    "time_degree_s",
    *(f"time_task_{stage}_s" for stage in td.TASK_STAGES),
    "elapsed_s",
    "max_rss_gb",
    "estimated_mem_gb",
    "requested_mem_gb",
    "requested_time_min",
    "requested_cpus",
    "error",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def param_columns(tasks: Sequence[Mapping[str, Any]]) -> list[str]:
    return [PARAM_PREFIX + name for name in td.param_names(tasks)]


def task_rows(
    metadata: Mapping[str, Any], results_by_task: Mapping[str, Mapping[str, Any] | None]
) -> list[dict[str, Any]]:
    """The rows of tasks.csv as typed values (None for an empty cell)."""
    tasks: list[Mapping[str, Any]] = list(metadata.get("tasks") or [])
    names = td.param_names(tasks)
    asked = td.requested(metadata)
    rows: list[dict[str, Any]] = []
    for task in tasks:
        task_id = str(task.get("task_id"))
        results = results_by_task.get(task_id)
        params = td.visible_params(task.get("params"))
        degrees = td.degree_results(results) or [td.DegreeResult(degree=None, status=None)]
        task_times = td.task_timings(results)
        for entry in degrees:
            row: dict[str, Any] = {
                "run_id": metadata.get("run_id"),
                "task_index": task.get("task_index"),
                "task_id": task_id,
                "attempt": td.attempt(task),
                "state": task.get("state"),
                "task_status": td.text(td.mapping(results).get("status")),
                "degree": entry.degree,
                "degree_status": entry.status if entry.degree is not None else None,
            }
            for name in names:
                row[PARAM_PREFIX + name] = params.get(name)
            row.update((column, getattr(entry, column)) for column in DEGREE_COLUMNS)
            for stage in td.DEGREE_STAGES:
                key = "time_degree_s" if stage == "total" else f"time_{stage}_s"
                row[key] = entry.timings_s.get(stage)
            for stage in td.TASK_STAGES:
                row[f"time_task_{stage}_s"] = task_times.get(stage)
            row.update(
                elapsed_s=td.elapsed_s(task),
                max_rss_gb=td.max_rss_gb(task),
                estimated_mem_gb=td.estimate_gb(task.get("params"), entry.degree),
                requested_mem_gb=asked["mem_gb"],
                requested_time_min=asked["time_min"],
                requested_cpus=asked["cpus"],
                error=entry.error,
            )
            rows.append(row)
    return rows


def columns_for(metadata: Mapping[str, Any]) -> list[str]:
    return [*LEAD_COLUMNS, *param_columns(list(metadata.get("tasks") or [])), *METRIC_COLUMNS]


def render_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def tasks_csv(
    metadata: Mapping[str, Any], results_by_task: Mapping[str, Mapping[str, Any] | None]
) -> tuple[str, list[dict[str, Any]]]:
    """(the text of tasks.csv, its rows as typed values)."""
    rows = task_rows(metadata, results_by_task)
    return render_csv(columns_for(metadata), rows), rows


def read_tasks_csv(folder: Path) -> list[dict[str, str]]:
    """tasks.csv of a collected run as strings (the standard library's reader); [] if absent."""
    try:
        with open(folder / TASKS_CSV_NAME, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []
