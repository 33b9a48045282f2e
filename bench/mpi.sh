#!/bin/sh
# bench/mpi.sh: `qmoe quantize` spread over MPI ranks at real dimensions,
# and what that projects to on a cluster.
#
# usage: bench/mpi.sh [WORKDIR]   (default: bench-mpi under $TMPDIR or /tmp)
#
# Writes a random-weight checkpoint with Mixtral-8x7B's real dimensions cut
# to LAYERS layers (default 2; bench/mk-random.sh) and EXPERTS experts per
# layer (default 8, top-2; fewer keep each expert's and the attention's real
# dimensions when a layer of 8 takes too long), then quantizes it with
# the stdlib's uniform 4-bit plan on WINDOWS x CTX random tokens (default
# 2 x 256: the fixed GPTQ work dominates at real dimensions, and a layer
# still takes minutes on 2 cores) under `mpirun -n N` for each N in RANKS
# (default "1 2"), all N ranks together on this machine's cores
# (OPENBLAS_NUM_THREADS = cores / N each, so every run has the same cores).
# It prints, measured in the same run:
#   - per layer: wall time, the routed experts' share (spread over the
#     ranks) and the rest (attention, router, writers: rank 0 alone);
#   - per rank: CPU seconds and bytes sent (dist.c counts the payload each
#     rank hands to MPI), per layer;
#   - wall and CPU ratios of N against 1, and whether the checkpoints are
#     the same bytes (they must be);
# then projects full Mixtral-8x7B and DeepSeek-V3 runs with the study's
# calibration on 8 and 64 nodes, from a FLOP model of a layer whose rate
# is calibrated on the N = 1 run (assumptions printed with the table).
# Not part of make check: minutes per layer, 6 GB of disk.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
QMOE=${QMOE:-$here/qmoe}
SRC=${QM_SRCDIR:-$here}
MPIRUN=${MPIRUN:-mpirun}
LAYERS=${LAYERS:-2} EXPERTS=${EXPERTS:-8} WINDOWS=${WINDOWS:-2} CTX=${CTX:-256} RANKS=${RANKS:-1 2}
CORES=${CORES:-$(nproc 2>/dev/null || echo 2)}
work=${1:-${TMPDIR:-/tmp}/bench-mpi}
mkdir -p "$work" || exit 1
mpirun="$MPIRUN"
if "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then
    mpirun="$MPIRUN --oversubscribe --bind-to none"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
command -v "$MPIRUN" > /dev/null || { echo "mpi.sh: no $MPIRUN (Debian: openmpi-bin)" >&2; exit 77; }

ck=$work/mixtral-$LAYERS-$EXPERTS
if [ ! -s "$ck/model.safetensors.index.json" ]; then
    rm -rf "$ck"
    sed "s/\"num_local_experts\": *[0-9]*/\"num_local_experts\": $EXPERTS/" \
        "$SRC/tests/data/configs/mixtral-8x7b.json" > "$work/config.json"
    sh "$SRC/bench/mk-random.sh" "$work/config.json" "$LAYERS" "$ck" || exit 1
fi
awk -v n=$((WINDOWS * CTX)) 'BEGIN { srand(1); for (i = 0; i < n; i++) print int(rand() * 32000) }' > "$work/ids.txt"
"$QMOE" compile "$SRC/stdlib/paper/uniform-4bit.qmoe" --model "$ck" -o "$work/plan.yaml" 2> /dev/null || exit 1

