# THIS IS NOT JULIA. One degree of the Globtim pipeline, synthetic but deterministic, for the
# `julia` stand-in: the objective is evaluated on a coarse Chebyshev grid; the discrete local
# minima and maxima of that grid are the critical points. What it writes has the real driver's
# shape (docs/output-contract.md):
#   - CSV columns as Globtim 1.2.1's analyze_critical_points leaves them (src/refine.jl
#     634-717), points in dimension order: x1..xn, z, y1..yn, close, steps, converged,
#     region_id, function_value_cluster, nearest_neighbor_dist, gradient_norm, and with
#     enable_hessian the Hessian columns (critical_point_type with the labels of
#     src/hessian_analysis.jl classify_critical_points: minimum, maximum, saddle, degenerate,
#     error; eigenvalues, norm, and the hessian_* statistics);
#   - n_minima counts minimizers closer than tol_dist as one, as the refinement's df_min does.
"""One degree of the julia stand-in's synthetic pipeline. Not Julia."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from standin_io import finite, heartbeat, write_atomic
from standin_loading import JuliaError

HESSIAN_COLUMNS = (
    "critical_point_type", "smallest_positive_eigenval", "largest_negative_eigenval",
    "hessian_norm", "hessian_eigenvalue_min", "hessian_eigenvalue_max",
    "hessian_condition_number", "hessian_determinant", "hessian_trace",
)
STATS_COLUMNS = ("region_id", "function_value_cluster", "nearest_neighbor_dist", "gradient_norm")


def csv_header(dim: int, enable_hessian: bool) -> list[str]:
    header = [f"x{i + 1}" for i in range(dim)] + ["z"] + [f"y{i + 1}" for i in range(dim)]
    header += ["close", "steps", "converged", *STATS_COLUMNS]
    return header + (list(HESSIAN_COLUMNS) if enable_hessian else [])


def chebyshev_nodes(count: int, center: float, half_width: float) -> list[float]:
    return [center + half_width * math.cos(math.pi * (2 * k + 1) / (2 * count)) for k in range(count)]


def new_entry(params: dict[str, Any], degree: int) -> dict[str, Any]:
    dim = int(params["dim"])
    return {
        "degree": degree,
        "status": "FAILED",
        "samples": (int(params["samples_per_dim"]) + 1) ** dim,
        "basis_size": math.comb(degree + dim, dim),
        "l2_error": None,
        "condition_number": None,
        "n_solutions": None,
        "n_outside_box": None,
        "n_critical_points": None,
        "n_minima": None,
        "best_value": None,
        "best_point": None,
        "csv": None,
        "timings_s": {},
        "error": None,
    }


def distinct_minimizers(points: list[list[float]], tol_dist: float) -> list[int]:
    """Indices of the minimizers kept: one per group closer than tol_dist (the first)."""
    kept: list[int] = []
    for i, point in enumerate(points):
        if all(math.dist(point, points[j]) >= tol_dist for j in kept):
            kept.append(i)
    return kept


def _row(point: list[float], value: float, kind: str, dim: int, enable_hessian: bool) -> list[str]:
    cells = [repr(p) for p in point] + [repr(value)] + [repr(p) for p in point]
    cells += ["true", "0.0", "true", "1", "1", "NaN", "0.0"]
    if enable_hessian:
        sign = 1.0 if kind == "minimum" else -1.0
        positive = "1.0" if sign > 0 else "NaN"
        negative = "-1.0" if sign < 0 else "NaN"
        cells += [kind, positive, negative, repr(math.sqrt(dim)), repr(sign), repr(sign), "1.0",
                  repr(sign**dim), repr(sign * dim)]
    return cells


def run_degree(
    f: Callable[[Sequence[float]], float], params: dict[str, Any], degree: int, outdir: str
) -> dict[str, Any]:
    dim = int(params["dim"])
    gn = int(params["samples_per_dim"])
    center = [float(c) for c in params["center"]]
    half_width = float(params["sample_range"])
    enable_hessian = bool(params.get("enable_hessian", True))
    tol_dist = float(params.get("tol_dist", 0.025))
    if len(center) != dim:
        raise JuliaError("DimensionMismatch",
                         f"DimensionMismatch: center has length {len(center)}, dim is {dim}")
    entry = new_entry(params, degree)
    timings = entry["timings_s"]
    # The coarse grid keeps a 4-D Lotka-Volterra evaluation to well under a second.
    per_dim = min(gn + 1, degree + 1, 5 if params.get("entry") == "lotka_volterra" else 9)
    axes = [sorted(chebyshev_nodes(per_dim, c, half_width)) for c in center]

    heartbeat("construct", degree)
    t = time.monotonic()
    values: dict[tuple[int, ...], float] = {}
    for index in itertools.product(range(per_dim), repeat=dim):
        values[index] = f([axes[d][i] for d, i in enumerate(index)])
    finite_values = [v for v in values.values() if math.isfinite(v)]
    rms = math.sqrt(sum(v * v for v in finite_values) / max(len(finite_values), 1))
    entry["l2_error"] = finite(rms * math.exp(-0.35 * degree) + 1e-14)
    entry["condition_number"] = finite(10 ** (1 + degree * dim / 10))
    timings["construct"] = time.monotonic() - t

    heartbeat("solve", degree)
    t = time.monotonic()
    found: list[tuple[tuple[int, ...], str]] = []
    for index, value in values.items():
        neighbours = []
        for d in range(dim):
            for step in (-1, 1):
                j = index[d] + step
                if 0 <= j < per_dim:
                    neighbours.append(values[(*index[:d], j, *index[d + 1 :])])
        if all(value < n for n in neighbours):
            found.append((index, "minimum"))
        elif all(value > n for n in neighbours):
            found.append((index, "maximum"))
    timings["solve"] = time.monotonic() - t
    # Grid points all lie in the sampled box: no solution is dropped for lying outside it.
    entry["n_solutions"] = len(found)
    entry["n_outside_box"] = 0

    heartbeat("process", degree)
    t = time.monotonic()
    rows = [([axes[d][i] for d, i in enumerate(index)], values[index], kind) for index, kind in found]
    rows.sort(key=lambda r: (r[1], r[0]))
    timings["process"] = time.monotonic() - t

    heartbeat("analyze", degree)
    t = time.monotonic()
    minima = [r for r in rows if r[2] == "minimum"]
    kept = distinct_minimizers([r[0] for r in minima], tol_dist)
    entry["n_critical_points"] = len(rows)
    entry["n_minima"] = len(kept)
    if minima:
        entry["best_value"] = finite(minima[0][1])
        entry["best_point"] = minima[0][0]
    timings["analyze"] = time.monotonic() - t

    lines = [",".join(csv_header(dim, enable_hessian))]
    lines += [",".join(_row(p, v, k, dim, enable_hessian)) for p, v, k in rows]
    csv_name = f"critical_points_deg_{degree}.csv"
    write_atomic(os.path.join(outdir, csv_name), "\n".join(lines) + "\n")
    entry["csv"] = csv_name
    entry["status"] = "COMPLETED"
    return entry
