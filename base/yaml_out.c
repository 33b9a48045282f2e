/* yaml_out.c: structured YAML output through libyaml's emitter, and the
 * same structure as JSON.
 *
 * Every YAML that qmoe prints (inspect, plans, logs, results) is emitted
 * here, so quoting is always right: strings that YAML would read back as
 * another type ("true", "3", "null", "") are double-quoted, everything else
 * is left plain when libyaml allows it.  Output is deterministic: the same
 * calls give the same bytes.
 *
 * An emitter from qm_json_begin() takes the same calls and prints JSON
 * (`--format json`), so the two formats hold the same keys by construction:
 * mappings are objects, sequences arrays, a scalar in a key's place a
 * string, flow collections one line, block ones a line per item.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/base.h"

enum { MAX_DEPTH = 64 };

struct qm_yaml {
    yaml_emitter_t em;
    int failed;
    int depth;
    char kind[MAX_DEPTH]; /* 'm' mapping or 's' sequence, innermost last */
    FILE *json;           /* JSON output (qm_json_begin()); NULL for YAML */
    char flow[MAX_DEPTH]; /* JSON: the collection is printed on one line */
    size_t items[MAX_DEPTH]; /* JSON: scalars and collections in it so far */
};

/* ---- JSON ---------------------------------------------------------------------- */

qm_yaml *qm_json_begin(FILE *f)
{
    qm_yaml *y = calloc(1, sizeof *y);
    if (y)
        y->json = f;
    return y;
}

/* Separator and indentation before the next node; 1 when it stands where
 * a mapping's key does (JSON keys are strings). */
static int json_next(qm_yaml *y)
{
    if (y->depth == 0)
        return 0;
    int d = y->depth - 1;
    size_t k = y->items[d]++;
    int key = y->kind[d] == 'm' && k % 2 == 0;
    if (y->kind[d] == 'm' && !key) {
        fputs(": ", y->json);
        return 0;
    }
    if (k)
        fputc(',', y->json);
    if (y->flow[d])
        fputs(k ? " " : "", y->json);
    else
        fprintf(y->json, "\n%*s", 2 * y->depth, "");
    return key;
}

static void json_string(qm_yaml *y, const char *s)
{
    fputc('"', y->json);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(y->json, "\\%c", c);
        else if (c < 0x20)
            fprintf(y->json, "\\u%04x", c);
        else
            fputc(c, y->json);
    }
    fputc('"', y->json);
}

/* A number, boolean or null as JSON writes it; quoted in a key's place. */
static void json_scalar(qm_yaml *y, const char *text)
{
    if (json_next(y))
        json_string(y, text);
    else
        fputs(text, y->json);
}

static int write_file(void *data, unsigned char *buf, size_t size)
{
    return fwrite(buf, 1, size, (FILE *)data) == size;
}

static void emit(qm_yaml *y, yaml_event_t *ev)
{
    if (!y->failed && !yaml_emitter_emit(&y->em, ev))
        y->failed = 1;
}

qm_yaml *qm_yaml_begin(FILE *f)
{
    qm_yaml *y = calloc(1, sizeof *y);
    if (!y)
        return NULL;
    if (!yaml_emitter_initialize(&y->em)) {
        free(y);
        return NULL;
    }
    yaml_emitter_set_output(&y->em, write_file, f);
    yaml_emitter_set_unicode(&y->em, 1);
    yaml_emitter_set_width(&y->em, -1);
    yaml_emitter_set_indent(&y->em, 2);
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    emit(y, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    emit(y, &ev);
    return y;
}

static void open_node(qm_yaml *y, char kind, int flow)
{
    yaml_event_t ev;
    if (y->depth == MAX_DEPTH) {
        y->failed = 1;
        return;
    }
    if (y->json) {
        json_next(y);
        fputc(kind == 'm' ? '{' : '[', y->json);
        y->flow[y->depth] = (char)(flow || (y->depth > 0 && y->flow[y->depth - 1]));
        y->items[y->depth] = 0;
        y->kind[y->depth++] = kind;
        return;
    }
    if (kind == 'm')
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                            flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    else
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                             flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
    emit(y, &ev);
    y->kind[y->depth++] = kind;
}

void qm_yaml_map(qm_yaml *y) { open_node(y, 'm', 0); }
void qm_yaml_flow_map(qm_yaml *y) { open_node(y, 'm', 1); }
void qm_yaml_seq(qm_yaml *y) { open_node(y, 's', 0); }
void qm_yaml_flow_seq(qm_yaml *y) { open_node(y, 's', 1); }

void qm_yaml_close(qm_yaml *y)
{
    yaml_event_t ev;
    if (y->depth == 0) {
        y->failed = 1;
        return;
    }
    if (y->json) {
        int d = --y->depth;
        if (y->items[d] && !y->flow[d])
            fprintf(y->json, "\n%*s", 2 * d, "");
        fputc(y->kind[d] == 'm' ? '}' : ']', y->json);
        return;
    }
    if (y->kind[--y->depth] == 'm')
        yaml_mapping_end_event_initialize(&ev);
    else
        yaml_sequence_end_event_initialize(&ev);
    emit(y, &ev);
}

static void scalar(qm_yaml *y, const char *s, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (y->json) { /* only numbers, booleans and null come here as plain */
        if (style == YAML_PLAIN_SCALAR_STYLE)
            json_scalar(y, s);
        else {
            json_next(y);
            json_string(y, s);
        }
        return;
    }
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1, style)) {
        y->failed = 1;
        return;
    }
    emit(y, &ev);
}

