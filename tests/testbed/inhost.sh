#!/usr/bin/env bash
# inhost.sh HOST CMD [ARGS...]: run CMD as root inside HOST's net + mount + uts namespaces
# (HOST is mack or falcon). The exit code of CMD passes through.
set -uo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if (($# < 2)) || ! valid_host "$1"; then
    echo "usage: $0 mack|falcon CMD [ARGS...]" >&2
    exit 2
fi
((EUID == 0)) || die "inhost.sh must run as root"
h=$1
shift
ns_files_ok "$h" || die "host $h is not up (run tests/testbed/up.sh)"
exec nsenter --net="/run/netns/$h" --mount="$NSDIR/$h.mnt" --uts="$NSDIR/$h.uts" -- "$@"
