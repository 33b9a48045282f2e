/* check.c: the names the language knows, and the checks a statement gets
 * once it has parsed.
 *
 * The parser accepts any name where a selector, scorer or family goes; here
 * each is looked up in its table (indexed by the enums in ast.h), the
 * selector's scope is told from its modules, and the rules of the language
 * that a grammar cannot say are enforced: which brackets go where, which
 * scorer ranks what, which widths exist, which actions conflict.  Messages
 * name the bad value and what is allowed.  No model is known here.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/internal.h"

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* ---- tables ------------------------------------------------------------------- */

static const char *const scorer_names[QM_SCORER_COUNT] = {
    [QM_SCORER_FREQUENCY] = "frequency",
    [QM_SCORER_IMPORTANCE] = "importance",
    [QM_SCORER_IMPORTANCE_RESIDUAL] = "importance_residual",
    [QM_SCORER_OUTLIER] = "outlier",
    [QM_SCORER_MEASURED] = "measured",
};
_Static_assert(COUNT(scorer_names) == QM_SCORER_COUNT, "a name per scorer");


/* What each scorer ranks, for selections and messages. */
typedef enum level { LEVEL_BLOCK, LEVEL_EXPERT, LEVEL_LINEAR, LEVEL_ANY } level;
static const level scorer_level[QM_SCORER_COUNT] = {
    [QM_SCORER_FREQUENCY] = LEVEL_EXPERT,
    [QM_SCORER_IMPORTANCE] = LEVEL_BLOCK,
    [QM_SCORER_IMPORTANCE_RESIDUAL] = LEVEL_BLOCK,
    [QM_SCORER_OUTLIER] = LEVEL_LINEAR,
    [QM_SCORER_MEASURED] = LEVEL_ANY, /* measured errors add up over any set of linears */
};
static const char *const level_names[] = {
    [LEVEL_BLOCK] = "MoE blocks", [LEVEL_EXPERT] = "experts", [LEVEL_LINEAR] = "linears",
    [LEVEL_ANY] = "blocks, experts or linears",
};
static const char *const level_usage[] = {
    [LEVEL_BLOCK] = "moe_layers[top 5 by importance]",
    [LEVEL_EXPERT] = "experts[top 30 per layer by frequency]",
    [LEVEL_LINEAR] = "experts.*[top 25% by outlier]",
    [LEVEL_ANY] = "experts[top 4 per layer by measured]",
};

#define PART(m) (1u << (m))
#define QKVO (PART(QM_MOD_Q) | PART(QM_MOD_K) | PART(QM_MOD_V) | PART(QM_MOD_O) | PART(QM_MOD_ANY))
#define GUD (PART(QM_MOD_GATE) | PART(QM_MOD_UP) | PART(QM_MOD_DOWN) | PART(QM_MOD_ANY))

typedef struct module_info {
    const char *name;  /* canonical */
    const char *alias; /* also accepted, or NULL */
    unsigned parts;    /* PART() bits of the names that may follow */
    int model_level;   /* outside the layers: no scope */
    int is_part;       /* a part (second segment), not a module */
    int alias_first;   /* lists show the alias first (the study's word, "shared_experts") */
} module_info;

static const module_info modules[QM_MOD_COUNT] = {
    [QM_MOD_ATTN] = {"attn", NULL, QKVO, 0, 0},
    [QM_MOD_ROUTER] = {"router", NULL, 0, 0, 0},
    [QM_MOD_EXPERTS] = {"experts", NULL, GUD, 0, 0},
    [QM_MOD_SHARED] = {"shared", "shared_experts", GUD, 0, 0, 1},
    [QM_MOD_SHARED_GATE] = {"shared_gate", NULL, 0, 0, 0},
    [QM_MOD_MLP] = {"mlp", NULL, GUD, 0, 0},
    [QM_MOD_NORMS] = {"norms", "norm", 0, 0, 0},
    [QM_MOD_ATTN_NORM] = {"attn_norm", NULL, 0, 0, 0},
    [QM_MOD_FFN_NORM] = {"ffn_norm", NULL, 0, 0, 0},
    [QM_MOD_EMBED] = {"embed", NULL, 0, 1, 0},
    [QM_MOD_LM_HEAD] = {"lm_head", NULL, 0, 1, 0},
    [QM_MOD_Q] = {"q", NULL, 0, 0, 1},
    [QM_MOD_K] = {"k", NULL, 0, 0, 1},
    [QM_MOD_V] = {"v", NULL, 0, 0, 1},
    [QM_MOD_O] = {"o", NULL, 0, 0, 1},
    [QM_MOD_GATE] = {"gate", NULL, 0, 0, 1},
    [QM_MOD_UP] = {"up", NULL, 0, 0, 1},
    [QM_MOD_DOWN] = {"down", NULL, 0, 0, 1},
    [QM_MOD_ANY] = {"*", NULL, 0, 0, 1},
};
_Static_assert(COUNT(modules) == QM_MOD_COUNT, "an entry per module");
_Static_assert(QM_MOD_COUNT <= 32, "parts fit a bit set");

