/* diag.c: positions and diagnostics for policy sources.
 *
 * Spans are byte offsets; this is the only place that turns them into line
 * and column (1-based, the column counting bytes) and into the excerpt (the
 * source line and an underline) of a diagnostic's location, which base's
 * printer shows GNU-style:
 *
 *   p.qmoe:2:7: error: unknown action 'kep'; did you mean 'keep'?
 *   attn: kep
 *         ^~~
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lang/internal.h"

enum { WINDOW = 200 }; /* longest stretch of a source line shown */

/* An offset at the very end of a text that ends with a new line is shown
 * at the end of the last line, not on an empty line after it. */
static size_t clamp(const qm_source *src, size_t off)
{
    if (off > src->len)
        off = src->len;
    if (off == src->len && off > 0 && src->text[off - 1] == '\n')
        off--;
    return off;
}

void qm_source_linecol(const qm_source *src, size_t off, size_t *line, size_t *col)
{
    off = clamp(src, off);
    size_t l = 1, start = 0;
    for (size_t i = 0; i < off; i++)
        if (src->text[i] == '\n') {
            l++;
            start = i + 1;
        }
    *line = l;
    *col = off - start + 1;
}

/* The line around `off` and an underline for [off, end), into b. */
static void show_line(qm_buf *b, const qm_source *src, size_t off, size_t end)
{
    const char *t = src->text;
    size_t ls = off, le = off;
    while (ls > 0 && t[ls - 1] != '\n')
        ls--;
    while (le < src->len && t[le] != '\n')
        le++;
    if (le - ls > WINDOW) { /* a long line: show the part around the place */
        size_t ws = off > ls + WINDOW / 2 ? off - WINDOW / 2 : ls;
        while (ws > ls && ((unsigned char)t[ws] & 0xC0) == 0x80)
            ws--;
        ls = ws;
        if (le - ls > WINDOW)
            le = ls + WINDOW;
    }
    if (end > le)
        end = le;
    if (end < off)
        end = off;
    for (size_t i = ls; i < le; i++) {
        unsigned char c = (unsigned char)t[i];
        char ch = (char)c;
        if (c < 0x20 ? c != '\t' : c == 0x7f)
            ch = ' '; /* control bytes would garble a terminal */
        qm_buf_add(b, &ch, 1);
    }
    qm_buf_add(b, "\n", 1);
    /* one column per character: tabs copied, UTF-8 continuation bytes skipped */
    for (size_t i = ls; i < off; i++) {
        unsigned char c = (unsigned char)t[i];
        if ((c & 0xC0) != 0x80)
            qm_buf_add(b, c == '\t' ? "\t" : " ", 1);
    }
    qm_buf_add(b, "^", 1);
    for (size_t i = off + 1; i < end; i++)
        if (((unsigned char)t[i] & 0xC0) != 0x80)
            qm_buf_add(b, "~", 1);
}

qm_status lang_oom(qm_diag *d, const char *path)
{
    return qm_diag_fail_at(d, QM_ENOMEM, &(qm_diag_loc){.file = path}, "out of memory");
}

static qm_status vdiag(qm_diag *d, qm_severity sev, const qm_source *src, qm_span span,
                       const char *fmt, va_list ap)
{
    size_t off = clamp(src, span.begin);
    qm_diag_loc loc = {.file = src->path};
    qm_source_linecol(src, off, &loc.line, &loc.col);
    qm_buf msg = {0}, excerpt = {0};
    qm_buf_vprintf(&msg, fmt, ap);
    show_line(&excerpt, src, off, span.end);
    qm_status st = sev == QM_SEV_ERROR ? QM_EFORMAT : QM_OK;
    if (msg.oom || excerpt.oom) {
        st = lang_oom(d, src->path);
    } else {
        loc.excerpt = excerpt.s;
        qm_diag_at(d, sev, &loc, "%s", msg.s);
    }
    free(msg.s);
    free(excerpt.s);
    return st;
}

qm_status qm_source_diag(qm_diag *d, qm_severity sev, const qm_source *src, qm_span span,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_status st = vdiag(d, sev, src, span, fmt, ap);
    va_end(ap);
    return st;
}

static void verror(lang_state *ps, int once, qm_span span, const char *fmt, va_list ap)
{
    if (ps->stop || ps->stmt_err)
        return;
    if (once)
        ps->stmt_err = 1;
    vdiag(ps->d, QM_SEV_ERROR, ps->src, span, fmt, ap);
    if (++ps->errors >= QM_POLICY_MAX_ERRORS) {
        ps->stop = 1;
        qm_diag_at(ps->d, QM_SEV_NOTE, &(qm_diag_loc){.file = ps->src->path}, "stopping after %d errors",
                   QM_POLICY_MAX_ERRORS);
    }
}

void lang_error(lang_state *ps, qm_span span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(ps, 0, span, fmt, ap);
    va_end(ap);
}

void lang_error_once(lang_state *ps, qm_span span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(ps, 1, span, fmt, ap);
    va_end(ap);
}
