#!/bin/sh
# bench/forward.sh: forward tokens/s on the example models at the default
# batch (8 x 512), and the fraction of this machine's sgemm rate (measured in
# the same run) that the forward pass reaches.  Goal: at least 40%.  On 2
# cores shared with other builds (Dec 2026, 5 runs each, median and range):
# tiny-mixtral 10.4k tokens/s, 52% (38-55%); tiny-deepseek 8.6k tokens/s,
# 42% (40-51%).  Before the forward pass ran its own tasks over
# single-threaded sgemm: 4.8k tokens/s, 23% (16-35%) and 4.9k, 26% (14-29%).
# Run from the build directory after `make bench`.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
for m in tiny-mixtral tiny-deepseek; do
    ./bench/forward_bench "$src/examples/models/$m" 8 512
    echo
done
