/* test_plan.c: plan files: summary arithmetic, write/read round trip, and
 * validated reading (each bad plan names the line and the problem). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/plan.h"
#include "tests/unit/testutil.h"

/* A string of plan p (the tests' plans are `p` throughout). */
#define S(s) qm_arena_strdup(&p->strings, (s))

static qm_plan *sample(void)
{
    qm_plan *p = calloc(1, sizeof *p);
    p->policy_path = S("p.qmoe");
    p->policy_sha256 = S("aa");
    p->arch = S("MixtralForCausalLM");
    p->config_sha256 = S("bb");
    p->n = 3;
    p->t = calloc(3, sizeof *p->t);
    /* attention 4096 x 4096 at 4 bits, group 128; an expert 14336 x 4096 at 2 bits per
     * channel; a norm kept */
    p->t[0] = (qm_plan_tensor){S("q"), S("layers[0].attn.q"), 2, {4096, 4096}, QM_DT_BF16, 4, 128, 1, 0, S("p.qmoe:2")};
    p->t[1] = (qm_plan_tensor){S("w1"), S("layers[0].experts[0].gate"), 2, {14336, 4096}, QM_DT_BF16, 2, 0, 1, 1, S("p.qmoe:1")};
    p->t[2] = (qm_plan_tensor){S("n"), S("layers[0].attn_norm"), 1, {4096, 0}, QM_DT_BF16, 0, 0, 0, 0, S("default")};
    qm_plan_summarize(p);
    return p;
}

static void test_summary(void)
{
    qm_plan *p = sample();
    double a = 4096.0 * 4096, e = 14336.0 * 4096;
    CU_ASSERT_EQUAL(p->summary.quantized_params, (uint64_t)(a + e));
    CU_ASSERT_EQUAL(p->summary.kept_params, 4096);
    CU_ASSERT_DOUBLE_EQUAL(p->summary.average_bits, (4 * a + 2 * e) / (a + e), 1e-12);
    /* 4-bit g128: 4 + (16 + 4) / 128 + 32 / 4096 bits per weight = 4.16406 */
    double eff_a = 4 + 20.0 / 128 + 32.0 / 4096, eff_e = 2 + 18.0 / 4096 + 32.0 / 14336;
    CU_ASSERT_DOUBLE_EQUAL(p->summary.effective_bits, (eff_a * a + eff_e * e) / (a + e), 1e-9);
    CU_ASSERT_EQUAL(p->summary.by_bits[4], 1);
    CU_ASSERT_EQUAL(p->summary.by_bits[2], 1);
    CU_ASSERT_EQUAL(p->summary.by_bits[0], 1);
    CU_ASSERT_EQUAL(p->summary.bytes_before, (uint64_t)(2 * (a + e) + 2 * 4096));
    qm_plan_free(p);
}

