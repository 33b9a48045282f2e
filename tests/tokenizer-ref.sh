#!/bin/sh
# tokenizer-ref.sh: the committed golden ids of the small inputs, made again
# with the npm references (tools/tokenizer-goldens.sh, the packages cached
# in the build tree), must be the same bytes: goldens that drift from the
# references would make tokenize.sh prove nothing.  The corpora's goldens
# take a minute to remake and are left to the tool.  SKIP (77) without the
# shared data, node, or a reachable npm registry.
set -u
: "${QM_SRCDIR:?}" "${QM_BUILDDIR:?}"
data=${QM_SHARED_DATA:-$QM_SRCDIR/../shared/data}
if [ ! -d "$data/tokenizers" ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP: needs $data/tokenizers, node and npm"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmoe-tokref.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
sh "$QM_SRCDIR/tools/tokenizer-goldens.sh" "$QM_SRCDIR" "$data" "$tmp" "$QM_BUILDDIR/npm-cache" small
rc=$?
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAIL: tools/tokenizer-goldens.sh exited $rc"; exit 1; }
fail=0 n=0
for f in "$tmp"/*/*.u32; do
    rel=${f#"$tmp"/}
    n=$((n + 1))
    cmp -s "$f" "$QM_SRCDIR/tests/data/tokenizers/golden/$rel" || { echo "FAIL: $rel differs from the references'"; fail=1; }
done
echo "tokenizer-ref.sh: $n golden files compared"
[ $n -gt 0 ] && exit $fail || exit 1
