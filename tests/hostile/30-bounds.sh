# 30-bounds.sh: unbounded reads and blocking opens (issue #13 item 5),
# deeply nested YAML (6), huge products of valid fields (7), vague messages
# (10) and shards that are cut short (12).  Every run has a time limit, so
# a hang fails here instead of blocking the test run.
b="$tmp/bounds"
mkdir -p "$b"
policy="$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe"

# quick CODE SECONDS CMD...: expect with a tighter time limit than expect's
quick() {
    want=$1 lim=$2; shift 2
    out=$(timeout "$lim" "$@" 2>"$tmp/err"); got=$?
    err=$(cat "$tmp/err")
    if [ "$got" -eq "$want" ]; then ok; else bad "$* exited $got (124: timed out), expected $want: $err"; fi
}
# ms CMD...: run it, $ms the milliseconds it took
ms() {
    t0=$(date +%s%N)
    quick 1 10 "$@"
    ms=$((($(date +%s%N) - t0) / 1000000))
}

# ---- 5: a device, a FIFO or a directory is refused at once, never read ----
quick 1 10 "$QMOE" eval "$model" --text /dev/zero --max-tokens 1000
has "$err" "/dev/zero: is a character device, not a regular file"
quick 1 10 "$QMOE" score "$model" --calib /dev/zero --max-tokens 1000 -o "$b/s.yaml"
has "$err" "/dev/zero: is a character device"
mkfifo "$b/fifo"
quick 1 10 "$QMOE" eval "$model" --text "$b/fifo"
has "$err" "fifo: is a FIFO, not a regular file"
quick 1 10 "$QMOE" score "$model" --calib "$b/fifo" -o "$b/s.yaml"
has "$err" "fifo: is a FIFO"
quick 1 10 "$QMOE" check "$b/fifo"
has "$err" "fifo: error: cannot open: is a FIFO, not a regular file"
"$QMOE" compile "$policy" --model "$model" -o "$b/plan.yaml" 2>/dev/null || bad "compile failed"
quick 1 10 "$QMOE" quantize -q --plan "$b/plan.yaml" --model "$model" --calib "$b/fifo" -o "$b/q"
has "$err" "fifo: is a FIFO"
quick 1 10 "$QMOE" quantize -q --plan "$b/fifo" --model "$model" --calib "$calib" -o "$b/q"
has "$err" "fifo: is a FIFO"
mkdir "$b/mfifo" && cp "$model/config.json" "$b/mfifo/" && mkfifo "$b/mfifo/model.safetensors"
quick 1 10 "$QMOE" inspect "$b/mfifo"
has "$err" "model.safetensors: is a FIFO, not a regular file"
# state qmoe keeps in its own output directory is opened the same way: a
# FIFO left there is no state (a fresh start), never a wait for a writer
mkdir -p "$b/qs/.qmoe-state" && mkfifo "$b/qs/.qmoe-state/state"
quick 0 120 "$QMOE" quantize -q --plan "$b/plan.yaml" --model "$model" --calib "$calib" --ctx 64 --samples 2 \
    -o "$b/qs"
[ -f "$b/qs/config.json" ] && ok || bad "quantize over a FIFO as its state wrote no model"
mkdir -p "$b/bs/runs/uniform-4bit" && mkfifo "$b/bs/runs/uniform-4bit/key"
quick 0 120 "$QMOE" bench "$model" --policies "$policy" --calib "$calib" --eval "$text" --ctx 64 --samples 2 \
    --eval-tokens 512 -q -o "$b/bs"
# a directory as calib: the errno text, not "read error" (item 10)
quick 1 10 "$QMOE" score "$model" --calib "$b" -o "$tmp/bounds-dir-calib.yaml"
has "$err" "bounds: is a directory, not a regular file"
# a text far larger than --max-tokens: only what is needed is read (a
# sparse 3 GiB file under a 1 GiB address-space limit; not where the
# limit stops qmoe from starting at all, as AddressSanitizer's shadow does)
truncate -s 3G "$b/big.txt"
if sh -c 'ulimit -v 1048576 && exec "$@"' sh "$QMOE" --help >/dev/null 2>&1; then
    quick 0 30 sh -c 'ulimit -v 1048576 && exec "$@"' sh "$QMOE" eval "$model" --text "$b/big.txt" \
        --max-tokens 600 --ctx 256
    has "$out" "ppl"
fi
rm -f "$b/big.txt"

# ---- 6: nesting beyond the limit is an error in milliseconds -------------
awk 'BEGIN { for (i = 0; i < 100000; i++) printf "["; print "" }' > "$b/deep100k"
awk 'BEGIN { for (i = 0; i < 80000; i++) printf "["; print "" }' > "$b/deep80k"
for f in deep80k deep100k; do
    ms "$QMOE" quantize -q --plan "$b/$f" --model "$model" --calib "$calib" -o "$b/q"
    has "$err" "nest"
    [ "$ms" -lt 1000 ] && ok || bad "plan of $f took $ms ms"
    ms "$QMOE" compile "$policy" --model "$model" --scores "$b/$f"
    has "$err" "nest"
    [ "$ms" -lt 1000 ] && ok || bad "scores of $f took $ms ms"
done

# ---- 7: 4096 layers x 65536 experts: refused before naming 805M tensors ---
mkdir "$b/huge" && cp "$model/model.safetensors" "$b/huge/"
sed 's/"num_hidden_layers": [0-9]*/"num_hidden_layers": 4096/; s/"n_routed_experts": [0-9]*/"n_routed_experts": 65536/' \
    "$model/config.json" > "$b/huge/config.json"
quick 1 10 "$QMOE" inspect "$b/huge"
has "$err" "4096 layers (4095 of them MoE) of 65536 routed experts each make 805150722 expected tensors"

# ---- 10: the errno of a failed write, the key and value at fault ----------
quick 1 20 sh -c 'ulimit -f 4 && trap "" XFSZ && exec "$@"' sh "$QMOE" compile "$policy" --model "$model" -o "$b/p2.yaml"
has "$err" "p2.yaml: write failed: File too large"
lacks "$err" "Input/output error"
sed 's/^  quantized_params: [0-9]*/  quantized_params: 7/' "$b/plan.yaml" > "$b/cut.yaml"
quick 1 10 "$QMOE" quantize -q --plan "$b/cut.yaml" --model "$model" --calib "$calib" -o "$b/q"
has "$err" "summary: quantized_params is 7, but the tensors listed add up to"
# a shape changed in the plan: the value and the shape in the message
awk '!d && /shape: \[[0-9]+, [0-9]+\]/ && /bits: 4/ { sub(/shape: \[[0-9]+, [0-9]+\]/, "shape: [64, 100]"); d = 1 } 1' \
    "$b/plan.yaml" > "$b/shape.yaml"
quick 1 10 "$QMOE" quantize -q --plan "$b/shape.yaml" --model "$model" --calib "$calib" -o "$b/q"
has "$err" "must be 0 (per channel) or divide the input columns 100 of shape [64, 100]"

# ---- 12: a shard shorter than its header says ------------------------------
mkdir "$b/cut" && cp "$model/config.json" "$b/cut/"
head -c 100000 "$model/model.safetensors" > "$b/cut/model.safetensors"
quick 1 10 "$QMOE" eval "$b/cut" --text "$text" --max-tokens 300 --ctx 128
has "$err" "model.safetensors"
lacks "$err" "Bus error"
rm -rf "$b"
