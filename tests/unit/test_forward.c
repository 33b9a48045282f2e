/* test_forward.c: the forward pass.
 *
 * 1. Golden logits: the shipped example models against the logits their
 *    PyTorch definition computed (tools/train_moe.py), max |diff| at most
 *    1e-3 of the logits' scale.
 * 2. The parts that differ between families, on hand-made one-layer models
 *    whose expected outputs this file computes itself in double precision:
 *    top-k renormalisation (Qwen3-MoE, Mixtral) or not (DeepSeek, Qwen2-MoE),
 *    the shared expert and Qwen2-MoE's sigmoid gate on it, q/k RMSNorm per
 *    head (Qwen3-MoE) or over the whole projection (OLMoE), RoPE and GQA.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/net.h"
#include "tests/unit/testutil.h"

/* ---- golden logits ------------------------------------------------------------------ */

static void check_golden(const char *rel)
{
    qm_diag *d = qm_diag_new();
    qm_model *m;
    qm_net net;
    qm_st_file *g;
    char p[1024];
    snprintf(p, sizeof p, "%s/golden.safetensors", tu_src(rel));
    CU_ASSERT_EQUAL_FATAL(qm_model_open(tu_src(rel), &m, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_net_open(m, &net, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_st_open(p, &g, d), QM_OK);
    const qm_st_tensor *tt = qm_st_find(g, "tokens"), *lt = qm_st_find(g, "logits");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tt);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lt);
    int S = (int)tt->shape[0], V = (int)m->cfg.vocab;
    CU_ASSERT_EQUAL(S, 512);
    CU_ASSERT_EQUAL(lt->shape[1], (uint64_t)V);
    float *lg = malloc((size_t)S * V * sizeof *lg);
    const float *ref = lt->data;
    CU_ASSERT_EQUAL_FATAL(qm_net_forward(&net, tt->data, 1, S, lg, NULL, d), QM_OK);
    double mx = 0, scale = 0;
    for (size_t i = 0; i < (size_t)S * V; i++) {
        mx = fmax(mx, fabs((double)lg[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    printf("\n    %s: max |diff| %.3g, logit scale %.3g ", rel, mx, scale);
    CU_ASSERT(scale > 1.0); /* trained logits, not a flat distribution */
    CU_ASSERT(mx <= 1e-3 * scale);
    /* batching changes only rounding (sgemm blocks differently): the same
     * window twice in one call */
    int *two = malloc(2 * (size_t)S * sizeof *two);
    float *lg2 = malloc(2 * (size_t)S * V * sizeof *lg2);
    memcpy(two, tt->data, (size_t)S * sizeof *two);
    memcpy(two + S, tt->data, (size_t)S * sizeof *two);
    CU_ASSERT_EQUAL(qm_net_forward(&net, two, 2, S, lg2, NULL, d), QM_OK);
    double bd = 0;
    for (size_t i = 0; i < (size_t)S * V; i++)
        bd = fmax(bd, fabs((double)lg2[(size_t)S * V + i] - lg[i]));
    CU_ASSERT(bd <= 1e-5 * scale);
    free(two);
    free(lg2);
    free(lg);
    qm_st_close(g);
    qm_model_close(m);
    qm_diag_free(d);
}

static void test_golden_mixtral(void) { check_golden("examples/models/tiny-mixtral"); }
static void test_golden_deepseek(void) { check_golden("examples/models/tiny-deepseek"); }
static void test_golden_qwen3moe(void) { check_golden("examples/models/tiny-qwen3moe"); }

/* ---- hand-made MoE blocks -------------------------------------------------------------- */

static double silu(double v) { return v / (1 + exp(-v)); }

/* d = 2, one token x = (3, 4), attention contributes nothing (o = 0), three
 * experts of width 1, top-2, optional shared expert of width 1. */
static float W_router[3 * 2] = {1, 0, 0, 1, 0.5f, 0.5f};
static float W_gate[3][2] = {{0.3f, -0.2f}, {0.1f, 0.4f}, {-0.5f, 0.2f}};
static float W_up[3][2] = {{0.7f, 0.1f}, {-0.3f, 0.6f}, {0.2f, 0.2f}};
static float W_down[3][2] = {{1.0f, -1.0f}, {0.5f, 2.0f}, {-1.5f, 0.25f}};
static float S_gate[2] = {0.2f, 0.3f}, S_up[2] = {-0.4f, 0.5f}, S_down[2] = {0.6f, -0.7f};
static float S_sig[2] = {0.8f, -0.3f};
static float ones[4] = {1, 1, 1, 1}, zeros[16];

static qm_lin lin(float *w, int out, int in) { return (qm_lin){w, NULL, out, in}; }

static void moe_case(const qm_arch *arch, int renorm, int shared, int sigmoid)
{
    qm_config c = {.vocab = 4, .hidden = 2, .layers = 1, .heads = 1, .kv_heads = 1, .head_dim = 2,
                   .experts = 3, .top_k = 2, .expert_ff = 1, .shared = shared, .shared_ff = shared ? 1 : 0,
                   .moe_freq = 1, .sparse_step = 1, .norm_topk = renorm, .rope_theta = 10000, .rms_eps = 1e-6};
    unsigned char is_moe = 1;
    qm_model m = {.arch = arch, .cfg = c, .is_moe = &is_moe};
    qm_lin g[3], u[3], dn[3];
    for (int e = 0; e < 3; e++) {
        g[e] = lin(W_gate[e], 1, 2);
        u[e] = lin(W_up[e], 1, 2);
        dn[e] = lin(W_down[e], 2, 1);
    }
    qm_layer_w w = {.layer = 0, .moe = 1, .attn_norm = ones, .ffn_norm = ones,
                    .q = lin(zeros, 2, 2), .k = lin(zeros, 2, 2), .v = lin(zeros, 2, 2), .o = lin(zeros, 2, 2),
                    .router = lin(W_router, 3, 2), .gate = g, .up = u, .down = dn};
    if (shared) {
        w.sgate = lin(S_gate, 1, 2);
        w.sup = lin(S_up, 1, 2);
        w.sdown = lin(S_down, 2, 1);
        w.shared_gate = sigmoid ? S_sig : NULL;
    }
    float x[2] = {3, 4};
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_forward_layer(&m, &w, x, 1, 1, NULL, NULL, d), QM_OK);

    /* expected, by the equations */
    double r = 1 / sqrt((9.0 + 16.0) / 2 + 1e-6), n[2] = {3 * r, 4 * r}, lg[3], p[3], z = 0;
    for (int e = 0; e < 3; e++)
        z += p[e] = exp(lg[e] = W_router[2 * e] * n[0] + W_router[2 * e + 1] * n[1]);
    for (int e = 0; e < 3; e++)
        p[e] /= z;
    int lo = p[0] < p[1] ? (p[0] < p[2] ? 0 : 2) : (p[1] < p[2] ? 1 : 2); /* the one not chosen */
    double psum = 1 - p[lo], y[2] = {3, 4};
    for (int e = 0; e < 3; e++) {
        if (e == lo)
            continue;
        double a = silu(W_gate[e][0] * n[0] + W_gate[e][1] * n[1]) * (W_up[e][0] * n[0] + W_up[e][1] * n[1]);
        double we = renorm ? p[e] / psum : p[e];
        y[0] += we * W_down[e][0] * a;
        y[1] += we * W_down[e][1] * a;
    }
    if (shared) {
        double a = silu(S_gate[0] * n[0] + S_gate[1] * n[1]) * (S_up[0] * n[0] + S_up[1] * n[1]);
        double s = sigmoid ? 1 / (1 + exp(-(S_sig[0] * n[0] + S_sig[1] * n[1]))) : 1;
        y[0] += s * S_down[0] * a;
        y[1] += s * S_down[1] * a;
    }
    CU_ASSERT_DOUBLE_EQUAL(x[0], y[0], 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(x[1], y[1], 1e-5);
    /* issue #13: a hidden state that overflowed (in an earlier layer, say)
     * is an error naming the layer, not a NaN carried on to every metric */
    x[0] = INFINITY;
    CU_ASSERT_EQUAL(qm_forward_layer(&m, &w, x, 1, 1, NULL, NULL, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "layer 0: the hidden state is");
    qm_diag_free(d);
}

static void test_moe_renormalised(void) { moe_case(&qm_arch_qwen3moe, 1, 0, 0); }
static void test_moe_not_renormalised(void) { moe_case(&qm_arch_olmoe, 0, 0, 0); }
static void test_moe_shared(void) { moe_case(&qm_arch_deepseek, 0, 1, 0); }
static void test_moe_shared_sigmoid(void) { moe_case(&qm_arch_qwen2moe, 0, 1, 1); }

/* ---- attention with q/k norms ----------------------------------------------------------- */

/* d = 4, two heads of 2 (q), one kv head of 2 (GQA), two tokens; v and o are
 * chosen so the layer output of token 1 exposes its attention weights. */
static void attention_case(const qm_arch *arch, int qk_norm)
{
    qm_config c = {.vocab = 4, .hidden = 4, .layers = 1, .heads = 2, .kv_heads = 1, .head_dim = 2,
                   .experts = 1, .top_k = 1, .expert_ff = 1, .moe_freq = 1, .sparse_step = 1,
                   .rope_theta = 10000, .rms_eps = 1e-6};
    unsigned char is_moe = 0;
    qm_model m = {.arch = arch, .cfg = c, .is_moe = &is_moe};
    static float Wq[4 * 4] = {0.5f, -0.1f, 0.3f, 0.2f, 0.1f, 0.4f, -0.2f, 0.3f,
                              -0.3f, 0.2f, 0.6f, 0.1f, 0.2f, 0.2f, 0.1f, -0.5f};
    static float Wk[2 * 4] = {0.3f, 0.1f, -0.4f, 0.2f, -0.2f, 0.5f, 0.1f, 0.3f};
    static float Wv[2 * 4] = {1, 0, 0, 0, 0, 1, 0, 0};
    /* o: head 0's value -> dims 0,1; head 1's -> dims 2,3 */
    static float Wo[4 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    static float qn_head[2] = {1.5f, 0.5f}, kn_head[2] = {0.8f, 1.2f};
    static float qn_whole[4] = {1.5f, 0.5f, 1.1f, 0.9f}, kn_whole[2] = {0.8f, 1.2f};
    qm_layer_w w = {.layer = 0, .moe = 0, .attn_norm = ones, .ffn_norm = ones, .q = lin(Wq, 4, 4),
                    .k = lin(Wk, 2, 4), .v = lin(Wv, 2, 4), .o = lin(Wo, 4, 4),
                    .mgate = lin(zeros, 1, 4), .mup = lin(zeros, 1, 4), .mdown = lin(zeros, 4, 1)};
    if (qk_norm == 1) {
        w.q_norm = qn_head;
        w.k_norm = kn_head;
    } else if (qk_norm == 2) {
        w.q_norm = qn_whole;
        w.k_norm = kn_whole;
    }
    float x[2][4] = {{1, 2, -1, 0.5f}, {-0.5f, 1, 2, 1}};
    double xin[2][4];
    memcpy(xin, (double[2][4]){{1, 2, -1, 0.5}, {-0.5, 1, 2, 1}}, sizeof xin);
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_forward_layer(&m, &w, &x[0][0], 1, 2, NULL, NULL, d), QM_OK);

    double n1[2][4], q[2][4], k[2][2], v[2][2];
    for (int t = 0; t < 2; t++) {
        double ss = 0;
        for (int j = 0; j < 4; j++)
            ss += xin[t][j] * xin[t][j];
        for (int j = 0; j < 4; j++)
            n1[t][j] = xin[t][j] / sqrt(ss / 4 + 1e-6);
        for (int i = 0; i < 4; i++) {
            q[t][i] = 0;
            for (int j = 0; j < 4; j++)
                q[t][i] += Wq[i * 4 + j] * n1[t][j];
        }
        for (int i = 0; i < 2; i++) {
            k[t][i] = v[t][i] = 0;
            for (int j = 0; j < 4; j++) {
                k[t][i] += Wk[i * 4 + j] * n1[t][j];
                v[t][i] += Wv[i * 4 + j] * n1[t][j];
            }
        }
        if (qk_norm == 1) { /* each head of 2 */
            for (int h = 0; h < 2; h++) {
                double r = 1 / sqrt((q[t][2 * h] * q[t][2 * h] + q[t][2 * h + 1] * q[t][2 * h + 1]) / 2 + 1e-6);
                q[t][2 * h] *= r * qn_head[0];
                q[t][2 * h + 1] *= r * qn_head[1];
            }
            double r = 1 / sqrt((k[t][0] * k[t][0] + k[t][1] * k[t][1]) / 2 + 1e-6);
            k[t][0] *= r * kn_head[0];
            k[t][1] *= r * kn_head[1];
        } else if (qk_norm == 2) { /* the whole projection */
            double ss2 = 0;
            for (int i = 0; i < 4; i++)
                ss2 += q[t][i] * q[t][i];
            for (int i = 0; i < 4; i++)
                q[t][i] *= qn_whole[i] / sqrt(ss2 / 4 + 1e-6);
            double r = 1 / sqrt((k[t][0] * k[t][0] + k[t][1] * k[t][1]) / 2 + 1e-6);
            k[t][0] *= r * kn_whole[0];
            k[t][1] *= r * kn_whole[1];
        }
        /* RoPE: head_dim 2, one frequency (1.0): rotate by angle t */
        double cs = cos(t), sn = sin(t);
        for (int h = 0; h < 2; h++) {
            double a = q[t][2 * h], b = q[t][2 * h + 1];
            q[t][2 * h] = a * cs - b * sn;
            q[t][2 * h + 1] = b * cs + a * sn;
        }
        double a = k[t][0], b = k[t][1];
        k[t][0] = a * cs - b * sn;
        k[t][1] = b * cs + a * sn;
    }
    /* token 1 attends to tokens 0 and 1; both heads share the kv head */
    for (int h = 0; h < 2; h++) {
        double s0 = (q[1][2 * h] * k[0][0] + q[1][2 * h + 1] * k[0][1]) / sqrt(2.0);
        double s1 = (q[1][2 * h] * k[1][0] + q[1][2 * h + 1] * k[1][1]) / sqrt(2.0);
        double a0 = 1 / (1 + exp(s1 - s0)), a1 = 1 - a0;
        for (int j = 0; j < 2; j++)
            CU_ASSERT_DOUBLE_EQUAL(x[1][2 * h + j], xin[1][2 * h + j] + a0 * v[0][j] + a1 * v[1][j], 1e-5);
    }
    /* token 0 sees only itself */
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 2; j++)
            CU_ASSERT_DOUBLE_EQUAL(x[0][2 * h + j], xin[0][2 * h + j] + v[0][j], 1e-5);
    qm_diag_free(d);
}

static void test_attention_plain(void) { attention_case(&qm_arch_mixtral, 0); }
static void test_attention_qk_norm_head(void) { attention_case(&qm_arch_qwen3moe, 1); }
static void test_attention_qk_norm_whole(void) { attention_case(&qm_arch_olmoe, 2); }

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("golden logits", NULL, NULL);
    CU_add_test(s, "tiny-mixtral", test_golden_mixtral);
    CU_add_test(s, "tiny-deepseek", test_golden_deepseek);
    CU_add_test(s, "tiny-qwen3moe", test_golden_qwen3moe);
    s = CU_add_suite("MoE block", NULL, NULL);
    CU_add_test(s, "top-k renormalised (Qwen3-MoE)", test_moe_renormalised);
    CU_add_test(s, "top-k not renormalised (OLMoE)", test_moe_not_renormalised);
    CU_add_test(s, "shared expert (DeepSeek)", test_moe_shared);
    CU_add_test(s, "shared expert with sigmoid gate (Qwen2-MoE)", test_moe_shared_sigmoid);
    s = CU_add_suite("attention", NULL, NULL);
    CU_add_test(s, "RoPE and GQA", test_attention_plain);
    CU_add_test(s, "q/k norm per head (Qwen3-MoE)", test_attention_qk_norm_head);
    CU_add_test(s, "q/k norm over the projection (OLMoE)", test_attention_qk_norm_whole);
    return tu_run();
}
