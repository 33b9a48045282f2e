/* check_outputs.c: every file qmoe writes, read back by standard parsers
 * and held to its documented keys and types (issue #22).
 *
 *   check_outputs KIND FILE [KIND FILE]...   check each; exit 1 if any fails
 *   check_outputs --get KIND FILE PATH       print the values at PATH, one a line
 *   check_outputs --same KIND YAML JSON      both pass KIND's schema and hold the
 *                                            same values (--format yaml vs json)
 *   check_outputs                            self-test on built-in samples
 *
 * YAML goes through libyaml's own parser (yaml_parser_load), never qmoe's
 * reader; CSV through the RFC 4180 reader below; JSON and safetensors
 * headers through jansson, duplicates refused.  Each file becomes a jansson
 * value (a plain YAML scalar typed as YAML 1.1 and 1.2 parsers both read
 * it; one they read differently is an error), then is walked against its
 * kind's schema: lines "PATH TYPE[|TYPE]" with PATH a dotted key path,
 * "[]" for every item of a sequence, "*" for every other key of a mapping,
 * a leading '?' for an optional key.  Every key met must be in the schema,
 * every required one present, named keys in schema order.  A TYPE "@kind"
 * checks the node against another kind's schema.  man qmoe(1) documents
 * the same keys; tests/outputs/check-outputs.sh runs this on the files the
 * end-to-end tests make.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- schemas ----------------------------------------------------------------------- */

#define EVAL_FIGURES "ppl num", "?base_ppl num", "?ppl_ratio num", "?kld_mean num", "?kld_se num", \
                     "?kld_median num", "?kld_p99 num", "?top1_agree num"

static const char *const plan[] = {
    "qmoe_plan int", "policy map", "policy.path str", "policy.sha256 str",
    "?policy.imports seq", "policy.imports[] map", "policy.imports[].name str", "policy.imports[].sha256 str",
    "?policy.engines seq", "policy.engines[] str", "model map",
    "model.architecture str", "model.config_sha256 str", "scores map|null", "scores.path str",
    "scores.sha256 str", "summary map", "summary.average_bits num", "summary.effective_bits num",
    "?summary.budget_target_bits num", "?summary.budget_achieved_bits num", "?summary.predicted_error num", "summary.quantized_params int",
    "summary.kept_params int", "summary.tensors_by_bits map", "summary.tensors_by_bits.* int",
    "summary.bytes_before int", "summary.bytes_after int", "tensors seq", "tensors[] map",
    "tensors[].name str", "tensors[].module str", "tensors[].shape seq", "tensors[].shape[] int",
    "tensors[].dtype str", "tensors[].bits int|str", "tensors[].group_size int", "tensors[].sym bool",
    "tensors[].act_order bool", "tensors[].rule str", NULL};

static const char *const scores[] = {
    "qmoe_scores int", "model map", "model.architecture str", "model.layers int", "model.experts int",
    "model.config_sha256 str", "model.tensors_sha256 str",
    "calibration map", "calibration.file str", "calibration.tokens int", "calibration.ctx int",
    "frequency map", "frequency.* seq", "frequency.*[] num", "importance map", "importance.* map",
    "importance.*.ffn num", "importance.*.residual num", "outlier map", "outlier.* num", NULL};

static const char *const measure[] = {
    "qmoe_measure int", "model map", "model.architecture str", "model.layers int", "model.experts int",
    "model.config_sha256 str", "model.tensors_sha256 str",
    "calibration map", "calibration.file str", "calibration.tokens int", "calibration.ctx int",
    "settings map", "settings.units str", "settings.widths seq", "settings.widths[] int", "settings.group int|str",
    "settings.sym bool", "settings.act_order bool", "settings.damp num", "settings.min_expert_tokens int",
    "?settings.target str",
    "units map", "units.* map", "units.*.params int", "units.*.error seq", "units.*.error[] num", NULL};

static const char *const quant_log[] = {
    "tensors seq", "tensors[] map", "tensors[].name str", "tensors[].module str", "tensors[].bits int",
    "tensors[].tokens int", "tensors[].fallback str", "tensors[].relative_error num|null",
    "tensors[].damp num", "tensors[].seconds num", NULL};

