#!/bin/sh
# mpi.sh: distributed runs (qmoe(1), DISTRIBUTED RUNS).  `mpirun -n N qmoe
# quantize` for N = 1, 2, 3 on tiny-deepseek (a dense first layer, shared
# experts) and tiny-mixtral writes the same bytes as one plain process
# (quant_log.yaml less its timings), with --fake-quant too (the dequantized
# weights cross between ranks) and a k-quant GGUF; so do `qmoe score` and
# `qmoe eval` on 2 and 3 ranks, and `qmoe measure` on 1, 2 and 3; one
# rank killed with SIGKILL in the middle (of quantize, of measure) ends the
# whole job with an error, and a run with another N resumes it to the same
# bytes; one rank stopped with SIGSTOP ends the job within --mpi-timeout
# with an error naming it and the layer, and the run resumes on one process
# to the same bytes.  SKIP (exit 77) when qmoe is built without MPI.
if [ "${QM_MPI:-no}" != yes ] || [ -z "${MPIRUN:-}" ]; then
    echo "SKIP: qmoe is built without MPI (configure --with-mpi; Debian: libopenmpi-dev openmpi-bin)"
    exit 77
fi
. "${QM_SRCDIR:?}/tests/lib.sh"
calib="$QM_SRCDIR/examples/data/wikitext2-valid.txt"
fast="--ctx 256 --samples 8"
# Open MPI: more ranks than cores, and as root in CI containers; its leak
# reports at exit are MPI's own, not qmoe's (the sanitizer build)
mpirun="$MPIRUN"
if "$MPIRUN" --version 2>&1 | grep -q "Open MPI"; then
    mpirun="$MPIRUN --oversubscribe"
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# same(A, B): every file of run A in run B, byte for byte (the log without seconds)
same() {
    for f in "$1"/*.safetensors "$1"/*.json "$1"/plan.yaml ${3:-}; do
        cmp -s "$f" "$2/${f#"$1"/}" && ok || bad "$4: ${f#"$1"/} differs from the single-process run"
    done
    sed 's/seconds: [0-9.]*}$//' "$1/quant_log.yaml" > "$tmp/log.a"
    sed 's/seconds: [0-9.]*}$//' "$2/quant_log.yaml" > "$tmp/log.b"
    cmp -s "$tmp/log.a" "$tmp/log.b" && ok || bad "$4: quant_log.yaml differs: $(diff "$tmp/log.a" "$tmp/log.b" | head -3)"
}

for m in tiny-deepseek tiny-mixtral; do
    model="$QM_SRCDIR/examples/models/$m"
    "$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" --model "$model" -o "$tmp/$m.yaml" || bad "compile $m"
    q="quantize -q --plan $tmp/$m.yaml --model $model --calib $calib $fast"
    "$QMOE" $q -o "$tmp/$m-1p" && ok || bad "$m: the single-process run failed"
    for n in 1 2 3; do
        $mpirun -n $n "$QMOE" $q -o "$tmp/$m-n$n" 2> "$tmp/err" && ok || bad "$m: mpirun -n $n failed: $(tail -5 "$tmp/err")"
        same "$tmp/$m-1p" "$tmp/$m-n$n" "" "$m, $n ranks"
    done
done

# score: each rank a share of the windows, rank 0 sums in token order
for m in tiny-deepseek tiny-mixtral; do
    sc="score $QM_SRCDIR/examples/models/$m --calib $calib --max-tokens 5000 --ctx 256 -q"
    "$QMOE" $sc -o "$tmp/$m-1p.scores" || bad "$m: score failed"
    for n in 2 3; do
        $mpirun -n $n "$QMOE" $sc -o "$tmp/$m-n$n.scores" 2> "$tmp/err" && ok || bad "$m: mpirun -n $n score failed: $(tail -5 "$tmp/err")"
        cmp -s "$tmp/$m-1p.scores" "$tmp/$m-n$n.scores" && ok || bad "$m: scores of $n ranks differ from one process's"
    done
done

# eval --base (perplexity, KL divergence) and eval alone: the same split, summed in position order
text="$QM_SRCDIR/examples/data/wikitext2-test.txt"
ev="eval $tmp/tiny-mixtral-1p --base $QM_SRCDIR/examples/models/tiny-mixtral --text $text --max-tokens 6000 --ctx 256 --format json -q"
ep="eval $QM_SRCDIR/examples/models/tiny-deepseek --text $text --max-tokens 6000 --format json -q"
"$QMOE" $ev > "$tmp/ev-1p.json" && "$QMOE" $ep > "$tmp/ep-1p.json" || bad "eval failed"
grep -q '"kld_mean"' "$tmp/ev-1p.json" && ok || bad "eval --base printed no KL divergence"
for n in 2 3; do
    $mpirun -n $n "$QMOE" $ev > "$tmp/ev-n$n.json" 2> "$tmp/err" && ok || bad "mpirun -n $n eval --base failed: $(tail -5 "$tmp/err")"
    cmp -s "$tmp/ev-1p.json" "$tmp/ev-n$n.json" && ok || bad "eval --base on $n ranks differs: $(diff "$tmp/ev-1p.json" "$tmp/ev-n$n.json" | head -4)"
    $mpirun -n $n "$QMOE" $ep > "$tmp/ep-n$n.json" 2> "$tmp/err" && ok || bad "mpirun -n $n eval failed: $(tail -5 "$tmp/err")"
    cmp -s "$tmp/ep-1p.json" "$tmp/ep-n$n.json" && ok || bad "eval on $n ranks differs"
done

# --fake-quant: the dequantized weights travel too
model="$QM_SRCDIR/examples/models/tiny-deepseek"
q="quantize -q --plan $tmp/tiny-deepseek.yaml --model $model --calib $calib $fast --fake-quant"
"$QMOE" $q -o "$tmp/fq-1p" && $mpirun -n 2 "$QMOE" $q -o "$tmp/fq-n2" 2> "$tmp/err" && ok ||
    bad "fake-quant runs failed: $(tail -5 "$tmp/err")"
same "$tmp/fq-1p" "$tmp/fq-n2" "$tmp/fq-1p/fake-quant/*" "fake-quant, 2 ranks"

# --format gguf with k-quants (two-level grids, fp16 scales fixed by the GGUF writer on rank 0) on a
# random Qwen3-MoE layout whose inputs are multiples of 256, as tests/gguf.sh makes it
printf '{"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 256, "hidden_size": 256, "intermediate_size": 256,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 8,
 "num_experts_per_tok": 2, "moe_intermediate_size": 256, "max_position_embeddings": 512, "rms_norm_eps": 1e-06,
 "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "qmoe_tokenizer": "byte", "head_dim": 64, "norm_topk_prob": true}\n' \
    > "$tmp/q3.json"
printf 'default: 4bit group 256\nlayers[0].experts: 2bit group 16\nlayers[1].experts: 3bit group 16\n' > "$tmp/kq.qmoe"
MK_RANDOM_EXP=123 sh "$QM_SRCDIR/bench/mk-random.sh" "$tmp/q3.json" 2 "$tmp/q3" > /dev/null &&
    "$QMOE" compile "$tmp/kq.qmoe" --model "$tmp/q3" -o "$tmp/kq.yaml" || bad "the k-quant model or plan"
q="quantize -q --plan $tmp/kq.yaml --model $tmp/q3 --calib $calib --ctx 128 --samples 4 --format gguf"
"$QMOE" $q -o "$tmp/kq-1p.gguf" 2> /dev/null || bad "k-quant GGUF on one process failed"
$mpirun -n 2 "$QMOE" $q -o "$tmp/kq-n2.gguf" 2> "$tmp/err" && ok || bad "k-quant GGUF on 2 ranks failed: $(tail -5 "$tmp/err")"
cmp -s "$tmp/kq-1p.gguf" "$tmp/kq-n2.gguf" && ok || bad "k-quant GGUF of 2 ranks differs from one process's"

# rank_pid JOB R: the pid of rank R of the mpirun started as JOB
rank_pid() {
    for p in $(pgrep -P "$1" 2>/dev/null); do
        tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
    done
}
# wait_for FILE: until it exists (at most 30 s)
wait_for() {
    i=0
    while [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
}

# measure: a layer's work items over the ranks, errors gathered on rank 0
for m in tiny-deepseek:linear tiny-mixtral:expert; do
    ms="measure $QM_SRCDIR/examples/models/${m%:*} --calib $calib --ctx 128 --samples 4 --widths 2,4 --units ${m#*:} -q"
    "$QMOE" $ms -o "$tmp/m-1p.yaml" || bad "${m%:*}: measure failed"
    for n in 1 2 3; do
        $mpirun -n $n "$QMOE" $ms -o "$tmp/m-n$n.yaml" 2> "$tmp/err" && ok ||
            bad "${m%:*}: mpirun -n $n measure failed: $(tail -5 "$tmp/err")"
        cmp -s "$tmp/m-1p.yaml" "$tmp/m-n$n.yaml" && ok || bad "${m%:*}: measure of $n ranks differs from one process's"
    done
done
# --target gguf: every rank fits the same GGUF settings (Q2_K, the fallback, Q4_0 with act-order)
ms="measure $model --calib $calib --ctx 128 --samples 4 --widths 2,4 --group 32 --target gguf -q"
"$QMOE" $ms -o "$tmp/mg-1p.yaml" || bad "measure --target gguf failed"
$mpirun -n 2 "$QMOE" $ms -o "$tmp/mg-n2.yaml" 2> "$tmp/err" && ok ||
    bad "mpirun -n 2 measure --target gguf failed: $(tail -5 "$tmp/err")"
cmp -s "$tmp/mg-1p.yaml" "$tmp/mg-n2.yaml" && ok || bad "measure --target gguf of 2 ranks differs from one process's"
# kill -9 rank 1 of a measure once layer 1 is saved; 3 ranks resume it
ms="measure $model --calib $calib --ctx 256 --samples 12 --widths 2,4 -q"
"$QMOE" $ms -o "$tmp/mk-1p.yaml" || bad "the single-process measure of 12 windows failed"
$mpirun -n 2 "$QMOE" $ms -o "$tmp/mk.yaml" 2> "$tmp/kill.err" &
job=$!
wait_for "$tmp/mk.yaml.qmoe-state/errors-00001.f64"
victim=$(rank_pid $job 1)
[ -n "$victim" ] && kill -9 $victim && ok || bad "no rank 1 of measure to kill under mpirun (pid $job)"
wait $job && bad "measure went on after rank 1 was killed" || ok
$mpirun -n 3 "$QMOE" $ms -o "$tmp/mk.yaml" 2> "$tmp/resume.err" && ok || bad "resumed measure failed: $(tail -5 "$tmp/resume.err")"
grep -q "resuming after layer" "$tmp/resume.err" && ok || bad "the measure did not resume: $(head -3 "$tmp/resume.err")"
cmp -s "$tmp/mk-1p.yaml" "$tmp/mk.yaml" && ok || bad "measure killed and resumed on 3 ranks differs from one process's"

# bench (scores, measure, two quantizations, two evaluations) on 2 and 3 ranks: every file is one
# process's but for its timings (quantize_seconds, eval_seconds, quant_log.yaml's seconds)
mkdir "$tmp/pol"
cp "$QM_SRCDIR/stdlib/paper/freq-top-global.qmoe" "$QM_SRCDIR/stdlib/measured/measured-3.0.qmoe" "$tmp/pol/"
bn="bench $model --policies $tmp/pol -I $QM_SRCDIR/stdlib --calib $calib --eval $text --ctx 128 --samples 4
    --eval-tokens 2048 -q"
untimed() { # FILE: without its timings
    case "$1" in
    *.csv) awk -F, -v OFS=, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "quantize_seconds") c = i } { $c = ""; print }' "$1" ;;
    *.md) sed 's/| [0-9.]* |$//' "$1" ;;
    *.yaml) sed 's/\(quantize_seconds\|eval_seconds\|seconds\): [0-9.]*//' "$1" ;;
    *) cat "$1" ;;
    esac
}
"$QMOE" $bn -o "$tmp/b-1p" > "$tmp/b-1p.md" 2> "$tmp/err" || bad "bench on one process failed: $(tail -3 "$tmp/err")"
for n in 2 3; do
    $mpirun -n $n "$QMOE" $bn -o "$tmp/b-n$n" > "$tmp/b-n$n.md" 2> "$tmp/err" && ok ||
        bad "bench on $n ranks failed: $(tail -5 "$tmp/err")"
    untimed "$tmp/b-1p.md" > "$tmp/u.a"; untimed "$tmp/b-n$n.md" > "$tmp/u.b"
    cmp -s "$tmp/u.a" "$tmp/u.b" && ok || bad "bench on $n ranks printed another table: $(diff "$tmp/u.a" "$tmp/u.b")"
    for f in $(cd "$tmp/b-1p" && find . -type f | sort); do
        untimed "$tmp/b-1p/$f" > "$tmp/u.a"; untimed "$tmp/b-n$n/$f" > "$tmp/u.b" 2> /dev/null
        cmp -s "$tmp/u.a" "$tmp/u.b" && ok || bad "bench on $n ranks: $f differs: $(diff "$tmp/u.a" "$tmp/u.b" | head -3)"
    done
