#!/bin/sh
# bench/memory.sh: peak memory of score, eval --base and quantize at real
# dimensions, against depth.
#
# usage: bench/memory.sh [WORKDIR]   (default: bench-memory under $TMPDIR or /tmp)
#
# For each model (MODELS: mixtral deepseek, the configs in
# tests/data/configs) and depth (LAYERS: 2 4) it writes a random-weight
# checkpoint with the real dimensions (bench/mk-random.sh), then runs on
# WINDOWS x CTX random tokens (default 8 x 512)
#   score     qmoe score MODEL --calib IDS
#   eval      qmoe eval MODEL --base MODEL --tokens IDS
#   quantize  qmoe quantize of the stdlib's uniform 4-bit plan
# (COMMANDS picks which; TIMEOUT stops each after that many seconds) and prints, for each, the peak resident memory
# (VmHWM: mapped checkpoint pages included) and the peak anonymous memory
# (RssAnon polled every 0.2 s: what the process itself allocated), with
# wall and CPU time, next to the size of one layer in BF16 and float32.
# With QMOE_BEFORE set to another qmoe binary (an older build) every
# command also runs with it, and the ratios come from the same run.  Then
# it checks the goals of issue 15 (anonymous peak independent of depth:
# the deepest within 10% of the shallowest; quantize at most 3 GB and
# score/eval at most 2x one layer's float32 weights for Mixtral) and
# projects the full models' peaks (Qwen3-235B-A22B's from Mixtral's).  Each checkpoint is removed once
# measured (Mixtral with 4 layers is 11.5 GB on disk).  REPORT_ONLY=1
# prints the tables again from WORKDIR's results, measuring nothing.  Not
# part of make check: at real dimensions it takes minutes per command.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
QMOE=${QMOE:-$here/qmoe}
SRC=${QM_SRCDIR:-$here}
MODELS=${MODELS:-mixtral deepseek}
LAYERS=${LAYERS:-2 4}
COMMANDS=${COMMANDS:-score eval quantize}
WINDOWS=${WINDOWS:-8} CTX=${CTX:-512}
TIMEOUT=${TIMEOUT:-0} # seconds per command (0: none); a command stopped by it reports its peak so far
work=${1:-${TMPDIR:-/tmp}/bench-memory}
mkdir -p "$work" || exit 1
results=$work/results
[ -n "${REPORT_ONLY:-}" ] || : > "$results"

# measure TAG CMD...: run CMD, append "TAG rc wall user sys vmhwm_kib anon_kib" to $results
measure() {
    tag=$1; shift
    /usr/bin/time -f "%e %U %S" -o "$work/time" timeout "$TIMEOUT" "$@" > "$work/out" 2> "$work/err" &
    tp=$! anon=0 hwm=0
    while kill -0 $tp 2>/dev/null; do
        for p in $(pgrep -P $tp) $(for c in $(pgrep -P $tp); do pgrep -P $c; done); do
            set -- $(awk '/^VmHWM/ {h = $2} /^RssAnon/ {a = $2} END {print h + 0, a + 0}' /proc/$p/status 2>/dev/null)
            [ "${1:-0}" -gt $hwm ] && hwm=$1
            [ "${2:-0}" -gt $anon ] && anon=$2
        done
        sleep 0.2
    done
    wait $tp; rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 124 ] || { echo "memory.sh: $tag failed:"; tail -3 "$work/err"; } >&2
    echo "$tag $rc $(tail -1 "$work/time") $hwm $anon" >> "$results"
}

gib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1048576 }'; }

for model in $([ -n "${REPORT_ONLY:-}" ] || echo $MODELS); do
    case $model in
    mixtral) config=$SRC/tests/data/configs/mixtral-8x7b.json ;;
    deepseek) config=$SRC/tests/data/configs/deepseek-moe-16b.json ;;
    *) echo "memory.sh: unknown model '$model' (mixtral, deepseek)" >&2; exit 2 ;;
    esac
    for L in $LAYERS; do
        ck=$work/$model-$L
        rm -rf "$ck" "$work/q"
        sh "$SRC/bench/mk-random.sh" "$config" "$L" "$ck" || exit 1
        V=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$ck/config.json")
        awk -v n=$((WINDOWS * CTX)) -v V="$V" 'BEGIN { srand(1); for (i = 0; i < n; i++) print int(rand() * V) }' \
            > "$work/ids.txt"
        # the largest layer: its BF16 bytes (the float32 weights are twice that)
        awk '$1 <= '"$L"' { b[$1] += $3 * ($4 ? $4 : 1) * 2 } END { for (s in b) if (b[s] > m) m = b[s]; printf "%.0f\n", m }' \
            "$ck/tensors" > "$work/$model-$L.layer"
        "$QMOE" compile "$SRC/stdlib/paper/uniform-4bit.qmoe" --model "$ck" -o "$work/plan.yaml" 2> /dev/null
        for build in after ${QMOE_BEFORE:+before}; do
            q=$QMOE; [ $build = before ] && q=$QMOE_BEFORE
            for c in $COMMANDS; do
                case $c in
                score) measure "$model $L $c $build" "$q" score "$ck" --calib "$work/ids.txt" -o "$work/scores.yaml" ;;
                eval) measure "$model $L $c $build" "$q" eval "$ck" --base "$ck" --tokens "$work/ids.txt" \
                                                    --ctx "$CTX" -q ;;
                quantize) rm -rf "$work/q"
                          measure "$model $L $c $build" "$q" quantize -q --plan "$work/plan.yaml" --model "$ck" \
                              --calib "$work/ids.txt" --ctx "$CTX" --samples "$WINDOWS" -o "$work/q" ;;
                esac
            done
        done
        rm -rf "$ck" "$work/q"
    done