static void test_roundtrip(void)
{
    qm_diag *d = qm_diag_new();
    qm_plan *p = sample(), *q;
    CU_ASSERT_EQUAL_FATAL(qm_plan_write(p, tu_path("plan.yaml"), d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_plan_read(tu_path("plan.yaml"), &q, d), QM_OK);
    CU_ASSERT_EQUAL(q->n, 3);
    CU_ASSERT_STRING_EQUAL(q->t[1].module, "layers[0].experts[0].gate");
    CU_ASSERT_EQUAL(q->t[1].bits, 2);
    CU_ASSERT_EQUAL(q->t[1].act_order, 1);
    CU_ASSERT_EQUAL(q->t[2].bits, 0);
    CU_ASSERT_EQUAL(q->t[0].group, 128);
    CU_ASSERT_STRING_EQUAL(q->t[0].rule, "p.qmoe:2");
    CU_ASSERT_PTR_NULL(q->scores_sha256);
    CU_ASSERT_DOUBLE_EQUAL(q->summary.average_bits, p->summary.average_bits, 1e-12);
    /* byte-identical when written again */
    CU_ASSERT_EQUAL_FATAL(qm_plan_write(q, tu_path("plan2.yaml"), d), QM_OK);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", tu_path("plan.yaml"), tu_path("plan2.yaml"));
    CU_ASSERT_EQUAL(system(cmd), 0);
    qm_plan_free(p);
    qm_plan_free(q);
    qm_diag_free(d);
}

/* The whole of a small file as a string; caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *b = f ? calloc(1, 1 << 16) : NULL;
    if (b)
        fread(b, 1, (1 << 16) - 1, f);
    if (f)
        fclose(f);
    return b;
}

/* A plan made under `budget X bits` carries target and achieved in its
 * summary, right after the averages, and survives the round trip. */
static void test_budget_keys(void)
{
    qm_diag *d = qm_diag_new();
    qm_plan *p = sample(), *q = NULL;
    CU_ASSERT_FALSE(p->summary.has_budget);
    p->summary.has_budget = 1;
    p->summary.budget_target_bits = 2.5;
    p->summary.budget_achieved_bits = p->summary.average_bits;
    qm_plan_summarize(p); /* keeps the budget */
    CU_ASSERT_EQUAL(p->summary.has_budget, 1);
    CU_ASSERT_DOUBLE_EQUAL(p->summary.budget_target_bits, 2.5, 0);
    CU_ASSERT_EQUAL_FATAL(qm_plan_write(p, tu_path("budget.yaml"), d), QM_OK);
    char *text = slurp(tu_path("budget.yaml"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    /* average (4 x 4096 + 2 x 14336) / (4096 + 14336) = 2.4444 */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "  average_bits: 2.4444\n  effective_bits: 2.4861\n"
                                        "  budget_target_bits: 2.5000\n  budget_achieved_bits: 2.4444\n"
                                        "  quantized_params: "));
    free(text);
    CU_ASSERT_EQUAL_FATAL(qm_plan_read(tu_path("budget.yaml"), &q, d), QM_OK);
    CU_ASSERT_EQUAL(q->summary.has_budget, 1);
    CU_ASSERT_DOUBLE_EQUAL(q->summary.budget_target_bits, 2.5, 0);
    CU_ASSERT_DOUBLE_EQUAL(q->summary.budget_achieved_bits, 2.4444, 1e-12);
    qm_plan_free(q);
    qm_plan_free(p);
    /* without a budget, no budget keys */
    p = sample();
    CU_ASSERT_EQUAL_FATAL(qm_plan_write(p, tu_path("nobudget.yaml"), d), QM_OK);
    qm_plan_free(p);
    text = slurp(tu_path("nobudget.yaml"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_PTR_NULL(strstr(text, "budget"));
    free(text);
    qm_diag_free(d);
}

/* The bytes fn writes for p. */
static char *emitted(qm_status (*fn)(const qm_plan *, FILE *, qm_diag *), const qm_plan *p, qm_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qm_diag *d = qm_diag_new();
    *st = fn(p, f, d);
    fclose(f);
    qm_diag_free(d);
    return buf;
}

/* The direct writer prints what libyaml's emitter does, for strings built
 * from pieces that change YAML's choice (indicators first, inside and
 * last, document markers, words and numbers YAML would type), in block
 * (policy path, architecture) and flow (name, module, rule) context. */
static void test_direct_equals_libyaml(void)
{
    static const char *const piece[] = {"a", "model.layers.0", "-", "--", ".", "..", ":", "[", "]", "0",
                                        "1.5", "e5", "x", "/", "_", "true", "no", "y", "null", "-1", "[0]"};
    size_t np = sizeof piece / sizeof *piece, same = 0, direct = 0, total = 0;
    qm_plan *p = sample();
    /* "n" reads as false in YAML 1.1: libyaml's path */
    p->t[2].name = S("norm");
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b <= np; b++)
            for (size_t c = 0; c <= np; c += b == np ? np + 1 : 1) {
                char str[64];
                snprintf(str, sizeof str, "%s%s%s", piece[a], b < np ? piece[b] : "", b < np && c < np ? piece[c] : "");
                char *keep[5] = {p->t[0].name, p->t[1].module, p->t[2].rule, p->policy_path, p->arch};
                p->t[0].name = p->t[1].module = p->t[2].rule = p->policy_path = p->arch = str;
                qm_status s1, s2;
                char *x = emitted(qm_plan_emit_libyaml, p, &s1), *y = emitted(qm_plan_emit_direct, p, &s2);
                p->t[0].name = keep[0], p->t[1].module = keep[1], p->t[2].rule = keep[2];
                p->policy_path = keep[3], p->arch = keep[4];
                total++;
                CU_ASSERT_EQUAL(s1, QM_OK);
                if (s2 == QM_OK) {
                    direct++;
                    if (strcmp(x, y) == 0)
                        same++;
                    else
                        fprintf(stderr, "\n'%s': libyaml and direct output differ:\n%s---\n%s", str, x, y);
                } else {
                    CU_ASSERT_EQUAL(s2, QM_EINVAL);
                    CU_ASSERT_EQUAL(*y, '\0'); /* nothing written */
                }
                free(x);
                free(y);
            }
    CU_ASSERT_EQUAL(same, direct);
    CU_ASSERT(direct > total / 2); /* most cases took the direct path */
    /* with a budget and scores too */
    p->summary.has_budget = 1;
    p->summary.budget_target_bits = 2.5;
    p->summary.budget_achieved_bits = p->summary.average_bits;
    p->scores_path = S("s.yaml");
    p->scores_sha256 = S("0123abcd");
    qm_status s1, s2;
    char *x = emitted(qm_plan_emit_libyaml, p, &s1), *y = emitted(qm_plan_emit_direct, p, &s2);
    CU_ASSERT(s1 == QM_OK && s2 == QM_OK && strcmp(x, y) == 0);
    free(x);
    free(y);
    /* and imports: their names in flow context ("a:b" is quoted there) */
    static const char *const names[] = {"paper/attn-4bit", "sub/b", "a:b", "true"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        p->imports = realloc(p->imports, 2 * sizeof *p->imports);
        p->imports[0] = (qm_plan_import){S("ladder/2-shared"), S("0962c1")};
        p->imports[1] = (qm_plan_import){S(names[i]), S("9ce816")};
        p->nimports = 2;
        x = emitted(qm_plan_emit_libyaml, p, &s1), y = emitted(qm_plan_emit_direct, p, &s2);
        CU_ASSERT_EQUAL(s1, QM_OK);
        CU_ASSERT(s2 == QM_EINVAL || strcmp(x, y) == 0);
        CU_ASSERT(i >= 2 || s2 == QM_OK);
        if (i == 0)
            CU_ASSERT_PTR_NOT_NULL(strstr(x, "  sha256: aa\n  imports:\n  - {name: ladder/2-shared, sha256: 0962c1}\n"
                                            "  - {name: paper/attn-4bit, sha256: 9ce816}\nmodel:\n"));
        free(x);
        free(y);
    }
    /* a path with a space goes through libyaml */
    p->policy_path = S("my policy.qmoe");
    y = emitted(qm_plan_emit_direct, p, &s2);
    CU_ASSERT_EQUAL(s2, QM_EINVAL);
    free(y);
    qm_plan_free(p);
}

static void check_bad(const char *text, const char *expect)
{
    qm_diag *d = qm_diag_new();
    qm_plan *q = NULL;
    CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("bad.yaml"), text, strlen(text)), 0);
    CU_ASSERT_NOT_EQUAL(qm_plan_read(tu_path("bad.yaml"), &q, d), QM_OK);
    CU_ASSERT_PTR_NULL(q);
    TU_ASSERT_DIAG(d, expect);
    qm_diag_free(d);
}

