/* mkmodel.c: header-only (sparse) checkpoints for the compiler's tests and bench.
 *
 *   mkmodel CONFIG.json DIR    write DIR/config.json and DIR/model.safetensors
 *                              named as the published checkpoint of CONFIG's
 *                              family, with a data area that is a hole
 *   mkmodel                    self-test: write every config in
 *                              $QM_SRCDIR/tests/data/configs and open it
 *
 * The naming comes from tests/unit/hfnames.c, written independently of
 * runtime/, so a mistake in an adapter is not mirrored here.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "tests/unit/hfnames.h"
#include "tests/unit/testutil.h"

static int make(const char *config, const char *dir)
{
    json_error_t err;
    json_t *c = json_load_file(config, 0, &err);
    if (!c) {
        fprintf(stderr, "mkmodel: %s: %s\n", config, err.text);
        return 1;
    }
    mkdir(dir, 0777);
    hf_dims x = hf_dims_of(c);
    tlist l = {0};
    hf_checkpoint_names(&x, c, &l);
    int rc = hf_write_model(dir, c, &l, 1);
    hf_tlist_free(&l);
    json_decref(c);
    if (rc)
        fprintf(stderr, "mkmodel: %s: cannot write\n", dir);
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3)
        return make(argv[1], argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: mkmodel [CONFIG.json DIR]\n");
        return 2;
    }
    static const char *const configs[] = {"mixtral-8x7b", "deepseek-moe-16b", "qwen1.5-moe-a2.7b",
                                          "qwen3-30b-a3b", "olmoe-1b-7b"};
    int bad = 0;
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        char rel[256], dir[1024];
        snprintf(rel, sizeof rel, "tests/data/configs/%s.json", configs[i]);
        snprintf(dir, sizeof dir, "%s", tu_mkdir(configs[i]));
        qm_diag *d = qm_diag_new();
        qm_model *m = NULL;
        if (make(tu_src(rel), dir) || qm_model_open(dir, &m, d) != QM_OK || m->n_unexpected) {
            qm_diag_print(d, stderr, "mkmodel");
            fprintf(stderr, "mkmodel: FAIL %s\n", configs[i]);
            bad = 1;
        }
        qm_model_close(m);
        qm_diag_free(d);
    }
    printf("mkmodel: %zu configs %s\n", sizeof configs / sizeof *configs, bad ? "FAILED" : "written and opened");
    return bad;
}