/* Would a plain scalar with this text be read back as something other than
 * a string (YAML 1.1 or 1.2 core schema)? */
static int looks_typed(const char *s)
{
    /* Only these first bytes can begin a word below or something strtod
     * reads (digits, signs, '.', blanks, inf, nan, hex); the plan's tens of
     * thousands of names begin with none of them. */
    if (*s && !strchr("0123456789+-. \t\n\v\f\r~nNtTfFyYoOiI", *s))
        return 0;
    static const char *const words[] = {"", "~", "null", "Null", "NULL", "true", "True", "TRUE",
                                        "false", "False", "FALSE", "yes", "Yes", "YES", "no",
                                        "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
                                        "y", "Y", "n", "N", ".nan", ".inf", "-.inf"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcmp(s, words[i]) == 0)
            return 1;
    char *end;
    strtod(s, &end);
    return end != s && *end == '\0';
}

/* libyaml's choice for a string of letters, digits and "_./:-[]" (the
 * SIMPLE bytes) that does not look typed: plain unless a flow indicator
 * ('[', ']', ':' anywhere in flow context) or a block indicator (a leading
 * '[' or ']'; ':' or '-' with nothing after it) forbids it, or it starts
 * like a document marker ("---", "..."); then single-quoted, which these
 * bytes always allow.  Mirrors yaml_emitter_analyze_scalar() and
 * yaml_emitter_select_scalar_style() for exactly these strings;
 * tests/unit/test_plan.c compares the two. */
enum { SIMPLE = 1, FLOW_INDICATOR = 2 };
static const unsigned char simple_byte[256] = {
    /* 0x20: '-' '.' '/' */ [0x2d] = SIMPLE, SIMPLE, SIMPLE,
    /* 0x30: digits, ':' */ SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE,
    SIMPLE | FLOW_INDICATOR,
    /* 0x40: 'A'-'Z', '[' ']' '_' */ [0x41] = SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE,
    SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE,
    SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE | FLOW_INDICATOR, 0, SIMPLE | FLOW_INDICATOR, 0, SIMPLE,
    /* 0x60: 'a'-'z' */ [0x61] = SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE,
    SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE, SIMPLE,
    SIMPLE, SIMPLE, SIMPLE, SIMPLE,
};

int qm_yaml_simple_style(const char *s, int flow)
{
    size_t n = 0;
    unsigned seen = 0, c;
    while ((c = simple_byte[(unsigned char)s[n]]) & SIMPLE)
        seen |= c, n++;
    if (n == 0 || s[n] != '\0' || looks_typed(s))
        return 0;
    int quote = strncmp(s, "---", 3) == 0 || strncmp(s, "...", 3) == 0;
    if (flow)
        quote |= (seen & FLOW_INDICATOR) || (s[0] == '-' && n == 1);
    else
        quote |= s[0] == '[' || s[0] == ']' || s[n - 1] == ':' || (s[0] == '-' && n == 1);
    return quote ? 2 : 1;
}

/* The odd strings (a quote, a line break, a blank at an end) go through
 * libyaml itself, double-quoted: the one item of a flow sequence whose
 * brackets are then dropped.  Double quotes, because libyaml may fold
 * another style over lines, and a line printed by its caller must stay
 * one line. */
