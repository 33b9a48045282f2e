/* eval.c: perplexity, KL divergence and multiple-choice accuracy.
 *
 * Log-probabilities are taken in double precision from float logits, so the
 * printed figures do not depend on summation order beyond the forward pass.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tasks.h"
#include "model/tokenizer.h"
#include "runtime/eval.h"
#include "runtime/xfer.h"

/* log-sum-exp of n logits */
static double lse(const float *x, int n)
{
    float mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Windows of ctx inputs; the last may be shorter.  Window w starts at w*ctx. */
static size_t n_windows(size_t n, int ctx) { return n < 2 ? 0 : (n - 1 + (size_t)ctx - 1) / (size_t)ctx; }

/* Logits y (n, V) -> log-probabilities lp (n, V), in float as stored. */
static void log_softmax(const float *y, int n, int V, float *lp)
{
    for (int i = 0; i < n; i++) {
        double lz = lse(y + (size_t)i * V, V);
        for (int v = 0; v < V; v++)
            lp[(size_t)i * V + v] = (float)(y[(size_t)i * V + v] - lz);
    }
}

/* Running sums over the scored positions. */
typedef struct tally {
    double nll, nll_base;
    size_t agree, done;
    double *kld; /* (total) per-position KL(base || model); NULL without a base */
    /* a distributed run: each position's terms of the sums, for rank 0 to
     * add in position order; NULL on one process */
    double *v_nll, *v_nllb;  /* (total) */
    unsigned char *v_agree;  /* (total) */
} tally;

/* Score n positions: model logits x (n, V), base log-probabilities lp
 * (n, V) or NULL, the next tokens `next` (n).  Fails naming the first
 * position whose loss or KL divergence is not finite. */
static qm_status score(tally *t, const float *x, const float *lp, const int *next, int n, int V, qm_diag *d)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * V;
        double lz = lse(xi, V);
        t->nll += lz - xi[next[i]];
        if (t->v_nll)
            t->v_nll[t->done + (size_t)i] = lz - xi[next[i]];
        if (!lp)
            continue;
        const float *pi = lp + (size_t)i * V;
        double k = 0;
        t->nll_base -= pi[next[i]];
        if (t->v_nll) {
            t->v_nllb[t->done + (size_t)i] = pi[next[i]];
            t->v_agree[t->done + (size_t)i] = argmax(xi, V) == argmax(pi, V);
        }
        for (int v = 0; v < V; v++) {
            double lq = xi[v] - lz;
            k += exp((double)pi[v]) * ((double)pi[v] - lq);
        }
        t->kld[t->done + (size_t)i] = k > 0 ? k : 0; /* rounding can leave -1e-17 */
        t->agree += argmax(xi, V) == argmax(pi, V);
        if (!isfinite(k) || !isfinite(t->nll_base))
            return qm_diag_fail(d, QM_EINVAL, "position %zu: the KL divergence (%g) or the base model's loss "
                                "is not finite", t->done + (size_t)i, k);
    }
    for (int i = 0; i < n && !isfinite(t->nll); i++) /* rare: find where */
        if (!isfinite(lse(x + (size_t)i * V, V) - x[(size_t)i * V + next[i]]))
            return qm_diag_fail(d, QM_EINVAL, "position %zu: the model's loss is not finite", t->done + (size_t)i);
    if (!isfinite(t->nll))
        return qm_diag_fail(d, QM_EINVAL, "the model's summed loss overflowed after %zu positions", t->done + (size_t)n);
    t->done += (size_t)n;
    return QM_OK;
}

/* The metrics from the sums; fails when one is not finite (a perplexity
 * past the float range, say), which no table may show as a number. */
