/* fmt.c: a policy's canonical text (`qmoe fmt`).
 *
 * Printed from the AST, not patched from the text, so there is one way to
 * write each policy: one statement per line without ';', one space after
 * ':' and ',' and between actions, no space inside brackets or around '.'.
 * Names and numbers keep their spelling (`shared` stays `shared`, `3.0`
 * stays `3.0`).  Comments are kept: an end-of-line comment stays at the end
 * of its statement's line (two spaces before '#'), a comment inside a
 * statement moves to its own line above it, and where the source had blank
 * lines between two things one blank line remains.  Works on the policy as
 * parsed, before imports are expanded.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lang/internal.h"

static const char *const how_words[] = {
    [QM_PICK_TOP] = "top", [QM_PICK_BOTTOM] = "bottom", [QM_PICK_RANDOM] = "random",
};
static const char *const cmp_words[] = {
    [QM_CMP_LT] = "<", [QM_CMP_LE] = "<=", [QM_CMP_GT] = ">", [QM_CMP_GE] = ">=",
};

/* A number as written, without the blanks a '-' may have been followed by. */
static void number(qm_buf *b, const qm_source *src, qm_span sp)
{
    for (size_t i = sp.begin; i < sp.end; i++)
        if (src->text[i] != ' ' && src->text[i] != '\t')
            qm_buf_add(b, src->text + i, 1);
}

static void index_spec(qm_buf *b, const qm_source *src, const qm_index *ix)
{
    qm_buf_add(b, "[", 1);
    switch (ix->kind) {
    case QM_INDEX_LIST:
        for (size_t i = 0; i < ix->u.list.n; i++) {
            const qm_range *r = &ix->u.list.v[i];
            if (i)
                qm_buf_add(b, ", ", 2);
            if (r->single) {
                qm_buf_printf(b, "%lld", r->lo);
                continue;
            }
            if (!r->lo_open)
                qm_buf_printf(b, "%lld", r->lo);
            qm_buf_add(b, "..", 2);
            if (!r->hi_open)
                qm_buf_printf(b, "%lld", r->hi);
        }
        break;
    case QM_INDEX_PICK:
        qm_buf_printf(b, "%s ", how_words[ix->u.pick.how]);
        if (ix->u.pick.is_percent)
            number(b, src, ix->u.pick.amount_span);
        else
            qm_buf_printf(b, "%lld", ix->u.pick.count);
        if (ix->u.pick.per_layer)
            qm_buf_printf(b, " per layer");
        if (ix->u.pick.how == QM_PICK_RANDOM)
            qm_buf_printf(b, " seed %llu", ix->u.pick.seed);
        else
            qm_buf_printf(b, " by %s", qm_scorer_name(ix->u.pick.scorer));
        break;
    case QM_INDEX_THRESHOLD:
        qm_buf_printf(b, "%s %s ", qm_scorer_name(ix->u.threshold.scorer),
                        cmp_words[ix->u.threshold.op]);
        number(b, src, ix->u.threshold.value_span);
        break;
    }
    qm_buf_add(b, "]", 1);
}

static void selector(qm_buf *b, const qm_source *src, const qm_selector *sel)
{
    if (sel->scope != QM_SCOPE_NONE) {
        qm_buf_printf(b, "%s", sel->scope_text);
        index_spec(b, src, sel->scope_index);
    }
    for (size_t i = 0; i < sel->nseg; i++) {
        if (i || sel->scope != QM_SCOPE_NONE)
            qm_buf_add(b, ".", 1);
        qm_buf_printf(b, "%s", sel->seg[i].text);
        if (sel->seg[i].index)
            index_spec(b, src, sel->seg[i].index);
    }
    if (sel->optional)
        qm_buf_printf(b, "?");
}

static void actions(qm_buf *b, const qm_actions *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const qm_action *x = &a->v[i];
        if (i)
            qm_buf_add(b, " ", 1);
        switch (x->kind) {
        case QM_ACT_WIDTH: qm_buf_printf(b, "%lldbit", x->value); break;
        case QM_ACT_KEEP: qm_buf_printf(b, "keep"); break;
        case QM_ACT_DELTA: qm_buf_printf(b, "%+lldbit", x->value); break;
        case QM_ACT_GROUP: qm_buf_printf(b, "group %lld", x->value); break;
        case QM_ACT_GROUP_NONE: qm_buf_printf(b, "group none"); break;
        case QM_ACT_SYM: qm_buf_printf(b, "sym"); break;
        case QM_ACT_ASYM: qm_buf_printf(b, "asym"); break;
        case QM_ACT_ACT_ORDER: qm_buf_printf(b, "act_order"); break;
        case QM_ACT_NO_ACT_ORDER: qm_buf_printf(b, "no_act_order"); break;
        case QM_ACT_COUNT: break;
        }
    }
}

