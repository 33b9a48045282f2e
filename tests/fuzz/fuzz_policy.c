/* fuzz_policy.c: fuzz target for the policy front end (libFuzzer entry point).
 *
 * Any bytes: parsing must not crash, leak or report more than the error
 * limit; a policy that parses must format, and its formatted text must
 * parse cleanly and format to itself.  `make check` replays the committed
 * corpus (tests/fuzz/corpus/policy) and the golden cases through it with
 * tests/fuzz/replay.c.  To fuzz, from a configured build tree with the
 * generated lang/parser.c and lang/lexer.c:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *       -I. -I$SRC -DQM_DATADIR='"/nonexistent"' -o fuzz_policy \
 *       $SRC/tests/fuzz/fuzz_policy.c $SRC/lang/{ast,diag,check,import,fmt}.c \
 *       lang/parser.c lang/lexer.c $SRC/base/{diag,arena,buf,widths,family,sys}.c -lpthread
 *   ./fuzz_policy -max_total_time=300 corpus/ $SRC/tests/fuzz/corpus/policy
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qm_diag *d = qm_diag_new();
    if (!d)
        return 0;
    qm_policy *p = NULL, *q = NULL;
    char *a = NULL, *b = NULL;
    size_t alen = 0;
    qm_status st = qm_policy_parse("fuzz.qmoe", (const char *)data, size, &p, d);
    if (qm_diag_errors(d) > QM_POLICY_MAX_ERRORS)
        abort(); /* the error limit holds */
    if (st == QM_OK) {
        if (qm_diag_errors(d) != 0)
            abort(); /* success means no errors */
        if (qm_policy_format(p, &a, &alen) == QM_OK) {
            if (qm_policy_parse("fuzz.fmt", a, alen, &q, d) != QM_OK)
                abort(); /* formatted text must parse */
            if (qm_policy_format(q, &b, NULL) == QM_OK && strcmp(a, b) != 0)
                abort(); /* and format to itself */
        }
    } else if (p || qm_diag_errors(d) == 0) {
        abort(); /* a failure leaves no policy and says why */
    }
    free(a);
    free(b);
    qm_policy_free(p);
    qm_policy_free(q);
    qm_diag_free(d);
    return 0;
}
