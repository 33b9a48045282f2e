#!/bin/sh
# stream.sh: score, eval and quantize run the model layer by layer with the
# hidden states in memory or, past --max-memory, in a spill file; the
# outputs are the same bytes either way and on any thread count (quantize
# also after a kill -9 and resume while spilled); --max-memory is
# checked; progress comes one line per layer; the spill file never
# outlives the run.
. "${QM_SRCDIR:?}/tests/lib.sh"
ds="$QM_SRCDIR/examples/models/tiny-deepseek"
mx="$QM_SRCDIR/examples/models/tiny-mixtral"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
txt="$QM_SRCDIR/examples/data/wikitext2-test.txt"
same() { cmp -s "$1" "$2" && ok || bad "$3: $1 and $2 differ"; }

for m in "$ds" "$mx"; do
    n=$(basename "$m")
    mkdir -p "$tmp/$n"
    OPENBLAS_NUM_THREADS=1 "$QMOE" score "$m" --calib "$calib" --max-tokens 5000 --ctx 300 -q \
        -o "$tmp/$n/mem.yaml" || bad "score $n"
    OPENBLAS_NUM_THREADS=2 "$QMOE" score "$m" --calib "$calib" --max-tokens 5000 --ctx 300 --max-memory 1K \
        -o "$tmp/$n/spill.yaml" 2> "$tmp/$n/score.err" || bad "score $n --max-memory 1K"
    same "$tmp/$n/mem.yaml" "$tmp/$n/spill.yaml" "scores in memory and spilled"
    layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$m/config.json")
    [ "$(grep -c '^qmoe: layer [0-9]*/'"$layers"': 5000 tokens, .*(states spilled to disk)$' "$tmp/$n/score.err")" \
        -eq "$layers" ] && ok || bad "score $n: expected $layers progress lines: $(cat "$tmp/$n/score.err")"
    ls -A "$tmp/$n" | grep -q qmoe-states && bad "score $n left its spill file" || ok
    for mm in "" "--max-memory 1K"; do
        OPENBLAS_NUM_THREADS=1 "$QMOE" eval "$m" --base "$ds" --text "$txt" --max-tokens 2500 --ctx 200 \
            --tasks "$QM_SRCDIR/tests/data/tasks.jsonl" --format yaml -q $mm > "$tmp/$n/eval${mm:+-spill}.yaml" \
            || bad "eval $n $mm"
    done
    same "$tmp/$n/eval.yaml" "$tmp/$n/eval-spill.yaml" "eval in memory and spilled"
done

# quantize: the same checkpoint with its hidden states spilled (and resumed from a kill -9 while spilled)
"$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --model "$mx" -o "$tmp/plan.yaml" 2> /dev/null || bad compile
q() { "$QMOE" quantize --plan "$tmp/plan.yaml" --model "$mx" --calib "$calib" --ctx 128 --samples 20 "$@"; }
OPENBLAS_NUM_THREADS=1 q -q -o "$tmp/qm" || bad "quantize in memory"
OPENBLAS_NUM_THREADS=2 q --max-memory 1K -o "$tmp/qs" 2> "$tmp/q.err" || bad "quantize --max-memory 1K"
for f in "$tmp"/qm/*.safetensors; do same "$f" "$tmp/qs/$(basename "$f")" "quantize in memory and spilled"; done
grep -q '^qmoe: layer 0/6 done in .* tok/s, ETA .* (states spilled to disk)$' "$tmp/q.err" && ok \
    || bad "quantize progress: $(cat "$tmp/q.err")"
"$QMOE" quantize --plan "$tmp/plan.yaml" --model "$mx" --calib "$calib" --ctx 128 --samples 20 -q --max-memory 1K \
    -o "$tmp/qk" &
pid=$!
i=0
while [ ! -e "$tmp/qk/.qmoe-state/layer-00002.log" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
q -q --max-memory 1K -o "$tmp/qk" 2> /dev/null || bad "resumed spilled quantize"
for f in "$tmp"/qm/*.safetensors; do same "$f" "$tmp/qk/$(basename "$f")" "resumed spilled quantize"; done
ls -A "$tmp/qs" "$tmp/qk" | grep -q 'qmoe-states\|qmoe-spool' && bad "quantize left a spill file" || ok
out=$(q --max-memory 12Q -o "$tmp/qx" 2>&1); [ $? -eq 2 ] && ok || bad "quantize --max-memory 12Q"
case $out in *"--max-memory must be a size such as 512M, 16G or 64GiB, not '12Q'"*) ok ;; *) bad "message: $out" ;; esac

out=$("$QMOE" score "$ds" --calib "$calib" --max-memory 0 -o "$tmp/x.yaml" 2>&1); [ $? -eq 2 ] && ok || bad "--max-memory 0"
case $out in *"--max-memory must be a size such as 512M, 16G or 64GiB, not '0'"*) ok ;; *) bad "message: $out" ;; esac
out=$("$QMOE" eval "$ds" --text "$txt" --max-memory 12Q 2>&1); [ $? -eq 2 ] && ok || bad "--max-memory 12Q"
case $out in *"not '12Q'"*) ok ;; *) bad "message: $out" ;; esac
"$QMOE" eval "$ds" --text "$txt" --max-tokens 600 --max-memory 1.5GiB -q > /dev/null && ok || bad "--max-memory 1.5GiB"
# the tokens are read before the model runs: a missing calibration file fails at once
out=$("$QMOE" score "$ds" --calib "$tmp/none.txt" -o "$tmp/x.yaml" 2>&1); [ $? -eq 1 ] && ok || bad "missing --calib"
case $out in *"none.txt"*) ok ;; *) bad "message: $out" ;; esac

finish stream