/* The scopes a selector may start with. */
static const struct {
    const char *word;
    qm_scope scope;
} scopes[] = {
    {"layers", QM_SCOPE_LAYERS},
    {"moe_layers", QM_SCOPE_MOE_LAYERS},
};

static const struct {
    const char *word;
    qm_action_kind kind;
} action_words[] = {
    {"keep", QM_ACT_KEEP},           {"sym", QM_ACT_SYM},
    {"asym", QM_ACT_ASYM},           {"act_order", QM_ACT_ACT_ORDER},
    {"no_act_order", QM_ACT_NO_ACT_ORDER},
};

/* Every action's spelling but the widths', for suggestions and lists. */
static const char *const action_spellings[] = {
    "keep", "group", "sym", "asym", "act_order", "no_act_order",
};
static const char other_actions[] = "keep +1bit -1bit group N, group none, sym asym act_order no_act_order";

const char *lang_widths(char buf[LANG_WIDTHS_SIZE])
{
    return qm_widths_text(buf, LANG_WIDTHS_SIZE, "bit", " ", " ");
}

enum { MAX_DELTA = 6, MAX_GROUP = 1 << 20 };
#define MIN_BUDGET 2.0
#define MAX_BUDGET 8.0

const char *qm_scorer_name(qm_scorer s)
{
    return (unsigned)s < QM_SCORER_COUNT ? scorer_names[s] : "?";
}

const char *qm_module_name(qm_module m)
{
    return (unsigned)m < QM_MOD_COUNT ? modules[m].name : "?";
}

int lang_action_word(const char *s, qm_action_kind *k)
{
    for (size_t i = 0; i < COUNT(action_words); i++)
        if (strcmp(s, action_words[i].word) == 0) {
            *k = action_words[i].kind;
            return 1;
        }
    return 0;
}

/* ---- suggestions ---------------------------------------------------------------- */

/* Edit distance between a and b, giving up (returning limit + 1) beyond limit. */
static size_t distance(const char *a, const char *b, size_t limit)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32 || (la > lb ? la - lb : lb - la) > limit)
        return limit + 1;
    size_t row[33];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (up + 1 < best)
                best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *lang_suggest(const char *s, const char *const *names, size_t n)
{
    /* an abbreviation of one name ("freq") */
    size_t len = strlen(s);
    const char *prefix_of = NULL;
    int prefixes = 0;
    for (size_t i = 0; len >= 3 && i < n; i++)
        if (names[i] && strncmp(s, names[i], len) == 0) {
            prefix_of = names[i];
            prefixes++;
        }
    if (prefixes == 1)
        return prefix_of;
    size_t limit = strlen(s) <= 4 ? 1 : 2, best = limit + 1;
    const char *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        size_t dist = distance(s, names[i], limit);
        if (dist < best) {
            best = dist;
            pick = names[i];
        }
    }
    return pick;
}

/* ---- lookups ------------------------------------------------------------------- */

/* The span's text as a NUL-terminated string in buf (cut at cap). */
static const char *span_str(const lang_state *ps, qm_span sp, char *buf, size_t cap)
{
    size_t n = sp.end - sp.begin;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, lang_text(ps->src, sp), n);
    buf[n] = '\0';
    return buf;
}

static int find_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int find_module(const char *s)
{
    for (int i = 0; i < QM_MOD_COUNT; i++)
        if (strcmp(s, modules[i].name) == 0 || (modules[i].alias && strcmp(s, modules[i].alias) == 0))
            return i;
    return -1;
}

/* The scope s names, QM_SCOPE_NONE when it names none. */
static qm_scope find_scope(const char *s)
{
    for (size_t i = 0; i < COUNT(scopes); i++)
        if (strcmp(s, scopes[i].word) == 0)
            return scopes[i].scope;
    return QM_SCOPE_NONE;
}