: > "$work/layers"
: > "$work/ranks"
for n in $RANKS; do
    rm -rf "$work/q$n"
    OPENBLAS_NUM_THREADS=$(( CORES / n > 0 ? CORES / n : 1 )) /usr/bin/time -f "%e %U %S" -o "$work/time$n" \
        $mpirun -n "$n" "$QMOE" quantize --plan "$work/plan.yaml" --model "$ck" \
        --calib "$work/ids.txt" --ctx "$CTX" --samples "$WINDOWS" -o "$work/q$n" 2> "$work/err$n" ||
        { echo "mpi.sh: $n ranks failed:"; tail -5 "$work/err$n"; exit 1; } >&2
    # "layer L/T done in W s, ...; routed experts X s on N ranks, the rest Y s; B bytes sent so far"
    sed -n 's/^qmoe: layer \([0-9]*\)\/[0-9]* done in \([0-9.]*\) s.*; routed experts \([0-9.]*\) s on [0-9]* ranks*, the rest \([0-9.]*\) s;.*/\1 \2 \3 \4/p' \
        "$work/err$n" | awk -v n="$n" '{ print n, $0 }' >> "$work/layers"
    # "rank R of N: K layers in S s, C s CPU, B bytes sent, peak memory M MiB" (N > 1), else time(1)
    if [ "$n" -gt 1 ]; then
        sed -n 's/^qmoe: rank \([0-9]*\) of [0-9]*: \([0-9]*\) layers in [0-9.]* s, \([0-9.]*\) s CPU, \([0-9]*\) bytes sent, peak memory \([0-9.]*\) MiB/\1 \2 \3 \4 \5/p' \
            "$work/err$n" | sort -n | awk -v n="$n" '{ print n, $0 }' >> "$work/ranks"
    else
        awk -v L="$LAYERS" '{ print 1, 0, L, $2 + $3, 0, 0 }' "$work/time1" >> "$work/ranks"
    fi
done

echo "quantize, Mixtral-8x7B dimensions (hidden 4096, $EXPERTS experts of 14336, top-2), $LAYERS layers, $WINDOWS x $CTX tokens,"
echo "$CORES cores shared by the ranks (load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
printf '%5s %5s %8s %10s %8s\n' ranks layer wall_s experts_s rest_s
sort -k1,1n -k2,2n "$work/layers" | awk '{ printf "%5s %5s %8.1f %10.1f %8.1f\n", $1, $2, $3, $4, $5 }'
echo
printf '%5s %5s %8s %14s %15s\n' ranks rank cpu_s bytes_sent bytes_per_layer
awk '{ printf "%5s %5s %8.1f %14s %15.0f\n", $1, $2, $4, $5, $3 ? $5 / $3 : 0 }' "$work/ranks"
echo
for n in $RANKS; do
    [ "$n" = 1 ] && continue
    same=yes
    for f in "$work"/q1/*.safetensors "$work"/q1/*.json; do cmp -s "$f" "$work/q$n/${f##*/}" || same=NO; done
    awk -v n="$n" -v same="$same" '
        FILENAME ~ /time1$/ { w1 = $1; c1 = $2 + $3; next }
        { wn = $1; cn = $2 + $3 }
        END { printf "%d ranks against 1: wall %.2fx, CPU %.2fx; checkpoint byte-identical: %s\n", n, w1 / wn, cn / c1, same }' \
        "$work/time1" "$work/time$n"
done

# ---- projection -----------------------------------------------------------------------------
# FLOPs of one MoE layer (GPTQ of an (out, in) linear: 2 out in^2 for the lazy updates + in^3 for
# its Hessian's factor and inverse; a routed row: gate, up and down forward twice (the Hessian of
# down needs the activations, the output needs all three) 12 D F, plus its Hessians 2 D^2 + 2 F^2;
# attention: three passes over the tokens through its linears (2 T A each) and the scores (4 T ctx D),
# two Hessians of width D, GPTQ of its linears).  The rate (FLOP per CPU second) is the N = 1 run's
# over its own layers; a node of C cores runs C times that; links carry BW bytes/s; the broadcast of
# the FFN's input and routing costs 2 x its size / BW (pipelined), rank 0 receives every package
# (codes 1 byte/weight + scales and zeros, and the output rows) over its one link.
echo
awk -v L="$LAYERS" -v E="$EXPERTS" -v T=$((WINDOWS * CTX)) -v ctx="$CTX" -v out="$work/rate" '
    function gptq(o, i) { return 2 * o * i * i + i * i * i }
    function expert_fixed(D, F) { return 2 * gptq(F, D) + gptq(D, F) }
    function per_row(D, F) { return 12 * D * F + 2 * D * D + 2 * F * F }
    FILENAME ~ /time1$/ { cpu = $2 + $3; next }
    END {
        D = 4096; F = 14336; k = 2; A = 2 * D * D + 2 * D * 1024
        att = 3 * 2 * T * A + 3 * 4 * T * ctx * D + 2 * 2 * T * D * D + 2 * gptq(D, D) + 2 * gptq(1024, D)
        layer = att + E * expert_fixed(D, F) + T * k * per_row(D, F)
        rate = L * layer / cpu
        printf "FLOP model of this run: %.2f TFLOP per layer, %.1f CPU s per layer: %.1f GFLOP per CPU second\n",
               layer / 1e12, cpu / L, rate / 1e9
        print rate > out
    }' "$work/time1" /dev/null
