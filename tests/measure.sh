#!/bin/sh
# measure.sh: `qmoe measure` and `budget B bits by measured` end to end on
# tiny-deepseek: the measure file's keys and units at each granularity, an
# interrupted run that resumes to the same bytes as an uninterrupted one on
# another thread count, refusals (bad widths, another model's file), and the
# budget: averages at most the target, predicted error recorded and falling
# as the budget grows, explain's marginal error per bit, the scorer in
# selectors, plans independent of the thread count.
. "${QM_SRCDIR:?}/tests/lib.sh"
model="$QM_SRCDIR/examples/models/tiny-deepseek"
other="$QM_SRCDIR/examples/models/tiny-mixtral"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
fast="--ctx 128 --samples 4"
. "$QM_SRCDIR/tests/outputs/check-outputs.sh"

OPENBLAS_NUM_THREADS=2 "$QMOE" measure "$model" --calib "$calib" $fast --units expert -q -o "$tmp/m.yaml" && ok ||
    bad "measure failed"
check_outputs measure "$tmp/m.yaml"
# expert units: 6 attention, 1 dense MLP, 5 x (16 experts + shared)
n=$(grep -c '^  layers\[' "$tmp/m.yaml")
[ "$n" = 92 ] && ok || bad "expert units: $n, not 92"
grep -q '^  layers\[3\]\.experts\[5\]: {params: 24576, error: \[' "$tmp/m.yaml" && ok || bad "expert unit line"
# errors fall with the width for every unit
sed -n 's/^  layers.*error: \[\(.*\)\]}$/\1/p' "$tmp/m.yaml" |
    awk -F', ' '{ if (!($1 + 0 > $2 + 0 && $2 + 0 > $3 + 0 && $3 + 0 > $4 + 0)) n++ } END { exit n > 0 || NR != 92 }' &&
    ok || bad "an error does not fall with the width"
"$QMOE" measure "$model" --calib "$calib" $fast --widths 2,4 -q -o "$tmp/lin.yaml" && ok || bad "linear (default)"
[ "$(grep -c '^  layers\[' "$tmp/lin.yaml")" = 282 ] && ok || bad "linear units: not 282"
grep -q 'widths: \[2, 4\]' "$tmp/lin.yaml" && ok || bad "widths recorded"
"$QMOE" measure "$model" --calib "$calib" $fast --units layer -q -o "$tmp/lay.yaml" && ok || bad "layer"
[ "$(grep -c '^  layers\[' "$tmp/lay.yaml")" = 6 ] && ok || bad "layer units: not 6"

# interrupted after some layers (kill -9), resumed on one thread: the same bytes
"$QMOE" measure "$model" --calib "$calib" $fast --units expert -q -o "$tmp/r.yaml" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -qs 'layers_done [2-5]' "$tmp/r.yaml.qmoe-state/state"; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
[ -e "$tmp/r.yaml" ] && bad "an interrupted measure left its output" || ok
OPENBLAS_NUM_THREADS=1 "$QMOE" measure "$model" --calib "$calib" $fast --units expert -q -o "$tmp/r.yaml" 2>"$tmp/err" &&
    ok || bad "resume"
cmp -s "$tmp/m.yaml" "$tmp/r.yaml" && ok || bad "resumed measure differs"
[ -e "$tmp/r.yaml.qmoe-state" ] && bad "state left behind" || ok
# another set of options does not resume a state
"$QMOE" measure "$model" --calib "$calib" $fast -q -o "$tmp/s.yaml" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -qs 'layers_done [1-5]' "$tmp/s.yaml.qmoe-state/state"; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
if [ -e "$tmp/s.yaml.qmoe-state/state" ]; then
    "$QMOE" measure "$model" --calib "$calib" $fast --units expert -q -o "$tmp/s.yaml" 2>"$tmp/err" && bad "resumed with other units" ||
        grep -q 'holds a measure of another model, calibration text or set of options' "$tmp/err" && ok || bad "refusal: $(cat "$tmp/err")"
fi

