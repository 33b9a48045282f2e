/* llama_ppl.c: the test harness around the real llama.cpp (built by
 * tools/llama-engine.sh against the headers of the release the prebuilt
 * libraries were built from; not part of qmoe).
 *
 *   llama_ppl BACKEND_DIR MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT] [BASE.gguf]
 *   llama_ppl BACKEND_DIR --quantize IN.gguf OUT.gguf FTYPE [KEEP_TYPE]
 *   llama_ppl BACKEND_DIR --tokenize MODEL.gguf TEXT [ADD_SPECIAL]
 *
 * Loads MODEL.gguf on the CPU (the backends found in BACKEND_DIR), reads
 * the first BYTES bytes of TEXT as token ids (byte-level models), and walks
 * the windows `qmoe eval` walks (runtime/eval.h): window w feeds tokens
 * [w*CTX, w*CTX + S) and scores the next token at each position.  The KV
 * cache is F32 and flash attention off, so that llama.cpp's logits are
 * those of its plain F32 kernels.  Prints "tokens N", "nll X" (mean, nats)
 * and "ppl X" (%.9g); with LOGPROBS_OUT also writes one line per window:
 * the window index and the sum of its log-probabilities (LOGPROBS_OUT "-":
 * none).  With BASE.gguf, the same windows through that model too, and
 * "kld X": the mean over scored positions of KL(base || model), nats.
 *
 * --quantize runs llama.cpp's own quantizer (llama_model_quantize) to the
 * llama_ftype number FTYPE, requantizing when IN is already quantized:
 * FTYPE 0 (all F32) turns blocks into floats with ggml's own dequantization.
 * With KEEP_TYPE (a ggml type id) the quantization is "pure" (every weight
 * matrix at FTYPE's type) but for token_embd and output, which get
 * KEEP_TYPE: the layout of a qmoe file that keeps embeddings and head.
 *
 * --tokenize prints the ids llama.cpp's tokenizer (MODEL's vocabulary
 * alone) gives the whole of TEXT, as `qmoe tokenize` prints them (one line,
 * space-separated); BOS/EOS are added when ADD_SPECIAL is 1, and special
 * tokens written in the text are parsed as Hugging Face's tokenizers do.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

/* Model at path on the CPU and a context for windows of ctx tokens: F32 KV
 * cache, flash attention off; NULL (after a message) on failure. */
static struct llama_context *open_model(const char *path, int ctx, struct llama_model **model)
{
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    if (!(*model = llama_model_load_from_file(path, mp))) {
        fprintf(stderr, "llama_ppl: llama.cpp could not load %s\n", path);
        return NULL;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)ctx;
    cp.n_batch = (uint32_t)ctx;
    cp.n_ubatch = (uint32_t)ctx;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.n_threads = cp.n_threads_batch = 2;
    struct llama_context *lc = llama_init_from_model(*model, cp);
    if (!lc)
        fprintf(stderr, "llama_ppl: no context for %s\n", path);
    return lc;
}

/* out[v] = log softmax(l)[v], in double. */
static void log_softmax(const float *l, int V, double *out)
{
    double mx = l[0], z = 0;
    for (int v = 1; v < V; v++)
        mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < V; v++)
        z += exp((double)l[v] - mx);
    for (int v = 0; v < V; v++)
        out[v] = (double)l[v] - mx - log(z);
}

static int quantize(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --quantize IN.gguf OUT.gguf FTYPE [KEEP_TYPE]\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = 2;
    qp.ftype = (enum llama_ftype)atoi(argv[5]);
    qp.allow_requantize = 1;
    if (argc == 7) {
        qp.pure = 1;
        qp.output_tensor_type = qp.token_embedding_type = (enum ggml_type)atoi(argv[6]);
    }
    if (llama_model_quantize(argv[3], argv[4], &qp) != 0) {
        fprintf(stderr, "llama_ppl: llama_model_quantize failed\n");
        return 1;
    }
    return 0;
}

