/* test_compiler.c: the compiler's internals on a small header-only Mixtral.
 *
 * tests/compiler/compile.sh checks the command end to end on the real
 * configs; this suite checks the stages one by one with exact values:
 * which tensors a selector resolves to, how data-driven picks break ties,
 * which fields a later rule overrides, where a budget lands and what an
 * unreachable one says.
 *
 * The model: 4 layers, 4 experts, hidden 64, expert FFN 128, 2 heads of 32
 * with 1 KV head.  Quantized linears by default: attention 4 x 12288 =
 * 49152 params, routed experts 16 x 3 x 8192 = 393216 params (442368 in
 * all); one expert is 24576 params.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "tests/unit/hfnames.h"
#include "tests/unit/testutil.h"

static const char *model_dir(void)
{
    static char dir[1024];
    if (dir[0])
        return dir;
    json_t *c = json_pack("{s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "architectures",
                          "MixtralForCausalLM", "vocab_size", 32, "hidden_size", 64, "num_hidden_layers", 4,
                          "num_attention_heads", 2, "num_key_value_heads", 1, "num_local_experts", 4,
                          "num_experts_per_tok", 2, "intermediate_size", 128);
    hf_dims x = hf_dims_of(c);
    tlist l = {0};
    hf_checkpoint_names(&x, c, &l);
    snprintf(dir, sizeof dir, "%s", tu_mkdir("mixtral-small"));
    CU_ASSERT_EQUAL(hf_write_model(dir, c, &l, 1), 0);
    hf_tlist_free(&l);
    json_decref(c);
    return dir;
}

/* Frequencies: every layer [1, 2, 3, 4], i.e. shares 0.1 .. 0.4, so that
 * equal scores in different layers exercise the tie rank. */
static const char scores_text[] = "qmoe_scores: 1\nfrequency:\n  0: [1, 2, 3, 4]\n  1: [1, 2, 3, 4]\n"
                                  "  2: [1, 2, 3, 4]\n  3: [1, 2, 3, 4]\n";

/* Parse and set up `policy` (and the scores above when with_scores) in c;
 * QM_OK or the failure, with diagnostics in d. */
static qm_status start(qm_cstate *c, qm_compile_opts *o, const char *policy, int with_scores, qm_diag *d)
{
    static char ppath[1024], spath[1024];
    snprintf(ppath, sizeof ppath, "%s", tu_path("p.qmoe"));
    snprintf(spath, sizeof spath, "%s", tu_path("s.yaml"));
    CU_ASSERT_EQUAL_FATAL(tu_write(ppath, policy, strlen(policy)), 0);
    CU_ASSERT_EQUAL_FATAL(tu_write(spath, scores_text, strlen(scores_text)), 0);
    *o = (qm_compile_opts){.policy = ppath, .model = model_dir(), .scores = with_scores ? spath : NULL};
    qm_status st = qm_c_start(c, o, d, 0);
    if (st != QM_OK)
        fprintf(stderr, "\n%s\n", tu_diag_all(d));
    return st;
}

static const qm_setting *setting(const qm_cstate *c, const char *canon)
{
    for (size_t i = 0; i < c->model->n; i++)
        if (strcmp(c->model->t[i].canon, canon) == 0)
            return &c->set[i];
    CU_FAIL("no such tensor");
    fprintf(stderr, "\nno tensor '%s'\n", canon);
    return NULL;
}

/* The canonical names statement s's first selector resolves to, space-separated. */
static const char *resolved(qm_cstate *c, size_t s)
{
    static char out[4096];
    unsigned char *mask = calloc(c->model->n + 1, 1);
    const qm_stmt *x = c->policy->stmt[s];
    out[0] = '\0';
    CU_ASSERT_EQUAL(qm_c_resolve(c, x->src, &x->u.rule.sel[0], mask), QM_OK);
    size_t o = 0;
    for (size_t i = 0; i < c->model->n; i++)
        if (mask[i])
            o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", o ? " " : "", c->model->t[i].canon);
    free(mask);
    return out;
}

