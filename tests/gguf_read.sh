#!/bin/sh
# gguf_read.sh: `qmoe inspect X.gguf` on the committed GGUF fuzz inputs
# (tests/fuzz/corpus/gguf, made by hand: a valid file and one malformation
# each): the valid ones are described, every malformed one gets its exact
# located error and exit status 1.  Then `qmoe quantize --format gguf` of
# tiny-mixtral at Q4_0 without llama.cpp (tests/gguf.sh runs it there): the
# tensor list llama.cpp's converter writes, and the same command run again
# over the finished run writes the same bytes.  Then the GGUF preview of a
# mixed plan (compile --format table --target gguf) against the file written.
. "${QM_SRCDIR:?}/tests/lib.sh"
# expect NAME STATUS FIRST_LINE: inspect of corpus input NAME, copied to x.gguf
expect() {
    cp "$QM_SRCDIR/tests/fuzz/corpus/gguf/$1" "$tmp/x.gguf"
    out=$(cd "$tmp" && "$QMOE" inspect x.gguf 2>&1 | head -1)
    rc=$(cd "$tmp" && "$QMOE" inspect x.gguf >/dev/null 2>&1; echo $?)
    if [ "$rc" = "$2" ] && [ "$out" = "$3" ]; then
        ok
    else
        bad "$1: status $rc, '$out'"
    fi
}
e="qmoe: error: x.gguf:"
expect valid 0 "x.gguf: GGUF v3, architecture llama, 4 metadata keys, alignment 32"
expect valid_v2_no_tensors 0 "x.gguf: GGUF v2, architecture llama, 1 metadata keys, alignment 32"
expect bad_magic 1 "$e offset 0: not a GGUF file: magic is not 'GGUF'; the first 4 bytes as a number (1481983815)"
expect bad_version 1 "$e offset 4: GGUF version is 2 or 3, not (4)"
expect empty 1 "$e offset 0: too short for a GGUF header (0)"
expect huge_count 1 "$e offset 8: tensor count larger than the file can hold (1152921504606846976)"
expect truncated_header 1 "$e offset 8: tensor count larger than the file can hold (6)"
expect bad_alignment 1 "$e offset 53: general.alignment is not a power of two held as u32 (3)"
expect nested_array 1 "$e offset 49: bad array element type (9)"
expect unknown_type 1 "$e offset 226: unknown ggml type (99)"
expect duplicate_name 1 "$e tensor 'a' is listed twice"
expect block_mismatch 1 "$e tensor 'b': rows of 30 values cannot be Q4_0 (blocks of 32)"
expect misaligned_offset 1 "$e tensor 'c': offset 100 is not a multiple of the alignment 32"
expect overlap 1 "$e tensors 'a' and 'b' overlap"
expect truncated_data 1 "$e tensor 'f': bytes [224, 368) exceed the data section of 344 bytes (truncated?)"
cp "$QM_SRCDIR/tests/fuzz/corpus/gguf/valid" "$tmp/x.gguf"
(cd "$tmp" && "$QMOE" inspect --tensors x.gguf) > "$tmp/out"
if grep -q '^f  *Q4_K  *\[256\] 144 bytes$' "$tmp/out" && grep -q '^b  *Q4_0  *\[32, 2\] 36 bytes$' "$tmp/out"; then
    ok
else
    bad "inspect --tensors:"; cat "$tmp/out"
fi
m="$QM_SRCDIR/examples/models/tiny-mixtral"
printf 'default: 4bit group 32 sym\n' > "$tmp/q4.qmoe"
q() { "$QMOE" quantize -q --plan "$tmp/q4.yaml" --model "$m" --calib "$QM_SRCDIR/examples/data/wikitext2-valid.txt" \
    --ctx 128 --samples 4 --format gguf -o "$tmp/q4.gguf"; }
if "$QMOE" compile "$tmp/q4.qmoe" --model "$m" -o "$tmp/q4.yaml" && q && cp "$tmp/q4.gguf" "$tmp/first.gguf" && q &&
    cmp -s "$tmp/q4.gguf" "$tmp/first.gguf"; then
    ok
else
    bad "quantize --format gguf twice: not the same bytes"
