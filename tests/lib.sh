# lib.sh: the frame every shell test shares, sourced right after a test's
# header comment.  It sets strict variables, checks the environment `make
# check` passes (QMOE, the binary; QM_SRCDIR, the source tree), keeps the
# pass/fail tally (ok, bad MESSAGE), makes a scratch directory $tmp that is
# removed on exit (a test that needs more cleaned sets its own EXIT trap,
# naming $tmp too), and ends with `finish NAME`, whose status is the test's
# exit status: 0 when nothing failed.
set -u
: "${QMOE:?}" "${QM_SRCDIR:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmoe-test.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
finish() { echo "$1: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
