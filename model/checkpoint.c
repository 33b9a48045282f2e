/* checkpoint.c: a model directory's weights, one file or shards.
 *
 * With model.safetensors.index.json, the index's weight_map (tensor name ->
 * shard file) is the truth: every shard it names must exist and hold exactly
 * the tensors the index assigns to it.  Without an index, model.safetensors
 * is the checkpoint.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/json.h"
#include "model/safetensors.h"

void qm_ckpt_close(qm_ckpt *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_files; i++)
        qm_st_close(c->files[i]);
    free(c->files);
    free(c->t);
    for (int i = 0; i < QM_CKPT_PARTS; i++)
        qm_strmap_free(&c->by_name[i]);
    free(c->dir);
    free(c);
}

/* The map of the names with hash h: its top three bits. */
_Static_assert(QM_CKPT_PARTS == 8, "part_of() takes three bits");
static int part_of(uint64_t h)
{
    return (int)(h >> 61);
}

long qm_ckpt_find_hashed(const qm_ckpt *c, const char *name, uint64_t h)
{
    size_t i;
    return qm_strmap_get_hashed(&c->by_name[part_of(h)], name, h, &i) ? (long)i : -1;
}

long qm_ckpt_find(const qm_ckpt *c, const char *name)
{
    return qm_ckpt_find_hashed(c, name, qm_strmap_hash(name));
}

void qm_ckpt_prefetch(const qm_ckpt *c, uint64_t h)
{
    qm_strmap_prefetch(&c->by_name[part_of(h)], h);
}

static int cmp_id(const void *a, const void *b, void *names)
{
    const char *const *n = names;
    return strcmp(n[*(const size_t *)a], n[*(const size_t *)b]);
}

/* Opening the shards of one checkpoint, one task per shard. */
typedef struct shard_jobs {
    const qm_ckpt *c;
    const char *const *names;
    qm_st_file **files; /* (n) */
    qm_status *st;      /* (n) */
    qm_diag **d;        /* (n) a sink per shard: qm_diag is not shared between threads */
} shard_jobs;

static void open_shard(void *ctx, int task, int worker)
{
    shard_jobs *j = ctx;
    char *path = qm_strfmt("%s/%s", j->c->dir, j->names[task]);
    j->st[task] = !path || !j->d[task] ? qm_diag_fail(j->d[task], QM_ENOMEM, "out of memory")
                                       : qm_st_open_unindexed(path, &j->files[task], j->d[task]);
    free(path);
}

/* Open the shards `names` (n of them) into c->files, in that order.  Each
 * is an mmap and a JSON parse of its own, so they are opened on as many
 * threads as there are processors; the error reported is the first shard's
 * in order, as if they had been opened one by one. */
static qm_status open_files(qm_ckpt *c, const char *const *names, size_t n, const char *index_path, qm_diag *d)
{
    c->files = calloc(n + 1, sizeof *c->files);
    shard_jobs j = {c, names, c->files, calloc(n + 1, sizeof *j.st), calloc(n + 1, sizeof *j.d)};
    qm_status st = c->files && j.st && j.d ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < n; i++)
        j.d[i] = qm_diag_new();
    if (st == QM_OK)
        qm_parallel(qm_cpus(), (int)n, open_shard, &j);
    for (size_t i = 0; st == QM_OK && i < n; i++)
        if ((st = j.st[i]) != QM_OK) {
            if (j.d[i])
                qm_diag_append(d, j.d[i]);
            else
                qm_diag_fail(d, st, "out of memory");
            if (index_path)
                qm_diag_note(d, "%s lists shard '%s'", index_path, names[i]);
        }
    /* files of a failed open are closed with the checkpoint; keep them in order */
    for (size_t i = 0; c->files && i < n; i++)
        if (c->files[i])
            c->files[c->n_files++] = c->files[i];
    for (size_t i = 0; j.d && i < n; i++)
        qm_diag_free(j.d[i]);
    free(j.st);
    free(j.d);
    return st;
}

/* Building the name index: the names' hashes, computed once over ranges
 * of INDEX_RANGE, then each map (a task) takes the names of its part in
 * checkpoint order and notes the first that repeats an earlier one. */