static const char *const bench_run[] = {
    "qmoe_bench_run int", "policy str", "path str", "key str", "size_bytes int", "tokens int",
    "average_bits num", "effective_bits num", EVAL_FIGURES, "quantize_seconds num", "eval_seconds num",
    "tasks map", "tasks.* map", "tasks.*.acc num", "tasks.*.acc_se num", "tasks.*.acc_norm num",
    "tasks.*.acc_norm_se num", "tasks.*.n int", NULL};

static const char *const bench_results[] = {
    "qmoe_bench int", "model map", "model.path str", "model.architecture str", "model.config_sha256 str",
    "settings map", "settings.calib str", "settings.calib_sha256 str", "settings.eval str",
    "settings.eval_sha256 str", "settings.tasks str|null", "settings.ctx int", "settings.samples int",
    "settings.eval_tokens int", "settings.damp num", "base map", "base.ppl num", "base.size_bytes int",
    "base.tasks map", "base.tasks.* map", "base.tasks.*.acc num", "base.tasks.*.acc_norm num",
    "base.tasks.*.n int", "results seq", "results[] map", "results[].policy str", "results[].path str",
    "results[].average_bits num", "results[].effective_bits num", "results[].ppl num",
    "results[].ppl_ratio num", "results[].kld_mean num", "results[].kld_se num", "results[].kld_median num",
    "results[].kld_p99 num", "results[].top1_agree num", "results[].size_bytes int", "results[].tokens int",
    "?results[].tasks map", "results[].tasks.* map", "results[].tasks.*.acc num",
    "results[].tasks.*.acc_norm num", "results[].tasks.*.n int", "results[].quantize_seconds num",
    "results[].pareto bool", NULL};

/* results.csv's rows; its header is checked on its own (csv_head below) */
static const char *const results_csv[] = {
    "[] map", "[].policy str", "[].average_bits num", "[].effective_bits num", "[].size_bytes int",
    "[].ppl num", "[].ppl_ratio num", "[].kld_mean num", "[].kld_se num", "[].kld_median num",
    "[].kld_p99 num", "[].top1_agree num", "[].* num|null", "[].quantize_seconds num", "[].pareto int", NULL};

static const char *const inspect[] = {
    "model str", "architecture str", "layers int", "moe_layers seq", "moe_layers[] int", "experts int",
    "experts_per_token int", "shared_experts int", "norm_topk_prob bool", "hidden_size int",
    "vocab_size int", "params map", "params.attention int", "params.routed_experts int",
    "params.shared_experts int", "params.dense_mlp int", "params.router int", "params.embeddings int",
    "params.norms int", "total_params int", "bytes int", "files int", "tensors int|seq", "tensors[] map",
    "tensors[].module str", "tensors[].name str", "tensors[].shape seq", "tensors[].shape[] int",
    "tensors[].dtype str", NULL};

static const char *const eval[] = {
    "?tokens int", "?" EVAL_FIGURES, "?tasks map", "tasks.* map", "tasks.*.acc num", "tasks.*.acc_se num",
    "tasks.*.acc_norm num", "tasks.*.acc_norm_se num", "tasks.*.n int", NULL};

static const char *const gptq_tensor[] = {
    "relative_error num", "rtn_relative_error num", "seconds num", "bits int", "group_size int",
    "sym bool", "act_order bool", "damp num", "damp_retries int", "dead_columns int", NULL};

static const char *const tokenize[] = {
    "tokenizer str", "text str", "bytes int", "tokens int", "load_seconds num", "seconds num", "cpu_seconds num",
    "mb_per_s num", NULL};

static const char *const quantize_config[] = {
    "bits int", "group_size int", "desc_act bool", "sym bool", "damp_percent num", "true_sequential bool",
    "quant_method str", "checkpoint_format str", "pack_dtype str", "lm_head bool", "dynamic map",
    "dynamic.* map", "?dynamic.*.bits int", "?dynamic.*.group_size int", "?dynamic.*.desc_act bool",
    "?dynamic.*.sym bool", "modules_in_block_to_quantize seq", "modules_in_block_to_quantize[] seq",
    "modules_in_block_to_quantize[][] str", "?meta map", "meta.quantizer seq", "meta.quantizer[] str", NULL};

