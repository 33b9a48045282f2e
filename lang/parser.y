/* parser.y: the policy grammar (qmoe-policy(5) has it as EBNF).
 *
 * A pure LALR(1) parser with byte-span locations and lookahead correction,
 * fed by the reentrant scanner in lexer.l; everything it builds goes into the
 * parse's arena (lang_state.arena).  Each complete statement is checked
 * (check.c) and appended to the policy.  A syntax error skips to the end of
 * its statement and parsing goes on; errors are reported through
 * lang_error_once, which keeps one such error per statement and stops after
 * QM_POLICY_MAX_ERRORS.
 */
%code top {
#include "config.h"
}

%code requires {
#include "lang/internal.h"
typedef void *yyscan_t;
}

%code provides {
int qmyylex(QMYYSTYPE *lval, qm_span *lloc, yyscan_t scanner);
}

%code {
#include <stdio.h>
#include <string.h>

/* A rule's span runs from its first symbol to its last; an empty rule sits
 * where the previous symbol ended. */
#define YYLLOC_DEFAULT(cur, rhs, n)                            \
    do {                                                       \
        if (n) {                                               \
            (cur).begin = YYRHSLOC(rhs, 1).begin;              \
            (cur).end = YYRHSLOC(rhs, n).end;                  \
        } else {                                               \
            (cur).begin = (cur).end = YYRHSLOC(rhs, 0).end;    \
        }                                                      \
    } while (0)

/* Allocate x in the arena or give up the parse as out of memory. */
#define NEW(x)                                                 \
    do {                                                       \
        if (!((x) = lang_alloc(ps->arena, sizeof *(x)))) {     \
            ps->oom = 1;                                       \
            YYNOMEM;                                           \
        }                                                      \
    } while (0)
#define VEC(v, T)                                              \
    do {                                                       \
        if (!((v) = lang_vec_new(ps->arena, sizeof(T)))) {     \
            ps->oom = 1;                                       \
            YYNOMEM;                                           \
        }                                                      \
    } while (0)
#define PUSH(v, e)                                             \
    do {                                                       \
        if (!lang_vec_push(ps->arena, (v), (e))) {             \
            ps->oom = 1;                                       \
            YYNOMEM;                                           \
        }                                                      \
    } while (0)

#define STMT(x, kind, span)                                    \
    do {                                                       \
        if (!((x) = new_stmt(ps, (kind), (span)))) {           \
            ps->oom = 1;                                       \
            YYNOMEM;                                           \
        }                                                      \
    } while (0)

static qm_stmt *new_stmt(lang_state *ps, qm_stmt_kind kind, qm_span span)
{
    qm_stmt *st = lang_alloc(ps->arena, sizeof *st);
    if (st) {
        st->kind = kind;
        st->span = span;
        st->src = ps->src;
    }
    return st;
}

static qm_action action(qm_action_kind kind, long long value, qm_span span)
{
    return (qm_action){.kind = kind, .value = value, .span = span};
}

static void yyerror(const qm_span *loc, yyscan_t scanner, lang_state *ps, const char *msg)
{
    lang_error_once(ps, *loc, "%s", msg);
}
}

%define api.pure full
%define api.prefix {qmyy}
%define api.location.type {qm_span}
%define api.token.prefix {QT_}
%define parse.error custom
%define parse.lac full
%locations
%expect 0
%param {yyscan_t scanner}
%parse-param {lang_state *ps}

%union {
    long long ival;
    double num;
    const char *str;
    int op;
    qm_stmt *stmt;
    qm_index *idx;
    qm_segment *seg;
    qm_action act;
    qm_range rng;
    lang_vec *vec;
}

/* The aliases are how messages name the tokens. */
%token END 0 "end of file"
%token <str> IDENT "a name" STRING "a quoted string"
%token <ival> INT "an integer" BITS "a width" DELTA "a relative width"
%token <num> REAL "a number" PERCENT "a percentage"
%token TERM "';' or a new line"
%token IMPORT "'import'" ARCH "'arch'" BUDGET "'budget'" DEFAULT "'default'" ENGINE "'engine'"
%token TOP "'top'" BOTTOM "'bottom'" RANDOM "'random'" PER "'per'" LAYER "'layer'"
%token BY "'by'" SEED "'seed'" GROUP "'group'" NONE "'none'" BITWORD "'bits'"
%token DOTDOT "'..'" LE "'<='" GE "'>='"

