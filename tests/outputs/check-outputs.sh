# check-outputs.sh: sourced by the end-to-end tests (quantize.sh, bench.sh),
# which define ok, bad and $tmp: every file they made, read back by standard
# parsers and held to its documented keys (tests/outputs/check_outputs.c,
# issue #22).  A new output file is covered by adding its name to kind_of.
: "${QM_BUILDDIR:?}"
checker="$QM_BUILDDIR/tests/outputs/check_outputs"

# check_outputs KIND FILE [KIND FILE]...
check_outputs() {
    if "$checker" "$@" 2> "$tmp/check.err"; then ok; else bad "outputs: $(cat "$tmp/check.err")"; fi
}

# The checker's kind for a file qmoe writes, by its name; "-" for files
# that are not structured data or not qmoe's interface.
kind_of() {
    case "$1" in
    */.qmoe-state/*|*.md|*.svg|*/scores.key|*/measure.key|*/key) echo - ;;
    */plan.yaml) echo plan ;;
    */scores.yaml) echo scores ;;
    */measure.yaml) echo measure ;;
    */quant_log.yaml) echo quant_log ;;
    */runs/*/result.yaml|*/base.yaml) echo bench_run ;;
    */results.yaml) echo bench_results ;;
    */results.csv) echo results_csv ;;
    */quantize_config.json) echo quantize_config ;;
    */fake-quant/config.json) echo hf_config ;;
    */config.json) echo gptq_config ;;
    */model.safetensors.index.json) echo st_index ;;
    *.safetensors) echo safetensors ;;
    *) echo unknown ;;
    esac
}

# check_tree DIR...: every file under each output directory; a file no
# kind covers fails, so that no output goes unchecked
check_tree() {
    find "$@" -type f > "$tmp/check.list"
    dirs="$*"
    set --
    while IFS= read -r f; do
        k=$(kind_of "$f")
        case "$k" in
        -) ;;
        unknown) bad "outputs: $f: no kind in tests/outputs/check-outputs.sh covers it" ;;
        *) set -- "$@" "$k" "$f" ;;
        esac
    done < "$tmp/check.list"
    if [ $# -gt 0 ]; then check_outputs "$@"; else bad "outputs: nothing to check in $dirs"; fi
}