/* a checkpoint's config.json: the model's keys as they came, and the GPTQ settings */
static const char *const gptq_config[] = {
    "architectures seq", "architectures[] str", "* any", "quantization_config @quantize_config", NULL};
/* editors/textmate/qmoe.tmLanguage.json (not an output; checked here for its JSON) */
static const char *const tmlanguage[] = {
    "$schema str", "name str", "scopeName str", "fileTypes seq", "fileTypes[] str", "comment str",
    "patterns seq", "patterns[] map", "patterns[].include str", "repository map", "repository.* map",
    "?repository.*.name str", "?repository.*.match str", "?repository.*.patterns seq",
    "repository.*.patterns[] map", "repository.*.patterns[].name str", "repository.*.patterns[].match str", NULL};

static const char *const hf_config[] = {"architectures seq", "architectures[] str", "* any", NULL};

static const char *const st_index[] = {"metadata map", "metadata.* any", "weight_map map", "weight_map.* str",
                                       NULL};

static const char *const safetensors[] = {
    "?__metadata__ map", "__metadata__.* str", "* map", "*.dtype str", "*.shape seq", "*.shape[] int",
    "*.data_offsets seq", "*.data_offsets[] int", NULL};

/* ---- reading ------------------------------------------------------------------------ */

typedef struct checker {
    const char *file;
    int errors;
} checker;

static void fail(checker *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", c->file);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    c->errors++;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* A plain scalar as a jansson value, typed where YAML 1.1 (PyYAML, libyaml's
 * resolvers) and the 1.2 core schema agree; NULL where they do not. */
static json_t *plain_scalar(const char *s)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE"}, *const falses[] = {"false", "False", "FALSE"};
    static const char *const bools_11[] = {"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off",
                                           "Off", "OFF", "y", "Y", "n", "N"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        if (strcmp(s, nulls[i]) == 0)
            return json_null();
    for (size_t i = 0; i < 3; i++)
        if (strcmp(s, trues[i]) == 0 || strcmp(s, falses[i]) == 0)
            return json_boolean(strcmp(s, trues[i]) == 0);
    for (size_t i = 0; i < sizeof bools_11 / sizeof *bools_11; i++)
        if (strcmp(s, bools_11[i]) == 0)
            return NULL;
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".inf") == 0 || strcmp(s, "-.inf") == 0)
        return json_real(0);
    const char *p = s + (*s == '-' || *s == '+');
    const char *dot = strchr(p, '.'), *e = strpbrk(p, "eE");
    char *end;
    double v = strtod(s, &end);
    int numeric = end != s && *end == '\0';
    if (all_digits(p))
        return json_integer(strtoll(s, NULL, 10));
    if (numeric && dot && dot > p) { /* 1.1 wants digits, '.', and a signed exponent */
        char head[64];
        size_t n = (size_t)(dot - p);
        snprintf(head, sizeof head, "%.*s", (int)(n < 63 ? n : 63), p);
        const char *frac_end = e ? e : p + strlen(p);
        int ok = all_digits(head);
        for (const char *q = dot + 1; q < frac_end; q++)
            ok &= *q >= '0' && *q <= '9';
        if (e)
            ok &= (e[1] == '-' || e[1] == '+') && all_digits(e + 2);
        if (ok)
            return json_real(v);
    }
    return numeric ? NULL : json_string(s);
}

