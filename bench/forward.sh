#!/bin/sh
# bench/forward.sh: forward tokens/s on the example models at the default
# batch (8 x 512), and the fraction of this machine's sgemm rate (measured in
# the same run) that the forward pass reaches.  Goal: at least 40%.  On 2
# shared cores (Dec 2026): about 10-11k tokens/s and 50-55% (tiny-mixtral),
# 9-10k tokens/s and 42-51% (tiny-deepseek); before the forward pass ran its
# own tasks over single-threaded sgemm, 5-7k tokens/s and 21-35%.
# Run from the build directory after `make bench`.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
for m in tiny-mixtral tiny-deepseek; do
    ./bench/forward_bench "$src/examples/models/$m" 8 512
    echo
done
