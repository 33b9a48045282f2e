/* ast.h: the policy language's front end: .qmoe text -> AST.
 *
 * The first stage of the pipeline (lang -> compiler -> runtime).  It knows
 * the language and the names of the canonical module tree, but nothing about
 * any model: whether `layers[40]` exists is the compiler's question.  The
 * grammar, the semantics and examples are in qmoe-policy(5).
 *
 *   qm_policy_parse_file()   read, lex, parse and check one file
 *   qm_policy_expand()       replace each import by the imported statements
 *   qm_policy_format()       canonical text (`qmoe fmt`)
 *   qm_policy_free()         free everything at once
 *
 * One parse owns one arena: the source text, the strings, the nodes and the
 * comments are freed together by qm_policy_free(), so no error path leaks.
 * Every node carries a byte span into its source; line and column are
 * computed only when a diagnostic is made.
 *
 * Diagnostics.  Every diagnostic this module adds to a qm_diag has a
 * location: the file, and mostly a line, a column and an excerpt (the source
 * line and an underline), which qm_diag_print() shows GNU-style:
 *
 *   p.qmoe:3:7: error: '5bit' is not a width; the widths are 2bit 3bit 4bit 8bit
 *   attn: 5bit
 *         ^~~~
 */
#ifndef QM_LANG_AST_H
#define QM_LANG_AST_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- sources and spans ---------------------------------------------------- */

/* Bytes [begin, end) of a source; begin == end for an empty span (a place). */
typedef struct qm_span {
    size_t begin, end;
} qm_span;

/* One policy file's text.  Owned by the arena of the policy parsed from it. */
typedef struct qm_source {
    const char *path; /* as given to the parser; used in diagnostics */
    const char *name; /* what plans record, content not spelling: the file name
                       * for a policy parsed directly ("p.qmoe" for
                       * "./dir/p.qmoe"), the import's name for an imported
                       * one (qm_policy_expand(): "paper/attn-4bit") */
    const char *text; /* (len + 1) bytes, NUL-terminated (it may hold other NULs) */
    size_t len;
} qm_source;

/* 1-based line and byte column of offset `off` (clamped to the text). */
void qm_source_linecol(const qm_source *src, size_t off, size_t *line, size_t *col);

/* Add a diagnostic located at `span` of `src`, as described above.  The
 * compiler uses it too (e.g. "warning: rule matches nothing").  Returns
 * QM_EFORMAT for an error and QM_OK otherwise, so failing reads as
 *   return qm_source_diag(d, QM_SEV_ERROR, src, span, "...");          */
qm_status qm_source_diag(qm_diag *d, qm_severity sev, const qm_source *src, qm_span span,
                         const char *fmt, ...) QM_PRINTF(5, 6);

/* ---- names the language knows -------------------------------------------- */

/* Scorers that data-driven selections and budgets rank by. */
typedef enum qm_scorer {
    QM_SCORER_NONE = -1,        /* not given */
    QM_SCORER_FREQUENCY,        /* per expert: routing counts (experts[...]) */
    QM_SCORER_IMPORTANCE,       /* per MoE block: 1 - cosine around the FFN (moe_layers[...]) */
    QM_SCORER_IMPORTANCE_RESIDUAL, /* per MoE block: around the residual stream */
    QM_SCORER_OUTLIER,          /* per linear: max column max/mean |w| (experts.*[...]) */
    QM_SCORER_MEASURED,         /* any level: measured error saved per bit (`qmoe measure`); budgets: the knapsack */
    QM_SCORER_COUNT
} qm_scorer;

const char *qm_scorer_name(qm_scorer s); /* "frequency", ...; "?" when out of range */

/* Module names a selector path is made of.  The first segment of a path
 * names a module (QM_MOD_ATTN ... QM_MOD_LM_HEAD); a second, optional
 * segment names one of its linears (QM_MOD_Q ... QM_MOD_ANY). */
