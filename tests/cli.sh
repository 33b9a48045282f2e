#!/bin/sh
# cli.sh: the qmoe command as a user runs it: help, version, exit codes,
# error format, and `qmoe inspect` on the shipped example models.
. "${QM_SRCDIR:?}/tests/lib.sh"

# expect CODE CMD...: run, capture stdout/stderr in $out/$err, check the exit code
expect() {
    want=$1; shift
    out=$("$@" 2>/tmp/qmoe-cli-err.$$); got=$?
    err=$(cat /tmp/qmoe-cli-err.$$)
    if [ "$got" -eq "$want" ]; then ok; else bad "$* exited $got, expected $want: $err"; fi
}
has() { case "$1" in *"$2"*) ok ;; *) bad "expected '$2' in: $1" ;; esac; }

expect 0 "$QMOE" --help;            has "$out" "inspect"
expect 0 "$QMOE" --version;         has "$out" "qmoe "
expect 0 "$QMOE" help inspect;      has "$out" "--tensors"
expect 2 "$QMOE";                   has "$err" "usage: qmoe"
expect 2 "$QMOE" frobnicate
has "$err" "'frobnicate' is not a qmoe command"
expect 2 "$QMOE" inspect;           has "$err" "expected one MODEL_DIR"
expect 2 "$QMOE" inspect --bogus x; has "$err" "unknown option '--bogus'"
expect 2 "$QMOE" inspect --format xml x; has "$err" "--format must be 'text', 'yaml' or 'json', not 'xml'"
expect 1 "$QMOE" inspect /nonexistent/model; has "$err" "qmoe: error: /nonexistent/model/config.json"

ds="$QM_SRCDIR/examples/models/tiny-deepseek"
mx="$QM_SRCDIR/examples/models/tiny-mixtral"
expect 0 "$QMOE" inspect "$ds"
has "$out" "DeepseekForCausalLM"; has "$out" "dense: 0"
expect 0 "$QMOE" inspect --format yaml "$ds"
has "$out" "architecture: DeepseekForCausalLM"
has "$out" "moe_layers: [1, 2, 3, 4, 5]"
has "$out" "shared_experts: 2"
has "$out" "experts_per_token: 4"
has "$out" "routed_experts: 1966080"   # 5 MoE layers x 16 experts x 3 x 128 x 64
has "$out" "dense_mlp: 196608"         # 3 x 128 x 512
expect 0 "$QMOE" inspect --tensors --format yaml "$mx"
has "$out" "module: layers[5].experts[7].down"
has "$out" "name: model.layers.5.block_sparse_moe.experts.7.w2.weight"
has "$out" "shape: [128, 256]"
expect 0 "$QMOE" inspect --tensors "$mx"
has "$out" "layers[0].attn.k"

# eval: figures are stable to the last printed digit across runs
txt="$QM_SRCDIR/examples/data/wikitext2-test.txt"
expect 0 "$QMOE" eval "$ds" --text "$txt" --max-tokens 3000 --ctx 256 --base "$ds" --format yaml -q
first=$out
has "$out" "tokens: 2999"
has "$out" "kld_mean: 0.000000"     # a model against itself
has "$out" "top1_agree: 100.00"
has "$out" "ppl_ratio: 1.0000"
expect 0 "$QMOE" eval "$ds" --text "$txt" --max-tokens 3000 --ctx 256 --base "$ds" --format yaml -q
[ "$out" = "$first" ] && ok || bad "eval output differs between runs"
expect 0 "$QMOE" eval "$mx" --text "$txt" --max-tokens 2000 --base "$ds" -q
has "$out" "KLD"
expect 2 "$QMOE" eval "$ds" --text "$txt" --tokens x;   has "$err" "give --text or --tokens, not both"
expect 2 "$QMOE" eval "$ds";                            has "$err" "nothing to evaluate"
expect 2 "$QMOE" eval "$ds" --text "$txt" --ctx 0;      has "$err" "--ctx must be an integer in [1,"
expect 1 "$QMOE" eval "$ds" --text /nonexistent.txt;    has "$err" "/nonexistent.txt: No such file or directory"

