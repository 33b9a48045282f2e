#!/bin/sh
# cli.sh: the qmoe command as a user runs it: help, version, exit codes,
# error format, and `qmoe inspect` on the shipped example models.
set -u
: "${QMOE:?}" "${QM_SRCDIR:?}"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

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
expect 2 "$QMOE" inspect --format xml x; has "$err" "--format must be 'text' or 'yaml'"
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

# a corrupt checkpoint is an error naming the file, not a crash
tmp=$(mktemp -d); trap 'rm -rf "$tmp" /tmp/qmoe-cli-err.$$' EXIT
cp "$mx/config.json" "$tmp/"
printf '\377\377\377\377\377\377\377\377' > "$tmp/model.safetensors"
expect 1 "$QMOE" inspect "$tmp"; has "$err" "$tmp/model.safetensors: header length"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
