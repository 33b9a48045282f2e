/* fuzz_index.c: fuzz target for the shard index of a checkpoint
 * (model.safetensors.index.json, libFuzzer entry point).
 *
 * Any bytes, as the index of a model directory that holds two small valid
 * shards (a.safetensors: x, y; b.safetensors: z): opening the checkpoint
 * must not crash or leak; a failure leaves no checkpoint and says why; a
 * checkpoint that opens finds each of its tensors by name in the shard that
 * holds it.  The directory is made once per process under $TMPDIR (or /tmp)
 * and removed at exit.  `make check` replays tests/fuzz/corpus/index
 * through it with tests/fuzz/replay.c; .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], index_path[300], shard_a[300], shard_b[300];

static void remove_dir(void)
{
    unlink(index_path);
    unlink(shard_a);
    unlink(shard_b);
    rmdir(dir);
}

/* The model directory with its two shards; 0, or -1 when it cannot be made. */
static int make_dir(qm_diag *d)
{
    static const float f[3] = {1, 2, 3};
    static const uint64_t two = 2, one = 1;
    const qm_st_entry a[] = {{"x", QM_DT_F32, 1, &two, f}, {"y", QM_DT_F32, 1, &one, f + 2}};
    const qm_st_entry b[] = {{"z", QM_DT_F32, 1, &one, f}};
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qm-fuzz-index.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    snprintf(shard_a, sizeof shard_a, "%s/a.safetensors", dir);
    snprintf(shard_b, sizeof shard_b, "%s/b.safetensors", dir);
    atexit(remove_dir);
    if (qm_st_write(shard_a, a, 2, NULL, d) != QM_OK || qm_st_write(shard_b, b, 1, NULL, d) != QM_OK)
        return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    qm_diag *d = qm_diag_new();
    if (!d)
        return 0;
    if (!ready)
        ready = make_dir(d) == 0 ? 1 : -1;
    FILE *f = ready > 0 ? fopen(index_path, "wb") : NULL;
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        qm_diag_free(d);
        abort(); /* the harness itself failed: say so rather than test nothing */
    }
    qm_ckpt *c = NULL;
    if (qm_ckpt_open(dir, &c, d) == QM_OK) {
        for (size_t i = 0; i < c->n; i++)
            if (qm_ckpt_find(c, c->t[i].t->name) != (long)i || c->t[i].file >= c->n_files
                || qm_st_find(c->files[c->t[i].file], c->t[i].t->name) != c->t[i].t)
                abort();
    } else if (c || qm_diag_errors(d) == 0) {
        abort(); /* a failure leaves no checkpoint and says why */
    }
    qm_ckpt_close(c);
    qm_diag_free(d);
    return 0;
}
