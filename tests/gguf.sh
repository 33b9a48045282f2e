#!/bin/sh
# gguf.sh: `qmoe quantize --format gguf` checked in the real llama.cpp
# (tools/llama-engine.sh; SKIP, exit 77, when npm cannot be reached).
#   - both example models exported unquantized as F32: llama.cpp's perplexity
#     equals `qmoe eval` of the model within 0.01%
#   - GPTQ onto Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 (tiny-mixtral; Q4_0 and Q5_1
#     also tiny-deepseek):
#     the blocks turned back into F32 by llama.cpp's own dequantization
#     (llama_model_quantize to F32) equal qmoe's reading of the file bit for
#     bit (tests/gguf_cmp), and the writer checked that reading against
#     GPTQ's values, so the codes sit exactly on ggml's grids; llama.cpp
#     running the blocks is within 0.15% of `qmoe eval` of the run's GPTQ
#     checkpoint, or of the GGUF itself for Q4_1 and Q5_1, whose free
#     minimum has no GPTQ form (its CPU kernels round the activations to
#     Q8_0/Q8_1 blocks before each dot product: measured 0.02% to 0.09%)
#   - the importance matrix the bench gives llama.cpp's quantizer: the
#     harness's collector equals llama.cpp's own imatrix tool bit for bit
#   - plans GGUF cannot hold are refused before any GPTQ, with the message
#   - Qwen2-MoE, Qwen3-MoE and OLMoE (random-weight checkpoints from
#     bench/mk-random.sh) exported as F32: llama.cpp's perplexity equals
#     `qmoe eval` of the checkpoint within 0.01%
#   - tokenizer metadata from a tokenizer.json (Qwen3's, DeepSeek-V3's, from
#     ../shared/data) or a SentencePiece tokenizer.model (Mistral's):
#     llama.cpp tokenizes a text to the ids of qmoe tokenize
#   - k-quants (the random Qwen3-MoE layout, every row a multiple of 256):
#     GPTQ onto Q2_K, Q3_K and Q4_K, read back by llama.cpp's dequantization,
#     equal qmoe's reading of the file bit for bit (tests/gguf_cmp; the writer
#     itself checks that reading against GPTQ's values), and the file runs;
#     rows not a multiple of 256 fall back to Q4_0 (a warning), or --strict
#     refuses them
#   - qmoe reads every type llama.cpp's own quantizer writes (F16, BF16,
#     Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K) exactly as ggml does
#   - `qmoe eval X.gguf --base DIR` of llama.cpp's own Q4_0 and Q4_K_S and of
#     a mixed GPTQ plan (Q8_0, Q4_0, Q2_K) gives llama.cpp's perplexity of
#     the file within 0.15%; --strict and the fallback warning; eval errors
# Text: the first $QM_GGUF_BYTES bytes (default 4096: on a loaded 2-core
# machine llama.cpp's CPU kernels take ~1 s a window) of WikiText-2 test;
# the F32 comparison at 131072 bytes is in README.md.
# The download is cached in $QM_LLAMA_CACHE (default: .llama-cache in the
# build tree).
. "${QM_SRCDIR:?}/tests/lib.sh"
cache=${QM_LLAMA_CACHE:-${QM_BUILDDIR:-.}/.llama-cache}
bytes=${QM_GGUF_BYTES:-4096}
engine() { sh "$QM_SRCDIR/tools/llama-engine.sh" "$cache" "$@"; }
engine setup
rc=$?
if [ $rc -eq 77 ]; then
    echo "SKIP: llama.cpp could not be fetched from npm"
    exit 77
fi
[ $rc -eq 0 ] || { echo "FAIL: tools/llama-engine.sh setup"; exit 1; }

calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
text="$QM_SRCDIR/examples/data/wikitext2-test.txt"
fast="--ctx 256 --samples 8"

policy() { printf '%s\n' "$2" > "$tmp/$1.qmoe"; }
policy keep 'default: keep'
policy q8 'default: 8bit group 32 sym'
policy q4 'default: 4bit group 32 sym'
policy q41 'default: 4bit group 32 asym'
policy q5 'default: 5bit group 32 sym'
policy q51 'default: 5bit group 32 asym'

