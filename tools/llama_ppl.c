/* llama_ppl.c: the test harness around the real llama.cpp (built by
 * tools/llama-engine.sh against the headers of the release the prebuilt
 * libraries were built from; not part of qmoe).
 *
 *   llama_ppl BACKEND_DIR MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT] [BASE.gguf [BASE_CACHE]]
 *   llama_ppl BACKEND_DIR --quantize IN.gguf OUT.gguf FTYPE [KEEP_TYPE [IMATRIX.gguf|- [preset]]]
 *   llama_ppl BACKEND_DIR --tokenize MODEL.gguf TEXT [ADD_SPECIAL [PARSE_SPECIAL]]
 *   llama_ppl BACKEND_DIR --imatrix MODEL.gguf TEXT BYTES CTX OUT.gguf
 *   llama_ppl BACKEND_DIR --imatrix-diff A.gguf B.gguf
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
 * With BASE_CACHE, the base's log-probabilities (doubles, every scored
 * position's V values in order) are read from that file when it holds
 * exactly them, else computed and written there (temporary file renamed):
 * a bench comparing many files with one base decodes the base once.
 *
 * --quantize runs llama.cpp's own quantizer (llama_model_quantize) to the
 * llama_ftype number FTYPE, requantizing when IN is already quantized:
 * FTYPE 0 (all F32) turns blocks into floats with ggml's own dequantization.
 * With KEEP_TYPE (a ggml type id) the quantization is "pure" (every weight
 * matrix at FTYPE's type) but for token_embd and output, which get
 * KEEP_TYPE: the layout of a qmoe file that keeps embeddings and head.
 * With "preset" the other weights take the types llama.cpp's preset FTYPE
 * chooses for each (Q4_K_M: some Q6_K, Q3_K_M: some Q4_K/Q5_K, ...), not
 * all FTYPE's.  With IMATRIX.gguf (llama.cpp's GGUF imatrix format, e.g.
 * from --imatrix) the quantizer gets each matrix's importance as
 * llama.cpp's quantize tool hands it over (sums over counts).
 *
 * --tokenize prints the ids llama.cpp's tokenizer (MODEL's vocabulary
 * alone) gives the whole of TEXT, as `qmoe tokenize` prints them (one line,
 * space-separated); BOS/EOS are added when ADD_SPECIAL is 1, and special
 * tokens written in the text are parsed as Hugging Face's tokenizers do
 * unless PARSE_SPECIAL is 0 (as SentencePiece itself reads "<unk>": text).
 *
 * --imatrix and --imatrix-diff: tools/llama_imatrix.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_harness.h"

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level >= GGML_LOG_LEVEL_WARN)
        fputs(text, stderr);
}

struct llama_context *qm_harness_open(const char *path, int ctx, ggml_backend_sched_eval_callback cb, void *user,
                                      struct llama_model **model)
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
    /* LLAMA_THREADS (default 2): on a machine shared with other jobs one
     * thread wastes less time in ggml's spinning barriers */
    const char *th = getenv("LLAMA_THREADS");
    cp.n_threads = cp.n_threads_batch = th && atoi(th) > 0 ? atoi(th) : 2;
    cp.cb_eval = cb;
    cp.cb_eval_user_data = user;
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

long qm_harness_bytes(const char *path, long want, llama_token **tok)
{
    FILE *f = fopen(path, "rb");
    *tok = want > 0 ? malloc((size_t)want * sizeof **tok) : NULL;
    if (!f || !*tok) {
        fprintf(stderr, "llama_ppl: cannot read %s or bad sizes\n", path);
        if (f)
            fclose(f);
        free(*tok);
        *tok = NULL;
        return -1;
    }
    long n = 0;
    for (int c; n < want && (c = fgetc(f)) != EOF;)
        (*tok)[n++] = c;
    fclose(f);
    return n;
}

