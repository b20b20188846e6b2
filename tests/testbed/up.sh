#!/usr/bin/env bash
# Bring the three-host test bed up: laptop (root namespace) -> mack -> falcon.
# Idempotent: on a healthy bed it only refreshes the stand-in tools and says "already up".
# A half-built bed (namespaces, links, mounts or the user left over without daemons behind them)
# is cleared with down.sh and rebuilt.
#
# Environment:
#   GLOBTIM_TESTBED_DIR   state folder (default /var/tmp/globtim-testbed)
#   TESTBED_ACCOUNTING    slurmdbd (default) | none
#   TESTBED_MINJOBAGE     slurm.conf MinJobAge (default 300)
#   TESTBED_CPUS          declare this many CPUs on node falcon instead of the real count (with
#                         SlurmdParameters=config_overrides): more array tasks run at once
set -euo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/testbed/tcuser.sh
source "$(dirname "${BASH_SOURCE[0]}")/tcuser.sh"

((EUID == 0)) || die "up.sh must run as root"
tb_lock

want_acct=${TESTBED_ACCOUNTING:-slurmdbd}
case $want_acct in
    slurmdbd | on | accounting_storage/slurmdbd) want_acct=slurmdbd ;;
    none | off | accounting_storage/none) want_acct=none ;;
    *) die "TESTBED_ACCOUNTING must be slurmdbd or none, not '$want_acct'" ;;
esac
minjobage=${TESTBED_MINJOBAGE:-300}
[[ $minjobage =~ ^[0-9]+$ ]] || die "TESTBED_MINJOBAGE must be a number"
want_cpus=${TESTBED_CPUS:-}
[[ -z $want_cpus || $want_cpus =~ ^[1-9][0-9]*$ ]] || die "TESTBED_CPUS must be a positive number"

# ------------------------------------------------------------------ already up?
settings_match() {
    if [[ -n ${TESTBED_ACCOUNTING:-} && $(accounting_mode) != "$want_acct" ]]; then
        log "bed is up with accounting=$(accounting_mode) but TESTBED_ACCOUNTING=$want_acct: rebuilding"
        return 1
    fi
    if [[ -n ${TESTBED_MINJOBAGE:-} ]] && ! grep -qx "MinJobAge=$minjobage" "$SLURM_ETC/slurm.conf"; then
        log "bed is up with another MinJobAge than TESTBED_MINJOBAGE=$minjobage: rebuilding"
        return 1
    fi
    if [[ -n $want_cpus ]] && ! grep -q "^NodeName=falcon CPUs=$want_cpus " "$SLURM_ETC/slurm.conf"; then
        log "bed is up with another CPU count than TESTBED_CPUS=$want_cpus: rebuilding"
        return 1
    fi
}
if bed_check quiet; then
    if settings_match; then
        ensure_tcsh_user
        install_stand_ins
        echo "test bed already up ($TESTBED_DIR, accounting=$(accounting_mode))"
        exit 0
    fi
elif [[ -f $STATE/up-complete ]] && ns_files_ok mack && ns_files_ok falcon &&
    id -u "$TB_USER" >/dev/null 2>&1 && munged_pid >/dev/null && slurmctld_pid >/dev/null &&
    slurmd_pid >/dev/null; then
    # The core (namespaces, munge, slurmctld, slurmd) is alive: only services a test stops on
    # purpose (an sshd, slurmdbd, MariaDB) can be missing. Start those instead of rebuilding.
    log "bed is up but not healthy; starting stopped services"
    (
        for i in mack mack-mfa falcon; do start_sshd "$i"; done
        if [[ $(accounting_mode) == slurmdbd || -f $SLURM_ETC/slurmdbd.conf ]]; then
            start_mariadb
            start_slurmdbd
        fi
    ) || true
    if bed_check quiet && settings_match; then
        ensure_tcsh_user
        install_stand_ins
        echo "test bed already up, stopped services restarted ($TESTBED_DIR, accounting=$(accounting_mode))"
        exit 0
    fi
    log "repair did not make the bed healthy: rebuilding"
