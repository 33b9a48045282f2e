#!/bin/sh
# tests/editors.sh: editor and shell support (issue #18 item 8).  Each
# syntax file (Vim, Emacs, TextMate) names every reserved word of
# lang/lexer.l and every scorer, action, scope and module of lang/check.c
# and family of base/family.c, the lists read from those sources; Vim loads
# its file and highlights a policy with it; the bash completion offers every
# command and each command's options, --format values, policies and model
# directories.  Emacs and zsh are checked where installed.
set -u
: "${QMOE:?}" "${QM_SRCDIR:?}" "${QM_BUILDDIR:?}"
src=$QM_SRCDIR ed=$QM_SRCDIR/editors
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fails=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "FAIL $n - $1"; }

# ---- the words, from the sources ------------------------------------------------------
reserved=$(grep -E '^"[a-z]' "$src/lang/lexer.l" | grep -oE '"[a-z_]+"' | tr -d '"')
scorers=$(grep -oE '\[QM_SCORER_[A-Z_]+\] = "[a-z_]+"' "$src/lang/check.c" | sed 's/.*"\(.*\)"/\1/')
actions=$(grep -oE '\{"[a-z_]+", QM_ACT_' "$src/lang/check.c" | sed 's/{"\([a-z_]*\)".*/\1/')
scopes=$(grep -oE '\{"[a-z_]+", QM_SCOPE_' "$src/lang/check.c" | sed 's/{"\([a-z_]*\)".*/\1/')
modules=$(grep -oE '\[QM_MOD_[A-Z_]+\] = \{"[a-z_]+", ("[a-z_]+"|NULL)' "$src/lang/check.c" | grep -oE '"[a-z_]+"' | tr -d '"')
families=$(grep -oE '\[QM_FAMILY_[A-Z0-9_]+\] = "[a-z0-9]+"' "$src/base/family.c" | sed 's/.*"\(.*\)"/\1/')
for l in reserved scorers actions scopes modules families; do
    eval "w=\$$l"
    [ "$(echo $w | wc -w)" -ge 2 ] && ok "read $(echo $w | wc -w) $l from the sources" || fail "no $l read from the sources"
done
words="$reserved $scorers $actions $scopes $modules $families"
echo "$reserved" | grep -qx budget && echo "$scorers" | grep -qx importance_residual && echo "$modules" | grep -qx shared_experts &&
    ok "the lists hold budget, importance_residual, shared_experts" || fail "the lists read are wrong"

# covers FILE NAME COMMENT: every word, outside the file's comment lines
covers() {
    missing=
    for w in $words; do
        grep -v -e "$3" "$1" | grep -qw -e "$w" || missing="$missing $w"
    done
    [ -z "$missing" ] && ok "$2 names every word" || fail "$2 lacks:$missing"
}
covers "$ed/vim/syntax/qmoe.vim" "Vim syntax" '^[[:space:]]*"'
covers "$ed/emacs/qmoe-mode.el" "Emacs mode" '^[[:space:]]*;'
covers "$ed/textmate/qmoe.tmLanguage.json" "TextMate grammar" '"comment":' 
"$QM_BUILDDIR/tests/outputs/check_outputs" tmlanguage "$ed/textmate/qmoe.tmLanguage.json" 2> "$t/err" &&
    ok "the TextMate grammar is JSON with the grammar's keys" || fail "TextMate grammar: $(cat "$t/err")"
grep -q 'setfiletype qmoe' "$ed/vim/ftdetect/qmoe.vim" && grep -q '\*\.qmoe' "$ed/vim/ftdetect/qmoe.vim" &&
    ok "Vim ftdetect maps *.qmoe" || fail "Vim ftdetect"

# ---- Vim highlights a policy ----------------------------------------------------------------
if command -v vim > /dev/null 2>&1; then
    printf 'import "paper/attn-4bit"  # c\nexperts[top 2 per layer by frequency]: 4bit keep\n' > "$t/p.qmoe"
    # the highlight group at (line, col) of each probe
    HOME=$t vim -Nu NONE -i NONE -es -c "set rtp^=$ed/vim" -c 'filetype on' -c 'syntax on' -c "e $t/p.qmoe" \
        -c 'let g = []' \
        -c 'for [l, c] in [[1, 1], [1, 8], [1, 28], [2, 1], [2, 9], [2, 28], [2, 40], [2, 45]] | call add(g, synIDattr(synID(l, c, 1), "name")) | endfor' \
        -c "call writefile([&filetype] + g, '$t/vim.out')" -c 'qa!' < /dev/null > /dev/null 2> "$t/err"
    got=$(tr '\n' ' ' < "$t/vim.out" 2>/dev/null)
    want="qmoe qmoeStatement qmoeString qmoeComment qmoeModule qmoeKeyword qmoeScorer qmoeWidth qmoeAction "
    [ "$got" = "$want" ] && ok "Vim detects and highlights a policy" || fail "Vim highlighted: '$got' (want '$want') $(cat "$t/err")"
