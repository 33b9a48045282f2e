#!/bin/sh
# bench/inspect.sh: how long `qmoe inspect` takes on a Qwen3-235B-A22B-scale
# checkpoint (94 layers x 128 experts, ~37k tensors, ~470 GB of BF16) that
# exists only as headers: the data areas are holes in sparse files, split
# into 4 shards with an index as published checkpoints are.
# Goal: well under one second.  Prints the time and its ratio to the goal.
# Measured on 2 busy cores: ~560 ms before the one-pass JSON reader, ~100 ms
# after.
#
# usage: bench/inspect.sh [QMOE]      (default: ./qmoe)
set -eu
qmoe=${1:-./qmoe}
bench_dir=$(dirname "$0")
. "$bench_dir/qwen3-235b-setup.sh"

tensors=$(wc -l < "$dir/tensors")
apparent=$(du -c --apparent-size -B1 "$dir"/*.safetensors | tail -1 | cut -f1)
"$qmoe" inspect "$dir" > /dev/null  # warm the page cache for the headers
best=
for run in 1 2 3 4 5; do
    t0=$(date +%s%N)
    "$qmoe" inspect --format yaml "$dir" > "$dir/out.yaml"
    t1=$(date +%s%N)
    t=$(( (t1 - t0) / 1000 ))
    if [ -z "$best" ] || [ $t -lt $best ]; then best=$t; fi
done
grep -q 'total_params: 235093634560' "$dir/out.yaml" || { echo "unexpected parameter count:"; grep total "$dir/out.yaml"; exit 1; }
echo "qmoe inspect, Qwen3-235B-A22B scale: $tensors tensors in 4 shards, $((apparent / 1000000000)) GB apparent size"
awk -v us=$best 'BEGIN { printf "best of 5: %.1f ms; goal 1000 ms; time / goal = %.3f\n", us / 1000, us / 1e6 }'