/* "unknown WHAT 'word'": with the near name when there is one, else with
 * the list of all (which this frees). */
static void unknown_name(lang_state *ps, qm_span span, const char *what, const char *word, const char *near,
                         qm_buf *all)
{
    if (near)
        lang_error(ps, span, "unknown %s '%s'; did you mean '%s'?", what, word, near);
    else
        lang_error(ps, span, "unknown %s '%s'; the %ss are %s", what, word, what, all->oom ? "..." : all->s);
    free(all->s);
}

/* The modules as messages list them ("attn router ... lm_head, after an
 * optional scope layers[...] or moe_layers[...]"), appended to b. */
static void list_modules(qm_buf *b)
{
    for (int i = 0; i < QM_MOD_COUNT; i++) {
        const module_info *m = &modules[i];
        if (m->is_part)
            continue;
        const char *first = m->alias_first ? m->alias : m->name, *second = m->alias_first ? m->name : m->alias;
        qm_buf_printf(b, "%s%s", b->n ? " " : "", first);
        if (second)
            qm_buf_printf(b, " (%s)", second);
    }
    qm_buf_printf(b, ", after an optional scope");
    for (size_t i = 0; i < COUNT(scopes); i++)
        qm_buf_printf(b, "%s %s[...]", i == 0 ? "" : i + 1 == COUNT(scopes) ? " or" : ",", scopes[i].word);
}

/* Resolve the scorer named at sp; QM_SCORER_NONE after reporting. */
static qm_scorer scorer(lang_state *ps, qm_span sp)
{
    char name[64];
    span_str(ps, sp, name, sizeof name);
    int i = find_name(name, scorer_names, QM_SCORER_COUNT);
    if (i >= 0)
        return (qm_scorer)i;
    const char *near = lang_suggest(name, scorer_names, QM_SCORER_COUNT);
    if (near)
        lang_error(ps, sp, "unknown scorer '%s'; did you mean '%s'?", name, near);
    else
        lang_error(ps, sp, "unknown scorer '%s'; the scorers are frequency importance "
                           "importance_residual outlier measured", name);
    return QM_SCORER_NONE;
}

void lang_unknown_action(lang_state *ps, const char *word, qm_span span)
{
    char spelled[QM_WIDTH_COUNT][8], w[LANG_WIDTHS_SIZE];
    const char *spellings[QM_WIDTH_COUNT + COUNT(action_spellings)];
    for (int i = 0; i < QM_WIDTH_COUNT; i++) {
        snprintf(spelled[i], sizeof spelled[i], "%dbit", qm_widths[i]);
        spellings[i] = spelled[i];
    }
    memcpy(spellings + QM_WIDTH_COUNT, action_spellings, sizeof action_spellings);
    const char *near = lang_suggest(word, spellings, COUNT(spellings));
    int selector = find_module(word) >= 0 || find_scope(word) != QM_SCOPE_NONE;
    char *end;
    long long n = strtoll(word, &end, 10);
    if (end != word && qm_is_width(n)) { /* '4b', '4bt' */
        lang_error_once(ps, span, "unknown action '%s'; did you mean '%lldbit'?", word, n);
    } else if (end != word) {
        lang_error_once(ps, span, "unknown action '%s'; the widths are %s", word, lang_widths(w));
    } else if (selector && ps->tok[0].span.begin == span.begin && ps->tok[1].tok == ':') {
        /* `attn:` ends a line and the next rule follows: the actions were left out */
        qm_span colon = ps->tok[1].span;
        lang_error_once(ps, (qm_span){colon.end, colon.end}, "missing actions after ':'");
    } else if (selector) {
        lang_error_once(ps, span, "'%s' is a selector, not an action; is a ';' missing before it?", word);
    } else if (near) {
        lang_error_once(ps, span, "unknown action '%s'; did you mean '%s'?", word, near);
    } else {
        lang_error_once(ps, span, "unknown action '%s'; the actions are %s %s", word, lang_widths(w),
                        other_actions);
    }
}

/* ---- selectors ------------------------------------------------------------------ */

static void check_ranges(lang_state *ps, const qm_index *ix)
{
    for (size_t i = 0; i < ix->u.list.n; i++) {
        const qm_range *r = &ix->u.list.v[i];
        if (!r->lo_open && !r->hi_open && !r->single && (r->lo < 0) == (r->hi < 0) && r->lo > r->hi)
            lang_error(ps, r->span, "empty range %lld..%lld: write the lower index first", r->lo,
                       r->hi);
    }
}

