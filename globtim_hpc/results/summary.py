"""A collected run's ``metadata.json`` (machine-readable) and ``summary.md`` (read first).

Pure functions: the collect workflow gathers the facts (files, status files, scheduler view,
each task's ``results.json``, log tails) and passes them in; nothing here touches the disk.
``schemas/metadata.schema.json`` describes what ``build_metadata`` returns.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from globtim_hpc.models import TaskStatus
from globtim_hpc.results.attempts import render_attempts
from globtim_hpc.results.manifest import ManifestEntry
from globtim_hpc.results.measured import sizing_items

METADATA_SCHEMA_ID = "globtim-hpc/metadata/1"
LOG_TAIL_LINES = 20

# Keys of a task's results.json copied into metadata and shown in the summary table.
RESULT_KEYS = ("status", "l2_error", "n_critical_points", "n_minima", "best_value")


@dataclass
class TaskRecord:
    """Everything known about one task at collection time."""

    task_index: int
    task_id: str
    state: str  # a JobState value
    finished: bool
    collected: bool
    params: dict[str, Any] | None = None
    status_file: dict[str, Any] | None = None
    scheduler: TaskStatus | None = None
    results: dict[str, Any] | None = None  # the task's results.json, if it parsed
    results_note: str | None = None
    log_path: str | None = None  # relative to the run folder
    log_tail: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # results.attempts entries


@dataclass(frozen=True)
class CodeVersion:
    deploy_id: str | None
    git_sha: str | None
    git_dirty: bool | None

    @property
    def gitcommit(self) -> str | None:
        """DrWatson's ``gitcommit`` convention: the commit, with '-dirty' for local changes."""
        if not self.git_sha:
            return None
        return self.git_sha + ("-dirty" if self.git_dirty else "")