enum { INDEX_RANGE = 4096 };
typedef struct index_jobs {
    qm_ckpt *c;
    uint64_t *hash;           /* (c->n) */
    const char **name;        /* (c->n) side by side with hash: a map's names are 1 in 8, too far apart
                               * in the files' tensor arrays to read from there */
    size_t dup[QM_CKPT_PARTS], prev[QM_CKPT_PARTS]; /* first repeat per map, SIZE_MAX none */
    qm_status st[QM_CKPT_PARTS];
} index_jobs;

static void hash_range(void *ctx, size_t i, size_t end, int worker)
{
    index_jobs *j = ctx;
    for (; i < end; i++)
        j->hash[i] = qm_strmap_hash(j->name[i] = j->c->t[i].t->name);
}

static void index_part(void *ctx, int part, int worker)
{
    index_jobs *j = ctx;
    qm_strmap *m = &j->c->by_name[part];
    size_t n = j->c->n;
    j->dup[part] = SIZE_MAX;
    j->st[part] = qm_strmap_init(m, n / QM_CKPT_PARTS + n / (4 * QM_CKPT_PARTS) + 16);
    for (size_t k = 0; k < n && j->st[part] == QM_OK; k++) {
        if (part_of(j->hash[k]) != part)
            continue;
        qm_status st = qm_strmap_put_hashed(m, j->name[k], j->hash[k], k, &j->prev[part]);
        if (st == QM_EINVAL) {
            j->dup[part] = k;
            break;
        }
        j->st[part] = st;
    }
}

/* Flatten the files' tensors into checkpoint order and index them by name:
 * the one name index of all the files, which is also where a name repeated
 * within one file or across two is caught (the first such in checkpoint
 * order, as a single map filled in order would find it). */
static qm_status build_index(qm_ckpt *c, qm_diag *d)
{
    size_t total = 0;
    for (size_t i = 0; i < c->n_files; i++)
        total += c->files[i]->n;
    c->t = calloc(total ? total : 1, sizeof *c->t);
    index_jobs j = {.c = c, .hash = malloc((total + 1) * sizeof *j.hash), .name = malloc((total + 1) * sizeof *j.name)};
    if (!c->t || !j.hash || !j.name) {
        free(j.hash);
        free(j.name);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->n_files; i++)
        for (size_t k = 0; k < c->files[i]->n; k++)
            c->t[c->n++] = (qm_ckpt_tensor){&c->files[i]->t[k], i};
    qm_parallel_ranges(qm_cpus(), total, INDEX_RANGE, hash_range, &j);
    qm_parallel(qm_cpus(), QM_CKPT_PARTS, index_part, &j);
    free(j.hash);
    free(j.name);
    size_t dup = SIZE_MAX, prev = 0;
    for (int p = 0; p < QM_CKPT_PARTS; p++) {
        if (j.st[p] != QM_OK)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        if (j.dup[p] < dup)
            dup = j.dup[p], prev = j.prev[p];
    }
    if (dup == SIZE_MAX)
        return QM_OK;
    const qm_ckpt_tensor *t = &c->t[dup], *o = &c->t[prev];
    if (t->file == o->file)
        return qm_diag_fail(d, QM_EFORMAT, "%s: header: duplicate tensor name '%s'", c->files[t->file]->path,
                            t->t->name);
    return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' is also in %s", c->files[t->file]->path, t->t->name,
                        c->files[o->file]->path);
}

/* The index's weight_map: tensor name -> shard, in file order.  Each
 * entry's shard name is decoded into scratch and turned into a number at
 * once (indexes list tensors alphabetically, so consecutive entries often
 * change shard: a map of the few distinct names); only the distinct names
 * are kept. */
typedef struct wmap {
    size_t n, cap;
    const char **name;    /* (n) tensor names, into the decoded strings */
    size_t *file;         /* (n) the shard of name[i], by number */
    size_t n_shards, cap_shards;
    const char **shard;   /* (n_shards) distinct shard names, first seen first */
    qm_strmap ids;        /* shard name -> number */
} wmap;

static void wmap_free(wmap *w)
{
    free(w->name);
    free(w->file);
    free(w->shard);
    qm_strmap_free(&w->ids);
}

