#!/bin/sh
# bench/measure-rank.sh MODEL [N_EXPERTS_PER_LAYER]: does `qmoe measure`'s
# error rank units the way a direct end-to-end probe does?  For a sample of
# units (every attention, dense MLP and shared expert, and N routed experts
# per MoE layer, evenly spaced; default 2) the probe quantizes that unit
# alone at 2 bits (a plan with every other weight kept), runs quantize and
# `eval --base`, and reads the KL divergence from the unquantized model.
# Prints each unit's measured error and probed KLD, then Spearman's rank
# correlation between them.  Settings as the README's bench: 64 windows of
# 512 calibration tokens of WikiText-2 valid; the probe evaluates on the
# first EVAL_TOKENS (default 32768) tokens of WikiText-2 test.  UNITS
# (default expert) is measure's --units; with linear every linear of the
# sample is probed alone.  Measured (SAMPLES=32 EVAL_TOKENS=16384):
# tiny-deepseek 0.967 (expert, 22 units), 0.918 (linear, N=1, 57 units);
# tiny-mixtral 0.963 (expert, 18 units).  Run from the build directory.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?usage: bench/measure-rank.sh MODEL [N_EXPERTS_PER_LAYER]}
per=${2:-2}
tok=${EVAL_TOKENS:-32768}
samples=${SAMPLES:-64}
units=${UNITS:-expert}
calib=$src/examples/data/wikitext2-valid.txt
text=$src/examples/data/wikitext2-test.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./qmoe measure "$model" --calib "$calib" --samples "$samples" --units "$units" -q -o "$tmp/measure.yaml"
experts=$(sed -n 's/^ *experts: \([0-9]*\)$/\1/p' "$tmp/measure.yaml")
# the units: NAME ERROR_AT_2BIT
sed -n 's/^  \([^ :]*\): {params: [0-9]*, error: \[\([^,]*\),.*$/\1 \2/p' "$tmp/measure.yaml" |
awk -v per="$per" -v E="$experts" '{
    if (match($1, /experts\[[0-9]+\]/)) {
        e = substr($1, RSTART + 8, RLENGTH - 9) + 0
        step = int(E / per); if (step < 1) step = 1
        if (e % step != 0 || e / step >= per) next
    }
    print }' >"$tmp/units"
: >"$tmp/pairs"
while read -r unit err; do
    printf 'default: keep\n%s: 2bit\n' "$(printf '%s' "$unit" | sed 's/\.shared$/.shared_experts/')" >"$tmp/p.qmoe"
    ./qmoe compile "$tmp/p.qmoe" --model "$model" -o "$tmp/plan.yaml" 2>/dev/null
    rm -rf "$tmp/q"
    ./qmoe quantize --plan "$tmp/plan.yaml" --model "$model" --calib "$calib" --samples "$samples" -q \
        -o "$tmp/q" >/dev/null 2>&1
    kld=$(./qmoe eval "$tmp/q" --base "$model" --text "$text" --max-tokens "$tok" --format yaml -q 2>/dev/null |
          sed -n 's/^ *kld_mean: //p')
    printf '%-26s measured %-14s probe KLD %s\n' "$unit" "$err" "$kld"
    echo "$err $kld" >>"$tmp/pairs"
done <"$tmp/units"
# Spearman: Pearson's correlation of the ranks (ties get their mean rank)
awk 'function ranks(col, r,   i, j, k, n, idx, v, t) {
         n = N; for (i = 1; i <= n; i++) { idx[i] = i; v[i] = x[i, col] }
         for (i = 2; i <= n; i++) { t = idx[i]; for (j = i - 1; j >= 1 && v[idx[j]] > v[t]; j--) idx[j + 1] = idx[j]; idx[j + 1] = t }
         for (i = 1; i <= n; i = j) { for (j = i; j <= n && v[idx[j]] == v[idx[i]]; j++); for (k = i; k < j; k++) r[idx[k]] = (i + j - 1) / 2 }
     }
     { N++; x[N, 1] = $1 + 0; x[N, 2] = $2 + 0 }
     END {
         ranks(1, a); ranks(2, b)
         for (i = 1; i <= N; i++) { ma += a[i] / N; mb += b[i] / N }
         for (i = 1; i <= N; i++) { sab += (a[i] - ma) * (b[i] - mb); saa += (a[i] - ma) ^ 2; sbb += (b[i] - mb) ^ 2 }
         printf "Spearman rank correlation, measured error vs probed KLD, %d units: %.3f\n", N, sab / sqrt(saa * sbb)
     }' "$tmp/pairs"
