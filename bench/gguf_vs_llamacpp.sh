#!/bin/sh
# bench/gguf_vs_llamacpp.sh: qmoe's GPTQ written as GGUF against llama.cpp's
# own quantizer, with and without an importance matrix, both measured by
# llama.cpp itself.
#
# For each model: the unquantized model as an F32 GGUF is the base.  The
# calibration is the first SAMPLES x 512 bytes of WikiText-2 valid, in
# windows of 512: qmoe's GPTQ Hessians (`quantize --samples`) and llama.cpp's
# importance matrix (collected by tools/llama_ppl.c exactly as llama.cpp's
# imatrix tool does: tests/gguf.sh checks it bit for bit against the tool)
# see the same tokens.  Rows (one file each):
#   qmoe       Q4_0, Q8_0 (uniform 4/8-bit sym, group 32), Q4_1 (4-bit asym
#              group 32, on request), Q5_0, Q5_1 (5-bit sym/asym group 32),
#              Q2_K, Q3_K (2/3-bit group 16), Q4_K (4-bit
#              group 256): GPTQ on ggml's grids; measured-B-llamacpp for B
#              in $BUDGETS (`budget B bits by measured` fitted to llama.cpp's
#              constraints, as stdlib/engines/measured-*-llamacpp.qmoe; one
#              `qmoe measure` at the widths GGUF takes, 2, 3, 4, 5 and 8,
#              with ggml's group of 32, each width rated on the ggml block
#              type the file will hold: --target gguf);
#   llama.cpp  Q4_0, Q8_0 "pure" (every weight matrix at the type: the same
#              layout and bytes as qmoe's, checked), Q4_0 + imatrix; the
#              presets Q2_K, Q3_K_S, Q3_K_M, Q4_K_S, Q4_K_M (llama.cpp's own
#              per-tensor mix), each without and with the imatrix.
# Everywhere token_embd and output stay at the stored BF16 (qmoe keeps them;
# llama.cpp is told to), so bytes differ only where the linears do.
# llama.cpp (F32 KV cache, flash attention off) computes each file's KL
# divergence from the base over the first $BYTES bytes of WikiText-2 test in
# windows of 512 (the base decoded once, its log-probabilities cached).
#
# Prints one row per file: bytes, bits per parameter (8 x bytes over the
# base's parameters), KLD, whether it is on the Pareto front of the model's
# rows (no other row has fewer or equal bytes and a lower KLD), and for qmoe
# rows the quantize run's wall and CPU seconds and peak memory; then per
# model qmoe Q4_0 / llama.cpp Q4_0 + imatrix KLD (the issue's goal: <= 0.5)
# and, for each llama.cpp preset, the qmoe rows with no more bytes and lower
# KLD; and the measure run's wall and CPU seconds.
#
# usage: bench/gguf_vs_llamacpp.sh [QMOE]   (default ./qmoe)
#   MODELS (default "tiny-qwen3moe tiny-mixtral tiny-deepseek"),
#   BYTES (default 131072), SAMPLES (calibration windows, default 128),
#   BUDGETS (default "2.5 3.0 3.5"; empty: no measured rows), TYPES (qmoe's
#   uniform rows, default "Q4_0 Q8_0 Q5_0 Q5_1 Q2_K Q3_K Q4_K"), PRESETS (llama.cpp's,
#   default "Q2_K Q3_K_S Q3_K_M Q4_K_S Q4_K_M"; empty: none), LLAMA_THREADS
#   (llama.cpp's threads, default 2), QM_LLAMA_CACHE (default ./.llama-cache),
#   MEASURES (a folder of MODEL.yaml measure files made with the settings
#   above, e.g. by an earlier run; default: measured here), TARGET (measure's
#   --target, default gguf; empty: GPTQ's plain grid, as before)
set -eu
qmoe=${1:-./qmoe}
src=$(cd "$(dirname "$0")/.." && pwd)
bytes=${BYTES:-131072}
samples=${SAMPLES:-128}
models=${MODELS:-tiny-qwen3moe tiny-mixtral tiny-deepseek}
budgets=${BUDGETS-2.5 3.0 3.5}
types=${TYPES-Q4_0 Q8_0 Q5_0 Q5_1 Q2_K Q3_K Q4_K}
presets=${PRESETS-Q2_K Q3_K_S Q3_K_M Q4_K_S Q4_K_M}
target=${TARGET-gguf}
cache=${QM_LLAMA_CACHE:-$PWD/.llama-cache}
QMOE_PATH=$src/stdlib
export QMOE_PATH
engine() { sh "$src/tools/llama-engine.sh" "$cache" "$@"; }
engine setup
text="$src/examples/data/wikitext2-test.txt"
calib="$src/examples/data/wikitext2-valid.txt"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf 'default: keep\n' > "$work/keep.qmoe"
printf 'default: 4bit group 32 sym\n' > "$work/Q4_0.qmoe"
printf 'default: 4bit group 32 asym\n' > "$work/Q4_1.qmoe"
printf 'default: 8bit group 32 sym\n' > "$work/Q8_0.qmoe"
printf 'default: 5bit group 32 sym\n' > "$work/Q5_0.qmoe"
printf 'default: 5bit group 32 asym\n' > "$work/Q5_1.qmoe"
printf 'default: 2bit group 16\n' > "$work/Q2_K.qmoe"
printf 'default: 3bit group 16\n' > "$work/Q3_K.qmoe"
printf 'default: 4bit group 256\n' > "$work/Q4_K.qmoe"
for b in $budgets; do # any B, not only the stdlib's: what stdlib/engines/measured-*-llamacpp.qmoe say
    printf 'default: 3bit\nbudget %s bits by measured\nengine llama.cpp fit\n' "$b" > "$work/measured-$b-llamacpp.qmoe"
