# shellcheck shell=bash
# Shared functions for the three-host test bed (laptop -> mack -> falcon).
# Sourced by the other scripts in tests/testbed/; not meant to be run on its own.

TESTBED_DIR=${GLOBTIM_TESTBED_DIR:-/var/tmp/globtim-testbed}
TESTBED_DIR=${TESTBED_DIR%/}
TESTBED_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # used by the scripts that source this file
TB_HOSTS=(mack falcon)
TB_USER=globtim

# Addresses (fixed: one bed per machine).
# shellcheck disable=SC2034
TB_LAPTOP_IP=10.77.1.1
TB_MACK_IP=10.77.1.2
# shellcheck disable=SC2034
TB_MACK_IP2=10.77.2.1
TB_FALCON_IP=10.77.2.2
TB_MFA_PORT=2222

# Layout of the state folder.
NSDIR=$TESTBED_DIR/ns            # <host>.mnt / <host>.uts: bind mounts keeping namespaces alive
HOSTS=$TESTBED_DIR/hosts         # <host>/{home,tmp,run,etc}: backing of per-host private folders
PIDS=$TESTBED_DIR/run            # pid files of the daemons that can write there (root)
LOGS=$TESTBED_DIR/logs           # every daemon log
SVC=$TESTBED_DIR/svc             # daemon configs and state (ssh/, etc-slurm/, mysql/, munge/, slurm/)
CLIENT=$TESTBED_DIR/client       # laptop-side ssh key, known_hosts, ssh_config, mfa_password
PROJECTS=$TESTBED_DIR/projects   # backing of /projects on mack and falcon
STATE=$TESTBED_DIR/state         # what up.sh changed outside the state folder (for down.sh)
SSH_CFG=$CLIENT/ssh_config

# pid files that live in falcon's private /run (daemons not running as root write them there).
MUNGE_PID=$HOSTS/falcon/run/munge/munged.pid
MARIADB_PID=$HOSTS/falcon/run/mysqld/mysqld.pid

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# One lock for every script that changes the bed (up, down, accounting, slurmdbd, sshd), so two
# test sessions cannot build or tear down the bed at the same time. It is kept outside the state
# folder (down.sh removes that) and is never deleted (deleting a lock file breaks flock).
TB_LOCKFILE=/run/lock/globtim-testbed.lock
tb_lock() {
    [[ -n ${TB_LOCK_HELD:-} ]] && return 0
    [[ -d /run/lock ]] || TB_LOCKFILE=/run/globtim-testbed.lock
    exec 9>>"$TB_LOCKFILE"
    if ! flock -n 9; then
        log "waiting for another test bed script (lock $TB_LOCKFILE)"
        flock -w "${TB_LOCK_TIMEOUT:-300}" 9 || die "timed out waiting for $TB_LOCKFILE"
    fi
    export TB_LOCK_HELD=$$
}

_tb_t0=${_tb_t0:-$EPOCHREALTIME}
export _tb_t0

_now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

log() {
    local t0=${_tb_t0/./} t1
    t1=$(_now_us)
    printf '[testbed %s +%d.%02ds] %s\n' "$(date +%H:%M:%S)" $(((t1 - t0) / 1000000)) \
        $((((t1 - t0) / 10000) % 100)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

valid_host() { [[ ${1:-} == mack || ${1:-} == falcon ]]; }

host_ip() {
    case $1 in
        mack) echo "$TB_MACK_IP" ;;
        falcon) echo "$TB_FALCON_IP" ;;
        *) return 1 ;;
    esac
}

ns_files_ok() {
    local h=$1
    [[ -e /run/netns/$h && -e $NSDIR/$h.mnt && -e $NSDIR/$h.uts ]] || return 1
    # The files must be nsfs bind mounts, not the plain files left when the mounts are gone.
    [[ $(stat -f -c %T "$NSDIR/$h.mnt" 2>/dev/null) == nsfs ]] &&
        [[ $(stat -f -c %T "$NSDIR/$h.uts" 2>/dev/null) == nsfs ]] &&
        [[ $(stat -f -c %T "/run/netns/$h" 2>/dev/null) == nsfs ]]
}

