#!/usr/bin/env bash
# Install every Debian package the test bed needs. Idempotent; does nothing (no apt) when all
# packages are already installed. Package postinst scripts are kept from starting services in the
# root namespace by a policy-rc.d (exit 101), added only for the install if it was missing.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

PACKAGES=(
    openssh-server openssh-client openssh-sftp-server
    munge slurmctld slurmd slurm-client slurmdbd
    mariadb-server
    iproute2 iptables rsync tmux procps psmisc util-linux
    libpam-modules libpam-runtime openssl passwd
    python3 python3-venv ca-certificates
    tcsh
    gzip zstd
)

missing=()
for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $st == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "packages: all ${#PACKAGES[@]} present"
    exit 0
fi

if ((EUID != 0)); then
    echo "packages: missing ${missing[*]}; run as root" >&2
    exit 1
fi

echo "packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
added_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# added by globtim-hpc tests/testbed/packages.sh for one install\nexit 101\n' \
        >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
fi
cleanup() { if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

# Debian's postinst may have left daemons we do not want in the root namespace only if
# policy-rc.d let them start; it did not. Nothing else to undo.
echo "packages: done"
