/* test_matrix.c: the bench's pieces that need no model: the Pareto front,
 * row order, the run record's round trip and its refusals, the Markdown and
 * SVG writers.  tests/bench.sh runs the whole bench. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matrix/matrix.h"
#include "testutil.h"

static qm_matrix_row row(const char *name, double bits, double kld)
{
    qm_matrix_row r = {0};
    r.name = qm_strdup(name);
    r.path = qm_strfmt("pol/%s.qmoe", name);
    r.average_bits = bits;
    r.effective_bits = bits + 0.5;
    r.ev.kld_mean = kld;
    r.ev.has_base = 1;
    return r;
}

static void test_pareto(void)
{
    /* b at (2.5, 0.3) is dominated by a (2.5, 0.2); d (3.0, 0.2) by a (fewer
     * bits, equal KLD); e ties c exactly, so neither dominates the other */
    qm_matrix_row r[] = {row("a", 2.5, 0.2), row("b", 2.5, 0.3), row("c", 2.0, 0.9), row("d", 3.0, 0.2),
                         row("e", 2.0, 0.9), row("f", 4.0, 0.01)};
    size_t n = sizeof r / sizeof *r;
    qm_matrix_pareto(r, n);
    const int want[] = {1, 0, 1, 0, 1, 1};
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_EQUAL(r[i].pareto, want[i]);
    qm_matrix_sort(r, n);
    const char *order[] = {"c", "e", "a", "b", "d", "f"};
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_STRING_EQUAL(r[i].name, order[i]);
    for (size_t i = 0; i < n; i++)
        qm_matrix_row_free(&r[i]);
}