static json_t *from_yaml(checker *c, yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (depth > 64) {
        fail(c, "nested too deep");
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return json_string(s);
        json_t *v = plain_scalar(s);
        if (!v)
            fail(c, "line %zu: '%s' is read as different types by YAML 1.1 and 1.2 parsers: quote it",
                 n->start_mark.line + 1, s);
        return v;
    }
    json_t *out = n->type == YAML_MAPPING_NODE ? json_object() : json_array();
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
            json_t *v = from_yaml(c, doc, yaml_document_get_node(doc, *i), depth + 1);
            if (!v)
                return json_decref(out), NULL;
            json_array_append_new(out, v);
        }
        return out;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k->type != YAML_SCALAR_NODE) {
            fail(c, "line %zu: a key that is not a scalar", k->start_mark.line + 1);
            return json_decref(out), NULL;
        }
        const char *key = (const char *)k->data.scalar.value;
        if (json_object_get(out, key)) {
            fail(c, "line %zu: key '%s' twice", k->start_mark.line + 1, key);
            return json_decref(out), NULL;
        }
        json_t *v = from_yaml(c, doc, yaml_document_get_node(doc, p->value), depth + 1);
        if (!v)
            return json_decref(out), NULL;
        json_object_set_new(out, key, v);
    }
    return out;
}

static json_t *load_yaml(checker *c, FILE *f)
{
    yaml_parser_t p;
    yaml_document_t doc;
    json_t *v = NULL;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    if (!yaml_parser_load(&p, &doc)) {
        fail(c, "line %zu column %zu: not YAML: %s %s", p.problem_mark.line + 1, p.problem_mark.column + 1,
             p.problem ? p.problem : "", p.context ? p.context : "");
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root)
            fail(c, "no YAML document");
        else
            v = from_yaml(c, &doc, root, 0);
        yaml_document_delete(&doc);
        yaml_document_t next;
        if (v && yaml_parser_load(&p, &next)) {
            if (yaml_document_get_root_node(&next))
                fail(c, "more than one YAML document");
            yaml_document_delete(&next);
        }
    }
    yaml_parser_delete(&p);
    return c->errors ? (json_decref(v), NULL) : v;
}

static json_t *load_json(checker *c, FILE *f)
{
    json_error_t e;
    json_t *v = json_loadf(f, JSON_REJECT_DUPLICATES, &e);
    if (!v)
        fail(c, "line %d column %d: not JSON: %s", e.line, e.column, e.text);
    return v;
}

/* a safetensors file's header: 8 bytes little-endian length, then JSON */
static json_t *load_safetensors(checker *c, FILE *f)
{
    unsigned char b[8];
    if (fread(b, 1, 8, f) != 8) {
        fail(c, "shorter than a safetensors header");
        return NULL;
    }
    unsigned long long n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | b[i];
    char *h = n <= 100000000 ? malloc(n) : NULL;
    json_t *v = NULL;
    json_error_t e;
    if (!h || fread(h, 1, n, f) != n)
        fail(c, "header length %llu does not fit the file", n);
    else if (!(v = json_loadb(h, n, JSON_REJECT_DUPLICATES, &e)))
        fail(c, "header column %d: not JSON: %s", e.column, e.text);
    free(h);
    return v;
}

/* One RFC 4180 record into `fields` (strings; unquoted ones typed as YAML
 * plain scalars would be, so that "4.0000" is a number and "a,b" quoted a
 * string).  1 a record, 0 at the end, -1 malformed. */
static int csv_record(checker *c, FILE *f, json_t *fields, long line)
{
    int ch = getc(f);
    if (ch == EOF)
        return 0;
    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        int quoted = ch == '"';
        if (quoted) {
            for (;;) {
                ch = getc(f);
                if (ch == EOF) {
                    fclose(m), free(buf);
                    fail(c, "line %ld: a quoted field is not closed", line);
                    return -1;
                }
                if (ch == '"' && (ch = getc(f)) != '"')
                    break;
                fputc(ch, m);
            }
        } else {
            for (; ch != EOF && ch != ',' && ch != '\n' && ch != '\r'; ch = getc(f)) {
                if (ch == '"') {
                    fclose(m), free(buf);
                    fail(c, "line %ld: a quote inside an unquoted field", line);
                    return -1;
                }
                fputc(ch, m);
            }
        }
        fclose(m);
        json_t *v = quoted ? json_string(buf) : plain_scalar(buf);
        if (!v)
            fail(c, "line %ld: '%s' is ambiguous", line, buf);
        free(buf);
        if (!v)
            return -1;
        json_array_append_new(fields, v);
        if (ch == ',') {
            ch = getc(f);
            continue;
        }
        if (ch == '\r')
            ch = getc(f);
        if (ch == '\n' || ch == EOF)
            return 1;
        fail(c, "line %ld: text after a quoted field", line);
        return -1;
    }
}