# token-id input: decimal text and .u32
trap 'rm -rf "$tmp" /tmp/qmoe-cli-err.$$' EXIT
head -c 600 "$txt" | od -An -v -tu1 > "$tmp/ids.txt"
expect 0 "$QMOE" eval "$ds" --tokens "$tmp/ids.txt" --format yaml -q
ids_out=$out
expect 0 "$QMOE" eval "$ds" --text "$txt" --max-tokens 600 --format yaml -q
[ "$out" = "$ids_out" ] && ok || bad "--tokens ids and --text bytes disagree"
echo "12 999" > "$tmp/bad.txt"
expect 1 "$QMOE" eval "$ds" --tokens "$tmp/bad.txt"; has "$err" "token 1 is id 999, outside the vocabulary [0, 256)"

# tasks: the model must prefer real continuations over shuffled bytes
cat > "$tmp/tasks.jsonl" <<'JSONL'
{"task": "demo", "context": " The game 's", "choices": [" development began in 2010", " ngdvmeoetlp 0b1a n2e0 ei"], "gold": 0}
{"task": "demo", "context": " In the beginning God created", "choices": [" the heaven and the earth", " hte nveahe dan hte rathe"], "gold": 0}
{"task": "demo", "context": " He was born in", "choices": [" yrdeoCn", " the city of London"], "gold": 1}
JSONL
expect 0 "$QMOE" eval "$ds" --tasks "$tmp/tasks.jsonl" --format yaml -q
has "$out" "demo:"
has "$out" "acc: 1.0000"
has "$out" "\"n\": 3"   # quoted: a plain n reads as false in YAML 1.1
echo '{"context": "x", "choices": ["a"], "gold": 0}' > "$tmp/badtask.jsonl"
expect 1 "$QMOE" eval "$ds" --tasks "$tmp/badtask.jsonl"; has "$err" "badtask.jsonl:1: need 'context', 'choices' (2 or more)"
printf '\n{"context": [1], "choices": [[2], [256]], "gold": 0}\n' > "$tmp/badtask.jsonl"
expect 1 "$QMOE" eval "$ds" --tasks "$tmp/badtask.jsonl"; has "$err" "badtask.jsonl:2: token id 256 is not in [0, 256)"
echo '{"context": "x", "choices": ["a", ""], "gold": 0, "task": "t"}' > "$tmp/badtask.jsonl"
expect 1 "$QMOE" eval "$ds" --tasks "$tmp/badtask.jsonl"; has "$err" "badtask.jsonl:1: choice 1 is empty"
echo '{"context": "x", "choices": ["a", "b"], "gold": 0, "task": ["t"]}' > "$tmp/badtask.jsonl"
expect 1 "$QMOE" eval "$ds" --tasks "$tmp/badtask.jsonl"; has "$err" "badtask.jsonl:1: 'task' must be a string"

# score: frequency counts add up to tokens x top-k per layer
expect 0 "$QMOE" score "$ds" --calib "$QM_SRCDIR/examples/data/wikitext2-valid.txt" --max-tokens 2048 -o "$tmp/scores.yaml"
sc=$(cat "$tmp/scores.yaml")
has "$sc" "qmoe_scores: 1"
has "$sc" "tokens: 2048"
has "$sc" "layers[1].experts[15].down:"
sum=$(sed -n 's/^  1: \[\(.*\)\]$/\1/p' "$tmp/scores.yaml" | tr ',' '\n' | awk '{s += $1} END {print s}')
[ "$sum" = "8192" ] && ok || bad "layer 1 frequency sums to $sum, expected 2048 x 4"
expect 2 "$QMOE" score "$ds" --calib x;  has "$err" "--calib FILE and -o SCORES are required"

# a corrupt checkpoint is an error naming the file, not a crash
bad_ckpt="$tmp/corrupt"; mkdir "$bad_ckpt"
cp "$mx/config.json" "$bad_ckpt/"
printf '\377\377\377\377\377\377\377\377' > "$bad_ckpt/model.safetensors"
expect 1 "$QMOE" inspect "$bad_ckpt"; has "$err" "$bad_ckpt/model.safetensors: header length"

finish cli
