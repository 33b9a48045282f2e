#!/bin/sh
# tests/man-options.sh: every option `qmoe help CMD` lists appears in that
# command's entry of man/qmoe.1 (issue #18 item 7), and `qmoe help help`
# works.  The man text is read with roff's \- and font escapes removed.
set -u
src=${QM_SRCDIR:-.}
qmoe=${QMOE:-./qmoe}
fails=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "FAIL $n - $1"; }

out=$("$qmoe" help help); rc=$?
if [ $rc = 0 ] && printf '%s\n' "$out" | grep -q '^usage: qmoe help \[COMMAND\]$'; then ok "qmoe help help exits 0 with its usage"
else fail "qmoe help help: exit $rc, output '$out'"; fi

man=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$src/man/qmoe.1")
cmds=$("$qmoe" --help | awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ -n "$cmds" ] && ok "qmoe --help lists commands" || fail "qmoe --help lists no commands"
alt=$(printf '%s\n' $cmds | paste -sd'|' -)
for c in $cmds; do
    # the command's entry: from its heading in COMMANDS to the next command's
    entry=$(printf '%s\n' "$man" | awk -v c="$c" -v alt="$alt" '
        /^\.SH / { sec = $2 }
        sec == "COMMANDS" && $1 == ".BR" && $2 ~ "^(" alt ")$" && $3 ~ /^"/ { on = ($2 == c) }
        on')
    if [ -z "$entry" ]; then fail "man/qmoe.1 has no entry for '$c'"; continue; fi
    # options: the usage lines (up to the first blank line) and the lines of
    # the option list (indented, starting with '-')
    opts=$("$qmoe" help "$c" | awk 'NR == 1, /^$/ {print; next} /^ +-/' |
        grep -oE '(^|[][ (|,])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[][ (|,]*//' | sort -u)
    for o in $opts; do
        if printf '%s\n' "$entry" | grep -qE -e "(^|[^a-zA-Z0-9-])$o([^a-zA-Z0-9-]|\$)"; then ok "$c $o is in the man page"
        else fail "$c $o is in 'qmoe help $c' but not in its entry of man/qmoe.1"; fi
    done
done
echo "man-options.sh: $((n - fails))/$n passed"
test $fails = 0
