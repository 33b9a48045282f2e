/* diag.c: the diagnostics sink and status names.
 *
 * Library code reports every failure here and returns a qm_status; the
 * driver decides how to print and which exit code follows.  Entries past a
 * cap are counted but not stored, so a pathological input cannot make the
 * sink grow without bound.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

enum { QM_DIAG_MAX_KEPT = 1000 };

typedef struct entry {
    qm_severity sev;
    char *text; /* owned */
} entry;

struct qm_diag {
    entry *v;
    size_t n, cap;
    size_t errors, warnings, dropped;
};

static const char *const status_names[QM_STATUS_COUNT] = {
    [QM_OK] = "ok",
    [QM_ENOMEM] = "out of memory",
    [QM_EIO] = "io",
    [QM_EFORMAT] = "format",
    [QM_EINVAL] = "invalid",
    [QM_EUNSUPPORTED] = "unsupported",
    [QM_ENOTFOUND] = "not found",
};

const char *qm_status_name(qm_status s)
{
    return (unsigned)s < QM_STATUS_COUNT ? status_names[s] : "unknown";
}

qm_diag *qm_diag_new(void)
{
    return calloc(1, sizeof(qm_diag));
}

void qm_diag_clear(qm_diag *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].text);
    d->n = 0;
    d->errors = d->warnings = d->dropped = 0;
}

void qm_diag_free(qm_diag *d)
{
    if (!d)
        return;
    qm_diag_clear(d);
    free(d->v);
    free(d);
}

void qm_diag_add(qm_diag *d, qm_severity sev, const char *fmt, va_list ap)
{
    if (!d)
        return;
    if (sev == QM_SEV_ERROR)
        d->errors++;
    else if (sev == QM_SEV_WARNING)
        d->warnings++;
    if (d->n >= QM_DIAG_MAX_KEPT) {
        d->dropped++;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        entry *v = realloc(d->v, cap * sizeof *v);
        if (!v) {
            d->dropped++;
            return;
        }
        d->v = v;
        d->cap = cap;
    }
    va_list aq;
    va_copy(aq, ap);
    int len = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!text) {
        d->dropped++;
        return;
    }
    vsnprintf(text, (size_t)len + 1, fmt, ap);
    d->v[d->n++] = (entry){sev, text};
}

qm_status qm_diag_fail(qm_diag *d, qm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_diag_add(d, QM_SEV_ERROR, fmt, ap);
    va_end(ap);
    return code;
}

void qm_diag_warn(qm_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_diag_add(d, QM_SEV_WARNING, fmt, ap);
    va_end(ap);
}

void qm_diag_note(qm_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_diag_add(d, QM_SEV_NOTE, fmt, ap);
    va_end(ap);
}

size_t qm_diag_errors(const qm_diag *d) { return d ? d->errors : 0; }
size_t qm_diag_warnings(const qm_diag *d) { return d ? d->warnings : 0; }
size_t qm_diag_count(const qm_diag *d) { return d ? d->n : 0; }
qm_severity qm_diag_severity(const qm_diag *d, size_t i) { return d->v[i].sev; }
const char *qm_diag_text(const qm_diag *d, size_t i) { return d->v[i].text; }

void qm_diag_print(qm_diag *d, FILE *f, const char *prog)
{
    static const char *const sev_names[] = {"error", "warning", "note"};
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        fprintf(f, "%s: %s: %s\n", prog, sev_names[d->v[i].sev], d->v[i].text);
    if (d->dropped)
        fprintf(f, "%s: note: %zu more diagnostics not shown\n", prog, d->dropped);
    qm_diag_clear(d);
}

char *qm_strfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *qm_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    return c ? memcpy(c, s, n) : NULL;
}

static void addf(qm_diag *d, qm_severity sev, const char *fmt, ...) QM_PRINTF(3, 4);
static void addf(qm_diag *d, qm_severity sev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_diag_add(d, sev, fmt, ap);
    va_end(ap);
}

void qm_diag_append(qm_diag *to, const qm_diag *from)
{
    for (size_t i = 0; from && i < from->n; i++)
        addf(to, from->v[i].sev, "%s", from->v[i].text);
}
