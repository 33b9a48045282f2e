/* test_lang.c: the policy front end's AST, spans, import search and
 * expansion.  Diagnostic texts are covered case by case by the golden tests
 * (tests/lang); here the structures the compiler reads are checked field by
 * field. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "tests/unit/testutil.h"

/* Parse text that must be good; NULL (and a failed assertion) otherwise. */
static qm_policy *parse_ok(const char *text)
{
    qm_diag *d = qm_diag_new();
    qm_policy *p = NULL;
    qm_status st = qm_policy_parse("t.qmoe", text, strlen(text), &p, d);
    if (st != QM_OK)
        fprintf(stderr, "\nparse failed:\n%s\n", tu_diag_all(d));
    CU_ASSERT_EQUAL(st, QM_OK);
    CU_ASSERT_EQUAL(qm_diag_count(d), 0);
    qm_diag_free(d);
    return p;
}

/* Does span sp of the policy's source read `want`? */
static int span_is(const qm_policy *p, qm_span sp, const char *want)
{
    size_t n = strlen(want);
    return sp.end - sp.begin == n && memcmp(p->src->text + sp.begin, want, n) == 0;
}

#define CU_ASSERT_SPAN(p, sp, want) CU_ASSERT(span_is((p), (sp), (want)))

static void test_design_card(void)
{
    qm_policy *p = parse_ok("shared_experts: 4bit; layers[0..3].attn: 8bit");
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_EQUAL_FATAL(p->n, 2);

    const qm_stmt *a = p->stmt[0];
    CU_ASSERT_EQUAL(a->kind, QM_STMT_RULE);
    CU_ASSERT_EQUAL(a->src, p->src);
    CU_ASSERT_SPAN(p, a->span, "shared_experts: 4bit");
    CU_ASSERT_EQUAL_FATAL(a->u.rule.nsel, 1);
    const qm_selector *s = &a->u.rule.sel[0];
    CU_ASSERT_EQUAL(s->scope, QM_SCOPE_NONE);
    CU_ASSERT_PTR_NULL(s->scope_index);
    CU_ASSERT_EQUAL_FATAL(s->nseg, 1);
    CU_ASSERT_EQUAL(s->seg[0].mod, QM_MOD_SHARED);
    CU_ASSERT_STRING_EQUAL(s->seg[0].text, "shared_experts");
    CU_ASSERT_SPAN(p, s->seg[0].span, "shared_experts");
    CU_ASSERT_PTR_NULL(s->seg[0].index);
    CU_ASSERT_EQUAL(a->u.rule.act.set, QM_SETS(QM_FIELD_WIDTH));
    CU_ASSERT_EQUAL(a->u.rule.act.bits, 4);
    CU_ASSERT_SPAN(p, a->u.rule.act.where[QM_FIELD_WIDTH], "4bit");
    CU_ASSERT_EQUAL_FATAL(a->u.rule.act.n, 1);
    CU_ASSERT_EQUAL(a->u.rule.act.v[0].kind, QM_ACT_WIDTH);

    const qm_stmt *b = p->stmt[1];
    CU_ASSERT_SPAN(p, b->span, "layers[0..3].attn: 8bit");
    s = &b->u.rule.sel[0];
    CU_ASSERT_SPAN(p, s->span, "layers[0..3].attn");
    CU_ASSERT_EQUAL(s->scope, QM_SCOPE_LAYERS);
    CU_ASSERT_STRING_EQUAL(s->scope_text, "layers");
    CU_ASSERT_SPAN(p, s->scope_span, "layers[0..3]");
    CU_ASSERT_FATAL(s->scope_index != NULL);
    CU_ASSERT_EQUAL(s->scope_index->kind, QM_INDEX_LIST);
    CU_ASSERT_SPAN(p, s->scope_index->span, "[0..3]");
    CU_ASSERT_EQUAL_FATAL(s->scope_index->u.list.n, 1);
    const qm_range *r = &s->scope_index->u.list.v[0];
    CU_ASSERT(r->lo == 0 && r->hi == 3 && !r->lo_open && !r->hi_open && !r->single);
    CU_ASSERT_EQUAL_FATAL(s->nseg, 1);
    CU_ASSERT_EQUAL(s->seg[0].mod, QM_MOD_ATTN);
    CU_ASSERT_SPAN(p, s->seg[0].span, "attn");
    CU_ASSERT_EQUAL(b->u.rule.act.bits, 8);
    qm_policy_free(p);
}

