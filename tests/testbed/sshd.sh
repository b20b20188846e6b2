#!/usr/bin/env bash
# sshd.sh HOST stop|start|kill-sessions|status
#   HOST: mack | falcon (the main sshd on port 22) | mack-mfa (mack's MFA sshd on port 2222)
#   stop           stop the listening sshd (waits until it is gone; open sessions stay)
#   start          start it again (waits until it answers)
#   kill-sessions  SIGKILL the per-connection sshd processes below the listener, which drops
#                  every open connection to that sshd; the listener stays up
set -euo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

inst=${1:-}
case $inst in mack | falcon | mack-mfa) ;; *)
    echo "usage: $0 mack|falcon|mack-mfa stop|start|kill-sessions|status" >&2; exit 2 ;;
esac
((EUID == 0)) || die "sshd.sh must run as root"
tb_lock
h=$(sshd_netns "$inst")
ns_files_ok "$h" || die "host $h is not up (tests/testbed/up.sh)"
ip=$(sshd_ip "$inst")
port=$(sshd_port "$inst")
ns=; [[ $h == falcon ]] && ns=mack   # falcon is reachable only from mack

# pids of the sshd processes in the subtree below pid $1 (per-connection session processes).
session_pids() {
    local p c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        pid_running "$c" || continue
        if [[ $(readlink "/proc/$c/exe" 2>/dev/null) == /usr/sbin/sshd ]]; then
            echo "$c"
            session_pids "$c"
        fi
    done
}

case ${2:-} in
    stop)
        stop_sshd "$inst"
        TB_WAIT=10 wait_for eval "! ssh_banner '$ns' $ip $port" || die "sshd $inst still answers"
        log "sshd $inst stopped"
        ;;
    start)
        start_sshd "$inst"
        TB_WAIT=10 wait_for ssh_banner "$ns" "$ip" "$port" || die "sshd $inst does not answer"
        log "sshd $inst answering on $ip:$port"
        ;;
    kill-sessions)
        listener=$(sshd_pid "$inst") || die "sshd $inst is not running"
        mapfile -t pids < <(session_pids "$listener")
        if ((${#pids[@]})); then
            kill -KILL "${pids[@]}" 2>/dev/null || true
            for p in "${pids[@]}"; do wait_pid_gone "$p" 5 || true; done
        fi
        log "sshd $inst: killed ${#pids[@]} session processes; listener $listener still up"
        ;;
    status)
        if sshd_pid "$inst" >/dev/null && ssh_banner "$ns" "$ip" "$port"; then
            echo "sshd $inst: up"
        else
            echo "sshd $inst: down"; exit 1
        fi
        ;;
    *) echo "usage: $0 mack|falcon|mack-mfa stop|start|kill-sessions|status" >&2; exit 2 ;;
esac