static size_t count_words(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (p == s || p[-1] == ' ') && *p != ' ';
    return n;
}

static void test_resolve(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o,
                                "layers[-1].attn.o: 4bit\n"
                                "layers[1..2].experts[3].down: 4bit\n"
                                "moe_layers[0, 2].router: 4bit\n"
                                "experts.gate: 4bit\n"
                                "layers[1].experts[0]: 4bit\n"
                                "attn: 4bit\n"
                                "layers[-2..]: 4bit\n"
                                "embed, lm_head: 8bit\n",
                                0, d),
                          QM_OK);
    CU_ASSERT_STRING_EQUAL(resolved(&c, 0), "layers[3].attn.o");
    CU_ASSERT_STRING_EQUAL(resolved(&c, 1), "layers[1].experts[3].down layers[2].experts[3].down");
    CU_ASSERT_STRING_EQUAL(resolved(&c, 2), "layers[0].router layers[2].router");
    const char *g = resolved(&c, 3);
    CU_ASSERT_EQUAL(count_words(g), 16); /* 4 layers x 4 experts */
    CU_ASSERT_PTR_NULL(strstr(g, ".up"));
    CU_ASSERT_STRING_EQUAL(resolved(&c, 4),
                           "layers[1].experts[0].gate layers[1].experts[0].up layers[1].experts[0].down");
    const char *a = resolved(&c, 5);
    CU_ASSERT_EQUAL(count_words(a), 16); /* q, k, v, o in 4 layers */
    CU_ASSERT(strncmp(a, "layers[0].attn.q layers[0].attn.k layers[0].attn.v layers[0].attn.o", 67) == 0);
    /* a layer covers everything in it, norms and router included */
    const char *last = resolved(&c, 6);
    fprintf(stderr, "[%s]\n", last);
    CU_ASSERT(strncmp(last, "layers[2].attn.q ", 17) == 0 && strstr(last, " layers[3].experts[3].down"));
    CU_ASSERT(!strstr(last, "layers[1].") && !strstr(last, "norm") && !strstr(last, "router"));
    CU_ASSERT_EQUAL(count_words(last), 2 * (4 + 12));
    /* two selectors in one rule: the first here */
    CU_ASSERT_STRING_EQUAL(resolved(&c, 7), "embed");
    qm_cstate_free(&c);
    qm_diag_free(d);
}

static qm_index pick(qm_pick_how how, long long count, int per_layer, unsigned long long seed)
{
    qm_index ix = {.kind = QM_INDEX_PICK};
    ix.u.pick.how = how;
    ix.u.pick.count = count;
    ix.u.pick.per_layer = per_layer;
    ix.u.pick.seed = seed;
    return ix;
}

static void test_pick_ties(void)
{
    unsigned char keep[5];
    long long none[5] = {0}, layer[4] = {0, 0, 1, 1};
    /* three units tie at 5: the lowest tie rank wins, whatever the input order */
    double v[5] = {1, 5, 5, 3, 5};
    size_t rank[5] = {4, 3, 2, 1, 0};
    qm_index top2 = pick(QM_PICK_TOP, 2, 0, 0);
    qm_c_pick(&top2, 5, v, none, rank, keep);
    CU_ASSERT(!keep[0] && !keep[1] && keep[2] && !keep[3] && keep[4]);
    /* bottom: lowest scores, ties by rank again; NAN is never picked */
    double w[4] = {NAN, 2, 1, 1};
    size_t id[5] = {0, 1, 2, 3, 4};
    qm_index bottom1 = pick(QM_PICK_BOTTOM, 1, 0, 0), top4 = pick(QM_PICK_TOP, 4, 0, 0);
    qm_c_pick(&bottom1, 4, w, none, id, keep);
    CU_ASSERT(!keep[0] && !keep[1] && keep[2] && !keep[3]);
    qm_c_pick(&top4, 4, w, none, id, keep);
    CU_ASSERT(!keep[0] && keep[1] && keep[2] && keep[3]);
    /* per layer: one in each layer; in layer 1 the tie goes to rank 2 (unit 3) */
    double u[4] = {1, 2, 3, 3};
    size_t r2[4] = {0, 1, 3, 2};
    qm_index top1pl = pick(QM_PICK_TOP, 1, 1, 0);
    qm_c_pick(&top1pl, 4, u, layer, r2, keep);
    CU_ASSERT(!keep[0] && keep[1] && !keep[2] && keep[3]);
    /* percent: 50% of 5 rounds to 3 */
    qm_index half = pick(QM_PICK_TOP, 0, 0, 0);
    half.u.pick.is_percent = 1;
    half.u.pick.percent = 50;
    double z[5] = {5, 4, 3, 2, 1};
    qm_c_pick(&half, 5, z, none, id, keep);
    CU_ASSERT(keep[0] && keep[1] && keep[2] && !keep[3] && !keep[4]);
    /* random: as many as asked, the same for the same seed, scores ignored */
    unsigned char k1[5], k2[5];
    qm_index r = pick(QM_PICK_RANDOM, 2, 0, 42);
    qm_c_pick(&r, 5, v, none, id, k1);
    qm_c_pick(&r, 5, z, none, id, k2);
    CU_ASSERT_EQUAL(k1[0] + k1[1] + k1[2] + k1[3] + k1[4], 2);
    CU_ASSERT_EQUAL(memcmp(k1, k2, 5), 0);
}

