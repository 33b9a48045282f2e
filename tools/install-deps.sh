#!/bin/sh
# Install qmoe's build and test dependencies from Debian's packages.
# Run as root, or with sudo available.  Safe to run again.
set -eu
pkgs="build-essential autoconf automake libtool pkg-config flex bison
      libopenblas-dev libyaml-dev libjansson-dev libcunit1-dev groff-base
      libpcre2-dev libutf8proc-dev libopenmpi-dev openmpi-bin"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
# Tests only (never the build): npm fetches llama.cpp's prebuilt libraries for
# tests/gguf.sh and bench/gguf_vs_llamacpp.sh, which SKIP without it.
command -v npm >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