%type <stmt> stmt
%type <num> number value
%type <ival> index how optional
%type <op> cmp per
%type <idx> spec pick
%type <rng> range
%type <seg> segment
%type <act> action
%type <vec> words selectors path actions ranges
%type <str> dotted

%%

file
    : %empty
    | file TERM             { ps->stmt_err = 0; }
    | file stmt TERM        {
                                lang_check_stmt(ps, $2);
                                PUSH(ps->stmts, &$2);
                                ps->stmt_err = 0;
                            }
    | file error TERM       { yyerrok; ps->stmt_err = 0; }
    ;

stmt
    : IMPORT STRING         {
                                STMT($$, QM_STMT_IMPORT, @$);
                                $$->u.import.name = $2;
                                $$->u.import.name_span = @2;
                            }
    | ARCH words            {
                                STMT($$, QM_STMT_ARCH, @$);
                                $$->u.arch.v = $2->v;
                                $$->u.arch.n = $2->n;
                            }
    | BUDGET number BITWORD {
                                STMT($$, QM_STMT_BUDGET, @$);
                                $$->u.budget.bits = $2;
                                $$->u.budget.bits_span = @2;
                                $$->u.budget.by = QM_SCORER_NONE;
                            }
    | BUDGET number BITWORD BY IDENT {
                                STMT($$, QM_STMT_BUDGET, @$);
                                $$->u.budget.bits = $2;
                                $$->u.budget.bits_span = @2;
                                /* the checker resolves the name */
                                $$->u.budget.by = QM_SCORER_COUNT;
                                $$->u.budget.by_span = @5;
                            }
    | ENGINE dotted         {
                                STMT($$, QM_STMT_ENGINE, @$);
                                $$->u.engine.name = $2;
                                $$->u.engine.name_span = @2;
                            }
    | ENGINE dotted IDENT   {
                                /* the checker says what the word may be */
                                STMT($$, QM_STMT_ENGINE, @$);
                                $$->u.engine.name = $2;
                                $$->u.engine.name_span = @2;
                                $$->u.engine.fit = strcmp($3, "fit") == 0 ? 1 : -1;
                                $$->u.engine.fit_span = @3;
                            }
    | DEFAULT ':' actions   {
                                STMT($$, QM_STMT_DEFAULT, @$);
                                $$->u.rule.act.v = $3->v;
                                $$->u.rule.act.n = $3->n;
                            }
    | selectors ':' actions {
                                STMT($$, QM_STMT_RULE, @$);
                                $$->u.rule.sel = $1->v;
                                $$->u.rule.nsel = $1->n;
                                $$->u.rule.act.v = $3->v;
                                $$->u.rule.act.n = $3->n;
                            }
    ;

/* An engine's name: words joined by dots, as in llama.cpp. */
dotted
    : IDENT
    | dotted '.' IDENT      {
                                size_t a = strlen($1), b = strlen($3);
                                char *s = lang_alloc(ps->arena, a + b + 2);
                                if (!s) {
                                    ps->oom = 1;
                                    YYNOMEM;
                                }
                                memcpy(s, $1, a);
                                s[a] = '.';
                                memcpy(s + a + 1, $3, b + 1);
                                $$ = s;
                            }
    ;

number
    : INT                   { $$ = (double)$1; }
    | REAL
    ;

words
    : IDENT                 {
                                VEC($$, qm_word);
                                PUSH($$, &((qm_word){.text = $1, .span = @1}));
                            }
    | words ',' IDENT       { $$ = $1; PUSH($$, &((qm_word){.text = $3, .span = @3})); }
    ;

/* ---- selectors: the checker sorts scope from modules and resolves names --- */

/* `path?`: a selector that may match nothing in a model (a recipe for
 * several architectures naming a module only some have). */
