# 10-files.sh: issue #13 items 1, 4, 8 and 11: no output touches an input,
# an output directory is locked while written, files honour the umask, no
# leftovers, no file content in errors about files that are not what they
# should be.  Sourced by tests/hostile.sh.
F="$tmp/files"
mkdir -p "$F"
cp -r "$model" "$F/m"
cp "$calib" "$F/calib.txt"
(cd "$F/m" && sha256sum config.json model.safetensors > "$F/m.sum")
fq="--ctx 64 --samples 2"
pol="$QM_SRCDIR/stdlib/paper/uniform-4bit.qmoe"
"$QMOE" compile "$pol" --model "$F/m" -o "$F/plan.yaml" 2>/dev/null || bad "compile of the files plan"
untouched() { (cd "$F/m" && sha256sum -c --quiet "$F/m.sum" >/dev/null 2>&1) && ok || bad "the model was changed: $1"; }

# 1: an output that is an input, inside one, or holding one is refused,
# naming both; by identity, not spelling (links, ../)
expect 1 "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/m"
has "$err" "is the input directory '$F/m' (the model directory)"
[ ! -e "$F/m/quantize_config.json" ] && ok || bad "quantize wrote into its model"
untouched "quantize -o MODEL"
expect 1 "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/m/../m/q"
has "$err" "is inside the input directory"
expect 1 "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F"
has "$err" "holds the input"
expect 1 "$QMOE" score "$F/m" --calib "$F/calib.txt" --ctx 64 --max-tokens 256 -o "$F/m/model.safetensors"
has "$err" "'$F/m/model.safetensors' is the input '$F/m/model.safetensors'"
expect 1 "$QMOE" score "$F/m" --calib "$F/calib.txt" --ctx 64 --max-tokens 256 -o "$F/calib.txt"
has "$err" "(the calibration text)"
ln -sf m/config.json "$F/cfg-link"
expect 1 "$QMOE" compile "$pol" --model "$F/m" -o "$F/cfg-link"
has "$err" "-o '$F/cfg-link' is the input '$F/m/config.json' (the model's config)"
cp "$pol" "$F/p.qmoe"
expect 1 "$QMOE" compile "$F/p.qmoe" --model "$F/m" -o "$F/p.qmoe"
has "$err" "(the policy)"
printf 'default: 4bit;\n' > "$F/lib.qmoe"; printf 'import "./lib";\nexperts: 2bit;\n' > "$F/imp.qmoe"
cp "$F/lib.qmoe" "$F/lib.keep"
expect 1 "$QMOE" compile "$F/imp.qmoe" --model "$F/m" -o "$F/lib.qmoe"
has "$err" "-o '$F/lib.qmoe' is the input '$F/lib.qmoe' (a file the policy imports)"
cmp -s "$F/lib.qmoe" "$F/lib.keep" && ok || bad "compile -o an import replaced it"
untouched "score/compile -o an input"
expect 1 "$QMOE" bench "$F/m" --policies "$F/p.qmoe" --calib "$F/calib.txt" --eval "$F/calib.txt" $fq -o "$F/m/bench"
has "$err" "is inside the input directory '$F/m'"
[ ! -e "$F/m/bench" ] && ok || bad "bench made its directory inside the model"

