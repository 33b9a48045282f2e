#!/bin/sh
# bench/mk-random.sh CONFIG LAYERS DIR: a checkpoint with the real
# dimensions of CONFIG (a Hugging Face config.json: Mixtral, DeepSeek-MoE,
# Qwen2-MoE, Qwen3-MoE or OLMoE)
# cut to LAYERS layers, with random BF16 weights, written into DIR:
# config.json, one safetensors shard per layer plus one for the embeddings,
# final norm and head, and model.safetensors.index.json.  The weights are
# finite values of magnitude 2^-8..2^-5 (2^(E-127)..2^(E-124) with
# MK_RANDOM_EXP=E, default 119) with random signs, from a block of
# 524287 random values (a prime count, so that no two rows of a weight
# repeat each other) written over and over: what memory and time
# benchmarks need, not a model that predicts anything.
set -eu
config=$1 layers=$2 dir=$3
mkdir -p "$dir"

num() { sed -n "s/.*\"$1\": *\([0-9][0-9]*\).*/\1/p" "$config" | head -1; }
arch=$(sed -n 's/.*"architectures": *\["\([A-Za-z0-9]*\)"\].*/\1/p' "$config")
d=$(num hidden_size) V=$(num vocab_size) H=$(num num_attention_heads) KV=$(num num_key_value_heads)
hf="mlp.experts.%d.gate_proj mlp.experts.%d.up_proj mlp.experts.%d.down_proj"
shared="mlp.shared_experts" bias=0 qknorm=none hd=$((d / H))
case $arch in
MixtralForCausalLM)
    E=$(num num_local_experts) F=$(num intermediate_size) dense=0 SF=0 DF=0
    router="block_sparse_moe.gate" expert="block_sparse_moe.experts.%d.w1 block_sparse_moe.experts.%d.w3 block_sparse_moe.experts.%d.w2" ;;
DeepseekForCausalLM)
    E=$(num n_routed_experts) F=$(num moe_intermediate_size) dense=$(num first_k_dense_replace)
    SF=$(($(num n_shared_experts) * F)) DF=$(num intermediate_size)
    router="mlp.gate" expert=$hf ;;
Qwen2MoeForCausalLM)
    E=$(num num_experts) F=$(num moe_intermediate_size) dense=0 SF=$(num shared_expert_intermediate_size) DF=0
    router="mlp.gate" expert=$hf shared="mlp.shared_expert" bias=1 ;;
Qwen3MoeForCausalLM)
    E=$(num num_experts) F=$(num moe_intermediate_size) dense=0 SF=0 DF=0
    router="mlp.gate" expert=$hf qknorm=head hd=$(num head_dim) ;;
OlmoeForCausalLM)
    E=$(num num_experts) F=$(num intermediate_size) dense=0 SF=0 DF=0
    router="mlp.gate" expert=$hf qknorm=whole ;;
*) echo "mk-random.sh: $config: architecture '$arch' is not supported here" >&2; exit 2 ;;
esac
sed "s/\"num_hidden_layers\": *[0-9]*/\"num_hidden_layers\": $layers/" "$config" > "$dir/config.json"

