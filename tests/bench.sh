#!/bin/sh
# bench.sh: `qmoe bench` end to end on tiny-mixtral with three policies at
# fast settings: the four summary files and what they hold, the KLD order
# of the three widths, reuse of finished runs, rerunning only a changed
# policy, resuming after kill -9 to the same figures, and refusals.
. "${QM_SRCDIR:?}/tests/lib.sh"
has() { case "$1" in *"$2"*) ok ;; *) bad "expected '$2' in: $1" ;; esac; }
model="$QM_SRCDIR/examples/models/tiny-mixtral"
data="$QM_SRCDIR/examples/data"
mkdir "$tmp/pol"
cp "$QM_SRCDIR/stdlib/paper/uniform-2bit.qmoe" "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" \
   "$QM_SRCDIR/stdlib/paper/attn-8bit.qmoe" "$tmp/pol/"
cat > "$tmp/tasks.jsonl" <<'JSONL'
{"task": "cloze", "context": "The city is the capital of the", "choices": [" country", " xqzv"], "gold": 0}
{"task": "cloze", "context": "He was born in", "choices": [" 1950", " zzzz"], "gold": 0}
JSONL
# (BENCH_EXEC=1: the shell running it becomes qmoe, so that a bench started
# with & is the process $! names)
bench() {
    ${BENCH_EXEC:+exec} "$QMOE" bench "$model" --policies "$tmp/pol" --calib "$data/wikitext2-valid.txt" \
        --eval "$data/wikitext2-test.txt" --tasks "$tmp/tasks.jsonl" --ctx 128 --samples 4 \
        --eval-tokens 4096 "$@"
}
# the CSV less its quantize_seconds column: the figures a rerun must repeat
figures() { cut -d, -f1-12 "$1"; }

bench -o "$tmp/b" > "$tmp/out.md" 2> "$tmp/err" && ok || bad "bench failed: $(cat "$tmp/err")"
for f in results.yaml results.csv results.md kld_vs_bits.svg scores.yaml \
         runs/uniform-2bit/plan.yaml runs/uniform-2bit/result.yaml runs/attn-8bit/model/config.json; do
    [ -s "$tmp/b/$f" ] && ok || bad "$f missing"
done
ls "$tmp"/b/*.tmp.* "$tmp"/b/runs/*/*.tmp.* >/dev/null 2>&1 && bad "temporary files left behind" || ok
cmp -s "$tmp/out.md" "$tmp/b/results.md" && ok || bad "the printed table differs from results.md"

csv=$(cat "$tmp/b/results.csv")
has "$csv" "policy,average_bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,kld_p99,top1_agree,cloze,quantize_seconds,pareto"
[ "$(wc -l < "$tmp/b/results.csv")" -eq 4 ] && ok || bad "results.csv should hold a header and 3 rows"
# sorted by bits; attention at 8 bits over 2-bit experts lands between
order=$(sed 1d "$tmp/b/results.csv" | cut -d, -f1 | tr '\n' ' ')
[ "$order" = "uniform-2bit attn-8bit uniform-4bit " ] && ok || bad "row order: $order"
k2=$(awk -F, '$1 == "uniform-2bit" {print $7}' "$tmp/b/results.csv")
ka=$(awk -F, '$1 == "attn-8bit" {print $7}' "$tmp/b/results.csv")
k4=$(awk -F, '$1 == "uniform-4bit" {print $7}' "$tmp/b/results.csv")
echo "KL divergence: 2-bit $k2, attn-8bit $ka, 4-bit $k4"
awk -v a="$k2" -v b="$ka" -v c="$k4" 'BEGIN { exit !(a > b && b > c && c > 0) }' && ok || bad "KLD not ordered"
# every row here lowers KLD as bits rise, so all three are on the front
[ "$(cut -d, -f14 "$tmp/b/results.csv" | sed 1d | tr -d '\n')" = "111" ] && ok || bad "Pareto column"