typedef enum qm_module {
    QM_MOD_ATTN,        /* attn: q k v o */
    QM_MOD_ROUTER,      /* router */
    QM_MOD_EXPERTS,     /* experts: routed experts, each with gate up down */
    QM_MOD_SHARED,      /* shared_experts, alias shared: gate up down */
    QM_MOD_SHARED_GATE, /* shared_gate (Qwen2-MoE's shared_expert_gate) */
    QM_MOD_MLP,         /* mlp: dense FFN layers, gate up down */
    QM_MOD_NORMS,       /* norms, alias norm: every norm weight (q/k norms too) */
    QM_MOD_ATTN_NORM,   /* attn_norm */
    QM_MOD_FFN_NORM,    /* ffn_norm */
    QM_MOD_EMBED,       /* embed (model-level: no scope) */
    QM_MOD_LM_HEAD,     /* lm_head (model-level: no scope) */
    QM_MOD_Q, QM_MOD_K, QM_MOD_V, QM_MOD_O,        /* parts of attn */
    QM_MOD_GATE, QM_MOD_UP, QM_MOD_DOWN,           /* parts of experts, shared, mlp */
    QM_MOD_ANY,         /* `*`: every linear of the module before it */
    QM_MOD_COUNT
} qm_module;

const char *qm_module_name(qm_module m); /* canonical spelling ("shared", "norms", "*") */

/* ---- bracket specs --------------------------------------------------------- */

/* One item of an index list: a single index (lo == hi) or an inclusive range.
 * A negative index counts from the end (-1 is the last).  An open end
 * (`2..`, `..3`) sets lo_open or hi_open and leaves lo/hi 0. */
typedef struct qm_range {
    long long lo, hi;
    unsigned char lo_open, hi_open, single; /* single: written as one index */
    qm_span span;
} qm_range;

typedef enum qm_index_kind {
    QM_INDEX_LIST,      /* [0, 5..7], [-4..] */
    QM_INDEX_PICK,      /* [top 30 per layer by frequency], [random 25% seed 7] */
    QM_INDEX_THRESHOLD  /* [frequency > 0.05] */
} qm_index_kind;

typedef enum qm_pick_how { QM_PICK_TOP, QM_PICK_BOTTOM, QM_PICK_RANDOM } qm_pick_how;
typedef enum qm_cmp { QM_CMP_LT, QM_CMP_LE, QM_CMP_GT, QM_CMP_GE } qm_cmp;

/* The text between brackets, a tagged union on `kind`. */
typedef struct qm_index {
    qm_index_kind kind;
    qm_span span; /* '[' through ']' */
    union {
        struct {
            qm_range *v; /* (n) in source order */
            size_t n;
        } list;
        struct {
            qm_pick_how how;
            int is_percent;     /* amount is a percentage of the candidates */
            long long count;    /* !is_percent: how many, >= 1 */
            double percent;     /* is_percent: (0, 100] */
            qm_span amount_span;
            int per_layer;      /* `per layer`: pick within each layer, else over all */
            qm_scorer scorer;   /* top/bottom: `by SCORER`; QM_SCORER_NONE for random */
            qm_span scorer_span;
            unsigned long long seed; /* random: `seed N` */
        } pick;
        struct {
            qm_scorer scorer;
            qm_span scorer_span;
            qm_cmp op;
            double value;
            qm_span value_span;
        } threshold;
    } u;
} qm_index;

/* ---- selectors -------------------------------------------------------------- */

typedef enum qm_scope {
    QM_SCOPE_NONE,       /* every layer (or model-level modules) */
    QM_SCOPE_LAYERS,     /* layers[...]: indices over all decoder layers */
    QM_SCOPE_MOE_LAYERS  /* moe_layers[...]: indices over MoE blocks only */
} qm_scope;

/* One name in a path, with its optional brackets. */
typedef struct qm_segment {
    qm_module mod;
    const char *text;  /* as written ("shared_experts", "norm", "*") */
    qm_span span;      /* the name through its ']' */
    qm_index *index;   /* NULL without brackets */
} qm_segment;

/* scope? ('.' segment)*: `layers[0..3].attn`, `experts.*[top 50% by outlier]`,
 * `moe_layers[-2..]` (a bare scope covers everything in those layers).
 * Checked shapes: seg[0] is a module (QM_MOD_ATTN..QM_MOD_LM_HEAD), seg[1]
 * when present is one of its parts or `*`; nseg <= 2; nseg >= 1 unless
 * there is a scope. */
typedef struct qm_selector {
    qm_scope scope;
    const char *scope_text; /* "layers" or "moe_layers"; NULL without scope */
    qm_index *scope_index;  /* the scope's brackets; NULL without scope */
    qm_span scope_span;
    qm_segment *seg;        /* (nseg) */
    size_t nseg;
    qm_span span;           /* the path, without a trailing '?' */
    int optional;           /* written `path?`: matching nothing in a model is no warning */
} qm_selector;

/* ---- actions ----------------------------------------------------------------- */

