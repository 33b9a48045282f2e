#!/bin/sh
# bench-gguf.sh: `qmoe bench --format gguf` on tiny-qwen3moe (every linear
# 256 wide: k-quants without fallbacks) at fast settings: each plan written
# as runs/NAME/model.gguf with the ggml types its policy names, the row's
# size the file's bytes and its figures `qmoe eval FILE.gguf --base`'s of
# the same file, the KLD order of Q2_K, Q4_0 and Q8_0, reuse on a rerun and
# none across formats, --discard-models, and the refusals (a plan GGUF
# cannot hold, an unknown format).  No llama.cpp needed: qmoe reads GGUF.
. "${QM_SRCDIR:?}/tests/lib.sh"
model="$QM_SRCDIR/examples/models/tiny-qwen3moe"
data="$QM_SRCDIR/examples/data"
mkdir "$tmp/pol"
printf 'default: 4bit group 32 sym\n' > "$tmp/pol/q4_0.qmoe"
printf 'default: 2bit group 16\n' > "$tmp/pol/q2_k.qmoe"
printf 'default: 8bit group 32 sym\n' > "$tmp/pol/q8_0.qmoe"
bench() {
    "$QMOE" bench "$model" --calib "$data/wikitext2-valid.txt" --eval "$data/wikitext2-test.txt" --ctx 128 \
        --samples 4 --eval-tokens 2048 "$@"
}
col() { awk -F, -v p="$1" -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i } $1 == p { print $k[c] }' \
    "$tmp/b/results.csv"; }

bench --policies "$tmp/pol" --format gguf -o "$tmp/b" > /dev/null 2> "$tmp/err" && ok || bad "bench: $(cat "$tmp/err")"
for p in q4_0:Q4_0 q2_k:Q2_K q8_0:Q8_0; do
    n=${p%:*} t=${p#*:} f="$tmp/b/runs/${p%:*}/model.gguf"
    head -c 4 "$f" 2>/dev/null | grep -q '^GGUF$' && ok || bad "$n: no GGUF file"
    # the quantized linears at the policy's type; norms and routers F32, embeddings and head BF16 as stored
    [ "$("$QMOE" inspect "$f" | awk '/^  [A-Z]/ { printf "%s ", $1 }')" = "F32 $t BF16 " ] && ok ||
        bad "$n: types $("$QMOE" inspect "$f" | awk '/^  [A-Z]/ { printf "%s ", $1 }')"
    [ "$(col "$n" size_bytes)" = "$(wc -c < "$f" | tr -d ' ')" ] && ok || bad "$n: size_bytes is not the file's"
    e=$("$QMOE" eval "$f" --base "$model" --text "$data/wikitext2-test.txt" --max-tokens 2048 --ctx 128 \
        --format yaml -q | awk '/^(ppl|kld_mean):/ { printf "%s ", $2 }')
    [ "$e" = "$(col "$n" ppl) $(col "$n" kld_mean) " ] && ok || bad "$n: eval of the file gives '$e'"
done
awk -v a="$(col q2_k kld_mean)" -v b="$(col q4_0 kld_mean)" -v c="$(col q8_0 kld_mean)" \
    'BEGIN { exit !(a > b && b > c && c > 0) }' && ok || bad "KLD order Q2_K > Q4_0 > Q8_0 > 0"

# a rerun reuses every row; the same plans as GPTQ checkpoints are other runs
bench --policies "$tmp/pol" --format gguf -o "$tmp/b" > /dev/null 2> "$tmp/err"
grep -q "3 policies (3 reused" "$tmp/err" && ok || bad "gguf rerun not reused: $(tail -1 "$tmp/err")"
bench --policies "$tmp/pol/q8_0.qmoe" -o "$tmp/b" > /dev/null 2> "$tmp/err"
grep -q "1 policies (0 reused" "$tmp/err" && ok || bad "gptq run reused a gguf row: $(tail -1 "$tmp/err")"
[ -s "$tmp/b/runs/q8_0/model/model.safetensors.index.json" ] && ok || bad "gptq run wrote no checkpoint"
# --discard-models removes the file and the run's directory
bench --policies "$tmp/pol/q4_0.qmoe" --format gguf --discard-models -q -o "$tmp/d" > /dev/null 2> "$tmp/err" &&
    ok || bad "--discard-models: $(cat "$tmp/err")"
[ -e "$tmp/d/runs/q4_0/model.gguf" ] || [ -e "$tmp/d/runs/q4_0/model" ] && bad "--discard-models left the model" || ok
[ -s "$tmp/d/runs/q4_0/result.yaml" ] && ok || bad "--discard-models: no result"

# refusals
printf 'default: 4bit group 128\n' > "$tmp/g128.qmoe"
bench --policies "$tmp/g128.qmoe" --format gguf -q -o "$tmp/r" > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q "4-bit symmetric group 128 has no GGUF block type" "$tmp/err" && ok ||
    bad "a plan GGUF cannot hold: $(cat "$tmp/err")"
[ -e "$tmp/r/runs/g128/model.gguf" ] && bad "a refused plan left a GGUF file" || ok
bench --policies "$tmp/pol" --format ggml -o "$tmp/r" > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "\-\-format must be 'gptq' or 'gguf', not 'ggml'" "$tmp/err" && ok ||
    bad "--format ggml: $(cat "$tmp/err")"

finish bench-gguf
