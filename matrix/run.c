/* run.c: the bench itself: score once, compile every policy, then for each
 * plan quantize, evaluate against the unquantized model and record
 * (matrix.h).
 *
 * Order of work, chosen so that mistakes surface before hours of compute:
 * every policy is compiled (against freshly measured or reused scores)
 * before the first quantization, so a typo in the last policy fails the
 * bench in seconds.  The unquantized model stays loaded for the whole
 * bench (mapped; each run converts one layer at a time, net.h); each
 * quantized checkpoint is opened only for its evaluation.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler/compiler.h"
#include "matrix/matrix.h"
#include "matrix/ranks.h"
#include "runtime/quantize.h"
#include "lang/ast.h"
#include "model/gguf.h"
#include "runtime/measure.h"
#include "runtime/score.h"

/* The base's log-probabilities are kept in memory up to this many floats
 * (1 GiB); a longer evaluation runs the base beside each model instead. */
#define REF_MAX ((uint64_t)1 << 28)

typedef struct bench {
    const qm_matrix_opts *o;
    qm_matrix *m;
    qm_diag *d;
    qm_model *model;       /* the unquantized model, loaded once */
    qm_net net;
    qm_tokens eval;        /* the evaluation tokens, truncated to eval_tokens */
    qm_eval_ref ref;       /* the base's log-probabilities on them, made at first use */
    int have_ref;
    double measured_seconds; /* spent on the runs measured (not reused) so far */
    size_t measured;
    char **paths;          /* (n_paths) policy files, owned */
    char **names;          /* (n_paths) their names (policy_name()), owned */
    size_t n_paths;
    qm_plan **plans;       /* (n_paths) compiled plans, owned */
    char *scores_path;     /* owned */
    char *measure_path;    /* owned; NULL when no policy uses `measured` */
} bench;

#define say(b, ...) qm_progressf((b)->o->progress, (b)->o->progress_ctx, __VA_ARGS__)

/* Stored bytes of the *.safetensors files in dir. */
static uint64_t checkpoint_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    for (struct dirent *e; (e = readdir(dp));) {
        size_t n = strlen(e->d_name);
        struct stat sb;
        char *p;
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0 || !(p = qm_strfmt("%s/%s", dir, e->d_name)))
            continue;
        if (stat(p, &sb) == 0)
            total += (uint64_t)sb.st_size;
        free(p);
    }
    closedir(dp);
    return total;
}

/* A small text file holding one key: write atomically, or compare. */
static qm_status put_key(const void *key, FILE *f, qm_diag *d)
{
    fprintf(f, "%s\n", (const char *)key);
    return QM_OK;
}

static qm_status key_write(const char *path, const char *key, qm_diag *d)
{
    return qm_afile_write(path, put_key, key, 1, d);
}

static int key_matches(const char *path, const char *key)
{
    char buf[80] = {0};
    const char *why;
    FILE *f = qm_fopen_regular(path, &why);
    if (!f)
        return 0;
    int ok = fgets(buf, sizeof buf, f) && strncmp(buf, key, 64) == 0 && buf[64] == '\n';
    fclose(f);
    return ok;
}

/* SHA-256 of a label and the given strings, each on its own line. */
static void key_of(char out[65], const char *label, const char *const *parts, size_t n)
{
    qm_sha256 s;
    qm_sha256_init(&s);
    qm_sha256_update(&s, label, strlen(label));
    for (size_t i = 0; i < n; i++) {
        qm_sha256_update(&s, "\n", 1);
        qm_sha256_update(&s, parts[i], strlen(parts[i]));
    }
    qm_sha256_hex(&s, out);
}

