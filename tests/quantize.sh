#!/bin/sh
# quantize.sh: `qmoe quantize` end to end on tiny-deepseek: the stdlib's
# uniform 8, 4 and 2-bit policies compiled by `qmoe compile` and evaluated
# against the unquantized model (KL divergence must order 8 < 4 < 2), the
# quantization config of a mixed plan (attention 8-bit over 2-bit experts),
# an interrupted run that resumes to the same bytes as an uninterrupted one,
# refusal of a directory made from another plan, and the fake-quant export.
. "${QM_SRCDIR:?}/tests/lib.sh"
model="$QM_SRCDIR/examples/models/tiny-deepseek"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
text="$QM_SRCDIR/examples/data/wikitext2-test.txt"
fast="--ctx 256 --samples 8"

kld() { "$QMOE" eval "$1" --base "$model" --text "$text" --max-tokens 8192 --format yaml -q | sed -n 's/^kld_mean: //p'; }

for b in 8 4 2; do
    "$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-${b}bit.qmoe" --model "$model" -o "$tmp/plan$b.yaml" \
        || bad "qmoe compile uniform-${b}bit"
    if "$QMOE" quantize -q --plan "$tmp/plan$b.yaml" --model "$model" --calib "$calib" $fast -o "$tmp/q$b"; then
        ok
    else
        bad "quantize at $b bits failed"
    fi
    eval "k$b=\$(kld \"$tmp/q$b\")"
done
echo "KL divergence: 8-bit $k8, 4-bit $k4, 2-bit $k2"
awk -v a="$k8" -v b="$k4" -v c="$k2" 'BEGIN { exit !(a < b && b < c) }' && ok || bad "KLD not ordered 8 < 4 < 2"

# the output is a GPTQ checkpoint engines read
for f in config.json quantize_config.json model.safetensors.index.json plan.yaml quant_log.yaml; do
    [ -s "$tmp/q4/$f" ] && ok || bad "q4/$f missing"
done
grep -q '"checkpoint_format": "gptq"' "$tmp/q4/quantize_config.json" && ok || bad "checkpoint_format"
grep -q '"quantization_config"' "$tmp/q4/config.json" && ok || bad "quantization_config in config.json"
grep -q 'self_attn.q_proj.qweight' "$tmp/q4/model.safetensors.index.json" && ok || bad "qweight in the index"
"$QMOE" inspect "$tmp/q4" | grep -q "linears GPTQ-packed" && ok || bad "inspect of the packed model"

# a mixed plan: overrides under the checkpoint's names (GPTQModel) and under
# vLLM's fused ones, the router left out, the quantized linears listed
has() { grep -qF -- "$1" "$tmp/qa/quantize_config.json" && ok || bad "quantize_config.json lacks $1"; }
"$QMOE" compile "$QM_SRCDIR/stdlib/paper/attn-8bit.qmoe" --model "$model" -o "$tmp/plana.yaml" \
    && "$QMOE" quantize -q --plan "$tmp/plana.yaml" --model "$model" --calib "$calib" $fast -o "$tmp/qa" \
    && ok || bad "quantize of the attn-8bit plan"
[ "$(sed -n 2p "$tmp/qa/quantize_config.json")" = '  "bits": 2,' ] && ok || bad "base width of the mixed plan is not 2"
has '"+:^model\\.layers\\.1\\.self_attn\\.q_proj$": {'
has '"+:^model\\.layers\\.1\\.self_attn\\.qkv_proj$": {'
has '"+:^model\\.layers\\.0\\.mlp\\.gate_up_proj$": {'
has '"-:^model\\.layers\\.1\\.mlp\\.gate$": {}'
has '"modules_in_block_to_quantize": ['
has '"model.layers.1.mlp.experts.0.down_proj"'
grep -q '"model.layers.1.mlp.gate"' "$tmp/qa/quantize_config.json" && bad "router listed as quantized" || ok
has '"lm_head": false'

