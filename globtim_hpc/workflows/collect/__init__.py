"""Collection: a run brought back verified, resumable, organised, and never half-placed.

One pass through the open transport, nothing staged on any hop:

1. ``snapshot``: one command tars up ``submission.json``, ``status/`` and ``params/`` (small);
   each task's state is then decided by ``taskstate`` (through the monitor's poll);
2. one command computes the SHA-256 manifest of the run folder on the cluster, leaving out
   the output of tasks still running;
3. ``transfer``: what already exists locally (the previous collection, or an interrupted
   attempt) is hashed and reused when it matches; only missing or changed files are asked for,
   as one tar stream (file list on stdin), extracted by ``safe_tar`` and verified file by file;
4. ``describe``: the new folder is built beside the target under a hidden name
   (``.<name>.partial-<random>``), completed with ``MANIFEST.sha256``, ``metadata.json`` and
   ``summary.md``, then renamed into place (or atomically exchanged with the old version);
5. ``workflow``: the registry records where, when and which manifest; only then, and only when
   asked, the remote run folder is removed.

An interrupted attempt leaves only its hidden partial folder, whose verified files the next
attempt reuses. Running out of local space removes it and says so.
"""

from globtim_hpc.workflows.collect.records import (
    CollectObserver,
    CollectOptions,
    CollectResult,
    SilentObserver,
)
from globtim_hpc.workflows.collect.workflow import collect_run

__all__ = [
    "CollectObserver",
    "CollectOptions",
    "CollectResult",
    "SilentObserver",
    "collect_run",
]