static void statement(qm_buf *b, const qm_stmt *st)
{
    const qm_source *src = st->src;
    switch (st->kind) {
    case QM_STMT_IMPORT:
        qm_buf_printf(b, "import \"%s\"", st->u.import.name);
        break;
    case QM_STMT_ARCH:
        qm_buf_printf(b, "arch ");
        for (size_t i = 0; i < st->u.arch.n; i++)
            qm_buf_printf(b, "%s%s", i ? ", " : "", st->u.arch.v[i].text);
        break;
    case QM_STMT_BUDGET:
        qm_buf_printf(b, "budget ");
        number(b, src, st->u.budget.bits_span);
        qm_buf_printf(b, " bits");
        if (st->u.budget.by != QM_SCORER_NONE)
            qm_buf_printf(b, " by %s", qm_scorer_name(st->u.budget.by));
        break;
    case QM_STMT_ENGINE:
        qm_buf_printf(b, "engine %s%s", st->u.engine.name, st->u.engine.fit ? " fit" : "");
        break;
    case QM_STMT_DEFAULT:
        qm_buf_printf(b, "default: ");
        actions(b, &st->u.rule.act);
        break;
    case QM_STMT_RULE:
        for (size_t i = 0; i < st->u.rule.nsel; i++) {
            if (i)
                qm_buf_add(b, ", ", 2);
            selector(b, src, &st->u.rule.sel[i]);
        }
        qm_buf_add(b, ": ", 2);
        actions(b, &st->u.rule.act);
        break;
    }
}

/* The comment's text without trailing blanks. */
static void comment(qm_buf *b, const qm_source *src, const qm_comment *c)
{
    size_t end = c->span.end;
    while (end > c->span.begin && strchr(" \t\r\f\v", src->text[end - 1]))
        end--;
    qm_buf_add(b, src->text + c->span.begin, end - c->span.begin);
}

/* Did the source have a blank line between offsets a and b? */
static int blank_between(const qm_source *src, size_t a, size_t b)
{
    int nl = 0;
    for (size_t i = a; i < b; i++)
        nl += src->text[i] == '\n';
    return nl >= 2;
}

static int no_newline(const qm_source *src, size_t a, size_t b)
{
    return !memchr(src->text + a, '\n', b - a);
}

/* Where the formatter is: the next comment, the end of what was written
 * last, and whether anything was. */
typedef struct cursor {
    size_t ci, prev;
    int any;
} cursor;

/* The comments on lines of their own that begin before `limit`, each with
 * the blank line before it kept. */
static void own_line_comments(qm_buf *b, const qm_policy *p, cursor *at, size_t limit)
{
    for (; at->ci < p->ncomment && p->comment[at->ci].span.begin < limit; at->ci++) {
        const qm_comment *c = &p->comment[at->ci];
        if (at->any && blank_between(p->src, at->prev, c->span.begin))
            qm_buf_add(b, "\n", 1);
        comment(b, p->src, c);
        qm_buf_add(b, "\n", 1);
        at->prev = c->span.end;
        at->any = 1;
    }
}

qm_status qm_policy_format(const qm_policy *p, char **out, size_t *len)
{
    const qm_source *src = p->src;
    qm_buf b = {0};
    cursor at = {0};
    for (size_t i = 0; i < p->n; i++) {
        const qm_stmt *st = p->stmt[i];
        own_line_comments(&b, p, &at, st->span.begin);
        if (at.any && blank_between(src, at.prev, st->span.begin))
            qm_buf_add(&b, "\n", 1);
        for (; at.ci < p->ncomment && p->comment[at.ci].span.begin < st->span.end; at.ci++) {
            comment(&b, src, &p->comment[at.ci]);
            qm_buf_add(&b, "\n", 1);
        }
        statement(&b, st);
        at.prev = st->span.end;
        at.any = 1;
        if (at.ci < p->ncomment) {
            const qm_comment *c = &p->comment[at.ci];
            int next_first = i + 1 < p->n && p->stmt[i + 1]->span.begin < c->span.begin;
            if (!next_first && no_newline(src, st->span.end, c->span.begin)) {
                qm_buf_add(&b, "  ", 2);
                comment(&b, src, c);
                at.prev = c->span.end;
                at.ci++;
            }
        }
        qm_buf_add(&b, "\n", 1);
    }
    own_line_comments(&b, p, &at, SIZE_MAX);
    qm_buf_add(&b, "", 0); /* an empty policy is an empty string, not NULL */
    if (b.oom) {
        free(b.s);
        *out = NULL;
        return QM_ENOMEM;
    }
    *out = b.s;
    if (len)
        *len = b.n;
    return QM_OK;
}
