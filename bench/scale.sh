#!/bin/sh
# bench/scale.sh: quantize time at real dimensions against the time its
# FLOPs take, and GPTQ against the reference GPTQ, measured in one run.
#
# usage: bench/scale.sh [WORKDIR]   (default: bench-scale under $TMPDIR or /tmp)
#
# 1. One decoder layer with Mixtral-8x7B's real dimensions (CONFIG, default
#    tests/data/configs/mixtral-8x7b.json; random BF16 weights from
#    bench/mk-random.sh), quantized by the stdlib's uniform 4-bit plan on
#    WINDOWS x CTX random tokens (default 8 x 512).  The layer's time is
#    split into GPTQ (quant_log's seconds: each linear's GPTQ with its error
#    figure; fixed per layer) and forward/Hessian (the rest: the passes
#    through the layer, the Hessians, the experts' activations; proportional
#    to the tokens), each beside the time its FLOPs take at this machine's
#    sgemm rate (gptq_bench --rate, the same run).  Goal (issue 15): the
#    whole layer within 2x of its FLOP time.  From the measured efficiency
#    of each part it projects the wall time of the full model (its layer
#    count from CONFIG) on PROJ_WINDOWS x PROJ_CTX tokens (the study's
#    128 x 2048) on this machine.
# 2. GPTQ of SHAPES (default 14336x4096 4096x14336: a Mixtral expert's gate
#    and down) by qmoe (bench/gptq_bench) and by the reference GPTQ
#    (tools/gptq_ref.py: IST-DASLab's gptq.py algorithm on PyTorch's CPU
#    backend) on the same weights and Hessian (GPTQ_TOKENS rows, default
#    4096) and THREADS threads (default: nproc), in CPU and wall seconds,
#    with both relative errors.  Goals: qmoe >= 5x faster in CPU time, error
#    ratio <= 1.02.  Skipped when PYTHON (default /usr/bin/python3) has no
#    torch.
#
# PARTS="layer gptq" picks the parts.  Wall figures on a shared machine are
# slower than an idle one's; CPU seconds and the ratios are the figures to
# compare.  Not part of make check (minutes at real dimensions).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
QMOE=${QMOE:-$here/qmoe}
GPTQ_BENCH=${GPTQ_BENCH:-$here/bench/gptq_bench}
SRC=${QM_SRCDIR:-$here}
CONFIG=${CONFIG:-$SRC/tests/data/configs/mixtral-8x7b.json}
WINDOWS=${WINDOWS:-8} CTX=${CTX:-512}
PROJ_WINDOWS=${PROJ_WINDOWS:-128} PROJ_CTX=${PROJ_CTX:-2048}
SHAPES=${SHAPES:-14336x4096 4096x14336}
GPTQ_TOKENS=${GPTQ_TOKENS:-4096}
THREADS=${THREADS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
PARTS=${PARTS:-layer gptq}
work=${1:-${TMPDIR:-/tmp}/bench-scale}
mkdir -p "$work" || exit 1
export OPENBLAS_NUM_THREADS=$THREADS

rate=$("$GPTQ_BENCH" --rate) || { echo "scale.sh: $GPTQ_BENCH --rate failed" >&2; exit 1; }
echo "sgemm rate (1024^3, $THREADS threads): $rate GFLOP/s"
num() { sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p" "$CONFIG" | head -1; }

case " $PARTS " in *" layer "*)
    ck=$work/layer
    rm -rf "$ck" "$work/q"
    sh "$SRC/bench/mk-random.sh" "$CONFIG" 1 "$ck" || exit 1
    V=$(num vocab_size)
    awk -v n=$((WINDOWS * CTX)) -v V="$V" 'BEGIN { srand(1); for (i = 0; i < n; i++) print int(rand() * V) }' \
        > "$work/ids.txt"
    "$QMOE" compile "$SRC/stdlib/paper/uniform-4bit.qmoe" --model "$ck" -o "$work/plan.yaml" 2> /dev/null || exit 1
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$QMOE" quantize --plan "$work/plan.yaml" --model "$ck" \
        --calib "$work/ids.txt" --ctx "$CTX" --samples "$WINDOWS" -o "$work/q" 2> "$work/err" \
        || { echo "scale.sh: quantize failed:" >&2; tail -3 "$work/err" >&2; exit 1; }
    layer_s=$(sed -n 's/^qmoe: layer 0\/1 done in \([0-9.]*\) s.*/\1/p' "$work/err")
    set -- $(cat "$work/time")
    wall=$1 cpu=$(awk -v u="$2" -v s="$3" 'BEGIN { printf "%.1f", u + s }') rss=$4
    hd=$(( $(num hidden_size) / $(num num_attention_heads) ))
    # quant_log: name tokens seconds, joined with the tensors' shapes
    sed -n 's/.*name: \([^,]*\), .*tokens: \([0-9]*\), .*seconds: \([0-9.]*\)}$/\1 \2 \3/p' "$work/q/quant_log.yaml" \
        > "$work/log"
    awk -v T=$((WINDOWS * CTX)) -v S="$CTX" -v PT=$((PROJ_WINDOWS * PROJ_CTX)) -v PS="$PROJ_CTX" \
        -v D="$(num hidden_size)" -v q=$(( $(num num_attention_heads) * hd )) \
        -v kv=$(( $(num num_key_value_heads) * hd )) -v E="$(num num_local_experts)" -v k="$(num num_experts_per_tok)" \
        -v F="$(num intermediate_size)" -v L="$(num num_hidden_layers)" -v rate="$rate" -v layer_s="$layer_s" \
        -v wall="$wall" -v cpu="$cpu" -v rss="$rss" -v windows="$WINDOWS" -v ctx="$CTX" \
        -v pw="$PROJ_WINDOWS" -v pc="$PROJ_CTX" '
        FILENAME ~ /tensors$/ { out[$2] = $3; inn[$2] = $4; next }
        {   # GPTQ: the factor (1/3 in^3: one Cholesky), the updates (out in^2), the error denominator
            o = out[$1]; i = inn[$1]; n = $2; gs += $3
            f = i ^ 3 / 3 + o * i ^ 2
            g += f + (n < i ? 2 * n * i * o : 2 * o * i ^ 2)
            # at the projected tokens: an expert sees its share of them
            pn = (n == T ? PT : n * PT / T)
            pg += f + (pn < i ? 2 * pn * i * o : 2 * o * i ^ 2)
            if ($1 ~ /gate\.weight$/) router = 1
        }
        function fwd(T, S,   R, a) {
            # a pass through attention (projections, scores and values over the causal half), per pass;
            # passes: q/k/v Hessian, o Hessian, the router Hessian when it is quantized, the capture
            a = 2 * T * D * (q + 2 * kv) + 2 * T * q * D + 2 * T * S * q
            R = T * k # routed rows
            return (3 + router) * a + T * D ^ 2 + T * q ^ 2 + router * T * D ^ 2 \
                   + R * D ^ 2 + 4 * R * D * F + R * F ^ 2 + 6 * R * D * F
        }
        END {
            r = rate * 1e9
            ff = fwd(T, S); fs = layer_s - gs
            printf "\none layer at real dimensions (hidden %d, %d experts of %d), %d x %d tokens, %s threads:\n",
                D, E, F, windows, ctx, ENVIRON["OPENBLAS_NUM_THREADS"]
            printf "  %-22s %9s %9s %12s %8s\n", "part", "seconds", "GFLOP", "FLOP time s", "ratio"
            printf "  %-22s %9.1f %9.0f %12.1f %8.2f\n", "forward/Hessian", fs, ff / 1e9, ff / r, fs / (ff / r)
            printf "  %-22s %9.1f %9.0f %12.1f %8.2f\n", "GPTQ", gs, g / 1e9, g / r, gs / (g / r)
            printf "  %-22s %9.1f %9.0f %12.1f %8.2f  (goal <= 2: %s)\n", "layer", layer_s, (ff + g) / 1e9,
                (ff + g) / r, layer_s / ((ff + g) / r), layer_s / ((ff + g) / r) <= 2 ? "met" : "NOT met"
            printf "  the whole run: %.1f s wall, %.1f s CPU, peak RSS %.2f GiB\n", wall, cpu, rss / 1048576
            pf = fwd(PT, PS)
            p = fs * pf / ff + gs * pg / g
            printf "projected: %d layers on %d x %d tokens at the measured efficiency of each part:\n", L, pw, pc
            printf "  forward/Hessian %.0f s + GPTQ %.0f s per layer = %.1f h for the model (%.1f days)\n",
                fs * pf / ff, gs * pg / g, p * L / 3600, p * L / 86400
        }' "$ck/tensors" "$work/log"
    rm -rf "$ck" "$work/q" ;;
esac

case " $PARTS " in *" gptq "*)
    echo
    echo "GPTQ against the reference (IST-DASLab gptq.py on PyTorch CPU), 4-bit, group 128, sym, $GPTQ_TOKENS rows, $THREADS threads:"
    have_ref=1 dump="--dump $work"
    "$PYTHON" -c 'import torch, numpy' 2> /dev/null \
        || { have_ref=0 dump=; echo "  (reference SKIPPED: $PYTHON has no torch/numpy)"; }
    printf '  %-12s %9s %9s %11s %11s %9s %10s %10s %8s\n' shape qmoe_s qmoe_cpu ref_s ref_cpu cpu_ratio error \
        ref_error err_ratio
    for shape in $SHAPES; do
        out=${shape%x*} in=${shape#*x}
        mine=$("$GPTQ_BENCH" --shape "$shape" --tokens "$GPTQ_TOKENS" $dump) \
            || { echo "scale.sh: gptq_bench $shape failed" >&2; exit 1; }
        ref=
        den=$(echo "$mine" | sed -n 's/.* den=\([^ ]*\) .*/\1/p')
        [ $have_ref = 1 ] && ref=$("$PYTHON" "$SRC/tools/gptq_ref.py" "$work" "$out" "$in" "$THREADS" "$den")
        echo "$mine $ref" | awk -v shape="$shape" -v rate="$rate" '{
            for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            have = "ref_gptq_cpu_s" in v
            printf "  %-12s %9.1f %9.1f %11s %11s %9s %10.4g %10s %8s\n", shape, v["gptq_s"], v["gptq_cpu_s"],
                have ? sprintf("%.1f", v["ref_gptq_s"]) : "-", have ? sprintf("%.1f", v["ref_gptq_cpu_s"]) : "-",
                have ? sprintf("%.2f", v["ref_gptq_cpu_s"] / v["gptq_cpu_s"]) : "-", v["error"],
                have ? sprintf("%.4g", v["ref_error"]) : "-", have ? sprintf("%.4f", v["error"] / v["ref_error"]) : "-"
            printf "  %-12s qmoe GPTQ %.0f GFLOP: %.1f s at the sgemm rate, %.2fx of that in wall time\n", "",
                v["flops"] / 1e9, v["flops"] / (rate * 1e9), v["gptq_s"] / (v["flops"] / (rate * 1e9))
        }'
        rm -f "$work/W.f32" "$work/H.f32"
    done
    echo "  goals (issue 15): cpu_ratio >= 5, err_ratio <= 1.02" ;;
esac