# Run a command as root inside a host's net + mount + uts namespaces (foreground).
inhost() {
    local h=$1
    shift
    nsenter --net="/run/netns/$h" --mount="$NSDIR/$h.mnt" --uts="$NSDIR/$h.uts" -- "$@" 9>&-
}

# Start a program that does not daemonize itself inside a host, in its own session, with no
# waiting subshell left behind. Its stdout/stderr go to the log file given first.
inhost_bg() {
    local h=$1 out=$2
    shift 2
    (exec nsenter --net="/run/netns/$h" --mount="$NSDIR/$h.mnt" --uts="$NSDIR/$h.uts" -- \
        setsid "$@" </dev/null >>"$out" 2>&1 9>&-) &
}

# Start a daemon that daemonizes itself (forks, parent exits) inside a host.
inhost_daemon() {
    local h=$1 out=$2
    shift 2
    nsenter --net="/run/netns/$h" --mount="$NSDIR/$h.mnt" --uts="$NSDIR/$h.uts" -- \
        setsid "$@" </dev/null >>"$out" 2>&1 9>&-
}

# True if the pid exists and is not a zombie (PID 1 here reaps orphans lazily).
pid_running() {
    local pid=${1:-} st
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # comm may contain spaces; the state follows the last ')'.
    st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# pid from a pid file, if that process is running.
pidfile_pid() {
    local f=$1 pid=
    [[ -s $f ]] || return 1
    read -r pid <"$f" || true
    pid_running "$pid" || return 1
    echo "$pid"
}

# True if pid lives in host h's network namespace.
pid_in_host() {
    local pid=$1 h=$2 want got
    want=$(stat -L -c %i "/run/netns/$h" 2>/dev/null) || return 1
    got=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) || return 1
    [[ $want == "$got" ]]
}

# Running pid of a host daemon from its pid file, checked to live in that host.
daemon_pid() {
    local f=$1 h=$2 pid
    pid=$(pidfile_pid "$f") || return 1
    pid_in_host "$pid" "$h" || return 1
    echo "$pid"
}

# Wait until "$@" succeeds, up to $TB_WAIT seconds (default 30).
wait_for() {
    local limit=${TB_WAIT:-30} start
    start=$(_now_us)
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        (($(_now_us) - start >= limit * 1000000)) && return 1
        sleep 0.05
    done
}

wait_pid_gone() {
    local pid=$1 limit=${2:-10} i
    for ((i = 0; i < limit * 20; i++)); do
        pid_running "$pid" || return 0
        sleep 0.05
    done
    return 1
}

# Stop the daemon named by a pid file: TERM, wait, then KILL. Only if it lives in host $2.
stop_pidfile() {
    local f=$1 h=$2 limit=${3:-10} pid
    pid=$(pidfile_pid "$f") || { rm -f "$f"; return 0; }
    if ! pid_in_host "$pid" "$h"; then
        log "not stopping pid $pid from $f: it is not in $h's namespace"
        rm -f "$f"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_gone "$pid" "$limit"; then
        log "pid $pid ($f) ignored TERM; killing"
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 5 || true
    fi
    rm -f "$f"
}

tail_log() {
    if [[ -f $1 ]]; then tail -n "${2:-15}" "$1" | sed 's/^/    | /' >&2; fi
    return 0
}

# ---------------------------------------------------------------- sshd

sshd_cfg() {
    case $1 in
        mack-mfa) echo "$SVC/mack/ssh/sshd_config_mfa" ;;
        *) echo "$SVC/$1/ssh/sshd_config" ;;
    esac
}
sshd_pidfile() { case $1 in mack-mfa) echo "$PIDS/mack-sshd-mfa.pid" ;; *) echo "$PIDS/$1-sshd.pid" ;; esac; }
sshd_log() { case $1 in mack-mfa) echo "$LOGS/mack-sshd-mfa.log" ;; *) echo "$LOGS/$1-sshd.log" ;; esac; }
sshd_netns() { echo "${1%-mfa}"; }
sshd_port() { if [[ $1 == mack-mfa ]]; then echo "$TB_MFA_PORT"; else echo 22; fi; }
sshd_ip() { host_ip "${1%-mfa}"; }