done
grep -q "^  quantize_seconds: [0-9.]*$" "$tmp/b-n2/results.yaml" && head -1 "$tmp/b-n2/results.csv" | grep -q ",quantize_seconds," &&
    [ "$(grep -c '| [0-9.]* |$' "$tmp/b-n2/results.md")" -ge 2 ] && ok ||
    bad "the timings the comparison leaves out are not where it expects them"

# kill -9 rank 1 once layer 1 is done; the job ends with an error; 3 ranks resume it
q="quantize --plan $tmp/tiny-deepseek.yaml --model $model --calib $calib --ctx 256 --samples 24"
"$QMOE" $q -q -o "$tmp/k-1p" || bad "the single-process run of 24 windows failed"
$mpirun -n 2 "$QMOE" $q -q -o "$tmp/k" 2> "$tmp/kill.err" &
job=$!
wait_for "$tmp/k/.qmoe-state/layer-00001.log"
victim=$(rank_pid $job 1)
[ -n "$victim" ] && kill -9 "$victim" && ok || bad "no rank 1 to kill under mpirun (pid $job)"
wait $job
rc=$?
[ $rc -ne 0 ] && ok || bad "the job went on after rank 1 was killed"
[ -e "$tmp/k/.qmoe-state/state" ] && ok || bad "no progress state to resume from"
$mpirun -n 3 "$QMOE" $q -o "$tmp/k" 2> "$tmp/resume.err" && ok || bad "resumed run failed: $(tail -5 "$tmp/resume.err")"
grep -q "resuming after layer" "$tmp/resume.err" && ok || bad "the rerun did not resume: $(head -3 "$tmp/resume.err")"
same "$tmp/k-1p" "$tmp/k" "" "killed and resumed on 3 ranks"
ls "$tmp"/k/*.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok

# SIGSTOP rank 1 once layer 1 is done: rank 0 gives up waiting after --mpi-timeout 3 and ends the job
# (Open MPI kills the stopped rank); one plain process resumes it
$mpirun -n 2 "$QMOE" $q -q --mpi-timeout 3 -o "$tmp/s" 2> "$tmp/stop.err" &
job=$!
wait_for "$tmp/s/.qmoe-state/layer-00001.log"
victim=$(rank_pid $job 1)
t0=$(date +%s)
[ -n "$victim" ] && kill -STOP $victim && ok || bad "no rank 1 to stop under mpirun (pid $job)"
wait $job && bad "the job went on with rank 1 stopped" || ok
took=$(($(date +%s) - t0))
[ $took -le 60 ] && ok || bad "the job with a stopped rank ended after $took s, not within 60 s of a 3 s timeout"
kill -0 $victim 2>/dev/null && kill -9 $victim
grep -qE "^qmoe: error: rank [01]: MPI_I[a-z]+ .*timed out after 3 s in layer [0-9]+: .*(--mpi-timeout, QMOE_MPI_TIMEOUT)" \
    "$tmp/stop.err" && ok || bad "no timeout error naming the rank, the call and the layer: $(grep qmoe: "$tmp/stop.err")"
grep -q "rank 0: MPI_Irecv with rank 1 timed out\|rank 0: MPI_Ibcast to the other ranks timed out" "$tmp/stop.err" && ok ||
    bad "rank 0 did not report the stopped rank: $(grep qmoe: "$tmp/stop.err")"
"$QMOE" $q -o "$tmp/s" 2> "$tmp/resume.err" && ok || bad "resuming the stopped run failed: $(tail -5 "$tmp/resume.err")"
grep -q "resuming after layer" "$tmp/resume.err" && ok || bad "the stopped run did not resume: $(head -3 "$tmp/resume.err")"
same "$tmp/k-1p" "$tmp/s" "" "stopped on 2 ranks, resumed on one process"
QMOE_MPI_TIMEOUT=soon $mpirun -n 2 "$QMOE" $q -q -o "$tmp/t" 2> "$tmp/err"
[ $? -ne 0 ] && grep -q "QMOE_MPI_TIMEOUT='soon': give a number of seconds > 0" "$tmp/err" && ok ||
    bad "QMOE_MPI_TIMEOUT=soon: $(grep qmoe: "$tmp/err")"
"$QMOE" $q -q --mpi-timeout 0 -o "$tmp/t" 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "mpi-timeout must be a number of seconds > 0, not '0'" "$tmp/err" && ok || bad "--mpi-timeout 0 was not a usage error"

finish mpi
