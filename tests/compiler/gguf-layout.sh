#!/bin/sh
# tests/compiler/gguf-layout.sh: the GGUF preview (`qmoe compile --format
# table --target gguf`) on header-only checkpoints of the five architectures'
# real configs (Mixtral-8x7B, DeepSeek-MoE-16B, Qwen1.5-MoE-A2.7B,
# Qwen3-30B-A3B, OLMoE-1B-7B), before any GPTQ:
#   - the tensor names llama.cpp's converter writes for the architecture
#     (convert_hf_to_gguf.py and gguf-py's tensor map: stacked *_exps,
#     DeepSeek's leading dense ffn_* and *_shexp, Qwen2-MoE's biases and
#     shared-expert gate, the q/k norms of Qwen3-MoE and OLMoE), and the
#     layers each spans;
#   - every row's bytes equal its element count times the ggml type's block
#     bytes over its block values (the table below, from ggml-common.h), and
#     the total their sum;
#   - with routed experts at 2 bits, Q2_K where the rows are multiples of
#     256 and the documented Q4_0 fallback, with its note, where not.
. "${QM_SRCDIR:?}/tests/lib.sh"
mk=${QM_BUILDDIR:?}/tests/compiler/mkmodel
printf 'default: 4bit group 32 sym\nattn: 8bit group 32 sym\n' > "$tmp/base.qmoe"
printf 'default: 4bit group 32 sym\nattn: 8bit group 32 sym\nexperts: 2bit group 16\n' > "$tmp/k.qmoe"

common="token_embd attn_norm attn_q attn_k attn_v attn_output ffn_norm output_norm output"
exps="ffn_gate_inp ffn_gate_exps ffn_up_exps ffn_down_exps"
shexp="ffn_gate_shexp ffn_up_shexp ffn_down_shexp"
# CONFIG  the names beyond $common and $exps
for spec in "mixtral-8x7b:" \
    "deepseek-moe-16b:ffn_gate ffn_up ffn_down $shexp" \
    "qwen1.5-moe-a2.7b:attn_q.bias attn_k.bias attn_v.bias $shexp ffn_gate_inp_shexp" \
    "qwen3-30b-a3b:attn_q_norm attn_k_norm" \
    "olmoe-1b-7b:attn_q_norm attn_k_norm"; do
    c=${spec%%:*} extra=${spec#*:}
    "$mk" "$QM_SRCDIR/tests/data/configs/$c.json" "$tmp/$c" > /dev/null || { bad "$c: mkmodel"; continue; }
    for p in base k; do
        if ! "$QMOE" compile "$tmp/$p.qmoe" --model "$tmp/$c" --format table --target gguf > "$tmp/$c-$p" 2> "$tmp/err"; then
            bad "$c $p: preview failed: $(cat "$tmp/err")"
            continue
        fi
        awk '/^gguf tensor/ { p = 1; next } p && $1 != "total" { print $1 }' "$tmp/$c-$p" | sort > "$tmp/got"
        for n in $common $exps $extra; do
            case $n in *.bias) echo "$n" ;; *) echo "$n.weight" ;; esac
        done | sort > "$tmp/want"
        cmp -s "$tmp/got" "$tmp/want" && ok || { bad "$c $p: tensor names"; diff "$tmp/want" "$tmp/got"; }
        # bytes = elements x block bytes / block values, per row and in total
        awk -v m="$c $p" '
            BEGIN { split("F32:4:1 F16:2:1 BF16:2:1 Q8_0:34:32 Q4_0:18:32 Q4_1:20:32 Q5_0:22:32 Q5_1:24:32 " \
                          "Q2_K:84:256 Q3_K:110:256 Q4_K:144:256", t, " ")
                    for (i in t) { split(t[i], f, ":"); B[f[1]] = f[2]; V[f[1]] = f[3] } }
            /^gguf tensor/ { p = 1; next }
            p && $1 == "total" { if ($3 != sum) { printf "FAIL: %s: total %s, rows sum to %.0f\n", m, $3, sum; bad++ } next }
            p { d = $0; sub(/^[^[]*\[/, "", d); rest = d; sub(/\].*/, "", d); sub(/^[^]]*\]/, "", rest)
                n = split(d, a, ", "); e = 1
                for (i = 1; i <= n; i++) e *= a[i]
                split(rest, c, " ")  # layers, tensors, bytes, then the note
                if (!($2 in B) || a[1] % V[$2]) { printf "FAIL: %s: %s: type %s, row %s\n", m, $1, $2, a[1]; bad++; next }
                want = e / V[$2] * B[$2] * c[2]; sum += c[3]
                if (c[3] != want) { printf "FAIL: %s: %s: %s bytes, expected %.0f\n", m, $1, c[3], want; bad++ } }
            END { exit bad > 0 }' "$tmp/$c-$p" && ok || bad "$c $p: bytes"
    done
    # 2-bit experts: Q2_K on rows of a multiple of 256, else the Q4_0 fallback saying so
    awk '/_exps.weight/ { d = $0; sub(/^[^[]*\[/, "", d); split(d, a, ", "); r = a[1] + 0
            if (r % 256 == 0 && $2 != "Q2_K") { print "FAIL: " $1 " rows of " r ": " $2; bad++ }
            if (r % 256 && ($2 != "Q4_0" || $0 !~ /fallback: 2-bit codes; rows of [0-9]+ cannot hold Q2_K/)) {
                print "FAIL: " $1 " rows of " r ": " $0; bad++ } }
         END { exit bad > 0 }' "$tmp/$c-k" && ok || bad "$c: 2-bit experts' types"
done
# DeepSeek-MoE-16B: layer 0 dense (first_k_dense_replace 1), experts and shared experts in 1-27
grep -q '^ffn_gate.weight  *Q4_0  *\[2048, 10944\]  *0  *1 ' "$tmp/deepseek-moe-16b-base" &&
    grep -q '^ffn_down_exps.weight  *Q4_0  *\[1408, 2048, 64\]  *1-27  *27 ' "$tmp/deepseek-moe-16b-base" &&
    grep -q '^ffn_up_shexp.weight  *Q4_0  *\[2048, 2816\]  *1-27  *27 ' "$tmp/deepseek-moe-16b-base" && ok ||
    bad "deepseek-moe-16b: dense layer 0 and MoE layers 1-27"
finish gguf-layout.sh