fi

# ------------------------------------------------------------------ packages
bash "$TESTBED_SRC/packages.sh" >&2 || die "packages.sh failed"
log "packages present"

# ------------------------------------------------------------------ clear leftovers
leftover=()
[[ -e $TESTBED_DIR ]] && leftover+=("$TESTBED_DIR")
for h in "${TB_HOSTS[@]}"; do [[ -e /run/netns/$h ]] && leftover+=("/run/netns/$h"); done
ip link show tb-l-m >/dev/null 2>&1 && leftover+=(tb-l-m)
ip route show 10.77.0.0/16 2>/dev/null | grep -q . && leftover+=("route 10.77.0.0/16")
if ((${#leftover[@]})); then
    log "clearing a half-built or stale bed: ${leftover[*]}"
    bash "$TESTBED_SRC/down.sh" >&2 || die "down.sh could not clear the old bed"
fi

# ------------------------------------------------------------------ folders
log "building the bed in $TESTBED_DIR (accounting=$want_acct)"
umask 022
install -d -m 0755 "$TESTBED_DIR" "$NSDIR" "$HOSTS" "$PIDS" "$LOGS" "$SVC" "$STATE" "$PROJECTS"
install -d -m 0700 "$CLIENT"
for h in "${TB_HOSTS[@]}"; do
    install -d -m 0755 "$HOSTS/$h" "$HOSTS/$h/home" "$HOSTS/$h/run" "$HOSTS/$h/etc" "$SVC/$h/ssh"
    install -d -m 1777 "$HOSTS/$h/tmp"
    install -d -m 0755 "$HOSTS/$h/run/sshd"
done
install -d -m 0755 "$SLURM_ETC" "$SVC/falcon/slurm" "$SVC/falcon/slurm/state" "$SVC/falcon/slurm/spool"
install -d -o munge -g munge -m 0700 "$SVC/falcon/munge"
echo "$want_acct" >"$STATE/accounting"

# /etc/hosts of each host: the names resolve to the address reachable from that host.
cat >"$HOSTS/mack/etc/hosts" <<EOF
127.0.0.1	localhost
$TB_MACK_IP	mack
$TB_FALCON_IP	falcon
$TB_LAPTOP_IP	laptop
EOF
cat >"$HOSTS/falcon/etc/hosts" <<EOF
127.0.0.1	localhost
$TB_FALCON_IP	falcon
$TB_MACK_IP2	mack
EOF

# /projects mount point (empty folder in the root fs; only mack and falcon mount something on it).
if [[ ! -e /projects ]]; then
    mkdir -m 0755 /projects
    touch "$STATE/created-projects-dir"
fi
[[ -d /projects ]] || die "/projects exists and is not a folder"

# ------------------------------------------------------------------ user
if ! getent group "$TB_USER" >/dev/null; then touch "$STATE/created-group"; fi
if ! id -u "$TB_USER" >/dev/null 2>&1; then
    touch "$STATE/created-user"
    useradd -M -d "/home/$TB_USER" -s /bin/bash -U "$TB_USER"
else
    getent shadow "$TB_USER" | cut -d: -f2 >"$STATE/orig-password-hash"
    chmod 0600 "$STATE/orig-password-hash"
fi
usermod -p '*' "$TB_USER" # not locked (UsePAM no refuses locked accounts)
# Password for the keyboard-interactive step of the MFA sshd on mack:2222.
mfa_pw=$(openssl rand -hex 12)
(umask 077 && printf '%s\n' "$mfa_pw" >"$CLIENT/mfa_password")
usermod -p "$(printf '%s\n' "$mfa_pw" | openssl passwd -6 -stdin)" "$TB_USER"
uid=$(id -u "$TB_USER")
gid=$(id -g "$TB_USER")
install -d -o "$uid" -g "$gid" -m 0755 "$PROJECTS/globtim"
install -d -m 0755 "$PROJECTS/tools"
log "user $TB_USER ($uid:$gid) ready"

# ------------------------------------------------------------------ network
ip netns add mack
ip netns add falcon
ip link add tb-l-m type veth peer name tb-m-l
ip link add tb-m-f type veth peer name tb-f-m
ip link set tb-m-l netns mack
ip link set tb-m-f netns mack
ip link set tb-f-m netns falcon
echo 1 >/proc/sys/net/ipv6/conf/tb-l-m/disable_ipv6 2>/dev/null || true
ip addr add "$TB_LAPTOP_IP/24" dev tb-l-m
ip link set tb-l-m up
ip route replace unreachable 10.77.0.0/16
nsenter --net=/run/netns/mack sh -ec "
    echo 0 >/proc/sys/net/ipv4/ip_forward
    for i in tb-m-l tb-m-f; do echo 1 >/proc/sys/net/ipv6/conf/\$i/disable_ipv6 2>/dev/null || true; done
    ip link set lo up
    ip addr add $TB_MACK_IP/24 dev tb-m-l
    ip addr add $TB_MACK_IP2/24 dev tb-m-f
    ip link set tb-m-l up
    ip link set tb-m-f up"
nsenter --net=/run/netns/falcon sh -ec "
    echo 1 >/proc/sys/net/ipv6/conf/tb-f-m/disable_ipv6 2>/dev/null || true
    ip link set lo up
    ip addr add $TB_FALCON_IP/24 dev tb-f-m
    ip link set tb-f-m up"
log "network up"

# ------------------------------------------------------------------ mount + uts namespaces
# unshare --mount=FILE needs FILE on a private mount.
mountpoint -q "$NSDIR" || mount --bind "$NSDIR" "$NSDIR"
mount --make-private "$NSDIR"

# Runs inside the new mount + uts namespace of host $1 (still in the root network namespace).
# shellcheck disable=SC2016
ns_setup='
set -e
h=$1 tb=$2
hostname "$h"
# Copies of the namespace bind mounts would keep other namespaces alive: drop them.
umount -l "$tb/ns" 2>/dev/null || true
if mountpoint -q /run/netns; then umount -l /run/netns; fi
for m in $(grep -o " /run/netns/[^ ]*" /proc/self/mounts | sort -ur); do umount -l "$m" 2>/dev/null || true; done
if [ "$h" = falcon ]; then
    mount -t tmpfs -o size=32m,mode=0755 falcon-home /home
    mount --bind "$tb/svc/falcon/etc-slurm" /etc/slurm
else
    mount --bind "$tb/hosts/$h/home" /home
fi
mount --bind "$tb/hosts/$h/tmp" /tmp
mount --bind "$tb/hosts/$h/run" /run
mount --bind "$tb/hosts/$h/etc/hosts" /etc/hosts
mount --bind "$tb/projects" /projects
mount -t tmpfs -o size=64k,mode=0755 tb-hidden "$tb/hosts"
'
for h in "${TB_HOSTS[@]}"; do
    : >"$NSDIR/$h.mnt"
    : >"$NSDIR/$h.uts"
    unshare --mount="$NSDIR/$h.mnt" --uts="$NSDIR/$h.uts" --propagation private \
        bash -c "$ns_setup" ns-setup "$h" "$TESTBED_DIR"
    ns_files_ok "$h" || die "namespaces of $h not bound"
    [[ $(inhost "$h" hostname) == "$h" ]] || die "hostname of $h not set"
done
log "mount + uts namespaces ready"

# MariaDB's datadir takes about a second: create it while the rest is set up.
acct_pid=
if [[ $want_acct == slurmdbd ]]; then
    init_mariadb &
    acct_pid=$!
fi

# ------------------------------------------------------------------ ssh
for h in "${TB_HOSTS[@]}"; do
    ssh-keygen -q -t ed25519 -N '' -C "$h-host" -f "$SVC/$h/ssh/ssh_host_ed25519_key"
done
ssh-keygen -q -t ed25519 -N '' -C "globtim-testbed-client" -f "$CLIENT/id_ed25519"
chmod 0600 "$CLIENT/id_ed25519"
ssh-keygen -q -t ed25519 -N '' -C "globtim@mack" -f "$STATE/mack_user_key"

write_sshd_config() {
    local h=$1 ip=$2 f=$3 port=$4 pidf=$5 mfa=$6
    {
        echo "# globtim-hpc test bed: sshd on $h (written by tests/testbed/up.sh)"
        echo "Port $port"
        echo "ListenAddress $ip"
        echo "HostKey $SVC/$h/ssh/ssh_host_ed25519_key"
        echo "PidFile $pidf"
        echo "PubkeyAuthentication yes"
        echo "AuthorizedKeysFile .ssh/authorized_keys"
        echo "PasswordAuthentication no"
        echo "PermitRootLogin no"
        echo "PermitEmptyPasswords no"
        echo "AllowUsers $TB_USER $TB_TC_USER"
        if [[ $mfa == yes ]]; then
            echo "UsePAM yes"
            echo "KbdInteractiveAuthentication yes"
            echo "AuthenticationMethods publickey,keyboard-interactive"
        else
            echo "UsePAM no"
            echo "KbdInteractiveAuthentication no"
        fi
        echo "AllowTcpForwarding yes"
        echo "X11Forwarding no"
        echo "PrintMotd no"
        echo "PrintLastLog no"
        echo "StrictModes yes"
        echo "MaxStartups 100:30:200"
        echo "LogLevel VERBOSE"
        echo "AcceptEnv LANG LC_*"
        echo "Subsystem sftp /usr/lib/openssh/sftp-server"
    } >"$f"
}
write_sshd_config mack "$TB_MACK_IP" "$(sshd_cfg mack)" 22 "$(sshd_pidfile mack)" no
write_sshd_config mack "$TB_MACK_IP" "$(sshd_cfg mack-mfa)" "$TB_MFA_PORT" "$(sshd_pidfile mack-mfa)" yes
write_sshd_config falcon "$TB_FALCON_IP" "$(sshd_cfg falcon)" 22 "$(sshd_pidfile falcon)" no

mack_hostkey=$(cut -d' ' -f1,2 "$SVC/mack/ssh/ssh_host_ed25519_key.pub")
falcon_hostkey=$(cut -d' ' -f1,2 "$SVC/falcon/ssh/ssh_host_ed25519_key.pub")
cat >"$CLIENT/known_hosts" <<EOF
mack,$TB_MACK_IP $mack_hostkey
falcon,$TB_FALCON_IP $falcon_hostkey
[mack]:$TB_MFA_PORT,[$TB_MACK_IP]:$TB_MFA_PORT $mack_hostkey
EOF
chmod 0644 "$CLIENT/known_hosts"
cat >"$SSH_CFG" <<EOF
# globtim-hpc test bed client config (written by tests/testbed/up.sh)
Host mack
    HostName $TB_MACK_IP
Host falcon
    HostName $TB_FALCON_IP
    ProxyJump mack
Host mack falcon
    User $TB_USER
    Port 22
    IdentityFile $CLIENT/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $CLIENT/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
EOF
chmod 0644 "$SSH_CFG"

# Homes: /etc/skel, authorized_keys (client key; on falcon also mack's user key), and on mack the
# user's own key for falcon plus a known_hosts entry for falcon.
client_pub=$(cat "$CLIENT/id_ed25519.pub")
mack_pub=$(cat "$STATE/mack_user_key.pub")
# shellcheck disable=SC2016
home_setup='
set -e
u=$1 uid=$2 gid=$3 keys=$4
home=/home/$u
install -d -o "$uid" -g "$gid" -m 0755 "$home"
cp -rT /etc/skel "$home"
install -d -o "$uid" -g "$gid" -m 0700 "$home/.ssh"
printf "%s\n" "$keys" >"$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
chown -R "$uid:$gid" "$home"
'
inhost mack bash -c "$home_setup" home-setup "$TB_USER" "$uid" "$gid" "$client_pub"
inhost falcon bash -c "$home_setup" home-setup "$TB_USER" "$uid" "$gid" "$client_pub
$mack_pub"
inhost mack install -o "$uid" -g "$gid" -m 0600 "$STATE/mack_user_key" "/home/$TB_USER/.ssh/id_ed25519"
inhost mack install -o "$uid" -g "$gid" -m 0644 "$STATE/mack_user_key.pub" "/home/$TB_USER/.ssh/id_ed25519.pub"
printf 'falcon,%s %s\n' "$TB_FALCON_IP" "$falcon_hostkey" |
    inhost mack install -o "$uid" -g "$gid" -m 0644 /dev/stdin "/home/$TB_USER/.ssh/known_hosts"
rm -f "$STATE/mack_user_key"

start_sshd mack
start_sshd mack-mfa
start_sshd falcon
log "sshd up on mack (:22, MFA :$TB_MFA_PORT) and falcon"

# ------------------------------------------------------------------ munge + slurm on falcon
(umask 077 && mungekey --create --bits=1024 --keyfile="$SVC/falcon/munge/munge.key" --force)
chown munge:munge "$SVC/falcon/munge/munge.key"
chmod 0400 "$SVC/falcon/munge/munge.key"
start_munged
log "munged up"

nodeline=$(inhost falcon slurmd -C 2>/dev/null | grep '^NodeName=' | head -n1)
[[ $nodeline == NodeName=falcon* ]] || die "slurmd -C in falcon gave '$nodeline'"
slurmd_params=
if [[ -n $want_cpus ]]; then
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$nodeline")
    nodeline="NodeName=falcon CPUs=$want_cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$want_cpus ThreadsPerCore=1 RealMemory=$mem"
    slurmd_params="SlurmdParameters=config_overrides"
fi

write_slurm_conf() {
    cat >"$SLURM_ETC/slurm.conf" <<EOF
# globtim-hpc test bed: SLURM on falcon (written by tests/testbed/up.sh)
ClusterName=falcon
SlurmctldHost=falcon($TB_FALCON_IP)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SVC/falcon/slurm/state
SlurmdSpoolDir=$SVC/falcon/slurm/spool
SlurmctldPidFile=$PIDS/falcon-slurmctld.pid
SlurmdPidFile=$PIDS/falcon-slurmd.pid
SlurmctldLogFile=$LOGS/falcon-slurmctld.log
SlurmdLogFile=$LOGS/falcon-slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
KillWait=5
MinJobAge=$minjobage
MaxArraySize=2001
MaxJobCount=20000
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2,default_queue_depth=1000
AccountingStorageType=accounting_storage/$want_acct
AccountingStorageHost=falcon
AccountingStoragePort=6819
JobCompType=jobcomp/none
MailProg=/bin/true
TmpFS=/tmp
InactiveLimit=0
$slurmd_params
$nodeline NodeAddr=$TB_FALCON_IP State=UNKNOWN
PartitionName=batch Nodes=falcon Default=YES MaxTime=INFINITE State=UP
EOF
    chmod 0644 "$SLURM_ETC/slurm.conf"
}
write_slurm_conf

if [[ -n $acct_pid ]]; then
    wait "$acct_pid" || die "mariadb datadir could not be created"
    ensure_accounting_backend
    log "mariadb + slurmdbd up; cluster falcon, account testbed, user $TB_USER added"
fi

start_slurmctld
start_slurmd
log "slurmctld + slurmd up; node falcon $(node_state)"

# ------------------------------------------------------------------ finish
ensure_tcsh_user
install_stand_ins
out=$(timeout 20 ssh -F "$SSH_CFG" falcon hostname 2>&1) || die "ssh -F $SSH_CFG falcon hostname failed: $out"
[[ $out == falcon ]] || die "ssh falcon hostname printed '$out'"
touch "$STATE/up-complete"
log "test bed up: ssh -F $SSH_CFG falcon  (accounting=$want_acct)"