def code_version(
    submission: Mapping[str, Any] | None, deploy_id: str | None, git_sha: str | None
) -> CodeVersion:
    sub = submission or {}
    dirty = sub.get("code_dirty", sub.get("git_dirty", sub.get("dirty")))
    deploy = sub.get("deploy")
    if dirty is None and isinstance(deploy, Mapping):
        dirty = deploy.get("dirty", deploy.get("git_dirty"))
    return CodeVersion(
        deploy_id=_str_or_none(sub.get("deploy_id")) or deploy_id,
        git_sha=_str_or_none(sub.get("git_sha")) or git_sha,
        git_dirty=dirty if isinstance(dirty, bool) else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def task_timing(task: TaskRecord, submitted_at: str | None) -> dict[str, Any]:
    status = task.status_file or {}
    sched = task.scheduler
    started = _str_or_none(status.get("started_at")) or (sched.started_at if sched else None)
    ended = _str_or_none(status.get("ended_at")) or (sched.ended_at if sched else None)
    elapsed_s: float | None = None
    start_dt, end_dt = _parse_time(started), _parse_time(ended)
    if start_dt and end_dt and (start_dt.tzinfo is None) == (end_dt.tzinfo is None):
        elapsed_s = max((end_dt - start_dt).total_seconds(), 0.0)
    elif sched is not None and sched.elapsed_s is not None:
        elapsed_s = float(sched.elapsed_s)
    return {"submitted_at": submitted_at, "started_at": started, "ended_at": ended,
            "elapsed_s": elapsed_s}


def task_resources(task: TaskRecord) -> tuple[dict[str, Any] | None, str | None]:
    """(resources, note): sacct's figures when the scheduler had them, else None and why."""
    sched = task.scheduler
    if sched is None:
        return None, "no scheduler data (accounting unavailable or not asked)"
    have = [sched.max_rss_kb, sched.total_cpu_s, sched.node, sched.exit_code]
    if all(value is None for value in have):
        return None, "the scheduler reported no resource figures for this task"
    return (
        {
            "max_rss_kb": sched.max_rss_kb,
            "total_cpu_s": sched.total_cpu_s,
            "node_list": sched.node,
            "exit_code": sched.exit_code,
            "signal": sched.signal,
            "state": sched.state.value,
            "sources": list(sched.sources),
        },
        None,
    )


def result_summary(results: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if results is None:
        return None
    picked: dict[str, Any] = {}
    for key in RESULT_KEYS:
        value = results.get(key)
        if key == "status":
            picked[key] = value if isinstance(value, str) else None
        elif key.startswith("n_"):
            counted = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            picked[key] = value if counted else None
        else:
            number = (
                float(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None
            )
            picked[key] = number if number is not None and math.isfinite(number) else None
    return picked


def build_metadata(
    *,
    run_id: str,
    problem: str,
    cluster: str,
    scheduler: str,
    job_id: str | None,
    remote_dir: str,
    config_hash: str | None,
    submission: Mapping[str, Any] | None,
    submitted_at: str | None,
    version: CodeVersion,
    tasks: Sequence[TaskRecord],
    entries: Sequence[ManifestEntry],
    manifest_sha256: str,
    tool_version: str,
    collected_at: str,
    notes: Sequence[str] = (),
    attempts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The content of ``metadata.json`` (see schemas/metadata.schema.json)."""
    task_items = []
    for task in tasks:
        resources, resources_note = task_resources(task)
        task_items.append(
            {
                "task_index": task.task_index,
                "task_id": task.task_id,
                "state": task.state,
                "reason": task.scheduler.reason if task.scheduler is not None else None,
                "finished": task.finished,
                "collected": task.collected,
                "params": task.params,
                "timing": task_timing(task, submitted_at),
                "resources": resources,
                "resources_note": resources_note,
                "status_file": task.status_file,
                "results": result_summary(task.results),
                "results_note": task.results_note,
                "log": task.log_path,
                "attempts": task.attempts,
            }
        )
    finished = sum(1 for t in tasks if t.finished)
    metadata = {
        "schema": METADATA_SCHEMA_ID,
        "run_id": run_id,
        "problem": problem,
        "cluster": cluster,
        "scheduler": scheduler,
        "job_id": job_id,
        "remote_dir": remote_dir,
        "config_hash": config_hash,
        "deploy_id": version.deploy_id,
        "git_sha": version.git_sha,
        "git_dirty": version.git_dirty,
        "gitcommit": version.gitcommit,
        # Which package versions made the results: the run environment's manifest hash.
        "run_env_manifest_sha256": _str_or_none((submission or {}).get("run_env_manifest_sha256")),
        "globtim_version": _str_or_none((submission or {}).get("globtim_version")),
        "submission": dict(submission) if submission is not None else None,
        "submitted_at": submitted_at,
        "complete": finished == len(tasks),
        "task_count": len(tasks),
        "finished_task_count": finished,
        "tasks": task_items,
        "files": [e.to_dict() for e in entries],
        "file_count": len(entries),
        "byte_count": sum(e.byte_count for e in entries),
        "manifest_sha256": manifest_sha256,
        "tool_version": tool_version,
        "collected_at": collected_at,
        "notes": list(notes),
        "attempts": [dict(a) for a in attempts],
    }
    metadata["sizing"] = sizing_items(metadata)
    return metadata


# ---- summary.md --------------------------------------------------------------------------------


def format_bytes(byte_count: float | None) -> str:
    if byte_count is None:
        return "–"
    value = float(byte_count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


# Bookkeeping the driver needs but a reader does not.
_HIDDEN_PARAMS = frozenset({"problem", "entry", "task_id", "input_sha256"})


def split_params(tasks: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """(values shared by every task, names of the parameters that vary): the sweep's axes."""
    all_params = [dict(t.get("params") or {}) for t in tasks]
    names = [n for n in dict.fromkeys(k for p in all_params for k in p) if n not in _HIDDEN_PARAMS]
    shared: dict[str, Any] = {}
    varying: list[str] = []
    for name in names:
        values = [json.dumps(p.get(name), sort_keys=True) for p in all_params]
        if len(set(values)) == 1:
            shared[name] = all_params[0].get(name)
        else:
            varying.append(name)
    return shared, varying


def _params_text(params: Mapping[str, Any] | None, names: Sequence[str]) -> str:
    if not params or not names:
        return "–"
    return ", ".join(f"{k}={params.get(k)}" for k in names)


def _fence(lines: Sequence[str]) -> str:
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def render_summary(
    metadata: Mapping[str, Any],
    log_tails: Mapping[str, Sequence[str]],
    *,
    plots: Sequence[Mapping[str, Any]] = (),
    plots_note: str | None = None,
    tables: Sequence[str] = (),
) -> str:
    """The Markdown a person reads first. ``log_tails``: task_id -> last lines of its log;
    ``plots``: figures (title, png) to embed; ``tables``: files of the run's tables to name."""
    tasks: list[Mapping[str, Any]] = metadata["tasks"]
    out: list[str] = [f"# Run `{metadata['run_id']}`", ""]
    job = f", job {metadata['job_id']}" if metadata.get("job_id") else ""
    out.append(f"- **Problem:** {metadata['problem']} on cluster *{metadata['cluster']}* "
               f"({metadata['scheduler']}{job})")
    submission = metadata.get("submission") or {}
    who = f" by {submission['user']}" if isinstance(submission.get("user"), str) else ""
    out.append(f"- **Submitted:** {metadata.get('submitted_at') or 'unknown'}{who}")
    done = metadata["finished_task_count"]
    state = "complete" if metadata["complete"] else f"partial: {done} of {metadata['task_count']} tasks finished"
    out.append(f"- **Collected:** {metadata['collected_at']} ({state})")
    dirty = {True: "with local changes (dirty)", False: "clean", None: "dirty flag unknown"}[
        metadata.get("git_dirty")
    ]
    out.append(f"- **Code:** deploy `{metadata.get('deploy_id') or 'unknown'}`, git "
               f"`{metadata.get('git_sha') or 'unknown'}`, {dirty}")
    out.append(f"- **Files:** {metadata['file_count']} files, {format_bytes(metadata['byte_count'])}; "
               f"manifest sha256 `{metadata['manifest_sha256'][:16]}…` (`MANIFEST.sha256`)")
    out.append(f"- **Remote folder:** `{metadata['remote_dir']}`")
    shared, varying = split_params(tasks)
    if shared:
        out.append("- **Parameters of every task:** "
                   + ", ".join(f"{k}={json.dumps(v)}" for k, v in shared.items()))
    out += ["", "## Tasks", ""]
    out.append("| task | swept parameters | state | exit | elapsed | max RSS | L2 error | critical pts "
               "| minima | best value |")
    out.append("|---|---|---|---|---|---|---:|---:|---:|---:|")
    for task in tasks:
        res = task.get("resources") or {}
        status = task.get("status_file") or {}
        exit_code = status.get("exit_code", res.get("exit_code"))
        rss_kb = res.get("max_rss_kb")
        results = task.get("results") or {}
        out.append("| " + " | ".join(_cell(c) for c in (
            task["task_id"],
            _params_text(task.get("params"), varying),
            task["state"] + ("" if task["collected"] else " (not collected)"),
            "–" if exit_code is None else str(exit_code),
            format_duration(task["timing"]["elapsed_s"]),
            format_bytes(rss_kb * 1024 if isinstance(rss_kb, int) else None),
            _number(results.get("l2_error")),
            _number(results.get("n_critical_points")),
            _number(results.get("n_minima")),
            _number(results.get("best_value")),
        )) + " |")

    out += render_attempts(tasks, format_bytes, format_duration)
    if tables:
        out += ["", "All tasks and degrees, one row each: " + ", ".join(f"[`{t}`]({t})" for t in tables)
                + " (docs/output-contract.md lists the columns)."]
    if plots or plots_note:
        out += ["", "## Plots", ""]
        if plots_note:
            out += [f"_{plots_note}_", ""]
        for figure in plots:
            out += [f"![{figure['title']}]({figure['png']})", ""]
    sizing = [s for s in metadata.get("sizing") or [] if s.get("mem_over_estimate") is not None]
    over = [s for s in sizing if s["mem_over_estimate"] > 1.0]
    if over:
        worst = max(over, key=lambda s: s["mem_over_estimate"])
        out += ["", "## Sizing", "",
                f"{len(over)} of {len(sizing)} tasks used more memory than the pre-flight "
                f"estimate; the most: task {worst['task_id']} (degree {worst['degree']}), "
                f"{worst['max_rss_gb']:.2f} GB, {worst['mem_over_estimate']:.1f}x the estimate of "
                f"{worst['estimated_mem_gb']:.2f} GB. The next submission of this problem on "
                "this cluster takes it into account."]

    failed = [t for t in tasks if t["finished"] and t["state"] != "COMPLETED"]
    if failed:
        out += ["", "## Failures", ""]
        for task in failed:
            status = task.get("status_file") or {}
            detail = []
            if status.get("exit_code") is not None:
                detail.append(f"exit code {status['exit_code']}")
            if status.get("signal") is not None:
                detail.append(f"signal {status['signal']}")
            reason = task.get("reason")
            if reason and str(reason) not in detail:
                detail.append(str(reason))
            out.append(f"### Task {task['task_id']}: {task['state']}"
                       + (f" ({', '.join(detail)})" if detail else ""))
            out.append("")
            tail = list(log_tails.get(task["task_id"], ()))
            if tail:
                fence = _fence(tail)
                out.append(f"Last {len(tail)} lines of `{task.get('log')}`:")
                out += ["", fence + "text", *tail, fence, ""]
            else:
                out += ["No log lines were found for this task.", ""]

    waiting = [t for t in tasks if not t["finished"]]
    if waiting:
        out += ["", "## Not finished yet", ""]
        out += [f"- task {t['task_id']}: {t['state']}" for t in waiting]
        out.append("")
        out.append("Collect again when they have finished; files already here are not re-sent.")

    notes = metadata.get("notes") or []
    if notes:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in notes]
    return "\n".join(out).rstrip("\n") + "\n"