y=$(cat "$tmp/b/results.yaml")
has "$y" "qmoe_bench: 1"
has "$y" "architecture: MixtralForCausalLM"
has "$y" "eval_tokens: 4096"
has "$y" "- policy: uniform-2bit"
has "$y" "average_bits: 2.0000"
has "$y" "kld_mean:"
has "$y" "cloze: {acc:"
md=$(cat "$tmp/b/results.md")
has "$md" "| policy | avg bits | eff. bits | size | PPL | PPL ratio | KLD mean ± se | top-1 % | cloze acc | quantize s |"
has "$md" "| (unquantized) | 16 | 16 |"
svg=$(cat "$tmp/b/kld_vs_bits.svg")
has "$svg" "<svg xmlns=\"http://www.w3.org/2000/svg\""
has "$svg" "<title>uniform-4bit: 4.000 bits"
[ "$(grep -c '<circle' "$tmp/b/kld_vs_bits.svg")" -eq 5 ] && ok || bad "3 points and 2 legend marks expected"
tail -n 1 "$tmp/b/kld_vs_bits.svg" | grep -q '^</svg>$' && ok || bad "svg not closed"

# a second bench reuses every run and prints the same table
bench -o "$tmp/b" > "$tmp/out2.md" 2> "$tmp/err" && ok || bad "second bench failed: $(cat "$tmp/err")"
has "$(cat "$tmp/err")" "3 policies (3 reused from an earlier bench)"
cmp -s "$tmp/out.md" "$tmp/out2.md" && ok || bad "a reused bench printed another table"
# ... and so does one of the same policies in another directory, run from
# another working directory: plans hold names and hashes, not paths (#18)
mkdir "$tmp/elsewhere" && cp "$tmp/pol/"*.qmoe "$tmp/elsewhere/"
(cd "$tmp/elsewhere" && "$QMOE" bench "$model" --policies . --calib "$data/wikitext2-valid.txt" \
    --eval "$data/wikitext2-test.txt" --tasks "$tmp/tasks.jsonl" --ctx 128 --samples 4 --eval-tokens 4096 \
    -o "$tmp/b" > "$tmp/out3.md" 2> "$tmp/err") && ok || bad "bench from elsewhere failed: $(cat "$tmp/err")"
has "$(cat "$tmp/err")" "3 policies (3 reused from an earlier bench)"

# changing one policy reruns that one alone
printf 'default: 2bit\nattn: 8bit\nexperts[0]: 4bit\n' > "$tmp/pol/attn-8bit.qmoe"
bench -o "$tmp/b" > /dev/null 2> "$tmp/err" && ok || bad "bench after an edit failed"
has "$(cat "$tmp/err")" "3 policies (2 reused from an earlier bench)"
has "$(cat "$tmp/err")" "[1/3] attn-8bit: 2.588 bits: quantizing"
cp "$QM_SRCDIR/stdlib/paper/attn-8bit.qmoe" "$tmp/pol/"

# kill -9 in the middle of a bench, run it again: the same figures as a
# bench that was never interrupted
# kill -9 must reach qmoe itself, not the subshell of the function: a
# bench left running would hold the directory's lock
BENCH_EXEC=1 bench -o "$tmp/k" -q > /dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$tmp/k/runs/uniform-2bit/model/.qmoe-state/layer-00002.log" ] && [ $i -lt 1200 ]; do
    sleep 0.05; i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ ! -e "$tmp/k/runs/uniform-2bit/result.yaml" ] && ok || bad "the kill came too late to test a resume"
bench -o "$tmp/k" > /dev/null 2> "$tmp/err" && ok || bad "resumed bench failed: $(cat "$tmp/err")"
has "$(cat "$tmp/err")" "resuming after layer"
bench -o "$tmp/b" -q > /dev/null 2>&1
figures "$tmp/b/results.csv" > "$tmp/fb"; figures "$tmp/k/results.csv" > "$tmp/fk"
cmp -s "$tmp/fb" "$tmp/fk" && ok || bad "resumed figures differ: $(diff "$tmp/fb" "$tmp/fk")"

# refusals: usage errors exit 2, bad policies fail before any quantization
"$QMOE" bench "$model" --policies "$tmp/pol" -o "$tmp/x" 2> "$tmp/err"; [ $? -eq 2 ] && ok || bad "missing --calib"
has "$(cat "$tmp/err")" "--policies, --calib and --eval are required"
mkdir "$tmp/badpol"
printf 'default: 2bit\nattn: 6bit\n' > "$tmp/badpol/typo.qmoe"
cp "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" "$tmp/badpol/"
"$QMOE" bench "$model" --policies "$tmp/badpol" --calib "$data/wikitext2-valid.txt" --eval "$data/wikitext2-test.txt" \
    --ctx 128 --samples 2 --eval-tokens 1024 -o "$tmp/y" 2> "$tmp/err"