static void test_action_fields(void)
{
    qm_policy *p = parse_ok("attn: 4bit, group 128 asym no_act_order\n"
                            "experts.down: -2bit\n"
                            "router: keep group none\n"
                            "default: 2bit sym act_order");
    CU_ASSERT_FATAL(p != NULL && p->n == 4);
    const qm_actions *a = &p->stmt[0]->u.rule.act;
    CU_ASSERT_EQUAL(a->set, QM_SETS(QM_FIELD_WIDTH) | QM_SETS(QM_FIELD_GROUP) | QM_SETS(QM_FIELD_SYM) |
                                QM_SETS(QM_FIELD_ACT_ORDER));
    CU_ASSERT(a->bits == 4 && a->group == 128 && a->sym == 0 && a->act_order == 0);
    CU_ASSERT_SPAN(p, a->where[QM_FIELD_GROUP], "group 128");
    CU_ASSERT_SPAN(p, a->where[QM_FIELD_ACT_ORDER], "no_act_order");
    CU_ASSERT_EQUAL(a->n, 4);

    a = &p->stmt[1]->u.rule.act;
    CU_ASSERT_EQUAL(a->set, QM_SETS(QM_FIELD_DELTA));
    CU_ASSERT_EQUAL(a->delta, -2);
    const qm_selector *s = &p->stmt[1]->u.rule.sel[0];
    CU_ASSERT(s->nseg == 2 && s->seg[0].mod == QM_MOD_EXPERTS && s->seg[1].mod == QM_MOD_DOWN);

    a = &p->stmt[2]->u.rule.act;
    CU_ASSERT_EQUAL(a->set, QM_SETS(QM_FIELD_WIDTH) | QM_SETS(QM_FIELD_GROUP));
    CU_ASSERT(a->bits == QM_KEEP && a->group == 0);
    CU_ASSERT_EQUAL(a->v[1].kind, QM_ACT_GROUP_NONE);

    CU_ASSERT_EQUAL(p->stmt[3]->kind, QM_STMT_DEFAULT);
    CU_ASSERT_EQUAL(p->stmt[3]->u.rule.nsel, 0);
    a = &p->stmt[3]->u.rule.act;
    CU_ASSERT(a->bits == 2 && a->sym == 1 && a->act_order == 1);
    qm_policy_free(p);
}

static void test_index_specs(void)
{
    qm_policy *p = parse_ok("layers[-4.., ..2, 0, 5..7]: 4bit\n"
                            "experts[top 25% per layer by frequency]: 4bit\n"
                            "experts.*[random 8 seed 42], moe_layers[bottom 3 by importance_residual]: 4bit\n"
                            "experts[frequency >= 0.5], experts.down[outlier < -1.5]: 8bit\n");
    CU_ASSERT_FATAL(p != NULL && p->n == 4);
    const qm_index *ix = p->stmt[0]->u.rule.sel[0].scope_index;
    CU_ASSERT_FATAL(ix->kind == QM_INDEX_LIST && ix->u.list.n == 4);
    const qm_range *r = ix->u.list.v;
    CU_ASSERT(r[0].lo == -4 && !r[0].lo_open && r[0].hi_open);
    CU_ASSERT_SPAN(p, r[0].span, "-4..");
    CU_ASSERT(r[1].lo_open && r[1].hi == 2 && !r[1].hi_open);
    CU_ASSERT(r[2].single && r[2].lo == 0 && r[2].hi == 0);
    CU_ASSERT(r[3].lo == 5 && r[3].hi == 7 && !r[3].single);
    CU_ASSERT_EQUAL(p->stmt[0]->u.rule.sel[0].nseg, 0); /* a bare scope */

    ix = p->stmt[1]->u.rule.sel[0].seg[0].index;
    CU_ASSERT_FATAL(ix && ix->kind == QM_INDEX_PICK);
    CU_ASSERT(ix->u.pick.how == QM_PICK_TOP && ix->u.pick.is_percent && ix->u.pick.percent == 25.0);
    CU_ASSERT(ix->u.pick.per_layer && ix->u.pick.scorer == QM_SCORER_FREQUENCY);
    CU_ASSERT_SPAN(p, ix->u.pick.amount_span, "25%");
    CU_ASSERT_SPAN(p, ix->u.pick.scorer_span, "frequency");
    CU_ASSERT_SPAN(p, ix->span, "[top 25% per layer by frequency]");

    const qm_selector *s = &p->stmt[2]->u.rule.sel[0];
    CU_ASSERT(s->nseg == 2 && s->seg[1].mod == QM_MOD_ANY && s->seg[0].index == NULL);
    ix = s->seg[1].index;
    CU_ASSERT_FATAL(ix && ix->kind == QM_INDEX_PICK);
    CU_ASSERT(ix->u.pick.how == QM_PICK_RANDOM && !ix->u.pick.is_percent && ix->u.pick.count == 8);
    CU_ASSERT(ix->u.pick.seed == 42 && ix->u.pick.scorer == QM_SCORER_NONE && !ix->u.pick.per_layer);
    s = &p->stmt[2]->u.rule.sel[1];
    CU_ASSERT(s->scope == QM_SCOPE_MOE_LAYERS && s->nseg == 0);
    CU_ASSERT(s->scope_index->u.pick.how == QM_PICK_BOTTOM &&
              s->scope_index->u.pick.scorer == QM_SCORER_IMPORTANCE_RESIDUAL);

    ix = p->stmt[3]->u.rule.sel[0].seg[0].index;
    CU_ASSERT_FATAL(ix && ix->kind == QM_INDEX_THRESHOLD);
    CU_ASSERT(ix->u.threshold.scorer == QM_SCORER_FREQUENCY && ix->u.threshold.op == QM_CMP_GE &&
              ix->u.threshold.value == 0.5);
    ix = p->stmt[3]->u.rule.sel[1].seg[1].index;
    CU_ASSERT(ix->u.threshold.op == QM_CMP_LT && ix->u.threshold.value == -1.5);
    CU_ASSERT_SPAN(p, ix->u.threshold.value_span, "-1.5");
    qm_policy_free(p);
}