/* ---- the policies --------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static qm_status add_path(bench *b, char *p)
{
    char **g = realloc(b->paths, (b->n_paths + 1) * sizeof *g);
    if (!g) {
        free(p);
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    }
    b->paths = g;
    b->paths[b->n_paths++] = p;
    return QM_OK;
}

/* Files as given; directories contribute their *.qmoe files in name order. */
static qm_status collect_policies(bench *b)
{
    qm_status st = QM_OK;
    for (size_t i = 0; i < b->o->n_policies && st == QM_OK; i++) {
        const char *arg = b->o->policies[i];
        struct stat sb;
        if (stat(arg, &sb) != 0)
            return qm_diag_fail(b->d, QM_ENOTFOUND, "%s: %s", arg, strerror(errno));
        if (!S_ISDIR(sb.st_mode)) {
            char *p = qm_strdup(arg);
            st = p ? add_path(b, p) : qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
            continue;
        }
        DIR *dp = opendir(arg);
        if (!dp)
            return qm_diag_fail(b->d, QM_EIO, "%s: %s", arg, strerror(errno));
        size_t first = b->n_paths;
        for (struct dirent *e; st == QM_OK && (e = readdir(dp));) {
            size_t n = strlen(e->d_name);
            if (n > 5 && strcmp(e->d_name + n - 5, ".qmoe") == 0) {
                char *p = qm_strfmt("%s%s%s", arg, arg[strlen(arg) - 1] == '/' ? "" : "/", e->d_name);
                st = p ? add_path(b, p) : qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
            }
        }
        closedir(dp);
        if (st == QM_OK && b->n_paths == first)
            st = qm_diag_fail(b->d, QM_ENOTFOUND, "%s: no *.qmoe policies in this directory", arg);
        else if (st == QM_OK)
            qsort(b->paths + first, b->n_paths - first, sizeof *b->paths, cmp_str);
    }
    return st;
}

/* A policy's name: its file name less ".qmoe" (fresh memory). */
static char *policy_name(const char *path)
{
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    size_t n = strlen(s);
    if (n > 5 && strcmp(s + n - 5, ".qmoe") == 0)
        n -= 5;
    return qm_strfmt("%.*s", (int)n, s);
}

/* Every policy's name; two with one name would share runs/NAME. */
static qm_status name_policies(bench *b)
{
    if (!(b->names = calloc(b->n_paths + 1, sizeof *b->names)))
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->n_paths; i++) {
        if (!(b->names[i] = policy_name(b->paths[i])))
            return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
        for (size_t j = 0; j < i; j++)
            if (strcmp(b->names[i], b->names[j]) == 0)
                return qm_diag_fail(b->d, QM_EINVAL, "%s and %s are both named '%s': results would collide",
                                    b->paths[j], b->paths[i], b->names[i]);
    }
    return QM_OK;
}

/* ---- the steps ------------------------------------------------------------------------ */

/* scores.yaml, measured on the calibration windows unless a file made under
 * the same key is there. */
static qm_status scores(bench *b)
{
    const qm_matrix_opts *o = b->o;
    char key[65], settings[64], *kpath = qm_strfmt("%s/scores.key", o->out);
    b->scores_path = qm_strfmt("%s/scores.yaml", o->out);
    if (!kpath || !b->scores_path) {
        free(kpath);
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    }
    snprintf(settings, sizeof settings, "ctx=%d samples=%d", o->ctx, o->samples);
    const char *parts[] = {b->m->config_sha256, b->m->calib_sha256, settings};
    key_of(key, "qmoe-bench-scores 1", parts, 3);
    struct stat sb;
    qm_status st = QM_OK;
    if (stat(b->scores_path, &sb) == 0 && key_matches(kpath, key)) {
        say(b, "scores: reusing %s", b->scores_path);
    } else {
        qm_tokens t = {0};
        qm_scores sc = {0};
        double t0 = qm_clock();
        say(b, "scores: routing frequency, block importance and outliers over %d x %d calibration tokens",
            o->samples, o->ctx);
        st = qm_tokens_for_model(b->model, o->calib, (size_t)o->samples * (size_t)o->ctx, (size_t)o->ctx, &t,
                                     b->d);
        if (st == QM_OK)
            st = mx_lead(o, MX_SCORES, NULL, NULL, NULL, b->d);
        if (st == QM_OK)
            st = qm_score_model_dist(&b->net, &t, o->ctx, o->dist, &sc, b->d);
        if (st == QM_OK)
            st = qm_scores_write(&sc, b->model, o->calib, b->scores_path, b->d);
        if (st == QM_OK)
            st = key_write(kpath, key, b->d);
        if (st == QM_OK)
            say(b, "scores: %zu tokens in %.1f s", t.n, qm_clock() - t0);
        qm_scores_free(&sc);
        qm_tokens_free(&t);
    }
    free(kpath);
    return st;
}

/* 1 when policy `path` (its imports expanded) ranks or budgets by
 * `measured`; a policy that does not parse is left to compile to report. */