/* Data-driven picks through the resolver: equal shares in every layer. */
static void test_select_by_scores(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o,
                                "experts[top 1 per layer by frequency]: 4bit\n"
                                "experts[top 2 by frequency]: 4bit\n",
                                1, d),
                          QM_OK);
    const char *per = resolved(&c, 0);
    CU_ASSERT_EQUAL(count_words(per), 4 * 3);
    CU_ASSERT(strstr(per, "layers[0].experts[3].gate") && strstr(per, "layers[3].experts[3].down"));
    /* four experts share the top score: the two in the lowest layers win */
    CU_ASSERT_STRING_EQUAL(resolved(&c, 1),
                           "layers[0].experts[3].gate layers[0].experts[3].up layers[0].experts[3].down "
                           "layers[1].experts[3].gate layers[1].experts[3].up layers[1].experts[3].down");
    qm_cstate_free(&c);
    qm_diag_free(d);
}

static void test_override_fields(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o,
                                "default: 2bit group 64 asym\n"
                                "experts: 4bit\n"
                                "experts.down: group none\n"
                                "layers[0].experts[0].down: act_order\n"
                                "attn: +1bit\n",
                                0, d),
                          QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_c_run(&c), QM_OK);
    const qm_setting *s = setting(&c, "layers[0].experts[0].down");
    CU_ASSERT_EQUAL(s->bits, 4);      /* line 2 */
    CU_ASSERT_EQUAL(s->group, 0);     /* line 3: per channel */
    CU_ASSERT_EQUAL(s->sym, 0);       /* line 1: asym, untouched since */
    CU_ASSERT_EQUAL(s->act_order, 1); /* line 4 */
    char *r = qm_c_rule_text(&c, s->rule), *br = qm_c_rule_text(&c, s->bits_rule),
         *gr = qm_c_rule_text(&c, s->group_rule);
    CU_ASSERT(strstr(r, "p.qmoe:4") && strstr(br, "p.qmoe:2") && strstr(gr, "p.qmoe:3"));
    free(r), free(br), free(gr);
    s = setting(&c, "layers[1].experts[2].up");
    CU_ASSERT(s->bits == 4 && s->group == 64 && s->sym == 0 && s->act_order == 0);
    s = setting(&c, "layers[2].attn.k");
    CU_ASSERT(s->bits == 3 && s->group == 64 && s->sym == 0); /* 2 + 1 */
    /* untouched by any rule: kept */
    CU_ASSERT_EQUAL(setting(&c, "layers[0].router")->bits, QM_KEEP);
    CU_ASSERT_EQUAL(setting(&c, "lm_head")->bits, QM_KEEP);
    qm_cstate_free(&c);
    qm_diag_free(d);
}

