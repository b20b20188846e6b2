# THIS IS NOT JULIA. The objectives of the julia stand-in: Globtim benchmark functions
# (src/LibFunctions.jl) and the driver's Lotka-Volterra misfit, written in Python.
"""Objectives for the julia stand-in. Not Julia."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from standin_loading import JuliaError


def _camel(x: Sequence[float]) -> float:
    a, b = x[0], x[1]
    return (4 - 2.1 * a**2 + a**4 / 3) * a**2 + a * b + (-4 + 4 * b**2) * b**2


def _shubert(x: Sequence[float]) -> float:
    out = 1.0
    for xi in x:
        out *= sum(i * math.cos((i + 1) * xi + i) for i in range(1, 6))
    return out


def _deuflhard(x: Sequence[float]) -> float:
    a, b = x[0], x[1]
    return (math.exp(a**2 + b**2) - 3) ** 2 + (a + b - math.sin(3 * (a + b))) ** 2


def _rosenbrock(x: Sequence[float]) -> float:
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


BENCHMARKS: dict[str, Callable[[Sequence[float]], float]] = {
    "Sphere": lambda x: sum(v * v for v in x),
    "Rosenbrock": _rosenbrock,
    "Deuflhard": _deuflhard,
    "camel": _camel,
    "shubert": _shubert,
    "shubert_4d": lambda x: _shubert(x[:2]) + _shubert(x[2:4]),
    "camel_4d": lambda x: _camel(x[:2]) + _camel(x[2:4]),
    "Deuflhard_4d": lambda x: _deuflhard(x[:2]) + _deuflhard(x[2:4]),
}


def _lv_rhs(u: float, v: float, p: Sequence[float]) -> tuple[float, float]:
    return p[0] * u - p[1] * u * v, p[3] * u * v - p[2] * v


def _lv_trajectory(p: Sequence[float], u0: Sequence[float], t_end: float, n_obs: int, steps: int) -> list[float]:
    per_obs = max(1, -(-steps // n_obs))
    h = t_end / (n_obs * per_obs)
    u, v = float(u0[0]), float(u0[1])
    out: list[float] = []
    for _ in range(n_obs):
        for _ in range(per_obs):
            k1 = _lv_rhs(u, v, p)
            k2 = _lv_rhs(u + h / 2 * k1[0], v + h / 2 * k1[1], p)
            k3 = _lv_rhs(u + h / 2 * k2[0], v + h / 2 * k2[1], p)
            k4 = _lv_rhs(u + h * k3[0], v + h * k3[1], p)
            u += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            v += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
            if not (math.isfinite(u) and math.isfinite(v)) or abs(u) > 1e150 or abs(v) > 1e150:
                return [math.inf]
        out += [u, v]
    return out


def lotka_volterra_objective(params: dict[str, Any]) -> Callable[[Sequence[float]], float]:
    u0 = [float(v) for v in params["initial_state"]]
    t_end = float(params["t_end"])
    n_obs = int(params["n_time_points"])
    # Fewer RK4 steps than the driver: the stand-in only needs plausible numbers, quickly.
    steps = min(int(params["rk4_steps"]), 60)
    reference = _lv_trajectory([float(v) for v in params["true_params"]], u0, t_end, n_obs, steps)

    def misfit(p: Sequence[float]) -> float:
        traj = _lv_trajectory(p, u0, t_end, n_obs, steps)
        if len(traj) != len(reference):
            return 1.0e12
        total = sum((a - b) ** 2 for a, b in zip(traj, reference, strict=True))
        return total if math.isfinite(total) else 1.0e12

    return misfit


def objective_for(params: dict[str, Any]) -> Callable[[Sequence[float]], float]:
    entry = params.get("entry")
    if entry == "benchmark":
        name = params["function"]
        if name not in BENCHMARKS:
            raise JuliaError("UndefVarError", f"UndefVarError: `{name}` not defined in `Globtim`")
        return BENCHMARKS[name]
    if entry == "lotka_volterra":
        return lotka_volterra_objective(params)
    raise JuliaError("ArgumentError", f"ArgumentError: unknown entry '{entry}'")