else
    ok "# SKIP Vim is not installed"
fi
if command -v emacs > /dev/null 2>&1; then
    emacs -Q --batch -l "$ed/emacs/qmoe-mode.el" --eval "(progn (find-file \"$t/p.qmoe\") (unless (eq major-mode 'qmoe-mode) (kill-emacs 1)))" \
        > "$t/err" 2>&1 && ok "Emacs loads qmoe-mode for *.qmoe" || fail "Emacs: $(cat "$t/err")"
else
    # without Emacs: its parentheses balance, outside strings and comments
    depth=$(sed -e 's/;.*//' -e 's/\\.//g' -e 's/"[^"]*"//g' -e 's/?.//g' "$ed/emacs/qmoe-mode.el" | tr -cd '()' |
        awk '{ for (i = 1; i <= length($0); i++) { d += substr($0, i, 1) == "(" ? 1 : -1; if (d < 0) bad = 1 } } END { print bad ? -1 : d }')
    [ "$depth" = 0 ] && ok "Emacs mode's parentheses balance (Emacs is not installed)" || fail "Emacs mode: parentheses off by $depth"
fi

# ---- bash completion ---------------------------------------------------------------------------
# comp WORDS...: what bash completes for the last word
comp() {
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _qmoe; printf "%s\n" "${COMPREPLY[@]}"' \
        comp "$ed/completion/bash/qmoe" "$@" | sort
}
PATH=$(dirname "$QMOE"):$PATH
export PATH
cmds=$("$QMOE" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')
got=$(comp qmoe '')
missing=
for c in $cmds help; do echo "$got" | grep -qx "$c" || missing="$missing $c"; done
[ -z "$missing" ] && ok "bash completes every command" || fail "bash completion lacks commands:$missing"
for c in $cmds; do
    want=$("$QMOE" help "$c" | awk 'NR == 1, /^$/ { print; next } /^ +-/' |
        grep -oE -- '(^|[][ (|,])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[][ (|,]*//' | sort -u)
    got=$(comp qmoe "$c" -)
    missing=
    for o in $want; do echo "$got" | grep -qx -e "$o" || missing="$missing $o"; done
    [ -n "$want" ] && [ -z "$missing" ] && ok "bash completes every option of $c" || fail "bash completion of $c lacks:$missing"
done
[ "$(comp qmoe compile p.qmoe --format '' | tr '\n' ' ')" = "json table yaml " ] &&
    ok "bash completes compile --format" || fail "bash: compile --format gives '$(comp qmoe compile p.qmoe --format '')'"
mkdir -p "$t/w/model" && : > "$t/w/a.qmoe" && : > "$t/w/notes.txt"
(cd "$t/w" && comp qmoe compile '') > "$t/c1"
(cd "$t/w" && comp qmoe inspect '') > "$t/c2"
(cd "$t/w" && comp qmoe compile a.qmoe --model '') > "$t/c3"
[ "$(tr '\n' ' ' < "$t/c1")" = "a.qmoe model " ] && [ "$(tr '\n' ' ' < "$t/c2")" = "model " ] &&
    [ "$(tr '\n' ' ' < "$t/c3")" = "model " ] && ok "bash completes policies and model directories" ||
    fail "bash: compile gives '$(cat "$t/c1")', inspect '$(cat "$t/c2")', --model '$(cat "$t/c3")'"

# ---- zsh ------------------------------------------------------------------------------------------
if command -v zsh > /dev/null 2>&1; then
    zsh -n "$ed/completion/zsh/_qmoe" 2> "$t/err" && ok "zsh reads _qmoe" || fail "zsh: $(cat "$t/err")"
else
    ok "# SKIP zsh is not installed"
fi
grep -q '^#compdef qmoe$' "$ed/completion/zsh/_qmoe" && ok "_qmoe is a zsh completion for qmoe" || fail "_qmoe lacks #compdef"

echo "editors.sh: $((n - fails))/$n passed"
test $fails = 0