/* check_bad() on head and a tensor list of one tensor with these fields. */
static void check_bad_tensor(const char *head, const char *fields, const char *expect)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%stensors:\n- {%s}\n", head, fields);
    check_bad(buf, expect);
}

static void test_bad_plans(void)
{
    const char *head = "qmoe_plan: 1\npolicy: {path: p, sha256: a}\nmodel: {architecture: X, config_sha256: b}\n"
                       "scores: null\n";
    char buf[1024];
    check_bad("a: [1", "bad.yaml:2:1: invalid YAML");
    check_bad("- 1\n", "bad.yaml:1:1: plan: the document is not a mapping");
    check_bad("x: 1\n", "no 'qmoe_plan' version: not a qmoe plan");
    check_bad("qmoe_plan: 9\n", "bad.yaml:1:12: plan: has a format version this qmoe does not read");
    check_bad("qmoe_plan: 1\npolicy: {path: p}\n", "bad.yaml:2:9: policy needs 'sha256'");
    snprintf(buf, sizeof buf, "%stensors: 3\n", head);
    check_bad(buf, "bad.yaml:5:10: plan: 'tensors' must be a list");
    snprintf(buf, sizeof buf, "%stensors:\n- {name: a, module: m, rule: r, shape: [4, 8], dtype: BF16, bits: 6, "
                              "group_size: 0, sym: true, act_order: false}\n", head);
    check_bad(buf, "bad.yaml:6:67: tensors[0] bits must be 2, 3, 4, 5, 8 or keep");
    snprintf(buf, sizeof buf, "%stensors:\n- {name: a, module: m, rule: r, shape: [4, 8], dtype: BF16, bits: 4, "
                              "group_size: 3, sym: true, act_order: false}\n", head);
    check_bad(buf, "tensors[0] group_size 3 must be 0 (per channel) or divide the input columns 8 of shape [4, 8]");
    snprintf(buf, sizeof buf, "%stensors:\n- {name: a, rule: r, shape: [4, 8], dtype: BF16, bits: 4, "
                              "group_size: 0, sym: true, act_order: false}\n", head);
    check_bad(buf, "bad.yaml:6:3: tensors[0] needs 'module'");
    snprintf(buf, sizeof buf, "%stensors:\n- {name: a, module: m, rule: r, shape: [4], dtype: BF16, bits: 4, "
                              "group_size: 0, sym: yes, act_order: false}\n", head);
    check_bad(buf, "tensors[0] sym and act_order must be true or false");
    snprintf(buf, sizeof buf, "%stensors:\n- {name: a, module: m, rule: r, shape: [4], dtype: BF16, bits: 4, "
                              "group_size: 0, sym: true, act_order: false}\n", head);
    check_bad(buf, "tensors[0] only 2-D tensors can be quantized");
    check_bad("", "bad.yaml: empty, not a qmoe plan");
    /* budget keys: both or neither, a target in range, the achieved value the tensors' average */
    const char *tensor = "tensors:\n- {name: a, module: m, rule: r, shape: [4, 8], dtype: BF16, bits: 4, "
                         "group_size: 0, sym: true, act_order: false}\n";
    snprintf(buf, sizeof buf, "%ssummary: {budget_target_bits: 3.0}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:31: summary: budget_target_bits and budget_achieved_bits go together");
    snprintf(buf, sizeof buf, "%ssummary: {budget_target_bits: 9, budget_achieved_bits: 4.0}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:31: summary: budget_target_bits must be a number from 2 to 8");
    snprintf(buf, sizeof buf, "%ssummary: {budget_target_bits: 3, budget_achieved_bits: x}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:56: summary: budget_achieved_bits must be a number");
    snprintf(buf, sizeof buf, "%ssummary: {budget_target_bits: 3, budget_achieved_bits: 3.0}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:56: summary: budget_achieved_bits 3.0000 is not the tensors' average_bits 4.0000");
    /* a key twice is refused where it repeats, not read as one or the other */
    check_bad_tensor(head, "name: a, module: m, rule: r, name: b, shape: [4, 8], dtype: BF16, bits: 4, group_size: 0, "
                     "sym: true, act_order: false", "bad.yaml:6:33: key 'name' appears twice (first on line 6)");
    /* numbers and booleans are typed: quoted, they are strings */
    check_bad("qmoe_plan: '1'\n", "bad.yaml:1:1: plan: no 'qmoe_plan' version: not a qmoe plan");
    check_bad_tensor(head, "name: a, module: m, rule: r, shape: [4, 8], dtype: BF16, bits: '4', group_size: 0, "
                     "sym: true, act_order: false", "bad.yaml:6:67: tensors[0] bits must be 2, 3, 4, 5, 8 or keep");
    check_bad_tensor(head, "name: a, module: m, rule: r, shape: [\"4\", 8], dtype: BF16, bits: 4, group_size: 0, "
                     "sym: true, act_order: false", "bad.yaml:6:40: tensors[0] shape must be a list of 1 or 2 sizes");
    check_bad_tensor(head, "name: a, module: m, rule: r, shape: [4, 8], dtype: BF16, bits: 4, group_size: 0, "
                     "sym: 'true', act_order: false",
                     "bad.yaml:6:3: tensors[0] sym and act_order must be true or false");
    snprintf(buf, sizeof buf, "%ssummary: {quantized_params: \"32\"}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:29: summary: quantized_params is not a number, but the tensors listed add up to 32 (a plan cut short?)");
    snprintf(buf, sizeof buf, "%ssummary: {budget_target_bits: '3', budget_achieved_bits: 4.0}\n%s", head, tensor);
    check_bad(buf, "bad.yaml:5:31: summary: budget_target_bits must be a number from 2 to 8");
}

