/* qwriter_shards.c: the sharded safetensors checkpoint both safetensors
 * formats write (see qwriter_shards.h): shards, index and config.json. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/json.h"
#include "model/dtype.h"
#include "runtime/qwriter_shards.h"

/* One spooled linear: its tensor and its entries sp->e[first, first + n). */
typedef struct spooled {
    size_t tensor, first, n;
} spooled;

typedef struct shards_state {
    char *dir;            /* owned */
    int fd;               /* the spool, unlinked; -1 until the first linear */
    char *spool_path;     /* its name, for messages; owned */
    size_t used;          /* bytes in it */
    qm_st_entry *e;       /* (ne) entries, names owned, data NULL until mapped */
    uint64_t (*shape)[2]; /* (ne) e[i].shape points here once mapped */
    size_t *off;          /* (ne) where e[i]'s bytes are in the spool */
    size_t ne, cap_e;
    spooled *lin;         /* (nlin) */
    size_t nlin, cap_lin;
} shards_state;

static const char *dir_of(const qwriter *w) { return ((const shards_state *)w->state)->dir; }

qm_status shards_begin(qwriter *w, const char *subdir)
{
    const qwriter_job *j = w->job;
    shards_state *s = calloc(1, sizeof *s);
    char *dir = subdir ? qm_strfmt("%s/%s", j->out, subdir) : qm_strdup(j->out);
    if (!s || !dir) {
        free(s);
        free(dir);
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    }
    qm_status st = qm_mkdir(dir, j->d);
    if (st != QM_OK) {
        free(dir);
        free(s);
        return st;
    }
    s->dir = dir;
    s->fd = -1;
    w->state = s;
    return QM_OK;
}

static void spool_clear(shards_state *s)
{
    for (size_t i = 0; i < s->ne; i++)
        free((char *)s->e[i].name);
    s->ne = s->nlin = s->used = 0;
}

void shards_abort(qwriter *w)
{
    shards_state *s = w->state;
    if (!s)
        return;
    spool_clear(s);
    if (s->fd >= 0)
        close(s->fd);
    free(s->spool_path);
    free(s->e);
    free(s->shape);
    free(s->off);
    free(s->lin);
    free(s->dir);
    free(s);
    w->state = NULL;
}

static qm_status spool_open(shards_state *s, qm_diag *d)
{
    if (s->fd >= 0)
        return QM_OK;
    if (!(s->spool_path = qm_strfmt("%s/.qmoe-spool-XXXXXX", s->dir)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if ((s->fd = mkstemp(s->spool_path)) < 0)
        return qm_diag_fail(d, QM_EIO, "%s: cannot make a file for the finished linears: %s", s->dir,
                            strerror(errno));
    unlink(s->spool_path); /* gone with the process, whatever ends it */
    return QM_OK;
}

qm_status shards_spool(qwriter *w, const qwriter_linear *q, const qm_st_entry *e, size_t n)
{
    shards_state *s = w->state;
    qm_diag *d = w->job->d;
    qm_status st = spool_open(s, d);
    if (st != QM_OK)
        return st;
    if (s->ne + n > s->cap_e) {
        size_t cap = 2 * (s->ne + n) + 16;
        qm_st_entry *ne = realloc(s->e, cap * sizeof *ne);
        if (ne)
            s->e = ne;
        uint64_t(*sh)[2] = ne ? realloc(s->shape, cap * sizeof *sh) : NULL;
        if (sh)
            s->shape = sh;
        size_t *off = sh ? realloc(s->off, cap * sizeof *off) : NULL;
        if (!off)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        s->off = off;
        s->cap_e = cap;
    }
    if (s->nlin == s->cap_lin) {
        size_t cap = 2 * s->cap_lin + 16;
        spooled *nl = realloc(s->lin, cap * sizeof *nl);
        if (!nl)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        s->lin = nl;
        s->cap_lin = cap;
    }
    size_t first = s->ne;
    for (size_t k = 0; k < n; k++) {
        size_t bytes = qm_dtype_size(e[k].dtype);
        for (int a = 0; a < e[k].ndim; a++)
            bytes *= (size_t)e[k].shape[a];
        char *name = qm_strdup(e[k].name);
        if (!name)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        size_t i = s->ne++;
        s->e[i] = (qm_st_entry){name, e[k].dtype, e[k].ndim, NULL, NULL};
        s->shape[i][0] = e[k].shape[0];
        s->shape[i][1] = e[k].ndim > 1 ? e[k].shape[1] : 0;
        s->off[i] = s->used;
        for (const char *p = e[k].data; bytes;) {
            ssize_t m = pwrite(s->fd, p, bytes, (off_t)s->used);
            if (m < 0 && errno == EINTR)
                continue;
            if (m <= 0)
                return qm_diag_fail(d, QM_EIO, "%s: writing '%s' failed: %s", s->spool_path, e[k].name,
                                    m < 0 ? strerror(errno) : "nothing written");
            p += m;
            bytes -= (size_t)m;
            s->used += (size_t)m;
        }
    }
    s->lin[s->nlin++] = (spooled){q->tensor, first, n};
    return QM_OK;
}

qm_status shards_write_spooled(qwriter *w, int layer)
{
    shards_state *s = w->state;
    qm_diag *d = w->job->d;
    char *base = NULL;
    if (s->used && (base = mmap(NULL, s->used, PROT_READ, MAP_SHARED, s->fd, 0)) == MAP_FAILED)
        return qm_diag_fail(d, QM_EIO, "%s: cannot map the finished linears: %s", s->spool_path, strerror(errno));
    qwriter_linear *q = calloc(s->nlin ? s->nlin : 1, sizeof *q);
    shards_linear *sl = calloc(s->nlin ? s->nlin : 1, sizeof *sl);
    qm_status st = q && sl ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < s->ne; i++) {
        s->e[i].data = base + s->off[i];
        s->e[i].shape = s->shape[i];
    }
    for (size_t k = 0; st == QM_OK && k < s->nlin; k++) {
        q[k].tensor = s->lin[k].tensor;
        sl[k] = (shards_linear){s->e + s->lin[k].first, s->lin[k].n};
    }
    if (st == QM_OK)
        st = shards_write(w, layer, q, sl, s->nlin);
    free(q);
    free(sl);
    if (base)
        munmap(base, s->used);
    if (s->fd >= 0 && ftruncate(s->fd, 0) != 0 && st == QM_OK)
        st = qm_diag_fail(d, QM_EIO, "%s: %s", s->spool_path, strerror(errno));
    spool_clear(s);
    return st;
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
    char *path = name ? qm_strfmt("%s/%s", dir_of(w), name) : NULL;
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
    qm_status st = index ? shards_json(dir_of(w), "model.safetensors.index.json", index, j->d)
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
        st = config(w, dir_of(w), cfg);
    if (st == QM_OK)
        st = shards_json(dir_of(w), "config.json", cfg, j->d);
    json_decref(cfg);
    shards_abort(w);
    return st;
}
