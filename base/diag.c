/* diag.c: the diagnostics sink and status names.
 *
 * Library code reports every failure here and returns a qm_status; the
 * driver decides which exit code follows and prints the entries through the
 * one printer below.  An entry holds its message alone; its severity and
 * its location (file, line, column, source excerpt), if any, are kept apart
 * and joined only when printed.  Entries past a cap are counted but not
 * stored, so a pathological input cannot make the sink grow without bound.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

enum { QM_DIAG_MAX_KEPT = 1000 };

typedef struct entry {
    qm_severity sev;
    char *text;      /* owned: one block holding the message, then loc's strings */
    qm_diag_loc loc; /* file NULL: none */
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

/* Copy src into *at and move *at past it; NULL stays NULL. */
static const char *put(char **at, const char *src, size_t len)
{
    if (!src)
        return NULL;
    char *s = memcpy(*at, src, len + 1);
    *at += len + 1;
    return s;
}

static void add(qm_diag *d, qm_severity sev, const qm_diag_loc *loc, const char *fmt, va_list ap)
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
    qm_diag_loc at = loc && loc->file ? *loc : (qm_diag_loc){0};
    size_t flen = at.file ? strlen(at.file) : 0, xlen = at.excerpt ? strlen(at.excerpt) : 0;
    va_list aq;
    va_copy(aq, ap);
    int len = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *text = len >= 0 ? malloc((size_t)len + 1 + flen + 1 + xlen + 1) : NULL;
    if (!text) {
        d->dropped++;
        return;
    }
    vsnprintf(text, (size_t)len + 1, fmt, ap);
    char *rest = text + len + 1;
    at.file = put(&rest, at.file, flen);
    at.excerpt = put(&rest, at.excerpt, xlen);
    d->v[d->n++] = (entry){sev, text, at};
}

void qm_diag_add(qm_diag *d, qm_severity sev, const char *fmt, va_list ap)
{
    add(d, sev, NULL, fmt, ap);
}

qm_status qm_diag_fail(qm_diag *d, qm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, QM_SEV_ERROR, NULL, fmt, ap);
    va_end(ap);
    return code;
}

void qm_diag_warn(qm_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, QM_SEV_WARNING, NULL, fmt, ap);
    va_end(ap);
}

void qm_diag_note(qm_diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, QM_SEV_NOTE, NULL, fmt, ap);
    va_end(ap);
}

qm_status qm_diag_fail_at(qm_diag *d, qm_status code, const qm_diag_loc *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, QM_SEV_ERROR, loc, fmt, ap);
    va_end(ap);
    return code;
}

void qm_diag_at(qm_diag *d, qm_severity sev, const qm_diag_loc *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, sev, loc, fmt, ap);
    va_end(ap);
}

size_t qm_diag_errors(const qm_diag *d) { return d ? d->errors : 0; }
size_t qm_diag_warnings(const qm_diag *d) { return d ? d->warnings : 0; }
size_t qm_diag_count(const qm_diag *d) { return d ? d->n : 0; }
qm_severity qm_diag_severity(const qm_diag *d, size_t i) { return d->v[i].sev; }
const char *qm_diag_text(const qm_diag *d, size_t i) { return d->v[i].text; }
const qm_diag_loc *qm_diag_location(const qm_diag *d, size_t i)
{
    return d->v[i].loc.file ? &d->v[i].loc : NULL;
}

/* An entry as printed: one format over these pieces, so that printing and
 * qm_diag_format() cannot drift apart and printing allocates nothing. */
#define SHAPE_FMT "%s%s: %s: %s%s%s\n"
typedef struct shape {
    const char *head;      /* FILE or PROG */
    char linecol[48];      /* ":LINE:COL" or "" */
    const char *sev, *text;
    const char *sep, *excerpt; /* "\n" and the excerpt, or "" and "" */
} shape;

static void shape_of(const entry *e, const char *prog, shape *s)
{
    static const char *const sev_names[] = {
        [QM_SEV_ERROR] = "error",
        [QM_SEV_WARNING] = "warning",
        [QM_SEV_NOTE] = "note",
    };
    s->head = e->loc.file ? e->loc.file : prog;
    s->linecol[0] = '\0';
    if (e->loc.file && e->loc.line && e->loc.col)
        snprintf(s->linecol, sizeof s->linecol, ":%zu:%zu", e->loc.line, e->loc.col);
    else if (e->loc.file && e->loc.line)
        snprintf(s->linecol, sizeof s->linecol, ":%zu", e->loc.line);
    s->sev = sev_names[e->sev];
    s->text = e->text;
    s->sep = e->loc.excerpt ? "\n" : "";
    s->excerpt = e->loc.excerpt ? e->loc.excerpt : "";
}

void qm_diag_format(const qm_diag *d, size_t i, const char *prog, qm_buf *b)
{
    shape s;
    shape_of(&d->v[i], prog, &s);
    qm_buf_printf(b, SHAPE_FMT, s.head, s.linecol, s.sev, s.text, s.sep, s.excerpt);
}

void qm_diag_print(qm_diag *d, FILE *f, const char *prog)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        shape s;
        shape_of(&d->v[i], prog, &s);
        fprintf(f, SHAPE_FMT, s.head, s.linecol, s.sev, s.text, s.sep, s.excerpt);
    }
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

void qm_diag_append(qm_diag *to, const qm_diag *from)
{
    for (size_t i = 0; from && i < from->n; i++)
        qm_diag_at(to, from->v[i].sev, &from->v[i].loc, "%s", from->v[i].text);
}