# 4: a second quantize into a directory in use fails at once naming the
# holder; a lock left by a killed run does not block
mkdir -p "$F/held"
flock "$F/held/.qmoe-lock" sh -c "echo \$\$ > '$F/held/.qmoe-lock'; sleep 20" &
lk=$!
i=0; while [ ! -s "$F/held/.qmoe-lock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
holder=$(cat "$F/held/.qmoe-lock")
expect 1 "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/held"
has "$err" "is in use by process $holder"
[ ! -e "$F/held/config.json" ] && ok || bad "quantize wrote into a locked directory"
expect 1 "$QMOE" bench "$F/m" --policies "$F/p.qmoe" --calib "$F/calib.txt" --eval "$F/calib.txt" $fq -o "$F/held"
has "$err" "is in use by process $holder"
kill "$lk" 2>/dev/null; wait "$lk" 2>/dev/null
mkdir -p "$F/stale"; echo 999999 > "$F/stale/.qmoe-lock"

# 8, 11b: files follow the umask; .qmoe-state goes once the run is done, and
# the same command again writes the same bytes
(umask 027 && "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/stale") \
    2> "$tmp/err" && ok || bad "quantize over a stale lock: $(cat "$tmp/err")"
m=$(stat -c %a "$F/stale/config.json" 2>/dev/null)
[ "$m" = 640 ] && ok || bad "config.json mode $m under umask 027, expected 640"
m=$(stat -c %a "$F/stale/model-00002-of-00007.safetensors" 2>/dev/null)
[ "$m" = 640 ] && ok || bad "shard mode $m under umask 027, expected 640"
(umask 022 && "$QMOE" compile "$pol" --model "$F/m" -o "$F/p022.yaml") || bad "compile under umask 022"
m=$(stat -c %a "$F/p022.yaml" 2>/dev/null)
[ "$m" = 644 ] && ok || bad "plan mode $m under umask 022, expected 644"
[ ! -e "$F/stale/.qmoe-state" ] && ok || bad ".qmoe-state left after a finished quantize"
[ ! -e "$F/stale/.qmoe-lock" ] && ok || bad ".qmoe-lock left after a finished quantize"
# (quant_log.yaml records seconds: not compared)
sha256sum "$F"/stale/*.safetensors "$F"/stale/*.json "$F/stale/plan.yaml" > "$F/stale.sum"
expect 0 "$QMOE" quantize -q --plan "$F/plan.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/stale"
sha256sum -c --quiet "$F/stale.sum" >/dev/null 2>&1 && ok || bad "a rerun over a finished directory changed its bytes"
"$QMOE" compile "$QM_SRCDIR/stdlib/paper/uniform-2bit.qmoe" --model "$F/m" -o "$F/plan2.yaml" 2>/dev/null
expect 1 "$QMOE" quantize -q --plan "$F/plan2.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/stale"
has "$err" "holds a run of another plan"

# 11a: a killed writer's temporary is removed by the next write of the same
# target; a live writer's (locked) one and other names are left alone
printf 'torso' > "$F/out.yaml.tmp.Ab12Cd"
printf 'live' > "$F/out.yaml.tmp.Li9eXy"
printf 'mine' > "$F/out.yaml.tmp.keep"
touch -d '1 hour ago' "$F/out.yaml.tmp.Ab12Cd" "$F/out.yaml.tmp.Li9eXy" "$F/out.yaml.tmp.keep"
flock "$F/out.yaml.tmp.Li9eXy" sleep 20 &
lk=$!
i=0; while flock -n "$F/out.yaml.tmp.Li9eXy" true 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
expect 0 "$QMOE" compile "$pol" --model "$F/m" -o "$F/out.yaml"
[ ! -e "$F/out.yaml.tmp.Ab12Cd" ] && ok || bad "a dead writer's temporary was left"
[ -e "$F/out.yaml.tmp.Li9eXy" ] && ok || bad "a live writer's temporary was removed"
[ -e "$F/out.yaml.tmp.keep" ] && ok || bad "a file not named like a temporary was removed"
kill "$lk" 2>/dev/null; wait "$lk" 2>/dev/null

# 11c: no content of a file that is not what it should be in an error
printf 'SECRET-LINE one two\n' > "$F/secret.txt"
ln -sf secret.txt "$F/sec.qmoe"
printf 'import "./sec";\nexperts: 4bit;\n' > "$F/imp-link.qmoe"
expect 1 "$QMOE" check "$F/imp-link.qmoe"
has "$err" "which is not a policy file"
lacks "$err" "SECRET"
{ printf 'SECRET-BIN'; printf '\000\001\002'; } > "$F/bin.qmoe"
printf 'import "./bin";\nexperts: 4bit;\n' > "$F/imp-bin.qmoe"
expect 1 "$QMOE" check "$F/imp-bin.qmoe"
has "$err" "not a policy: a binary file"
lacks "$err" "SECRET"
cp -r "$F/m" "$F/mc" && rm "$F/mc/config.json" && ln -s ../secret.txt "$F/mc/config.json"
expect 1 "$QMOE" inspect "$F/mc"
has "$err" "invalid JSON"
lacks "$err" "SECRET"

# 11d: a NUL in an import string is an error, not a shorter name
printf 'import "./s\000ec";\nexperts: 4bit;\n' > "$F/imp-nul.qmoe"
expect 1 "$QMOE" check "$F/imp-nul.qmoe"
has "$err" "NUL byte"
lacks "$err" "cannot find"

# 11e: the plan reader refuses duplicate keys and quoted numbers
sed '0,/bits: 4,/s//bits: "4",/' "$F/plan.yaml" > "$F/plan-quoted.yaml"
cmp -s "$F/plan.yaml" "$F/plan-quoted.yaml" && bad "no bits: line to quote in the plan" || ok
expect 1 "$QMOE" quantize -q --plan "$F/plan-quoted.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/qq"
lacks "$err" "tensors quantized"
[ ! -e "$F/qq/config.json" ] && ok || bad "a plan with a quoted number was executed"
sed '0,/bits: 4,/s//bits: 4, bits: 2,/' "$F/plan.yaml" > "$F/plan-dup.yaml"
expect 1 "$QMOE" quantize -q --plan "$F/plan-dup.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/qd"
has "$err" "bits"
[ ! -e "$F/qd/config.json" ] && ok || bad "a plan with a duplicate key was executed"
# the plan reader refuses a tensor listed twice (it would be quantized twice)
dupline=$(grep -n -m1 '^- {name: .*bits: 4,' "$F/plan.yaml")
n=$(head -n "${dupline%%:*}" "$F/plan.yaml" | grep -c '^- {name:')
name=$(echo "$dupline" | sed 's/^[0-9]*:- {name: \([^,]*\),.*/\1/')
sed "${dupline%%:*}p" "$F/plan.yaml" > "$F/plan-twice.yaml"
expect 1 "$QMOE" quantize -q --plan "$F/plan-twice.yaml" --model "$F/m" --calib "$F/calib.txt" $fq -o "$F/qt"
has "$err" "plan-twice.yaml:$((${dupline%%:*} + 1)):3: tensors[$n] repeats the name '$name' of tensors[$((n - 1))]"
[ ! -e "$F/qt" ] && ok || bad "a plan listing a tensor twice was executed"
# 1: the shard index is an input too, where it links to a file elsewhere
cp -r "$F/stale" "$F/sh" && mv "$F/sh/model.safetensors.index.json" "$F/index-elsewhere.json"
ln -s ../index-elsewhere.json "$F/sh/model.safetensors.index.json"
expect 1 "$QMOE" compile "$pol" --model "$F/sh" -o "$F/index-elsewhere.json"
has "$err" "-o '$F/index-elsewhere.json' is the input '$F/sh/model.safetensors.index.json' (the model's shard index)"
untouched "the whole fragment"
