#!/bin/sh
# tests/compiler/engines.sh: `qmoe compile --engine` and `--format table`'s
# engine verdicts on header-only checkpoints of real configs (Mixtral-8x7B,
# DeepSeek-MoE-16B, Qwen3-30B-A3B) and on an example, and `quantize
# --engine`: for each engine, a policy that breaks each of its constraints
# (the exact diagnostic) and one that fits; the stdlib recipes' verdicts
# against tests/compiler/engines.golden.  Exits non-zero on a failure.
. "${QM_SRCDIR:?}/tests/lib.sh"
src=$QM_SRCDIR qmoe=$QMOE t=$tmp
mk=${QM_BUILDDIR:?}/tests/compiler/mkmodel
for c in mixtral-8x7b deepseek-moe-16b qwen3-30b-a3b; do
    "$mk" "$src/tests/data/configs/$c.json" "$t/$c" >/dev/null || exit 1
done

# run CODE MODEL POLICY-TEXT ENGINE...: compile with each --engine; $err its stderr
run() {
    want=$1 model=$2 text=$3; shift 3
    printf '%s\n' "$text" > "$t/p.qmoe"
    args=""
    for e in "$@"; do args="$args --engine $e"; done
    # shellcheck disable=SC2086
    "$qmoe" compile "$t/p.qmoe" --model "$t/$model" $args -o "$t/plan.yaml" 2>"$t/err"
    got=$?
    err=$(cat "$t/err")
    if [ "$got" -eq "$want" ]; then ok "$* on $model: exit $want"; else bad "$* on $model: exit $got, expected $want: $err"; fi
    if [ "$want" -ne 0 ] && [ -e "$t/plan.yaml" ]; then bad "a plan was written"; fi
    rm -f "$t/plan.yaml"
}
has() { case "$err" in *"$1"*) ok "says: $1" ;; *) bad "expected '$1' in: $err" ;; esac; }
clean() { if [ -z "$err" ]; then ok "no diagnostic"; else bad "expected no diagnostic: $err"; fi; }

# ---- vllm -------------------------------------------------------------------------
run 0 mixtral-8x7b 'default: 4bit;' vllm; clean
run 0 mixtral-8x7b 'default: 4bit; experts: 2bit;' vllm
has "p.qmoe:1: warning: vllm refuses routed experts at 2 bits: every GPTQ MoE path (Marlin MoE, MoeWNA16) takes int4 and int8 only"
has "; 768 tensors in layers 0-31, e.g. layers[0].experts[0].gate, set by this rule"
printf 'default: 4bit; experts: 2bit;\n' > "$t/p.qmoe"
"$qmoe" compile "$t/p.qmoe" --model "$t/mixtral-8x7b" --engine vllm --strict -o "$t/plan.yaml" 2>"$t/err"
[ $? -eq 1 ] && [ ! -e "$t/plan.yaml" ] && ok "--strict: a refusal is an error" || bad "--strict did not refuse"
err=$(cat "$t/err"); has "p.qmoe:1: error: vllm refuses routed experts at 2 bits"
run 1 mixtral-8x7b 'default: 4bit, asym;' vllm
has "p.qmoe:1: error: vllm would serve asymmetric routed experts wrongly: an asymmetric checkpoint leaves Marlin"
run 1 deepseek-moe-16b 'default: 4bit, act_order;' vllm
has "error: vllm would serve routed experts with act-order wrongly: MoeWNA16"
run 0 mixtral-8x7b 'default: 4bit;
layers[3].attn.q: 8bit;' vllm
has "p.qmoe:1: warning: vllm refuses parts of a fused projection (q/k/v, gate/up) at different schemes"
has "2 tensors in layer 3, e.g. layers[3].attn.k, set by this rule (4-bit, group 128, sym) against layers[3].attn.q (8-bit, group 128, sym, set by p.qmoe:2)"
run 0 mixtral-8x7b 'default: 4bit; layers[5].experts[2]: 8bit;' vllm
has "warning: vllm refuses experts of one layer at different schemes: one FusedMoE holds all experts' w13 and w2 at one width"

# ---- sglang -----------------------------------------------------------------------
run 0 qwen3-30b-a3b 'default: 8bit;' sglang; clean
run 0 qwen3-30b-a3b 'default: 4bit; experts: 3bit;' sglang
has "sglang refuses routed experts at 3 bits"
run 0 qwen3-30b-a3b 'default: 4bit; experts: 4bit, asym;' sglang
has "sglang refuses asymmetric routed experts: Marlin MoE has no asymmetric type"
run 0 qwen3-30b-a3b 'default: 8bit; attn: 4bit; layers[0..20].experts: 4bit;' sglang
has "sglang refuses routed experts at another width or group size than the plan's base (8-bit, group 128)"
run 1 qwen3-30b-a3b 'default: 4bit; layers[0..10].experts: 4bit, act_order;' sglang
has "error: sglang would serve routed experts at another sym or act-order than the plan's base (sym) wrongly"

