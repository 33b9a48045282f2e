# 20-numbers.sh: numbers that must not be results (issue #13 items 2, 3, 9):
# an infinite weight, scores files that are corrupt or another model's, and
# output bytes that must not depend on the thread count.
nd="$tmp/numbers"
mkdir -p "$nd"
small="--ctx 64 --samples 4"

# ---- item 2: one BF16 +Inf (0x7F80) in layers.1 expert 3's down, element [5, 7]
cp -R "$model" "$nd/inf"
st="$nd/inf/model.safetensors"
name=model.layers.1.mlp.experts.3.down_proj.weight
hlen=$(od -An -tu8 -N8 "$st" | tr -d ' ')
begin=$(head -c $((8 + hlen)) "$st" | tail -c "$hlen" |
    sed -n "s/.*\"$name\":{[^}]*\"data_offsets\":\[\([0-9]*\),.*/\1/p")
if [ -n "$begin" ]; then ok; else bad "no data_offsets for $name in the header"; fi
# [5, 7] of a (128, 64) tensor is element 327, 2 bytes each; little-endian 0x7F80
printf '\200\177' | dd of="$st" bs=1 seek=$((8 + hlen + ${begin:-0} + 2 * 327)) conv=notrunc 2>/dev/null
where="tensor '$name' holds +Inf at element 327 [5, 7]"
expect 0 "$QMOE" inspect "$nd/inf"                 # headers alone: nothing to see
expect 1 "$QMOE" inspect --check "$nd/inf";        has "$err" "$where"
expect 0 "$QMOE" inspect --check "$model"
"$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --model "$model" -o "$nd/plan.yaml" 2>/dev/null \
    && ok || bad "compile of uniform-4bit"
expect 1 "$QMOE" quantize -q --plan "$nd/plan.yaml" --model "$nd/inf" --calib "$calib" $small -o "$nd/q-inf"
has "$err" "$where"
expect 1 "$QMOE" score "$nd/inf" --calib "$calib" --ctx 64 --max-tokens 2048 -o "$nd/s-inf.yaml"
has "$err" "$where"
expect 1 "$QMOE" eval "$nd/inf" --text "$text" --ctx 64 --max-tokens 2048;                 has "$err" "$where"
expect 1 "$QMOE" eval "$model" --base "$nd/inf" --text "$text" --ctx 64 --max-tokens 2048; has "$err" "$where"
lacks "$out" "nan"
expect 1 "$QMOE" bench "$nd/inf" --policies "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --calib "$calib" \
    --eval "$text" $small --eval-tokens 2048 -q -o "$nd/b-inf"
has "$err" "$where"
# compile ranks by outlier scores computed from the weights when no scores
# file has them: an infinite weight has none, and must not be ranked last
printf 'default: 2bit;\nbudget 2.5 bits by outlier;\n' > "$nd/budget.qmoe"
for pol in "$QM_SRCDIR/stdlib/paper/outlier-top25.qmoe" "$nd/budget.qmoe"; do
    expect 1 "$QMOE" compile "$pol" --model "$nd/inf" -o "$nd/p-inf.yaml"
    has "$err" "$where"
    [ ! -e "$nd/p-inf.yaml" ] && ok || bad "compile of $pol wrote a plan from an infinite weight"
done
expect 0 "$QMOE" compile "$nd/budget.qmoe" --model "$model" -o "$nd/p-budget.yaml"