static qm_status finish(tally *t, int has_base, qm_eval_result *r, qm_diag *d)
{
    size_t done = t->done;
    r->tokens = done;
    r->nll = t->nll / done;
    r->ppl = exp(r->nll);
    if (!has_base)
        return isfinite(r->ppl) ? QM_OK
                                : qm_diag_fail(d, QM_EINVAL, "perplexity %g (mean loss %g) is not finite", r->ppl, r->nll);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < done; i++) {
        sum += t->kld[i];
        sq += t->kld[i] * t->kld[i];
    }
    r->has_base = 1;
    r->base_ppl = exp(t->nll_base / done);
    r->kld_mean = sum / done;
    double var = done > 1 ? (sq - sum * sum / done) / (done - 1) : 0;
    r->kld_se = sqrt(var > 0 ? var / done : 0);
    qsort(t->kld, done, sizeof *t->kld, cmp_double);
    r->kld_median = done % 2 ? t->kld[done / 2] : 0.5 * (t->kld[done / 2 - 1] + t->kld[done / 2]);
    r->kld_p99 = t->kld[(size_t)floor(0.99 * (double)(done - 1))];
    r->top1_agree = 100.0 * t->agree / done;
    r->ppl_ratio = r->ppl / r->base_ppl;
    double m[] = {r->ppl, r->base_ppl, r->kld_mean, r->kld_se, r->kld_p99, r->ppl_ratio};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        if (!isfinite(m[i]))
            return qm_diag_fail(d, QM_EINVAL, "a metric is not finite (perplexity %g, base %g, KL divergence %g); "
                                "the model overflows", r->ppl, r->base_ppl, r->kld_mean);
    return QM_OK;
}

/* A rank's positions [p0, t->done) of a distributed walk, as they travel:
 * p0, the count, then each position's terms (nll; with a base also its
 * term of the base's loss, KL divergence and agreement). */
static qm_status share_put(const tally *t, size_t p0, int has_base, void **buf, size_t *n, qm_diag *d)
{
    qm_xfer x = {0};
    size_t k = t->done - p0;
    qm_xfer_put(&x, &p0, sizeof p0);
    qm_xfer_put(&x, &k, sizeof k);
    qm_xfer_put(&x, t->v_nll + p0, k * sizeof *t->v_nll);
    if (has_base) {
        qm_xfer_put(&x, t->v_nllb + p0, k * sizeof *t->v_nllb);
        qm_xfer_put(&x, t->kld + p0, k * sizeof *t->kld);
        qm_xfer_put(&x, t->v_agree + p0, k);
    }
    return qm_xfer_done(&x, buf, n, d);
}

/* Rank 0: another rank's positions into the per-position arrays. */
static int share_take(tally *t, size_t total, int has_base, void *buf, size_t n)
{
    qm_xfer x = {.b = buf, .n = n};
    size_t p0 = 0, k = 0;
    if (!qm_xfer_get(&x, &p0, sizeof p0) || !qm_xfer_get(&x, &k, sizeof k) || p0 > total || k > total - p0)
        return 0;
    qm_xfer_get(&x, t->v_nll + p0, k * sizeof *t->v_nll);
    if (has_base) {
        qm_xfer_get(&x, t->v_nllb + p0, k * sizeof *t->v_nllb);
        qm_xfer_get(&x, t->kld + p0, k * sizeof *t->kld);
        qm_xfer_get(&x, t->v_agree + p0, k);
    }
    return !x.bad && x.at == x.n;
}

/* Rank 0 of a distributed walk: every rank's positions, then the sums in
 * position order (the order one process adds them in). */
static qm_status share_sum(tally *t, size_t total, int has_base, qm_dist *dist, qm_diag *d)
{
    qm_status st = QM_OK;
    for (int k = 1; st == QM_OK && k < qm_dist_size(dist); k++) {
        void *buf = NULL;
        size_t len = 0;
        if ((st = qm_dist_recv(dist, k, 0, &buf, &len, d)) == QM_OK && !share_take(t, total, has_base, buf, len))
            st = qm_diag_fail(d, QM_EFORMAT, "the evaluation from rank %d is damaged (%zu bytes)", k, len);
        free(buf);
    }
    t->nll = t->nll_base = 0;
    t->agree = 0;
    for (size_t p = 0; st == QM_OK && p < total; p++) {
        t->nll += t->v_nll[p];
        if (has_base) {
            t->nll_base -= t->v_nllb[p];
            t->agree += t->v_agree[p];
        }
    }
    t->done = total;
    return st;
}

/* The walk over windows shared by every entry point.  With `base` its
 * log-probabilities are computed batch by batch; with `ref` they are read
 * from the stored ones; `keep` (when not NULL) receives the model's own
 * log-probabilities for every scored position, (total, V). */
