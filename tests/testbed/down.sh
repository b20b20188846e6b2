#!/usr/bin/env bash
# Tear the test bed down: stop exactly what up.sh started, then remove namespaces, links, the
# route, mounts, the user (if up.sh created it) and the state folder. Safe when nothing is up.
# Works on a half-built bed too (daemons gone, kernel objects left over).
set -uo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

((EUID == 0)) || die "down.sh must run as root"
tb_lock

# ------------------------------------------------------------------ jobs
if ns_files_ok falcon && slurmctld_pid >/dev/null && slurmctld_answers; then
    jobs=$(inhost falcon timeout 5 squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        inhost falcon timeout 5 scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            [[ -z $(inhost falcon timeout 5 squeue -h -t R,CG,S -o %i 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
fi

# ------------------------------------------------------------------ daemons (pid files)
# Signal every daemon at once (each only if its pid lives in that host's namespace), then wait.
declare -A victims=()
add_victim() {
    local f=$1 h=$2 pid
    pid=$(pidfile_pid "$f") || return 0
    if pid_in_host "$pid" "$h"; then
        victims[$pid]=$f
    else
        log "ignoring pid file $f: pid $pid is not in $h's namespace"
    fi
}
if ns_files_ok falcon; then
    add_victim "$PIDS/falcon-slurmd.pid" falcon
    add_victim "$PIDS/falcon-slurmctld.pid" falcon
    add_victim "$PIDS/falcon-slurmdbd.pid" falcon
    add_victim "$MARIADB_PID" falcon
    add_victim "$MUNGE_PID" falcon
    add_victim "$(sshd_pidfile falcon)" falcon
fi
if ns_files_ok mack; then
    add_victim "$(sshd_pidfile mack-mfa)" mack
    add_victim "$(sshd_pidfile mack)" mack
fi
if ((${#victims[@]})); then
    kill -TERM "${!victims[@]}" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do # up to 15 s (mariadb flushes on shutdown)
        alive=0
        for p in "${!victims[@]}"; do pid_running "$p" && alive=1 && break; done
        ((alive)) || break
        sleep 0.05
    done
    for p in "${!victims[@]}"; do
        if pid_running "$p"; then
            log "pid $p (${victims[$p]}) ignored TERM; killing"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    log "stopped ${#victims[@]} daemons"
fi

# ------------------------------------------------------------------ sweep the host namespaces
# Whatever still runs in a host's net or mount namespace is a bed process (ssh sessions, job
# steps, user background processes): there is no other way into those namespaces.
host_procs() {
    local netino='' mntino='' p n m
    [[ -e /run/netns/$1 ]] && netino=$(stat -L -c %i "/run/netns/$1" 2>/dev/null)
    [[ -e $NSDIR/$1.mnt ]] && [[ $(stat -f -c %T "$NSDIR/$1.mnt" 2>/dev/null) == nsfs ]] &&
        mntino=$(stat -L -c %i "$NSDIR/$1.mnt" 2>/dev/null)
    [[ -n $netino || -n $mntino ]] || return 0
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ $p == "$$" || $p == "$BASHPID" ]] && continue
        n=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue
        m=$(stat -L -c %i "/proc/$p/ns/mnt" 2>/dev/null) || continue
        if [[ (-n $netino && $n == "$netino") || (-n $mntino && $m == "$mntino") ]]; then
            pid_running "$p" && echo "$p"
        fi
    done
}
for round in TERM KILL; do
    pids=()
    for h in "${TB_HOSTS[@]}"; do
        mapfile -t -O "${#pids[@]}" pids < <(host_procs "$h")
    done
    ((${#pids[@]})) || break
    log "sweep ($round): ${#pids[@]} processes left in the host namespaces"
    kill "-$round" "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        alive=0
        for p in "${pids[@]}"; do pid_running "$p" && alive=1 && break; done
        ((alive)) || break
        sleep 0.05
    done
done

# ------------------------------------------------------------------ network
for l in tb-l-m tb-m-l tb-m-f tb-f-m; do
    ip link show "$l" >/dev/null 2>&1 && ip link del "$l" 2>/dev/null
done
for h in "${TB_HOSTS[@]}"; do
    if [[ -e /run/netns/$h ]]; then
        ip netns del "$h" 2>/dev/null || { umount -l "/run/netns/$h" 2>/dev/null; rm -f "/run/netns/$h"; }
    fi
done
while ip route show 10.77.0.0/16 2>/dev/null | grep -q .; do
    ip route del 10.77.0.0/16 2>/dev/null || break
done

# ------------------------------------------------------------------ mounts
# Everything mounted at or below the state folder in the root namespace (deepest first).
if [[ -e $TESTBED_DIR ]]; then
    for ((i = 0; i < 5; i++)); do
        mapfile -t mnts < <(awk -v d="$TESTBED_DIR" '$5 == d || index($5, d "/") == 1 {print $5}' \
            /proc/self/mountinfo | sort -r)
        ((${#mnts[@]})) || break
        for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    done
fi

# ------------------------------------------------------------------ user, /projects
if [[ -f $STATE/created-user ]] && id -u "$TB_USER" >/dev/null 2>&1; then
    userdel "$TB_USER" 2>/dev/null || userdel -f "$TB_USER" || log "userdel $TB_USER failed"
elif [[ -f $STATE/orig-password-hash ]] && id -u "$TB_USER" >/dev/null 2>&1; then
    usermod -p "$(cat "$STATE/orig-password-hash")" "$TB_USER" || true
fi
if [[ -f $STATE/created-tc-user ]] && id -u globtimtc >/dev/null 2>&1; then
    userdel globtimtc 2>/dev/null || userdel -f globtimtc || log "userdel globtimtc failed"
fi
if [[ -f $STATE/created-group ]] && getent group "$TB_USER" >/dev/null; then
    groupdel "$TB_USER" 2>/dev/null || true
fi
if [[ -f $STATE/created-projects-dir && -d /projects ]] && ! mountpoint -q /projects; then
    rmdir /projects 2>/dev/null || log "/projects is not empty; left in place"
fi

# ------------------------------------------------------------------ state folder
if [[ -e $TESTBED_DIR ]]; then
    if awk -v d="$TESTBED_DIR" '$5 == d || index($5, d "/") == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
        die "mounts remain under $TESTBED_DIR; not removing it"
    fi
    rm -rf --one-file-system "$TESTBED_DIR"
fi
log "test bed down"