/* Check a data-driven or threshold spec against the level it selects at;
 * `what` names the place for messages ("moe_layers", "experts", ...). */
static void check_ranked(lang_state *ps, qm_index *ix, level at, const char *what)
{
    qm_scorer *s;
    qm_span sp;
    if (ix->kind == QM_INDEX_THRESHOLD) {
        s = &ix->u.threshold.scorer;
        sp = ix->u.threshold.scorer_span;
    } else {
        s = &ix->u.pick.scorer;
        sp = ix->u.pick.scorer_span;
        if (ix->u.pick.is_percent && !(ix->u.pick.percent > 0 && ix->u.pick.percent <= 100))
            lang_error(ps, ix->u.pick.amount_span, "a percentage must be more than 0%% and at most 100%%");
        if (!ix->u.pick.is_percent && ix->u.pick.count < 1)
            lang_error(ps, ix->u.pick.amount_span, "select at least 1, not %lld", ix->u.pick.count);
        if (ix->u.pick.per_layer && at == LEVEL_BLOCK)
            lang_error(ps, ix->span, "'per layer' does not apply to %s, which selects whole layers",
                       what);
    }
    if (*s == QM_SCORER_NONE) /* random */
        return;
    *s = scorer(ps, sp);
    if (*s == QM_SCORER_NONE)
        return;
    level l = scorer_level[*s];
    if (l != at && l != LEVEL_ANY)
        lang_error(ps, sp, "'%s' ranks %s, not %s: use it as in %s", scorer_names[*s], level_names[l],
                   level_names[at], level_usage[l]);
}

static void check_scope(lang_state *ps, qm_selector *sel)
{
    qm_index *ix = sel->scope_index;
    if (!ix) {
        lang_error(ps, sel->scope_span, "'%s' needs brackets saying which layers, e.g. %s[0..3]",
                   sel->scope_text, sel->scope_text);
        return;
    }
    if (ix->kind == QM_INDEX_LIST) {
        check_ranges(ps, ix);
        return;
    }
    if (sel->scope == QM_SCOPE_LAYERS) {
        lang_error(ps, ix->span, "data-driven selections rank MoE blocks: write moe_layers[...]");
        return;
    }
    check_ranked(ps, ix, LEVEL_BLOCK, "moe_layers");
}

static void check_selector(lang_state *ps, qm_selector *sel)
{
    char name[64];
    /* the scope */
    if (sel->nseg > 0 && find_scope(sel->seg[0].text) != QM_SCOPE_NONE) {
        qm_segment *s = &sel->seg[0];
        sel->scope = find_scope(s->text);
        sel->scope_text = s->text;
        sel->scope_index = s->index;
        sel->scope_span = s->span;
        sel->seg++;
        sel->nseg--;
        check_scope(ps, sel);
    }
    if (sel->nseg == 0)
        return;
    /* the module */
    qm_segment *m = &sel->seg[0];
    int mod = find_module(m->text);
    if (find_scope(m->text) != QM_SCOPE_NONE) {
        lang_error(ps, m->span, "a selector has one scope: '%s' cannot follow '%s[...]'", m->text,
                   sel->scope_text);
        return;
    }
    if (mod < 0) {
        const char *cands[QM_MOD_COUNT * 2];
        size_t nc = 0;
        for (int i = 0; i < QM_MOD_COUNT; i++)
            if (!modules[i].is_part) {
                cands[nc++] = modules[i].name;
                if (modules[i].alias)
                    cands[nc++] = modules[i].alias;
            }
        const char *near = lang_suggest(m->text, cands, nc);
        qm_buf all = {0};
        list_modules(&all);
        unknown_name(ps, m->span, "selector", m->text, near, &all);
        return;
    }
    m->mod = (qm_module)mod;
    const module_info *mi = &modules[mod];
    if (mi->is_part) {
        if (mod == QM_MOD_ANY)
            lang_error(ps, m->span, "'*' stands for every linear of a module: write it after one, "
                                    "as in experts.*");
        else if (QKVO & PART(mod))
            lang_error(ps, m->span, "'%s' is a part of attn: write attn.%s", m->text, m->text);
        else
            lang_error(ps, m->span, "'%s' is a part: write experts.%s, shared_experts.%s or mlp.%s",
                       m->text, m->text, m->text, m->text);
        return;
    }
    if (mi->model_level && sel->scope != QM_SCOPE_NONE)
        lang_error(ps, m->span, "'%s' is not inside a layer: write it without '%s[...]'", m->text,
                   sel->scope_text);
    if (m->index) {
        if (mod != QM_MOD_EXPERTS)
            lang_error(ps, m->index->span, "'%s' takes no brackets; brackets go on layers, moe_layers, "
                                           "experts and linears", m->text);
        else if (m->index->kind == QM_INDEX_LIST)
            check_ranges(ps, m->index);
        else
            check_ranked(ps, m->index, LEVEL_EXPERT, "experts");
    }
    if (sel->nseg == 1)
        return;
    /* the part */
    qm_segment *p = &sel->seg[1];
    int part = find_module(p->text);
    if (!mi->parts) {
        lang_error(ps, p->span, "'%s' has no parts; '%s' cannot follow it", m->text, p->text);
        return;
    }
    if (part < 0 || !(mi->parts & PART(part))) {
        qm_buf b = {0};
        for (int i = 0; i < QM_MOD_COUNT; i++)
            if (mi->parts & PART(i))
                qm_buf_printf(&b, "%s%s", b.n ? " " : "", modules[i].name);
        lang_error(ps, p->span, "'%s' has no part '%s'; its parts are %s", m->text, p->text,
                   b.s ? b.s : "");
        free(b.s);
        return;
    }
    p->mod = (qm_module)part;
    if (p->index) {
        if (p->index->kind == QM_INDEX_LIST)
            lang_error(ps, p->index->span, "a linear takes no index list; to pick experts write "
                                           "experts[...].%s", p->text);
        else
            check_ranked(ps, p->index, LEVEL_LINEAR, span_str(ps, p->span, name, sizeof name));
    }
    if (sel->nseg > 2)
        lang_error(ps, sel->seg[2].span, "a selector names a module and at most one of its parts; "
                                         "'%s' goes too deep", sel->seg[2].text);
}