static void test_record_roundtrip(void)
{
    qm_diag *d = qm_diag_new();
    qm_matrix_row r = row("attn: \"8\"", 2.3529411764705, 0.25594512345678), q;
    memset(r.key, 'a', 64);
    r.size_bytes = 1900568;
    r.ev.tokens = 4095;
    r.ev.ppl = 4.62210987;
    r.ev.top1_agree = 78.1746;
    r.quantize_seconds = 1.25;
    r.ev.kld_p99 = NAN; /* written .nan, read back */
    r.n_tasks = 2;
    r.tasks = calloc(2, sizeof *r.tasks);
    r.tasks[0] = (qm_task_result){qm_strdup("piqa"), 100, 0.61, 0.0488, 0.63, 0.0485};
    r.tasks[1] = (qm_task_result){qm_strdup("yes"), 3, 1, 0, 0.6667, 0.3333};
    CU_ASSERT_EQUAL_FATAL(qm_matrix_row_write(&r, tu_path("r.yaml"), d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_matrix_row_read(tu_path("r.yaml"), &q, d), QM_OK);
    CU_ASSERT_STRING_EQUAL(q.name, r.name);
    CU_ASSERT_STRING_EQUAL(q.path, r.path);
    CU_ASSERT_STRING_EQUAL(q.key, r.key);
    CU_ASSERT_EQUAL(q.size_bytes, 1900568);
    CU_ASSERT_EQUAL(q.ev.tokens, 4095);
    /* 12 decimals: what the summaries print survives the trip */
    CU_ASSERT_DOUBLE_EQUAL(q.average_bits, r.average_bits, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(q.ev.kld_mean, r.ev.kld_mean, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(q.ev.ppl, r.ev.ppl, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(q.quantize_seconds, 1.25, 1e-12);
    CU_ASSERT(isnan(q.ev.kld_p99));
    CU_ASSERT_EQUAL_FATAL(q.n_tasks, 2);
    CU_ASSERT_STRING_EQUAL(q.tasks[1].name, "yes"); /* a YAML word, so it must come back a string */
    CU_ASSERT_EQUAL(q.tasks[0].n, 100);
    CU_ASSERT_DOUBLE_EQUAL(q.tasks[0].acc_norm_se, 0.0485, 1e-12);
    qm_matrix_row_free(&q);
    qm_matrix_row_free(&r);
    CU_ASSERT_EQUAL(qm_diag_errors(d), 0);
    qm_diag_free(d);
}

static void test_record_refusals(void)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"qmoe_bench_run: 2\n", "'qmoe_bench_run' is not 1"},
        {"[1, 2]\n", "not a bench run record"},
        {"qmoe_bench_run: 1\npolicy: [x\n", "r.yaml:3:"},
        {"qmoe_bench_run: 1\npolicy: p\npath: p\nkey: abc\n", "'key' is not a SHA-256"},
        {"qmoe_bench_run: 1\nkld_mean: lots\n", "'kld_mean' is not a number"},
        {"qmoe_bench_run: 1\npolicy: p\n", "a key is missing"},
        {"qmoe_bench_run: 1\npolicy: [x\n",
         "r.yaml:3:1: invalid YAML: did not find expected ',' or ']'; delete the file to measure the run again"},
        {"qmoe_bench_run: 1\npolicy: p\npolicy: q\n",
         "r.yaml:3:1: key 'policy' appears twice (first on line 2); delete the file to measure the run again"},
        /* numbers are typed: a count is an integer, a quoted figure a string */
        {"qmoe_bench_run: 1.0\n", "'qmoe_bench_run' is not 1"},
        {"qmoe_bench_run: 1\nsize_bytes: '12'\n", "'size_bytes' is not a count"},
        {"qmoe_bench_run: 1\nkld_mean: '0.5'\n", "'kld_mean' is not a number"},
        {"qmoe_bench_run: 1\ntasks: {piqa: {acc: 1, acc_se: 0, acc_norm: 1, acc_norm_se: 0, n: 2.5}}\n",
         "'piqa' lacks one of acc, acc_se, acc_norm, acc_norm_se, n; delete the file to measure the run again"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qm_diag *d = qm_diag_new();
        qm_matrix_row q;
        CU_ASSERT_EQUAL_FATAL(tu_write(tu_path("r.yaml"), cases[i].text, strlen(cases[i].text)), 0);
        CU_ASSERT_EQUAL(qm_matrix_row_read(tu_path("r.yaml"), &q, d), QM_EFORMAT);
        TU_ASSERT_DIAG(d, cases[i].message);
        CU_ASSERT_PTR_NULL(q.name);
        qm_diag_free(d);
    }
    qm_diag *d = qm_diag_new();
    qm_matrix_row q;
    CU_ASSERT_EQUAL(qm_matrix_row_read(tu_path("absent.yaml"), &q, d), QM_ENOTFOUND);
    CU_ASSERT_EQUAL(qm_diag_count(d), 0);
    qm_diag_free(d);
}

/* The SVG of rows r (n) as a string; caller frees. */
static char *capture_svg(const qm_matrix_row *r, size_t n, const char *title)
{
    FILE *f = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    qm_matrix_svg(r, n, title, f);
    long len = ftell(f);
    char *buf = calloc((size_t)len + 1, 1);
    rewind(f);
    CU_ASSERT_FATAL(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    return buf;
}

static size_t count(const char *s, const char *needle)
{
    size_t c = 0, n = strlen(needle);
    for (size_t at = 0; strstr(s + at, needle); c++)
        at = (size_t)(strstr(s + at, needle) - s) + n;
    return c;
}

static void test_svg(void)
{
    qm_matrix_row r[] = {row("2bit", 2, 0.9), row("a<b&c", 2.5, 0.05), row("4bit", 4, 0.004),
                         row("lossless", 8, 0)};
    qm_matrix_pareto(r, 4);
    char *s = capture_svg(r, 4, "t & \"q\"");
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "<title>a&lt;b&amp;c: 2.500 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "t &amp; &quot;q&quot;"));
    CU_ASSERT_PTR_NULL(strstr(s, "a<b"));
    CU_ASSERT_EQUAL(count(s, "<circle"), 4 + 2);   /* the points and two legend marks */
    /* log axis: the positive KLDs span 0.004 to 0.9, so decades 1e-3 to 1e0 */
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">1e-3</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, ">1e0</text>"));
    CU_ASSERT_PTR_NULL(strstr(s, ">1e1</text>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "stroke=\"#c0392b\"")); /* the front's staircase */
    CU_ASSERT_PTR_NULL(strstr(s, "nan"));
    CU_ASSERT_PTR_NULL(strstr(s, "inf"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "</svg>\n"));
    free(s);
    /* no rows: an empty plot, still well formed */
    s = capture_svg(NULL, 0, "empty");
    CU_ASSERT_EQUAL(count(s, "<circle"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "</svg>\n"));
    free(s);
    for (int i = 0; i < 4; i++)
        qm_matrix_row_free(&r[i]);
}

static void test_markdown(void)
{
    qm_matrix_opts o = {.model = "m", .out = "."};
    qm_matrix m = {.o = &o, .base_ppl = 3.5, .base_bytes = 5u << 20};
    qm_matrix_row r[] = {row("low", 2, 0.5), row("high", 4, 0.01)};
    r[0].ev.ppl = 9.25;
    r[0].ev.ppl_ratio = 9.25 / 3.5;
    r[0].size_bytes = 1u << 20;
    r[0].n_tasks = 1;
    r[0].tasks = calloc(1, sizeof *r[0].tasks);
    r[0].tasks[0] = (qm_task_result){qm_strdup("hellaswag"), 10, 0.3, 0.1, 0.4, 0.1};
    qm_matrix_pareto(r, 2);
    m.rows = r;
    m.n = 2;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    qm_matrix_markdown(&m, f);
    fclose(f);
    /* hellaswag is reported as acc_norm, as the study does */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| hellaswag acc_norm | quantize s |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| (unquantized) | 16 | 16 | 5.00 MiB | 3.5000 | 1.0000 | 0 | 100.00 | |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| **low** | 2.000 | 2.500 | 1.00 MiB | 9.2500 | 2.6429 | 0.50000 ± 0.00000 |"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, " 0.4000 |"));
    /* a row without the task leaves its cell empty */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| **high** | 4.000 |"));
    free(buf);
    for (int i = 0; i < 2; i++)
        qm_matrix_row_free(&r[i]);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("matrix", NULL, NULL);
    CU_add_test(s, "Pareto front and row order", test_pareto);
    CU_add_test(s, "run record: write and read back", test_record_roundtrip);
    CU_add_test(s, "run record: damaged files refused with the reason", test_record_refusals);
    CU_add_test(s, "SVG plot: escaping, log axis, front", test_svg);
    CU_add_test(s, "Markdown table", test_markdown);
    return tu_run();
}