static qm_status walk(const qm_net *net, const qm_net *base, const qm_eval_ref *ref, const qm_tokens *toks,
                      const qm_eval_opts *o, qm_eval_result *r, float *keep, qm_diag *d)
{
    memset(r, 0, sizeof *r);
    int ctx = o->ctx > 0 ? o->ctx : QM_DEFAULT_CTX, V = (int)net->m->cfg.vocab;
    if (base && base->m->cfg.vocab != V)
        return qm_diag_fail(d, QM_EINVAL, "the base model's vocabulary (%lld) differs from the model's (%d)",
                            base->m->cfg.vocab, V);
    if (ref && (ref->vocab != V || ref->ctx != ctx || ref->tokens != toks->n))
        return qm_diag_fail(d, QM_EINVAL, "the stored base log-probabilities were made for another vocabulary, "
                                          "window or token count");
    size_t W = n_windows(toks->n, ctx), total = toks->n ? toks->n - 1 : 0;
    if (W == 0)
        return qm_diag_fail(d, QM_EINVAL, "%zu tokens: at least 2 are needed to score a prediction", toks->n);
    int batch = o->batch > 0 ? o->batch : (int)(((size_t)64 << 20) / ((size_t)ctx * V * sizeof(float)));
    batch = batch < 1 ? 1 : batch > 16 ? 16 : batch;
    int has_base = base || ref;
    qm_batch *g = malloc(W * sizeof *g);
    float *lg = malloc((size_t)batch * ctx * V * sizeof *lg);
    float *lb = base ? malloc((size_t)batch * ctx * V * sizeof *lb) : NULL;
    tally t = {.kld = has_base ? malloc(total * sizeof *t.kld) : NULL};
    if (!g || !lg || (base && !lb) || (has_base && !t.kld)) {
        free(g);
        free(lg);
        free(lb);
        free(t.kld);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for %d windows of %d tokens", batch, ctx);
    }
    /* the groups: batches of full windows, or the final short window on its own */
    size_t n = 0;
    for (size_t w = 0; w < W; n++) {
        size_t start = w * (size_t)ctx, left = toks->n - 1 - start;
        int S = left < (size_t)ctx ? (int)left : ctx, B = 1;
        while (S == ctx && B < batch && w + (size_t)B < W && left - (size_t)B * ctx >= (size_t)ctx)
            B++;
        w += (size_t)B;
        g[n] = (qm_batch){toks->ids + start, B, S};
    }
    /* over ranks (qm_eval_ppl() only): this rank's groups, those that
     * start in its share [rank, rank+1) x total / ranks of the positions */
    qm_dist *dist = keep || ref ? NULL : o->dist;
    int rank = qm_dist_rank(dist), ranks = qm_dist_size(dist);
    size_t lo = 0, hi = n;
    qm_status st = QM_OK;
    if (ranks > 1) {
        lo = hi = 0;
        for (size_t k = 0; k < n; k++) {
            size_t at = (size_t)(g[k].tokens - toks->ids);
            if (at * (size_t)ranks < (size_t)rank * total)
                lo = k + 1;
            if (at * (size_t)ranks < (size_t)(rank + 1) * total)
                hi = k + 1;
        }
        hi = hi < lo ? lo : hi;
        t.done = lo < n ? (size_t)(g[lo].tokens - toks->ids) : total;
        t.v_nll = malloc((total + 1) * sizeof *t.v_nll);
        t.v_nllb = malloc((total + 1) * sizeof *t.v_nllb);
        t.v_agree = malloc(total + 1);
        if (!t.v_nll || !t.v_nllb || !t.v_agree)
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu positions' figures", total);
    }
    size_t p0 = t.done;
    /* both models run layer by layer to their final states, then the heads batch by batch */
    qm_states *hs = NULL, *hb = NULL;
    qm_head_w hm = {0}, hbw = {0};
    if (st == QM_OK && (ranks == 1 || hi > lo))
        st = qm_net_run(net, g + lo, hi - lo, 0, NULL, &hs, d);
    if (st == QM_OK && base && (ranks == 1 || hi > lo))
        st = qm_net_run(base, g + lo, hi - lo, qm_states_spilled(hs) ? 0 : qm_states_bytes(hs), NULL, &hb, d);
    if (st == QM_OK)
        st = qm_head_load(net->m, QM_HEAD_OUT, &hm, d);
    if (st == QM_OK && base)
        st = qm_head_load(base->m, QM_HEAD_OUT, &hbw, d);
    for (size_t k = lo; k < hi && st == QM_OK; k++) {
        int BS = g[k].B * g[k].S;
        size_t start = (size_t)(g[k].tokens - toks->ids);
        st = qm_net_logits(net, &hm, hs, g + lo, k - lo, lg, d);
        if (st == QM_OK && base && (st = qm_net_logits(base, &hbw, hb, g + lo, k - lo, lb, d)) == QM_OK)
            log_softmax(lb, BS, V, lb);
        if (st != QM_OK)
            break;
        const float *lp = base ? lb : ref ? ref->logp + t.done * (size_t)V : NULL;
        if (keep)
            log_softmax(lg, BS, V, keep + t.done * (size_t)V);
        if ((st = score(&t, lg, lp, toks->ids + start + 1, BS, V, d)) != QM_OK)
            break;
        if (o->progress)
            o->progress(o->progress_ctx, t.done, total);
    }
    if (st == QM_OK && ranks > 1 && rank) { /* this rank's positions to rank 0, which finishes alone */
        void *buf = NULL;
        size_t len = 0;
        if ((st = share_put(&t, p0, has_base, &buf, &len, d)) == QM_OK &&
            (st = qm_dist_post(dist, 0, 0, buf, len, d)) == QM_OK)
            st = qm_dist_flush(dist, d);
    } else if (st == QM_OK && ranks > 1)
        st = share_sum(&t, total, has_base, dist, d);
    if (st == QM_OK && !rank)
        st = finish(&t, has_base, r, d);
    qm_head_free(&hm);
    qm_head_free(&hbw);
    qm_states_free(hs);
    qm_states_free(hb);
    free(g);
    free(lg);
    free(lb);
    free(t.kld);
    free(t.v_nll);
    free(t.v_nllb);
    free(t.v_agree);
    return st;
}

