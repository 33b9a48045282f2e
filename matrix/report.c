/* report.c: the bench's summaries: results.yaml, results.csv, results.md
 * (matrix.h).  The plot is svg.c.
 *
 * Rows are sorted by average bits, so each table reads as a ladder from the
 * smallest model up; the unquantized model heads the Markdown table as the
 * reference row.  Task columns are the union of the tasks any row was
 * evaluated on, in first-seen order; each shows acc_norm where the study
 * reports it and acc otherwise (the study's choice per task, qmoe(1)).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "matrix/matrix.h"

static int cmp_rows(const void *a, const void *b)
{
    const qm_matrix_row *x = a, *y = b;
    if (x->average_bits != y->average_bits)
        return x->average_bits < y->average_bits ? -1 : 1;
    return strcmp(x->name, y->name);
}

void qm_matrix_sort(qm_matrix_row *rows, size_t n) { qsort(rows, n, sizeof *rows, cmp_rows); }

void qm_matrix_pareto(qm_matrix_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rows[i].pareto = 1;
        for (size_t j = 0; j < n && rows[i].pareto; j++) {
            double bi = rows[i].average_bits, bj = rows[j].average_bits;
            double ki = rows[i].ev.kld_mean, kj = rows[j].ev.kld_mean;
            if (j != i && bj <= bi && kj <= ki && (bj < bi || kj < ki))
                rows[i].pareto = 0;
        }
    }
}

/* The study reports acc_norm for these tasks and acc for the rest. */
static int uses_norm(const char *task)
{
    static const char *const norm[] = {"openbookqa", "hellaswag", "arc_challenge", "arc_easy"};
    for (size_t i = 0; i < sizeof norm / sizeof *norm; i++)
        if (strcmp(task, norm[i]) == 0)
            return 1;
    return 0;
}