done

echo "peak memory on $WINDOWS x $CTX tokens (GiB; RSS includes the mapped checkpoint pages, anon is what qmoe allocated)"
printf '%-9s %6s %-9s %-7s %9s %9s %8s %8s %9s %9s\n' model layers command build layer_bf16 layer_f32 \
    peak_rss peak_anon wall_s cpu_s
while read -r model L c build rc wall user sys hwm anon; do
    lb=$(cat "$work/$model-$L.layer")
    printf '%-9s %6s %-9s %-7s %9s %9s %8s %8s %9s %9s%s\n' "$model" "$L" "$c" "$build" "$(gib $((lb / 1024)))" \
        "$(gib $((lb / 512)))" "$(gib "$hwm")" "$(gib "$anon")" "$wall" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')" \
        "$([ "$rc" = 0 ] || { [ "$rc" = 124 ] && echo "  (stopped at TIMEOUT: peak so far)"; } || echo "  FAILED")"
done < "$results"

echo
echo "goals (issue 15)"
awk -v layers="$LAYERS" '
    { key = $1 " " $3 " " $4; anon[key, $2] = $10; if (!($2 in seen)) { seen[$2] = 1 } ; k[key] = 1 }
    END {
        n = split(layers, d, " "); lo = d[1]; hi = d[n]
        for (key in k) if (anon[key, lo] > 0 && anon[key, hi] > 0)
            printf "  %-28s anon %d layers / %d layers = %.2f (goal <= 1.10)\n", key, hi, lo, anon[key, hi] / anon[key, lo]
    }' "$results" | sort
for c in score eval quantize; do
    awk -v c=$c -v f32="$( [ -f "$work/mixtral-2.layer" ] && echo $(( $(cat "$work/mixtral-2.layer") * 2 )) || echo 0)" '
        $1 == "mixtral" && $3 == c && $4 == "after" {
            g = $10 / 1048576; lim = c == "quantize" ? 3 * 1e9 / 2^30 : 2 * f32 / 2^30
            printf "  mixtral %-8s %d layers: anon %.2f GiB, goal <= %.2f GiB: %s\n", c, $2, g, lim, g <= lim ? "met" : "NOT met"
        }' "$results"
done

echo
echo "projection for the full models (anonymous peak; after: the deepest figure, as it does not grow with depth;"
echo "before: linear in depth through the two depths measured)"
awk -v layers="$LAYERS" '
    BEGIN { full["mixtral"] = 32; full["deepseek"] = 28 }
    { anon[$1 " " $3 " " $4, $2] = $10; k[$1 " " $3 " " $4] = $1 }
    END {
        n = split(layers, d, " "); lo = d[1]; hi = d[n]
        for (key in k) {
            m = k[key]; a = anon[key, hi]; b = anon[key, lo]
            if (key ~ / before$/ && hi > lo) p = a + (a - b) / (hi - lo) * (full[m] - hi); else p = a
            if (a > 0) printf "  %-28s %d layers: %.1f GiB\n", key, full[m], p / 1048576
        }
    }' "$results" | sort
# Qwen3-235B-A22B (94 layers, hidden 4096, 64 x 128 query heads, 4 kv heads, 128 experts of 1536, top-8):
# from the Mixtral figures above, less what differs.  score/eval: the layer's float32 weights (the
# hidden states are the same width).  quantize: the largest Hessian (Mixtral's down 14336^2, Qwen3's o
# 8192^2), one expert's float32 weights, GPTQ's copies of the largest linear (float32 twice and codes
# twice), the attention's float32 weights, and the routed rows with their activations.
awk -v T=$((WINDOWS * CTX)) '
    function gib(b) { return b / 2^30 }
    BEGIN {
        mix_layer = 4 * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 8 * 4096 + 8 * 3 * 14336 * 4096)
        qwen_layer = 4 * (2 * 8192 * 4096 + 2 * 512 * 4096 + 128 * 4096 + 128 * 3 * 1536 * 4096)
        mix_q = 4 * 14336 ^ 2 + 4 * 3 * 14336 * 4096 + 10 * 14336 * 4096 + 4 * (2 * 4096 ^ 2 + 2 * 1024 * 4096) \
                + 4 * T * 2 / 8 * (4096 + 14336)
        qwen_q = 4 * 8192 ^ 2 + 4 * 3 * 1536 * 4096 + 10 * 8192 * 4096 + 4 * (2 * 8192 * 4096 + 2 * 512 * 4096) \
                 + 4 * T * 8 / 128 * (4096 + 1536)
    }
    $1 == "mixtral" && $4 == "after" && $10 > 0 { a[$3] = $10 * 1024 }
    END {
        for (c in a) {
            p = c == "quantize" ? a[c] - mix_q + qwen_q : a[c] - mix_layer + qwen_layer
            printf "  %-28s 94 layers: %.1f GiB (from Mixtral'"'"'s %.2f: %+.2f GiB of %s)\n", "qwen3-235b " c " after",
                gib(p), gib(a[c]), gib(p - a[c]), c == "quantize" ? "Hessian, expert, GPTQ copies, attention, rows" \
                : "layer weights (9.3 GiB in float32)"
        }
    }' "$results" | sort
