/* tasks.c: the multiple-choice tasks file (JSONL), parsed with jansson. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/tasks.h"

/* A string or id-array piece into *p; NULL on success, else what is wrong
 * (a static text, or one written into why). */
static const char *piece(qm_arena *a, json_t *j, long long vocab, qm_task_piece *p, char *why, size_t whylen)
{
    if (json_is_string(j)) {
        size_t len = json_string_length(j);
        char *s = qm_arena_alloc(a, len + 1);
        if (!s)
            return "out of memory";
        memcpy(s, json_string_value(j), len);
        *p = (qm_task_piece){.text = s, .len = len};
        return NULL;
    }
    if (!json_is_array(j))
        return "context and choices must be strings or arrays of token ids";
    size_t n = json_array_size(j), i;
    if (n > QM_TASK_MAX_IDS)
        return "too many tokens";
    int *ids = qm_arena_alloc(a, (n ? n : 1) * sizeof *ids);
    if (!ids)
        return "out of memory";
    json_t *v;
    json_array_foreach(j, i, v)
    {
        if (!json_is_integer(v))
            return "context and choices must be strings or arrays of token ids";
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= vocab) {
            snprintf(why, whylen, "token id %lld is not in [0, %lld)", (long long)id, vocab);
            return why;
        }
        ids[i] = (int)id;
    }
    *p = (qm_task_piece){.ids = ids, .len = n};
    return NULL;
}

/* One non-blank line into *it; NULL on success, else what is wrong. */
static const char *item(qm_arena *a, const char *line, size_t len, long long vocab, const char *stem,
                        qm_task_item *it, char *why, size_t whylen)
{
    json_error_t err;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    const char *bad = NULL;
    json_t *choices = json_object_get(o, "choices"), *gold = json_object_get(o, "gold");
    json_t *task = json_object_get(o, "task");
    if (!o) {
        snprintf(why, whylen, "invalid JSON: %.120s", err.text);
        bad = why;
    } else if (!json_is_array(choices) || json_array_size(choices) < 2 || !json_is_integer(gold) ||
               json_integer_value(gold) < 0 || (size_t)json_integer_value(gold) >= json_array_size(choices)) {
        bad = "need 'context', 'choices' (2 or more) and 'gold' (an index into choices)";
    } else if (task && !json_is_string(task)) {
        bad = "'task' must be a string";
    } else if (json_array_size(choices) > QM_TASK_MAX_IDS) {
        bad = "too many choices";
    } else if (!(bad = piece(a, json_object_get(o, "context"), vocab, &it->context, why, whylen))) {
        it->n_choices = (int)json_array_size(choices);
        it->gold = (int)json_integer_value(gold);
        it->choices = qm_arena_alloc(a, (size_t)it->n_choices * sizeof *it->choices);
        it->task = qm_arena_strdup(a, task ? json_string_value(task) : stem);
        if (!it->choices || !it->task)
            bad = "out of memory";
        if (!bad && it->context.len == 0)
            bad = "empty context";
        for (int i = 0; !bad && i < it->n_choices; i++) {
            bad = piece(a, json_array_get(choices, (size_t)i), vocab, &it->choices[i], why, whylen);
            if (!bad && it->choices[i].len == 0) {
                snprintf(why, whylen, "choice %d is empty", i);
                bad = why;
            }
        }
    }
    json_decref(o);
    return bad;
}

qm_status qm_tasks_parse(const char *path, const char *bytes, size_t len, long long vocab, qm_tasks *t,
                         qm_diag *d)
{
    memset(t, 0, sizeof *t);
    const char *stem = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += bytes[i] == '\n';
    t->items = qm_arena_alloc(&t->arena, lines * sizeof *t->items);
    if (!t->items)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_status st = QM_OK;
    int line = 0;
    char why[160];
    for (const char *p = bytes, *nl; st == QM_OK && p < bytes + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(bytes + len - p));
        if (!nl)
            nl = bytes + len;
        line++;
        size_t n = (size_t)(nl - p), blank = 0;
        while (blank < n && (p[blank] == ' ' || p[blank] == '\t' || p[blank] == '\r'))
            blank++;
        if (blank == n)
            continue;
        qm_task_item *it = &t->items[t->n];
        it->line = line;
        const char *bad = item(&t->arena, p, n, vocab, stem, it, why, sizeof why);
        if (bad)
            st = qm_diag_fail(d, strcmp(bad, "out of memory") == 0 ? QM_ENOMEM : QM_EFORMAT, "%s:%d: %s", path,
                              line, bad);
        else
            t->n++;
    }
    if (st == QM_OK && t->n == 0)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: no task items", path);
    if (st != QM_OK)
        qm_tasks_free(t);
    return st;
}

qm_status qm_tasks_read(const char *path, long long vocab, qm_tasks *t, qm_diag *d)
{
    char *text;
    size_t len;
    memset(t, 0, sizeof *t);
    qm_status st = qm_read_file(path, &text, &len, d);
    if (st != QM_OK)
        return st;
    st = qm_tasks_parse(path, text, len, vocab, t, d);
    free(text);
    return st;
}

void qm_tasks_free(qm_tasks *t)
{
    qm_arena_free(&t->arena);
    memset(t, 0, sizeof *t);
}
