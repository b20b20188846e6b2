"""Submission: one run folder, one archive upload, one scheduler command, exactly one job.

``prepare`` makes everything the run folder holds on this machine, ``preflight`` checks the
cluster side in one command, ``exactly_once`` uploads, submits and recovers lost answers.
"""

from globtim_hpc.workflows.submit.exactly_once import SubmitContext, SubmitResult, submit_plan
from globtim_hpc.workflows.submit.preflight import preflight
from globtim_hpc.workflows.submit.prepare import PreparedRun, prepare_run, submit_request

__all__ = [
    "PreparedRun",
    "SubmitContext",
    "SubmitResult",
    "preflight",
    "prepare_run",
    "submit_plan",
    "submit_request",
]