qm_eval_opts qm_eval_opts_default(void) { return (qm_eval_opts){.ctx = QM_DEFAULT_CTX}; }

qm_status qm_eval_ppl(const qm_net *net, const qm_net *base, const qm_tokens *toks, const qm_eval_opts *o,
                      qm_eval_result *r, qm_diag *d)
{
    return walk(net, base, NULL, toks, o, r, NULL, d);
}

qm_status qm_eval_ref_make(const qm_net *base, const qm_tokens *toks, const qm_eval_opts *o, qm_eval_ref *ref,
                           qm_eval_result *r, qm_diag *d)
{
    memset(ref, 0, sizeof *ref);
    size_t total = toks->n ? toks->n - 1 : 0, V = (size_t)base->m->cfg.vocab;
    if (total && V > SIZE_MAX / sizeof(float) / total)
        return qm_diag_fail(d, QM_ENOMEM, "%zu tokens x %zu log-probabilities do not fit in memory", total, V);
    if (total && !(ref->logp = malloc(total * V * sizeof *ref->logp)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu x %zu base log-probabilities", total, V);
    qm_status st = walk(base, NULL, NULL, toks, o, r, ref->logp, d);
    if (st != QM_OK) {
        qm_eval_ref_free(ref);
        return st;
    }
    ref->vocab = (int)V;
    ref->ctx = o->ctx > 0 ? o->ctx : QM_DEFAULT_CTX;
    ref->tokens = toks->n;
    return QM_OK;
}

void qm_eval_ref_free(qm_eval_ref *ref)
{
    free(ref->logp);
    memset(ref, 0, sizeof *ref);
}

qm_status qm_eval_ppl_ref(const qm_net *net, const qm_eval_ref *ref, const qm_tokens *toks, const qm_eval_opts *o,
                          qm_eval_result *r, qm_diag *d)
{
    return walk(net, NULL, ref, toks, o, r, NULL, d);
}

/* ---- multiple-choice tasks ----------------------------------------------------------- */

void qm_task_results_free(qm_task_result *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].name);
    free(r);
}

