/* fuzz_tasks.c: fuzz target for the tasks reader (libFuzzer entry point).
 *
 * Any bytes, as the JSONL of `qmoe eval --tasks`, for a model of 256 token
 * ids: reading must not crash or leak; a failure leaves nothing and says
 * why; tasks that read are what eval may use without further checks: at
 * least one item, each with a named group, a non-empty context, two or more
 * non-empty choices, gold among them, ids in the vocabulary and pieces no
 * longer than QM_TASK_MAX_IDS.  `make check` replays tests/fuzz/corpus/tasks
 * through it with tests/fuzz/replay.c; .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "model/tasks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { VOCAB = 256 };

static void check_piece(const qm_task_piece *p)
{
    if (p->len == 0 || p->len > QM_TASK_MAX_IDS || !p->text == !p->ids)
        abort();
    for (size_t i = 0; p->ids && i < p->len; i++)
        if (p->ids[i] < 0 || p->ids[i] >= VOCAB)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qm_diag *d = qm_diag_new();
    if (!d)
        return 0;
    qm_tasks t;
    if (qm_tasks_parse("fuzz.jsonl", (const char *)data, size, VOCAB, &t, d) == QM_OK) {
        if (t.n == 0)
            abort();
        for (size_t k = 0; k < t.n; k++) {
            const qm_task_item *it = &t.items[k];
            if (!it->task || it->line < 1 || it->n_choices < 2 || it->gold < 0 || it->gold >= it->n_choices)
                abort();
            check_piece(&it->context);
            for (int i = 0; i < it->n_choices; i++)
                check_piece(&it->choices[i]);
        }
        qm_tasks_free(&t);
    } else if (qm_diag_errors(d) == 0 || t.n != 0 || t.items) {
        abort(); /* a failure leaves nothing and says why */
    }
    qm_diag_free(d);
    return 0;
}