static int needs_measure(const bench *b, const char *path)
{
    qm_diag *d = qm_diag_new();
    qm_policy *p = NULL;
    qm_search s = {.dirs = b->o->dirs, .n_dirs = b->o->n_dirs};
    int uses = d && qm_policy_parse_file(path, &p, d) == QM_OK && qm_policy_expand(p, &s, d) == QM_OK &&
               qm_policy_uses_scorer(p, QM_SCORER_MEASURED);
    qm_policy_free(p);
    qm_diag_free(d);
    return uses;
}

/* measure.yaml (`qmoe measure` with the bench's calibration, GPTQ's
 * defaults and every width, linear units), made once when some policy uses
 * `measured`, reused when made under the same key, and resumed after an
 * interruption like a quantization. */
static qm_status measure_units(bench *b)
{
    const qm_matrix_opts *o = b->o;
    int any = 0;
    for (size_t i = 0; i < b->n_paths && !any; i++)
        any = needs_measure(b, b->paths[i]);
    if (!any)
        return QM_OK;
    qm_measure_opts mo = mx_measure_opts(o);
    char key[65], settings[128], *kpath = qm_strfmt("%s/measure.key", o->out);
    b->measure_path = qm_strfmt("%s/measure.yaml", o->out);
    if (!kpath || !b->measure_path) {
        free(kpath);
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    }
    snprintf(settings, sizeof settings, "ctx=%d samples=%d damp=%g units=%s widths=2,3,4,8", o->ctx, o->samples,
             o->damp, qm_measure_units_name(mo.units));
    const char *parts[] = {b->m->config_sha256, b->m->calib_sha256, settings};
    key_of(key, "qmoe-bench-measure 1", parts, 3);
    struct stat sb;
    qm_status st = QM_OK;
    if (stat(b->measure_path, &sb) == 0 && key_matches(kpath, key)) {
        say(b, "measure: reusing %s", b->measure_path);
    } else {
        qm_measure_report rep;
        say(b, "measure: every unit's error at 2, 3, 4 and 8 bits over %d x %d calibration tokens", o->samples,
            o->ctx);
        remove(kpath);
        st = mx_lead(o, MX_MEASURE, NULL, NULL, NULL, b->d);
        if (st == QM_OK)
            st = qm_measure(o->model, o->calib, b->measure_path, &mo, &rep, b->d);
        if (st == QM_OK)
            st = key_write(kpath, key, b->d);
        if (st == QM_OK)
            say(b, "measure: %zu units in %.1f s, %.1fx one quantize run's GPTQ", rep.units, rep.seconds,
                rep.quantize_gptq_runs ? (double)rep.gptq_runs / rep.quantize_gptq_runs : 0.0);
    }
    free(kpath);
    return st;
}

static qm_status compile_all(bench *b)
{
    const qm_matrix_opts *o = b->o;
    if (!(b->plans = calloc(b->n_paths, sizeof *b->plans)))
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    qm_status first = QM_OK;
    for (size_t i = 0; i < b->n_paths; i++) {
        qm_compile_opts co = {.policy = b->paths[i], .model = o->model, .scores = b->scores_path,
                              .measure = b->measure_path, .dirs = o->dirs, .n_dirs = o->n_dirs};
        qm_status st = qm_compile(&co, &b->plans[i], b->d);
        if (st != QM_OK && first == QM_OK)
            first = st;
    }
    if (first == QM_OK && b->n_paths)
        b->m->base_bytes = b->plans[0]->summary.bytes_before;
    return first;
}

/* The unquantized model's task accuracy, cached in base.yaml. */
static qm_status base_tasks(bench *b)
{
    const qm_matrix_opts *o = b->o;
    if (!o->tasks)
        return QM_OK;
    char ctx[32], *path = qm_strfmt("%s/base.yaml", o->out);
    if (!path)
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    snprintf(ctx, sizeof ctx, "ctx=%d", o->ctx);
    const char *parts[] = {b->m->config_sha256, b->m->tasks_sha256, ctx};
    qm_matrix_row r;
    char key[65];
    key_of(key, "qmoe-bench-base 1", parts, 3);
    qm_status st = qm_matrix_row_read(path, &r, b->d);
    if (st == QM_OK && strcmp(r.key, key) == 0) {
        say(b, "base: reusing the unquantized model's task accuracy from %s", path);
    } else {
        if (st == QM_OK)
            qm_matrix_row_free(&r);
        memset(&r, 0, sizeof r);
        say(b, "base: task accuracy of the unquantized model");
        memcpy(r.key, key, sizeof key);
        r.name = qm_strdup("base");
        r.path = qm_strdup(o->model);
        st = r.name && r.path ? qm_eval_tasks(&b->net, o->tasks, o->ctx, &r.tasks, &r.n_tasks, b->d)
                              : qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
        if (st == QM_OK)
            st = qm_matrix_row_write(&r, path, b->d);
    }
    if (st == QM_OK) {
        b->m->base_tasks = r.tasks;
        b->m->n_base_tasks = r.n_tasks;
        r.tasks = NULL;
        r.n_tasks = 0;
        qm_matrix_row_free(&r);
    }
    free(path);
    return st;
}