/* Token ids of a piece into out (room for QM_TASK_MAX_IDS); the count, or
 * -1 when it does not fit, -2 for text on a model without a byte tokenizer. */
static int piece_tokens(const qm_task_piece *p, const qm_net *net, int *out)
{
    if (p->len > QM_TASK_MAX_IDS)
        return -1;
    if (p->ids) {
        memcpy(out, p->ids, p->len * sizeof *out);
        return (int)p->len;
    }
    if (!net->m->cfg.byte_tokenizer)
        return -2;
    for (size_t i = 0; i < p->len; i++)
        out[i] = (unsigned char)p->text[i];
    return (int)p->len;
}

/* A text context and choice through the model's tokenizer, as
 * lm-evaluation-harness splits them: the context's trailing whitespace
 * moves to the front of the choice, then the choice's tokens are those of
 * enc(context + choice) after the first len(enc(context)).  Returns 0, -1
 * when either has more than QM_TASK_MAX_IDS tokens, -4 when the choice has
 * none, or -5 when the tokenizer failed (d says why). */
static int encode_pair(qm_tokenizer *tk, const qm_task_piece *context, const qm_task_piece *choice, int *cx,
                       int *nx, int *ch, int *nc, qm_diag *d)
{
    const char *c = context->text, *x = choice->text;
    size_t cl = context->len, xl = choice->len, keep = cl;
    while (keep > 0 && strchr(" \t\n\r\v\f", c[keep - 1]))
        keep--;
    qm_tokens a = {0}, w = {0};
    char *joined = malloc(cl + xl + 1);
    int rc = joined ? 0 : -5;
    if (!joined)
        qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (rc == 0) {
        memcpy(joined, c, cl);
        memcpy(joined + cl, x, xl);
        if (qm_tokenizer_encode(tk, c, keep, 0, &a, d) != QM_OK ||
            qm_tokenizer_encode(tk, joined, cl + xl, 0, &w, d) != QM_OK)
            rc = -5;
    }
    if (rc == 0 && (a.n > QM_TASK_MAX_IDS || w.n - (w.n < a.n ? w.n : a.n) > QM_TASK_MAX_IDS))
        rc = -1;
    else if (rc == 0 && w.n <= a.n)
        rc = -4;
    if (rc == 0) {
        memcpy(cx, a.ids, a.n * sizeof *cx);
        memcpy(ch, w.ids + a.n, (w.n - a.n) * sizeof *ch);
        *nx = (int)a.n;
        *nc = (int)(w.n - a.n);
    }
    free(joined);
    qm_tokens_free(&a);
    qm_tokens_free(&w);
    return rc;
}

/* The window of choice tokens ch (nc) after context cx (nx), left-truncating
 * the context so that everything fits in ctx positions, into buf (room for
 * ctx + 1); its length, or -1 after a diagnostic.  The model reads all but
 * the last token; *keep is where the choice starts. */
static int choice_window(const int *cx, int nx, const int *ch, int nc, int ctx, int *buf, int *keep, qm_diag *d)
{
    *keep = nx + nc > ctx + 1 ? ctx + 1 - nc : nx;
    if (*keep < 1) {
        qm_diag_fail(d, QM_EINVAL, "a choice of %d tokens does not fit in --ctx %d", nc, ctx);
        return -1;
    }
    memcpy(buf, cx + nx - *keep, (size_t)*keep * sizeof *buf);
    memcpy(buf + *keep, ch, (size_t)nc * sizeof *buf);
    return *keep + nc;
}

/* Summed log-likelihood of the choice in window w (len tokens, the choice
 * from keep on) from the logits lg of its first len - 1 positions. */
static qm_status choice_loglik(const int *w, int len, int keep, const float *lg, int V, double *ll, qm_diag *d)
{
    *ll = 0;
    for (int i = keep - 1; i < len - 1; i++) {
        const float *x = lg + (size_t)i * V;
        *ll += x[w[i + 1]] - lse(x, V);
    }
    return isfinite(*ll) ? QM_OK : qm_diag_fail(d, QM_EINVAL, "a choice's log-likelihood is %g, not a number", *ll);
}