/* Add the entry (name, shard s), s decoded at the reader's mark. */
static qm_status wmap_add(wmap *w, qm_js *j, char *mark, const char *name, const char *s)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 1024;
        const char **a = realloc(w->name, cap * sizeof *a);
        if (a)
            w->name = a;
        size_t *f = a ? realloc(w->file, cap * sizeof *f) : NULL;
        if (!f)
            return QM_ENOMEM;
        w->file = f;
        w->cap = cap;
    }
    size_t id = w->n_shards;
    qm_status st = QM_OK;
    if (w->n && strcmp(s, w->shard[w->file[w->n - 1]]) == 0) {
        id = w->file[w->n - 1];
    } else if ((st = qm_strmap_put(&w->ids, s, id, &id)) == QM_OK) {
        if (w->n_shards == w->cap_shards) {
            size_t cap = w->cap_shards ? 2 * w->cap_shards : 16;
            const char **v = realloc(w->shard, cap * sizeof *v);
            if (!v)
                return QM_ENOMEM;
            w->shard = v;
            w->cap_shards = cap;
        }
        w->shard[w->n_shards++] = s;
        mark = NULL; /* keep this name */
    } else if (st != QM_EINVAL) {
        return st;
    }
    if (mark)
        qm_js_release(j, mark);
    w->name[w->n] = name;
    w->file[w->n++] = id;
    return QM_OK;
}

/* Sort the distinct shard names (shards are numbered, so name order is file
 * order) and renumber the entries to match. */
static qm_status sort_shards(wmap *w)
{
    size_t n = w->n_shards, *ord = malloc((n + 1) * sizeof *ord), *pos = malloc((n + 1) * sizeof *pos);
    const char **sorted = malloc((n + 1) * sizeof *sorted);
    if (!ord || !pos || !sorted) {
        free(ord), free(pos), free(sorted);
        return QM_ENOMEM;
    }
    for (size_t k = 0; k < n; k++)
        ord[k] = k;
    qsort_r(ord, n, sizeof *ord, cmp_id, w->shard);
    for (size_t k = 0; k < n; k++) {
        sorted[k] = w->shard[ord[k]];
        pos[ord[k]] = k;
    }
    for (size_t i = 0; i < w->n; i++)
        w->file[i] = pos[w->file[i]];
    free(w->shard);
    w->shard = sorted;
    free(ord);
    free(pos);
    return QM_OK;
}

static qm_status bad_index(const char *path, const qm_js *j, qm_diag *d)
{
    size_t line, col;
    qm_js_linecol(j, &line, &col);
    return qm_diag_fail(d, QM_EFORMAT, "%s:%zu:%zu: invalid JSON: %s", path, line, col, j->err);
}

/* weight_map's entries; everything else in the index is validated and skipped. */
static qm_status read_index(const char *path, qm_js *j, wmap *w, qm_diag *d)
{
    int found = 0, more;
    qm_strmap seen = {0};
    qm_status st = QM_OK;
    for (more = qm_js_open(j, '{', '}'); more > 0 && st == QM_OK; more = qm_js_next(j, '}')) {
        const char *k = qm_js_key(j);
        if (!k || qm_js_dup(j, &seen, k))
            break;
        if (strcmp(k, "weight_map") != 0 || qm_js_peek(j) != '{') {
            if (qm_js_skip(j))
                break;
            continue;
        }
        found = 1;
        int m;
        for (m = qm_js_open(j, '{', '}'); m > 0 && st == QM_OK; m = qm_js_next(j, '}')) {
            const char *name = qm_js_key(j), *s = NULL;
            char *mark = qm_js_mark(j);
            if (!name)
                break;
            if (qm_js_peek(j) == '"' ? !(s = qm_js_string(j)) : qm_js_skip(j) != 0)
                break;
            if (!s || !*s || strchr(s, '/') || strcmp(s, "..") == 0)
                st = qm_diag_fail(d, QM_EFORMAT,
                                  "%s: weight_map entry '%s' is not a file name in the model directory", path,
                                  name);
            else if (wmap_add(w, j, mark, name, s) != QM_OK)
                st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        }
    }
    qm_strmap_free(&seen);
    if (st == QM_OK && (j->failed || qm_js_finish(j)))
        st = bad_index(path, j, d);
    if (st == QM_OK && !found)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: no 'weight_map' object", path);
    return st;
}

/* The checkpoint index of each weight_map entry's tensor (-1: none),
 * LOOKUP_RANGE entries a task. */
