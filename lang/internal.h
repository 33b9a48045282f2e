/* internal.h: what the pieces of lang/ share and nothing outside it may use.
 *
 * One parse is one lang_state: the scanner's position and bracket depth, the
 * statements and comments built so far, the error count.  It lives on the
 * stack of qm_policy_parse(); the lexer reaches it through the scanner's
 * extra pointer and the parser through its %parse-param, so two parses (a
 * file and the file it imports) never share anything.
 *
 * Internal functions are named lang_* so that the library's export filter
 * (^qm_) keeps them private.
 */
#ifndef QM_LANG_INTERNAL_H
#define QM_LANG_INTERNAL_H

#include <setjmp.h>
#include <stdarg.h>

#include "lang/ast.h"

/* ---- arena ---------------------------------------------------------------- */

qm_policy_arena *lang_arena_new(void);
void lang_arena_free(qm_policy_arena *a);
/* size bytes aligned for any object, zeroed; NULL when out of memory. */
void *lang_alloc(qm_policy_arena *a, size_t size);
/* A NUL-terminated copy of s[0, n). */
char *lang_strndup(qm_policy_arena *a, const char *s, size_t n);
/* Set p->src->name to a copy of name in p's arena; 0, or -1 when out of memory. */
int lang_source_rename(qm_policy *p, const char *name);
/* The policies an expanded policy owns: freed with its arena. */
int lang_arena_adopt(qm_policy_arena *a, qm_policy *child);

/* A growable array in the arena (old storage is left to the arena). */
typedef struct lang_vec {
    void *v;
    size_t n, cap, size; /* size: bytes per element */
} lang_vec;

lang_vec *lang_vec_new(qm_policy_arena *a, size_t size);
/* Append a copy of elem; returns the new slot or NULL when out of memory. */
void *lang_vec_push(qm_policy_arena *a, lang_vec *vec, const void *elem);

/* ---- one parse -------------------------------------------------------------- */

enum { LANG_TOKS_KEPT = 2 };

typedef struct lang_tok {
    int tok;       /* the parser's token kind (0 = none yet) */
    qm_span span;
} lang_tok;

typedef struct lang_state {
    qm_policy_arena *arena;
    qm_source *src;
    qm_diag *d;
    void *scanner;

    /* scanner */
    size_t pos;            /* offset of the next byte to scan */
    int depth;             /* '[' not yet closed */
    qm_span open_bracket;  /* the innermost open '[' */
    int can_end;           /* the last token may end a statement */
    int eof_done;          /* the terminator implied at end of file was given */
    lang_tok tok[LANG_TOKS_KEPT]; /* [0] the latest token (the lookahead), [1] the one before */

    /* results */
    lang_vec *stmts;       /* of qm_stmt * */
    lang_vec *comments;    /* of qm_comment */
    const qm_stmt *budget; /* the first budget statement */
    const qm_stmt *fit;    /* the first `engine NAME fit` */

    /* errors */
    size_t errors;
    int stmt_err;          /* the current statement already has an error */
    int stop;              /* too many errors: the scanner returns end of file */
    int oom;
    jmp_buf fatal;         /* the scanner's fatal errors (out of memory) land here */
} lang_state;

/* Report an error at span (suppressed after the first error of a statement
 * when `once` and after the error limit). */
/* Report an error at span.  lang_error (checker) is silent inside a
 * statement that already has an error from the scanner or the parser,
 * whose rest may be skipped or misread; lang_error_once (scanner, parser)
 * also marks the statement that way, so that one mistake gives one message.  Both are silent after
 * QM_POLICY_MAX_ERRORS, when ps->stop tells the scanner to end. */
void lang_error(lang_state *ps, qm_span span, const char *fmt, ...) QM_PRINTF(3, 4);
void lang_error_once(lang_state *ps, qm_span span, const char *fmt, ...) QM_PRINTF(3, 4);
/* Add "PATH: error: out of memory" to d and return QM_ENOMEM. */
qm_status lang_oom(qm_diag *d, const char *path);

/* Semantic checks of one statement; fills the names' enums.  Errors go
 * through lang_error. */
void lang_check_stmt(lang_state *ps, qm_stmt *st);

/* Name tables (check.c). */
int lang_action_word(const char *s, qm_action_kind *k); /* keep sym asym act_order no_act_order */
/* The widths as the language spells them ("2bit 3bit 4bit 8bit"), into buf. */
enum { LANG_WIDTHS_SIZE = 64 };
const char *lang_widths(char buf[LANG_WIDTHS_SIZE]);

/* The closest of names[0..n) to s within a small edit distance, or NULL. */
const char *lang_suggest(const char *s, const char *const *names, size_t n);

/* The source text of span (not NUL-terminated): for numbers the formatter
 * prints as written. */
static inline const char *lang_text(const qm_source *src, qm_span sp)
{
    return src->text + sp.begin;
}

/* Report an action word that is not one (the parser calls it). */
void lang_unknown_action(lang_state *ps, const char *word, qm_span span);

/* The generated scanner and parser.  lang_scan_parse (lexer.l) runs the
 * parser over ps->src; nonzero when it gave up. */
int lang_scan_parse(lang_state *ps);
int lang_parse_run(lang_state *ps); /* parser.y */

#endif
