/* golden.c: the policy language's golden tests, one case per file pair.
 *
 *   tests/lang/ok/NAME.qmoe   parses with no diagnostic at all, and
 *   tests/lang/ok/NAME.fmt    is exactly what `qmoe fmt` makes of it;
 *                             formatting that output again changes nothing.
 *   tests/lang/err/NAME.qmoe  fails to parse (or, when it parses, to expand its
 *                             imports, searched in err/lib then a stdlib
 *                             directory that does not exist), and
 *   tests/lang/err/NAME.err   holds every diagnostic, exactly, each followed
 *                             by a new line.
 *
 * The runner works inside each folder, so paths in messages read "NAME.qmoe".
 * Adding a case is adding two files; with QM_GOLDEN_UPDATE=1 the runner writes
 * the expected file of every case instead of comparing (review the diff).
 * Exits non-zero when any case fails.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lang/ast.h"

static int failures, cases, update;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0, got;
    char *s = malloc(cap);
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *t = realloc(s, cap *= 2);
            if (!t)
                free(s);
            s = t;
        }
    }
    fclose(f);
    if (s) {
        s[n] = '\0';
        if (len)
            *len = n;
    }
    return s;
}

static int spit(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fputs(s, f) < 0;
    return fclose(f) != 0 || bad ? -1 : 0;
}

static int is_case(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return n > 5 && strcmp(e->d_name + n - 5, ".qmoe") == 0;
}

/* Compare got with the file `want_path` (or write it when updating). */
static void expect(const char *name, const char *want_path, const char *got)
{
    if (update) {
        if (spit(want_path, got) != 0) {
            fprintf(stderr, "%s: cannot write\n", want_path);
            failures++;
        }
        return;
    }
    char *want = slurp(want_path, NULL);
    if (!want) {
        fprintf(stderr, "FAIL %s: cannot read %s\n", name, want_path);
        failures++;
        return;
    }
    if (strcmp(want, got) != 0) {
        fprintf(stderr, "FAIL %s: expected (%s):\n%s-- got:\n%s--\n", name, want_path, want, got);
        failures++;
    }
    free(want);
}

/* Every diagnostic as `qmoe check` prints it; NULL when there is none. */
static char *diag_text(const qm_diag *d)
{
    qm_buf b = {0};
    for (size_t i = 0; i < qm_diag_count(d); i++)
        qm_diag_format(d, i, "qmoe", &b);
    return b.s;
}

static void ok_case(const char *name)
{
    char base[512], fmt_path[600];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 5), name);
    snprintf(fmt_path, sizeof fmt_path, "%s.fmt", base);
    qm_diag *d = qm_diag_new();
    qm_policy *p = NULL, *q = NULL;
    char *out = NULL, *again = NULL;
    if (qm_policy_parse_file(name, &p, d) != QM_OK || qm_diag_count(d) != 0) {
        char *t = diag_text(d);
        fprintf(stderr, "FAIL %s: expected no diagnostics, got:\n%s", name, t ? t : "");
        free(t);
        failures++;
        goto done;
    }
    if (qm_policy_format(p, &out, NULL) != QM_OK) {
        fprintf(stderr, "FAIL %s: format failed\n", name);
        failures++;
        goto done;
    }
    expect(name, fmt_path, out);
    /* idempotence: the formatted text parses cleanly and formats to itself */
    if (qm_policy_parse(fmt_path, out, strlen(out), &q, d) != QM_OK ||
        qm_policy_format(q, &again, NULL) != QM_OK || strcmp(again, out) != 0) {
        char *t = diag_text(d);
        fprintf(stderr, "FAIL %s: formatting is not idempotent:\n%s-- then:\n%s--\n%s", name, out,
                again ? again : "(none)\n", t ? t : "");
        free(t);
        failures++;
    }
done:
    free(out);
    free(again);
    qm_policy_free(p);
    qm_policy_free(q);
    qm_diag_free(d);
}

static void err_case(const char *name)
{
    char err_path[600];
    snprintf(err_path, sizeof err_path, "%.*s.err", (int)(strlen(name) - 5), name);
    static const char *const dirs[] = {"lib"};
    qm_search s = {.dirs = dirs, .n_dirs = 1, .path_env = "", .stdlib = "/nonexistent/qmoe-stdlib"};
    qm_diag *d = qm_diag_new();
    qm_policy *p = NULL;
    qm_status st = qm_policy_parse_file(name, &p, d);
    if (st == QM_OK)
        st = qm_policy_expand(p, &s, d);
    if (st == QM_OK) {
        fprintf(stderr, "FAIL %s: expected an error\n", name);
        failures++;
    }
    if (qm_diag_errors(d) == 0) {
        fprintf(stderr, "FAIL %s: failed without an error message\n", name);
        failures++;
    }
    char *t = diag_text(d);
    expect(name, err_path, t ? t : "");
    free(t);
    qm_policy_free(p);
    qm_diag_free(d);
}

static void run_dir(const char *srcdir, const char *sub, void (*fn)(const char *))
{
    char dir[1024], here[1024];
    snprintf(dir, sizeof dir, "%s/tests/lang/%s", srcdir, sub);
    if (!getcwd(here, sizeof here) || chdir(dir) != 0) {
        perror(dir);
        failures++;
        return;
    }
    struct dirent **list;
    int n = scandir(".", &list, is_case, alphasort);
    if (n < 0) {
        perror(dir);
        failures++;
    }
    for (int i = 0; i < n; i++) {
        fn(list[i]->d_name);
        cases++;
        free(list[i]);
    }
    if (n >= 0)
        free(list);
    if (chdir(here) != 0) {
        perror(here);
        failures++;
    }
}

int main(void)
{
    const char *srcdir = getenv("QM_SRCDIR");
    update = getenv("QM_GOLDEN_UPDATE") != NULL;
    run_dir(srcdir ? srcdir : ".", "ok", ok_case);
    int ok_cases = cases;
    run_dir(srcdir ? srcdir : ".", "err", err_case);
    printf("golden: %d ok cases, %d error cases, %d failures\n", ok_cases, cases - ok_cases, failures);
    return failures ? 1 : 0;
}
