/* cmd_inspect.c: `qmoe inspect MODEL_DIR`: what a model is, from its headers
 * alone, and with --check whether every stored value is finite. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/gguf.h"
#include "model/model.h"

static const char *const group_keys[QM_GROUP_COUNT] = {
    [QM_GROUP_ATTENTION] = "attention",   [QM_GROUP_ROUTED] = "routed_experts",
    [QM_GROUP_SHARED] = "shared_experts", [QM_GROUP_DENSE_MLP] = "dense_mlp",
    [QM_GROUP_ROUTER] = "router",         [QM_GROUP_EMBEDDINGS] = "embeddings",
    [QM_GROUP_NORMS] = "norms",
};

static const char *const group_labels[QM_GROUP_COUNT] = {
    [QM_GROUP_ATTENTION] = "attention",        [QM_GROUP_ROUTED] = "routed experts",
    [QM_GROUP_SHARED] = "shared experts",      [QM_GROUP_DENSE_MLP] = "dense MLP",
    [QM_GROUP_ROUTER] = "router",              [QM_GROUP_EMBEDDINGS] = "embeddings and head",
    [QM_GROUP_NORMS] = "norms",
};

/* The dtypes the weights are stored in, e.g. "BF16" or "BF16, F32". */
static void dtypes_str(const qm_model *m, char *buf, size_t cap)
{
    int seen[QM_DT_COUNT] = {0};
    for (size_t i = 0; i < m->n; i++)
        if (!m->t[i].bits)
            seen[m->t[i].st->dtype] = 1;
    size_t o = 0;
    buf[0] = '\0';
    for (int t = 0; t < QM_DT_COUNT && o < cap; t++)
        if (seen[t])
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? ", " : "", qm_dtype_name((qm_dtype)t));
    if (m->n_packed && o < cap)
        snprintf(buf + o, cap - o, "%s%zu linears GPTQ-packed", o ? "; " : "", m->n_packed);
}

/* "BF16", or "GPTQ-4" for a packed linear (whose name is its qweight's). */
static void dtype_of(const qm_tensor *t, char *buf, size_t cap)
{
    if (t->bits)
        snprintf(buf, cap, "GPTQ-%d", t->bits);
    else
        snprintf(buf, cap, "%s", qm_dtype_name(t->st->dtype));
}

/* "0-3, 5, 7-9" for the layers where is_moe == want. */
static void ranges_str(const qm_model *m, int want, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (long long l = 0; l < m->cfg.layers && o < cap; l++) {
        if (m->is_moe[l] != want)
            continue;
        long long e = l;
        while (e + 1 < m->cfg.layers && m->is_moe[e + 1] == want)
            e++;
        o += (size_t)(e > l ? snprintf(buf + o, cap - o, "%s%lld-%lld", o ? ", " : "", l, e)
                            : snprintf(buf + o, cap - o, "%s%lld", o ? ", " : "", l));
        l = e;
    }
    if (!o)
        snprintf(buf, cap, "none");
}

/* 1234567 -> "1,234,567" */
static const char *thousands(uint64_t v, char buf[32])
{
    char t[32];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = t[i];
    }
    buf[o] = '\0';
    return buf;
}

static void print_text(const qm_model *m, int tensors)
{
    const qm_config *c = &m->cfg;
    uint64_t params[QM_GROUP_COUNT], bytes, total = 0;
    char b1[32], b2[4096], dt[128];
    qm_model_count(m, params, &bytes);
    dtypes_str(m, dt, sizeof dt);
    printf("model         %s\n", m->dir);
    printf("architecture  %s\n", m->arch->name);
    ranges_str(m, 1, b2, sizeof b2);
    printf("layers        %lld (MoE: %s; ", c->layers, b2);
    ranges_str(m, 0, b2, sizeof b2);
    printf("dense: %s)\n", b2);
    printf("experts       %lld routed per MoE layer, %lld per token%s, %lld shared\n", c->experts,
           c->top_k, c->norm_topk ? " (renormalised)" : "", c->shared);
    printf("hidden        %lld, vocab %lld, heads %lld (kv %lld, head_dim %lld)\n", c->hidden,
           c->vocab, c->heads, c->kv_heads, c->head_dim);
    printf("parameters\n");
    for (int g = 0; g < QM_GROUP_COUNT; g++) {
        printf("  %-20s %16s\n", group_labels[g], thousands(params[g], b1));
        total += params[g];
    }
    printf("  %-20s %16s\n", "total", thousands(total, b1));
    printf("size          %s bytes (%.1f MiB, %s)\n", thousands(bytes, b1), bytes / 1048576.0, dt);
    printf("tensors       %zu in %zu file%s\n", m->n, m->ckpt->n_files, m->ckpt->n_files == 1 ? "" : "s");
    if (!tensors)
        return;
    printf("\n%-32s %-56s %-16s %s\n", "canonical", "checkpoint", "shape", "dtype");
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        char shape[64], tdt[32];
        if (t->ndim == 2)
            snprintf(shape, sizeof shape, "%llu x %llu", (unsigned long long)t->shape[0],
                     (unsigned long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%llu", (unsigned long long)t->shape[0]);
        dtype_of(t, tdt, sizeof tdt);
        printf("%-32s %-56s %-16s %s\n", t->canon, t->st->name, shape, tdt);
    }
}

/* --check: every float value of every tensor (of a packed linear, its
 * scales) is finite; one error per tensor that is not.  Reads all the data. */
static qm_status check_data(const qm_model *m, qm_diag *d)
{
    qm_status st = QM_OK;
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        qm_status s = qm_st_check_finite(m->ckpt->files[t->file]->path, t->bits ? t->scales : t->st, d);
        if (st == QM_OK)
            st = s;
    }
    return st;
}