/* results.csv: the header names the documented columns, task columns
 * between top1_agree and quantize_seconds; every row as many fields. */
static const char *const csv_head[] = {"policy", "average_bits", "effective_bits", "size_bytes", "ppl",
                                       "ppl_ratio", "kld_mean", "kld_se", "kld_median", "kld_p99",
                                       "top1_agree"};
static const char *const csv_tail[] = {"quantize_seconds", "pareto"};

static json_t *load_csv(checker *c, FILE *f)
{
    json_t *head = json_array(), *rows = json_array();
    if (csv_record(c, f, head, 1) != 1) {
        if (!c->errors)
            fail(c, "empty");
        return json_decref(head), json_decref(rows), NULL;
    }
    size_t nh = json_array_size(head), nf = sizeof csv_head / sizeof *csv_head, nt = 2;
    int ok = nh >= nf + nt;
    for (size_t i = 0; ok && i < nh; i++) {
        const char *want = i < nf ? csv_head[i] : i >= nh - nt ? csv_tail[i - (nh - nt)] : NULL;
        ok = json_is_string(json_array_get(head, i)) &&
             (!want || strcmp(json_string_value(json_array_get(head, i)), want) == 0);
    }
    if (!ok)
        fail(c, "the header is not policy,average_bits,...,top1_agree[,TASK...],quantize_seconds,pareto");
    for (long line = 2; ok; line++) {
        json_t *fields = json_array(), *row = json_object();
        int r = csv_record(c, f, fields, line);
        if (r == 1 && json_array_size(fields) != nh)
            fail(c, "line %ld: %zu fields, the header has %zu", line, json_array_size(fields), nh), r = -1;
        for (size_t i = 0; r == 1 && i < nh; i++)
            json_object_set(row, json_string_value(json_array_get(head, i)), json_array_get(fields, i));
        if (r == 1)
            json_array_append(rows, row);
        json_decref(fields);
        json_decref(row);
        ok = r == 1;
    }
    json_decref(head);
    return c->errors ? (json_decref(rows), NULL) : rows;
}

/* ---- the schema walk ---------------------------------------------------------------- */

typedef struct kind {
    const char *name;
    json_t *(*load)(checker *c, FILE *f);
    const char *const *schema;
} kind;

static const kind kinds[] = {
    {"plan", load_yaml, plan},
    {"scores", load_yaml, scores},
    {"measure", load_yaml, measure},
    {"quant_log", load_yaml, quant_log},
    {"bench_run", load_yaml, bench_run},
    {"bench_results", load_yaml, bench_results},
    {"results_csv", load_csv, results_csv},
    {"inspect", load_yaml, inspect},
    {"eval", load_yaml, eval},
    {"gptq_tensor", load_yaml, gptq_tensor},
    {"tokenize", load_yaml, tokenize},
    {"quantize_config", load_json, quantize_config},
    {"gptq_config", load_json, gptq_config},
    {"hf_config", load_json, hf_config},
    {"tmlanguage", load_json, tmlanguage},
    {"st_index", load_json, st_index},
    {"safetensors", load_safetensors, safetensors},
};

static const kind *find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

/* The schema line for `path` (its type after the blank), or -1. */
static int find_line(const char *const *schema, const char *path)
{
    size_t n = strlen(path);
    for (int i = 0; schema[i]; i++) {
        const char *s = schema[i] + (schema[i][0] == '?');
        if (strncmp(s, path, n) == 0 && s[n] == ' ')
            return i;
    }
    return -1;
}

