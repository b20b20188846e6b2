"""globtim-hpc: run GlobTim Julia computations on a SLURM cluster from a laptop, traceably."""

__version__ = "0.1.0"