/* A written plan cut short anywhere (at a line end too, which is still
 * valid YAML) is refused: the summary's counts no longer add up. */
static void test_cut_plans(void)
{
    qm_diag *d = qm_diag_new();
    qm_plan *p = sample(), *q = NULL;
    const char *path = tu_path("whole.yaml");
    CU_ASSERT_EQUAL_FATAL(qm_plan_write(p, path, d), QM_OK);
    FILE *f = fopen(path, "rb");
    char text[4096];
    size_t n = fread(text, 1, sizeof text, f);
    fclose(f);
    const char *tensors = strstr(text, "\ntensors:\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tensors);
    size_t refused = 0, tried = 0;
    CU_ASSERT_EQUAL_FATAL(text[n - 1], '\n'); /* without it the plan is whole */
    for (size_t cut = 0; cut < n - 1; cut++) {
        CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("cut.yaml"), text, cut), 0);
        qm_status st = qm_plan_read(tu_path("cut.yaml"), &q, d);
        tried++;
        if (st != QM_OK) {
            refused++;
        } else {
            fprintf(stderr, "\nplan cut at byte %zu of %zu was read\n", cut, n);
            qm_plan_free(q);
        }
        qm_diag_clear(d);
    }
    CU_ASSERT_EQUAL(refused, tried);
    /* the error says why at a line end within the tensor list */
    size_t at = (size_t)(strchr(tensors + 10, '\n') - text) + 1; /* after the first tensor */
    CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("cut.yaml"), text, at), 0);
    CU_ASSERT_NOT_EQUAL(qm_plan_read(tu_path("cut.yaml"), &q, d), QM_OK);
    TU_ASSERT_DIAG(d, "but the tensors listed add up to");
    TU_ASSERT_DIAG(d, "(a plan cut short?)");
    qm_plan_free(p);
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("plan", NULL, NULL);
    CU_add_test(s, "summary: average and effective bits", test_summary);
    CU_add_test(s, "write, read, write again: identical", test_roundtrip);
    CU_add_test(s, "bad plans name line and problem", test_bad_plans);
    CU_add_test(s, "a plan cut short is refused", test_cut_plans);
    CU_add_test(s, "budget target and achieved in the summary", test_budget_keys);
    CU_add_test(s, "direct output is libyaml's, byte for byte", test_direct_equals_libyaml);
    return tu_run();
}