/* The settings a rule can make.  A rule sets some of them; a later rule
 * overrides only the fields it sets. */
typedef enum qm_field {
    QM_FIELD_WIDTH,     /* an absolute width or keep */
    QM_FIELD_DELTA,     /* +Nbit / -Nbit: relative to the width so far */
    QM_FIELD_GROUP,     /* group N / group none */
    QM_FIELD_SYM,       /* sym / asym */
    QM_FIELD_ACT_ORDER, /* act_order / no_act_order */
    QM_FIELD_COUNT
} qm_field;

#define QM_SETS(f) (1u << (f)) /* bit of qm_actions.set for field f */

typedef enum qm_action_kind {
    QM_ACT_WIDTH,        /* 4bit: value = 4 */
    QM_ACT_KEEP,         /* keep: not quantized, stored as is */
    QM_ACT_DELTA,        /* +1bit: value = 1; -1bit: value = -1 */
    QM_ACT_GROUP,        /* group 128: value = 128 */
    QM_ACT_GROUP_NONE,   /* group none: per channel, value = 0 */
    QM_ACT_SYM,
    QM_ACT_ASYM,
    QM_ACT_ACT_ORDER,
    QM_ACT_NO_ACT_ORDER,
    QM_ACT_COUNT
} qm_action_kind;

/* One action as written. */
typedef struct qm_action {
    qm_action_kind kind;
    long long value;
    qm_span span;
} qm_action;

enum { QM_KEEP = 0 }; /* qm_actions.bits for `keep` */

/* What a rule sets.  Read a field only when its QM_SETS bit is in `set`;
 * the checker guarantees each field is set at most once per rule and that
 * WIDTH and DELTA are not both set. */
typedef struct qm_actions {
    unsigned set;    /* QM_SETS(QM_FIELD_...) bits */
    int bits;        /* WIDTH: 2, 3, 4, 8, or QM_KEEP */
    int delta;       /* DELTA: -6..-1 or 1..6 bits */
    long long group; /* GROUP: columns per group, 0 = per channel (`group none`) */
    int sym;         /* SYM: 1 sym, 0 asym */
    int act_order;   /* ACT_ORDER: 1 act_order, 0 no_act_order */
    qm_span where[QM_FIELD_COUNT]; /* span of the action that set each field */
    qm_action *v;    /* (n) the actions in source order */
    size_t n;
} qm_actions;

/* ---- statements -------------------------------------------------------------- */

typedef enum qm_stmt_kind {
    QM_STMT_IMPORT,  /* import "paper/attn-4bit" */
    QM_STMT_ARCH,    /* arch mixtral, deepseek */
    QM_STMT_BUDGET,  /* budget 3.0 bits [by outlier] */
    QM_STMT_ENGINE,  /* engine vllm [fit] */
    QM_STMT_DEFAULT, /* default: 2bit group 128 sym */
    QM_STMT_RULE     /* shared_experts, layers[0..3].attn: 8bit */
} qm_stmt_kind;

/* A name with its place: arch families, and the like. */
typedef struct qm_word {
    const char *text;
    qm_span span;
    int id; /* qm_family for arch */
} qm_word;

typedef struct qm_stmt {
    qm_stmt_kind kind;
    qm_span span;          /* first token through last, terminator excluded */
    const qm_source *src;  /* the file it was written in (imports keep theirs) */
    union {
        struct {
            const char *name; /* as written, without quotes */
            qm_span name_span;
        } import;
        struct {
            qm_word *v; /* (n) qm_word.id is a qm_family */
            size_t n;
        } arch;
        struct {
            double bits;       /* average bits over quantized weights, in [2, 8] */
            qm_span bits_span;
            qm_scorer by;      /* QM_SCORER_NONE when `by` is absent */
            qm_span by_span;
        } budget;
        struct {
            const char *name;  /* as written ("llama.cpp"); the compiler knows the engines */
            qm_span name_span;
            int fit;           /* `fit`: compile the plan that engine serves */
            qm_span fit_span;
        } engine;
        struct {
            qm_selector *sel;  /* (nsel); 0 for `default` */
            size_t nsel;
            qm_actions act;
        } rule;                /* QM_STMT_RULE and QM_STMT_DEFAULT */
    } u;
} qm_stmt;

/* A `#` comment, kept for the formatter: span covers '#' to the end of the
 * line, newline excluded. */
typedef struct qm_comment {
    qm_span span;
} qm_comment;