static int tokenize(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --tokenize MODEL.gguf TEXT [ADD_SPECIAL]\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = 1;
    struct llama_model *model = llama_model_load_from_file(argv[3], mp);
    FILE *f = fopen(argv[4], "rb");
    if (!model || !f) {
        fprintf(stderr, "llama_ppl: cannot load %s or read %s\n", argv[3], argv[4]);
        return 1;
    }
    char *text = NULL;
    size_t n = 0, cap = 0, k;
    char buf[1 << 16];
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (n + k + 1 > cap && !(text = realloc(text, cap = 2 * (n + k + 1))))
            return 1;
        memcpy(text + n, buf, k);
        n += k;
    }
    fclose(f);
    int add = argc > 5 && atoi(argv[5]) == 1, want = (int)n + 16;
    llama_token *tok = malloc((size_t)want * sizeof *tok);
    int got = tok ? llama_tokenize(llama_model_get_vocab(model), text ? text : "", (int32_t)n, tok, want, add, 1) : -1;
    if (got < 0) {
        fprintf(stderr, "llama_ppl: llama_tokenize failed (%d)\n", got);
        return 1;
    }
    for (int i = 0; i < got; i++)
        printf(i ? " %d" : "%d", tok[i]);
    putchar('\n');
    free(tok);
    free(text);
    llama_model_free(model);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--quantize") == 0)
        return quantize(argc, argv);
    if (argc > 2 && strcmp(argv[2], "--tokenize") == 0)
        return tokenize(argc, argv);
    if (argc < 6) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT]\n");
        return 2;
    }
    long want = atol(argv[4]);
    int ctx = atoi(argv[5]);
    FILE *tf = fopen(argv[3], "rb");
    if (!tf || want < 2 || ctx < 1) {
        fprintf(stderr, "llama_ppl: cannot read %s or bad sizes\n", argv[3]);
        return 1;
    }
    llama_token *tok = malloc((size_t)want * sizeof *tok);
    long n = 0;
    for (int c; n < want && (c = fgetc(tf)) != EOF;)
        tok[n++] = c;
    fclose(tf);
    FILE *lp = argc > 6 && strcmp(argv[6], "-") != 0 ? fopen(argv[6], "w") : NULL;

    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    struct llama_model *model, *bmodel = NULL;
    struct llama_context *lc = open_model(argv[2], ctx, &model), *bc = NULL;
    if (!lc || (argc > 7 && !(bc = open_model(argv[7], ctx, &bmodel))))
        return 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    struct llama_batch b = llama_batch_init(ctx, 0, 1);
    double nll = 0, kld = 0;
    long scored = 0;
    double *base = bc ? malloc((size_t)ctx * V * sizeof *base) : NULL;
    for (long start = 0, w = 0; start + 1 < n; start += ctx, w++) {
        int S = n - 1 - start < ctx ? (int)(n - 1 - start) : ctx;
        llama_memory_clear(llama_get_memory(lc), 1);
        b.n_tokens = S;
        for (int i = 0; i < S; i++) {
            b.token[i] = tok[start + i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = 1;
        }
        if (bc) {
            llama_memory_clear(llama_get_memory(bc), 1);
            if (llama_decode(bc, b) != 0) {
                fprintf(stderr, "llama_ppl: decode of the base failed at window %ld\n", w);
                return 1;
            }
            for (int i = 0; i < S; i++)
                log_softmax(llama_get_logits_ith(bc, i), V, base + (size_t)i * V);
        }
        if (llama_decode(lc, b) != 0) {
            fprintf(stderr, "llama_ppl: decode failed at window %ld\n", w);
            return 1;
        }
        double wsum = 0;
        for (int i = 0; i < S; i++) {
            const float *l = llama_get_logits_ith(lc, i);
            double mx = l[0], z = 0;
            for (int v = 1; v < V; v++)
                mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++)
                z += exp((double)l[v] - mx);
            double lpv = (double)l[tok[start + i + 1]] - mx - log(z);
            if (!isfinite(lpv)) {
                fprintf(stderr, "llama_ppl: non-finite log-probability at window %ld position %d\n", w, i);
                return 1;
            }
            wsum += lpv;
            for (int v = 0; bc && v < V; v++) {
                const double pb = base[(size_t)i * V + v];
                kld += exp(pb) * (pb - ((double)l[v] - mx - log(z)));
            }
        }
        nll -= wsum;
        scored += S;
        if (lp)
            fprintf(lp, "%ld %.9g\n", w, wsum);
    }
    printf("tokens %ld\nnll %.9g\nppl %.9g\n", scored, nll / scored, exp(nll / scored));
    if (bc)
        printf("kld %.9g\n", kld / scored);
    if (lp)
        fclose(lp);
    llama_batch_free(b);
    llama_free(lc);
    llama_model_free(model);
    if (bc) {
        llama_free(bc);
        llama_model_free(bmodel);
    }
    free(base);
    free(tok);
    return 0;
}
