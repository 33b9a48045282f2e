#!/bin/sh
# hostile.sh: qmoe as a hostile user runs it (issue #13): inputs that must
# never be overwritten, non-finite numbers, corrupt or foreign scores, two
# runs on one output directory, unbounded and blocking inputs, huge products
# of valid fields, file modes, thread counts, vague messages, leftovers,
# files that change under qmoe.  One script per area under tests/hostile/,
# each run here with the helpers below; a script's failures are counted and
# named, and any of them fails the test.
. "${QM_SRCDIR:?}/tests/lib.sh"

# expect CODE CMD...: run with a time limit, keep stdout/stderr in $out/$err,
# check the exit code
expect() {
    want=$1; shift
    out=$(timeout 120 "$@" 2>"$tmp/err"); got=$?
    err=$(cat "$tmp/err")
    if [ "$got" -eq "$want" ]; then ok; else bad "$* exited $got, expected $want: $err"; fi
}
has() { case "$1" in *"$2"*) ok ;; *) bad "expected '$2' in: $1" ;; esac; }
lacks() { case "$1" in *"$2"*) bad "did not expect '$2' in: $1" ;; *) ok ;; esac; }

model="$QM_SRCDIR/examples/models/tiny-deepseek"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
text="$QM_SRCDIR/examples/data/wikitext2-test.txt"

for s in "$QM_SRCDIR"/tests/hostile/*.sh; do
    [ -e "$s" ] || continue
    before=$fail
    . "$s"
    [ "$fail" -eq "$before" ] || echo "  in $(basename "$s")"
done
finish hostile
