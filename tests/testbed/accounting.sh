#!/usr/bin/env bash
# accounting.sh on|off: switch falcon's slurm.conf AccountingStorageType between
# accounting_storage/slurmdbd and accounting_storage/none, then restart slurmctld and wait until
# it answers. "on" also starts MariaDB + slurmdbd if they are not running (for example after
# TESTBED_ACCOUNTING=none up.sh). "off" leaves slurmdbd running; sacct then fails with
# "Slurm accounting storage is disabled".  accounting.sh status prints the current mode.
set -euo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
    on) want=slurmdbd ;;
    off) want=none ;;
    status) accounting_mode; exit 0 ;;
    *) echo "usage: $0 on|off|status" >&2; exit 2 ;;
esac
((EUID == 0)) || die "accounting.sh must run as root"
tb_lock
if ! ns_files_ok falcon || [[ ! -f $SLURM_ETC/slurm.conf ]]; then
    die "the bed is not up (tests/testbed/up.sh)"
fi

if [[ $want == slurmdbd ]]; then
    ensure_accounting_backend
fi
if [[ $(accounting_mode) == "$want" ]] && slurmctld_answers; then
    log "accounting already $1 ($want)"
    exit 0
fi
sed -i "s|^AccountingStorageType=.*|AccountingStorageType=accounting_storage/$want|" "$SLURM_ETC/slurm.conf"
echo "$want" >"$STATE/accounting"
stop_slurmctld
start_slurmctld
inhost falcon scontrol reconfigure >/dev/null 2>&1 || true
TB_WAIT=30 wait_for node_usable || die "node falcon not usable after the restart ($(node_state))"
log "accounting $1: AccountingStorageType=accounting_storage/$want, slurmctld answering"