/* ---- actions --------------------------------------------------------------------- */

static const qm_field action_field[QM_ACT_COUNT] = {
    [QM_ACT_WIDTH] = QM_FIELD_WIDTH,         [QM_ACT_KEEP] = QM_FIELD_WIDTH,
    [QM_ACT_DELTA] = QM_FIELD_DELTA,         [QM_ACT_GROUP] = QM_FIELD_GROUP,
    [QM_ACT_GROUP_NONE] = QM_FIELD_GROUP,    [QM_ACT_SYM] = QM_FIELD_SYM,
    [QM_ACT_ASYM] = QM_FIELD_SYM,            [QM_ACT_ACT_ORDER] = QM_FIELD_ACT_ORDER,
    [QM_ACT_NO_ACT_ORDER] = QM_FIELD_ACT_ORDER,
};

static void check_actions(lang_state *ps, qm_actions *a, int is_default)
{
    const qm_action *by[QM_FIELD_COUNT] = {0};
    for (size_t i = 0; i < a->n; i++) {
        const qm_action *x = &a->v[i];
        qm_field f = action_field[x->kind];
        int len = (int)(x->span.end - x->span.begin);
        const char *text = lang_text(ps->src, x->span);
        switch (x->kind) {
        case QM_ACT_WIDTH:
            if (!qm_is_width(x->value)) {
                char w[LANG_WIDTHS_SIZE];
                lang_error(ps, x->span, "'%.*s' is not a width; the widths are %s", len, text, lang_widths(w));
                continue;
            }
            a->bits = (int)x->value;
            break;
        case QM_ACT_KEEP: a->bits = QM_KEEP; break;
        case QM_ACT_DELTA:
            if (x->value == 0 || x->value > MAX_DELTA || x->value < -MAX_DELTA) {
                lang_error(ps, x->span, "'%.*s' is out of range: a relative width is +1bit to +%dbit "
                                        "or -1bit to -%dbit", len, text, MAX_DELTA, MAX_DELTA);
                continue;
            }
            if (is_default) {
                lang_error(ps, x->span, "a default sets widths; '%.*s' needs a width to change", len,
                           text);
                continue;
            }
            a->delta = (int)x->value;
            break;
        case QM_ACT_GROUP:
            if (x->value < 1 || x->value > MAX_GROUP) {
                lang_error(ps, x->span, "a group is 1 to %d columns, or 'none' for per channel",
                           MAX_GROUP);
                continue;
            }
            a->group = x->value;
            break;
        case QM_ACT_GROUP_NONE: a->group = 0; break;
        case QM_ACT_SYM: a->sym = 1; break;
        case QM_ACT_ASYM: a->sym = 0; break;
        case QM_ACT_ACT_ORDER: a->act_order = 1; break;
        case QM_ACT_NO_ACT_ORDER: a->act_order = 0; break;
        case QM_ACT_COUNT: continue;
        }
        /* each field once; a width and a change of width never together */
        const qm_action *before = by[f];
        if (!before && f == QM_FIELD_WIDTH)
            before = by[QM_FIELD_DELTA];
        if (!before && f == QM_FIELD_DELTA)
            before = by[QM_FIELD_WIDTH];
        if (before) {
            int blen = (int)(before->span.end - before->span.begin);
            const char *btext = lang_text(ps->src, before->span);
            if (blen == len && memcmp(btext, text, (size_t)len) == 0)
                lang_error(ps, x->span, "'%.*s' is given twice in this rule", len, text);
            else
                lang_error(ps, x->span, "'%.*s' conflicts with '%.*s' earlier in this rule", len, text,
                           blen, btext);
            continue;
        }
        by[f] = x;
        a->set |= QM_SETS(f);
        a->where[f] = x->span;
    }
}