qm_status qm_yaml_put_flow_str(FILE *f, const char *s, qm_diag *d)
{
    int style = qm_yaml_simple_style(s, 1);
    if (style)
        return fprintf(f, style == 1 ? "%s" : "'%s'", s) < 0 ? qm_diag_fail(d, QM_EIO, "YAML output failed")
                                                            : QM_OK;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    qm_yaml *y = m ? qm_yaml_begin(m) : NULL;
    if (!y) {
        if (m)
            fclose(m);
        free(buf);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_yaml_flow_seq(y);
    scalar(y, s, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
    qm_status st = qm_yaml_end(y, d);
    fclose(m);
    /* "[" scalar "]\n" */
    if (st == QM_OK && (len < 3 || buf[0] != '[' || memcmp(buf + len - 2, "]\n", 2) != 0))
        st = qm_diag_fail(d, QM_EIO, "YAML output failed");
    if (st == QM_OK && fwrite(buf + 1, 1, len - 3, f) != len - 3)
        st = qm_diag_fail(d, QM_EIO, "YAML output failed");
    free(buf);
    return st;
}

void qm_yaml_str(qm_yaml *y, const char *s)
{
    scalar(y, s, looks_typed(s) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

/* Decimal digits of v, ending at end (no NUL); returns the first digit.
 * Plans print ~100k integers, so no printf. */
static char *digits(char *end, unsigned long long v)
{
    do
        *--end = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    return end;
}

void qm_yaml_int(qm_yaml *y, long long v)
{
    char b[32], *p;
    b[31] = '\0';
    p = digits(b + 31, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v);
    if (v < 0)
        *--p = '-';
    scalar(y, p, YAML_PLAIN_SCALAR_STYLE);
}

void qm_yaml_uint(qm_yaml *y, unsigned long long v)
{
    char b[32];
    b[31] = '\0';
    scalar(y, digits(b + 31, v), YAML_PLAIN_SCALAR_STYLE);
}

void qm_yaml_real(qm_yaml *y, double v, int digits)
{
    char b[64];
    if (y->json && !(v >= -1e308 && v <= 1e308))
        snprintf(b, sizeof b, "null"); /* JSON has no NaN or infinity */
    else if (v != v)
        snprintf(b, sizeof b, ".nan");
    else if (v > 1e308 || v < -1e308)
        snprintf(b, sizeof b, v > 0 ? ".inf" : "-.inf");
    else
        snprintf(b, sizeof b, "%.*f", digits, v);
    scalar(y, b, YAML_PLAIN_SCALAR_STYLE);
}

void qm_yaml_sci(qm_yaml *y, double v, int digits)
{
    char b[64];
    if (!(v >= -1e308 && v <= 1e308)) {
        qm_yaml_real(y, v, digits);
        return;
    }
    snprintf(b, sizeof b, "%.*e", digits > 0 ? digits : 1, v); /* a '.' before the exponent: YAML 1.1 wants it */
    scalar(y, b, YAML_PLAIN_SCALAR_STYLE);
}

void qm_yaml_bool(qm_yaml *y, int v) { scalar(y, v ? "true" : "false", YAML_PLAIN_SCALAR_STYLE); }
void qm_yaml_null(qm_yaml *y) { scalar(y, "null", YAML_PLAIN_SCALAR_STYLE); }

void qm_yaml_kstr(qm_yaml *y, const char *k, const char *v)
{
    qm_yaml_str(y, k);
    if (v)
        qm_yaml_str(y, v);
    else
        qm_yaml_null(y);
}

void qm_yaml_kint(qm_yaml *y, const char *k, long long v)
{
    qm_yaml_str(y, k);
    qm_yaml_int(y, v);
}

void qm_yaml_kuint(qm_yaml *y, const char *k, unsigned long long v)
{
    qm_yaml_str(y, k);
    qm_yaml_uint(y, v);
}

qm_status qm_yaml_end(qm_yaml *y, qm_diag *d)
{
    yaml_event_t ev;
    while (y->depth > 0)
        qm_yaml_close(y);
    if (y->json) { /* a failed write stays in the stream's error flag, as below */
        fputc('\n', y->json);
        int failed = y->failed;
        free(y);
        return failed ? qm_diag_fail(d, QM_EIO, "JSON output failed: nested too deep") : QM_OK;
    }
    yaml_document_end_event_initialize(&ev, 1);
    emit(y, &ev);
    yaml_stream_end_event_initialize(&ev);
    emit(y, &ev);
    if (!y->failed && !yaml_emitter_flush(&y->em))
        y->failed = 1;
    /* A failed write is the stream's: its error flag stays set for its
     * owner, who knows the path (qm_afile_commit() reports it with the
     * errno; commands writing to stdout check ferror(stdout)).  Anything
     * else is libyaml refusing what it was given. */
    int failed = y->failed && y->em.error != YAML_WRITER_ERROR;
    char problem[128];
    snprintf(problem, sizeof problem, "%s", y->em.problem ? y->em.problem : "out of memory");
    yaml_emitter_delete(&y->em);
    free(y);
    return failed ? qm_diag_fail(d, QM_EIO, "YAML output failed: %s", problem) : QM_OK;
}