# interrupted: kill -9 once two layers are done, run again, compare with q4
"$QMOE" quantize -q --plan "$tmp/plan4.yaml" --model "$model" --calib "$calib" $fast -o "$tmp/r4" &
pid=$!
i=0
while [ ! -e "$tmp/r4/.qmoe-state/layer-00001.log" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
"$QMOE" quantize --plan "$tmp/plan4.yaml" --model "$model" --calib "$calib" $fast -o "$tmp/r4" 2> "$tmp/resume.err" \
    && ok || bad "resumed run failed: $(cat "$tmp/resume.err")"
for f in "$tmp"/q4/model-*.safetensors "$tmp/q4/config.json" "$tmp/q4/quantize_config.json" \
         "$tmp/q4/model.safetensors.index.json"; do
    cmp -s "$f" "$tmp/r4/$(basename "$f")" && ok || bad "resumed $(basename "$f") differs"
done
ls "$tmp"/r4/*.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok

# the same directory with another plan is refused
"$QMOE" quantize -q --plan "$tmp/plan2.yaml" --model "$model" --calib "$calib" $fast -o "$tmp/q4" 2> "$tmp/err" \
    && bad "another plan was accepted" || ok
grep -q "holds a run of another plan" "$tmp/err" && ok || bad "refusal message: $(cat "$tmp/err")"

# a plan for another model is refused
mx="$QM_SRCDIR/examples/models/tiny-mixtral"
"$QMOE" quantize -q --plan "$tmp/plan4.yaml" --model "$mx" --calib "$calib" $fast -o "$tmp/x" 2> "$tmp/err" \
    && bad "plan for another model accepted" || ok
grep -q "the plan was compiled for another model" "$tmp/err" && ok || bad "model mismatch message: $(cat "$tmp/err")"

# fake-quant: the dequantized weights in the original dtype, a plain checkpoint
"$QMOE" quantize -q --plan "$tmp/plan4.yaml" --model "$model" --calib "$calib" $fast --fake-quant -o "$tmp/f4" \
    && ok || bad "fake-quant run"
"$QMOE" inspect "$tmp/f4/fake-quant" | grep -q "BF16)" && ok || bad "fake-quant is not plain BF16"
kf=$(kld "$tmp/f4/fake-quant")
awk -v a="$kf" -v b="$k4" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.05 * b + 1e-6) }' \
    && ok || bad "fake-quant KLD $kf far from packed $k4"

# every file written above, and each command's --format yaml, through
# standard parsers against the documented keys (issue #22)
. "$QM_SRCDIR/tests/outputs/check-outputs.sh"
check_tree "$tmp/q4" "$tmp/qa" "$tmp/r4" "$tmp/f4"
check_outputs plan "$tmp/plan4.yaml" plan "$tmp/plana.yaml"
"$QMOE" inspect --format yaml --tensors "$tmp/q4" > "$tmp/inspect.yaml" && ok || bad "inspect --format yaml"
"$QMOE" eval "$tmp/q4" --base "$model" --text "$text" --max-tokens 600 --ctx 128 --format yaml -q > "$tmp/eval.yaml" \
    && ok || bad "eval --format yaml"
# gptq-tensor on 64 x 128 BF16 values cut from the model's data, as weight and as inputs
st_of() {
    h="{\"$1\":{\"dtype\":\"BF16\",\"shape\":[64,128],\"data_offsets\":[0,16384]}}"
    while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
    off=$((8 + $(od -An -tu8 -N8 "$model/model.safetensors" | tr -d ' ')))
    { printf "\\$(printf %o ${#h})\\0\\0\\0\\0\\0\\0\\0%s" "$h"
      tail -c +$((off + 1)) "$model/model.safetensors" | head -c 16384; } > "$2"
}
st_of weight "$tmp/w.safetensors"; st_of inputs "$tmp/x.safetensors"
"$QMOE" gptq-tensor --weight "$tmp/w.safetensors" --inputs "$tmp/x.safetensors" --bits 4 --format yaml \
    -o "$tmp/g.safetensors" > "$tmp/gptq.yaml" && ok || bad "gptq-tensor --format yaml"
check_outputs inspect "$tmp/inspect.yaml" eval "$tmp/eval.yaml" gptq_tensor "$tmp/gptq.yaml" \
    safetensors "$tmp/g.safetensors"
# a resumed run logs what an uninterrupted one does, but for the times
sed 's/seconds: [0-9.]*}$//' "$tmp/q4/quant_log.yaml" > "$tmp/log.q4"
sed 's/seconds: [0-9.]*}$//' "$tmp/r4/quant_log.yaml" > "$tmp/log.r4"
cmp -s "$tmp/log.q4" "$tmp/log.r4" && ok || bad "resumed quant_log.yaml differs: $(diff "$tmp/log.q4" "$tmp/log.r4" | head -5)"

finish quantize
