#!/bin/sh
# llama-engine.sh: the real llama.cpp for qmoe's tests and bench, without a
# network beyond npm.  npm @node-llama-cpp/linux-x64@3.22.1 ships llama.cpp's
# prebuilt CPU libraries (libllama, libggml*, the CPU backends loaded at run
# time); npm node-llama-cpp@3.22.1 carries the exact source they were built
# from (llama/gitRelease.bundle), whose headers build tools/llama_ppl.c.
#
#   llama-engine.sh CACHE_DIR setup
#       fetch (npm pack) and build once into CACHE_DIR; exit 77 when npm
#       cannot be reached (callers print SKIP)
#   llama-engine.sh CACHE_DIR ppl MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT]
#       llama_ppl on MODEL.gguf (see tools/llama_ppl.c): tokens, nll, ppl
#   llama-engine.sh CACHE_DIR quantize IN.gguf OUT.gguf FTYPE
#       llama.cpp's own quantizer (FTYPE 0: blocks back to F32 by ggml)
#   llama-engine.sh CACHE_DIR tokenize MODEL.gguf TEXT [ADD_SPECIAL]
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
    [ -x "$cache/llama_ppl" ] && [ "$cache/llama_ppl" -nt "$here/llama_ppl.c" ] && [ -d "$bins" ] && return 0
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
    ${CC:-cc} -O2 -o "$cache/llama_ppl.tmp" "$here/llama_ppl.c" -I"$cache/src/include" -I"$cache/src/ggml/include" \
        "$bins/libllama.v0.5.0.so" "$bins/libggml.v0.5.0.so" "$bins/libggml-base.so" -lm -Wl,-rpath,"$bins"
    mv "$cache/llama_ppl.tmp" "$cache/llama_ppl"
}

case $cmd in
setup) setup ;;
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
