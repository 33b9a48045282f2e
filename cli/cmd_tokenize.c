/* cmd_tokenize.c: `qmoe tokenize TOKENIZER --text FILE`: a text's ids as the
 * model's own tokenizer gives them (issue #14). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "model/tokenizer.h"

static double now(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static qm_status put_u32(const void *ctx, FILE *f, qm_diag *d)
{
    const qm_tokens *t = ctx;
    unsigned char buf[4096];
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t v = (uint32_t)t->ids[i];
        buf[k++] = (unsigned char)v, buf[k++] = (unsigned char)(v >> 8);
        buf[k++] = (unsigned char)(v >> 16), buf[k++] = (unsigned char)(v >> 24);
        if (k == sizeof buf || i + 1 == t->n) {
            fwrite(buf, 1, k, f); /* a failed write shows in the commit */
            k = 0;
        }
    }
    return QM_OK;
}

/* What --format yaml (or json, the same keys) prints (qmoe(1) lists the keys). */
typedef struct summary {
    const char *tokenizer, *text;
    size_t bytes, tokens;
    double load_seconds, seconds, cpu_seconds;
} summary;

static qm_status print_yaml(const summary *s, int json, qm_diag *d)
{
    qm_yaml *y = json ? qm_json_begin(stdout) : qm_yaml_begin(stdout);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "tokenizer", s->tokenizer);
    qm_yaml_kstr(y, "text", s->text);
    qm_yaml_kuint(y, "bytes", s->bytes);
    qm_yaml_kuint(y, "tokens", s->tokens);
    qm_yaml_str(y, "load_seconds");
    qm_yaml_real(y, s->load_seconds, 4);
    qm_yaml_str(y, "seconds");
    qm_yaml_real(y, s->seconds, 4);
    qm_yaml_str(y, "cpu_seconds");
    qm_yaml_real(y, s->cpu_seconds, 4);
    qm_yaml_str(y, "mb_per_s");
    qm_yaml_real(y, s->seconds > 0 ? (double)s->bytes / 1e6 / s->seconds : 0, 2);
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

static qm_status print_ids(const qm_tokens *t, qm_diag *d)
{
    for (size_t i = 0; i < t->n; i++)
        printf(i ? " %d" : "%d", t->ids[i]);
    putchar('\n');
    return QM_OK;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"text", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"add-special", no_argument, NULL, 's'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *text = NULL, *output = NULL;
    int add_special = 0, yaml = 0, json = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (o) {
        case 't': text = optarg; break;
        case 'o': output = optarg; break;
        case 's': add_special = 1; break;
        case 'f':
            yaml = strcmp(optarg, "yaml") == 0;
            json = strcmp(optarg, "json") == 0;
            if (!yaml && !json && strcmp(optarg, "text") != 0)
                return qm_cli_usage(&qm_cmd_tokenize, "--format must be 'text', 'yaml' or 'json', not '%s'", optarg);
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_tokenize.synopsis, qm_cmd_tokenize.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_tokenize, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_tokenize, "expected one TOKENIZER");
    if (!text)
        return qm_cli_usage(&qm_cmd_tokenize, "--text FILE is required");
    summary s = {.tokenizer = argv[optind], .text = text};
    qm_diag *d = qm_diag_new();
    if (!d) {
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_tokenizer *tk = NULL;
    qm_tokens ids = {0};
    char *data = NULL;
    qm_status st = QM_OK;
    if (output) {
        const qm_path_input in[] = {{s.tokenizer, "the tokenizer"}, {text, "the text"}};
        st = qm_path_check_output("-o", output, 0, in, 2, d);
    }
    double t0 = now(CLOCK_MONOTONIC);
    if (st == QM_OK)
        st = qm_tokenizer_open(s.tokenizer, &tk, d);
    if (st == QM_OK)
        st = qm_read_file(text, &data, &s.bytes, d);
    if (st == QM_OK) {
        double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
        s.load_seconds = t1 - t0;
        st = qm_tokenizer_encode(tk, data, s.bytes, add_special, &ids, d);
        s.seconds = now(CLOCK_MONOTONIC) - t1;
        s.cpu_seconds = now(CLOCK_PROCESS_CPUTIME_ID) - c1;
        s.tokens = ids.n;
    }
    if (st == QM_OK && output)
        st = qm_afile_write(output, put_u32, &ids, 0, d);
    if (st == QM_OK && (yaml || json))
        st = print_yaml(&s, json, d);
    else if (st == QM_OK && !output)
        st = print_ids(&ids, d);
    if (st == QM_OK && (fflush(stdout) != 0 || ferror(stdout)))
        st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
    free(data);
    qm_tokens_free(&ids);
    qm_tokenizer_free(tk);
    int rc = qm_cli_report(d);
    qm_diag_free(d);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_tokenize = {
    .name = "tokenize",
    .run = run,
    .synopsis = "tokenize TOKENIZER --text FILE [-o OUT.u32] [--add-special] [--format text|yaml|json]",
    .summary = "a text's token ids from a model's own tokenizer (tokenizer.json, tokenizer.model)",
    .help = "TOKENIZER is a model directory (its tokenizer.json, else tokenizer.model, else\n"
            "encoder.json + vocab.bpe) or one of those files.  FILE is read as UTF-8 (each\n"
            "invalid sequence becomes U+FFFD).\n\n"
            "  --text FILE        the text to tokenize\n"
            "  -o, --output OUT   write the ids as little-endian uint32 (atomically) instead\n"
            "                     of printing them\n"
            "  --add-special      put BOS/EOS around the ids as the tokenizer's configuration\n"
            "                     says (none by default)\n"
            "  --format FORMAT    text (default: the ids on one line, separated by spaces) or\n"
            "                     yaml (tokenizer, text, bytes, tokens, load_seconds, seconds,\n"
            "                     cpu_seconds, mb_per_s; the ids only to -o), or json (the\n"
            "                     same keys)\n",
};
