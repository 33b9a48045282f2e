#!/bin/sh
# tokenize.sh: `qmoe tokenize` (issue #14).  Small tokenizers written here
# test the command, its outputs and its errors; the four real tokenizers
# (../shared/data/tokenizers beside the source tree, or $QM_SHARED_DATA)
# must give the committed golden ids of tests/data/tokenizers/golden
# (made by tools/tokenizer-goldens.sh with the npm references) exactly, on
# every input; so must two variants of Qwen3's, edited by
# tests/data/tokenizers/variants/*.sed to use the normalizers and
# pre-tokenizers the four lack (their goldens from tokenizers.js and from
# Hugging Face's Rust library).  Without the shared data that part prints
# SKIP and the test exits 77 once the rest has passed.
. "${QM_SRCDIR:?}/tests/lib.sh"
: "${QM_BUILDDIR:?}"
expect() {
    want=$1; shift
    out=$("$@" 2>"$tmp/err"); got=$?
    err=$(cat "$tmp/err")
    if [ "$got" -eq "$want" ]; then ok; else bad "$* exited $got, expected $want: $err"; fi
}
is() { if [ "$1" = "$2" ]; then ok; else bad "expected '$2', got '$1'"; fi; }
has() { case "$1" in *"$2"*) ok ;; *) bad "expected '$2' in: $1" ;; esac; }

# ---- a tokenizer small enough to reason about -----------------------------------------
# Byte-level BPE: "hello" merges to one token, " world" to one, digits split.
t="$tmp/tiny"
mkdir -p "$t"
cat >"$t/tokenizer.json" <<'JSON'
{"version": "1.0",
 "added_tokens": [{"id": 12, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true}],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": true},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]},
 "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [12], "tokens": ["<s>"]}}},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false,
   "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "ll": 5, "hell": 6, "hello": 7, "Ġ": 8, "w": 9,
             "1": 10, "2": 11, "<s>": 12, "r": 13, "d": 14, "Ġw": 15, "or": 16, "Ġwor": 17, "ld": 18,
             "Ġworld": 19},
   "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", ["Ġwor", "ld"]]}}
JSON
printf 'Hello World12<s>hello' >"$tmp/hw.txt"
expect 0 "$QMOE" tokenize "$t" --text "$tmp/hw.txt"
is "$out" "7 19 10 11 12 7"
expect 0 "$QMOE" tokenize "$t/tokenizer.json" --text "$tmp/hw.txt" --add-special
is "$out" "12 7 19 10 11 12 7"
expect 0 "$QMOE" tokenize "$t" --text "$tmp/hw.txt" -o "$tmp/hw.u32"
is "$out" ""
is "$(od -An -tu4 -v "$tmp/hw.u32" | tr -s ' \n' '  ' | sed 's/^ //; s/ $//')" "7 19 10 11 12 7"
expect 0 "$QMOE" tokenize "$t" --text "$tmp/hw.txt" --format yaml
has "$out" "bytes: 21"; has "$out" "tokens: 6"; has "$out" "seconds: "; has "$out" "tokenizer: $t"
# --format json: the same keys and values (the timings zeroed: they differ between runs)
untime() { sed -E 's/(seconds|mb_per_s)("?): [0-9.]+/\1\2: 0/g'; }
"$QMOE" tokenize "$t" --text "$tmp/hw.txt" --format yaml | untime >"$tmp/tk.yaml"
"$QMOE" tokenize "$t" --text "$tmp/hw.txt" --format json | untime >"$tmp/tk.json"
if "$QM_BUILDDIR/tests/outputs/check_outputs" --same tokenize "$tmp/tk.yaml" "$tmp/tk.json" 2>"$tmp/err"; then ok
else bad "--format json: $(cat "$tmp/err")"; fi
has "$(cat "$tmp/tk.json")" '"tokens": 6'
: >"$tmp/empty.txt"
expect 0 "$QMOE" tokenize "$t" --text "$tmp/empty.txt"
is "$out" ""

