#!/bin/bash
# Runs the tasks of one globtim-hpc run without a scheduler, at most MAX_PARALLEL at once, each
# under its time limit. Arguments: RUN_DIR TASK_COUNT MAX_PARALLEL TIME_LIMIT_S CPUS JOB_ID SCRIPT
# Writes direct/runner.pid (its session), direct/<index>.pid (the task's timeout(1)) and
# direct/<index>.exit per task, direct/done; the launch command has recorded direct/job_id
# already. A task with a marker direct/cancel/<index> (a cancel of some tasks) is not started.
set -uo pipefail
run_dir=$1 task_count=$2 max_parallel=$3 time_limit_s=$4 cpus=$5 job_id=$6 script=$7
state="$run_dir/direct"
echo "$$" > "$state/runner.pid.tmp" && mv -f "$state/runner.pid.tmp" "$state/runner.pid"

run_task() {
    local index=$1 rc pid
    GLOBTIM_HPC_DIRECT_JOB_ID="$job_id" SLURM_ARRAY_TASK_ID="$index" SLURM_CPUS_PER_TASK="$cpus" \
        timeout --signal=TERM --kill-after=10 "$time_limit_s" \
        bash "$script" > "$run_dir/logs/slurm-${job_id}_${index}.out" 2>&1 &
    pid=$!
    echo "$pid" > "$state/$index.pid"
    # A cancel between the loop's check and the pid file found no pid to signal: look again.
    [ -e "$state/cancel/$index" ] && kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    echo "$rc" > "$state/$index.exit.tmp" && mv -f "$state/$index.exit.tmp" "$state/$index.exit"
}

running=0
for ((index = 0; index < task_count; index++)); do
    if ((running >= max_parallel)); then
        wait -n
        running=$((running - 1))
    fi
    [ -e "$state/cancel/$index" ] && continue
    run_task "$index" &
    running=$((running + 1))
done
wait
date -u +%Y-%m-%dT%H:%M:%SZ > "$state/done"
