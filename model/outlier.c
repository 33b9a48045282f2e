/* outlier.c: the data-free outlier score of a weight (model.h).
 *
 * It needs the weights and nothing run through them, so it sits with the
 * model: `qmoe score` records it for every linear, and the compiler
 * computes it itself for policies that rank by outlier without a scores
 * file.
 */
#include "config.h"

#include <math.h>

#include "model/model.h"

double qm_outlier_score(const float *w, int out, int in)
{
    double best = 0;
    for (int j = 0; j < in; j++) {
        double mx = 0, sum = 0;
        for (int i = 0; i < out; i++) {
            double a = fabs(w[(size_t)i * in + j]);
            sum += a;
            mx = a > mx ? a : mx;
        }
        if (sum > 0 && mx / (sum / out) > best)
            best = mx / (sum / out);
    }
    return best;
}