rate=$(cat "$work/rate")
C=${NODE_CORES:-32} BW=${NODE_BW:-12.5e9} TF=${FULL_TOKENS:-262144}
echo "projection: $TF calibration tokens (128 x 2048), nodes of $C cores at the rate above, links of $(awk -v b="$BW" 'BEGIN { printf "%.1f", b / 1e9 }') GB/s;"
echo "expert costs balanced by the assignment rule, routing even (T k / E rows per expert); attention, router, shared"
echo "experts and the writers on rank 0's node; dense layers on rank 0"
printf '%-16s %6s %11s %10s %9s %9s %10s %9s\n' model nodes rest_s/layer experts_s comm_s layer_s total_h 1-node_h
awk -v r="$rate" -v C="$C" -v BW="$BW" -v T="$TF" '
    function gptq(o, i) { return 2 * o * i * i + i * i * i }
    function swiglu_fixed(D, F) { return 2 * gptq(F, D) + gptq(D, F) }
    function per_row(D, F) { return 12 * D * F + 2 * D * D + 2 * F * F }
    function ceil(x) { return x == int(x) ? x : int(x) + 1 }
    # name, hidden, expert width, experts, top-k, MoE layers, dense layers (width DF), attention (FLOPs
    # at T tokens), shared expert width (0: none), ctx
    function row(name, D, F, E, k, Lm, Ld, DF, att, SF,    P, rest, ex, comm, lt, one, dense) {
        rest = att + (SF ? swiglu_fixed(D, SF) + T * per_row(D, SF) : 0)
        ex = swiglu_fixed(D, F) + T * k / E * per_row(D, F)
        dense = att + swiglu_fixed(D, DF) + T * per_row(D, DF)
        one = (Lm * (rest + E * ex) + Ld * dense) / (r * C)
        for (i = 1; i <= 2; i++) {
            P = i == 1 ? 8 : 64
            comm = 2 * (T * D * 4 + T * k * 8) / BW + (E * 3 * D * F * 1.07 + T * k * D * 4) / BW
            lt = rest / (r * C) + ceil(E / P) * ex / (r * C) + comm
            printf "%-16s %6d %11.0f %10.0f %9.1f %9.0f %10.1f %9.1f\n", name, P, rest / (r * C), ceil(E / P) * ex / (r * C),
                   comm, lt, (Lm * lt + Ld * dense / (r * C)) / 3600, one / 3600
        }
    }
    BEGIN {
        ctx = 2048
        # Mixtral-8x7B: 32 layers, GQA 32 x 128 queries, 8 x 128 keys/values
        D = 4096; A = 2 * D * D + 2 * D * 1024
        att = 3 * 2 * T * A + 3 * 4 * T * ctx * D + 2 * 2 * T * D * D + 2 * gptq(D, D) + 2 * gptq(1024, D)
        row("Mixtral-8x7B", D, 14336, 8, 2, 32, 0, 0, att, 0)
        # DeepSeek-V3: 61 layers (3 dense of 18432), hidden 7168, 256 routed experts of 2048, top-8, one shared
        # expert of 2048; MLA as its five linears: q_a 1536x7168, q_b 24576x1536, kv_a 576x7168,
        # kv_b 32768x512, o 7168x16384 (187M weights)
        D = 7168; A = 1536 * D + 24576 * 1536 + 576 * D + 32768 * 512 + D * 16384
        att = 3 * 2 * T * A + 3 * 4 * T * ctx * 128 * 192 + 2 * T * (D * D + 16384 * 16384) \
              + gptq(1536, D) + gptq(576, D) + gptq(24576, 1536) + gptq(32768, 512) + gptq(D, 16384)
        row("DeepSeek-V3", D, 2048, 256, 8, 58, 3, 18432, att, 2048)
    }'