qm_matrix_opts qm_matrix_opts_default(void)
{
    qm_quant_opts q = qm_quant_opts_default();
    return (qm_matrix_opts){.ctx = q.ctx, .samples = q.samples, .damp = q.damp, .out = "bench-out"};
}

/* Quantize plan i into model_dir (runs/NAME/model; with --format gguf also
 * the GGUF file gguf) and evaluate it (the GGUF file, read on the base's
 * layout, when there is one) into r. */
static qm_status measure(bench *b, size_t i, const char *plan_path, const char *model_dir, const char *gguf,
                         qm_matrix_row *r)
{
    const qm_matrix_opts *o = b->o;
    /* quantize's per-tensor lines would drown the bench's own; quant_log.yaml keeps them */
    qm_quant_opts qo = mx_quant_opts(o, gguf);
    qm_quant_report rep = {0};
    say(b, "[%zu/%zu] %s: %.3f bits: quantizing", i + 1, b->n_paths, r->name, r->average_bits);
    qm_status st = mx_lead(o, MX_QUANTIZE, plan_path, model_dir, gguf, b->d);
    if (st == QM_OK)
        st = qm_quantize(plan_path, o->model, o->calib, model_dir, &qo, &rep, b->d);
    r->quantize_seconds = rep.seconds;
    qm_model *qm = NULL;
    qm_net qnet = {0};
    qm_eval_opts eo = mx_eval_opts(o);
    /* over ranks the base runs beside each model, each rank on its share of
     * the positions (qm_eval_ppl()), rather than kept whole on rank 0 */
    int ranks = qm_dist_size(o->dist);
    if (st == QM_OK && ranks > 1)
        st = mx_lead(o, MX_EVAL, model_dir, gguf, NULL, b->d);
    if (st == QM_OK && ranks < 2 && !b->have_ref && (uint64_t)b->eval.n * (uint64_t)b->model->cfg.vocab <= REF_MAX) {
        qm_eval_result base_ev;
        say(b, "base: log-probabilities of the unquantized model on %zu tokens", b->eval.n);
        st = qm_eval_ref_make(&b->net, &b->eval, &eo, &b->ref, &base_ev, b->d);
        b->have_ref = st == QM_OK;
    }
    double t0 = qm_clock(); /* eval_seconds: this model's load and scoring, not the base's one-time pass */
    if (st == QM_OK && (st = qm_model_open(gguf ? o->model : model_dir, &qm, b->d)) == QM_OK && gguf)
        st = qm_model_attach_gguf(qm, gguf, b->d);
    if (st == QM_OK)
        st = qm_net_open(qm, &qnet, b->d);
    if (st == QM_OK) {
        say(b, "[%zu/%zu] %s: evaluating on %zu tokens", i + 1, b->n_paths, r->name, b->eval.n);
        st = b->have_ref ? qm_eval_ppl_ref(&qnet, &b->ref, &b->eval, &eo, &r->ev, b->d)
                         : qm_eval_ppl(&qnet, &b->net, &b->eval, &eo, &r->ev, b->d);
    }
    if (st == QM_OK && o->tasks)
        st = qm_eval_tasks(&qnet, o->tasks, o->ctx, &r->tasks, &r->n_tasks, b->d);
    r->eval_seconds = qm_clock() - t0;
    qm_model_close(qm);
    struct stat sb;
    r->size_bytes = !gguf ? checkpoint_bytes(model_dir) : stat(gguf, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    if (st == QM_OK && o->discard_models)
        st = qm_remove_tree(model_dir, b->d);
    if (st == QM_OK && o->discard_models && gguf && remove(gguf) != 0)
        st = qm_diag_fail(b->d, QM_EIO, "cannot remove %s: %s", gguf, strerror(errno));
    return st;
}

/* Policy i: reuse its result.yaml when the key matches, else measure it. */
static qm_status one_policy(bench *b, size_t i)
{
    const qm_matrix_opts *o = b->o;
    qm_matrix *m = b->m;
    qm_matrix_row r = {0};
    qm_status st = QM_OK;
    char *dir = NULL, *plan_path = NULL, *res_path = NULL, *key_path = NULL, *model_dir = NULL, *gguf = NULL;
    char plan_sha[65], settings[160];
    r.name = qm_strdup(b->names[i]);
    r.path = qm_strdup(b->paths[i]);
    if (r.name)
        dir = qm_strfmt("%s/runs/%s", o->out, r.name);
    if (dir) {
        plan_path = qm_strfmt("%s/plan.yaml", dir);
        res_path = qm_strfmt("%s/result.yaml", dir);
        key_path = qm_strfmt("%s/key", dir);
        model_dir = qm_strfmt("%s/model", dir);
        gguf = o->gguf ? qm_strfmt("%s/model.gguf", dir) : NULL;
    }
    if (!r.path || !plan_path || !res_path || !key_path || !model_dir || (o->gguf && !gguf))
        st = qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = qm_mkdir(dir, b->d);
    if (st == QM_OK)
        st = qm_plan_write(b->plans[i], plan_path, b->d);
    if (st == QM_OK)
        st = qm_sha256_file(plan_path, plan_sha, b->d);
    if (st == QM_OK) {
        /* the format only when GGUF: GPTQ runs' keys stay those of earlier benches */
        snprintf(settings, sizeof settings, "ctx=%d samples=%d eval_tokens=%zu damp=%g%s", o->ctx, o->samples,
                 b->eval.n, o->damp, o->gguf ? " format=gguf" : "");
        const char *parts[] = {plan_sha, m->calib_sha256, m->eval_sha256, m->tasks_sha256, settings};
        key_of(r.key, "qmoe-bench-run 1", parts, 5);
        r.average_bits = b->plans[i]->summary.average_bits;
        r.effective_bits = b->plans[i]->summary.effective_bits;
    }
    qm_matrix_row old;
    qm_status rs = st == QM_OK ? qm_matrix_row_read(res_path, &old, b->d) : st;
    if (rs == QM_OK && strcmp(old.key, r.key) == 0) {
        qm_matrix_row_free(&r);
        r = old;
        r.reused = 1;
        say(b, "[%zu/%zu] %s: reusing %s", i + 1, b->n_paths, r.name, res_path);
    } else if (st == QM_OK) {
        if (rs == QM_OK)
            qm_matrix_row_free(&old);
        else if (rs != QM_ENOTFOUND)
            st = rs;
        /* a checkpoint left by another plan or setting cannot be resumed */
        if (st == QM_OK && !key_matches(key_path, r.key)) {
            st = qm_remove_tree(model_dir, b->d);
            if (st == QM_OK)
                st = key_write(key_path, r.key, b->d);
        }
        if (st == QM_OK)
            st = measure(b, i, plan_path, model_dir, gguf, &r);
        if (st == QM_OK)
            st = qm_matrix_row_write(&r, res_path, b->d);
        if (st == QM_OK) {
            /* the ETA assumes every policy left is measured, none reused */
            b->measured_seconds += r.quantize_seconds + r.eval_seconds;
            b->measured++;
            say(b, "[%zu/%zu] %s: %.3f bits, KLD %.5f ± %.5f, PPL %.4f, top-1 %.2f%% (quantize %.1f s, eval %.1f s; "
                   "ETA %.0f s)",
                i + 1, b->n_paths, r.name, r.average_bits, r.ev.kld_mean, r.ev.kld_se, r.ev.ppl, r.ev.top1_agree,
                r.quantize_seconds, r.eval_seconds,
                b->measured_seconds / (double)b->measured * (double)(b->n_paths - i - 1));
        }
    }
    if (st == QM_OK) {
        qm_matrix_row *g = realloc(m->rows, (m->n + 1) * sizeof *g);
        if (!g) {
            st = qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
        } else {
            m->rows = g;
            m->rows[m->n++] = r;
            memset(&r, 0, sizeof r);
            m->base_ppl = m->rows[0].ev.base_ppl;
        }
    }
    qm_matrix_row_free(&r);
    free(dir);
    free(plan_path);
    free(res_path);
    free(key_path);
    free(model_dir);
    free(gguf);
    return st;
}

/* -o against every input: the model, the texts, the policy files.  (The
 * directories policies are found in are read for *.qmoe alone, which the
 * bench never writes: -o may lie in them.) */
static qm_status check_output(bench *b)
{
    const qm_matrix_opts *o = b->o;
    size_t n = 0, cap = 3 + b->n_paths;
    qm_path_input *in = calloc(cap, sizeof *in);
    if (!in)
        return qm_diag_fail(b->d, QM_ENOMEM, "out of memory");
    in[n++] = (qm_path_input){o->calib, "the calibration text"};
    in[n++] = (qm_path_input){o->eval, "the evaluation text"};
    in[n++] = (qm_path_input){o->tasks, "the tasks"};
    for (size_t i = 0; i < b->n_paths; i++)
        in[n++] = (qm_path_input){b->paths[i], "a policy"};
    qm_status st = qm_model_check_output(b->model, "-o", o->out, 1, in, n, b->d);
    free(in);
    return st;
}

static qm_status hashes(bench *b)
{
    qm_matrix *m = b->m;
    const qm_matrix_opts *o = b->o;
    qm_status st = qm_sha256_file(b->model->config_path, m->config_sha256, b->d);
    if (st == QM_OK)
        st = qm_sha256_file(o->calib, m->calib_sha256, b->d);
    if (st == QM_OK)
        st = qm_sha256_file(o->eval, m->eval_sha256, b->d);
    if (st == QM_OK && o->tasks)
        st = qm_sha256_file(o->tasks, m->tasks_sha256, b->d);
    else if (st == QM_OK)
        strcpy(m->tasks_sha256, "none");
    return st;
}

void qm_matrix_free(qm_matrix *m)
{
    for (size_t i = 0; i < m->n; i++)
        qm_matrix_row_free(&m->rows[i]);
    free(m->rows);
    free(m->arch);
    qm_task_results_free(m->base_tasks, m->n_base_tasks);
    memset(m, 0, sizeof *m);
}

qm_status qm_matrix_run(const qm_matrix_opts *o, qm_matrix *m, qm_diag *d)
{
    memset(m, 0, sizeof *m);
    m->o = o;
    if (qm_dist_rank(o->dist)) /* the other ranks take part in each stage rank 0 names */
        return mx_follow(o, d);
    bench b = {.o = o, .m = m, .d = d};
    char *runs = qm_strfmt("%s/runs", o->out);
    /* every input is checked before the output directory is made, so a
     * mistyped path leaves nothing behind */
    qm_status st = runs ? collect_policies(&b) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = name_policies(&b);
    if (st == QM_OK && (st = qm_model_open(o->model, &b.model, d)) == QM_OK &&
        !(m->arch = qm_strdup(b.model->arch->name)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = check_output(&b);
    if (st == QM_OK)
        st = hashes(&b);
    qm_lock lock = {-1, NULL};
    if (st == QM_OK)
        st = qm_mkdir(o->out, d);
    if (st == QM_OK)
        st = qm_dir_lock(o->out, &lock, d);
    if (st == QM_OK)
        st = qm_mkdir(runs, d);
    if (st == QM_OK)
        st = qm_net_open(b.model, &b.net, d);
    if (st == QM_OK)
        st = qm_tokens_for_model(b.model, o->eval, o->eval_tokens, 0, &b.eval, d);
    if (st == QM_OK)
        st = scores(&b);
    if (st == QM_OK)
        st = measure_units(&b);
    if (st == QM_OK) {
        say(&b, "compiling %zu policies", b.n_paths);
        st = compile_all(&b);
    }
    if (st == QM_OK)
        st = base_tasks(&b);
    for (size_t i = 0; st == QM_OK && i < b.n_paths; i++) {
        if ((st = one_policy(&b, i)) == QM_OK) {
            qm_matrix_sort(m->rows, m->n);
            qm_matrix_pareto(m->rows, m->n);
            st = qm_matrix_report(m, d);
        }
    }
    if (st == QM_OK) /* the other ranks are done */
        st = mx_lead(o, MX_END, NULL, NULL, NULL, d);
    for (size_t i = 0; b.plans && i < b.n_paths; i++)
        qm_plan_free(b.plans[i]);
    free(b.plans);
    for (size_t i = 0; i < b.n_paths; i++) {
        free(b.paths[i]);
        free(b.names ? b.names[i] : NULL);
    }
    free(b.paths);
    free(b.names);
    free(b.scores_path);
    free(b.measure_path);
    qm_tokens_free(&b.eval);
    qm_eval_ref_free(&b.ref);
    qm_model_close(b.model);
    free(runs);
    qm_dir_unlock(&lock);
    return st;
}