selectors
    : path optional         {
                                VEC($$, qm_selector);
                                PUSH($$, &((qm_selector){.seg = $1->v, .nseg = $1->n, .span = @1, .optional = $2}));
                            }
    | selectors ',' path optional {
                                $$ = $1;
                                PUSH($$, &((qm_selector){.seg = $3->v, .nseg = $3->n, .span = @3, .optional = $4}));
                            }
    ;

optional
    : %empty                { $$ = 0; }
    | '?'                   { $$ = 1; }
    ;

path
    : segment               { VEC($$, qm_segment); PUSH($$, $1); }
    | path '.' segment      { $$ = $1; PUSH($$, $3); }
    ;

segment
    : IDENT                 { NEW($$); $$->text = $1; $$->span = @$; }
    | '*'                   { NEW($$); $$->text = "*"; $$->span = @$; }
    | IDENT '[' spec ']'    {
                                NEW($$); $$->text = $1; $$->span = @$;
                                $$->index = $3; $3->span = (qm_span){@2.begin, @4.end};
                            }
    | '*' '[' spec ']'      {
                                NEW($$); $$->text = "*"; $$->span = @$;
                                $$->index = $3; $3->span = (qm_span){@2.begin, @4.end};
                            }
    ;

spec
    : ranges                {
                                NEW($$);
                                $$->kind = QM_INDEX_LIST;
                                $$->u.list.v = $1->v;
                                $$->u.list.n = $1->n;
                            }
    | pick
    | IDENT cmp value       {
                                NEW($$);
                                $$->kind = QM_INDEX_THRESHOLD;
                                $$->u.threshold.scorer = QM_SCORER_COUNT; /* resolved by the checker */
                                $$->u.threshold.scorer_span = @1;
                                $$->u.threshold.op = $2;
                                $$->u.threshold.value = $3;
                                $$->u.threshold.value_span = @3;
                            }
    ;

ranges
    : range                 { VEC($$, qm_range); PUSH($$, &$1); }
    | ranges ',' range      { $$ = $1; PUSH($$, &$3); }
    ;

range
    : index                 { $$ = (qm_range){.lo = $1, .hi = $1, .single = 1, .span = @$}; }
    | index DOTDOT index    { $$ = (qm_range){.lo = $1, .hi = $3, .span = @$}; }
    | index DOTDOT          { $$ = (qm_range){.lo = $1, .hi_open = 1, .span = @$}; }
    | DOTDOT index          { $$ = (qm_range){.lo_open = 1, .hi = $2, .span = @$}; }
    ;

index
    : INT
    | '-' INT               { $$ = -$2; }
    ;

pick
    : how INT per BY IDENT  {
                                NEW($$); $$->kind = QM_INDEX_PICK;
                                $$->u.pick.how = (qm_pick_how)$1;
                                $$->u.pick.count = $2; $$->u.pick.amount_span = @2;
                                $$->u.pick.per_layer = $3;
                                $$->u.pick.scorer = QM_SCORER_COUNT; $$->u.pick.scorer_span = @5;
                            }
    | how PERCENT per BY IDENT {
                                NEW($$); $$->kind = QM_INDEX_PICK;
                                $$->u.pick.how = (qm_pick_how)$1;
                                $$->u.pick.is_percent = 1;
                                $$->u.pick.percent = $2; $$->u.pick.amount_span = @2;
                                $$->u.pick.per_layer = $3;
                                $$->u.pick.scorer = QM_SCORER_COUNT; $$->u.pick.scorer_span = @5;
                            }
    | RANDOM INT per SEED INT {
                                NEW($$); $$->kind = QM_INDEX_PICK;
                                $$->u.pick.how = QM_PICK_RANDOM;
                                $$->u.pick.count = $2; $$->u.pick.amount_span = @2;
                                $$->u.pick.per_layer = $3;
                                $$->u.pick.scorer = QM_SCORER_NONE;
                                $$->u.pick.seed = (unsigned long long)$5;
                            }
    | RANDOM PERCENT per SEED INT {
                                NEW($$); $$->kind = QM_INDEX_PICK;
                                $$->u.pick.how = QM_PICK_RANDOM;
                                $$->u.pick.is_percent = 1;
                                $$->u.pick.percent = $2; $$->u.pick.amount_span = @2;
                                $$->u.pick.per_layer = $3;
                                $$->u.pick.scorer = QM_SCORER_NONE;
                                $$->u.pick.seed = (unsigned long long)$5;
                            }
    ;

