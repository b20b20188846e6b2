#!/usr/bin/env bash
# slurmdbd.sh stop|start|status: stop or start only slurmdbd on falcon (MariaDB stays up).
# stop waits until slurmdbd is gone; start waits until it answers sacctmgr.
set -euo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

((EUID == 0)) || die "slurmdbd.sh must run as root"
tb_lock
ns_files_ok falcon || die "the bed is not up (tests/testbed/up.sh)"
case ${1:-} in
    stop)
        stop_slurmdbd
        TB_WAIT=10 wait_for eval '! slurmdbd_answers' || die "slurmdbd still answers"
        log "slurmdbd stopped"
        ;;
    start)
        [[ -f $SLURM_ETC/slurmdbd.conf ]] || ensure_accounting_backend
        start_mariadb
        start_slurmdbd
        log "slurmdbd answering"
        ;;
    status)
        if slurmdbd_pid >/dev/null && slurmdbd_answers; then echo "slurmdbd: up"; else echo "slurmdbd: down"; exit 1; fi
        ;;
    *) echo "usage: $0 stop|start|status" >&2; exit 2 ;;
esac
