"""Convergence and resource plots of a collected run, drawn from the rows of ``tasks.csv``.

matplotlib (the optional extra ``plots``) is imported only inside ``draw_plots``, with the Agg
backend, so no command's ``--help`` or ordinary start pays for it. Every figure is written as
PNG (embedded in summary.md) and SVG, and ``plots/plots.json`` records the plotted series, so
what a figure shows can be checked against tasks.csv without reading pixels.

One line per combination of the swept parameters other than the degree; with more than
``MAX_LINES`` such combinations each gets its own small panel. Colours are the Okabe-Ito
palette (distinguishable with the common colour-vision deficiencies), and every line also has
its own marker and dash pattern, so nothing depends on colour alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLOTS_DIR = "plots"
SIDECAR_NAME = "plots.json"
SIDECAR_SCHEMA = "globtim-hpc/plots/1"
MAX_LINES = 6
MAX_PANELS = 24
# Okabe-Ito without its yellow, which is too faint on white at the size summary.md shows.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (7, 2)))
DEGREE_AXIS = ("degree",)  # parameters that are the x axis, not a line of their own
PANEL_SIZE_IN = (4.2, 3.0)
NO_DATA = {
    "max_rss_gb": "MaxRSS not reported\n(no accounting, or tasks shorter than its sampling)",
    "elapsed_min": "elapsed time not reported",
    "elapsed_s": "elapsed time not reported",
}
SHORT_RUN_S = 120.0  # below this, elapsed time is drawn in seconds rather than minutes
DPI = 110


@dataclass(frozen=True)
class Metric:
    column: str
    label: str  # axis label, with its unit
    log: bool = False


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    metrics: tuple[Metric, ...]
    limits: tuple[str | None, ...] = ()  # per metric: the requested-limit column drawn as a line


FIGURES = (
    Figure("l2_error", "L2 approximation error vs degree",
           (Metric("l2_error", "L2 error (objective units, log scale)", log=True),)),
    Figure("critical_points", "Critical points and minima vs degree",
           (Metric("n_critical_points", "critical points (count)"),
            Metric("n_minima", "local minima (count)"))),
    Figure("best_value", "Best value found vs degree",
           (Metric("best_value", "best value (objective units)"),)),
    Figure("resources", "Elapsed time and peak memory vs degree",
           (Metric("elapsed_min", "elapsed (minutes)"), Metric("max_rss_gb", "MaxRSS (GB)")),
           limits=("requested_time_min", "requested_mem_gb")),
)  # fmt: skip


@dataclass
class PlotSet:
    """What was drawn: figure names with their files relative to the run folder, or why not."""

    figures: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _value(row: Mapping[str, Any], column: str) -> float | None:
    if column == "elapsed_min":  # shown in minutes, stored in seconds
        seconds = _number(row.get("elapsed_s"))
        return None if seconds is None else seconds / 60.0
    if column == "requested_time_s":
        minutes = _number(row.get("requested_time_min"))
        return None if minutes is None else minutes * 60.0
    return _number(row.get(column))


SHORT_RESOURCES = Figure(
    "resources", "Elapsed time and peak memory vs degree",
    (Metric("elapsed_s", "elapsed (seconds)"), Metric("max_rss_gb", "MaxRSS (GB)")),
    limits=("requested_time_s", "requested_mem_gb"),
)  # fmt: skip


def figures_for(rows: Sequence[Mapping[str, Any]]) -> tuple[Figure, ...]:
    """The figures, with elapsed time in seconds when every task took under two minutes."""
    elapsed = [v for v in (_number(r.get("elapsed_s")) for r in rows) if v is not None]
    if elapsed and max(elapsed) < SHORT_RUN_S:
        return tuple(SHORT_RESOURCES if f.name == "resources" else f for f in FIGURES)
    return FIGURES


def line_groups(
    rows: Sequence[Mapping[str, Any]], swept: Sequence[str]
) -> list[tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """Rows with a degree, grouped by the values of the swept parameters other than the degree."""
    axes = [name for name in swept if name not in DEGREE_AXIS and name != "degree_max"]
    groups: dict[str, tuple[dict[str, Any], list[Mapping[str, Any]]]] = {}
    for row in rows:
        if _number(row.get("degree")) is None:
            continue
        key_values = {name: row.get("param_" + name) for name in axes}
        key = json.dumps(key_values, sort_keys=True, default=str)
        groups.setdefault(key, (key_values, []))[1].append(row)
    return list(groups.values())


def _label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all tasks"


def series(
    rows: Sequence[Mapping[str, Any]], swept: Sequence[str], figures: Sequence[Figure] = FIGURES
) -> dict[str, list[dict[str, Any]]]:
    """Per metric column, one series per line group: label, group, x (degree), y; sorted by x."""
    out: dict[str, list[dict[str, Any]]] = {}
    groups = line_groups(rows, swept)
    for figure in figures:
        for metric in figure.metrics:
            lines = []
            for values, members in groups:
                pairs = sorted(
                    (float(row["degree"]), _value(row, metric.column)) for row in members
                )
                kept = [(x, y) for x, y in pairs if y is not None and (y > 0 or not metric.log)]
                lines.append({"label": _label(values), "group": values,
                              "x": [x for x, _ in kept], "y": [y for _, y in kept]})  # fmt: skip
            out[metric.column] = lines
    return out


def plottable(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the rows make a plot; else why not (said in summary.md)."""
    with_degree = [r for r in rows if _number(r.get("degree")) is not None]
    if not with_degree:
        return "no task reported a degree (e.g. a custom script): nothing to plot against degree"
    if len(with_degree) < 2:
        return "a single task of a single degree: a plot would show one point, so none was drawn"
    return None