static void test_budget_reaches_target(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o, "default: 2bit\nbudget 3.0 bits by frequency\n", 1, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_c_run(&c), QM_OK);
    /* 442368 params at 2 bits need 442368 more bits: 9 experts x 2 x 24576 */
    CU_ASSERT_EQUAL(c.has_budget, 1);
    CU_ASSERT_DOUBLE_EQUAL(c.budget_target, 3.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.budget_achieved, 3.0, 1e-12);
    char want[256], got[256] = "";
    /* highest shares first (experts 3, then 2, in every layer), then the tie
     * at 0.2 to the lowest layer */
    snprintf(want, sizeof want, "0.1 0.2 0.3 1.2 1.3 2.2 2.3 3.2 3.3 ");
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 4; e++) {
            char name[64];
            snprintf(name, sizeof name, "layers[%d].experts[%d].gate", l, e);
            const qm_setting *s = setting(&c, name);
            if (s && s->bits == 4)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%d.%d ", l, e);
            else
                CU_ASSERT_EQUAL(s ? s->bits : -1, 2);
        }
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_EQUAL(setting(&c, "layers[0].attn.q")->bits, 2); /* attention is not a unit */
    TU_ASSERT_DIAG(d, "note: budget: target 3.000 bits, achieved 3.000 (moved 9 routed experts from 2bit to "
                      "4bit by frequency)");
    qm_cstate_free(&c);
    qm_diag_free(d);
}

/* Two-sided: below the rules' widths every expert steps 4 -> 3 before the
 * lowest-scored step on to 2. */
static void test_budget_lowers(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o, "default: 4bit\nbudget 3.0 bits by frequency\n", 1, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_c_run(&c), QM_OK);
    /* 442368 x 4 - 393216 (16 experts to 3) - 2 x 24576 (two to 2) = 442368 x 3 */
    CU_ASSERT_DOUBLE_EQUAL(c.budget_achieved, 3.0, 1e-12);
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 4; e++) {
            char name[64];
            snprintf(name, sizeof name, "layers[%d].experts[%d].down", l, e);
            const qm_setting *x = setting(&c, name);
            /* the lowest share (expert 0) in the lowest layers goes to 2 */
            CU_ASSERT_EQUAL(x ? x->bits : -1, e == 0 && l < 2 ? 2 : 3);
        }
    CU_ASSERT_EQUAL(setting(&c, "layers[0].attn.q")->bits, 4);
    TU_ASSERT_DIAG(d, "note: budget: target 3.000 bits, achieved 3.000 (moved 16 routed experts from 4bit to "
                      "3bit, 2 from 3bit to 2bit by frequency)");
    qm_cstate_free(&c);
    qm_diag_free(d);
}

/* The scores file is read strictly: a key twice is refused, and numbers are
 * typed (a layer written 1.0 or a quoted count is not one). */