# One line per tensor: shard name rows cols (cols 0: a vector).
awk -v L="$layers" -v d="$d" -v V="$V" -v q=$((H * hd)) -v kv=$((KV * hd)) -v E="$E" -v F="$F" \
    -v dense="$dense" -v SF="$SF" -v DF="$DF" -v router="$router" -v expert="$expert" -v shared="$shared" \
    -v bias="$bias" -v qknorm="$qknorm" -v hd="$hd" 'BEGIN {
  split(expert, ex, " ")
  for (l = 0; l < L; l++) {
    s = l + 1; p = "model.layers." l
    print s, p ".input_layernorm.weight", d, 0
    print s, p ".self_attn.q_proj.weight", q, d
    print s, p ".self_attn.k_proj.weight", kv, d
    print s, p ".self_attn.v_proj.weight", kv, d
    print s, p ".self_attn.o_proj.weight", d, q
    if (bias) {
      print s, p ".self_attn.q_proj.bias", q, 0
      print s, p ".self_attn.k_proj.bias", kv, 0
      print s, p ".self_attn.v_proj.bias", kv, 0
    }
    if (qknorm != "none") {
      print s, p ".self_attn.q_norm.weight", qknorm == "head" ? hd : q, 0
      print s, p ".self_attn.k_norm.weight", qknorm == "head" ? hd : kv, 0
    }
    print s, p ".post_attention_layernorm.weight", d, 0
    if (l < dense) {
      print s, p ".mlp.gate_proj.weight", DF, d
      print s, p ".mlp.up_proj.weight", DF, d
      print s, p ".mlp.down_proj.weight", d, DF
      continue
    }
    print s, p "." router ".weight", E, d
    for (e = 0; e < E; e++) {
      printf "%d %s.%s.weight %d %d\n", s, p, sprintf(ex[1], e), F, d
      printf "%d %s.%s.weight %d %d\n", s, p, sprintf(ex[2], e), F, d
      printf "%d %s.%s.weight %d %d\n", s, p, sprintf(ex[3], e), d, F
    }
    if (SF) {
      print s, p "." shared ".gate_proj.weight", SF, d
      print s, p "." shared ".up_proj.weight", SF, d
      print s, p "." shared ".down_proj.weight", d, SF
      if (bias)
        print s, p ".mlp.shared_expert_gate.weight", 1, d
    }
  }
  print L + 1, "model.embed_tokens.weight", V, d
  print L + 1, "model.norm.weight", d, 0
  print L + 1, "lm_head.weight", V, d
}' > "$dir/tensors"

# The random block: BF16 sign | exponent 119..122 | mantissa, little-endian.
LC_ALL=C awk -v e="${MK_RANDOM_EXP:-119}" 'BEGIN { srand(20261202); for (i = 0; i < 524287; i++) {
    v = (rand() < 0.5 ? 32768 : 0) + (e + int(rand() * 4)) * 128 + int(rand() * 128)
    printf "%c%c", v % 256, int(v / 256) } }' > "$dir/block"

le64() { # 8-byte little-endian encoding of $1
    n=$1 i=0
    while [ $i -lt 8 ]; do printf "\\$(printf %03o $((n % 256)))"; n=$((n / 256)); i=$((i + 1)); done
}

shards=$((layers + 1))
printf '{"metadata": {}, "weight_map": {' > "$dir/model.safetensors.index.json"
sep=""
s=1
while [ $s -le $shards ]; do
    shard=$(printf 'model-%05d-of-%05d.safetensors' $s $shards)
    awk -v s=$s '$1 == s {
        n = $3 * ($4 ? $4 : 1) * 2
        shape = $4 ? "[" $3 "," $4 "]" : "[" $3 "]"
        printf "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":%s,\"data_offsets\":[%.0f,%.0f]}", (c++ ? "," : "{"), $2, shape, off, off + n
        off += n
    } END { printf "}"; printf "%.0f\n", off > "/dev/stderr" }' "$dir/tensors" > "$dir/header" 2> "$dir/size"
    pad=$(( (8 - $(wc -c < "$dir/header") % 8) % 8 ))
    printf '%*s' $pad '' >> "$dir/header"
    { le64 "$(wc -c < "$dir/header")"; cat "$dir/header"
      while :; do cat "$dir/block"; done | head -c "$(cat "$dir/size")"; } > "$dir/$shard"
    awk -v s=$s -v f="$shard" -v sep="$sep" '$1 == s { printf "%s\"%s\":\"%s\"", sep, $2, f; sep = "," }' \
        "$dir/tensors" >> "$dir/model.safetensors.index.json"
    sep=","
    s=$((s + 1))
done
printf '}}\n' >> "$dir/model.safetensors.index.json"
rm -f "$dir/header" "$dir/size" "$dir/block"