fi
"$QMOE" inspect --tensors "$tmp/q4.gguf" | awk 'NR > 2 { print $1, $2 }' | head -14 > "$tmp/list"
cat > "$tmp/want" <<'LIST'
F32 19
Q4_0 42
BF16 2
token_embd.weight BF16
blk.0.attn_norm.weight F32
blk.0.attn_q.weight Q4_0
blk.0.attn_k.weight Q4_0
blk.0.attn_v.weight Q4_0
blk.0.attn_output.weight Q4_0
blk.0.ffn_norm.weight F32
blk.0.ffn_gate_inp.weight F32
blk.0.ffn_gate_exps.weight Q4_0
blk.0.ffn_down_exps.weight Q4_0
blk.0.ffn_up_exps.weight Q4_0
LIST
if diff "$tmp/want" "$tmp/list" >/dev/null; then ok; else bad "tensor list"; diff "$tmp/want" "$tmp/list"; fi

# compile --format table --target gguf: the file's tensors and bytes before any GPTQ; its total is the data
# section the quantized file then has (a mixed plan: Q8_0 attention, Q4_0 experts, layer 2's experts at
# 2 bits: Q2_K where the rows are 256, else the Q4_0 fallback; layer 4's at 5 bits: Q5_0 on every row),
# and --strict refuses the fallback
printf 'default: 4bit group 32 sym\nattn: 8bit group 32 sym\nlayers[2].experts: 2bit group 16\nlayers[4].experts: 5bit group 32\n' \
    > "$tmp/mx.qmoe"
"$QMOE" compile "$tmp/mx.qmoe" --model "$m" --format table --target gguf > "$tmp/preview" 2>"$tmp/preview.err" ||
    bad "preview: $(cat "$tmp/preview.err")"
"$QMOE" compile "$tmp/mx.qmoe" --model "$m" -o "$tmp/mx.yaml" &&
    "$QMOE" quantize -q --plan "$tmp/mx.yaml" --model "$m" --calib "$QM_SRCDIR/examples/data/wikitext2-valid.txt" \
        --ctx 128 --samples 4 --format gguf -o "$tmp/mx.gguf" 2>/dev/null ||
    bad "quantize mx"
data=$("$QMOE" inspect "$tmp/mx.gguf" | sed -n 's/.* tensors, \([0-9]*\) bytes of tensor data.*/\1/p')
total=$(awk '$1 == "total" { print $3 }' "$tmp/preview")
[ -n "$data" ] && [ "$data" = "$total" ] && ok ||
    { bad "preview total '$total', file '$data'"; cat "$tmp/preview"; }
grep -q '^ffn_down_exps.weight  *Q2_K  *\[256, 128, 8\]  *2  *1  *86016 *$' "$tmp/preview" &&
    grep -q '^ffn_gate_exps.weight  *Q4_0  *\[128, 256, 8\]  *2  *1  *147456  *fallback: 2-bit codes; rows of 128 cannot hold Q2_K$' "$tmp/preview" &&
    grep -q '^attn_q.weight  *Q8_0  *\[128, 128\]  *0-5  *6  *' "$tmp/preview" &&
    grep -q '^ffn_down_exps.weight  *Q4_0  *\[256, 128, 8\]  *0-1,3,5  *4  *' "$tmp/preview" &&
    grep -q '^ffn_down_exps.weight  *Q5_0  *\[256, 128, 8\]  *4  *1  *180224 *$' "$tmp/preview" &&
    grep -q '^ffn_up_exps.weight  *Q5_0  *\[128, 256, 8\]  *4  *1  *180224 *$' "$tmp/preview" && ok ||
    { bad "preview rows"; cat "$tmp/preview"; }
"$QMOE" compile "$tmp/mx.qmoe" --model "$m" --format table --target gguf --strict > /dev/null 2>"$tmp/strict.err" &&
    bad "preview --strict accepted a fallback"
grep -q "rows of 128 values cannot hold Q2_K super-blocks of 256 (--strict refuses the Q4_0 fallback)" "$tmp/strict.err" &&
    ok || { bad "preview --strict: $(cat "$tmp/strict.err")"; }
"$QMOE" compile "$tmp/mx.qmoe" --model "$m" --target gguf > /dev/null 2>"$tmp/t.err" &&
    bad "--target without --format table accepted"
grep -q -- "--target gguf needs --format table" "$tmp/t.err" && ok ||
    { bad "--target without table: $(cat "$tmp/t.err")"; }

finish gguf_read.sh