static int has_type(const json_t *v, const char *types)
{
    static const struct {
        const char *name;
        unsigned mask;
    } t[] = {
        {"str", 1u << JSON_STRING}, {"int", 1u << JSON_INTEGER}, {"num", 1u << JSON_INTEGER | 1u << JSON_REAL},
        {"bool", 1u << JSON_TRUE | 1u << JSON_FALSE}, {"null", 1u << JSON_NULL}, {"map", 1u << JSON_OBJECT},
        {"seq", 1u << JSON_ARRAY}, {"any", ~0u},
    };
    char buf[64];
    snprintf(buf, sizeof buf, "%s", types);
    for (char *save, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        for (size_t i = 0; i < sizeof t / sizeof *t; i++)
            if (strcmp(w, t[i].name) == 0 && (t[i].mask >> json_typeof(v) & 1))
                return 1;
    return 0;
}

static void walk(checker *c, const char *const *schema, const json_t *v, const char *path);

static void walk_line(checker *c, const char *const *schema, int line, const json_t *v, const char *path)
{
    const char *type = strchr(schema[line], ' ') + 1;
    if (type[0] == '@') {
        const kind *k = find_kind(type + 1);
        if (!json_is_object(v))
            fail(c, "'%s' is not a mapping", path);
        else
            walk(c, k->schema, v, "");
        return;
    }
    if (!has_type(v, type)) {
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        fail(c, "'%s' is %.60s, not %s", path, text ? text : "?", type);
        free(text);
        return;
    }
    walk(c, schema, v, path);
}

static char *join(const char *path, const char *key)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", path, *path && strcmp(key, "[]") != 0 ? "." : "", key) < 0)
        abort();
    return s;
}

/* v at `path` (already typed): its items and keys against the schema. */
static void walk(checker *c, const char *const *schema, const json_t *v, const char *path)
{
    if (json_is_array(v)) {
        char *p = join(path, "[]");
        int line = find_line(schema, p);
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            if (line < 0) {
                fail(c, "'%s' holds items the documentation does not describe", path);
                break;
            }
            walk_line(c, schema, line, item, p);
        }
        free(p);
        return;
    }
    if (!json_is_object(v))
        return;
    int last = -1;
    const char *key;
    json_t *val;
    char *star = join(path, "*");
    int star_line = find_line(schema, star);
    json_object_foreach((json_t *)v, key, val)
    {
        char *p = join(path, key);
        int line = find_line(schema, p);
        if (line >= 0 && line < last)
            fail(c, "key '%s' out of the documented order", p);
        if (line >= 0)
            last = line;
        else
            line = star_line;
        if (line < 0)
            fail(c, "key '%s' is not documented", p);
        else
            walk_line(c, schema, line, val, line == star_line ? star : p);
        free(p);
    }
    /* required keys of this mapping: "PATH.KEY TYPE" lines with a plain KEY */
    size_t n = strlen(path);
    for (int i = 0; schema[i]; i++) {
        const char *s = schema[i];
        if (*s == '?')
            continue;
        if (n && (strncmp(s, path, n) != 0 || s[n] != '.'))
            continue;
        const char *k = s + (n ? n + 1 : 0);
        size_t kl = strcspn(k, " ");
        if (kl == 0 || strcspn(k, ".[*") < kl || (k[0] == '*' && kl == 1))
            continue;
        char key_buf[128];
        snprintf(key_buf, sizeof key_buf, "%.*s", (int)kl, k);
        if (!json_object_get(v, key_buf))
            fail(c, "'%s%s%s' is missing", path, n ? "." : "", key_buf);
    }
    free(star);
}

static json_t *load(checker *c, const kind *k, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fail(c, "%s", strerror(errno));
        return NULL;
    }
    json_t *v = k->load(c, f);
    fclose(f);
    return v;
}

static int check_file(const kind *k, const char *file)
{
    checker c = {file, 0};
    json_t *v = load(&c, k, file);
    const char *root = k->load == load_csv ? "seq" : "map";
    if (v && !has_type(v, root))
        fail(&c, "the top level is not a %s", root);
    else if (v)
        walk(&c, k->schema, v, "");
    json_decref(v);
    return c.errors;
}

/* Print the values at `path` ("results[].policy"), strings as they are. */
static void get(const json_t *v, const char *path)
{
    if (!*path) {
        if (json_is_string(v)) {
            puts(json_string_value(v));
        } else {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            puts(s ? s : "?");
            free(s);
        }
        return;
    }
    if (strncmp(path, "[]", 2) == 0) {
        const char *rest = path + 2 + (path[2] == '.');
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) get(item, rest);
        return;
    }
    size_t n = strcspn(path, ".[");
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)n, path);
    const json_t *next = json_object_get(v, key);
    if (next)
        get(next, path + n + (path[n] == '.'));
}