typedef struct qm_policy_arena qm_policy_arena; /* private */

/* A parsed policy.  After qm_policy_expand() `stmt` holds the imported
 * statements in place of each import (their `src` names their file) and the
 * policies they came from are owned by this one. */
typedef struct qm_policy {
    const qm_source *src;   /* the file parsed */
    qm_stmt **stmt;         /* (n) in source order */
    size_t n;
    qm_comment *comment;    /* (ncomment) comments of `src`, in order */
    size_t ncomment;
    const qm_source **imports; /* (nimports) after qm_policy_expand(): the files its
                                * imports brought in, each import's file followed by
                                * those it imported, in source order */
    size_t nimports;
    qm_policy_arena *arena; /* owns everything above */
} qm_policy;

/* ---- entry points ------------------------------------------------------------ */

enum { QM_POLICY_MAX_ERRORS = 20 }; /* a parse stops after this many errors */

/* Parse and check the policy `text` (len bytes; it need not be
 * NUL-terminated and may contain any bytes); `path` names it in
 * diagnostics.  On success *out is the policy (free with qm_policy_free())
 * and the result is QM_OK; warnings may have been added to d.  On errors
 * they are all in d (up to QM_POLICY_MAX_ERRORS, parsing resumes at the
 * next statement), *out is NULL and the result is QM_EFORMAT (QM_ENOMEM
 * when memory ran out, QM_EINVAL for a text over 16 MiB).  Imports are
 * recorded, not followed. */
qm_status qm_policy_parse(const char *path, const char *text, size_t len, qm_policy **out,
                          qm_diag *d);

/* qm_policy_parse() on the contents of the file `path`. */
qm_status qm_policy_parse_file(const char *path, qm_policy **out, qm_diag *d);

/* Free a policy and all it owns (imported policies too).  NULL is allowed. */
void qm_policy_free(qm_policy *p);

/* 1 when a statement of p (expanded or not: its own statements) ranks or
 * budgets by scorer s: what a driver asks before it makes the data the
 * scorer reads (`qmoe bench` runs `measure` only for policies that use
 * `measured`). */
int qm_policy_uses_scorer(const qm_policy *p, qm_scorer s);

/* ---- imports ---------------------------------------------------------------- */

/* Where imports are looked for, in this order. */
typedef struct qm_search {
    const char *const *dirs; /* (n_dirs) -I directories, in order */
    size_t n_dirs;
    const char *path_env;    /* colon-separated directories; NULL reads $QMOE_PATH */
    const char *stdlib;      /* the standard library; NULL means QM_DATADIR */
} qm_search;

/* The file an import names.  A name starting with "/" is used as is; one
 * starting with "./" or "../" is relative to `from_dir` (the importing
 * file's directory); any other name is looked for in s->dirs, then each
 * directory of the path list, then the stdlib.  ".qmoe" is appended unless
 * the name ends with it.  On success *path is the file (caller frees) and
 * the result is QM_OK.  Otherwise the result is QM_ENOTFOUND (QM_ENOMEM)
 * and, when `looked` is not NULL, *looked lists the directories searched,
 * separated by ", " (caller frees; NULL when out of memory).  Adds nothing
 * to any diagnostics sink. */
qm_status qm_policy_find_import(const char *name, const char *from_dir, const qm_search *s,
                                char **path, char **looked);

/* Expand every import of p in place, recursively: parse the imported file,
 * expand its imports, and splice its statements where the import was.
 * Errors (a missing file, a parse error in an imported file, an import
 * cycle, shown as "a.qmoe -> b.qmoe -> a.qmoe", nesting deeper than 32)
 * are reported at the import that caused them.  A second `budget` across
 * files is an error.  Returns QM_OK when p has no imports left, else the
 * first failure's status; p stays valid (and freeable) either way. */
qm_status qm_policy_expand(qm_policy *p, const qm_search *s, qm_diag *d);

/* ---- formatting ------------------------------------------------------------ */

/* The canonical text of p (which must not have been expanded): one
 * statement per line, no ';' at line ends, canonical spacing, comments kept
 * (a comment inside a statement moves to a line of its own above it),
 * runs of blank lines collapsed to one.  fmt(parse(fmt(x))) == fmt(x).
 * *out is NUL-terminated, *len bytes long (len may be NULL); caller frees.
 * Returns QM_OK or QM_ENOMEM. */
qm_status qm_policy_format(const qm_policy *p, char **out, size_t *len);

#endif
