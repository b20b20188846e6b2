#!/usr/bin/env bash
# Exit 0 iff the test bed is fully up and healthy; one line per check.
set -uo pipefail
# shellcheck source=tests/testbed/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

((EUID == 0)) || die "status.sh must run as root"
echo "test bed state folder: $TESTBED_DIR (accounting=$(accounting_mode))"
if bed_check verbose; then
    echo "test bed: UP"
    exit 0
fi
echo "test bed: NOT healthy (tests/testbed/up.sh rebuilds it)"
exit 1
