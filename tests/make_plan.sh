#!/bin/sh
# make_plan.sh QMOE MODEL_DIR BITS GROUP [ATTN_BITS]: a uniform bit plan for
# tests of the runtime, written from `qmoe inspect --tensors` without the
# policy compiler: every attention, expert, shared-expert and dense-MLP
# linear at BITS (attention at ATTN_BITS when given), group GROUP, symmetric,
# no act-order; everything else kept.
set -eu
qmoe=$1 model=$2 bits=$3 group=$4 attn=${5:-$3}
sha=$(sha256sum "$model/config.json" | cut -d' ' -f1)
arch=$("$qmoe" inspect --format yaml "$model" | sed -n 's/^architecture: //p')
cat <<EOF2
qmoe_plan: 1
policy: {path: tests/make_plan.sh, sha256: "0"}
model: {architecture: $arch, config_sha256: $sha}
scores: null
tensors:
EOF2
"$qmoe" inspect --tensors --format yaml "$model" | awk -v bits="$bits" -v group="$group" -v attn="$attn" '
  /^- module: / { module = $3 }
  /^  name: / { name = $2 }
  /^  shape: / { shape = substr($0, index($0, "[")) }
  /^  dtype: / {
    b = "keep"
    if (module ~ /\.attn\.[qkvo]$/) b = attn
    else if (module ~ /(experts\[[0-9]+\]|shared|mlp)\.(gate|up|down)$/) b = bits
    printf "- {name: %s, module: \"%s\", shape: %s, dtype: %s, bits: %s, group_size: %d, sym: true, act_order: false, rule: \"make_plan\"}\n", name, module, shape, $2, b, group
  }'