how
    : TOP                   { $$ = QM_PICK_TOP; }
    | BOTTOM                { $$ = QM_PICK_BOTTOM; }
    ;

per
    : %empty                { $$ = 0; }
    | PER LAYER             { $$ = 1; }
    ;

cmp
    : '<'                   { $$ = QM_CMP_LT; }
    | LE                    { $$ = QM_CMP_LE; }
    | '>'                   { $$ = QM_CMP_GT; }
    | GE                    { $$ = QM_CMP_GE; }
    ;

value
    : number
    | '-' number            { $$ = -$2; }
    ;

/* ---- actions ------------------------------------------------------------- */

actions
    : action                { VEC($$, qm_action); PUSH($$, &$1); }
    | actions action        { $$ = $1; PUSH($$, &$2); }
    | actions ',' action    { $$ = $1; PUSH($$, &$3); }
    ;

action
    : BITS                  { $$ = action(QM_ACT_WIDTH, $1, @$); }
    | DELTA                 { $$ = action(QM_ACT_DELTA, $1, @$); }
    | IDENT                 {
                                qm_action_kind k;
                                if (!lang_action_word($1, &k)) {
                                    lang_unknown_action(ps, $1, @1);
                                    k = QM_ACT_KEEP;
                                }
                                $$ = action(k, 0, @$);
                            }
    | GROUP INT             { $$ = action(QM_ACT_GROUP, $2, @$); }
    | GROUP NONE            { $$ = action(QM_ACT_GROUP_NONE, 0, @$); }
    | GROUP IDENT           {
                                lang_error_once(ps, @2, "'group' takes a number of columns or 'none', not '%s'", $2);
                                $$ = action(QM_ACT_GROUP_NONE, 0, @$);
                            }
    | INT BITWORD           {
                                char w[LANG_WIDTHS_SIZE];
                                if (qm_is_width($1))
                                    lang_error_once(ps, @$, "write the width as '%lldbit', without a space", $1);
                                else
                                    lang_error_once(ps, @$, "'%lld %.*s' is not a width; the widths are %s", $1,
                                                    (int)(@2.end - @2.begin), lang_text(ps->src, @2), lang_widths(w));
                                $$ = action(QM_ACT_WIDTH, $1, @$);
                            }
    | INT                   {
                                lang_error_once(ps, @1, "'%lld' is not an action; a width is written like '4bit'", $1);
                                $$ = action(QM_ACT_WIDTH, $1, @$);
                            }
    ;

%%

/* ---- syntax errors ----------------------------------------------------------
 *
 * Bison finds the error and the exact set of tokens that could have come
 * (lookahead correction makes the set exact); the messages below turn the
 * common mistakes into advice and the rest into "unexpected X; expected Y". */

enum { MAX_LISTED = 6 };

/* "'attn'", "end of line", "end of file", ... for the token at span. */
static void describe(const lang_state *ps, int sym, qm_span sp, char *buf, size_t cap)
{
    const qm_source *src = ps->src;
    if (sym == YYSYMBOL_YYEOF || sp.begin >= src->len)
        snprintf(buf, cap, "end of file");
    else if (sym == YYSYMBOL_TERM && src->text[sp.begin] == '\n')
        snprintf(buf, cap, "end of line");
    else {
        size_t n = sp.end - sp.begin;
        int more = n > 40;
        snprintf(buf, cap, "'%.*s%s'", (int)(more ? 40 : n), src->text + sp.begin, more ? "..." : "");
    }
}

/* The place just after the token before the lookahead: where a missing
 * ']' or ':' belongs, even when the lookahead is on the next line. */
