"""The Python API, the face of the library: ``Cluster`` and ``Run``.

    from globtim_hpc import Cluster

    with Cluster("testbed") as cluster:          # one connection for the whole block
        run = cluster.submit("4d_benchmark", "configs/4d_benchmark.yaml",
                             parameters={"degree": [4, 6, 8]})
        run.wait(timeout_s=600)
        folder = run.collect("results")

The four commands stand on the same calls. Errors are the ``GlobtimHpcError`` hierarchy.
"""

from globtim_hpc.api.cluster import Cluster
from globtim_hpc.api.run import Run
from globtim_hpc.api.views import compare_runs, rebuild_results_index

__all__ = ["Cluster", "Run", "compare_runs", "rebuild_results_index"]