/* The report as YAML, or with json as JSON with the same keys. */
static qm_status print_yaml(const qm_model *m, int tensors, int json, qm_diag *d)
{
    const qm_config *c = &m->cfg;
    uint64_t params[QM_GROUP_COUNT], bytes, total = 0;
    qm_model_count(m, params, &bytes);
    qm_yaml *y = json ? qm_json_begin(stdout) : qm_yaml_begin(stdout);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "model", m->dir);
    qm_yaml_kstr(y, "architecture", m->arch->name);
    qm_yaml_kint(y, "layers", c->layers);
    qm_yaml_str(y, "moe_layers");
    qm_yaml_flow_seq(y);
    for (long long l = 0; l < c->layers; l++)
        if (m->is_moe[l])
            qm_yaml_int(y, l);
    qm_yaml_close(y);
    qm_yaml_kint(y, "experts", c->experts);
    qm_yaml_kint(y, "experts_per_token", c->top_k);
    qm_yaml_kint(y, "shared_experts", c->shared);
    qm_yaml_str(y, "norm_topk_prob");
    qm_yaml_bool(y, c->norm_topk);
    qm_yaml_kint(y, "hidden_size", c->hidden);
    qm_yaml_kint(y, "vocab_size", c->vocab);
    qm_yaml_str(y, "params");
    qm_yaml_map(y);
    for (int g = 0; g < QM_GROUP_COUNT; g++) {
        qm_yaml_kuint(y, group_keys[g], params[g]);
        total += params[g];
    }
    qm_yaml_close(y);
    qm_yaml_kuint(y, "total_params", total);
    qm_yaml_kuint(y, "bytes", bytes);
    qm_yaml_kuint(y, "files", m->ckpt->n_files);
    qm_yaml_str(y, "tensors");
    if (!tensors) {
        qm_yaml_uint(y, m->n);
    } else {
        qm_yaml_seq(y);
        for (size_t i = 0; i < m->n; i++) {
            const qm_tensor *t = &m->t[i];
            char dt[32];
            dtype_of(t, dt, sizeof dt);
            qm_yaml_map(y);
            qm_yaml_kstr(y, "module", t->canon);
            qm_yaml_kstr(y, "name", t->st->name);
            qm_yaml_str(y, "shape");
            qm_yaml_flow_seq(y);
            for (int k = 0; k < t->ndim; k++)
                qm_yaml_uint(y, t->shape[k]);
            qm_yaml_close(y);
            qm_yaml_kstr(y, "dtype", dt);
            qm_yaml_close(y);
        }
        qm_yaml_close(y);
    }
    return qm_yaml_end(y, d);
}

/* `qmoe inspect X.gguf`: the header of a GGUF file, each tensor's ggml
 * type, dims (innermost first, as GGUF stores them) and bytes with
 * --tensors; YAML keys as for models where they mean the same. */
