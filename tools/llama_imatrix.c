/* llama_imatrix.c: llama.cpp's importance matrix, collected inside the test
 * harness (tools/llama_ppl.c) so that the bench can quantize with
 * llama.cpp's own quantizer "with an imatrix" from the same calibration
 * windows qmoe's GPTQ sees (not part of qmoe).
 *
 *   llama_ppl BACKEND_DIR --imatrix MODEL.gguf TEXT BYTES CTX OUT.gguf
 *   llama_ppl BACKEND_DIR --imatrix-diff A.gguf B.gguf
 *
 * --imatrix reads the first BYTES bytes of TEXT as token ids (byte-level
 * models) and decodes the full windows of CTX tokens in it, each alone,
 * every position's logits requested (so llama.cpp's last layer keeps all
 * rows, as its imatrix tool asks).  This is qmoe's calibration:
 * `quantize --samples N --ctx CTX` takes the first N x CTX tokens in N
 * windows.  A cb_eval callback does what llama.cpp's
 * tools/imatrix/imatrix.cpp (IMatrixCollector::collect_imatrix) does, in
 * the same order and float precision:
 *   - GGML_OP_MUL_MAT whose weight is named blk.* with at least 16 rows of
 *     F32 input: per input column the sum of squared inputs over all rows,
 *     one count (rows) per matrix;
 *   - GGML_OP_MUL_MAT_ID (the experts' stacked matmuls): for each token and
 *     each of its routed experts (the ids tensor), that token's input row
 *     squared into the expert's slice, and the expert's count + 1; experts
 *     no token reached keep zero sums and count.
 * OUT is written in llama.cpp's GGUF imatrix format (general.type
 * "imatrix", imatrix.datasets, .chunk_count, .chunk_size, per matrix
 * NAME.in_sum2 [ne0, n_mat] and NAME.counts [1, n_mat], names sorted), to a
 * temporary file renamed over OUT, so llama.cpp's own tools read it too.
 *
 * --imatrix-diff compares two such files (ours and llama.cpp's imatrix
 * tool's): the same names, shapes and counts, and prints the largest
 * relative difference of the sums; exit 1 when names, shapes or counts
 * differ.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "llama_harness.h"

typedef struct {
    char name[GGML_MAX_NAME];
    int64_t ne0, nmat;
    float *sum;     /* ne0 x nmat, owned */
    int64_t *count; /* nmat (MUL_MAT_ID) or 1 (MUL_MAT), owned */
    int64_t ncount;
} entry;

typedef struct {
    entry *e; /* owned */
    int n, cap;
    char *buf; /* a non-host input or ids copied to the host, owned */
    size_t buf_cap;
    char err[512]; /* first failure; collection stops counting after it */
} collector;

/* The weight's name as imatrix.cpp's filter_tensor_name keeps it: the part
 * between the first and second '#' when the name has one. */
static void weight_name(const char *src, char *out)
{
    const char *p = strchr(src, '#');
    size_t n;
    if (p) {
        const char *q = strchr(++p, '#');
        n = q ? (size_t)(q - p) : strlen(p);
    } else {
        p = src;
        n = strlen(p);
    }
    n = n < GGML_MAX_NAME - 1 ? n : GGML_MAX_NAME - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

/* The entry named name with ne0 x nmat sums and ncount counts, made on first
 * use; NULL with c->err set when the shapes disagree or memory runs out. */
static entry *find(collector *c, const char *name, int64_t ne0, int64_t nmat, int64_t ncount)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->e[i].name, name) == 0) {
            entry *e = &c->e[i];
            if (e->ne0 != ne0 || e->nmat != nmat || e->ncount != ncount) {
                snprintf(c->err, sizeof c->err, "%s: inconsistent size (%lld x %lld vs %lld x %lld)", name,
                         (long long)e->ne0, (long long)e->nmat, (long long)ne0, (long long)nmat);
                return NULL;
            }
            return e;
        }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        entry *g = realloc(c->e, (size_t)cap * sizeof *g);
        if (!g) {
            snprintf(c->err, sizeof c->err, "out of memory");
            return NULL;
        }
        c->e = g;
        c->cap = cap;
    }
    entry *e = &c->e[c->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ne0 = ne0, e->nmat = nmat, e->ncount = ncount;
    e->sum = calloc((size_t)(ne0 * nmat), sizeof *e->sum);
    e->count = calloc((size_t)ncount, sizeof *e->count);
    if (!e->sum || !e->count) {
        free(e->sum);
        free(e->count);
        snprintf(c->err, sizeof c->err, "out of memory");
        return NULL;
    }
    c->n++;
    return e;
}

