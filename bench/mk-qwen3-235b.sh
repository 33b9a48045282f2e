#!/bin/sh
# bench/mk-qwen3-235b.sh DIR: write into DIR a Qwen3-235B-A22B-scale
# checkpoint that exists only as headers: config.json, 4 safetensors shards
# whose data areas are holes (sparse files, ~470 GB apparent size, nothing on
# disk), model.safetensors.index.json, and DIR/tensors (one line per tensor:
# shard, name, shape).  Used by the inspect and compile benchmarks.
set -eu
dir=$1

cat > "$dir/config.json" <<'JSON'
{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
 "vocab_size": 151936, "hidden_size": 4096, "num_hidden_layers": 94,
 "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128,
 "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_experts": 128,
 "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1,
 "mlp_only_layers": [], "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
 "tie_word_embeddings": false}
JSON

# One line per tensor: shard name shape0 shape1 (0 = 1-D).
awk 'BEGIN {
  L = 94; E = 128; d = 4096; q = 64 * 128; kv = 4 * 128; ff = 1536; V = 151936
  print 1, "model.embed_tokens.weight", V, d
  for (l = 0; l < L; l++) {
    s = 1 + int(l * 4 / L); p = "model.layers." l
    print s, p ".input_layernorm.weight", d, 0
    print s, p ".self_attn.q_proj.weight", q, d
    print s, p ".self_attn.k_proj.weight", kv, d
    print s, p ".self_attn.v_proj.weight", kv, d
    print s, p ".self_attn.o_proj.weight", d, q
    print s, p ".self_attn.q_norm.weight", 128, 0
    print s, p ".self_attn.k_norm.weight", 128, 0
    print s, p ".post_attention_layernorm.weight", d, 0
    print s, p ".mlp.gate.weight", E, d
    for (e = 0; e < E; e++) {
      print s, p ".mlp.experts." e ".gate_proj.weight", ff, d
      print s, p ".mlp.experts." e ".up_proj.weight", ff, d
      print s, p ".mlp.experts." e ".down_proj.weight", d, ff
    }
  }
  print 4, "model.norm.weight", d, 0
  print 4, "lm_head.weight", V, d
}' > "$dir/tensors"

le64() { # 8-byte little-endian encoding of $1
    n=$1 i=0
    while [ $i -lt 8 ]; do printf "\\$(printf %03o $((n % 256)))"; n=$((n / 256)); i=$((i + 1)); done
}

printf '{"metadata": {}, "weight_map": {' > "$dir/model.safetensors.index.json"
first=1
for s in 1 2 3 4; do
    shard=$(printf 'model-%05d-of-00004.safetensors' $s)
    awk -v s=$s '$1 == s {
        n = $3 * ($4 ? $4 : 1) * 2
        shape = $4 ? "[" $3 "," $4 "]" : "[" $3 "]"
        printf "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":%s,\"data_offsets\":[%.0f,%.0f]}", (c++ ? "," : "{"), $2, shape, off, off + n
        off += n
    } END { printf "}"; printf "%.0f\n", off > "/dev/stderr" }' "$dir/tensors" > "$dir/header" 2> "$dir/size"
    hlen=$(wc -c < "$dir/header")
    { le64 "$hlen"; cat "$dir/header"; } > "$dir/$shard"
    truncate -s $((8 + hlen + $(cat "$dir/size"))) "$dir/$shard"
    awk -v s=$s -v f="$shard" -v first=$first '$1 == s { printf "%s\"%s\":\"%s\"", (first-- > 0 ? "" : ","), $2, f }' \
        "$dir/tensors" >> "$dir/model.safetensors.index.json"
    first=0
done
printf '}}\n' >> "$dir/model.safetensors.index.json"