static int inspect_gguf(const char *path, int tensors, int yaml)
{
    qm_diag *d = qm_diag_new();
    qm_gguf_file *f = NULL;
    qm_status st = d ? qm_gguf_open(path, &f, d) : QM_ENOMEM;
    if (st == QM_OK) {
        uint64_t bytes[QM_GGML_TYPE_COUNT] = {0}, total = 0;
        size_t count[QM_GGML_TYPE_COUNT] = {0};
        for (size_t i = 0; i < f->n; i++) {
            bytes[f->t[i].type] += f->t[i].nbytes;
            count[f->t[i].type]++;
            total += f->t[i].nbytes;
        }
        printf(yaml ? "path: %s\nformat: gguf\nversion: %u\narchitecture: %s\nmetadata_keys: %llu\nalignment: %u\n"
                      "tensors: %zu\nbytes: %llu\ntypes:\n"
                    : "%s: GGUF v%u, architecture %s, %llu metadata keys, alignment %u\n%zu tensors, %llu bytes of "
                      "tensor data:\n",
               path, f->version, f->arch ? f->arch : "(none)", (unsigned long long)f->n_kv, f->alignment, f->n,
               (unsigned long long)total);
        for (int t = 0; t < QM_GGML_TYPE_COUNT; t++)
            if (count[t])
                printf(yaml ? "  %s: {tensors: %zu, bytes: %llu}\n" : "  %-5s %5zu tensors %12llu bytes\n",
                       qm_ggml_types[t].name, count[t], (unsigned long long)bytes[t]);
        if (tensors && yaml)
            printf("tensor_list:\n");
        for (size_t i = 0; tensors && i < f->n; i++) {
            const qm_gguf_tensor *t = &f->t[i];
            printf(yaml ? "  - {name: %s, type: %s, dims: [" : "%-40s %-5s [", t->name, qm_ggml_types[t->type].name);
            for (int k = 0; k < t->ndim; k++)
                printf("%s%llu", k ? ", " : "", (unsigned long long)t->ne[k]);
            printf(yaml ? "], bytes: %llu}\n" : "] %llu bytes\n", (unsigned long long)t->nbytes);
        }
        if (fflush(stdout) != 0 || ferror(stdout))
            st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
        qm_gguf_close(f);
    }
    int rc = d ? qm_cli_report(d) : QM_EXIT_FAIL;
    qm_diag_free(d);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tensors", no_argument, NULL, 't'},
        {"check", no_argument, NULL, 'c'},
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int tensors = 0, yaml = 0, json = 0, check = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "hf:", opts, NULL)) != -1) {
        switch (o) {
        case 't': tensors = 1; break;
        case 'c': check = 1; break;
        case 'f':
            yaml = strcmp(optarg, "yaml") == 0;
            json = strcmp(optarg, "json") == 0;
            if (!yaml && !json && strcmp(optarg, "text") != 0)
                return qm_cli_usage(&qm_cmd_inspect, "--format must be 'text', 'yaml' or 'json', not '%s'", optarg);
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_inspect.synopsis, qm_cmd_inspect.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_inspect, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_inspect, "expected one MODEL_DIR");
    if (qm_cli_is_gguf(argv[optind])) {
        if (check)
            return qm_cli_usage(&qm_cmd_inspect, "--check reads model directories only");
        return inspect_gguf(argv[optind], tensors, yaml);
    }
    qm_diag *d = qm_diag_new();
    if (!d) {
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_model *m;
    qm_status st = qm_model_open(argv[optind], &m, d);
    if (st == QM_OK && check && (st = check_data(m, d)) != QM_OK)
        qm_model_close(m);
    if (st == QM_OK) {
        qm_cli_report(d); /* warnings first, then the report */
        if (yaml || json)
            st = print_yaml(m, tensors, json, d);
        else
            print_text(m, tensors);
        if (fflush(stdout) != 0 || ferror(stdout))
            st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
        qm_model_close(m);
    }
    int rc = qm_cli_report(d);
    qm_diag_free(d);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_inspect = {
    .name = "inspect",
    .run = run,
    .synopsis = "inspect [--tensors] [--check] [--format text|yaml|json] MODEL_DIR|FILE.gguf",
    .summary = "describe a model: architecture, MoE layout, parameter counts, size",
    .help = "Reads config.json and the safetensors headers of MODEL_DIR (one file or shards with\n"
            "model.safetensors.index.json); never reads weight data unless asked to check it.\n"
            "A FILE.gguf (llama.cpp's format): its header checked, types, sizes and tensors.\n\n"
            "  --tensors        list every tensor: canonical name, checkpoint name, shape, dtype\n"
            "  --check          also read every tensor's data: an error for each that holds an\n"
            "                   infinite or NaN value (first index), exit status 1\n"
            "  --format FORMAT  text (default), yaml or json (the same keys)\n",
};
