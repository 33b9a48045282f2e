/* widths.c: the integer widths a weight can be quantized to.
 *
 * One list for every stage: the policy language accepts these as `Nbit`,
 * the compiler keeps `+1bit`/`-1bit` inside them, the plan reader refuses
 * anything else, and the writers count tensors by them.  A new width (or an
 * engine's narrower set) is a change here and nowhere else.  5 bits is
 * for GGUF (ggml's Q5_0/Q5_1 blocks hold rows of any multiple of 32, where
 * the k-quants need 256); GPTQ checkpoints pack it as a bit stream that
 * qmoe reads but no GPTQ engine loads (their engine tables say so).
 */
#include "config.h"

#include <stdio.h>

#include "base/base.h"

const int qm_widths[QM_WIDTH_COUNT] = {2, 3, 4, 5, 8};

_Static_assert(QM_MAX_WIDTH == 8, "qm_widths[] ends at QM_MAX_WIDTH");

int qm_is_width(long long bits)
{
    for (int i = 0; i < QM_WIDTH_COUNT; i++)
        if (qm_widths[i] == bits)
            return 1;
    return 0;
}

const char *qm_widths_text(char *buf, size_t size, const char *suffix, const char *sep, const char *last)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < QM_WIDTH_COUNT && n < size; i++) {
        const char *between = i == 0 ? "" : i == QM_WIDTH_COUNT - 1 ? last : sep;
        int k = snprintf(buf + n, size - n, "%s%d%s", between, qm_widths[i], suffix);
        if (k < 0)
            break;
        n += (size_t)k;
    }
    return buf;
}

uint64_t qm_gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}
