"""The views of a verified run folder: tasks.csv and the plots (written into the work folder
before it is placed), then the results root's index.csv and the learned sizing (after)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from globtim_hpc.registry import sizing as learned
from globtim_hpc.registry.store import Store
from globtim_hpc.results import taskdata as td
from globtim_hpc.results.index import update_index
from globtim_hpc.results.plots import PLOTS_DIR, PlotSet, draw_plots
from globtim_hpc.results.summary import TaskRecord
from globtim_hpc.results.tables import TASKS_CSV_NAME, tasks_csv

VIEW_NAMES = frozenset({TASKS_CSV_NAME})
VIEW_DIRS = (PLOTS_DIR + "/",)


def is_view_path(path: str) -> bool:
    """Made locally at collection: a file of that name on the cluster is not collected."""
    return path in VIEW_NAMES or path.startswith(VIEW_DIRS)


def write_views(
    work: Path, metadata: Mapping[str, Any], tasks: Sequence[TaskRecord], *, plots: bool
) -> PlotSet:
    results = {t.task_id: t.results for t in tasks if t.collected}
    text, rows = tasks_csv(metadata, results)
    # Never write through a hard link into the previous collection's copy.
    (work / TASKS_CSV_NAME).unlink(missing_ok=True)
    shutil.rmtree(work / PLOTS_DIR, ignore_errors=True)
    (work / TASKS_CSV_NAME).write_text(text, encoding="utf-8", newline="")
    if not plots:
        return PlotSet(note="plots are off (--no-plots, or collect.plots: false in the profile)")
    swept = td.swept_names(list(metadata.get("tasks") or []))
    return draw_plots(work, rows, swept, str(metadata.get("run_id")))


def after_placement(store: Store, results_root: Path, folder: Path) -> list[str]:
    """Index the placed run and learn its sizing; notes for what could not be done."""
    notes: list[str] = []
    metadata = td.read_metadata(folder)  # read once, for the index and the sizing
    update_index(results_root, folder, metadata)
    if metadata is None:
        return [f"{folder}/metadata.json is unreadable: sizing not learned"]
    items = list(metadata.get("sizing") or [])
    if items:
        learned.record(
            store.path, str(metadata.get("cluster")), str(metadata.get("problem")),
            str(metadata.get("run_id")), items,
        )  # fmt: skip
    return notes