# ---- transformers, autogptq ---------------------------------------------------------
run 0 mixtral-8x7b 'default: 3bit;' transformers autogptq; clean
run 0 mixtral-8x7b 'default: 2bit; attn: 4bit;' transformers autogptq
has "transformers refuses linears at another width or group size than the plan's base (2-bit, group 128)"
has "autogptq refuses linears at another width or group size than the plan's base (2-bit, group 128)"
run 1 mixtral-8x7b 'default: 4bit; attn: 4bit, asym;' transformers
has "error: transformers would serve linears at another sym or act-order than the plan's base (sym) wrongly"
run 0 qwen3-30b-a3b 'default: 4bit;' autogptq
has "warning: autogptq refuses the architecture Qwen3MoeForCausalLM: mixtral is its only MoE model type"

# ---- gptqmodel --------------------------------------------------------------------
run 0 qwen3-30b-a3b 'default: 2bit; attn: 8bit; layers[0].experts[0..7]: 3bit, asym, act_order;' gptqmodel; clean
run 0 deepseek-moe-16b 'default: 4bit;' gptqmodel
has "gptqmodel refuses the architecture DeepseekForCausalLM"

# ---- llama.cpp --------------------------------------------------------------------
run 0 mixtral-8x7b 'default: 4bit, group 32; attn: 8bit, group 32; layers[0..3].experts: 2bit, group 16;' llama.cpp
clean
run 0 mixtral-8x7b 'default: 4bit, group 32; layers[2].experts[1]: 8bit, group 32;' llama.cpp
has "llama.cpp refuses experts of one layer at different schemes: each routed projection of a layer is one tensor"
run 0 mixtral-8x7b 'default: 4bit;' llama.cpp
has "llama.cpp refuses 4-bit linears with group size 128: Q4_0 and Q4_1 blocks give each 32 values of a row one scale, Q4_K each 256"
run 0 mixtral-8x7b 'default: 8bit, group 32, asym;' llama.cpp
has "llama.cpp refuses asymmetric 8-bit linears: Q8_0 stores a scale and no minimum"
run 0 deepseek-moe-16b 'default: 4bit, group 32; experts: 2bit, group 16;' llama.cpp
has "llama.cpp refuses 2/3-bit linears whose input width is not a multiple of 256"
has "e.g. layers[1].experts[0].down"

# ---- --fit: the nearest plan the engine serves ----------------------------------------
fit() { # fit MODEL POLICY ENGINE: compile --fit into $t/fit.yaml, stderr in $err
    "$qmoe" compile -I "$src/stdlib" "$2" --model "$t/$1" --fit "$3" -o "$t/fit.yaml" 2>"$t/err"
    got=$?
    err=$(cat "$t/err")
}
fit mixtral-8x7b "$src/stdlib/paper/attn-4bit.qmoe" vllm
[ $got -eq 0 ] && ok "attn-4bit --fit vllm" || bad "attn-4bit --fit vllm: $err"
has "warning: fit vllm: 768 linears changed; average 4.000 bits against the rules' 2.058: vllm cannot serve these widths (its widths for routed experts reach 4.000 to 7.884 bits"
grep -q "module: 'layers\[0\].experts\[0\].gate', .* bits: 4, .* rule: fit vllm}" "$t/fit.yaml" &&
    ok "2-bit experts raised to 4 by 'fit vllm'" || bad "no expert raised by fit vllm"
"$qmoe" compile "$t/fit.yaml" --model "$t/mixtral-8x7b" >/dev/null 2>&1 || true
fit mixtral-8x7b "$src/stdlib/paper/uniform-4bit.qmoe" llama.cpp
has "note: fit llama.cpp: 896 linears changed; average 4.000 bits"
grep -q "module: 'layers\[3\].attn.q', .* bits: 4, group_size: 256, sym: true, act_order: false, rule: fit llama.cpp}" \
    "$t/fit.yaml" && ok "group 128 moved to the nearest llama.cpp takes, 256 (Q4_K)" || bad "group not fitted for llama.cpp"
printf 'default: 4bit;\nlayers[2].experts[0..2]: 8bit;\n' > "$t/p.qmoe"
fit mixtral-8x7b "$t/p.qmoe" llama.cpp
grep "module: 'layers\[2\].experts\[[0-9]*\].gate'" "$t/fit.yaml" | sed 's/.* bits: \([0-9]\).*/\1/' | sort -u > "$t/w"
[ "$(cat "$t/w")" = 5 ] && ok "a layer's experts at one width, their mean rounded (5.5 -> 5)" ||
    bad "layer 2's experts after fit: $(tr '\n' ' ' < "$t/w")"
