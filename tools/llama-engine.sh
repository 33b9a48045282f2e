#!/bin/sh
# llama-engine.sh: the real llama.cpp for qmoe's tests and bench, without a
# network beyond npm.  npm @node-llama-cpp/linux-x64@3.22.1 ships llama.cpp's
# prebuilt CPU libraries (libllama, libggml*, the CPU backends loaded at run
# time); npm node-llama-cpp@3.22.1 carries the exact source they were built
# from (llama/gitRelease.bundle), whose headers build tools/llama_ppl.c
# (with tools/llama_imatrix.c).
#
#   llama-engine.sh CACHE_DIR setup
#       fetch (npm pack) and build once into CACHE_DIR; exit 77 when npm
#       cannot be reached (callers print SKIP)
#   llama-engine.sh CACHE_DIR ppl MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT]
#       llama_ppl on MODEL.gguf (see tools/llama_ppl.c): tokens, nll, ppl
#   llama-engine.sh CACHE_DIR quantize IN.gguf OUT.gguf FTYPE [KEEP_TYPE [IMATRIX|- [preset]]]
#       llama.cpp's own quantizer (FTYPE 0: blocks back to F32 by ggml),
#       embeddings and head at KEEP_TYPE, the rest at FTYPE's type or
#       ("preset") the mix of llama.cpp's preset, with an importance matrix
#   llama-engine.sh CACHE_DIR imatrix MODEL.gguf TEXT BYTES CTX OUT.gguf
#       llama.cpp's importance matrix collected by the harness over the full
#       windows of CTX in the first BYTES bytes of TEXT (qmoe's calibration)
#   llama-engine.sh CACHE_DIR imatrix-ref MODEL.gguf TEXT BYTES CTX OUT.gguf
#       the same by llama.cpp's own tools/imatrix/imatrix.cpp, built against
#       the release's libllama-common with one line changed (the text's bytes
#       are the token ids: the example models are byte-level, their GGUF has
#       no vocabulary to tokenize with); for checking the harness
#   llama-engine.sh CACHE_DIR imatrix-diff A.gguf B.gguf
#       the largest relative difference of two imatrix files' sums
#   llama-engine.sh CACHE_DIR tokenize MODEL.gguf TEXT [ADD_SPECIAL [PARSE_SPECIAL]]
#       the ids llama.cpp's tokenizer gives TEXT, as `qmoe tokenize` prints them
#
# CACHE_DIR is under the build tree (tests use $builddir/.llama-cache);
# nothing from it is committed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: llama-engine.sh CACHE_DIR setup|ppl ...}
cmd=${2:?usage: llama-engine.sh CACHE_DIR setup|ppl ...}
shift 2
mkdir -p "$cache" && cache=$(cd "$cache" && pwd) # absolute: setup() works inside it
ver=3.22.1
bins="$cache/bin/package/bins/linux-x64"