# compare NAME MODEL_OR_CHECKPOINT GGUF TOLERANCE_PERCENT [BASE]: MODEL_OR_CHECKPOINT may be a GGUF
# file, read by qmoe with BASE's layout
compare() {
    l=$(engine ppl "$3" "$text" "$bytes" 512 2>"$tmp/llama.err" | sed -n 's/^ppl //p')
    q=$("$QMOE" eval "$2" ${5:+--base "$5"} --text "$text" --max-tokens "$bytes" --format yaml -q | sed -n 's/^ppl: //p')
    grep -v '^load: adding 256 dummy tokens$' "$tmp/llama.err" | grep -v '^[.]*$' > "$tmp/warn"
    [ -s "$tmp/warn" ] && bad "$1: llama.cpp warned: $(head -3 "$tmp/warn")"
    echo "$1: llama.cpp ppl $l, qmoe eval ppl $q"
    if [ -n "$l" ] && [ -n "$q" ] && awk -v a="$l" -v b="$q" -v t="$4" \
        'BEGIN { d = (a - b) / b * 100; if (d < 0) d = -d; exit !(d <= t) }'; then
        ok
    else
        bad "$1: perplexities differ by more than $4%"
    fi
}

# quantize NAME MODEL POLICY [OPTIONS]: OUT is $tmp/NAME.gguf
quantize() {
    qn=$1 qm="$QM_SRCDIR/examples/models/$2" qp=$3
    shift 3
    "$QMOE" compile "$tmp/$qp.qmoe" --model "$qm" -o "$tmp/$qn.yaml" &&
        "$QMOE" quantize -q --plan "$tmp/$qn.yaml" --model "$qm" --calib "$calib" $fast --format gguf "$@" \
            -o "$tmp/$qn.gguf"
}

for m in tiny-mixtral tiny-deepseek; do
    quantize "$m-f32" "$m" keep --keep-type F32 && ok || bad "F32 export of $m"
    compare "$m F32" "$QM_SRCDIR/examples/models/$m" "$tmp/$m-f32.gguf" 0.01
done
head -c 4 "$tmp/tiny-mixtral-f32.gguf" | grep -q '^GGUF$' && ok || bad "no GGUF magic"

# the importance matrix the bench hands llama.cpp's quantizer: the harness's collector (dense, shared and
# routed-expert matmuls of tiny-deepseek, 4 windows of 512) equals llama.cpp's own imatrix tool bit for bit:
# the same 62 entries, counts (rows routed to each expert) and sums; Q4_0 with it is the same size as
# without and other blocks; a file that is not an imatrix is refused
m="$tmp/tiny-deepseek-f32.gguf"
engine imatrix "$m" "$calib" 2048 512 "$tmp/im.gguf" > "$tmp/im.out" 2>/dev/null && ok || bad "imatrix collector"
engine imatrix-ref "$m" "$calib" 2048 512 "$tmp/imref.gguf" && ok || bad "llama.cpp's imatrix tool"
d=$(engine imatrix-diff "$tmp/im.gguf" "$tmp/imref.gguf" | tr '\n' ' ')
[ "$d" = "entries 62 max_rel_diff 0 " ] && ok || bad "imatrix vs llama.cpp's tool: '$d'"
echo "imatrix vs llama.cpp's imatrix tool: $d"
engine quantize "$m" "$tmp/q4.gguf" 2 30 2>/dev/null && engine quantize "$m" "$tmp/q4i.gguf" 2 30 "$tmp/im.gguf" 2>/dev/null &&
    ok || bad "llama.cpp quantize with the imatrix"
[ "$(wc -c < "$tmp/q4.gguf")" = "$(wc -c < "$tmp/q4i.gguf")" ] && ! cmp -s "$tmp/q4.gguf" "$tmp/q4i.gguf" && ok ||
    bad "Q4_0 with an imatrix: not the same size or the same bytes"
engine quantize "$m" "$tmp/q4x.gguf" 2 30 "$m" 2>"$tmp/imx.err" && bad "a model taken as an imatrix" ||
    { grep -q "no NAME.in_sum2 tensors" "$tmp/imx.err" && ok || bad "not an imatrix: $(cat "$tmp/imx.err")"; }
rm -f "$tmp"/q4*.gguf "$tmp"/im*.gguf