static const qm_task_result *find_task(const qm_task_result *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* Task names over the base and every row, first-seen order; borrowed
 * pointers into them.  Caller frees the array. */
static const char **task_names(const qm_matrix *m, size_t *n)
{
    size_t cap = m->n_base_tasks;
    for (size_t i = 0; i < m->n; i++)
        cap += m->rows[i].n_tasks;
    const char **names = malloc((cap + 1) * sizeof *names);
    *n = 0;
    if (!names)
        return NULL;
    for (size_t i = 0; i <= m->n; i++) {
        const qm_task_result *t = i < m->n ? m->rows[i].tasks : m->base_tasks;
        size_t nt = i < m->n ? m->rows[i].n_tasks : m->n_base_tasks;
        for (size_t k = 0; k < nt; k++) {
            size_t j = 0;
            while (j < *n && strcmp(names[j], t[k].name) != 0)
                j++;
            if (j == *n)
                names[(*n)++] = t[k].name;
        }
    }
    return names;
}

static double task_score(const qm_task_result *t) { return uses_norm(t->name) ? t->acc_norm : t->acc; }

static void size_text(uint64_t b, char *out, size_t n)
{
    if (b >= (1ull << 30))
        snprintf(out, n, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, n, "%.2f MiB", (double)b / (1ull << 20));
    else
        snprintf(out, n, "%.1f KiB", (double)b / 1024);
}

void qm_matrix_markdown(const qm_matrix *m, FILE *f)
{
    size_t nt = 0;
    const char **tn = task_names(m, &nt);
    fprintf(f, "| policy | avg bits | eff. bits | size |");
    for (int i = 0; i < QM_METRIC_COUNT; i++)
        if (qm_metrics[i].label)
            fprintf(f, " %s |", qm_metrics[i].label);
    for (size_t k = 0; k < nt; k++)
        fprintf(f, " %s %s |", tn[k], uses_norm(tn[k]) ? "acc_norm" : "acc");
    fprintf(f, " quantize s |\n|---|--:|--:|--:|");
    for (int i = 0; i < QM_METRIC_COUNT; i++)
        if (qm_metrics[i].label)
            fprintf(f, "--:|");
    for (size_t k = 0; k < nt; k++)
        fprintf(f, "--:|");
    fprintf(f, "--:|\n");
    char size[32];
    size_text(m->base_bytes, size, sizeof size);
    fprintf(f, "| (unquantized) | 16 | 16 | %s |", size);
    for (int i = 0; i < QM_METRIC_COUNT; i++) {
        const qm_metric *x = &qm_metrics[i];
        if (x->label && x->ideal)
            fprintf(f, " %s |", x->ideal);
        else if (x->label)
            fprintf(f, " %.*f |", x->label_digits, m->base_ppl);
    }
    for (size_t k = 0; k < nt; k++) {
        const qm_task_result *t = find_task(m->base_tasks, m->n_base_tasks, tn[k]);
        t ? fprintf(f, " %.4f |", task_score(t)) : fprintf(f, " |");
    }
    fprintf(f, " |\n");
    for (size_t i = 0; i < m->n; i++) {
        const qm_matrix_row *r = &m->rows[i];
        size_text(r->size_bytes, size, sizeof size);
        fprintf(f, "| %s%s%s | %.3f | %.3f | %s |", r->pareto ? "**" : "", r->name, r->pareto ? "**" : "",
                r->average_bits, r->effective_bits, size);
        for (int k = 0; k < QM_METRIC_COUNT; k++) {
            const qm_metric *x = &qm_metrics[k];
            if (!x->label)
                continue;
            fprintf(f, " %.*f", x->label_digits, qm_metric_value(&r->ev, (qm_metric_id)k));
            if (x->se >= 0)
                fprintf(f, " ± %.*f", x->label_digits, qm_metric_value(&r->ev, (qm_metric_id)x->se));
            fprintf(f, " |");
        }
        for (size_t k = 0; k < nt; k++) {
            const qm_task_result *t = find_task(r->tasks, r->n_tasks, tn[k]);
            t ? fprintf(f, " %.4f |", task_score(t)) : fprintf(f, " |");
        }
        fprintf(f, " %.1f |\n", r->quantize_seconds);
    }
    fprintf(f, "\nBold: on the Pareto front of mean KLD against average bits. KLD in nats per token against "
               "the unquantized model, over %zu tokens.\n", m->n ? m->rows[0].ev.tokens : (size_t)0);
    free(tn);
}

/* A CSV field: quoted when it holds a comma, a quote or a line break. */
static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv(const qm_matrix *m, FILE *f)
{
    size_t nt = 0;
    const char **tn = task_names(m, &nt);
    fputs("policy,average_bits,effective_bits,size_bytes", f);
    for (int i = 0; i < QM_METRIC_COUNT; i++)
        if (qm_metrics[i].per_policy)
            fprintf(f, ",%s", qm_metrics[i].key);
    for (size_t k = 0; k < nt; k++) {
        fputc(',', f);
        csv_str(f, tn[k]);
    }
    fputs(",quantize_seconds,pareto\n", f);
    for (size_t i = 0; i < m->n; i++) {
        const qm_matrix_row *r = &m->rows[i];
        csv_str(f, r->name);
        fprintf(f, ",%.4f,%.4f,%llu", r->average_bits, r->effective_bits, (unsigned long long)r->size_bytes);
        for (int k = 0; k < QM_METRIC_COUNT; k++)
            if (qm_metrics[k].per_policy)
                fprintf(f, ",%.*f", qm_metrics[k].digits, qm_metric_value(&r->ev, (qm_metric_id)k));
        for (size_t k = 0; k < nt; k++) {
            const qm_task_result *t = find_task(r->tasks, r->n_tasks, tn[k]);
            t ? fprintf(f, ",%.4f", task_score(t)) : fputc(',', f);
        }
        fprintf(f, ",%.1f,%d\n", r->quantize_seconds, r->pareto);
    }
    free(tn);
}

static void yaml_tasks(qm_yaml *y, const qm_task_result *t, size_t n)
{
    qm_yaml_str(y, "tasks");
    qm_yaml_map(y);
    for (size_t i = 0; i < n; i++) {
        qm_yaml_str(y, t[i].name);
        qm_yaml_flow_map(y);
        qm_yaml_str(y, "acc");
        qm_yaml_real(y, t[i].acc, 4);
        qm_yaml_str(y, "acc_norm");
        qm_yaml_real(y, t[i].acc_norm, 4);
        qm_yaml_kuint(y, "n", t[i].n);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
}

static qm_status results_yaml(const qm_matrix *m, FILE *f, qm_diag *d)
{
    const qm_matrix_opts *o = m->o;
    qm_yaml *y = qm_yaml_begin(f);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_map(y);
    qm_yaml_kint(y, "qmoe_bench", 1);
    qm_yaml_str(y, "model");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "path", o->model);
    qm_yaml_kstr(y, "architecture", m->arch);
    qm_yaml_kstr(y, "config_sha256", m->config_sha256);
    qm_yaml_close(y);
    qm_yaml_str(y, "settings");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "calib", o->calib);
    qm_yaml_kstr(y, "calib_sha256", m->calib_sha256);
    qm_yaml_kstr(y, "eval", o->eval);
    qm_yaml_kstr(y, "eval_sha256", m->eval_sha256);
    qm_yaml_str(y, "tasks");
    o->tasks ? qm_yaml_str(y, o->tasks) : qm_yaml_null(y);
    qm_yaml_kint(y, "ctx", o->ctx);
    qm_yaml_kint(y, "samples", o->samples);
    qm_yaml_kuint(y, "eval_tokens", o->eval_tokens);
    qm_yaml_str(y, "damp");
    qm_yaml_real(y, o->damp, 4);
    qm_yaml_close(y);
    qm_yaml_str(y, "base");
    qm_yaml_map(y);
    qm_yaml_str(y, "ppl");
    qm_yaml_real(y, m->base_ppl, 4);
    qm_yaml_kuint(y, "size_bytes", m->base_bytes);
    yaml_tasks(y, m->base_tasks, m->n_base_tasks);
    qm_yaml_close(y);
    qm_yaml_str(y, "results");
    qm_yaml_seq(y);
    for (size_t i = 0; i < m->n; i++) {
        const qm_matrix_row *r = &m->rows[i];
        qm_yaml_map(y);
        qm_yaml_kstr(y, "policy", r->name);
        qm_yaml_kstr(y, "path", r->path);
        qm_yaml_str(y, "average_bits");
        qm_yaml_real(y, r->average_bits, 4);
        qm_yaml_str(y, "effective_bits");
        qm_yaml_real(y, r->effective_bits, 4);
        for (int k = 0; k < QM_METRIC_COUNT; k++)
            if (qm_metrics[k].per_policy) {
                qm_yaml_str(y, qm_metrics[k].key);
                qm_yaml_real(y, qm_metric_value(&r->ev, (qm_metric_id)k), qm_metrics[k].digits);
            }
        qm_yaml_kuint(y, "size_bytes", r->size_bytes);
        qm_yaml_kuint(y, "tokens", r->ev.tokens);
        if (r->n_tasks)
            yaml_tasks(y, r->tasks, r->n_tasks);
        qm_yaml_str(y, "quantize_seconds");
        qm_yaml_real(y, r->quantize_seconds, 1);
        qm_yaml_str(y, "pareto");
        qm_yaml_bool(y, r->pareto);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

static qm_status put_yaml(const qm_matrix *m, FILE *f, qm_diag *d) { return results_yaml(m, f, d); }

static qm_status put_csv(const qm_matrix *m, FILE *f, qm_diag *d)
{
    (void)d;
    csv(m, f);
    return QM_OK;
}

static qm_status put_markdown(const qm_matrix *m, FILE *f, qm_diag *d)
{
    (void)d;
    qm_matrix_markdown(m, f);
    return QM_OK;
}

static qm_status put_svg(const qm_matrix *m, FILE *f, qm_diag *d)
{
    (void)d;
    char title[512];
    snprintf(title, sizeof title, "%s (%s): KL divergence against average bits", m->o->model, m->arch);
    qm_matrix_svg(m->rows, m->n, title, f);
    return QM_OK;
}

static const struct {
    const char *file;
    qm_status (*put)(const qm_matrix *m, FILE *f, qm_diag *d);
} summaries[] = {
    {"results.yaml", put_yaml},
    {"results.csv", put_csv},
    {"results.md", put_markdown},
    {"kld_vs_bits.svg", put_svg},
};

typedef struct summary_job {
    const qm_matrix *m;
    size_t k; /* in summaries */
} summary_job;

static qm_status put_summary(const void *ctx, FILE *f, qm_diag *d)
{
    const summary_job *j = ctx;
    return summaries[j->k].put(j->m, f, d);
}

qm_status qm_matrix_report(const qm_matrix *m, qm_diag *d)
{
    qm_status st = QM_OK;
    for (size_t k = 0; k < sizeof summaries / sizeof *summaries && st == QM_OK; k++) {
        char *path = qm_strfmt("%s/%s", m->o->out, summaries[k].file);
        if (!path)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        st = qm_afile_write(path, put_summary, &(summary_job){m, k}, 1, d);
        free(path);
    }
    return st;
}