# usage and errors
expect 2 "$QMOE" tokenize "$t";                 has "$err" "--text FILE is required"
expect 2 "$QMOE" tokenize --text "$tmp/hw.txt"; has "$err" "expected one TOKENIZER"
expect 2 "$QMOE" tokenize "$t" --text "$tmp/hw.txt" --format xml; has "$err" "--format must be 'text', 'yaml' or 'json'"
expect 1 "$QMOE" tokenize "$tmp/nothing" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/nothing: no such tokenizer file or directory"
expect 1 "$QMOE" tokenize "$tmp" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp: no tokenizer in this directory (looked for tokenizer.json, tokenizer.model, encoder.json + vocab.bpe)"
expect 1 "$QMOE" tokenize "$t" --text "$tmp/hw.txt" -o "$tmp/hw.txt"
has "$err" "qmoe: error: -o"
is "$(cat "$tmp/hw.txt")" "Hello World12<s>hello"
# a component of an unknown type is named, never skipped
sed 's/"type": "Lowercase"/"type": "StripAccents"/' "$t/tokenizer.json" >"$tmp/bad1.json"
expect 1 "$QMOE" tokenize "$tmp/bad1.json" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/bad1.json: normalizer: normalizer type 'StripAccents' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Sequence)"
sed 's/"type": "Digits"/"type": "BertPreTokenizer"/' "$t/tokenizer.json" >"$tmp/bad2.json"
expect 1 "$QMOE" tokenize "$tmp/bad2.json" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/bad2.json: pre_tokenizer: pre-tokenizer type 'BertPreTokenizer' is not supported (supported: Split, ByteLevel, Metaspace, Digits, Sequence)"
sed 's/"type": "BPE"/"type": "Unigram"/' "$t/tokenizer.json" >"$tmp/bad3.json"
expect 1 "$QMOE" tokenize "$tmp/bad3.json" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/bad3.json: model type 'Unigram' is not supported (supported: BPE)"
sed 's/"type": "TemplateProcessing"/"type": "BertProcessing"/' "$t/tokenizer.json" >"$tmp/bad4.json"
expect 1 "$QMOE" tokenize "$tmp/bad4.json" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/bad4.json: post_processor type 'BertProcessing' is not supported (supported: ByteLevel, TemplateProcessing, Sequence)"
sed 's/\["Ġwor", "ld"\]/"Ġwor ldx"/' "$t/tokenizer.json" >"$tmp/bad5.json"
expect 1 "$QMOE" tokenize "$tmp/bad5.json" --text "$tmp/hw.txt"
is "$err" "qmoe: error: $tmp/bad5.json: model.merges[8] 'Ġwor ldx': token 'ldx' is not in the vocabulary"
printf 'not a protobuf' >"$tmp/tokenizer.model"
expect 1 "$QMOE" tokenize "$tmp/tokenizer.model" --text "$tmp/hw.txt"
has "$err" "qmoe: error: $tmp/tokenizer.model: "

# ---- the real tokenizers against the references' golden ids ---------------------------
data=${QM_SHARED_DATA:-$QM_SRCDIR/../shared/data}
gold="$QM_SRCDIR/tests/data/tokenizers/golden"
inputs="$QM_SRCDIR/tests/data/tokenizers/inputs"
skipped=0
if [ ! -d "$data/tokenizers" ] || [ ! -d "$data/corpora" ]; then
    echo "SKIP: no shared data at $data (tokenizers/, corpora/): golden comparisons not run"
    skipped=1
