# bench/qwen3-235b-setup.sh: sourced by the benchmarks that time qmoe at
# Qwen3-235B-A22B scale (inspect.sh, compile.sh).  Takes $qmoe; leaves it
# naming the program itself, $dir holding the header-only checkpoint
# (mk-qwen3-235b.sh) and $work an empty directory for outputs (qmoe refuses
# to write inside a model directory), both removed when the script exits.
# In a build tree ./qmoe is libtool's shell wrapper; time the program itself,
# as installed, not a shell starting it.
if grep -q 'libtool' "$qmoe" 2>/dev/null && [ -x "$(dirname "$qmoe")/.libs/$(basename "$qmoe")" ]; then
    LD_LIBRARY_PATH="$(cd "$(dirname "$qmoe")" && pwd)/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
    qmoe="$(dirname "$qmoe")/.libs/$(basename "$qmoe")"
fi
dir=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$dir" "$work"' EXIT

sh "$bench_dir/mk-qwen3-235b.sh" "$dir"
