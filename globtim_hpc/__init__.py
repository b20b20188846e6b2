"""globtim-hpc: run GlobTim Julia computations on a SLURM cluster from a laptop, traceably.

``from globtim_hpc import Cluster`` is the Python API (see docs/python-api.md). The names are
loaded on first use, so ``import globtim_hpc`` (and every command's ``--help``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from globtim_hpc.api import Cluster, Run
    from globtim_hpc.errors import GlobtimHpcError

__all__ = ["Cluster", "GlobtimHpcError", "Run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Cluster", "Run"):
        from globtim_hpc import api

        return getattr(api, name)
    if name == "GlobtimHpcError":
        from globtim_hpc.errors import GlobtimHpcError

        return GlobtimHpcError
    raise AttributeError(f"module 'globtim_hpc' has no attribute {name!r}")