else
    head -c 1048576 "$data/corpora/kjv/kjv.txt" >"$tmp/kjv-1mb.txt"
    # the variants: Qwen3's tokenizer.json with the components the four lack
    for v in qwen3-lower qwen3-split; do
        mkdir -p "$tmp/$v"
        sed -f "$QM_SRCDIR/tests/data/tokenizers/variants/$v.sed" "$data/tokenizers/qwen3/tokenizer.json" \
            >"$tmp/$v/tokenizer.json"
    done
    for tok in qwen3 deepseek-v3 gpt2 mistral-v1 qwen3-lower qwen3-split; do
        tokdir="$data/tokenizers/$tok"
        [ -d "$tmp/$tok" ] && tokdir="$tmp/$tok"
        for g in "$gold/$tok"/*; do
            name=$(basename "$g"); name=${name%.xz}; name=${name%.u32}
            case $name in
                wikitext-2-test) in="$data/corpora/wikitext-2/test.txt" ;;
                tinyshakespeare) in="$data/corpora/tinyshakespeare/input.txt" ;;
                kjv-1mb) in="$tmp/kjv-1mb.txt" ;;
                *) in="$inputs/$name.txt" ;;
            esac
            case $g in
                *.xz) xz -dc "$g" >"$tmp/want.u32" ;;
                *) cp "$g" "$tmp/want.u32" ;;
            esac
            if "$QMOE" tokenize "$tokdir" --text "$in" -o "$tmp/got.u32" 2>"$tmp/err" &&
               cmp -s "$tmp/got.u32" "$tmp/want.u32"; then
                ok
            else
                bad "$tok on $name: ids differ from the reference's ($(cat "$tmp/err"))"
            fi
        done
    done
    # BOS as tokenizer_config.json says: DeepSeek-V3 adds it (add_bos_token, as
    # transformers' LlamaTokenizerFast does; tokenizers.js reads only the
    # post-processor, a ByteLevel one, and adds nothing), Qwen3 does not;
    # SentencePiece puts its bos_id first, as mistral-tokenizer-js does
    printf 'Hi' >"$tmp/hi.txt"
    expect 0 "$QMOE" tokenize "$data/tokenizers/deepseek-v3" --text "$tmp/hi.txt" --add-special
    is "$out" "0 23166"
    expect 0 "$QMOE" tokenize "$data/tokenizers/qwen3" --text "$tmp/hi.txt" --add-special
    is "$out" "13048"
    expect 0 "$QMOE" tokenize "$data/tokenizers/mistral-v1" --text "$tmp/hi.txt" --add-special
    is "$out" "1 15359"

    # ---- a real tokenizer beside a model: eval, score, quantize and tasks from text --------
    # A Qwen3-MoE of the real vocabulary, tiny otherwise, its weights a hole
    # (zeros: every logit is 0, so perplexity is exactly the vocabulary size).
    m="$tmp/qwen3-tiny"
    cat >"$tmp/qwen3-tiny.json" <<'JSON'
{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "attention_bias": false,
 "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 8, "hidden_act": "silu", "hidden_size": 16,
 "intermediate_size": 16, "max_position_embeddings": 4096, "mlp_only_layers": [], "decoder_sparse_step": 1,
 "moe_intermediate_size": 8, "norm_topk_prob": true, "num_attention_heads": 2, "num_experts": 4,
 "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-06,
 "rope_theta": 1000000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 151936}
JSON
    if "$QM_BUILDDIR/tests/compiler/mkmodel" "$tmp/qwen3-tiny.json" "$m" >/dev/null; then ok; else bad "mkmodel"; fi
    cp "$data/tokenizers/qwen3/tokenizer.json" "$data/tokenizers/qwen3/tokenizer_config.json" "$m/"
    head -c 6000 "$data/corpora/wikitext-2/test.txt" >"$tmp/wiki.txt"
    expect 0 "$QMOE" tokenize "$m" --text "$tmp/wiki.txt" --format yaml
    has "$out" "tokens: 1583"
    expect 0 "$QMOE" eval "$m" --text "$tmp/wiki.txt" --ctx 64 --max-tokens 256 --format yaml -q
    has "$out" "tokens: 255"; has "$out" "ppl: 151936.0000"
    # the same ids given as a .u32 file score the same
    "$QMOE" tokenize "$m" --text "$tmp/wiki.txt" -o "$tmp/wiki.u32"
    expect 0 "$QMOE" eval "$m" --tokens "$tmp/wiki.u32" --ctx 64 --max-tokens 256 --format yaml -q
    has "$out" "tokens: 255"
    expect 0 "$QMOE" score "$m" --calib "$tmp/wiki.txt" --ctx 32 --max-tokens 128 -o "$tmp/scores.yaml"
    expect 0 "$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --model "$m" -o "$tmp/plan.yaml"
    expect 0 "$QMOE" quantize -q --plan "$tmp/plan.yaml" --model "$m" --calib "$tmp/wiki.txt" --ctx 32 --samples 4 \
        -o "$tmp/q4"
    "$QMOE" tokenize "$m" --text "$tmp/wiki.txt" --format yaml >"$tmp/tokenize.yaml"
    . "$QM_SRCDIR/tests/outputs/check-outputs.sh"
    check_tree "$tmp/q4"
    check_outputs scores "$tmp/scores.yaml" plan "$tmp/plan.yaml" tokenize "$tmp/tokenize.yaml"
    printf '%s\n' '{"context": "The capital of France is", "choices": [" Paris", " London"], "gold": 0, "task": "cap"}' \
        '{"context": "2 + 2 = ", "choices": ["4", "5"], "gold": 0, "task": "sum"}' >"$tmp/tasks.jsonl"
    expect 0 "$QMOE" eval "$m" --tasks "$tmp/tasks.jsonl" --ctx 64 --format yaml
    has "$out" "cap:"; has "$out" "sum:"
    # without a tokenizer, text is refused as before
    rm "$m/tokenizer.json"
    expect 1 "$QMOE" eval "$m" --text "$tmp/wiki.txt" --ctx 64 -q
    is "$err" "qmoe: error: $m has no tokenizer (tokenizer.json, tokenizer.model) and does not declare a byte-level one; give token ids with --tokens"
fi

finish tokenize || exit 1
[ "$skipped" -eq 0 ] || exit 77