# ---- item 3: scores checked against the model, complete, finite, in range
s="$nd/s.yaml"
expect 0 "$QMOE" score "$model" --calib "$calib" --ctx 64 --max-tokens 2048 -o "$s"
has "$(cat "$s")" "tensors_sha256: "
freq="$QM_SRCDIR/stdlib/paper/freq-top-per-layer.qmoe"
expect 0 "$QMOE" compile "$freq" --model "$model" --scores "$s" -o "$nd/p.yaml"
lacks "$err" "warning"
# scores_bad NAME SED-SCRIPT MESSAGE: the edited file is refused with MESSAGE
scores_bad() {
    sed "$2" "$s" > "$nd/$1.yaml"
    expect 1 "$QMOE" compile "$freq" --model "$model" --scores "$nd/$1.yaml" -o "$nd/p-$1.yaml"
    has "$err" "$3"
    [ ! -e "$nd/p-$1.yaml" ] && ok || bad "compile wrote a plan from $1.yaml"
}
lines=$(wc -l < "$s")
head -n $((lines / 2)) "$s" > "$nd/half.yaml"
expect 1 "$QMOE" compile "$freq" --model "$model" --scores "$nd/half.yaml" -o "$nd/p-half.yaml"
has "$err" "the file is incomplete"
scores_bad nolayer '/^frequency:/,/^importance:/{/^  3: /d}' "MoE layer 3 has no frequency scores"
scores_bad nan '/^importance:/,/^outlier:/s/{ffn: [^,]*,/{ffn: .nan,/' "importance: layer 1: ffn is '.nan', not a cosine in [-1, 1]"
scores_bad neg '/^importance:/,/^outlier:/s/residual: [^}]*}/residual: -5}/' "residual is '-5', not a cosine"
scores_bad count '/^frequency:/,/^importance:/s/^  2: \[[0-9]*/  2: [-1/' "frequency: layer 2: the count of expert 0 is '-1'"
scores_bad inf '/^outlier:/,$s/^\(  layers\[0\]\.attn\.q\): .*/\1: .inf/' "outlier: 'layers[0].attn.q' is '.inf'"
scores_bad module '$a\
  layers[1].experts[99].gate: 3' "outlier: 'layers[1].experts[99].gate' is not a linear"
scores_bad tokens 's/^  tokens: 2048$/  tokens: 2000/' \
    "frequency: the counts of layer 1 add up to 8192, but 2000 calibration tokens routed to top-4 make 8000"
scores_bad arch 's/^  architecture: .*/  architecture: MixtralForCausalLM/' "made for architecture 'MixtralForCausalLM'"
scores_bad config 's/^  config_sha256: ./  config_sha256: 0/' "config_sha256: the scores were made for another model"
# the message is located: line and column of the bad value
line=$(grep -n "^importance:" "$s" | cut -d: -f1)
has "$(sed "$((line + 1))s/ffn: [^,]*,/ffn: .nan,/" "$s" > "$nd/loc.yaml";
    "$QMOE" compile "$freq" --model "$model" --scores "$nd/loc.yaml" 2>&1)" "loc.yaml:$((line + 1)):12: importance"
# a file written before the hashes were recorded still loads, with a warning
sed '/_sha256: /d' "$s" > "$nd/old.yaml"
expect 0 "$QMOE" compile "$freq" --model "$model" --scores "$nd/old.yaml" -o "$nd/p-old.yaml"
has "$err" "written before scores recorded config_sha256"

# ---- item 9: the same shards on 1, 2 and 3 threads
for n in 1 2 3; do
    expect 0 env OPENBLAS_NUM_THREADS=$n "$QMOE" quantize -q --plan "$nd/plan.yaml" --model "$model" \
        --calib "$calib" $small -o "$nd/t$n"
done
for f in "$nd"/t1/*.safetensors "$nd"/t1/*.json; do
    b=$(basename "$f")
    for n in 2 3; do
        cmp -s "$f" "$nd/t$n/$b" && ok || bad "quantize on $n threads wrote another $b than on 1"
    done
done
sed 's/seconds: [0-9.]*//' "$nd/t1/quant_log.yaml" > "$nd/log1"
sed 's/seconds: [0-9.]*//' "$nd/t3/quant_log.yaml" > "$nd/log3"
cmp -s "$nd/log1" "$nd/log3" && ok || bad "quant_log.yaml's numbers differ between 1 and 3 threads"