# --target gguf: each width on the block type the GGUF file holds (2-bit: Q2_K on layer 0's 512-wide down,
# the writer's group-32 fallback elsewhere; 4-bit: ggml's Q4_0 grid with its scale search and act-order)
g="--widths 2,4,8 --group 32"
"$QMOE" measure "$model" --calib "$calib" $fast $g -q -o "$tmp/g-plain.yaml" && ok || bad "plain measure, group 32"
"$QMOE" measure "$model" --calib "$calib" $fast $g --target gguf -q -o "$tmp/g.yaml" && ok || bad "--target gguf"
check_outputs measure "$tmp/g.yaml"
grep -q '^  target: gguf$' "$tmp/g.yaml" && ok || bad "target not recorded"
grep -q 'target:' "$tmp/g-plain.yaml" && bad "a plain measure records a target" || ok
# the same units, other errors: no unit's 2-, 4- or 8-bit error is the plain grid's (8: Q8_0's fp16 scales)
u=$(grep -c '^  layers\[' "$tmp/g.yaml")
[ "$u" = 282 ] && ok || bad "--target gguf: $u units, not 282"
grep '^  layers\[' "$tmp/g-plain.yaml" >"$tmp/gu-plain"
grep '^  layers\[' "$tmp/g.yaml" >"$tmp/gu"
paste -d' ' "$tmp/gu-plain" "$tmp/gu" | sed 's/.*error: \[\([^]]*\)\].*error: \[\([^]]*\)\].*/\1, \2/; s/,//g' |
    awk '{ n++; if ($1 == $4 || $2 == $5 || $3 == $6) same++ } END { exit !(n == 282 && same == 0) }' && ok ||
    bad "--target gguf gives the plain grid's errors for some unit"
# the 512-wide down at 2 bits is a Q2_K (two-level, 16-value groups): far less error than GPTQ's 2-bit group 32
a=$(sed -n 's/^  layers\[0\]\.mlp\.down: .*error: \[\([^,]*\),.*/\1/p' "$tmp/g-plain.yaml")
b=$(sed -n 's/^  layers\[0\]\.mlp\.down: .*error: \[\([^,]*\),.*/\1/p' "$tmp/g.yaml")
awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > 0 && b < a / 2) }' && ok || bad "Q2_K error $b against the plain $a"
# a plain run's state is not resumed by a --target gguf run (nor the other way)
"$QMOE" measure "$model" --calib "$calib" $fast $g -q -o "$tmp/t.yaml" &
pid=$!
i=0
while [ $i -lt 600 ] && ! grep -qs 'layers_done [1-5]' "$tmp/t.yaml.qmoe-state/state"; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
if [ -e "$tmp/t.yaml.qmoe-state/state" ]; then
    "$QMOE" measure "$model" --calib "$calib" $fast $g --target gguf -q -o "$tmp/t.yaml" 2>"$tmp/err" &&
        bad "--target gguf resumed a plain run" ||
        grep -q 'holds a measure of another model, calibration text or set of options' "$tmp/err" && ok ||
        bad "--target refusal: $(cat "$tmp/err")"
fi
"$QMOE" measure "$model" --calib "$calib" --target gptq -o "$tmp/x.yaml" 2>"$tmp/err"
[ $? = 2 ] && grep -q "target must be gguf, not 'gptq'" "$tmp/err" && ok || bad "--target gptq: $(cat "$tmp/err")"
# compile: engine llama.cpp fit warns of a plain measure file, not of a --target gguf one
printf 'default: 3bit\nbudget 4.3 bits by measured\nengine llama.cpp fit\n' >"$tmp/gf.qmoe"
"$QMOE" compile "$tmp/gf.qmoe" --model "$model" --measure "$tmp/g-plain.yaml" -o "$tmp/gp.yaml" 2>"$tmp/err" && ok ||
    bad "compile with a plain measure: $(cat "$tmp/err")"
grep -q "warning: fit llama.cpp: the measure file .*g-plain.yaml rated each width on GPTQ's own grid, not on the GGUF blocks llama.cpp reads; measure with --target gguf" "$tmp/err" &&
    ok || bad "no warning of a plain measure: $(cat "$tmp/err")"
"$QMOE" compile "$tmp/gf.qmoe" --model "$model" --measure "$tmp/g.yaml" -o "$tmp/gg.yaml" 2>"$tmp/err" && ok ||
    bad "compile with a gguf measure: $(cat "$tmp/err")"