def _limit(rows: Sequence[Mapping[str, Any]], column: str | None) -> float | None:
    if column is None:
        return None
    values = {_value(r, column) for r in rows} - {None}
    return max(v for v in values if v is not None) if values else None


def draw_plots(
    folder: Path, rows: Sequence[Mapping[str, Any]], swept: Sequence[str], run_id: str
) -> PlotSet:
    """Write plots/*.png, plots/*.svg and plots/plots.json into ``folder``."""
    why_not = plottable(rows)
    if why_not:
        return PlotSet(note=why_not)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return PlotSet(note="matplotlib is not installed (pip install 'globtim-hpc[plots]'): "
                       "no plots were drawn")  # fmt: skip
    plots_dir = folder / PLOTS_DIR
    plots_dir.mkdir(exist_ok=True)
    figures = figures_for(rows)
    data = series(rows, swept, figures)
    line_count = len(line_groups(rows, swept))
    multiples = line_count > MAX_LINES
    panels = min(line_count, MAX_PANELS) if multiples else 1
    made = PlotSet()
    sidecar: dict[str, Any] = {"schema": SIDECAR_SCHEMA, "run_id": run_id, "figures": {}}
    for figure in figures:
        columns = len(figure.metrics) if not multiples else min(panels, 4)
        grid_rows = 1 if not multiples else -(-panels // columns) * len(figure.metrics)
        fig, axes = plt.subplots(
            grid_rows, columns, squeeze=False,
            figsize=(PANEL_SIZE_IN[0] * columns, PANEL_SIZE_IN[1] * grid_rows),
        )  # fmt: skip
        for m_index, metric in enumerate(figure.metrics):
            limit = _limit(rows, figure.limits[m_index] if figure.limits else None)
            for l_index, line in enumerate(data[metric.column]):
                if multiples:
                    if l_index >= MAX_PANELS:
                        break
                    cell = m_index * (grid_rows // len(figure.metrics)) * columns + l_index
                    ax = axes[cell // columns][cell % columns]
                    ax.set_title(line["label"], fontsize=9)
                else:
                    ax = axes[0][m_index]
                style = l_index % len(OKABE_ITO)
                ax.plot(line["x"], line["y"], color=OKABE_ITO[style], marker=MARKERS[style],
                        linestyle=DASHES[style], linewidth=1.6, markersize=5,
                        label=line["label"])  # fmt: skip
            for ax in _axes_of(axes, figure, m_index, multiples, grid_rows, columns, panels):
                if metric.log:
                    ax.set_yscale("log")
                if limit is not None:
                    ax.axhline(limit, color="#555555", linestyle=(0, (4, 2)), linewidth=1.2,
                               label="requested")  # fmt: skip
                if figure.limits:  # amounts: from zero, so the request's headroom shows
                    ax.set_ylim(bottom=0)
                if not any(line["y"] for line in data[metric.column]):
                    ax.text(0.5, 0.5, NO_DATA.get(metric.column, "not reported"),
                            transform=ax.transAxes, ha="center", va="center", fontsize=9,
                            color="#333333", wrap=True)  # fmt: skip
                    ax.set_xticks(sorted({float(r["degree"]) for r in rows
                                          if _number(r.get("degree")) is not None}))  # fmt: skip
                ax.set_xlabel("polynomial degree")
                ax.set_ylabel(metric.label)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(True, which="major", alpha=0.3)
        if not multiples:
            for ax in axes[0]:
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=8, frameon=False)
        fig.suptitle(f"{figure.title}\n{run_id}", fontsize=10)
        fig.tight_layout()
        png, svg = f"{PLOTS_DIR}/{figure.name}.png", f"{PLOTS_DIR}/{figure.name}.svg"
        fig.savefig(folder / png, dpi=DPI)
        fig.savefig(folder / svg)
        plt.close(fig)
        entry = {"name": figure.name, "title": figure.title, "png": png, "svg": svg}
        made.figures.append(entry)
        sidecar["figures"][figure.name] = {
            **entry,
            "small_multiples": multiples,
            "metrics": {
                m.column: {"label": m.label, "log": m.log, "series": data[m.column],
                           "limit": _limit(rows, figure.limits[i] if figure.limits else None)}
                for i, m in enumerate(figure.metrics)
            },
        }  # fmt: skip
    if line_count > MAX_PANELS and multiples:
        made.note = f"{line_count} parameter combinations: only the first {MAX_PANELS} are drawn"
    (plots_dir / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return made


def _axes_of(
    axes: Any, figure: Figure, m_index: int, multiples: bool, grid_rows: int, columns: int,
    panels: int,
) -> list[Any]:
    if not multiples:
        return [axes[0][m_index]]
    per_metric = grid_rows // len(figure.metrics)
    cells = [m_index * per_metric * columns + i for i in range(per_metric * columns)]
    out = []
    for offset, cell in enumerate(cells):
        ax = axes[cell // columns][cell % columns]
        if offset >= panels:
            ax.set_visible(False)
            continue
        out.append(ax)
    return out
