#!/bin/sh
# tokenizer-goldens.sh: regenerate the golden ids of tests/data/tokenizers
# with the reference implementations (issue #14).
#
#   sh tools/tokenizer-goldens.sh SRCDIR SHAREDDATA OUTDIR [NPMCACHE [small]]
#
# SRCDIR is the source tree (for tools/ and the small test inputs),
# SHAREDDATA the shared data folder (tokenizers/ and corpora/), OUTDIR gets
# one folder per tokenizer with NAME.u32 for each input (the corpora's
# compressed as NAME.u32.xz, as committed).  NPMCACHE (default
# /tmp/qmoe-tokenizer-npm) receives the two npm packages, pinned; nothing
# is installed anywhere else.  With "small", only the small inputs (no
# corpora: seconds instead of a minute).  Exit 77 when npm cannot install
# them.
set -eu
src=$1 data=$2 out=$3 npm=${4:-/tmp/qmoe-tokenizer-npm} only=${5:-all}
pkgs="@huggingface/tokenizers@0.2.0 mistral-tokenizer-js@1.0.0 tokenizers@0.23.2"
if [ ! -d "$npm/node_modules/@huggingface/tokenizers" ] || [ ! -d "$npm/node_modules/mistral-tokenizer-js" ] ||
   [ ! -d "$npm/node_modules/tokenizers" ]; then
    mkdir -p "$npm"
    [ -f "$npm/package.json" ] || echo '{"private": true}' >"$npm/package.json"
    if ! (cd "$npm" && npm install --no-audit --no-fund --silent $pkgs >/dev/null 2>&1); then
        echo "SKIP: npm could not install $pkgs" >&2
        exit 77
    fi
fi
gen="$src/tools/tokenizer-goldens.mjs"
inputs="$src/tests/data/tokenizers/inputs"
corpora="$data/corpora"
# Qwen3's tokenizer.json edited by tests/data/tokenizers/variants/*.sed to
# hold the components the four lack: normalizers against tokenizers.js,
# pre-tokenizers against Hugging Face's Rust library (tokenizers.js
# treats every Split behavior but Removed as Isolated)
for v in qwen3-lower:hf qwen3-split:rs; do
    name=${v%%:*} kind=${v#*:}
    mkdir -p "$out/$name" "$out/$name.tok"
    sed -f "$src/tests/data/tokenizers/variants/$name.sed" "$data/tokenizers/qwen3/tokenizer.json" \
        >"$out/$name.tok/tokenizer.json"
    node "$gen" "$npm" "$kind" "$out/$name.tok" "$out/$name" "$inputs"/*.txt
    rm -r "$out/$name.tok"
done
for t in qwen3:hf deepseek-v3:hf gpt2:gpt2 mistral-v1:spm; do
    name=${t%%:*} kind=${t#*:}
    dir="$out/$name"
    mkdir -p "$dir"
    node "$gen" "$npm" "$kind" "$data/tokenizers/$name" "$dir" "$inputs"/*.txt
    [ "$only" = small ] && continue
    # the corpora: WikiText-2's test split and tiny-shakespeare whole, the
    # first megabyte of the KJV (named kjv-1mb)
    node "$gen" "$npm" "$kind" "$data/tokenizers/$name" "$dir" \
        "$corpora/wikitext-2/test.txt" "$corpora/tinyshakespeare/input.txt"
    mv "$dir/test.u32" "$dir/wikitext-2-test.u32"
    mv "$dir/input.u32" "$dir/tinyshakespeare.u32"
    node "$gen" "$npm" "$kind" "$data/tokenizers/$name" "$dir" --max 1048576 "$corpora/kjv/kjv.txt"
    mv "$dir/kjv.u32" "$dir/kjv-1mb.u32"
    for c in wikitext-2-test tinyshakespeare kjv-1mb; do
        xz -9e -f "$dir/$c.u32"
    done
done