cmp="${QM_BUILDDIR:-.}/tests/gguf_cmp"
deq_cmp() { # NAME GGUF: llama.cpp turns GGUF back into F32; qmoe's reading of GGUF must equal it
    engine quantize "$2" "$tmp/deq.gguf" 0 2>/dev/null || bad "$1: llama.cpp's dequantization"
    if "$cmp" "$2" "$tmp/deq.gguf" > "$tmp/cmp.out"; then ok; else bad "$1: $(grep -v tensors "$tmp/cmp.out" | head -3)"; fi
    echo "$1: read as ggml does: $(grep tensors "$tmp/cmp.out" | awk '{printf "%s%s", sep, $1; sep=" "}')"
    rm -f "$tmp/deq.gguf"
}

# GPTQ onto Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: llama.cpp's dequantization equals qmoe's reading of the blocks bit for bit
# (which the writer checked against GPTQ's values), and its perplexity on the blocks is qmoe eval's
# of the same checkpoint within 0.15% (llama.cpp's kernels quantize activations to 8-bit blocks)
for c in "tiny-mixtral q8" "tiny-mixtral q4" "tiny-mixtral q41" "tiny-mixtral q5" "tiny-mixtral q51" \
    "tiny-deepseek q4" "tiny-deepseek q51"; do
    set -- $c
    quantize "$1-$2" "$1" "$2" --keep-type F32 && ok || bad "$2 export of $1"
    deq_cmp "$1 $2" "$tmp/$1-$2.gguf"
    case $2 in # Q4_1, Q5_1: no GPTQ checkpoint (a free minimum), so qmoe eval reads the GGUF
    q41 | q51) compare "$1 $2" "$tmp/$1-$2.gguf" "$tmp/$1-$2.gguf" 0.15 "$QM_SRCDIR/examples/models/$1" ;;
    *) compare "$1 $2" "$tmp/$1-$2.gguf.d" "$tmp/$1-$2.gguf" 0.15 ;;
    esac
done

# Qwen2-MoE, Qwen3-MoE and OLMoE: random-weight checkpoints (bench/mk-random.sh, weights of 2^-4..2^-1 so
# that attention and routing matter) exported as F32 give llama.cpp the perplexity of qmoe eval within 0.01%
randmodel() { # NAME ARCH EXTRA-CONFIG: $tmp/NAME, 2 layers, every linear input a multiple of 256
    printf '{"architectures": ["%s"], "vocab_size": 256, "hidden_size": 256, "intermediate_size": 256,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": %s, "num_experts": 8,
 "num_experts_per_tok": 2, "moe_intermediate_size": 256, "max_position_embeddings": 512, "rms_norm_eps": 1e-06,
 "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "qmoe_tokenizer": "byte", %s}\n' "$2" "$3" "$4" > "$tmp/$1.json"
    MK_RANDOM_EXP=123 sh "$QM_SRCDIR/bench/mk-random.sh" "$tmp/$1.json" 2 "$tmp/$1" >/dev/null || bad "mk-random.sh $1"
}
randmodel qwen2moe Qwen2MoeForCausalLM 2 '"shared_expert_intermediate_size": 256, "norm_topk_prob": false'
randmodel qwen3moe Qwen3MoeForCausalLM 2 '"head_dim": 64, "norm_topk_prob": true'
randmodel olmoe OlmoeForCausalLM 4 '"norm_topk_prob": false'
for a in qwen2moe qwen3moe olmoe; do
    "$QMOE" compile "$tmp/keep.qmoe" --model "$tmp/$a" -o "$tmp/$a-keep.yaml" &&
        "$QMOE" quantize -q --plan "$tmp/$a-keep.yaml" --model "$tmp/$a" --calib "$calib" --ctx 128 --samples 1 \
            --format gguf --keep-type F32 -o "$tmp/$a-f32.gguf" && ok || bad "F32 export of $a"
    [ "$("$QMOE" inspect "$tmp/$a-f32.gguf" | sed -n 's/.*architecture \([a-z0-9]*\),.*/\1/p')" = "$a" ] && ok ||
        bad "$a: general.architecture"
    compare "random $a F32" "$tmp/$a" "$tmp/$a-f32.gguf" 0.01
done