/* ---- statements ------------------------------------------------------------------- */

void lang_check_stmt(lang_state *ps, qm_stmt *st)
{
    switch (st->kind) {
    case QM_STMT_IMPORT:
        if (!st->u.import.name[0])
            lang_error(ps, st->u.import.name_span, "an import needs a name, as in import \"paper/attn-4bit\"");
        break;
    case QM_STMT_ARCH:
        for (size_t i = 0; i < st->u.arch.n; i++) {
            qm_word *w = &st->u.arch.v[i];
            w->id = find_name(w->text, qm_family_names, QM_FAMILY_COUNT);
            if (w->id < 0) {
                const char *near = lang_suggest(w->text, qm_family_names, QM_FAMILY_COUNT);
                qm_buf all = {0};
                for (int f = 0; f < QM_FAMILY_COUNT; f++)
                    qm_buf_printf(&all, "%s%s", f ? " " : "", qm_family_names[f]);
                unknown_name(ps, w->span, "architecture", w->text, near, &all);
                continue;
            }
            for (size_t j = 0; j < i; j++)
                if (st->u.arch.v[j].id == w->id) {
                    lang_error(ps, w->span, "'%s' is listed twice", w->text);
                    break;
                }
        }
        break;
    case QM_STMT_BUDGET: {
        double b = st->u.budget.bits;
        if (!(b >= MIN_BUDGET && b <= MAX_BUDGET))
            lang_error(ps, st->u.budget.bits_span, "a budget of %.*s bits is out of reach: widths run "
                                                   "from 2bit to 8bit",
                       (int)(st->u.budget.bits_span.end - st->u.budget.bits_span.begin),
                       lang_text(ps->src, st->u.budget.bits_span));
        if (st->u.budget.by != QM_SCORER_NONE)
            st->u.budget.by = scorer(ps, st->u.budget.by_span);
        if (ps->budget) {
            size_t line, col;
            qm_source_linecol(ps->src, ps->budget->span.begin, &line, &col);
            lang_error(ps, st->span, "a second budget; the first is on line %zu", line);
        } else {
            ps->budget = st;
        }
        break;
    }
    case QM_STMT_ENGINE:
        /* the name is the compiler's to check: lang/ knows no engines */
        if (st->u.engine.fit < 0)
            lang_error(ps, st->u.engine.fit_span, "'%.*s' after the engine's name; only 'fit' may follow it",
                       (int)(st->u.engine.fit_span.end - st->u.engine.fit_span.begin),
                       lang_text(ps->src, st->u.engine.fit_span));
        if (st->u.engine.fit > 0) {
            if (ps->fit) {
                size_t line, col;
                qm_source_linecol(ps->src, ps->fit->span.begin, &line, &col);
                lang_error(ps, st->u.engine.fit_span, "a second engine to fit to; the first is on line %zu", line);
            } else {
                ps->fit = st;
            }
        }
        break;
    case QM_STMT_DEFAULT:
        check_actions(ps, &st->u.rule.act, 1);
        break;
    case QM_STMT_RULE:
        for (size_t i = 0; i < st->u.rule.nsel; i++)
            check_selector(ps, &st->u.rule.sel[i]);
        check_actions(ps, &st->u.rule.act, 0);
        break;
    }
}