done

# gguf MODEL POLICY OUT [OPTIONS]: qmoe's GGUF; "wall cpu peak_MiB" on stdout
gguf() {
    m=$1 p=$2 o=$3
    shift 3
    "$qmoe" compile "$work/$p.qmoe" --model "$src/examples/models/$m" $measure -o "$work/$m-$p.yaml"
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$qmoe" quantize -q --plan "$work/$m-$p.yaml" \
        --model "$src/examples/models/$m" --calib "$calib" --samples "$samples" --format gguf "$@" -o "$o"
    awk '{ printf "%.1f %.1f %.0f", $1, $2 + $3, $4 / 1024 }' "$work/time"
}
# kld FILE: its KLD from the model's base
kld() { engine ppl "$1" "$text" "$bytes" 512 - "$base" "$work/base.lp" 2>/dev/null | sed -n 's/^kld //p'; }
size() { wc -c < "$1" | tr -d ' '; }
# row SOURCE NAME FILE [COST]: a row of the model's table in $work/rows
row() {
    printf '%s %s %s %s %s\n' "$1" "$2" "$(size "$3")" "$(kld "$3")" "${4:--}" >> "$work/rows"
    rm -f "$3"
}

echo "text: first $bytes bytes of WikiText-2 test; calibration: $samples x 512 bytes of WikiText-2 valid"
for m in $models; do
    : > "$work/rows"
    rm -f "$work/base.lp"
    measure=
    base="$work/$m-f32.gguf"
    gguf "$m" keep "$base" --keep-type F32 > /dev/null
    params=$(( $(size "$base") / 4 ))
    engine imatrix "$base" "$calib" $((samples * 512)) 512 "$work/imatrix.gguf" > /dev/null
    # llama.cpp: pure Q4_0 / Q8_0 (qmoe's layout), Q4_0 + imatrix, presets
    for t in Q4_0:2 Q8_0:7; do
        name=${t%:*} ftype=${t#*:}
        engine quantize "$base" "$work/l.gguf" "$ftype" 30 2>/dev/null
        cp "$work/l.gguf" "$work/pure-$name.gguf"
        row llama.cpp "$name" "$work/l.gguf"
    done
    engine quantize "$base" "$work/l.gguf" 2 30 "$work/imatrix.gguf" 2>/dev/null
    row llama.cpp Q4_0+imatrix "$work/l.gguf"
    for name in $presets; do
        ftype=$(echo "Q2_K:10 Q3_K_S:11 Q3_K_M:12 Q4_K_S:14 Q4_K_M:15" | tr ' ' '\n' | sed -n "s/^$name://p")
        [ -n "$ftype" ] || { echo "PRESETS: unknown preset '$name'" >&2; exit 2; }
        engine quantize "$base" "$work/l.gguf" "$ftype" 30 - preset 2>/dev/null
        row llama.cpp "$name" "$work/l.gguf"
        engine quantize "$base" "$work/l.gguf" "$ftype" 30 "$work/imatrix.gguf" preset 2>/dev/null
        row llama.cpp "$name+imatrix" "$work/l.gguf"
    done
    # qmoe
    for p in $types; do
        [ -f "$work/$p.qmoe" ] || { echo "TYPES: unknown type '$p'" >&2; exit 2; }
        # Q4_K (group 256) needs every linear's input a multiple of 256: a row then, not an error
        if ! "$qmoe" compile "$work/$p.qmoe" --model "$src/examples/models/$m" -o "$work/probe.yaml" 2>"$work/err"; then
            echo "$m: qmoe $p: no such plan for this model: $(tail -1 "$work/err")"
            continue
        fi
        cost=$(gguf "$m" "$p" "$work/q.gguf")
        if [ -f "$work/pure-$p.gguf" ]; then
            a=$(size "$work/q.gguf") b=$(size "$work/pure-$p.gguf")
            [ "$a" = "$b" ] || { echo "$m $p: sizes differ: qmoe $a, llama.cpp $b" >&2; exit 1; }
        fi
        row qmoe "$p" "$work/q.gguf" "$(echo "$cost" | tr ' ' ,)"
        rm -rf "$work/q.gguf.d"
    done
    if [ -n "$budgets" ]; then
        if [ -n "${MEASURES:-}" ]; then
            cp "$MEASURES/$m.yaml" "$work/measure.yaml"
        else
            /usr/bin/time -f '%e %U %S' -o "$work/time" "$qmoe" measure -q "$src/examples/models/$m" \
                --calib "$calib" --samples "$samples" --widths 2,3,4,5,8 --group 32 ${target:+--target "$target"} \
                -o "$work/measure.yaml"
            measure_cost=$(awk '{ printf "%.1f s wall, %.1f s CPU", $1, $2 + $3 }' "$work/time")
        fi
        measure="--measure $work/measure.yaml"
        for b in $budgets; do
            cost=$(gguf "$m" "measured-$b-llamacpp" "$work/q.gguf" 2>/dev/null)
            row qmoe "measured-$b-llamacpp" "$work/q.gguf" "$(echo "$cost" | tr ' ' ,)"
            rm -rf "$work/q.gguf.d"
        done
        rm -rf "$work/measure.yaml" "$work/measure.yaml.qmoe-state"
    fi
    echo
    printf '%-14s %-9s %-24s %10s %6s %12s %-6s %s\n' model source file bytes bpw kld pareto \
        "qmoe quantize: wall s, cpu s, peak MiB"
    sort -k3,3n -k4,4g "$work/rows" | awk -v m="$m" -v P="$params" '
        { best = (NR == 1 || $4 < lo); if (best) lo = $4
          printf "%-14s %-9s %-24s %10d %6.3f %12.6f %-6s %s\n", m, $1, $2, $3, 8 * $3 / P, $4, best ? "yes" : "", $5 }'
    awk -v m="$m" '
        $1 == "qmoe" && $2 == "Q4_0" { q = $4 } $1 == "llama.cpp" && $2 == "Q4_0+imatrix" { l = $4 }
        $1 == "qmoe" { qn[++n] = $2; qb[n] = $3; qk[n] = $4 }
        $1 == "llama.cpp" && $2 ~ /_K/ { ln[++k] = $2; lb[k] = $3; lk[k] = $4 }
        END {
            if (q != "") printf "%s: qmoe Q4_0 KLD / llama.cpp Q4_0+imatrix KLD = %.3f (goal <= 0.5)\n", m, q / l
            for (i = 1; i <= k; i++) {
                s = ""
                for (j = 1; j <= n; j++) if (qb[j] <= lb[i] && qk[j] < lk[i]) s = s " " qn[j]
                printf "%s: llama.cpp %s (%d bytes, KLD %.6f) beaten at no more bytes by:%s\n", m, ln[i], lb[i], lk[i],
                    s == "" ? " none" : s
            }
        }' "$work/rows"
    [ -z "${measure_cost:-}" ] || echo "$m: qmoe measure${target:+ --target $target}: $measure_cost"
    measure_cost=
    rm -f "$work"/pure-*.gguf "$base" "$work/imatrix.gguf" "$work/base.lp"
    rm -rf "$base.d"
done