# sshd instance names: mack, mack-mfa, falcon
sshd_pid() { daemon_pid "$(sshd_pidfile "$1")" "$(sshd_netns "$1")"; }

# True if something answers with an SSH banner at ip:port (from host ns, or root ns if "").
ssh_banner() {
    local ns=$1 ip=$2 port=$3
    local cmd="exec 3<>/dev/tcp/$ip/$port && head -c 4 <&3"
    if [[ -n $ns ]]; then
        [[ $(inhost "$ns" timeout 2 bash -c "$cmd" 2>/dev/null) == SSH- ]]
    else
        [[ $(timeout 2 bash -c "$cmd" 2>/dev/null) == SSH- ]]
    fi
}

start_sshd() {
    local inst=$1 h
    h=$(sshd_netns "$inst")
    if sshd_pid "$inst" >/dev/null; then return 0; fi
    rm -f "$(sshd_pidfile "$inst")"
    inhost_daemon "$h" "$LOGS/$inst-sshd.stderr" /usr/sbin/sshd -f "$(sshd_cfg "$inst")" \
        -E "$(sshd_log "$inst")" ||
        { tail_log "$(sshd_log "$inst")"; die "sshd $inst failed to start"; }
    TB_WAIT=10 wait_for sshd_pid "$inst" || { tail_log "$(sshd_log "$inst")"; die "sshd $inst: no pid"; }
}

stop_sshd() { stop_pidfile "$(sshd_pidfile "$1")" "$(sshd_netns "$1")"; }

# ---------------------------------------------------------------- falcon daemons

SLURM_ETC=$SVC/falcon/etc-slurm

munged_pid() { daemon_pid "$MUNGE_PID" falcon; }
mariadb_pid() { daemon_pid "$MARIADB_PID" falcon; }
slurmdbd_pid() { daemon_pid "$PIDS/falcon-slurmdbd.pid" falcon; }
slurmctld_pid() { daemon_pid "$PIDS/falcon-slurmctld.pid" falcon; }
slurmd_pid() { daemon_pid "$PIDS/falcon-slurmd.pid" falcon; }

