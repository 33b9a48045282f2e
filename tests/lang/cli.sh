#!/bin/sh
# cli.sh: `qmoe check` and `qmoe fmt` as a user runs them: exit codes, the
# diagnostics exactly as the golden files have them, -I before $QMOE_PATH,
# fmt -i (atomic, mode kept, nothing left behind) and fmt --check.
. "${QM_SRCDIR:?}/tests/lib.sh"

# expect CODE CMD...: run, keep stdout/stderr in $out/$err, check the exit code
expect() {
    want=$1; shift
    out=$("$@" 2>"$tmp/.stderr"); got=$?
    err=$(cat "$tmp/.stderr")
    if [ "$got" -eq "$want" ]; then ok; else bad "$* exited $got, expected $want: $err"; fi
}
has() { case "$1" in *"$2"*) ok ;; *) bad "expected '$2' in: $1" ;; esac; }
same() { if [ "$1" = "$2" ]; then ok; else bad "expected:
$2
got:
$1"; fi; }

lang="$QM_SRCDIR/tests/lang"

# check: silent on success, the golden diagnostics on failure, 2 on usage
expect 0 "$QMOE" check "$lang/ok/design_card.qmoe"; same "$err" ""; same "$out" ""
expect 0 "$QMOE" check "$lang/ok/empty.qmoe"
cd "$lang/err" || exit 1
for c in width_unknown missing_bracket recovery conflict_width; do
    expect 1 "$QMOE" check "$c.qmoe"; same "$err" "$(cat "$c.err")"
done
expect 1 "$QMOE" check -I lib import_cycle.qmoe
has "$err" "lib/cycle_b.qmoe:2:8: error: import cycle: import_cycle.qmoe -> lib/cycle_a.qmoe -> lib/cycle_b.qmoe -> lib/cycle_a.qmoe"
cd "$tmp" || exit 1
expect 1 "$QMOE" check "$tmp/absent.qmoe"; has "$err" "absent.qmoe: error: cannot open: "
expect 2 "$QMOE" check;                    has "$err" "expected one POLICY"
expect 2 "$QMOE" check a.qmoe b.qmoe;      has "$err" "expected one POLICY"
expect 2 "$QMOE" check --bogus a.qmoe;     has "$err" "unknown option '--bogus'"
expect 2 "$QMOE" check a.qmoe -I;          has "$err" "-I needs a directory"
expect 0 "$QMOE" help check;               has "$out" "-I DIR"

# imports: -I before $QMOE_PATH before the stdlib
mkdir inc env
printf 'attn: 6bit\n' > inc/r.qmoe
printf 'attn: 4bit\n' > env/r.qmoe
printf 'experts: 2bit\n' > env/q.qmoe
printf 'import "r"\nimport "q"\n' > main.qmoe
QMOE_PATH="$tmp/nothing:$tmp/env"; export QMOE_PATH
expect 0 "$QMOE" check main.qmoe
expect 1 "$QMOE" check -I inc main.qmoe; has "$err" "inc/r.qmoe:1:7: error: '6bit' is not a width"
has "$err" "main.qmoe:1:8: note: in the policy imported here"
unset QMOE_PATH
expect 1 "$QMOE" check main.qmoe
has "$err" "main.qmoe:1:8: error: cannot find the policy \"r\"; looked in "

# fmt: the golden output; -i rewrites in place, keeping the mode
expect 0 "$QMOE" fmt "$lang/ok/comments.qmoe"
same "$out" "$(cat "$lang/ok/comments.fmt")"
cp "$lang/ok/spacing.qmoe" messy.qmoe
chmod 640 messy.qmoe
expect 1 "$QMOE" fmt --check messy.qmoe; has "$err" "messy.qmoe: not in canonical form"
expect 0 "$QMOE" fmt -i messy.qmoe;      same "$out" ""
same "$(cat messy.qmoe)" "$(cat "$lang/ok/spacing.fmt")"
same "$(stat -c %a messy.qmoe)" "640"
same "$(ls)" "$(printf 'env\ninc\nmain.qmoe\nmessy.qmoe')"   # no temporary left
expect 0 "$QMOE" fmt --check messy.qmoe; same "$err" ""
cp "$lang/err/recovery.qmoe" broken.qmoe
expect 1 "$QMOE" fmt -i broken.qmoe;     has "$err" "broken.qmoe:3:5: error: missing ':'"
same "$(cat broken.qmoe)" "$(cat "$lang/err/recovery.qmoe")"
expect 2 "$QMOE" fmt -i --check messy.qmoe
expect 2 "$QMOE" fmt
expect 0 "$QMOE" help fmt;               has "$out" "--check"

finish lang-cli
