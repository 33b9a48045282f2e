#!/bin/sh
# tests/compiler/synth-scores.sh FIRST LAYERS EXPERTS: a scores file (every
# scorer) for a header-only model whose MoE layers are FIRST..LAYERS-1 with
# EXPERTS routed experts each, so that data-driven recipes compile on real
# configurations without running them.  The values come from a Park-Miller
# generator, exact in awk's doubles: the same file on every machine.
awk -v first="$1" -v layers="$2" -v experts="$3" 'function r() { s = (s * 16807) % 2147483647; return s / 2147483647 }
BEGIN {
    s = 12345; print "qmoe_scores: 1"; print "frequency:"
    for (l = first; l < layers; l++) {
        line = "  " l ": ["
        for (e = 0; e < experts; e++) line = line (e ? ", " : "") int(1 + 99 * r())
        print line "]"
    }
    print "importance:"
    for (l = first; l < layers; l++) printf "  %d: {ffn: %.4f, residual: %.4f}\n", l, r(), r()
    print "outlier:"
    for (l = first; l < layers; l++)
        for (e = 0; e < experts; e++) {
            printf "  layers[%d].experts[%d].gate: %.4f\n", l, e, 10 * r()
            printf "  layers[%d].experts[%d].up: %.4f\n", l, e, 10 * r()
            printf "  layers[%d].experts[%d].down: %.4f\n", l, e, 10 * r()
        }
}'