for e in vllm sglang transformers gptqmodel autogptq llama.cpp; do
    for p in attn-4bit first-moe-blocks uniform-2bit; do
        fit qwen3-30b-a3b "$src/stdlib/paper/$p.qmoe" "$e"
        if [ "$e" = autogptq ]; then
            has "no plan fits autogptq: it refuses the architecture Qwen3MoeForCausalLM"
        else
            "$qmoe" compile -I "$src/stdlib" "$src/stdlib/paper/$p.qmoe" --model "$t/qwen3-30b-a3b" --fit "$e" \
                --engine "$e" --format table 2>/dev/null | grep -q "^$e  *yes" &&
                ok "$p --fit $e is servable by $e" || bad "$p --fit $e is not servable: $err"
        fi
    done
done

# an unknown engine: a usage error naming the known ones
printf 'default: 4bit;\n' > "$t/p.qmoe"
"$qmoe" compile "$t/p.qmoe" --model "$t/mixtral-8x7b" --engine vlm 2>"$t/err" >/dev/null
[ $? -eq 2 ] && ok "unknown engine: exit 2" || bad "unknown engine: not a usage error"
err=$(cat "$t/err"); has "--engine 'vlm': expected one of vllm, sglang, transformers, gptqmodel, autogptq, llama.cpp"

# ---- the stdlib recipes' verdicts (the README's table) ------------------------------
# every recipe, the data-driven ones with synthetic scores (tests/compiler/synth-scores.sh)
sh "$src/tests/compiler/synth-scores.sh" 0 32 8 > "$t/mixtral-8x7b.scores.yaml"
sh "$src/tests/compiler/synth-scores.sh" 1 28 64 > "$t/deepseek-moe-16b.scores.yaml"
sh "$src/tests/compiler/synth-scores.sh" 0 48 128 > "$t/qwen3-30b-a3b.scores.yaml"
for c in mixtral-8x7b deepseek-moe-16b qwen3-30b-a3b; do
    for f in "$src"/stdlib/paper/*.qmoe "$src"/stdlib/ladder/*.qmoe; do
        p=$(basename "$(dirname "$f")")/$(basename "$f" .qmoe)
        "$qmoe" compile -I "$src/stdlib" "$f" --model "$t/$c" --scores "$t/$c.scores.yaml" --format table 2>/dev/null |
            awk -v c="$c" -v p="$p" 'go && NF {printf "%s %s %s %s\n", c, p, $1, $2} /^engine/ {go = 1}'
    done
done > "$t/verdicts"
[ -n "${QM_ENGINES_GOLDEN_OUT:-}" ] && cp "$t/verdicts" "$QM_ENGINES_GOLDEN_OUT"
if cmp -s "$t/verdicts" "$src/tests/compiler/engines.golden"; then ok "verdicts match engines.golden"
else bad "verdicts differ from engines.golden: $(diff "$src/tests/compiler/engines.golden" "$t/verdicts" | head -20)"; fi

# ---- quantize checks again before any work -------------------------------------------
ex="$src/examples/models/tiny-deepseek"
printf 'default: 4bit, asym;\n' > "$t/asym.qmoe"
"$qmoe" compile "$t/asym.qmoe" --model "$ex" -o "$t/asym.yaml" 2>/dev/null || bad "compile of asym.qmoe"
"$qmoe" quantize -q --plan "$t/asym.yaml" --model "$ex" --calib "$src/examples/data/wikitext2-valid.txt" \
    --ctx 64 --samples 2 --engine vllm -o "$t/q" 2>"$t/err"
[ $? -eq 1 ] && [ ! -e "$t/q" ] && ok "quantize --engine vllm refuses before any work" || bad "quantize --engine vllm ran"
err=$(cat "$t/err"); has "error: vllm would serve asymmetric routed experts wrongly"
"$qmoe" quantize -q --plan "$t/asym.yaml" --model "$ex" --calib "$src/examples/data/wikitext2-valid.txt" \
    --ctx 64 --samples 2 -o "$t/q2" 2>"$t/err"
[ $? -eq 0 ] && ok "quantize without --engine runs" || bad "quantize without --engine failed"
err=$(cat "$t/err")
has "warning: this checkpoint will be misread by vllm (asymmetric routed experts); will be refused by sglang (asymmetric routed experts), transformers (linears at another width or group size than the plan's base (4-bit, group 128)), gptqmodel (the architecture DeepseekForCausalLM), autogptq (the architecture DeepseekForCausalLM); name the engine with --engine for the tensors and rules"

finish engines