grep -q 'rated each width' "$tmp/err" && bad "a gguf measure warned: $(cat "$tmp/err")" || ok
cmp -s "$tmp/gp.yaml" "$tmp/gg.yaml" && bad "the plans of both measures are the same" || ok
sed 's/^  target: gguf$/  target: gptq/' "$tmp/g.yaml" >"$tmp/bt.yaml"
"$QMOE" compile "$tmp/gf.qmoe" --model "$model" --measure "$tmp/bt.yaml" 2>"$tmp/err" && bad "an unknown target" ||
    grep -q "bt.yaml:[0-9]*:[0-9]*: settings: target is 'gptq', not gguf" "$tmp/err" && ok || bad "bad target: $(cat "$tmp/err")"

# usage errors
"$QMOE" measure "$model" --calib "$calib" --widths 2,6 -o "$tmp/x.yaml" 2>"$tmp/err"
[ $? = 1 ] && grep -q 'widths: 6 is not a width; the widths are 2, 3, 4, 5 and 8' "$tmp/err" && ok || bad "--widths 2,6: $(cat "$tmp/err")"
"$QMOE" measure "$model" --calib "$calib" --units block -o "$tmp/x.yaml" 2>"$tmp/err"
[ $? = 2 ] && grep -q "units must be linear, expert or layer, not 'block'" "$tmp/err" && ok || bad "--units block"

# the budget
pol() { printf 'default: 3bit\nbudget %s bits by measured\n' "$1" >"$tmp/b$1.qmoe"; }
for b in 2.5 3.0 3.5; do
    pol $b
    "$QMOE" compile "$tmp/b$b.qmoe" --model "$model" --measure "$tmp/m.yaml" -o "$tmp/p$b.yaml" 2>"$tmp/err" && ok || bad "compile $b: $(cat "$tmp/err")"
    avg=$(sed -n 's/^  average_bits: //p' "$tmp/p$b.yaml")
    awk -v a="$avg" -v b="$b" 'BEGIN { exit !(a <= b && a > b - 0.02) }' && ok || bad "budget $b: average $avg"
    check_outputs plan "$tmp/p$b.yaml"
done
e25=$(sed -n 's/^  predicted_error: //p' "$tmp/p2.5.yaml")
e30=$(sed -n 's/^  predicted_error: //p' "$tmp/p3.0.yaml")
e35=$(sed -n 's/^  predicted_error: //p' "$tmp/p3.5.yaml")
awk -v a="$e25" -v b="$e30" -v c="$e35" 'BEGIN { exit !(a > b && b > c && c > 0) }' && ok ||
    bad "predicted error does not fall with the budget: $e25 $e30 $e35"
OPENBLAS_NUM_THREADS=1 "$QMOE" compile "$tmp/b3.0.qmoe" --model "$model" --measure "$tmp/r.yaml" -o "$tmp/p1.yaml" 2>/dev/null
cmp -s "$tmp/p3.0.yaml" "$tmp/p1.yaml" && ok || bad "plans differ by thread count"
"$QMOE" explain "$tmp/b3.0.qmoe" --model "$model" --measure "$tmp/m.yaml" 'layers[5].experts[0].down' >"$tmp/ex" 2>/dev/null
grep -q 'measured: unit layers\[5\]\.experts\[0\] (24576 params) at [2348]bit, error ' "$tmp/ex" && ok || bad "explain: $(cat "$tmp/ex")"
grep -q 'per bit' "$tmp/ex" && ok || bad "explain gives no marginal error per bit"
# a rule fixes its units: attention at 8 stays, the rest fits around it
printf 'default: 3bit\nattn: 8bit\nbudget 3.0 bits by measured\n' >"$tmp/f.qmoe"
"$QMOE" compile "$tmp/f.qmoe" --model "$model" --measure "$tmp/m.yaml" -o "$tmp/pf.yaml" 2>/dev/null && ok || bad "fixed attention"
[ "$(grep -c 'attn\.[qkvo].*bits: 8,' "$tmp/pf.yaml")" = 24 ] && ok || bad "a rule's widths moved"
# the scorer in a selector
printf 'default: 2bit\nexperts[top 2 per layer by measured]: 4bit\n' >"$tmp/s.qmoe"
"$QMOE" compile "$tmp/s.qmoe" --model "$model" --measure "$tmp/m.yaml" -o "$tmp/ps.yaml" 2>/dev/null && ok || bad "selector"
[ "$(grep -c 'experts\[[0-9]*\]\..*bits: 4,' "$tmp/ps.yaml")" = 30 ] && ok || bad "top 2 per layer: not 30 linears"
# refusals
"$QMOE" compile "$tmp/b3.0.qmoe" --model "$model" 2>"$tmp/err" && bad "budget by measured without a file" ||
    grep -q 'needs a measure file' "$tmp/err" && ok || bad "no file: $(cat "$tmp/err")"