static void test_scores_refusals(void)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"qmoe_scores: 1\nfrequency:\n  0: [1, 2, 3, 4]\n  0: [4, 3, 2, 1]\n",
         "bad-scores.yaml:4:3: key '0' appears twice (first on line 3)"},
        {"qmoe_scores: 1\nfrequency:\n  1.0: [1, 2, 3, 4]\n",
         "bad-scores.yaml:3:3: frequency: expected LAYER: [counts] with LAYER in 0..3"},
        {"qmoe_scores: 1\nfrequency:\n  0: [1, '2', 3, 4]\n",
         "bad-scores.yaml:3:10: frequency: layer 0: the count of expert 1 is '2', not a finite number >= 0"},
        /* issue #13: values finite and in range, names the model's, identity, completeness */
        {"qmoe_scores: 1\nfrequency:\n  0: [1, .inf, 3, 4]\n",
         "bad-scores.yaml:3:10: frequency: layer 0: the count of expert 1 is '.inf', not a finite number >= 0"},
        {"qmoe_scores: 1\nimportance:\n  0: {ffn: .nan, residual: 0.5}\n",
         "bad-scores.yaml:3:12: importance: layer 0: ffn is '.nan', not a cosine in [-1, 1]"},
        {"qmoe_scores: 1\nimportance:\n  0: {ffn: 0.5, residual: -5}\n",
         "bad-scores.yaml:3:27: importance: layer 0: residual is '-5', not a cosine in [-1, 1]"},
        {"qmoe_scores: 1\noutlier:\n  layers[9].attn.q: 3\n",
         "bad-scores.yaml:3:3: outlier: 'layers[9].attn.q' is not a linear of"},
        {"qmoe_scores: 1\noutlier:\n  layers[0].attn.q: -1\n",
         "bad-scores.yaml:3:21: outlier: 'layers[0].attn.q' is '-1', not a score in [0, 64]"},
        {"qmoe_scores: 1\nmodel: {architecture: DeepseekForCausalLM}\n",
         "bad-scores.yaml:2:23: model: the scores were made for architecture 'DeepseekForCausalLM'"},
        {"qmoe_scores: 1\nmodel: {architecture: MixtralForCausalLM, layers: 4, experts: 4}\n"
         "frequency:\n  0: [1, 2, 3, 4]\n",
         "bad-scores.yaml: MoE layer 0 has no importance ffn scores; the file is incomplete"},
        {"qmoe_scores: 1\nfrequence: {}\n", "bad-scores.yaml:2:1: unknown key 'frequence'"},
        {"qmoe_scores: '1'\n", "bad-scores.yaml: qmoe_scores: unsupported version (this qmoe reads 1)"},
        {"qmoe_scores: 1\nfrequency: [\n", "bad-scores.yaml:3:1: invalid YAML: did not find expected node content"},
    };
    char ppath[1024], spath[1024];
    snprintf(ppath, sizeof ppath, "%s", tu_path("p.qmoe"));
    snprintf(spath, sizeof spath, "%s", tu_path("bad-scores.yaml"));
    CU_ASSERT_EQUAL_FATAL(tu_write(ppath, "default: 2bit\n", 14), 0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qm_diag *d = qm_diag_new();
        qm_cstate c;
        qm_compile_opts o = {.policy = ppath, .model = model_dir(), .scores = spath};
        CU_ASSERT_EQUAL_FATAL(tu_write(spath, cases[i].text, strlen(cases[i].text)), 0);
        CU_ASSERT_EQUAL(qm_c_start(&c, &o, d, 0), QM_EFORMAT);
        TU_ASSERT_DIAG(d, cases[i].message);
        qm_cstate_free(&c);
        qm_diag_free(d);
    }
}

static void test_budget_out_of_reach(void)
{
    qm_diag *d = qm_diag_new();
    qm_compile_opts o;
    qm_cstate c;
    CU_ASSERT_EQUAL_FATAL(start(&c, &o, "default: 2bit\nattn: 8bit\nbudget 2 bits by frequency\n", 1, d), QM_OK);
    CU_ASSERT_EQUAL(qm_c_run(&c), QM_EFORMAT);
    /* (49152 x 8 + 393216 x 2) / 442368 = 2.667 to 8 with every expert at 8 */
    TU_ASSERT_DIAG(d, "p.qmoe:3:8: error: budget 2 bits is out of reach: moving routed experts between 2bit and "
                      "8bit gives 2.667 to 8.000 bits");
    CU_ASSERT_EQUAL(qm_diag_errors(d), 1);
    qm_cstate_free(&c);
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("compiler", NULL, NULL);
    CU_add_test(s, "selectors resolve to exact tensor sets", test_resolve);
    CU_add_test(s, "picks break ties by rank; NAN never picked", test_pick_ties);
    CU_add_test(s, "top K by frequency through the resolver", test_select_by_scores);
    CU_add_test(s, "a later rule overrides only the fields it sets", test_override_fields);
    CU_add_test(s, "budget reaches its target, highest frequency first", test_budget_reaches_target);
    CU_add_test(s, "unreachable budget states the range", test_budget_out_of_reach);
    CU_add_test(s, "a budget below the rules' widths lowers in steps", test_budget_lowers);
    CU_add_test(s, "a damaged scores file is refused with the reason", test_scores_refusals);
    return tu_run();
}
