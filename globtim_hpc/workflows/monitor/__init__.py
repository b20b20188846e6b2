"""Monitoring: polling runs (``poll``), how often (``interval``), following logs (``logs``)."""

from globtim_hpc.workflows.monitor.interval import PollInterval, poll_floor_s
from globtim_hpc.workflows.monitor.logs import LogFollower, log_candidates, parse_task_selector
from globtim_hpc.workflows.monitor.poll import (
    RunView,
    TaskView,
    change_to_dict,
    needs_poll,
    poll_runs,
    stored_view,
    tracked_jobs,
)

__all__ = [
    "LogFollower",
    "PollInterval",
    "RunView",
    "TaskView",
    "change_to_dict",
    "log_candidates",
    "needs_poll",
    "parse_task_selector",
    "poll_floor_s",
    "poll_runs",
    "stored_view",
    "tracked_jobs",
]
