#!/bin/sh
# bench/tokenize.sh: `qmoe tokenize` against the JavaScript references on
# WikiText-2's test split (1.26 MB), each tokenizer in the same run.
# Goals (issue #14): at least 5x the reference's speed, and at least
# 10 MB/s on one core for Qwen3.  Encoding alone is timed on both sides
# (loading the tokenizer is printed apart for qmoe); qmoe runs on one
# thread.  MB/s is bytes / 10^6 / wall seconds, cpu MB/s the same over
# CPU seconds (what one core does on a shared machine), the speedup is the
# ratio of wall seconds; CPU seconds are the process's for the same span
# (node's include its compiler threads), and peak memory
# is the whole process's maximum resident set (GNU time), loading included.
# Ids are compared too: a fast wrong answer is no result.
# Measured on the 2-core shared machine (one run, cpu MB/s): qwen3 19.7,
# deepseek-v3 9.4, gpt2 22.8, mistral-v1 29.4; the references 0.1-0.7
# MB/s, so 16x to 290x.  Before normalizing only non-ASCII stretches Qwen3
# did ~12; before encoding word by word Mistral did ~1.5.
#
# usage: bench/tokenize.sh [QMOE] [SHAREDDATA] [NPMCACHE]
#   defaults: ./qmoe, ../shared/data beside the source tree, /tmp/qmoe-tokenizer-npm
# Needs node and npm (the references install into NPMCACHE once); exits 77
# when the data or the references are missing.
set -eu
qmoe=${1:-./qmoe}
src=$(cd "$(dirname "$0")/.." && pwd)
data=${2:-$src/../shared/data}
npm=${3:-/tmp/qmoe-tokenizer-npm}
text="$data/corpora/wikitext-2/test.txt"
if [ ! -f "$text" ] || ! command -v node >/dev/null 2>&1; then
    echo "SKIP: needs $text and node" >&2
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/qmoe-bench-tok.XXXXXX")
trap 'rm -rf "$work"' EXIT
# install the references (the goldens script pins them) without writing goldens
if [ ! -d "$npm/node_modules/@huggingface/tokenizers" ] || [ ! -d "$npm/node_modules/mistral-tokenizer-js" ]; then
    mkdir -p "$npm"
    [ -f "$npm/package.json" ] || echo '{"private": true}' >"$npm/package.json"
    (cd "$npm" && npm install --no-audit --no-fund --silent @huggingface/tokenizers@0.2.0 mistral-tokenizer-js@1.0.0 \
        >/dev/null 2>&1) || { echo "SKIP: npm could not install the references" >&2; exit 77; }
fi
gnutime=
if [ -x /usr/bin/time ] && /usr/bin/time -f %M true >/dev/null 2>&1; then gnutime=/usr/bin/time; fi
bytes=$(wc -c <"$text")
echo "qmoe tokenize vs the JS references on $(basename "$(dirname "$text")")/test.txt ($bytes bytes)"
printf '  %-12s %9s %9s %9s %9s %7s %8s %8s %8s  %s\n' tokenizer "MB/s" "cpu MB/s" "seconds" "cpu s" "load s" "peak MiB" "ref MB/s" "ref cpu s" "speedup  ids"
for t in qwen3:hf deepseek-v3:hf gpt2:gpt2 mistral-v1:spm; do
    name=${t%%:*} kind=${t#*:}
    if [ -n "$gnutime" ]; then
        OMP_NUM_THREADS=1 $gnutime -f '%M' -o "$work/rss" "$qmoe" tokenize "$data/tokenizers/$name" --text "$text" \
            -o "$work/qmoe.u32" --format yaml >"$work/q.yaml"
        rss=$(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss")
    else
        OMP_NUM_THREADS=1 "$qmoe" tokenize "$data/tokenizers/$name" --text "$text" -o "$work/qmoe.u32" --format yaml \
            >"$work/q.yaml"
        rss=n/a
    fi
    qs=$(awk '/^seconds:/ {print $2}' "$work/q.yaml")
    qc=$(awk '/^cpu_seconds:/ {print $2}' "$work/q.yaml")
    ql=$(awk '/^load_seconds:/ {print $2}' "$work/q.yaml")
    node "$src/tools/tokenizer-goldens.mjs" "$npm" "$kind" "$data/tokenizers/$name" "$work" --time "$text" >"$work/ref"
    node "$src/tools/tokenizer-goldens.mjs" "$npm" "$kind" "$data/tokenizers/$name" "$work" "$text"
    rs=$(awk '{ for (i = 1; i < NF; i++) if ($i == "seconds") print $(i + 1) }' "$work/ref")
    rc=$(awk '{ for (i = 1; i < NF; i++) if ($i == "cpu_seconds") print $(i + 1) }' "$work/ref")
    same=differ
    cmp -s "$work/qmoe.u32" "$work/test.u32" && same=same
    awk -v n="$name" -v b="$bytes" -v qs="$qs" -v qc="$qc" -v ql="$ql" -v rs="$rs" -v rc="$rc" -v rss="$rss" \
        -v same="$same" 'BEGIN {
        printf "  %-12s %9.2f %9.2f %9.4f %9.4f %7.3f %8s %8.2f %8.3f  %6.1fx  %s\n", n, b / 1e6 / qs, b / 1e6 / qc, qs, qc,
               ql, rss, b / 1e6 / rs, rc, rs / qs, same }'
done