enum { LOOKUP_RANGE = 4096 };
typedef struct lookups {
    const qm_ckpt *c;
    const wmap *w;
    long *at; /* (w->n) */
} lookups;

static void look_up(void *ctx, size_t i, size_t end, int worker)
{
    enum { AHEAD = 8 };
    lookups *l = ctx;
    uint64_t h[AHEAD];
    for (; i < end; i += AHEAD) {
        size_t n = end - i < AHEAD ? end - i : AHEAD;
        for (size_t k = 0; k < n; k++)
            qm_ckpt_prefetch(l->c, h[k] = qm_strmap_hash(l->w->name[i + k]));
        for (size_t k = 0; k < n; k++)
            l->at[i + k] = qm_ckpt_find_hashed(l->c, l->w->name[i + k], h[k]);
    }
}

static qm_status open_sharded(qm_ckpt *c, const char *index_path, qm_diag *d)
{
    const char *text;
    char *strings = NULL;
    size_t len;
    qm_status st = qm_map_file(index_path, &text, &len, d);
    if (st != QM_OK)
        return st;
    wmap w = {0};
    unsigned char *listed = NULL; /* (c->n) how often the index names each tensor */
    if (!(strings = malloc(len + 1)) || qm_strmap_init(&w.ids, 16) != QM_OK) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto done;
    }
    qm_js j;
    qm_js_init(&j, text, len, strings);
    if ((st = read_index(index_path, &j, &w, d)) != QM_OK)
        goto done;
    if (sort_shards(&w) != QM_OK) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto done;
    }
    if ((st = open_files(c, w.shard, w.n_shards, index_path, d)) != QM_OK || (st = build_index(c, d)) != QM_OK)
        goto done;
    /* Each entry names a tensor of its shard, once (repeated names are not
     * caught by the reader: they are checked here); every tensor is named.
     * The lookups run on all cores; the checks, in entry order. */
    lookups lk = {c, &w, malloc((w.n + 1) * sizeof *lk.at)};
    if (!(listed = calloc(c->n + 1, 1)) || !lk.at) {
        free(lk.at);
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto done;
    }
    qm_parallel_ranges(qm_cpus(), w.n, LOOKUP_RANGE, look_up, &lk);
    for (size_t i = 0; i < w.n; i++) {
        long k = lk.at[i];
        if (k < 0 || c->t[k].file != w.file[i]) {
            st = qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' is listed in shard '%s' but is not in it",
                              index_path, w.name[i], w.shard[w.file[i]]);
            break;
        }
        if (listed[k]++) {
            st = qm_diag_fail(d, QM_EFORMAT, "%s: weight_map lists tensor '%s' twice", index_path, w.name[i]);
            break;
        }
    }
    free(lk.at);
    if (st != QM_OK)
        goto done;
    for (size_t i = 0; i < c->n; i++)
        if (!listed[i]) {
            st = qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' is not listed in %s", c->files[c->t[i].file]->path,
                              c->t[i].t->name, index_path);
            goto done;
        }
done:
    wmap_free(&w);
    free(listed);
    free(strings);
    qm_unmap_file(text, len);
    return st;
}

qm_status qm_ckpt_open(const char *dir, qm_ckpt **out, qm_diag *d)
{
    *out = NULL;
    qm_ckpt *c = calloc(1, sizeof *c);
    char *index = qm_strfmt("%s/model.safetensors.index.json", dir);
    if (!c || !index || !(c->dir = qm_strdup(dir))) {
        free(index);
        qm_ckpt_close(c);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_status st;
    struct stat sb;
    if (stat(index, &sb) == 0) {
        st = open_sharded(c, index, d);
    } else {
        char *single = qm_strfmt("%s/model.safetensors", dir);
        if (!single)
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        else if (stat(single, &sb) != 0)
            st = qm_diag_fail(d, QM_ENOTFOUND,
                              "%s: no model.safetensors and no model.safetensors.index.json", dir);
        else if ((st = open_files(c, (const char *const[]){"model.safetensors"}, 1, NULL, d)) == QM_OK)
            st = build_index(c, d);
        free(single);
    }
    free(index);
    if (st != QM_OK) {
        qm_ckpt_close(c);
        return st;
    }
    *out = c;
    return QM_OK;
}