static qm_span after_prev(const lang_state *ps)
{
    qm_span sp = ps->tok[1].span;
    return (qm_span){sp.end, sp.end};
}

static void where(const lang_state *ps, size_t off, char *buf, size_t cap)
{
    size_t line, col;
    qm_source_linecol(ps->src, off, &line, &col);
    snprintf(buf, cap, "%zu:%zu", line, col);
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, lang_state *ps)
{
    (void)scanner;
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
    if (n < 0)
        return n;
    unsigned char want[YYNTOKENS] = {0};
    for (int i = 0; i < n; i++)
        want[exp[i]] = 1;
    yysymbol_kind_t la = yypcontext_token(ctx);
    qm_span at = *yypcontext_location(ctx);
    char what[64], pos[32];
    describe(ps, la, at, what, sizeof what);

    if (want[YYTRANSLATE(']')] && !want[la] &&
        (la == YYTRANSLATE('.') || la == YYTRANSLATE(':') || la == YYSYMBOL_TERM ||
         la == YYSYMBOL_YYEOF || la == YYSYMBOL_IDENT)) {
        where(ps, ps->open_bracket.begin, pos, sizeof pos);
        lang_error_once(ps, after_prev(ps), "missing ']' to close the '[' at %s", pos);
        ps->depth = 0; /* so that the next new line ends the statement */
        return 0;
    }
    if (want[YYTRANSLATE(':')] &&
        (la == YYSYMBOL_BITS || la == YYSYMBOL_DELTA || la == YYSYMBOL_GROUP)) {
        lang_error_once(ps, after_prev(ps), "missing ':' before the actions");
        return 0;
    }
    if (want[YYTRANSLATE(':')] && la == YYSYMBOL_IDENT) {
        qm_action_kind k;
        char word[32];
        snprintf(word, sizeof word, "%.*s", (int)(at.end - at.begin), lang_text(ps->src, at));
        if (lang_action_word(word, &k)) {
            lang_error_once(ps, after_prev(ps), "missing ':' before the actions");
            return 0;
        }
    }
    if (want[YYSYMBOL_DOTDOT] && la == YYTRANSLATE('-')) {
        lang_error_once(ps, at, "ranges are written 'a..b', not 'a-b'");
        return 0;
    }
    if (want[YYSYMBOL_BY] && la == YYSYMBOL_IDENT) {
        lang_error_once(ps, at, "missing 'by' before the scorer %s", what);
        return 0;
    }
    if (want[YYSYMBOL_SEED]) {
        lang_error_once(ps, la == YYSYMBOL_INT ? at : after_prev(ps),
                        "missing 'seed N': a random selection needs a seed to be repeatable");
        return 0;
    }
    if (want[YYTRANSLATE(']')] && la == YYSYMBOL_PER) {
        lang_error_once(ps, at, "'per layer' goes before 'by'");
        return 0;
    }
    if (want[YYSYMBOL_IMPORT]) {
        lang_error_once(ps, at, "unexpected %s; a statement starts with a selector, "
                                "'default', 'budget', 'engine', 'import' or 'arch'", what);
        return 0;
    }
    if (want[YYSYMBOL_TOP] && want[YYSYMBOL_INT]) {
        lang_error_once(ps, at, "unexpected %s; expected indices such as 0..3, or a selection "
                                "such as top 5 by frequency", what);
        return 0;
    }
    if (want[YYSYMBOL_BITS]) {
        lang_error_once(ps, at, "unexpected %s; expected an action such as 4bit, keep, "
                                "group 128 or sym", what);
        return 0;
    }
    if (n == 0 || n > MAX_LISTED) {
        lang_error_once(ps, at, "unexpected %s", what);
        return 0;
    }
    char list[512];
    size_t o = 0;
    for (int i = 0; i < n && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s",
                              i == 0 ? "" : i == n - 1 ? " or " : ", ", yysymbol_name(exp[i]));
    lang_error_once(ps, at, "unexpected %s; expected %s", what, list);
    return 0;
}

int lang_parse_run(lang_state *ps)
{
    return yyparse(ps->scanner, ps);
}