/* t's data on the host: its own when host memory, else a copy in c->buf. */
static const char *host_data(collector *c, const struct ggml_tensor *t)
{
    if (ggml_backend_buffer_is_host(t->buffer))
        return t->data;
    size_t n = ggml_nbytes(t);
    if (n > c->buf_cap) {
        char *g = realloc(c->buf, n);
        if (!g)
            return NULL;
        c->buf = g, c->buf_cap = n;
    }
    ggml_backend_tensor_get(t, c->buf, 0, n);
    return c->buf;
}

static int all_finite(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

static void mul_mat_id(collector *c, const struct ggml_tensor *t, const char *wname)
{
    const struct ggml_tensor *src0 = t->src[0], *src1 = t->src[1], *ids = t->src[2];
    const int64_t n_as = src0->ne[2], n_ids = ids->ne[0], ne0 = src1->ne[0], n_tokens = src1->ne[2];
    if (ids->ne[1] != n_tokens || ggml_nrows(src1) != src1->ne[1] * src1->ne[2]) {
        snprintf(c->err, sizeof c->err, "%s: MUL_MAT_ID input of an unexpected shape", wname);
        return;
    }
    entry *e = find(c, wname, ne0, n_as, n_as);
    if (!e)
        return;
    /* the ids first: host_data may reuse c->buf for the input below */
    size_t nid = ggml_nbytes(ids);
    char *idv = malloc(nid);
    if (!idv) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    ggml_backend_tensor_get(ids, idv, 0, nid);
    const char *data = host_data(c, src1);
    unsigned char *touched = calloc((size_t)n_as, 1);
    if (!data || !touched) {
        free(idv);
        free(touched);
        snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    for (int64_t idx = 0; idx < n_ids; idx++)
        for (int64_t row = 0; row < n_tokens; row++) {
            const int32_t ex = *(const int32_t *)(idv + row * ids->nb[1] + idx * ids->nb[0]);
            if (ex < 0 || ex >= n_as) {
                snprintf(c->err, sizeof c->err, "%s: routed expert %d outside 0..%lld", wname, ex,
                         (long long)n_as - 1);
                goto out;
            }
            const float *x = (const float *)(data + (idx % src1->ne[1]) * src1->nb[1] + row * src1->nb[2]);
            float *acc = e->sum + ex * ne0;
            e->count[ex]++;
            touched[ex] = 1;
            for (int64_t j = 0; j < ne0; j++)
                acc[j] += x[j] * x[j];
        }
    for (int64_t ex = 0; ex < n_as; ex++)
        if (touched[ex] && !all_finite(e->sum + ex * ne0, ne0))
            snprintf(c->err, sizeof c->err, "%s: non-finite sums", wname);
out:
    free(idv);
    free(touched);
}

static void mul_mat(collector *c, const struct ggml_tensor *t, const char *wname)
{
    const struct ggml_tensor *src0 = t->src[0], *src1 = t->src[1];
    const int64_t n_mat = src0->ne[2] * src0->ne[3], ne0 = src1->ne[0];
    entry *e = find(c, wname, ne0, n_mat, 1);
    const char *data = e ? host_data(c, src1) : NULL;
    if (!data) {
        if (e)
            snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    for (int64_t i3 = 0; i3 < src1->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < src1->ne[2]; i2++) {
            float *acc = e->sum + ((i3 % src0->ne[3]) * src0->ne[2] + (i2 % src0->ne[2])) * ne0;
            for (int64_t row = 0; row < src1->ne[1]; row++) {
                const float *x = (const float *)(data + row * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
                for (int64_t j = 0; j < ne0; j++)
                    acc[j] += x[j] * x[j];
            }
        }
    if (!all_finite(e->sum, ne0 * n_mat))
        snprintf(c->err, sizeof c->err, "%s: non-finite sums", wname);
    e->count[0] += ggml_nrows(src1) / n_mat;
}

/* cb_eval: asked first whether a node is wanted, then called with its data. */
static bool collect(struct ggml_tensor *t, bool ask, void *user)
{
    collector *c = user;
    const struct ggml_tensor *src0 = t->src[0], *src1 = t->src[1];
    if (ask) {
        if (t->op == GGML_OP_MUL_MAT_ID)
            return true;
        return t->op == GGML_OP_MUL_MAT && src1->ne[1] >= 16 && src1->type == GGML_TYPE_F32 &&
               strncmp(src0->name, "blk.", 4) == 0;
    }
    if (c->err[0])
        return true;
    char wname[GGML_MAX_NAME];
    weight_name(src0->name, wname);
    if (src1->nb[0] != ggml_element_size(src1) || src1->type != GGML_TYPE_F32) {
        snprintf(c->err, sizeof c->err, "%s: input not contiguous F32 rows", wname);
        return true;
    }
    if (t->op == GGML_OP_MUL_MAT_ID)
        mul_mat_id(c, t, wname);
    else
        mul_mat(c, t, wname);
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* c's entries as llama.cpp's GGUF imatrix file at out (via out.tmp). */
static int save(collector *c, const char *out, const char *dataset, int chunks, int ctx)
{
    qsort(c->e, (size_t)c->n, sizeof *c->e, by_name);
    size_t mem = 0;
    for (int i = 0; i < c->n; i++)
        mem += 2 * (ggml_tensor_overhead() + GGML_MEM_ALIGN) + sizeof(float) * (size_t)(c->e[i].ne0 + 1) * c->e[i].nmat;
    struct ggml_init_params ip = {.mem_size = mem + 1024, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *gc = ggml_init(ip);
    struct gguf_context *g = gguf_init_empty();
    if (!gc || !g) {
        fprintf(stderr, "llama_imatrix: out of memory\n");
        return 1;
    }
    gguf_set_val_str(g, "general.type", "imatrix");
    gguf_set_arr_str(g, "imatrix.datasets", &dataset, 1);
    gguf_set_val_u32(g, "imatrix.chunk_count", (uint32_t)chunks);
    gguf_set_val_u32(g, "imatrix.chunk_size", (uint32_t)ctx);
    for (int i = 0; i < c->n; i++) {
        const entry *e = &c->e[i];
        struct ggml_tensor *s = ggml_new_tensor_2d(gc, GGML_TYPE_F32, e->ne0, e->nmat);
        struct ggml_tensor *n = ggml_new_tensor_2d(gc, GGML_TYPE_F32, 1, e->nmat);
        ggml_format_name(s, "%s.in_sum2", e->name);
        ggml_format_name(n, "%s.counts", e->name);
        memcpy(s->data, e->sum, sizeof(float) * (size_t)(e->ne0 * e->nmat));
        for (int64_t j = 0; j < e->nmat; j++) /* a MUL_MAT's one count covers each of its matrices */
            ((float *)n->data)[j] = (float)e->count[e->ncount == 1 ? 0 : j];
        gguf_add_tensor(g, s);
        gguf_add_tensor(g, n);
    }
    size_t len = strlen(out) + 5;
    char *tmp = malloc(len);
    int ok = tmp != NULL;
    if (ok) {
        snprintf(tmp, len, "%s.tmp", out);
        ok = gguf_write_to_file(g, tmp, false) && rename(tmp, out) == 0;
        if (!ok)
            remove(tmp);
    }
    if (!ok)
        fprintf(stderr, "llama_imatrix: cannot write %s\n", out);
    free(tmp);
    gguf_free(g);
    ggml_free(gc);
    return ok ? 0 : 1;
}

int qm_imatrix_collect(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --imatrix MODEL.gguf TEXT BYTES CTX OUT.gguf\n");
        return 2;
    }
    int ctx = atoi(argv[6]);
    llama_token *tok = NULL;
    long n = ctx >= 16 ? qm_harness_bytes(argv[4], atol(argv[5]), &tok) : -1;
    int windows = n > 0 ? (int)(n / ctx) : 0;
    if (windows < 1) {
        fprintf(stderr, "llama_imatrix: %s holds no full window of %s tokens (CTX at least 16)\n", argv[4], argv[6]);
        free(tok);
        return 1;
    }
    collector c = {0};
    struct llama_model *model;
    struct llama_context *lc = qm_harness_open(argv[3], ctx, collect, &c, &model);
    if (!lc)
        return 1;
    struct llama_batch b = llama_batch_init(ctx, 0, 1);
    int rc = 0;
    for (int w = 0; w < windows && !rc; w++) {
        llama_memory_clear(llama_get_memory(lc), 1);
        b.n_tokens = ctx;
        for (int i = 0; i < ctx; i++) {
            b.token[i] = tok[(long)w * ctx + i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (llama_decode(lc, b) != 0) {
            fprintf(stderr, "llama_imatrix: decode failed at window %d\n", w);
            rc = 1;
        } else if (c.err[0]) {
            fprintf(stderr, "llama_imatrix: window %d: %s\n", w, c.err);
            rc = 1;
        }
    }
    if (!rc && c.n == 0) {
        fprintf(stderr, "llama_imatrix: no matrix multiplication of %s was seen\n", argv[3]);
        rc = 1;
    }
    if (!rc)
        rc = save(&c, argv[7], argv[4], windows, ctx);
    if (!rc)
        printf("entries %d\nwindows %d\n", c.n, windows);
    llama_batch_free(b);
    llama_free(lc);
    llama_model_free(model);
    for (int i = 0; i < c.n; i++) {
        free(c.e[i].sum);
        free(c.e[i].count);
    }
    free(c.e);
    free(c.buf);
    free(tok);
    return rc;
}

/* path's GGUF with its tensors in *gc; NULL after a message. */
static struct gguf_context *open_imatrix(const char *path, struct ggml_context **gc)
{
    struct gguf_init_params ip = {.no_alloc = false, .ctx = gc};
    struct gguf_context *g = gguf_init_from_file(path, ip);
    if (!g)
        fprintf(stderr, "llama_imatrix: %s is not a GGUF file llama.cpp reads\n", path);
    return g;
}

/* The NAME.counts tensor beside NAME.in_sum2 s, checked against s's shape;
 * NULL after a message. */
static const struct ggml_tensor *counts_of(struct ggml_context *gc, const struct ggml_tensor *s, const char *path)
{
    char name[GGML_MAX_NAME + 8];
    snprintf(name, sizeof name, "%.*s.counts", (int)(strlen(s->name) - strlen(".in_sum2")), s->name);
    const struct ggml_tensor *n = ggml_get_tensor(gc, name);
    if (!n || n->type != GGML_TYPE_F32 || s->type != GGML_TYPE_F32 || n->ne[0] != 1 || n->ne[1] != s->ne[1]) {
        fprintf(stderr, "llama_imatrix: %s: %s has no F32 counts of shape [1, %lld]\n", path, s->name,
                (long long)s->ne[1]);
        return NULL;
    }
    return n;
}

static int is_sum(const char *name)
{
    size_t n = strlen(name), k = strlen(".in_sum2");
    return n > k && strcmp(name + n - k, ".in_sum2") == 0;
}

struct llama_model_imatrix_data *qm_imatrix_load(const char *path)
{
    struct ggml_context *gc = NULL;
    struct gguf_context *g = open_imatrix(path, &gc);
    if (!g)
        return NULL;
    int64_t nt = gguf_get_n_tensors(g), k = 0;
    struct llama_model_imatrix_data *m = calloc((size_t)nt + 1, sizeof *m);
    int ok = m != NULL;
    for (int64_t i = 0; ok && i < nt; i++) {
        const struct ggml_tensor *s = ggml_get_tensor(gc, gguf_get_tensor_name(g, i)), *n;
        if (!is_sum(s->name))
            continue;
        if (!(n = counts_of(gc, s, path))) {
            ok = 0;
            break;
        }
        const int64_t ne0 = s->ne[0], nmat = s->ne[1];
        float *v = malloc(sizeof *v * (size_t)(ne0 * nmat));
        char *name = malloc(strlen(s->name) + 1);
        if (!v || !name) {
            free(v);
            free(name);
            ok = 0;
            break;
        }
        snprintf(name, strlen(s->name) + 1, "%.*s", (int)(strlen(s->name) - strlen(".in_sum2")), s->name);
        for (int64_t j = 0; j < nmat; j++) {
            const float cnt = ((const float *)n->data)[j];
            for (int64_t i0 = 0; i0 < ne0; i0++)
                v[j * ne0 + i0] = cnt > 0 ? ((const float *)s->data)[j * ne0 + i0] / cnt : 1.0f;
        }
        m[k].name = name, m[k].data = v, m[k].size = (size_t)(ne0 * nmat);
        k++;
    }
    gguf_free(g);
    ggml_free(gc);
    if (!ok || k == 0) {
        fprintf(stderr, "llama_imatrix: %s: %s\n", path, k == 0 && ok ? "no NAME.in_sum2 tensors" : "unreadable");
        qm_imatrix_free(m);
        return NULL;
    }
    return m;
}

void qm_imatrix_free(struct llama_model_imatrix_data *m)
{
    for (size_t i = 0; m && m[i].name; i++) {
        free((void *)m[i].name);
        free((void *)m[i].data);
    }
    free(m);
}

int qm_imatrix_diff(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --imatrix-diff A.gguf B.gguf\n");
        return 2;
    }
    struct ggml_context *ga = NULL, *gb = NULL;
    struct gguf_context *a = open_imatrix(argv[3], &ga), *b = a ? open_imatrix(argv[4], &gb) : NULL;
    if (!b)
        return 1;
    int64_t na = gguf_get_n_tensors(a), entries = 0;
    int bad = gguf_get_n_tensors(b) != na;
    if (bad)
        fprintf(stderr, "llama_imatrix: %s holds %lld tensors, %s %lld\n", argv[3], (long long)na, argv[4],
                (long long)gguf_get_n_tensors(b));
    double worst = 0;
    for (int64_t i = 0; !bad && i < na; i++) {
        const char *name = gguf_get_tensor_name(a, i);
        const struct ggml_tensor *x = ggml_get_tensor(ga, name), *y = ggml_get_tensor(gb, name);
        if (!y || !ggml_are_same_shape(x, y) || x->type != GGML_TYPE_F32 || y->type != GGML_TYPE_F32) {
            fprintf(stderr, "llama_imatrix: %s: %s missing or of another shape or type in %s\n", argv[3], name,
                    argv[4]);
            bad = 1;
            break;
        }
        const float *u = x->data, *v = y->data;
        const int counts = !is_sum(name);
        entries += !counts;
        for (int64_t j = 0; j < ggml_nelements(x); j++) {
            double d = fabs((double)u[j] - v[j]), s = fmax(fabs((double)u[j]), fabs((double)v[j]));
            if (counts && d != 0) {
                fprintf(stderr, "llama_imatrix: %s[%lld]: count %g vs %g\n", name, (long long)j, u[j], v[j]);
                bad = 1;
                break;
            }
            if (s > 0)
                worst = fmax(worst, d / s);
        }
    }
    if (!bad)
        printf("entries %lld\nmax_rel_diff %.3g\n", (long long)entries, worst);
    gguf_free(a);
    gguf_free(b);
    ggml_free(ga);
    ggml_free(gb);
    return bad;
}
