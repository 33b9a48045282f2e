/* tasks.h: the multiple-choice tasks file (JSONL), read and checked without a model.
 *
 * One JSON object per line: "context" and "choices" (2 or more) as strings or
 * arrays of token ids, "gold" an index into choices, optional "task" naming
 * the group the item is counted in (default: the file's name).  The reader
 * checks everything that does not need the network itself, so runtime/eval.c
 * only tokenizes and scores; it is separate so that it can be fuzzed.
 */
#ifndef QM_MODEL_TASKS_H
#define QM_MODEL_TASKS_H

#include "base/base.h"

/* Longest context or choice given as ids; longer ones are an error. */
#define QM_TASK_MAX_IDS (1 << 16)

typedef struct qm_task_piece {
    const char *text; /* a string piece: its bytes (NUL-terminated, may hold NULs); NULL for ids */
    size_t len;       /* bytes of text, or number of ids */
    const int *ids;   /* an id piece, each in [0, vocab); NULL for text */
} qm_task_piece;

typedef struct qm_task_item {
    const char *task; /* group name */
    int line;         /* 1-based line in the file, for messages */
    qm_task_piece context;
    qm_task_piece *choices;
    int n_choices;
    int gold;
} qm_task_item;

typedef struct qm_tasks {
    qm_arena arena; /* owns everything below; free with qm_tasks_free() */
    qm_task_item *items;
    size_t n;
} qm_tasks;

/* Parse len bytes of a tasks file named path (for messages and the default
 * group name) for a model with `vocab` token ids.  On success fills t (caller
 * frees with qm_tasks_free()); on failure t holds nothing and d says
 * path:line and what is wrong. */
qm_status qm_tasks_parse(const char *path, const char *bytes, size_t len, long long vocab, qm_tasks *t,
                         qm_diag *d);
/* As qm_tasks_parse() on the regular file at path. */
qm_status qm_tasks_read(const char *path, long long vocab, qm_tasks *t, qm_diag *d);
void qm_tasks_free(qm_tasks *t);

#endif
