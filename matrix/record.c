/* record.c: one bench run's result.yaml, written after the run and read
 * back to reuse it (matrix.h).
 *
 *   qmoe_bench_run: 1
 *   policy: NAME            path: FILE          key: SHA-256 of what was measured
 *   average_bits, effective_bits, size_bytes, tokens, ppl, base_ppl, ppl_ratio,
 *   kld_mean, kld_se, kld_median, kld_p99, top1_agree,
 *   tasks: {TASK: {acc, acc_se, acc_norm, acc_norm_se, n}},
 *   quantize_seconds, eval_seconds
 *
 * Figures are written with 12 decimals so that a reused run prints the same
 * table as a fresh one.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "matrix/matrix.h"

enum { RECORD_VERSION = 1, DIGITS = 12 };

/* The row's real-valued fields, by key, so writing and reading share one
 * list: the bits, every metric of the evaluation (eval.h), the times. */
typedef struct field {
    const char *key;
    size_t off;
} field;

enum { N_FIELDS = 2 + QM_METRIC_COUNT + 2 };

static void list_fields(field f[N_FIELDS])
{
    size_t n = 0;
    f[n++] = (field){"average_bits", offsetof(qm_matrix_row, average_bits)};
    f[n++] = (field){"effective_bits", offsetof(qm_matrix_row, effective_bits)};
    for (int i = 0; i < QM_METRIC_COUNT; i++)
        f[n++] = (field){qm_metrics[i].key, offsetof(qm_matrix_row, ev) + qm_metrics[i].off};
    f[n++] = (field){"quantize_seconds", offsetof(qm_matrix_row, quantize_seconds)};
    f[n++] = (field){"eval_seconds", offsetof(qm_matrix_row, eval_seconds)};
}

static double *at(qm_matrix_row *r, const field *f) { return (double *)((char *)r + f->off); }

void qm_matrix_row_free(qm_matrix_row *r)
{
    free(r->name);
    free(r->path);
    qm_task_results_free(r->tasks, r->n_tasks);
    memset(r, 0, sizeof *r);
}

