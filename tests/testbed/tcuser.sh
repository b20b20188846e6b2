# shellcheck shell=bash
# A second bed user whose login shell is tcsh: some clusters still give accounts csh/tcsh, and
# sshd runs every command through the login shell. Same client key and layout as $TB_USER
# (home on mack and falcon, /projects/<user>). Sourced by up.sh (after lib.sh), which calls
# ensure_tcsh_user on every run, so a bed that is already up gains the user on the next up.sh.

TB_TC_USER=globtimtc

# shellcheck disable=SC2016
_tc_home_setup='
set -e
u=$1 uid=$2 gid=$3 key=$4
home=/home/$u
if [ ! -d "$home" ]; then
    install -d -o "$uid" -g "$gid" -m 0755 "$home"
    cp -rT /etc/skel "$home"
fi
install -d -o "$uid" -g "$gid" -m 0700 "$home/.ssh"
printf "%s\n" "$key" >"$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
chown -R "$uid:$gid" "$home"
'

ensure_tcsh_user() {
    local tcsh uid gid h inst cfg pid
    tcsh=$(command -v tcsh) || die "tcsh is not installed: run tests/testbed/packages.sh"
    if ! id -u "$TB_TC_USER" >/dev/null 2>&1; then
        useradd -M -d "/home/$TB_TC_USER" -s "$tcsh" -U "$TB_TC_USER"
        touch "$STATE/created-tc-user"
    fi
    [[ $(getent passwd "$TB_TC_USER" | cut -d: -f7) == "$tcsh" ]] || usermod -s "$tcsh" "$TB_TC_USER"
    # not locked: with UsePAM no, sshd refuses a locked account even with a good key
    [[ $(getent shadow "$TB_TC_USER" | cut -d: -f2) == '*' ]] || usermod -p '*' "$TB_TC_USER"
    uid=$(id -u "$TB_TC_USER")
    gid=$(id -g "$TB_TC_USER")
    install -d -o "$uid" -g "$gid" -m 0755 "$PROJECTS/$TB_TC_USER"
    for h in "${TB_HOSTS[@]}"; do
        inhost "$h" bash -c "$_tc_home_setup" tc-home "$TB_TC_USER" "$uid" "$gid" \
            "$(cat "$CLIENT/id_ed25519.pub")"
    done
    for inst in mack falcon; do
        cfg=$(sshd_cfg "$inst")
        grep -qx "AllowUsers $TB_USER $TB_TC_USER" "$cfg" && continue
        sed -i "s/^AllowUsers .*/AllowUsers $TB_USER $TB_TC_USER/" "$cfg"
        # sshd re-reads its config on SIGHUP; open sessions stay
        if pid=$(sshd_pid "$inst"); then
            kill -HUP "$pid"
            sleep 0.2 # it re-executes itself and listens again
            if [[ $inst == mack ]]; then
                TB_WAIT=10 wait_for ssh_banner "" "$TB_MACK_IP" 22 || die "sshd mack did not come back after SIGHUP"
            else
                TB_WAIT=10 wait_for ssh_banner mack "$TB_FALCON_IP" 22 || die "sshd falcon did not come back after SIGHUP"
            fi
        fi
    done
}