"$QMOE" compile "$tmp/b3.0.qmoe" --model "$other" --measure "$tmp/m.yaml" 2>"$tmp/err" && bad "another model's file" ||
    grep -q 'the measure was made for another model' "$tmp/err" && ok || bad "another model: $(cat "$tmp/err")"
sed 's/error: \[\([^,]*\),/error: [oops,/' "$tmp/m.yaml" >"$tmp/bad.yaml"
"$QMOE" compile "$tmp/b3.0.qmoe" --model "$model" --measure "$tmp/bad.yaml" 2>"$tmp/err" && bad "a bad error value" ||
    grep -q "bad.yaml:[0-9]*:[0-9]*: units: layers\[0\]\.attn: error 'oops' is not a finite number >= 0" "$tmp/err" && ok ||
    bad "bad value: $(cat "$tmp/err")"
pol 1.9 2>/dev/null
printf 'default: 3bit\nbudget 2.0 bits by measured\nattn: 8bit\n' >"$tmp/lo.qmoe"
"$QMOE" compile "$tmp/lo.qmoe" --model "$model" --measure "$tmp/m.yaml" 2>"$tmp/err" && bad "an unreachable budget" ||
    grep -q 'budget 2 bits is out of reach' "$tmp/err" && ok || bad "out of reach: $(cat "$tmp/err")"

# the engine-fitting recipes: the knapsack solved again under the engine's sets and widths gives a plan
# the engine serves (tiny-deepseek's 64-128-wide linears keep llama.cpp at 4 bits and above: warned)
for r in measured-2.5-llamacpp measured-3.0-llamacpp measured-5.0-llamacpp measured-4.5-vllm; do
    e=$(sed -n 's/^engine \([a-z.]*\) fit$/\1/p' "$QM_SRCDIR/stdlib/engines/$r.qmoe")
    "$QMOE" compile -I "$QM_SRCDIR/stdlib" "$QM_SRCDIR/stdlib/engines/$r.qmoe" --model "$model" --measure "$tmp/m.yaml" \
        --format table 2>"$tmp/err" > "$tmp/table"
    grep -q "^$e  *yes" "$tmp/table" && ok || bad "$r is not servable by $e: $(cat "$tmp/err")"
    grep -q "fit $e: .* budget solved again over .* units $e can serve at one width" "$tmp/err" && ok ||
        bad "$r: no fitting note: $(cat "$tmp/err")"
    "$QMOE" compile -I "$QM_SRCDIR/stdlib" "$QM_SRCDIR/stdlib/engines/$r.qmoe" --model "$model" --measure "$tmp/m.yaml" \
        -o "$tmp/fit.yaml" 2>/dev/null && grep -q '^  predicted_error: ' "$tmp/fit.yaml" && ok ||
        bad "$r: no predicted_error in the fitted plan"
done

# a target below the engine's reach: the units trade error for bits at the target's own rate, not
# down to the floor (which put dense layer 0's down, the one linear llama.cpp takes at 2 bits, at 2)
"$QMOE" compile -I "$QM_SRCDIR/stdlib" "$QM_SRCDIR/stdlib/engines/measured-2.5-llamacpp.qmoe" --model "$model" \
    --measure "$tmp/m.yaml" -o "$tmp/fit.yaml" 2>"$tmp/err"
grep -q "below what the engine's widths reach (.*); the units trade error for bits at the target's own rate" "$tmp/err" &&
    ok || bad "below reach: no note: $(cat "$tmp/err")"
grep -q "its widths for the measured units reach " "$tmp/err" && ok || bad "below reach: no range: $(cat "$tmp/err")"
grep -q '^  tensors_by_bits: {2: 0, ' "$tmp/fit.yaml" && ok || bad "below reach: $(grep tensors_by_bits "$tmp/fit.yaml")"

finish measure