setup() {
    fresh=1
    for f in llama_ppl.c llama_imatrix.c llama_harness.h; do
        [ -x "$cache/llama_ppl" ] && [ "$cache/llama_ppl" -nt "$here/$f" ] || fresh=0
    done
    [ $fresh = 1 ] && [ -d "$bins" ] && return 0
    mkdir -p "$cache"
    command -v npm >/dev/null 2>&1 || { echo "llama-engine: npm not installed" >&2; exit 77; }
    for p in "node-llama-cpp@$ver" "@node-llama-cpp/linux-x64@$ver"; do
        f=$(echo "$p" | sed 's/^@//; s/[@/]/-/g').tgz
        [ -s "$cache/$f" ] && continue
        (cd "$cache" && timeout 300 npm pack --silent "$p" >/dev/null 2>"$cache/npm.err") || {
            echo "llama-engine: npm pack $p failed (registry unreachable?): $(tail -1 "$cache/npm.err")" >&2
            exit 77
        }
    done
    if [ ! -d "$bins" ] || [ ! -d "$cache/src/include" ]; then
        rm -rf "$cache/bin" "$cache/src" "$cache/src.tmp"
        mkdir -p "$cache/bin" "$cache/src.tmp"
        tar xzf "$cache/node-llama-cpp-linux-x64-$ver.tgz" -C "$cache/bin"
        tar xzf "$cache/node-llama-cpp-$ver.tgz" -C "$cache/src.tmp" package/llama/gitRelease.bundle
        git clone -q "$cache/src.tmp/package/llama/gitRelease.bundle" "$cache/src" 2>/dev/null
        rm -rf "$cache/src.tmp"
    fi
    ${CC:-cc} -O2 -o "$cache/llama_ppl.tmp" "$here/llama_ppl.c" "$here/llama_imatrix.c" -I"$here" \
        -I"$cache/src/include" -I"$cache/src/ggml/include" \
        "$bins/libllama.v0.5.0.so" "$bins/libggml.v0.5.0.so" "$bins/libggml-base.so" -lm -Wl,-rpath,"$bins"
    mv "$cache/llama_ppl.tmp" "$cache/llama_ppl"
}

# llama.cpp's imatrix tool, reading bytes as tokens, beside the CPU backends
# it loads from its own directory
imatrix_ref() {
    [ -x "$bins/llama-imatrix-bytes" ] && return 0
    sed 's|std::vector<llama_token> tokens = common_tokenize(ctx, params.prompt, true, params.parse_special);|std::vector<llama_token> tokens; for (unsigned char c : params.prompt) tokens.push_back(c);|' \
        "$cache/src/tools/imatrix/imatrix.cpp" > "$cache/imatrix-bytes.cpp"
    grep -q 'for (unsigned char c : params.prompt)' "$cache/imatrix-bytes.cpp" ||
        { echo "llama-engine: imatrix.cpp's tokenize line not found" >&2; exit 1; }
    ${CXX:-c++} -std=c++17 -O1 -o "$bins/llama-imatrix-bytes.tmp" "$cache/imatrix-bytes.cpp" \
        -I"$cache/src/common" -I"$cache/src/include" -I"$cache/src/ggml/include" -I"$cache/src/vendor" \
        "$bins/libllama-common.so" "$bins/libllama.v0.5.0.so" "$bins/libggml.v0.5.0.so" "$bins/libggml-base.so" \
        -Wl,-rpath,"$bins"
    mv "$bins/llama-imatrix-bytes.tmp" "$bins/llama-imatrix-bytes"
}

case $cmd in
setup) setup ;;
imatrix)
    setup
    exec "$cache/llama_ppl" "$bins" --imatrix "$@"
    ;;
imatrix-diff)
    setup
    exec "$cache/llama_ppl" "$bins" --imatrix-diff "$@"
    ;;
imatrix-ref)
    setup
    imatrix_ref
    [ $# = 5 ] || { echo "usage: llama-engine.sh CACHE_DIR imatrix-ref MODEL.gguf TEXT BYTES CTX OUT.gguf" >&2; exit 2; }
    head -c "$3" "$2" > "$5.txt"
    # one window per batch, F32 KV cache, flash attention off: the harness's settings
    "$bins/llama-imatrix-bytes" -m "$1" -f "$5.txt" -o "$5" -c "$4" -b "$4" -ub "$4" -ctk f32 -ctv f32 -fa off \
        -t 2 --no-ppl >"$5.log" 2>&1 || { tail -5 "$5.log" >&2; rm -f "$5.txt"; exit 1; }
    rm -f "$5.txt" "$5.log"
    ;;
ppl)
    setup
    exec "$cache/llama_ppl" "$bins" "$@"
    ;;
quantize)
    setup
    exec "$cache/llama_ppl" "$bins" --quantize "$@"
    ;;
tokenize)
    setup
    exec "$cache/llama_ppl" "$bins" --tokenize "$@"
    ;;
*) echo "llama-engine.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
