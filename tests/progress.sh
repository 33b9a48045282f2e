#!/bin/sh
# progress.sh: every long-running command reports progress through one sink
# (cli/progress.c): one line per layer on standard error when it is not a
# terminal (a log file here: quantize's, measure's, score's and eval's
# layers, none of quantize's per-linear detail), and on a terminal (a pty
# from script(1), when it is there) one line redrawn in place, ended before
# the results are printed; -q prints no progress (warnings still go out).
. "${QM_SRCDIR:?}/tests/lib.sh"
m="$QM_SRCDIR/examples/models/tiny-deepseek"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
txt="$QM_SRCDIR/examples/data/wikitext2-test.txt"
layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$m/config.json")
count() { grep -c "$1" "$2"; }
esc=$(printf '\033')

"$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --model "$m" -o "$tmp/plan.yaml" 2> /dev/null || bad compile
q() { "$QMOE" quantize --plan "$tmp/plan.yaml" --model "$m" --calib "$calib" --ctx 128 --samples 4 "$@"; }

# not a terminal: one line per layer, each with its rate and ETA
q -o "$tmp/q1" 2> "$tmp/q.err" || bad "quantize"
[ "$(count '^qmoe: layer' "$tmp/q.err")" -eq "$layers" ] && ok || bad "quantize: $layers layer lines expected: $(cat "$tmp/q.err")"
# (a MoE layer's line adds the routed experts' share and the bytes MPI ranks sent)
[ "$(count '^qmoe: layer [0-9]*/'"$layers"' done in [0-9.]* s, [0-9]* tok/s, ETA [0-9]* s\(; routed experts [0-9.]* s on [0-9]* ranks*, the rest [0-9.]* s; [0-9]* bytes sent so far\)*$' "$tmp/q.err")" -eq "$layers" ] \
    && ok || bad "quantize's layer lines: $(cat "$tmp/q.err")"
grep -q "$esc\|$(printf '\r')" "$tmp/q.err" && bad "control characters in a log: $(cat -v "$tmp/q.err")" || ok
"$QMOE" measure "$m" --calib "$calib" --ctx 64 --samples 2 --widths 2,4 --units layer -o "$tmp/m.yaml" 2> "$tmp/m.err" \
    || bad "measure"
[ "$(count '^qmoe: layer [0-9]*/'"$layers"' done in [0-9.]* s, [0-9]* tok/s, ETA [0-9]* s$' "$tmp/m.err")" -eq "$layers" ] \
    && [ "$(count '^qmoe: layer' "$tmp/m.err")" -eq "$layers" ] && ok || bad "measure's layer lines: $(cat "$tmp/m.err")"
"$QMOE" score "$m" --calib "$calib" --max-tokens 2000 --ctx 200 -o "$tmp/s.yaml" 2> "$tmp/s.err" || bad "score"
[ "$(count '^qmoe: layer [0-9]*/'"$layers"': 2000 tokens, [0-9]* tok/s, ETA [0-9]* s$' "$tmp/s.err")" -eq "$layers" ] \
    && ok || bad "score's layer lines: $(cat "$tmp/s.err")"
"$QMOE" eval "$m" --text "$txt" --max-tokens 2000 --ctx 200 > "$tmp/e.out" 2> "$tmp/e.err" || bad "eval"
[ "$(count '^qmoe: layer' "$tmp/e.err")" -eq "$layers" ] && [ "$(wc -l < "$tmp/e.err")" -eq "$layers" ] \
    && ok || bad "eval's progress: $(cat "$tmp/e.err")"
q -q -o "$tmp/q2" 2> "$tmp/qq.err" || bad "quantize -q"
grep -q 'qmoe: layer\|tensors quantized' "$tmp/qq.err" && bad "quantize -q printed: $(cat "$tmp/qq.err")" || ok

# a terminal: every progress line drawn over the one before, in one line of output
if script -qc true /dev/null > /dev/null 2>&1; then
    script -qc "\"$QMOE\" quantize --plan \"$tmp/plan.yaml\" --model \"$m\" --calib \"$calib\" --ctx 128 --samples 4 \
        -o \"$tmp/q3\"" /dev/null > "$tmp/q.tty" 2>&1 || bad "quantize on a pty"
    [ "$(grep -c 'qmoe: layer' "$tmp/q.tty")" -eq 1 ] && ok || bad "quantize on a terminal: $(cat -v "$tmp/q.tty")"
    # each layer's start, its linears and its end, each erasing the line before
    n=$(grep 'qmoe: layer' "$tmp/q.tty" | sed "s/$esc\[K/\n/g" | grep -c '^qmoe: layer [0-9]*/'"$layers"' done')
    [ "$n" -eq "$layers" ] && ok || bad "quantize on a terminal: $n redrawn layer lines, $(cat -v "$tmp/q.tty")"
    grep 'qmoe: layer' "$tmp/q.tty" | sed "s/$esc\[K/\n/g" | grep -q '^qmoe: layer 0  layers\[0\]\.attn\.q ' \
        && ok || bad "quantize on a terminal shows no linear: $(cat -v "$tmp/q.tty")"
    grep -q '^qmoe: [0-9]* tensors quantized' "$tmp/q.tty" && ok || bad "summary not on a line of its own"
    for f in "$tmp"/q1/*.safetensors; do
        cmp -s "$f" "$tmp/q3/$(basename "$f")" && ok || bad "quantize on a terminal wrote other bytes"
    done
    script -qc "\"$QMOE\" eval \"$m\" --text \"$txt\" --max-tokens 2000 --ctx 200" /dev/null > "$tmp/e.tty" 2>&1 \
        || bad "eval on a pty"
    [ "$(grep -c 'qmoe: ' "$tmp/e.tty")" -eq 1 ] && ok || bad "eval on a terminal: $(cat -v "$tmp/e.tty")"
    grep 'qmoe: ' "$tmp/e.tty" | sed "s/$esc\[K/\n/g" | grep -q '^qmoe: \([0-9]*\)/\1 tokens  [0-9]* tok/s' \
        && ok || bad "eval on a terminal shows no token progress: $(cat -v "$tmp/e.tty")"
    # the results start on a line of their own, as they do without a terminal
    first=$(head -1 "$tmp/e.out")
    grep -q "^$first" "$tmp/e.tty" && ok || bad "eval's results on a terminal: $(cat -v "$tmp/e.tty")"
else
    echo "progress.sh: no script(1): the terminal form is not checked"
fi

finish progress
