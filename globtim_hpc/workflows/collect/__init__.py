"""Collection: a run brought back verified, resumable, organised, and never half-placed.

One pass through the open transport, nothing staged on any hop:

1. ``snapshot``: one command lists the run folder (size, mtime, ctime of every file: metadata
   only, ``results/survey``) and tars up ``submission.json``, ``status/`` and ``params/``;
   each task's state is then decided by ``taskstate`` (through the monitor's poll), and the
   output of tasks still running is left out;
2. ``transfer``: a local file whose cluster and local metadata match the folder's re-collect
   record (``results/recollect``, from the previous collection or an interrupted attempt) is
   reused unread; the rest come as one tar stream (file list on stdin) that tar reads once and
   ``cksum`` checks beside it, extracted by ``safe_tar`` with each file hashed as written;
3. ``describe``: the new folder is built beside the target under a hidden name
   (``.<name>.partial-<random>``), completed with ``MANIFEST.sha256``, ``metadata.json`` and
   ``summary.md``, then renamed into place (or atomically exchanged with the old version);
4. ``workflow``: the registry records where, when and which manifest; only then, and only when
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