/* ---- self-test: the checker refuses what it should ------------------------------------------ */

static const struct sample {
    const char *kind, *text;
    int good;
} samples[] = {
    {"quant_log", "# c\ntensors:\n  - {name: a.b.weight, module: 'layers[0].attn.q', bits: 4, tokens: 8, "
                  "fallback: none, relative_error: 2.5e-05, damp: 1.0e-05, seconds: 0.001}\n", 1},
    {"quant_log", "tensors:\n  - {name: a.b.weight, module: 'x', bits: 4, tokens: 8, fallback: rtn, "
                  "relative_error: null, damp: 0.01, seconds: 0.001}\n", 1},
    /* before issue #22: a plain module name with '[' inside a flow mapping */
    {"quant_log", "tensors:\n  - {name: a.b.weight, module: layers[0].attn.q, bits: 4, tokens: 8, "
                  "fallback: none, relative_error: 0.1, damp: 0.01, seconds: 0.001}\n", 0},
    /* 1e-05: a string to YAML 1.1, a float to 1.2 */
    {"quant_log", "tensors:\n  - {name: a, module: b, bits: 4, tokens: 8, fallback: none, "
                  "relative_error: 0.1, damp: 1e-05, seconds: 0.001}\n", 0},
    {"quant_log", "tensors:\n  - {name: a, module: b, bits: 4, tokens: 8, fallback: none, "
                  "relative_error: 0.1, seconds: 0.001}\n", 0},
    {"quant_log", "tensors:\n  - {module: b, name: a, bits: 4, tokens: 8, fallback: none, "
                  "relative_error: 0.1, damp: 0.01, seconds: 0.001}\n", 0},
    {"gptq_tensor", "relative_error: 0.1\nrtn_relative_error: 0.2\nseconds: 0.1\nbits: 4\ngroup_size: 128\n"
                    "sym: true\nact_order: false\ndamp: 0.01\ndamp_retries: 0\ndead_columns: 0\n", 1},
    {"gptq_tensor", "relative_error: 0.1\nrtn_relative_error: 0.2\nseconds: 0.1\nbits: \"4\"\n"
                    "group_size: 128\nsym: true\nact_order: false\ndamp: 0.01\ndamp_retries: 0\n"
                    "dead_columns: 0\n", 0},
    {"gptq_tensor", "relative_error: 0.1\nrtn_relative_error: 0.2\nseconds: 0.1\nbits: 4\ngroup_size: 128\n"
                    "sym: yes\nact_order: false\ndamp: 0.01\ndamp_retries: 0\ndead_columns: 0\n", 0},
    {"gptq_tensor", "relative_error: 0.1\nrtn_relative_error: 0.2\nseconds: 0.1\nbits: 4\ngroup_size: 128\n"
                    "sym: true\nact_order: false\ndamp: 0.01\ndamp_retries: 0\ndead_columns: 0\nextra: 1\n", 0},
    {"results_csv", "policy,average_bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,"
                    "kld_p99,top1_agree,\"cloze, \"\"x\"\"\",quantize_seconds,pareto\n"
                    "\"a,b: [c]\",4.0000,4.3327,2940968,3.7848,1.0108,0.012482,0.001899,0.002617,0.193454,"
                    "93.74,0.5000,0.9,1\n"
                    "\"say \"\"hi\"\"\",2.0000,2.3,2,3.7,1.01,0.01,0.001,0.002,0.19,93.74,,0.9,0\r\n", 1},
    {"results_csv", "policy,average_bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,"
                    "kld_p99,top1_agree,quantize_seconds,pareto\n"
                    "a,b: [c],4.0000,4.3327,2940968,3.7848,1.0108,0.012482,0.001899,0.002617,0.193454,"
                    "93.74,0.9,1\n", 0},
    {"results_csv", "policy,average_bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,"
                    "kld_p99,top1_agree,quantize_seconds,pareto\n"
                    "say \"hi\",4.0000,4.3327,2940968,3.7848,1.0108,0.012482,0.001899,0.002617,0.193454,"
                    "93.74,0.9,1\n", 0},
    {"results_csv", "policy,average_bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,"
                    "kld_p99,top1_agree,quantize_seconds,pareto\n\"open,4.0000\n", 0},
    {"results_csv", "policy,bits,effective_bits,size_bytes,ppl,ppl_ratio,kld_mean,kld_se,kld_median,"
                    "kld_p99,top1_agree,quantize_seconds,pareto\n", 0},
    {"st_index", "{\"metadata\": {}, \"weight_map\": {\"a\": \"m-1.safetensors\"}}", 1},
    {"st_index", "{\"metadata\": {}, \"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}", 0},
    {"hf_config", "{\"architectures\": [\"X\"], \"hidden_size\": 8}", 1},
    {"hf_config", "{\"architectures\": [\"X\"], \"hidden_size\": 8", 0},
};