munge_works() { inhost falcon sh -c 'munge -n | unmunge' >/dev/null 2>&1; }
slurmctld_answers() { inhost falcon timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
# sacctmgr as root on falcon, always against slurmdbd, whatever slurm.conf says about accounting
# right now (with accounting_storage/none, sacctmgr only says "accounting storage is disabled").
DBCHECK_CONF=$SVC/falcon/slurm-dbcheck.conf
tb_sacctmgr() {
    if [[ ! -s $DBCHECK_CONF || $SLURM_ETC/slurm.conf -nt $DBCHECK_CONF ]]; then
        sed 's|^AccountingStorageType=.*|AccountingStorageType=accounting_storage/slurmdbd|' \
            "$SLURM_ETC/slurm.conf" >"$DBCHECK_CONF.tmp" && mv "$DBCHECK_CONF.tmp" "$DBCHECK_CONF"
    fi
    inhost falcon env SLURM_CONF="$DBCHECK_CONF" timeout 10 sacctmgr "$@"
}
slurmdbd_answers() { tb_sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
mariadb_answers() {
    inhost falcon mariadb --no-defaults -u root --socket=/run/mysqld/mysqld.sock -e 'select 1' \
        >/dev/null 2>&1
}
# State of node falcon as sinfo sees it (idle, mix, alloc, down*, ...).
node_state() { inhost falcon timeout 5 sinfo -h -n falcon -o %t 2>/dev/null | head -n1; }
node_usable() {
    local s
    s=$(node_state) || return 1
    [[ $s =~ ^(idle|mix|alloc|comp)$ ]]
}

# Accounting mode in falcon's slurm.conf: "slurmdbd" or "none".
accounting_mode() {
    if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_ETC/slurm.conf" \
        2>/dev/null; then
        echo slurmdbd
    else
        echo none
    fi
}

start_munged() {
    munged_pid >/dev/null && return 0
    local d=$SVC/falcon/munge
    touch "$LOGS/falcon-munged.log"
    chown munge:munge "$LOGS/falcon-munged.log"
    inhost falcon install -d -o munge -g munge -m 0755 /run/munge
    inhost_daemon falcon "$LOGS/falcon-munged.stderr" runuser -u munge -- /usr/sbin/munged \
        --key-file="$d/munge.key" --pid-file=/run/munge/munged.pid \
        --log-file="$LOGS/falcon-munged.log" --seed-file="$d/munged.seed" ||
        { tail_log "$LOGS/falcon-munged.log"; die "munged failed to start"; }
    TB_WAIT=10 wait_for munge_works || { tail_log "$LOGS/falcon-munged.log"; die "munge does not work"; }
}

# MariaDB datadir must exist (init_mariadb). Starts the server and waits for it.
start_mariadb() {
    mariadb_pid >/dev/null && return 0
    local d=$SVC/falcon/mysql
    touch "$LOGS/falcon-mariadb.log"
    chown mysql:mysql "$LOGS/falcon-mariadb.log"
    inhost falcon install -d -o mysql -g mysql -m 0755 /run/mysqld
    inhost_bg falcon "$LOGS/falcon-mariadb.stderr" /usr/sbin/mariadbd --no-defaults --user=mysql \
        --datadir="$d/data" --socket=/run/mysqld/mysqld.sock --skip-networking \
        --pid-file=/run/mysqld/mysqld.pid --log-error="$LOGS/falcon-mariadb.log" \
        --innodb-buffer-pool-size=512M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
    TB_WAIT=60 wait_for mariadb_answers || { tail_log "$LOGS/falcon-mariadb.log"; die "mariadb did not answer"; }
}

init_mariadb() {
    local d=$SVC/falcon/mysql
    [[ -d $d/data/mysql ]] && return 0
    install -d -o mysql -g mysql -m 0750 "$d" "$d/data"
    inhost falcon mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$LOGS/falcon-mariadb-install.log" 2>&1 ||
        { tail_log "$LOGS/falcon-mariadb-install.log"; die "mariadb-install-db failed"; }
}

# Writes slurmdbd.conf (random db password) and creates the db user.
setup_slurmdbd_conf() {
    local pass
    [[ -f $SLURM_ETC/slurmdbd.conf ]] && return 0
    pass=$(openssl rand -hex 16)
    inhost falcon mariadb --no-defaults -u root --socket=/run/mysqld/mysqld.sock -e "
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
        ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        FLUSH PRIVILEGES;" || die "cannot create the slurm db user"
    (
        umask 077
        cat >"$SLURM_ETC/slurmdbd.conf" <<EOF
# globtim-hpc test bed: slurmdbd on falcon (written by tests/testbed)
DbdHost=falcon
DbdAddr=$TB_FALCON_IP
DbdPort=6819
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
PidFile=$PIDS/falcon-slurmdbd.pid
LogFile=$LOGS/falcon-slurmdbd.log
DebugLevel=info
EOF
    )
    chmod 0600 "$SLURM_ETC/slurmdbd.conf"
}

start_slurmdbd() {
    slurmdbd_pid >/dev/null || {
        rm -f "$PIDS/falcon-slurmdbd.pid"
        inhost_daemon falcon "$LOGS/falcon-slurmdbd.stderr" /usr/sbin/slurmdbd ||
            { tail_log "$LOGS/falcon-slurmdbd.log"; die "slurmdbd failed to start"; }
    }
    TB_WAIT=30 wait_for slurmdbd_answers || { tail_log "$LOGS/falcon-slurmdbd.log"; die "slurmdbd does not answer"; }
}

# Everything accounting needs: mariadb (initialised), slurmdbd.conf, slurmdbd, cluster/account/user.
ensure_accounting_backend() {
    init_mariadb
    start_mariadb
    setup_slurmdbd_conf
    start_slurmdbd
    # Each step is checked by a query and retried: right after slurmdbd first answers, an "add"
    # can still fail.
    local i out=$LOGS/falcon-sacctmgr.log
    for ((i = 0; i < 50; i++)); do
        tb_sacctmgr -n -P show user "$TB_USER" format=user,defaultaccount 2>>"$out" |
            grep -qx "$TB_USER|testbed" && return 0
        if ! tb_sacctmgr -n -P show cluster format=cluster 2>>"$out" | grep -qx falcon; then
            tb_sacctmgr -i add cluster falcon >>"$out" 2>&1 || true
        elif ! tb_sacctmgr -n -P show account testbed format=account 2>>"$out" | grep -qx testbed; then
            tb_sacctmgr -i add account testbed Cluster=falcon Description=testbed \
                Organization=globtim >>"$out" 2>&1 || true
        else
            tb_sacctmgr -i add user "$TB_USER" Account=testbed Cluster=falcon >>"$out" 2>&1 || true
        fi
        sleep 0.1
    done
    tail_log "$out"
    die "sacctmgr could not add cluster falcon / account testbed / user $TB_USER"
}

start_slurmctld() {
    slurmctld_pid >/dev/null || {
        rm -f "$PIDS/falcon-slurmctld.pid"
        inhost_daemon falcon "$LOGS/falcon-slurmctld.stderr" /usr/sbin/slurmctld ||
            { tail_log "$LOGS/falcon-slurmctld.log"; die "slurmctld failed to start"; }
    }
    TB_WAIT=30 wait_for slurmctld_answers || { tail_log "$LOGS/falcon-slurmctld.log"; die "slurmctld does not answer"; }
}

start_slurmd() {
    slurmd_pid >/dev/null || {
        rm -f "$PIDS/falcon-slurmd.pid"
        inhost_daemon falcon "$LOGS/falcon-slurmd.stderr" /usr/sbin/slurmd ||
            { tail_log "$LOGS/falcon-slurmd.log"; die "slurmd failed to start"; }
    }
    TB_WAIT=30 wait_for node_usable || { tail_log "$LOGS/falcon-slurmd.log"; die "node falcon not usable ($(node_state))"; }
}

stop_slurmctld() { stop_pidfile "$PIDS/falcon-slurmctld.pid" falcon 15; }
stop_slurmd() { stop_pidfile "$PIDS/falcon-slurmd.pid" falcon 15; }
stop_slurmdbd() { stop_pidfile "$PIDS/falcon-slurmdbd.pid" falcon 15; }
stop_mariadb() { stop_pidfile "$MARIADB_PID" falcon 30; }
stop_munged() { stop_pidfile "$MUNGE_PID" falcon; }

# ---------------------------------------------------------------- health

# Runs the checks; with "verbose" prints "ok|FAIL|skip  name" per check and runs them all,
# otherwise stops at the first failure. A functional check whose daemon has no live pid is
# skipped (it would only wait for a timeout), so a dead bed is diagnosed in well under a second.
# Returns 0 iff every check passed.
bed_check() {
    local verbose=${1:-quiet} failed=0
    # _chk NAME CMD...: returns 1 (and records the failure) if CMD fails.
    _chk() {
        local name=$1
        shift
        if "$@" >/dev/null 2>&1; then
            [[ $verbose == verbose ]] && printf 'ok    %s\n' "$name"
            return 0
        fi
        [[ $verbose == verbose ]] && printf 'FAIL  %s\n' "$name"
        failed=1
        return 1
    }
    _skip() { [[ $verbose == verbose ]] && printf 'skip  %s (%s)\n' "$1" "$2"; failed=1; }
    _stop() { [[ $verbose != verbose && $failed == 1 ]]; }

    _chk "bed completed by up.sh ($STATE/up-complete)" test -f "$STATE/up-complete"; _stop && return 1
    _chk "namespaces mack falcon (/run/netns, $NSDIR)" eval 'ns_files_ok mack && ns_files_ok falcon' || return 1
    _chk "user $TB_USER" id -u "$TB_USER"; _stop && return 1
    _chk "client key, known_hosts, ssh_config" \
        test -s "$CLIENT/id_ed25519" -a -s "$SSH_CFG" -a -s "$CLIENT/known_hosts"; _stop && return 1
    _chk "laptop has no route to 10.77.2.2" eval '! ip route get 10.77.2.2'; _stop && return 1
    local ok_m=0 ok_f=0
    if _chk "sshd mack (pid)" sshd_pid mack; then
        _chk "sshd mack answers $TB_MACK_IP:22" ssh_banner "" "$TB_MACK_IP" 22 && ok_m=1
    else _skip "sshd mack answers" "no sshd"; fi
    _stop && return 1
    if _chk "sshd mack-mfa (pid)" sshd_pid mack-mfa; then
        _chk "sshd mack-mfa answers $TB_MACK_IP:$TB_MFA_PORT" ssh_banner "" "$TB_MACK_IP" "$TB_MFA_PORT"
    else _skip "sshd mack-mfa answers" "no sshd"; fi
    _stop && return 1
    if _chk "sshd falcon (pid)" sshd_pid falcon; then
        _chk "sshd falcon answers $TB_FALCON_IP:22 (from mack)" ssh_banner mack "$TB_FALCON_IP" 22 && ok_f=1
    else _skip "sshd falcon answers" "no sshd"; fi
    _stop && return 1
    if ((ok_m && ok_f)); then
        _chk "ssh -F $SSH_CFG falcon true" timeout 10 ssh -F "$SSH_CFG" falcon true
    else _skip "ssh -F $SSH_CFG falcon true" "an sshd is down"; fi
    _stop && return 1
    if _chk "munged (pid)" munged_pid; then
        _chk "munge -n | unmunge" munge_works
    else _skip "munge -n | unmunge" "no munged"; fi
    _stop && return 1
    if _chk "slurmctld (pid)" slurmctld_pid && _chk "slurmctld answers (scontrol ping)" slurmctld_answers; then
        if _chk "slurmd (pid)" slurmd_pid; then
            _chk "node falcon usable (state: $(node_state 2>/dev/null))" node_usable
        else _skip "node falcon usable" "no slurmd"; fi
    else _skip "slurmd, node falcon usable" "slurmctld down"; fi
    _stop && return 1
    if [[ $(accounting_mode) == slurmdbd ]]; then
        _chk "mariadbd (pid)" mariadb_pid
        if _chk "slurmdbd (pid)" slurmdbd_pid; then
            _chk "slurmdbd answers (sacctmgr)" slurmdbd_answers
        else _skip "slurmdbd answers" "no slurmdbd"; fi
    else
        [[ $verbose == verbose ]] && printf 'skip  slurmdbd (accounting is off)\n'
    fi
    return $failed
}

# Copy the stand-in tools (tests/stand_in) to /projects/tools/stand_in inside the hosts.
install_stand_ins() {
    local src=$TESTBED_SRC/../stand_in dst=$PROJECTS/tools/stand_in
    [[ -d $PROJECTS ]] || return 0
    install -d -m 0755 "$PROJECTS/tools"
    rm -rf "$dst.new"
    if [[ -d $src ]]; then
        cp -a "$src/." "$dst.new/" 2>/dev/null || { mkdir -p "$dst.new" && cp -a "$src/." "$dst.new/"; }
    else
        mkdir -p "$dst.new"
    fi
    find "$dst.new" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} + 2>/dev/null || true
    chown -R root:root "$dst.new"
    chmod -R a+rX,go-w "$dst.new"
    find "$dst.new" -type f -exec chmod a+rx {} +
    rm -rf "$dst"
    mv "$dst.new" "$dst"
}
