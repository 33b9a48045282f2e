#!/bin/sh
# tests/formats.sh: `--format json` wherever `--format yaml` is (inspect,
# compile, eval, gptq-tensor; issue #18 item 6): both outputs pass the
# command's schema (tests/outputs/check_outputs.c: keys and their order)
# and hold the same values.
set -u
: "${QMOE:?}" "${QM_SRCDIR:?}" "${QM_BUILDDIR:?}"
checker="$QM_BUILDDIR/tests/outputs/check_outputs"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fails=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); fails=$((fails + 1)); echo "FAIL $n - $1"; }
# same KIND NAME CMD...: run CMD with --format yaml and --format json, compare
same() {
    kind=$1 name=$2; shift 2
    if "$@" --format yaml > "$t/o.yaml" 2> "$t/err" && "$@" --format json > "$t/o.json" 2>> "$t/err" &&
        "$checker" --same "$kind" "$t/o.yaml" "$t/o.json" 2>> "$t/err"; then ok "$name: yaml and json agree"
    else fail "$name: $(cat "$t/err")"; fi
}

ds="$QM_SRCDIR/examples/models/tiny-deepseek"
mx="$QM_SRCDIR/examples/models/tiny-mixtral"
txt="$QM_SRCDIR/examples/data/wikitext2-test.txt"

same inspect "inspect" "$QMOE" inspect "$ds"
same inspect "inspect --tensors" "$QMOE" inspect --tensors "$mx"

"$QM_BUILDDIR/tests/compiler/mkmodel" "$QM_SRCDIR/tests/data/configs/deepseek-moe-16b.json" "$t/deepseek" || exit 1
printf 'qmoe_scores: 1\noutlier:\n  layers[1].experts[0].down: 5\n' > "$t/s.yaml"
printf 'default: 4bit\nattn: 8bit\nexperts[0]: keep\nbudget 3 bits by outlier\n' > "$t/p.qmoe"
same plan "compile (a budget, keep, scores)" "$QMOE" compile "$t/p.qmoe" --model "$t/deepseek" --scores "$t/s.yaml"
same plan "compile (the stdlib, no scores)" "$QMOE" compile -I "$QM_SRCDIR/stdlib" "$QM_SRCDIR/stdlib/paper/shared-4bit.qmoe" --model "$ds"
"$QMOE" compile "$t/p.qmoe" --model "$t/deepseek" --scores "$t/s.yaml" --format json -o "$t/plan.json" 2> "$t/err" &&
    "$QMOE" compile "$t/p.qmoe" --model "$t/deepseek" --scores "$t/s.yaml" --format json > "$t/o.json" 2>> "$t/err" &&
    cmp -s "$t/plan.json" "$t/o.json" && ok "compile --format json -o writes the same JSON" || fail "compile --format json -o: $(cat "$t/err")"

printf '{"context": "The city", "choices": [" council", " zqxv"], "gold": 0, "task": "t"}\n' > "$t/tasks.jsonl"
same eval "eval (perplexity, KLD, tasks)" "$QMOE" eval "$ds" --text "$txt" --max-tokens 600 --ctx 128 --base "$ds" \
    --tasks "$t/tasks.jsonl" -q

# a 64 x 128 weight and 96 inputs in BF16, from a few exact values (no NaN can arise)
st() { # st FILE NAME ROWS COLS PERIOD
    bytes=$(($3 * $4 * 2))
    hdr=$(printf '{"%s":{"dtype":"BF16","shape":[%d,%d],"data_offsets":[0,%d]}}' "$2" "$3" "$4" "$bytes")
    while [ $((${#hdr} % 8)) != 0 ]; do hdr="$hdr "; done
    LC_ALL=C awk -v n=${#hdr} -v h="$hdr" -v cnt=$(($3 * $4)) -v p="$5" 'BEGIN {
        for (i = 0; i < 8; i++) { printf "%c", n % 256; n = int(n / 256) }
        printf "%s", h
        split("128 63 0 191 0 64 128 62 64 192 192 62 160 63", v, " ")
        for (i = 0; i < cnt; i++) { k = (i * 7 + int(i / p)) % 7; printf "%c%c", v[2 * k + 1], v[2 * k + 2] }
    }' > "$1"
}
st "$t/w.safetensors" weight 64 128 5
st "$t/x.safetensors" inputs 96 128 3
strip() { sed 's/^seconds: .*/seconds: 0.000/; s/^  "seconds": .*/  "seconds": 0.000,/' "$1" > "$1.s" && mv "$1.s" "$1"; }
if "$QMOE" gptq-tensor --weight "$t/w.safetensors" --inputs "$t/x.safetensors" --bits 4 --format yaml > "$t/g.yaml" 2> "$t/err" &&
    "$QMOE" gptq-tensor --weight "$t/w.safetensors" --inputs "$t/x.safetensors" --bits 4 --format json > "$t/g.json" 2>> "$t/err" &&
    strip "$t/g.yaml" && strip "$t/g.json" && "$checker" --same gptq_tensor "$t/g.yaml" "$t/g.json" 2>> "$t/err"; then
    ok "gptq-tensor: yaml and json agree (seconds aside)"
else fail "gptq-tensor: $(cat "$t/err")"; fi

echo "formats.sh: $((n - fails))/$n passed"
test $fails = 0
