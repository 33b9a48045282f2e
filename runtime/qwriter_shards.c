/* qwriter_shards.c: the sharded safetensors checkpoint both safetensors
 * formats write (see qwriter_shards.h): shards, index and config.json. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/json.h"
#include "runtime/qwriter_shards.h"

qm_status shards_begin(qwriter *w, const char *subdir)
{
    const qwriter_job *j = w->job;
    char *dir = subdir ? qm_strfmt("%s/%s", j->out, subdir) : qm_strdup(j->out);
    if (!dir)
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    qm_status st = qm_mkdir(dir, j->d);
    if (st != QM_OK) {
        free(dir);
        return st;
    }
    w->state = dir;
    return QM_OK;
}

void shards_abort(qwriter *w)
{
    free(w->state);
    w->state = NULL;
}

char *shards_module(const char *name)
{
    char *p = qm_strdup(name);
    size_t n = p ? strlen(p) : 0;
    if (p && n > 7 && strcmp(p + n - 7, ".weight") == 0)
        p[n - 7] = '\0';
    return p;
}

/* The file name of shard `shard` (layer, or the layer count for the
 * model-level tensors); caller frees. */
static char *shard_name(const qm_model *m, int shard)
{
    return qm_strfmt("model-%05d-of-%05d.safetensors", shard + 1, (int)m->cfg.layers + 1);
}

qm_status shards_write(const qwriter *w, int layer, const qwriter_linear *q, const shards_linear *s, size_t n)
{
    const qm_model *m = w->job->m;
    size_t cap = m->n + 1, len = 0;
    for (size_t k = 0; k < n; k++)
        cap += s[k].n;
    qm_st_entry *e = calloc(cap, sizeof *e);
    if (!e)
        return qm_diag_fail(w->job->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        if (t->layer != layer)
            continue;
        size_t k = 0;
        while (k < n && q[k].tensor != i)
            k++;
        if (k == n && qm_st_check_live(m->ckpt->files[t->file], t->st, w->job->d) != QM_OK) {
            free(e);
            return QM_EIO;
        }
        if (k == n)
            e[len++] = (qm_st_entry){t->st->name, t->st->dtype, t->st->ndim, t->st->shape, t->st->data};
        for (size_t j = 0; k < n && j < s[k].n; j++)
            e[len++] = s[k].e[j];
    }
    char *name = shard_name(m, layer < 0 ? (int)m->cfg.layers : layer);
    char *path = name ? qm_strfmt("%s/%s", (const char *)w->state, name) : NULL;
    qm_status st;
    if (!path) {
        st = qm_diag_fail(w->job->d, QM_ENOMEM, "out of memory");
    } else {
        const char *meta[] = {"format", "pt", NULL};
        st = qm_st_write(path, e, len, meta, w->job->d);
    }
    free(name);
    free(path);
    free(e);
    return st;
}

qm_status shards_json(const char *dir, const char *file, json_t *j, qm_diag *d)
{
    char *p = qm_strfmt("%s/%s", dir, file);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    qm_status st = QM_OK;
    if (!p || !text) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    } else {
        size_t n = strlen(text);
        text[n] = '\n'; /* the file ends with a line break, in the terminator's place */
        st = qm_afile_write_bytes(p, text, n + 1, 1, d);
    }
    free(p);
    free(text);
    return st;
}

/* model.safetensors.index.json: the shard of every stored tensor. */
static qm_status write_index(const qwriter *w, const char *const *names, size_t n_names)
{
    const qwriter_job *j = w->job;
    const qm_model *m = j->m;
    json_t *map = json_object();
    for (size_t i = 0; map && i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        char *name = shard_name(m, t->layer < 0 ? (int)m->cfg.layers : t->layer), *pre = shards_module(t->st->name);
        int quantized = n_names && j->by_tensor[i] && j->by_tensor[i]->bits;
        for (size_t s = 0; name && pre && s < (quantized ? n_names : 1); s++) {
            char *k = quantized ? qm_strfmt("%s.%s", pre, names[s]) : qm_strdup(t->st->name);
            if (k)
                json_object_set_new(map, k, json_string(name));
            free(k);
        }
        free(name);
        free(pre);
    }
    json_t *index = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
    qm_status st = index ? shards_json(w->state, "model.safetensors.index.json", index, j->d)
                         : qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    json_decref(index);
    return st;
}

qm_status shards_end(qwriter *w, const char *const *names, size_t n_names, shards_config_fn *config)
{
    const qwriter_job *j = w->job;
    qm_status st = shards_write(w, -1, NULL, NULL, 0);
    if (st == QM_OK)
        st = write_index(w, names, n_names);
    json_t *cfg = NULL;
    if (st == QM_OK)
        st = qm_json_load(j->m->config_path, &cfg, j->d);
    if (st == QM_OK && config)
        st = config(w, w->state, cfg);
    if (st == QM_OK)
        st = shards_json(w->state, "config.json", cfg, j->d);
    json_decref(cfg);
    shards_abort(w);
    return st;
}