static qm_status put_row(const void *ctx, FILE *f, qm_diag *d)
{
    const qm_matrix_row *r = ctx;
    qm_yaml *y = qm_yaml_begin(f);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_map(y);
    qm_yaml_kint(y, "qmoe_bench_run", RECORD_VERSION);
    qm_yaml_kstr(y, "policy", r->name);
    qm_yaml_kstr(y, "path", r->path);
    qm_yaml_kstr(y, "key", r->key);
    qm_yaml_kuint(y, "size_bytes", r->size_bytes);
    qm_yaml_kuint(y, "tokens", r->ev.tokens);
    qm_matrix_row *w = (qm_matrix_row *)r; /* at() reads only */
    field fields[N_FIELDS];
    list_fields(fields);
    for (size_t i = 0; i < N_FIELDS; i++) {
        qm_yaml_str(y, fields[i].key);
        qm_yaml_real(y, *at(w, &fields[i]), DIGITS);
    }
    qm_yaml_str(y, "tasks");
    qm_yaml_map(y);
    for (size_t i = 0; i < r->n_tasks; i++) {
        const qm_task_result *t = &r->tasks[i];
        qm_yaml_str(y, t->name);
        qm_yaml_flow_map(y);
        const char *k[] = {"acc", "acc_se", "acc_norm", "acc_norm_se"};
        const double v[] = {t->acc, t->acc_se, t->acc_norm, t->acc_norm_se};
        for (int j = 0; j < 4; j++) {
            qm_yaml_str(y, k[j]);
            qm_yaml_real(y, v[j], DIGITS);
        }
        qm_yaml_kuint(y, "n", t->n);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

qm_status qm_matrix_row_write(const qm_matrix_row *r, const char *path, qm_diag *d)
{
    return qm_afile_write(path, put_row, r, 1, d);
}

/* ---- reading back -------------------------------------------------------------------- */

/* The end of every complaint about a record: a bad one is measured again, not repaired. */
#define AGAIN "; delete the file to measure the run again"

typedef struct reader {
    const char *path;
    qm_diag *d;
} reader;

static qm_status bad(reader *rd, const char *key, const char *what)
{
    return qm_diag_fail(rd->d, QM_EFORMAT, "%s: '%s' %s" AGAIN, rd->path, key, what);
}

static qm_status read_tasks(reader *rd, const qm_ynode *map, qm_matrix_row *r)
{
    if (map->kind != QM_YMAP)
        return bad(rd, "tasks", "is not a mapping");
    if (map->n && !(r->tasks = calloc(map->n, sizeof *r->tasks)))
        return qm_diag_fail(rd->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < map->n; i++) {
        const char *name = map->pair[i].key->text;
        const qm_ynode *v = map->pair[i].val;
        if (v->kind != QM_YMAP)
            return bad(rd, "tasks", "holds an entry that is not NAME: {acc, ...}");
        qm_task_result *t = &r->tasks[r->n_tasks];
        if (!(t->name = qm_strdup(name)))
            return qm_diag_fail(rd->d, QM_ENOMEM, "out of memory");
        r->n_tasks++;
        int seen = 0;
        for (size_t j = 0; j < v->n; j++) {
            const char *k = v->pair[j].key->text;
            double x;
            long long count;
            if (!qm_yin_real(v->pair[j].val, &x))
                return bad(rd, name, "holds a value that is not a number");
            double *dst = strcmp(k, "acc") == 0 ? &t->acc : strcmp(k, "acc_se") == 0 ? &t->acc_se
                          : strcmp(k, "acc_norm") == 0 ? &t->acc_norm : strcmp(k, "acc_norm_se") == 0 ? &t->acc_norm_se
                          : NULL;
            if (dst)
                *dst = x, seen++;
            else if (strcmp(k, "n") == 0 && qm_yin_int(v->pair[j].val, &count) && count >= 0)
                t->n = (size_t)count, seen++;
        }
        if (seen != 5)
            return bad(rd, name, "lacks one of acc, acc_se, acc_norm, acc_norm_se, n");
    }
    return QM_OK;
}

static qm_status read_row(reader *rd, const qm_ynode *root, qm_matrix_row *r)
{
    if (!root || root->kind != QM_YMAP)
        return qm_diag_fail(rd->d, QM_EFORMAT, "%s: not a bench run record", rd->path);
    unsigned long long seen = 0; /* bit i: fields[i]; then version, policy, path, key, size, tokens, tasks */
    enum { NF = N_FIELDS };
    field fields[N_FIELDS];
    list_fields(fields);
    qm_status st = QM_OK;
    for (size_t j = 0; st == QM_OK && j < root->n; j++) {
        const char *k = root->pair[j].key->text;
        const qm_ynode *vn = root->pair[j].val;
        const char *v = qm_yin_str(vn);
        long long x;
        size_t i = 0;
        while (i < NF && strcmp(k, fields[i].key) != 0)
            i++;
        if (i < NF) {
            if (!qm_yin_real(vn, at(r, &fields[i])))
                st = bad(rd, k, "is not a number");
            seen |= 1ull << i;
        } else if (strcmp(k, "qmoe_bench_run") == 0) {
            if (!qm_yin_int(vn, &x) || x != RECORD_VERSION)
                st = bad(rd, k, "is not 1");
            seen |= 1ull << NF;
        } else if (strcmp(k, "policy") == 0 || strcmp(k, "path") == 0) {
            int is_policy = strcmp(k, "policy") == 0;
            char **dst = is_policy ? &r->name : &r->path;
            if (!v)
                st = bad(rd, k, "is not a string");
            else if (!(*dst = qm_strdup(v)))
                st = qm_diag_fail(rd->d, QM_ENOMEM, "out of memory");
            seen |= 1ull << (NF + (is_policy ? 1 : 2));
        } else if (strcmp(k, "key") == 0) {
            if (!v || strlen(v) != 64)
                st = bad(rd, k, "is not a SHA-256");
            else
                memcpy(r->key, v, 65);
            seen |= 1ull << (NF + 3);
        } else if (strcmp(k, "size_bytes") == 0 || strcmp(k, "tokens") == 0) {
            if (!qm_yin_int(vn, &x) || x < 0)
                st = bad(rd, k, "is not a count");
            else if (strcmp(k, "size_bytes") == 0)
                r->size_bytes = (uint64_t)x;
            else
                r->ev.tokens = (size_t)x;
            seen |= 1ull << (NF + (strcmp(k, "size_bytes") == 0 ? 4 : 5));
        } else if (strcmp(k, "tasks") == 0) {
            st = read_tasks(rd, vn, r);
            seen |= 1ull << (NF + 6);
        }
    }
    if (st == QM_OK && seen != (1ull << (NF + 7)) - 1)
        st = qm_diag_fail(rd->d, QM_EFORMAT, "%s: a key is missing" AGAIN, rd->path);
    r->ev.has_base = 1;
    return st;
}

qm_status qm_matrix_row_read(const char *path, qm_matrix_row *r, qm_diag *d)
{
    memset(r, 0, sizeof *r);
    const char *why;
    FILE *f = qm_fopen_regular(path, &why); /* opened here: a record not there is no error, only a run to make */
    if (!f) {
        if (errno == ENOENT)
            return QM_ENOTFOUND;
        return qm_diag_fail(d, QM_EIO, "%s: %s", path, why);
    }
    reader rd = {path, d};
    qm_arena doc = {0};
    const qm_ynode *root;
    qm_status st = qm_yin_load_file(f, path, AGAIN, &doc, &root, d);
    fclose(f);
    if (st == QM_OK)
        st = read_row(&rd, root, r);
    qm_arena_free(&doc);
    if (st != QM_OK)
        qm_matrix_row_free(r);
    return st;
}