/* Every choice of every item as one window: the tokens (in one pool), where
 * each starts and where its choice starts.  Checked before any work.  Text
 * goes through tk, the model's own tokenizer, when there is one. */
typedef struct windows {
    int *pool;          /* all windows' tokens, back to back */
    size_t *at;         /* (n) first token of each in pool */
    int *len, *keep;    /* (n) */
    size_t n, used, cap;
} windows;

static void windows_free(windows *w)
{
    free(w->pool);
    free(w->at);
    free(w->len);
    free(w->keep);
}

static qm_status make_windows(const qm_tasks *tasks, const qm_net *net, qm_tokenizer *tk, const char *path, int ctx,
                              windows *w, qm_diag *d)
{
    size_t nw = 0;
    for (size_t k = 0; k < tasks->n; k++)
        nw += (size_t)tasks->items[k].n_choices;
    memset(w, 0, sizeof *w);
    int *cx = malloc(QM_TASK_MAX_IDS * sizeof *cx), *ch = malloc(QM_TASK_MAX_IDS * sizeof *ch);
    w->at = malloc((nw ? nw : 1) * sizeof *w->at);
    w->len = malloc((nw ? nw : 1) * sizeof *w->len);
    w->keep = malloc((nw ? nw : 1) * sizeof *w->keep);
    qm_status st = cx && ch && w->at && w->len && w->keep ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t k = 0; st == QM_OK && k < tasks->n; k++) {
        const qm_task_item *it = &tasks->items[k];
        int nx = piece_tokens(&it->context, net, cx);
        for (int i = 0; st == QM_OK && i < it->n_choices; i++) {
            int nc;
            if (tk && it->context.text && it->choices[i].text) {
                int rc = encode_pair(tk, &it->context, &it->choices[i], cx, &nx, ch, &nc, d);
                if (rc == -5) {
                    st = QM_EINVAL;
                    break;
                }
                nx = rc == -1 ? -1 : nx;
                nc = rc == -1 ? -1 : rc == -4 ? 0 : nc;
            } else {
                nc = piece_tokens(&it->choices[i], net, ch);
            }
            if (nx < 0 || nc < 0) {
                st = qm_diag_fail(d, QM_EFORMAT, "%s:%d: %s", path, it->line,
                                  nx == -2 || nc == -2 ? "text needs a byte-level model or the model's tokenizer; "
                                                         "give token id arrays"
                                                       : "too many tokens");
                break;
            }
            if (nx == 0 || nc == 0) {
                st = qm_diag_fail(d, QM_EFORMAT, "%s:%d: %s has no tokens", path, it->line,
                                  nx == 0 ? "the context" : "a choice");
                break;
            }
            if (w->cap - w->used < (size_t)ctx + 1) {
                size_t cap = 2 * w->cap + (size_t)ctx + 1;
                int *p = realloc(w->pool, cap * sizeof *p);
                if (!p) {
                    st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
                    break;
                }
                w->pool = p;
                w->cap = cap;
            }
            int len = choice_window(cx, nx, ch, nc, ctx, w->pool + w->used, &w->keep[w->n], d);
            if (len < 0)
                st = QM_EINVAL;
            else {
                w->at[w->n] = w->used;
                w->len[w->n++] = len;
                w->used += (size_t)len;
            }
        }
    }
    free(cx);
    free(ch);
    if (st != QM_OK)
        windows_free(w);
    return st;
}

/* The log-likelihood of every window: one layer-by-layer run over all. */
static qm_status logliks(const qm_net *net, const windows *w, int ctx, double *ll, qm_diag *d)
{
    int V = (int)net->m->cfg.vocab;
    qm_batch *g = malloc((w->n ? w->n : 1) * sizeof *g);
    float *lg = malloc((size_t)ctx * V * sizeof *lg);
    qm_states *s = NULL;
    qm_head_w h = {0};
    qm_status st = g && lg ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t k = 0; st == QM_OK && k < w->n; k++)
        g[k] = (qm_batch){w->pool + w->at[k], 1, w->len[k] - 1};
    if (st == QM_OK)
        st = qm_net_run(net, g, w->n, 0, NULL, &s, d);
    if (st == QM_OK)
        st = qm_head_load(net->m, QM_HEAD_OUT, &h, d);
    for (size_t k = 0; st == QM_OK && k < w->n; k++)
        if ((st = qm_net_logits(net, &h, s, g, k, lg, d)) == QM_OK)
            st = choice_loglik(g[k].tokens, w->len[k], w->keep[k], lg, V, &ll[k], d);
    qm_head_free(&h);
    qm_states_free(s);
    free(g);
    free(lg);
    return st;
}