[ $? -eq 1 ] && ok || bad "a bad policy was accepted"
has "$(cat "$tmp/err")" "typo.qmoe:2:7: error:"
[ ! -d "$tmp/y/runs/uniform-4bit" ] && ok || bad "a run started before every policy compiled"
# two policies with one name would share runs/NAME: refused before any work
mkdir "$tmp/twin"
cp "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" "$tmp/twin/"
"$QMOE" bench "$model" --policies "$tmp/pol" "$tmp/twin/uniform-4bit.qmoe" --calib "$data/wikitext2-valid.txt" \
    --eval "$data/wikitext2-test.txt" -o "$tmp/w" 2> "$tmp/err"
[ $? -eq 1 ] && ok || bad "two policies named alike were accepted"
has "$(cat "$tmp/err")" "are both named 'uniform-4bit': results would collide"
[ ! -e "$tmp/w" ] && ok || bad "a refused bench left an output directory"
mkdir "$tmp/empty"
"$QMOE" bench "$model" --policies "$tmp/empty" --calib "$data/wikitext2-valid.txt" --eval "$data/wikitext2-test.txt" \
    -o "$tmp/z" 2> "$tmp/err"
[ $? -eq 1 ] && ok || bad "an empty policy directory was accepted"
has "$(cat "$tmp/err")" "no *.qmoe policies in this directory"
[ ! -e "$tmp/z" ] && ok || bad "a failed bench left an output directory"
"$QMOE" bench "$model" --policies "$tmp/pol" --calib "$data/wikitext2-valid.txt" --eval "$tmp/nope.txt" \
    -o "$tmp/z" 2> "$tmp/err"
[ $? -eq 1 ] && ok || bad "a missing --eval file was accepted"
has "$(cat "$tmp/err")" "qmoe: error: $tmp/nope.txt: No such file or directory"
[ ! -e "$tmp/z" ] && ok || bad "a failed bench left an output directory"
printf 'qmoe_bench_run: 1\npolicy: [oops\n' > "$tmp/b/runs/uniform-4bit/result.yaml"
bench -o "$tmp/b" > /dev/null 2> "$tmp/err"; [ $? -eq 1 ] && ok || bad "a damaged result.yaml was accepted"
has "$(cat "$tmp/err")" "runs/uniform-4bit/result.yaml:"

# every file the resumed bench wrote, through standard parsers against the
# documented keys; then a policy and a task whose names hold YAML and CSV
# specials come back exactly from each file that names them (issue #22)
. "$QM_SRCDIR/tests/outputs/check-outputs.sh"
check_tree "$tmp/k"
mkdir "$tmp/odd"
name='a,b: [c]'
cp "$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe" "$tmp/odd/$name.qmoe"
task='cloze, "x": #y'
sed 's/"task": "cloze"/"task": "cloze, \\"x\\": #y"/' "$tmp/tasks.jsonl" > "$tmp/odd/tasks.jsonl"
"$QMOE" bench "$model" --policies "$tmp/odd" --calib "$data/wikitext2-valid.txt" --eval "$data/wikitext2-test.txt" \
    --tasks "$tmp/odd/tasks.jsonl" --ctx 64 --samples 2 --eval-tokens 512 -q -o "$tmp/o" > /dev/null 2> "$tmp/err" \
    && ok || bad "bench of '$name' failed: $(cat "$tmp/err")"
check_tree "$tmp/o"
got() { "$checker" --get "$@" 2>&1; }
[ "$(got bench_results "$tmp/o/results.yaml" 'results[].policy')" = "$name" ] && ok || bad "results.yaml policy"
[ "$(got results_csv "$tmp/o/results.csv" '[].policy')" = "$name" ] && ok || bad "results.csv policy"
[ "$(got bench_run "$tmp/o/runs/$name/result.yaml" policy)" = "$name" ] && ok || bad "result.yaml policy"
[ "$(got bench_results "$tmp/o/results.yaml" 'results[].path')" = "$tmp/odd/$name.qmoe" ] && ok || bad "path"
[ "$(got plan "$tmp/o/runs/$name/plan.yaml" 'policy.path')" = "$name.qmoe" ] && ok || bad "plan path (the policy's file name)"
[ -n "$(got results_csv "$tmp/o/results.csv" "[].$task")" ] && ok || bad "results.csv lacks the column '$task'"
[ -n "$(got bench_run "$tmp/o/runs/$name/result.yaml" "tasks.$task.acc")" ] && ok || bad "result.yaml task"

finish bench