static int quantize(int argc, char **argv)
{
    if (argc < 6 || argc > 9 || (argc == 9 && strcmp(argv[8], "preset") != 0)) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --quantize IN.gguf OUT.gguf FTYPE [KEEP_TYPE [IMATRIX.gguf|- "
                        "[preset]]]\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.nthread = 2;
    qp.ftype = (enum llama_ftype)atoi(argv[5]);
    qp.allow_requantize = 1;
    if (argc >= 7) {
        qp.pure = argc < 9;
        qp.output_tensor_type = qp.token_embedding_type = (enum ggml_type)atoi(argv[6]);
    }
    struct llama_model_imatrix_data *im = NULL;
    if (argc >= 8 && strcmp(argv[7], "-") != 0 && !(im = qm_imatrix_load(argv[7])))
        return 1;
    qp.imatrix = im;
    int rc = llama_model_quantize(argv[3], argv[4], &qp);
    qm_imatrix_free(im);
    if (rc != 0) {
        fprintf(stderr, "llama_ppl: llama_model_quantize failed\n");
        return 1;
    }
    return 0;
}

static int tokenize(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR --tokenize MODEL.gguf TEXT [ADD_SPECIAL [PARSE_SPECIAL]]\n");
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
    int add = argc > 5 && atoi(argv[5]) == 1, parse = argc <= 6 || atoi(argv[6]) != 0, want = (int)n + 16;
    llama_token *tok = malloc((size_t)want * sizeof *tok);
    int got = tok ? llama_tokenize(llama_model_get_vocab(model), text ? text : "", (int32_t)n, tok, want, add, parse) : -1;
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
    if (argc > 2 && strcmp(argv[2], "--imatrix") == 0) {
        llama_log_set(quiet, NULL);
        ggml_backend_load_all_from_path(argv[1]);
        llama_backend_init();
        return qm_imatrix_collect(argc, argv);
    }
    if (argc > 2 && strcmp(argv[2], "--imatrix-diff") == 0)
        return qm_imatrix_diff(argc, argv);
    if (argc < 6) {
        fprintf(stderr, "usage: llama_ppl BACKEND_DIR MODEL.gguf TEXT BYTES CTX [LOGPROBS_OUT]\n");
        return 2;
    }
    int ctx = atoi(argv[5]);
    llama_token *tok;
    long n = ctx >= 1 ? qm_harness_bytes(argv[3], atol(argv[4]), &tok) : -1;
    if (n < 2) {
        fprintf(stderr, "llama_ppl: %s: fewer than 2 tokens or bad sizes\n", argv[3]);
        return 1;
    }
    FILE *lp = argc > 6 && strcmp(argv[6], "-") != 0 ? fopen(argv[6], "w") : NULL;

    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    struct llama_model *model, *bmodel = NULL;
    struct llama_context *lc = qm_harness_open(argv[2], ctx, NULL, NULL, &model), *bc = NULL;
    if (!lc)
        return 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    /* the base's log-probabilities from BASE_CACHE (rc) or into it (wc) */
    FILE *rc = NULL, *wc = NULL;
    char *wtmp = NULL;
    if (argc > 8) {
        long long need = (long long)(n - 1) * V * (long long)sizeof(double);
        if ((rc = fopen(argv[8], "rb")) && (fseek(rc, 0, SEEK_END) != 0 || ftell(rc) != need)) {
            fclose(rc);
            rc = NULL;
        }
        if (rc)
            rewind(rc);
        else if (!(wtmp = malloc(strlen(argv[8]) + 5)) ||
                 (snprintf(wtmp, strlen(argv[8]) + 5, "%s.tmp", argv[8]), !(wc = fopen(wtmp, "wb")))) {
            fprintf(stderr, "llama_ppl: cannot write %s\n", argv[8]);
            return 1;
        }
    }
    if (argc > 7 && !rc && !(bc = qm_harness_open(argv[7], ctx, NULL, NULL, &bmodel)))
        return 1;
    const int have_base = bc || rc;
    struct llama_batch b = llama_batch_init(ctx, 0, 1);
    double nll = 0, kld = 0;
    long scored = 0;
    double *base = have_base ? malloc((size_t)ctx * V * sizeof *base) : NULL;
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
            if (wc && fwrite(base, sizeof *base * (size_t)V, (size_t)S, wc) != (size_t)S) {
                fprintf(stderr, "llama_ppl: cannot write %s\n", wtmp);
                return 1;
            }
        } else if (rc && fread(base, sizeof *base * (size_t)V, (size_t)S, rc) != (size_t)S) {
            fprintf(stderr, "llama_ppl: cannot read %s\n", argv[8]);
            return 1;
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
            for (int v = 0; have_base && v < V; v++) {
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
    if (have_base)
        printf("kld %.9g\n", kld / scored);
    if (rc)
        fclose(rc);
    if (wc && (fclose(wc) != 0 || rename(wtmp, argv[8]) != 0)) {
        fprintf(stderr, "llama_ppl: cannot write %s\n", argv[8]);
        return 1;
    }
    free(wtmp);
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
