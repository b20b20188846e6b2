"""Sizing that learns: the pre-flight estimate corrected by what earlier tasks of the same
problem on the same cluster really used (registry/sizing.py), as warnings, and as the memory
request when the job config says ``resources.mem_gb: auto``.

For every task of the plan the closest earlier observation is taken (same dimension; then the
nearest degree; then the nearest ``samples_per_dim``; the newest first) and its ratio
MaxRSS / estimate is applied to this task's estimate. A ratio below 1 does not lower anything:
the model stays the floor, so learning only ever adds memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from globtim_hpc.jobs.plan import JobPlan, TaskSpec, plan_hash, task_sizes
from globtim_hpc.jobs.sizing import TaskSize
from globtim_hpc.registry.sizing import Observation

MARGIN = 1.25  # headroom over the predicted peak when choosing mem_gb
MIN_AUTO_MEM_GB = 1.0
TIME_WARN_FRACTION = 0.8  # warn when a similar task took this share of the time limit


@dataclass(frozen=True)
class TaskAdvice:
    task: TaskSpec
    size: TaskSize
    seen: Observation | None
    predicted_mem_gb: float  # the estimate times the learned ratio (at least the estimate)

    @property
    def ratio(self) -> float | None:
        return self.seen.mem_ratio if self.seen is not None else None


def closest(observations: Sequence[Observation], size: TaskSize) -> Observation | None:
    usable = [
        o for o in observations
        if o.mem_ratio is not None and o.degree is not None and o.dim in (None, size.dim)
    ]  # fmt: skip
    if not usable:
        return None
    # ``observations`` is newest first and min() keeps the first of equals: the newest wins.
    return min(
        usable,
        key=lambda o: (abs((o.degree or 0) - size.degree),
                       abs((o.samples_per_dim or 0) - size.samples_per_dim)),
    )  # fmt: skip


def task_advice(plan: JobPlan, observations: Sequence[Observation]) -> list[TaskAdvice]:
    out = []
    for task, size in task_sizes(plan):
        seen = closest(observations, size)
        ratio = seen.mem_ratio if seen is not None else None
        predicted = size.mem_gb * max(ratio or 1.0, 1.0)
        out.append(TaskAdvice(task, size, seen, predicted))
    return out


def auto_mem_gb(advice: Sequence[TaskAdvice]) -> float | None:
    if not advice:
        return None
    peak = max(a.predicted_mem_gb for a in advice)
    return float(max(math.ceil(peak * MARGIN), MIN_AUTO_MEM_GB))


def _learned_line(item: TaskAdvice) -> str | None:
    seen, ratio = item.seen, item.ratio
    if seen is None or ratio is None or ratio <= 1.0:
        return None
    return (
        f"degree {seen.degree} used {ratio:.1f}x the estimate last time "
        f"({seen.max_rss_gb:.2f} GB of {seen.estimated_mem_gb:.2f} GB, run {seen.run_id}); "
        f"degree {item.size.degree} is now expected at {item.predicted_mem_gb:.1f} GB"
    )


def sizing_notes(plan: JobPlan, advice: Sequence[TaskAdvice], chosen_mem_gb: float | None) -> list[str]:
    notes: list[str] = []
    learned = [a for a in advice if a.ratio is not None and a.ratio > 1.0]
    if learned:
        worst = max(learned, key=lambda a: a.predicted_mem_gb)
        line = _learned_line(worst)
        if line:
            if chosen_mem_gb is not None:
                notes.append(f"{line}; requesting {chosen_mem_gb:g} GB")
            elif worst.predicted_mem_gb > plan.resources.mem_gb:
                notes.append(
                    f"{line}, more than the {plan.resources.mem_gb:g} GB requested: raise "
                    f"resources.mem_gb to {math.ceil(worst.predicted_mem_gb * MARGIN)} "
                    "or write 'mem_gb: auto'"
                )
            else:
                notes.append(f"{line}; {plan.resources.mem_gb:g} GB requested")
    elif chosen_mem_gb is not None:
        notes.append(
            f"mem_gb: auto: no earlier run of {plan.problem} on this cluster reported its memory; "
            f"requesting {chosen_mem_gb:g} GB from the estimate"
        )
    limit_s = plan.resources.time_min * 60
    slow = [
        a for a in advice
        if a.seen is not None and a.seen.elapsed_s is not None
        and (a.seen.degree or 0) >= a.size.degree and a.seen.elapsed_s > TIME_WARN_FRACTION * limit_s
    ]  # fmt: skip
    if slow:
        seen = slow[0].seen
        assert seen is not None and seen.elapsed_s is not None
        notes.append(
            f"degree {seen.degree} took {seen.elapsed_s / 60:.1f} min last time, "
            f"{seen.elapsed_s / limit_s:.0%} of the {plan.resources.time_min} min limit"
        )
    return notes


def apply_sizing(plan: JobPlan, observations: Sequence[Observation]) -> JobPlan:
    """The plan with its learned-sizing notes and, for ``mem_gb: auto``, its chosen memory."""
    advice = task_advice(plan, observations)
    resources = plan.resources
    chosen = auto_mem_gb(advice) if resources.mem_auto else None
    if chosen is not None:
        resources = replace(resources, mem_gb=chosen)
    notes = sizing_notes(plan, advice, chosen)
    return replace(
        plan,
        resources=resources,
        config_hash=plan_hash(plan.problem, plan.tasks, resources),
        sizing_notes=tuple(notes),
    )
