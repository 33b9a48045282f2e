/* fuzz_tokenizer.c: fuzz target for the tokenizer readers (libFuzzer entry
 * point).
 *
 * The first byte picks the file the rest of the input is: 'm' a
 * SentencePiece tokenizer.model (our protobuf reader), anything else a
 * tokenizer.json.  Reading must not crash, hang or leak; a failure says
 * why; a tokenizer that reads encodes a fixed text and the input itself
 * (as text: invalid UTF-8 included) to ids in [0, vocab).  The file is a
 * memfd reached through a symbolic link of the right name in a private
 * directory, since readers choose the format by name.  `make check`
 * replays tests/fuzz/corpus/tokenizer through it with tests/fuzz/replay.c;
 * .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void remove_dir(void)
{
    char p[96];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    unlink(p);
    rmdir(dir);
}

static int check(qm_tokenizer *t, const char *text, size_t len, qm_diag *d)
{
    qm_tokens ids = {0};
    if (qm_tokenizer_encode(t, text, len, 1, &ids, d) == QM_OK) {
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || ids.ids[i] >= qm_tokenizer_vocab(t))
                abort(); /* an id the model cannot embed */
    } else if (qm_diag_errors(d) == 0) {
        abort(); /* a failure says why */
    }
    qm_tokens_free(&ids);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", "/tmp/qmoe-fuzz-tok.XXXXXX");
        if (!mkdtemp(dir))
            return 0;
        atexit(remove_dir);
    }
    if (size == 0)
        return 0;
    char target[32], link[96];
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data + 1, size - 1, target) : -1;
    snprintf(link, sizeof link, "%s/%s", dir, data[0] == 'm' ? "tokenizer.model" : "tokenizer.json");
    unlink(link);
    if (fd < 0 || symlink(target, link) != 0) {
        if (fd >= 0)
            close(fd);
        qm_diag_free(d);
        return 0;
    }
    qm_tokenizer *t;
    if (qm_tokenizer_open(link, &t, d) == QM_OK) {
        static const char text[] = "Hello, world! 12345 <s>\n\tcaf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82";
        check(t, text, sizeof text - 1, d);
        check(t, (const char *)data + 1, size - 1 < 4096 ? size - 1 : 4096, d);
        qm_tokenizer_free(t);
    } else if (qm_diag_errors(d) == 0) {
        abort();
    }
    unlink(link);
    close(fd);
    qm_diag_free(d);
    return 0;
}