static int self_test(void)
{
    int wrong = 0;
    char path[] = "/tmp/check_outputs.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return perror("mkstemp"), 1;
    FILE *f = fdopen(fd, "w");
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        if (!freopen(path, "w", f) || fputs(samples[i].text, f) < 0 || fflush(f) != 0)
            return perror(path), remove(path), 1;
        fprintf(stderr, "sample %zu (%s, %s): ", i + 1, samples[i].kind, samples[i].good ? "good" : "bad");
        int errors = check_file(find_kind(samples[i].kind), path);
        if ((errors == 0) != samples[i].good) {
            fprintf(stderr, "FAIL: %s\n", samples[i].good ? "refused" : "accepted");
            wrong++;
        } else {
            fprintf(stderr, "%s\n", errors ? "(refused, as it should be)" : "ok");
        }
    }
    fclose(f);
    remove(path);
    printf("%zu samples, %d judged wrongly\n", sizeof samples / sizeof *samples, wrong);
    return wrong != 0;
}

/* --same: a command's --format yaml and --format json outputs, each held
 * to the kind's schema (so keys and their order), then equal as values. */
static int same(const kind *k, const char *yaml, const char *json)
{
    int errors = check_file(k, yaml) + check_file(&(kind){k->name, load_json, k->schema}, json);
    checker cy = {yaml, 0}, cj = {json, 0};
    json_t *a = load(&cy, k, yaml), *b = load(&cj, &(kind){k->name, load_json, k->schema}, json);
    if (a && b && !json_equal(a, b)) {
        char *sa = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER), *sb = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(stderr, "%s and %s differ:\n%.400s\n%.400s\n", yaml, json, sa ? sa : "?", sb ? sb : "?");
        free(sa), free(sb);
        errors++;
    }
    json_decref(a);
    json_decref(b);
    return errors + cy.errors + cj.errors;
}

int main(int argc, char **argv)
{
    if (argc == 1)
        return self_test();
    if (strcmp(argv[1], "--same") == 0) {
        const kind *k = argc == 5 ? find_kind(argv[2]) : NULL;
        if (!k) {
            fprintf(stderr, "usage: check_outputs --same KIND YAML JSON\n");
            return 2;
        }
        return same(k, argv[3], argv[4]) != 0;
    }
    if (strcmp(argv[1], "--get") == 0) {
        const kind *k = argc == 5 ? find_kind(argv[2]) : NULL;
        if (!k) {
            fprintf(stderr, "usage: check_outputs --get KIND FILE PATH\n");
            return 2;
        }
        checker c = {argv[3], 0};
        json_t *v = load(&c, k, argv[3]);
        if (v)
            get(v, argv[4]);
        json_decref(v);
        return c.errors != 0;
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: check_outputs KIND FILE [KIND FILE]...\n");
        return 2;
    }
    int errors = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const kind *k = find_kind(argv[i]);
        if (!k) {
            fprintf(stderr, "check_outputs: unknown kind '%s'\n", argv[i]);
            return 2;
        }
        errors += check_file(k, argv[i + 1]);
    }
    return errors != 0;
}