# tokenizer metadata: random Qwen3-MoE and DeepSeek-MoE checkpoints (hidden 64) carrying the real Qwen3 and
# DeepSeek-V3 tokenizer.json: llama.cpp's tokenizer, from the GGUF alone, gives the ids of `qmoe tokenize`
tokmodel() { # NAME ARCH TOKENIZER VOCAB EXTRA-CONFIG [PARSE_SPECIAL]
    printf '{"architectures": ["%s"], "vocab_size": %s, "hidden_size": 64, "intermediate_size": 64,
 "moe_intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
 "num_experts": 2, "n_routed_experts": 2, "n_shared_experts": 1, "first_k_dense_replace": 0, "num_experts_per_tok": 1,
 "max_position_embeddings": 512, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "torch_dtype": "bfloat16", %s}\n' \
        "$2" "$4" "$5" > "$tmp/$1.json"
    sh "$QM_SRCDIR/bench/mk-random.sh" "$tmp/$1.json" 1 "$tmp/$1" >/dev/null && cp "$3"/* "$tmp/$1/" &&
        "$QMOE" compile "$tmp/keep.qmoe" --model "$tmp/$1" -o "$tmp/$1.yaml" &&
        "$QMOE" quantize -q --plan "$tmp/$1.yaml" --model "$tmp/$1" --calib "$calib" --ctx 64 --samples 1 --format gguf \
            -o "$tmp/$1.gguf" && ok || bad "$1: GGUF with its tokenizer"
    printf 'Hello <|im_start|> world\n\n  \303\274n\303\257c\303\266d\303\251 123456 \360\237\246\231 <think>\n' > "$tmp/tok.txt"
    head -c 3000 "$text" >> "$tmp/tok.txt"
    engine tokenize "$tmp/$1.gguf" "$tmp/tok.txt" 1 "${6:-1}" > "$tmp/llama.ids" 2>/dev/null
    "$QMOE" tokenize "$tmp/$1" --text "$tmp/tok.txt" --add-special > "$tmp/qmoe.ids"
    [ -s "$tmp/qmoe.ids" ] && cmp -s "$tmp/llama.ids" "$tmp/qmoe.ids" && ok ||
        bad "$1: llama.cpp tokenizes to $(head -c 80 "$tmp/llama.ids"), qmoe to $(head -c 80 "$tmp/qmoe.ids")"
    echo "$1: llama.cpp and qmoe tokenize $(wc -w < "$tmp/qmoe.ids") ids alike"
    rm -rf "$tmp/$1" "$tmp/$1.gguf" "$tmp/$1.gguf.d"
}
data=${QM_SHARED_DATA:-$QM_SRCDIR/../shared/data}
if [ -d "$data/tokenizers/qwen3" ] && [ -d "$data/tokenizers/deepseek-v3" ]; then
    tokmodel tok-qwen3 Qwen3MoeForCausalLM "$data/tokenizers/qwen3" 151936 \
        '"head_dim": 32, "norm_topk_prob": true, "bos_token_id": 151643, "eos_token_id": 151645'
    tokmodel tok-deepseek DeepseekForCausalLM "$data/tokenizers/deepseek-v3" 129280 \
        '"moe_layer_freq": 1, "norm_topk_prob": false, "bos_token_id": 0, "eos_token_id": 1'
else
    echo "tokenizer metadata (tokenizer.json): skipped (no shared data at $data)"
fi
# a SentencePiece tokenizer.model (Mistral's): tokenizer.ggml.model llama with pieces, scores and types;
# SentencePiece reads "<unk>" in a text as text, so llama.cpp is asked not to parse special tokens
if [ -d "$data/tokenizers/mistral-v1" ]; then
    tokmodel tok-mistral MixtralForCausalLM "$data/tokenizers/mistral-v1" 32000 \
        '"num_local_experts": 2, "bos_token_id": 1, "eos_token_id": 2' 0
else
    echo "tokenizer metadata (tokenizer.model): skipped (no shared data at $data)"
fi

# k-quants on the Qwen3-MoE layout
rnd="$tmp/qwen3moe"
kq() { # NAME POLICY: quantize the random model to $tmp/NAME.gguf, then llama.cpp's reading of it
    policy "$1" "$2"
    "$QMOE" compile "$tmp/$1.qmoe" --model "$rnd" -o "$tmp/$1.yaml" &&
        "$QMOE" quantize -q --plan "$tmp/$1.yaml" --model "$rnd" --calib "$calib" --ctx 128 --samples 4 --format gguf \
            --keep-type F32 -o "$tmp/$1.gguf" && ok || bad "$1: quantize"
}
kq kquant "$(printf 'default: 4bit group 256\nlayers[0].experts: 2bit group 16\nlayers[1].experts: 3bit group 16')"
[ "$("$QMOE" inspect "$tmp/kquant.gguf" | awk '/^  Q/ {printf "%s:%s ", $1, $2}')" = "Q2_K:3 Q3_K:3 Q4_K:8 " ] && ok ||
    bad "kquant types: $("$QMOE" inspect "$tmp/kquant.gguf" | grep '^  ')"
[ -e "$tmp/kquant.gguf.d/model.safetensors.index.json" ] && bad "k-quant run wrote a GPTQ checkpoint" || ok
deq_cmp "GPTQ onto Q2_K/Q3_K/Q4_K" "$tmp/kquant.gguf"
l=$(engine ppl "$tmp/kquant.gguf" "$text" 1024 256 2>"$tmp/llama.err" | sed -n 's/^ppl //p')
grep -v '^load: adding 256 dummy tokens$' "$tmp/llama.err" | grep -v '^[.]*$' > "$tmp/warn"
[ -s "$tmp/warn" ] && bad "kquant: llama.cpp warned: $(head -3 "$tmp/warn")"
awk -v p="$l" 'BEGIN { exit !(p > 1 && p < 1e6) }' && ok || bad "kquant: llama.cpp ppl '$l'"
# every type llama.cpp's own quantizer writes (llama_ftype: F16 1, Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9,
# Q2_K 10, Q3_K_S 11, Q4_K_S 14, Q5_K_S 16, Q6_K 18, BF16 32; its presets add Q4_K/Q5_K/Q6_K tensors)
kq keepf32 'default: keep'
for t in 1 2 3 7 8 9 10 11 14 16 18 32; do
    engine quantize "$tmp/keepf32.gguf" "$tmp/ll.gguf" $t 2>/dev/null || bad "llama.cpp quantize $t"
    deq_cmp "llama.cpp ftype $t" "$tmp/ll.gguf"
done
rm -f "$tmp/ll.gguf"

# qmoe eval X.gguf: llama.cpp's own Q4_0 and Q4_K_S (its presets mix in Q5_0, Q5_1, Q8_0, Q6_K) and a
# mixed GPTQ plan (attention Q8_0, experts Q4_0, layer 2's experts 2-bit: Q2_K where rows are 256,
# else Q4_0 holding the 2-bit codes) read by qmoe give llama.cpp's perplexity on the same file within
# 0.15% (llama.cpp's activations in 8-bit blocks, above; its dequantization equals qmoe's reading bit
# for bit, gguf_cmp)
m="$QM_SRCDIR/examples/models/tiny-mixtral"
for t in 2 14; do
    engine quantize "$tmp/tiny-mixtral-f32.gguf" "$tmp/ll$t.gguf" $t 2>/dev/null || bad "llama.cpp quantize $t"
    compare "llama.cpp ftype $t read by qmoe" "$tmp/ll$t.gguf" "$tmp/ll$t.gguf" 0.15 "$m"
    rm -f "$tmp/ll$t.gguf"
done
policy mixed2 "$(printf 'default: 4bit group 32 sym\nattn: 8bit group 32 sym\nlayers[2].experts: 2bit group 16')"
"$QMOE" compile "$tmp/mixed2.qmoe" --model "$m" -o "$tmp/mixed2.yaml" || bad "compile mixed2"
"$QMOE" quantize -q --plan "$tmp/mixed2.yaml" --model "$m" --calib "$calib" $fast --format gguf --strict \
    -o "$tmp/mixed2s.gguf" 2>"$tmp/mixed2s.err" && bad "--strict accepted a fallback"
[ "$(cat "$tmp/mixed2s.err")" = "qmoe: error: 'model.layers.2.block_sparse_moe.experts.0.w1.weight': rows of 128 values cannot hold Q2_K super-blocks of 256 (--strict refuses the Q4_0 fallback)" ] &&
    ok || bad "--strict fallback: got '$(cat "$tmp/mixed2s.err")'"
"$QMOE" quantize -q --plan "$tmp/mixed2.yaml" --model "$m" --calib "$calib" $fast --format gguf --keep-type F32 \
    -o "$tmp/mixed2.gguf" 2>"$tmp/mixed2.err" || bad "mixed2: $(cat "$tmp/mixed2.err")"
[ "$(cat "$tmp/mixed2.err")" = "qmoe: warning: GGUF: 2 tensors with rows not a multiple of 256 hold GPTQ's codes in group-32 blocks instead of k-quants (first: 'blk.2.ffn_gate_exps.weight', 128 values, Q4_0); --strict refuses them" ] &&
    ok || bad "mixed2 fallback warning: got '$(cat "$tmp/mixed2.err")'"
[ "$("$QMOE" inspect "$tmp/mixed2.gguf" | awk '/^  Q/ {printf "%s:%s ", $1, $2}')" = "Q4_0:17 Q8_0:24 Q2_K:1 " ] && ok ||
    bad "mixed2 types: $("$QMOE" inspect "$tmp/mixed2.gguf" | grep '^  ')"
deq_cmp "mixed GPTQ plan" "$tmp/mixed2.gguf"
compare "mixed GPTQ plan read by qmoe" "$tmp/mixed2.gguf" "$tmp/mixed2.gguf" 0.15 "$m"
"$QMOE" eval "$tmp/mixed2.gguf" --text "$text" 2>"$tmp/nobase.err" && bad "eval X.gguf without --base"
grep -q "a GGUF model needs --base MODEL_DIR" "$tmp/nobase.err" && ok || bad "eval X.gguf without --base: $(cat "$tmp/nobase.err")"
"$QMOE" eval "$tmp/kquant.gguf" --base "$m" --text "$text" 2>"$tmp/wrong.err" && bad "eval X.gguf with the wrong base"
[ "$(cat "$tmp/wrong.err")" = "qmoe: error: $tmp/kquant.gguf: general.architecture is 'qwen3moe'; the model $m (MixtralForCausalLM) is 'llama' in GGUF" ] &&
    ok || bad "eval X.gguf with the wrong base: $(cat "$tmp/wrong.err")"

# refusals: checked before GPTQ runs, so nothing is written
m="$QM_SRCDIR/examples/models/tiny-mixtral"
refuse() {
    policy "$1" "$2"
    "$QMOE" compile "$tmp/$1.qmoe" --model "$m" -o "$tmp/$1.yaml" || bad "compile $1"
    "$QMOE" quantize -q --plan "$tmp/$1.yaml" --model "$m" --calib "$calib" $fast --format gguf -o "$tmp/$1.gguf" \
        2>"$tmp/$1.err" && bad "$1 accepted"
    [ "$(cat "$tmp/$1.err")" = "qmoe: error: $3" ] && ok || bad "$1: got '$(cat "$tmp/$1.err")'"
    [ -e "$tmp/$1.gguf" ] && bad "$1 left a file" || ok
}
refuse mixed "$(printf 'default: 4bit group 32 sym\nlayers[1].experts[3]: 8bit group 32')" \
    "layer 1: experts 0 and 3 of 'blk.1.ffn_gate_exps.weight' would be Q4_0 and Q8_0; llama.cpp stores a layer's experts as one tensor of one type"
refuse g128 'default: 4bit group 128 sym' \
    "'model.layers.0.self_attn.q_proj.weight': 4-bit symmetric group 128 has no GGUF block type (GGUF holds 8-bit symmetric group 32 as Q8_0, 4-bit group 32 as Q4_0 (symmetric) or Q4_1, 5-bit group 32 as Q5_0 (symmetric) or Q5_1, 2- and 3-bit group 16 or 256 as Q2_K and Q3_K, 4-bit group 256 as Q4_K)"
"$QMOE" quantize --plan "$tmp/g128.yaml" --model "$m" --calib "$calib" --keep-type F32 -o "$tmp/x" 2>"$tmp/k.err" \
    && bad "--keep-type without gguf accepted"
grep -q "keep-type needs --format gguf" "$tmp/k.err" && ok || bad "--keep-type without gguf: $(cat "$tmp/k.err")"

finish gguf.sh