static void test_statements(void)
{
    /* a name that starts like a keyword is a name */
    qm_diag *d = qm_diag_new();
    qm_policy *p;
    CU_ASSERT_EQUAL(qm_policy_parse("t.qmoe", "budget_x: keep", 14, &p, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "t.qmoe:1:1: error: unknown selector 'budget_x'");
    qm_diag_free(d);
    p = parse_ok("import \"paper/attn-4bit\" # a comment\n"
                 "arch mixtral, olmoe\n"
                 "budget 3.25 bits by outlier\n");
    CU_ASSERT_FATAL(p != NULL && p->n == 3);
    CU_ASSERT_EQUAL(p->stmt[0]->kind, QM_STMT_IMPORT);
    CU_ASSERT_STRING_EQUAL(p->stmt[0]->u.import.name, "paper/attn-4bit");
    CU_ASSERT_SPAN(p, p->stmt[0]->u.import.name_span, "\"paper/attn-4bit\"");
    CU_ASSERT_EQUAL_FATAL(p->ncomment, 1);
    CU_ASSERT_SPAN(p, p->comment[0].span, "# a comment");
    const qm_stmt *a = p->stmt[1];
    CU_ASSERT_FATAL(a->kind == QM_STMT_ARCH && a->u.arch.n == 2);
    CU_ASSERT(a->u.arch.v[0].id == QM_FAMILY_MIXTRAL && a->u.arch.v[1].id == QM_FAMILY_OLMOE);
    CU_ASSERT_SPAN(p, a->u.arch.v[1].span, "olmoe");
    const qm_stmt *b = p->stmt[2];
    CU_ASSERT(b->kind == QM_STMT_BUDGET && b->u.budget.bits == 3.25 && b->u.budget.by == QM_SCORER_OUTLIER);
    CU_ASSERT_SPAN(p, b->u.budget.bits_span, "3.25");
    CU_ASSERT_STRING_EQUAL(qm_scorer_name(b->u.budget.by), "outlier");
    CU_ASSERT_STRING_EQUAL(qm_family_name(QM_FAMILY_QWEN3MOE), "qwen3moe");
    CU_ASSERT_STRING_EQUAL(qm_module_name(QM_MOD_SHARED), "shared");
    qm_policy_free(p);
    /* engine names are dotted words the compiler checks; `fit` may follow */
    p = parse_ok("engine llama.cpp fit\nengine vllm\n");
    CU_ASSERT_FATAL(p != NULL && p->n == 2);
    CU_ASSERT(p->stmt[0]->kind == QM_STMT_ENGINE && p->stmt[0]->u.engine.fit == 1);
    CU_ASSERT_STRING_EQUAL(p->stmt[0]->u.engine.name, "llama.cpp");
    CU_ASSERT_SPAN(p, p->stmt[0]->u.engine.name_span, "llama.cpp");
    CU_ASSERT_SPAN(p, p->stmt[0]->u.engine.fit_span, "fit");
    CU_ASSERT(p->stmt[1]->kind == QM_STMT_ENGINE && p->stmt[1]->u.engine.fit == 0);
    CU_ASSERT_STRING_EQUAL(p->stmt[1]->u.engine.name, "vllm");
    qm_policy_free(p);
    d = qm_diag_new();
    CU_ASSERT_EQUAL(qm_policy_parse("t.qmoe", "engine vllm now", 15, &p, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "t.qmoe:1:13: error: 'now' after the engine's name; only 'fit' may follow it");
    qm_diag_free(d);
    d = qm_diag_new();
    CU_ASSERT_EQUAL(qm_policy_parse("t.qmoe", "engine\n", 7, &p, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "t.qmoe:1:7: error: unexpected end of file; expected a name");
    qm_diag_free(d);
}

static void test_positions(void)
{
    const char text[] = "a: 4bit\n\tb: 8bit\n";
    qm_source src = {.path = "x.qmoe", .text = text, .len = sizeof text - 1};
    size_t line, col;
    qm_source_linecol(&src, 0, &line, &col);
    CU_ASSERT(line == 1 && col == 1);
    qm_source_linecol(&src, 9, &line, &col); /* 'b' after a tab */
    CU_ASSERT(line == 2 && col == 2);
    qm_source_linecol(&src, src.len, &line, &col); /* end of file: end of the last line */
    CU_ASSERT(line == 2 && col == 9);
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL(qm_source_diag(d, QM_SEV_WARNING, &src, (qm_span){12, 16}, "rule matches %s", "nothing"),
                    QM_OK);
    CU_ASSERT_EQUAL(qm_source_diag(d, QM_SEV_ERROR, &src, (qm_span){0, 1}, "bad"), QM_EFORMAT);
    CU_ASSERT_EQUAL_FATAL(qm_diag_count(d), 2);
    CU_ASSERT_STRING_EQUAL(qm_diag_text(d, 0), "rule matches nothing");
    const qm_diag_loc *at = qm_diag_location(d, 0);
    CU_ASSERT_FATAL(at != NULL);
    CU_ASSERT_STRING_EQUAL(at->file, "x.qmoe");
    CU_ASSERT(at->line == 2 && at->col == 5);
    qm_buf b = {0};
    qm_diag_format(d, 0, "qmoe", &b);
    qm_diag_format(d, 1, "qmoe", &b);
    CU_ASSERT_STRING_EQUAL(b.s, "x.qmoe:2:5: warning: rule matches nothing\n\tb: 8bit\n\t   ^~~~\n"
                                "x.qmoe:1:1: error: bad\na: 4bit\n^\n");
    free(b.s);
    qm_diag_free(d);
}

static void test_failure(void)
{
    static const char text[] = "attn: 4bit\0 keep"; /* a NUL inside */
    qm_diag *d = qm_diag_new();
    static qm_policy dummy;
    qm_policy *p = &dummy; /* must be cleared */
    CU_ASSERT_EQUAL(qm_policy_parse("n.qmoe", text, sizeof text - 1, &p, d), QM_EFORMAT);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(qm_diag_errors(d), 1);
    TU_ASSERT_DIAG(d, "n.qmoe:1:11: error: unexpected byte 0x00");
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_policy_parse_file(tu_path("absent.qmoe"), &p, d), QM_ENOTFOUND);
    TU_ASSERT_DIAG(d, "absent.qmoe: error: cannot open: ");
    qm_diag_free(d);
}

/* ---- imports ---------------------------------------------------------------- */

static void put(const char *rel, const char *text)
{
    CU_ASSERT_EQUAL(tu_write(tu_path(rel), text, strlen(text)), 0);
}

static const char *ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0 ? s : NULL;
}

static void test_search_order(void)
{
    tu_mkdir("inc");
    tu_mkdir("env1");
    tu_mkdir("env2");
    tu_mkdir("std");
    tu_mkdir("std/paper");
    put("inc/x.qmoe", "attn: 4bit\n");
    put("env2/x.qmoe", "attn: 8bit\n");
    put("env2/y.qmoe", "attn: 8bit\n");
    put("std/x.qmoe", "attn: 2bit\n");
    put("std/y.qmoe", "attn: 2bit\n");
    put("std/paper/z.qmoe", "attn: 2bit\n");
    char env[2048];
    snprintf(env, sizeof env, "%s::%s", tu_path("env1"), tu_path("env2"));
    const char *dirs[] = {tu_path("nothere"), tu_path("inc")};
    qm_search s = {.dirs = dirs, .n_dirs = 2, .path_env = env, .stdlib = tu_path("std")};
    char *path, *looked;

    CU_ASSERT_EQUAL(qm_policy_find_import("x", ".", &s, &path, &looked), QM_OK); /* -I first */
    CU_ASSERT(path && ends_with(path, "/inc/x.qmoe"));
    free(path);
    CU_ASSERT_EQUAL(qm_policy_find_import("y.qmoe", ".", &s, &path, NULL), QM_OK); /* then the path */
    CU_ASSERT(path && ends_with(path, "/env2/y.qmoe"));
    free(path);
    s.n_dirs = 0;
    s.path_env = "";
    CU_ASSERT_EQUAL(qm_policy_find_import("paper/z", ".", &s, &path, NULL), QM_OK); /* then the stdlib */
    CU_ASSERT(path && ends_with(path, "/std/paper/z.qmoe"));
    free(path);

    /* $QMOE_PATH when the caller gives no list */
    CU_ASSERT_EQUAL(setenv("QMOE_PATH", env, 1), 0);
    s.path_env = NULL;
    CU_ASSERT_EQUAL(qm_policy_find_import("x", ".", &s, &path, NULL), QM_OK);
    CU_ASSERT(path && ends_with(path, "/env2/x.qmoe"));
    free(path);
    unsetenv("QMOE_PATH");

    /* relative to the importing file; absolute */
    CU_ASSERT_EQUAL(qm_policy_find_import("./x", tu_path("inc"), &s, &path, NULL), QM_OK);
    CU_ASSERT(path && ends_with(path, "/inc/x.qmoe"));
    free(path);
    CU_ASSERT_EQUAL(qm_policy_find_import(tu_path("std/x"), ".", &s, &path, NULL), QM_OK);
    CU_ASSERT(path && ends_with(path, "/std/x.qmoe"));
    free(path);

    /* not found: where it looked, in order */
    s.dirs = dirs;
    s.n_dirs = 1;
    s.path_env = tu_path("env1");
    CU_ASSERT_EQUAL(qm_policy_find_import("nope", ".", &s, &path, &looked), QM_ENOTFOUND);
    CU_ASSERT_PTR_NULL(path);
    char want[4096];
    snprintf(want, sizeof want, "%s, %s, %s", tu_path("nothere"), tu_path("env1"), tu_path("std"));
    CU_ASSERT_STRING_EQUAL(looked, want);
    free(looked);
}

static void test_expand(void)
{
    tu_mkdir("exp");
    put("exp/root.qmoe", "default: 2bit\nimport \"a\"\nattn: 8bit\nimport \"./b\"\n");
    put("exp/a.qmoe", "import \"b\"\nexperts: 3bit\n");
    put("exp/b.qmoe", "shared: 4bit; budget 3 bits\n");
    const char *dirs[] = {tu_path("exp")};
    qm_search s = {.dirs = dirs, .n_dirs = 1, .path_env = "", .stdlib = tu_path("nostd")};
    qm_diag *d = qm_diag_new();
    qm_policy *p;
    CU_ASSERT_EQUAL_FATAL(qm_policy_parse_file(tu_path("exp/root.qmoe"), &p, d), QM_OK);
    /* b is imported twice (not a cycle), so it brings two budgets */
    CU_ASSERT_EQUAL(qm_policy_expand(p, &s, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "error: a second budget; the first is at ");
    /* the statements in order, each with its own file */
    static const qm_stmt_kind kinds[] = {QM_STMT_DEFAULT, QM_STMT_RULE,   QM_STMT_BUDGET, QM_STMT_RULE,
                                         QM_STMT_RULE,    QM_STMT_RULE,   QM_STMT_BUDGET};
    static const char *const files[] = {"root", "b", "b", "a", "root", "b", "b"};
    CU_ASSERT_EQUAL_FATAL(p->n, 7);
    for (size_t i = 0; i < p->n; i++) {
        char tail[32];
        snprintf(tail, sizeof tail, "/%s.qmoe", files[i]);
        CU_ASSERT_EQUAL(p->stmt[i]->kind, kinds[i]);
        CU_ASSERT(ends_with(p->stmt[i]->src->path, tail) != NULL);
    }
    CU_ASSERT_EQUAL(p->stmt[3]->u.rule.act.bits, 3);
    qm_policy_free(p);
    qm_diag_free(d);
}

static void test_cycle(void)
{
    tu_mkdir("cyc");
    put("cyc/a.qmoe", "import \"b\"\n");
    put("cyc/b.qmoe", "attn: 4bit\nimport \"c\"\n");
    put("cyc/c.qmoe", "import \"a\"\n");
    const char *dirs[] = {tu_path("cyc")};
    qm_search s = {.dirs = dirs, .n_dirs = 1, .path_env = "", .stdlib = tu_path("nostd")};
    qm_diag *d = qm_diag_new();
    qm_policy *p;
    CU_ASSERT_EQUAL_FATAL(qm_policy_parse_file(tu_path("cyc/a.qmoe"), &p, d), QM_OK);
    CU_ASSERT_EQUAL(qm_policy_expand(p, &s, d), QM_EFORMAT);
    char want[4096];
    snprintf(want, sizeof want, "%s:1:8: error: import cycle: %s -> %s -> %s -> %s", tu_path("cyc/c.qmoe"),
             tu_path("cyc/a.qmoe"), tu_path("cyc/b.qmoe"), tu_path("cyc/c.qmoe"), tu_path("cyc/a.qmoe"));
    TU_ASSERT_DIAG(d, want);
    TU_ASSERT_DIAG(d, "b.qmoe:2:8: note: in the policy imported here");
    CU_ASSERT_EQUAL(qm_diag_errors(d), 1);
    qm_policy_free(p);
    qm_diag_free(d);
}

/* Formatting is a fixed point after one step, comments included. */
static void test_format(void)
{
    static const char *const cases[][2] = {
        {"a:4bit", NULL}, /* unknown selector: fails */
        {"attn:4bit,keep", NULL},
        {"attn:4bit;router:keep", "attn: 4bit\nrouter: keep\n"},
        {"#c\n\n\n  attn :8bit#d\n", "#c\n\nattn: 8bit  #d\n"},
        {"experts[ 0 , 2 .. ] .down:-1bit", "experts[0, 2..].down: -1bit\n"},
        {"experts[0]\n.down: 4bit", NULL}, /* a new line after ']' ends the statement */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qm_diag *d = qm_diag_new();
        qm_policy *p;
        qm_status st = qm_policy_parse("f.qmoe", cases[i][0], strlen(cases[i][0]), &p, d);
        CU_ASSERT_EQUAL(st, cases[i][1] ? QM_OK : QM_EFORMAT);
        if (st == QM_OK) {
            char *out;
            size_t len;
            CU_ASSERT_EQUAL_FATAL(qm_policy_format(p, &out, &len), QM_OK);
            CU_ASSERT_STRING_EQUAL(out, cases[i][1]);
            CU_ASSERT_EQUAL(len, strlen(cases[i][1]));
            free(out);
            qm_policy_free(p);
        }
        qm_diag_free(d);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("AST", NULL, NULL);
    CU_add_test(s, "the design card's example", test_design_card);
    CU_add_test(s, "action fields and their flags", test_action_fields);
    CU_add_test(s, "index lists, picks, thresholds", test_index_specs);
    CU_add_test(s, "import, arch, budget", test_statements);
    CU_add_test(s, "line, column and the message format", test_positions);
    CU_add_test(s, "a failed parse leaves nothing", test_failure);
    CU_add_test(s, "formatting", test_format);
    s = CU_add_suite("imports", NULL, NULL);
    CU_add_test(s, "-I, then QMOE_PATH, then the stdlib", test_search_order);
    CU_add_test(s, "expansion in place", test_expand);
    CU_add_test(s, "a cycle shows its chain", test_cycle);
    return tu_run();
}