static qm_task_result *task_slot(qm_task_result **r, size_t *n, const char *name, double **hits,
                                 double **hits_norm)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*r)[i].name, name) == 0)
            return &(*r)[i];
    qm_task_result *g = realloc(*r, (*n + 1) * sizeof **r);
    double *h = realloc(*hits, (*n + 1) * sizeof **hits), *hn = realloc(*hits_norm, (*n + 1) * sizeof **hits_norm);
    if (g)
        *r = g;
    if (h)
        *hits = h;
    if (hn)
        *hits_norm = hn;
    if (!g || !h || !hn)
        return NULL;
    memset(&g[*n], 0, sizeof g[*n]);
    h[*n] = hn[*n] = 0;
    if (!(g[*n].name = qm_strdup(name)))
        return NULL;
    return &g[(*n)++];
}

qm_status qm_eval_tasks(const qm_net *net, const char *path, int ctx, qm_task_result **out,
                        size_t *n_out, qm_diag *d)
{
    *out = NULL;
    *n_out = 0;
    qm_tasks tasks;
    qm_status st = qm_tasks_read(path, net->m->cfg.vocab, &tasks, d);
    if (st != QM_OK)
        return st;
    /* text contexts and choices go through the model's own tokenizer */
    qm_tokenizer *tk = NULL;
    if (!net->m->cfg.byte_tokenizer && qm_tokenizer_in_dir(net->m->dir))
        st = qm_tokenizer_open(net->m->dir, &tk, d);
    windows w;
    if (st == QM_OK)
        st = make_windows(&tasks, net, tk, path, ctx, &w, d);
    qm_tokenizer_free(tk);
    if (st != QM_OK) {
        qm_tasks_free(&tasks);
        return st;
    }
    double *ll = malloc((w.n ? w.n : 1) * sizeof *ll), *hits = NULL, *hits_norm = NULL;
    qm_task_result *res = NULL;
    size_t nres = 0;
    st = ll ? logliks(net, &w, ctx, ll, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t k = 0, at = 0; st == QM_OK && k < tasks.n; k++) {
        const qm_task_item *it = &tasks.items[k];
        double best = -INFINITY, best_norm = -INFINITY;
        int arg = 0, arg_norm = 0;
        for (int i = 0; i < it->n_choices; i++, at++) {
            /* acc_norm divides by the choice's bytes; ids stand for themselves */
            double nb = (double)it->choices[i].len;
            if (ll[at] > best) {
                best = ll[at];
                arg = i;
            }
            if (ll[at] / nb > best_norm) {
                best_norm = ll[at] / nb;
                arg_norm = i;
            }
        }
        qm_task_result *t = task_slot(&res, &nres, it->task, &hits, &hits_norm);
        if (!t) {
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        } else {
            size_t gi = (size_t)(t - res);
            t->n++;
            hits[gi] += arg == it->gold;
            hits_norm[gi] += arg_norm == it->gold;
        }
    }
    for (size_t k = 0; st == QM_OK && k < nres; k++) {
        double n = (double)res[k].n;
        res[k].acc = hits[k] / n;
        res[k].acc_norm = hits_norm[k] / n;
        /* sample standard deviation / sqrt(n), as lm-evaluation-harness */
        res[k].acc_se = n > 1 ? sqrt(res[k].acc * (1 - res[k].acc) / (n - 1)) : 0;
        res[k].acc_norm_se = n > 1 ? sqrt(res[k].acc_norm * (1 - res[k].acc_norm) / (n - 1)) : 0;
    }
    qm_tasks_free(&tasks);
    windows_free(&w);
    free(ll);
    free(hits);
    free(hits_norm);
    if (st != QM_OK) {
        qm_task_results_free(res, nres);
        return st;
    }
    *out = res;
    *n_out = nres;
    return QM_OK;
}
