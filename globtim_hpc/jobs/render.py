"""Job plan + cluster profile -> the batch script text.

The ``#SBATCH`` block is generated here from a sorted mapping; the body comes from a Jinja2
template with StrictUndefined in which every value passes through ``quoting.quote`` (the
``q`` filter) exactly once. The same script runs under SLURM and, for the direct scheduler,
under plain bash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from globtim_hpc import paths, quoting
from globtim_hpc.errors import TemplateError
from globtim_hpc.indices import compress_indices
from globtim_hpc.layout import RunLayout, attempt_job_name, task_id_width

if TYPE_CHECKING:
    from globtim_hpc.jobs.plan import JobPlan
    from globtim_hpc.settings.profile import ClusterProfile

TEMPLATE_NAME = "job.sbatch.j2"
# Without a throttle a large sweep floods the queue and every node's file system at once.
DEFAULT_ARRAY_THROTTLE = 50
GRACE_SIGNAL_S = 120
GRACE_SIGNAL_MIN_TIME_MIN = 10  # SLURM sends signals only to within a minute; short jobs get none

# sbatch reads #SBATCH lines itself, not through a shell, and has no reliable quoting there:
# a value must be one plain word.
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9_./:%@+=,\-\[\]]+$")


@dataclass(frozen=True)
class ScriptInputs:
    run_id: str
    run_dir: str
    julia_project: str | None  # the deployed code folder, or None without a deployment
    attempt: int = 1  # a rerun is attempt 2, 3, ...
    task_indices: tuple[int, ...] | None = None  # a rerun's chosen tasks (None: every task)


def format_time_limit(time_min: int) -> str:
    """SLURM's ``D-HH:MM:SS`` (or ``HH:MM:SS``) from whole minutes."""
    days, rest = divmod(int(time_min), 24 * 60)
    hours, minutes = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:00"
    return f"{days}-{clock}" if days else clock


def format_mem(mem_gb: float) -> str:
    return f"{math.ceil(mem_gb * 1024)}M"


def array_spec(task_count: int, max_parallel: int | None) -> str:
    spec = f"0-{task_count - 1}" if task_count > 1 else "0"
    if max_parallel is not None and task_count > 1:
        spec += f"%{max_parallel}"
    return spec


def indices_spec(indices: Sequence[int], max_parallel: int | None) -> str:
    """The ``--array`` list of a rerun: only the chosen indices, with the throttle."""
    spec = compress_indices(indices)
    if max_parallel is not None and len(set(indices)) > 1:
        spec += f"%{max_parallel}"
    return spec


def sbatch_options(plan: JobPlan, profile: ClusterProfile, inputs: ScriptInputs) -> dict[str, str]:
    resources = plan.resources
    run = RunLayout(inputs.run_dir)
    throttle = resources.max_parallel or profile.slurm_max_array_parallel or DEFAULT_ARRAY_THROTTLE
    if inputs.task_indices is not None:
        array = indices_spec(inputs.task_indices, throttle)
    else:
        array = array_spec(len(plan.tasks), throttle)
    options: dict[str, str] = {
        "job-name": attempt_job_name(inputs.run_id, inputs.attempt),
        "comment": f"globtim-hpc:{inputs.run_id}",
        "output": run.log_pattern,
        "error": run.log_pattern,
        "time": format_time_limit(resources.time_min),
        "mem": format_mem(resources.mem_gb),
        "cpus-per-task": str(resources.cpus),
        "ntasks": "1",
        "array": array,
    }
    if resources.time_min >= GRACE_SIGNAL_MIN_TIME_MIN:
        # Julia cannot catch SIGTERM, but the driver turns SIGINT into an orderly stop that
        # keeps finished degrees; SLURM delivers it to the job step before the time limit.
        options["signal"] = f"INT@{GRACE_SIGNAL_S}"
    partition = resources.partition or profile.slurm_partition
    account = resources.account or profile.slurm_account
    if partition:
        options["partition"] = partition
    if account:
        options["account"] = account
    if profile.slurm_qos:
        options["qos"] = profile.slurm_qos
    return options


def sbatch_block(options: Mapping[str, str]) -> str:
    lines = []
    for key in sorted(options):
        value = options[key]
        if not _SBATCH_SAFE.match(value):
            raise TemplateError(
                f"#SBATCH --{key} cannot carry {value!r}: SLURM reads these lines without a shell "
                "and cannot quote spaces, quotes or other special characters",
                "choose a remote_root, partition and account made of letters, digits and ./_-",
            )
        lines.append(f"#SBATCH --{key}={value}")
    return "\n".join(lines)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["q"] = quoting.quote
    return env


def render_script(plan: JobPlan, profile: ClusterProfile, inputs: ScriptInputs) -> str:
    import jinja2

    context = {
        "sbatch_block": sbatch_block(sbatch_options(plan, profile, inputs)),
        "run_id": inputs.run_id,
        "run_dir": inputs.run_dir,
        "problem": plan.problem,
        "task_count": len(plan.tasks),
        "task_id_width": task_id_width(len(plan.tasks)),
        "julia": profile.julia_executable,
        "driver": plan.driver,
        "modules": list(profile.julia_modules),
        "depot_path": profile.depot_path,
        "julia_project": inputs.julia_project,
        "julia_cpu_target": profile.julia_cpu_target,
        "cpus": plan.resources.cpus,
        "attempt": inputs.attempt,
    }
    try:
        return str(_environment().get_template(TEMPLATE_NAME).render(**context))
    except jinja2.TemplateError as exc:
        raise TemplateError(f"cannot render {TEMPLATE_NAME}: {exc}") from exc
