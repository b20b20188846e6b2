"""Size estimates for one GlobTim task, so absurd requests are refused before they reach the queue.

GlobTim samples the objective on a tensor Chebyshev grid of ``(GN+1)^dim`` points and fits a
polynomial of total degree ``d`` by least squares, so the dominant allocation is the Vandermonde
matrix of ``samples × C(d+dim, dim)`` Float64 entries. The critical points come from solving the
gradient system with homotopy continuation from a total-degree start system of ``(d-1)^dim`` paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

GIB = 1024**3
# Julia runtime plus Globtim, HomotopyContinuation and DataFrames compiled and loaded.
JULIA_BASELINE_GB = 1.5
# Beyond this the grid alone is unreasonable whatever memory is requested.
MAX_SAMPLES = 1_000_000_000
# Warn above this many homotopy paths; each path is cheap, but many hours of them are not.
MANY_PATHS = 1_000_000


@dataclass(frozen=True)
class TaskSize:
    dim: int
    samples_per_dim: int
    degree: int
    samples: int  # (GN+1)^dim
    basis_size: int  # C(d+dim, dim)
    paths: int  # (d-1)^dim
    mem_gb: float

    def describe(self) -> str:
        return (
            f"dim={self.dim}, samples_per_dim={self.samples_per_dim} -> {self.samples:,} samples, "
            f"degree={self.degree} -> {self.basis_size:,} basis functions, "
            f"estimated memory {self.mem_gb:,.1f} GB"
        )


def task_size(dim: int, samples_per_dim: int, degree: int) -> TaskSize:
    samples = (samples_per_dim + 1) ** dim
    basis = comb(degree + dim, dim)
    paths = max(degree - 1, 1) ** dim
    # Vandermonde and one temporary of it, the normal matrix and its factorisation, the grid.
    matrix_bytes = 2 * 8 * samples * basis + 2 * 8 * basis * basis + 8 * samples * (dim + 1)
    return TaskSize(
        dim=dim,
        samples_per_dim=samples_per_dim,
        degree=degree,
        samples=samples,
        basis_size=basis,
        paths=paths,
        mem_gb=JULIA_BASELINE_GB + matrix_bytes / GIB,
    )
