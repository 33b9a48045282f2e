/* jscan.c: a strict JSON pull reader for the large JSON of a checkpoint.
 *
 * Safetensors headers and shard indexes of 100B+ models hold tens of
 * thousands of entries; building a jansson tree of them (a hash table per
 * object, a heap node per value) and freeing it again cost most of a model
 * open.  This reader walks the text once instead, decoding only what the
 * caller asks for, and is as strict as jansson with JSON_REJECT_DUPLICATES:
 * RFC 8259 grammar, valid UTF-8, no control characters or \u0000 in
 * strings, paired surrogates, no duplicate key in any object (the caller
 * checks the keys it reads with qm_js_dup(); skipped objects are checked
 * here), nothing but whitespace after the value, nesting at most
 * QM_JS_MAX_DEPTH deep.  The first error is kept with its byte offset.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/json.h"

void qm_js_init(qm_js *j, const char *text, size_t len, char *buf)
{
    memset(j, 0, sizeof *j);
    j->begin = j->p = text;
    j->end = text + len;
    j->out = buf;
}

static int vfail(qm_js *j, const char *at, const char *fmt, va_list ap)
{
    if (!j->failed) {
        vsnprintf(j->err, sizeof j->err, fmt, ap);
        j->err_at = (size_t)(at - j->begin);
        j->failed = 1;
    }
    return -1;
}

static int fail(qm_js *j, const char *at, const char *fmt, ...) QM_PRINTF(3, 4);
static int fail(qm_js *j, const char *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(j, at, fmt, ap);
    va_end(ap);
    return -1;
}

int qm_js_error(qm_js *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(j, j->p, fmt, ap);
    va_end(ap);
    return -1;
}

static void ws(qm_js *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* What is next, for messages. */
static const char *found(const qm_js *j, char *b, size_t cap)
{
    if (j->p >= j->end)
        return "the end of the input";
    unsigned char c = (unsigned char)*j->p;
    if (c >= 0x20 && c < 0x7f)
        snprintf(b, cap, "'%c'", c);
    else
        snprintf(b, cap, "byte 0x%02x", c);
    return b;
}

int qm_js_peek(qm_js *j)
{
    if (j->p >= j->end || (unsigned char)*j->p <= ' ')
        ws(j);
    return j->failed || j->p >= j->end ? -1 : (unsigned char)*j->p;
}

int qm_js_open(qm_js *j, char open, char close)
{
    char b[16];
    if (qm_js_peek(j) != open)
        return fail(j, j->p, "expected '%c', found %s", open, found(j, b, sizeof b));
    if (++j->depth > QM_JS_MAX_DEPTH)
        return fail(j, j->p, "nested deeper than %d", QM_JS_MAX_DEPTH);
    j->p++;
    if (qm_js_peek(j) == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    return 1;
}

int qm_js_next(qm_js *j, char close)
{
    char b[16];
    int c = qm_js_peek(j);
    if (c == ',') {
        j->p++;
        return 1;
    }
    if (c == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    return fail(j, j->p, "expected ',' or '%c', found %s", close, found(j, b, sizeof b));
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d == 16)
            return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

static char *put_utf8(char *o, unsigned c)
{
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xc0 | c >> 6);
        *o++ = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        *o++ = (char)(0xe0 | c >> 12);
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    } else {
        *o++ = (char)(0xf0 | c >> 18);
        *o++ = (char)(0x80 | (c >> 12 & 0x3f));
        *o++ = (char)(0x80 | (c >> 6 & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    return o;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!n || (size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

/* Bytes a string copies as they are: printable ASCII but '"' and '\\'. */
static const unsigned char plain_byte[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: '"' */
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50: '\\' */
    R16(1), R16(1),
#undef R16
};

/* Has the 8-byte word w a byte that is not plain: below 0x20, '"', '\\'
 * or 0x80 and up?  The bit trick that finds a zero byte (v - 1 borrows into
 * the high bit only where v is 0), applied to w - 0x20 per byte and to w
 * xor each quote; exact once no byte has its high bit set. */
static int word_stops(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t quote = w ^ (ones * '"'), slash = w ^ (ones * '\\');
    uint64_t t = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((slash - ones) & ~slash) | w;
    return (t & high) != 0;
}

/* The end of the plain run at p: names are ~50 bytes of it, so eight at a
 * time, then byte by byte to the stop. */
static const char *plain_run(const char *p, const char *end)
{
    uint64_t w;
    while (end - p >= 8 && (memcpy(&w, p, 8), !word_stops(w)))
        p += 8;
    while (p < end && plain_byte[(unsigned char)*p])
        p++;
    return p;
}

const char *qm_js_string(qm_js *j)
{
    char b[16];
    if (qm_js_peek(j) != '"') {
        fail(j, j->p, "expected a string, found %s", found(j, b, sizeof b));
        return NULL;
    }
    const char *p = ++j->p, *end = j->end;
    char *o = j->out, *s = o;
    for (;;) {
        const char *run = p; /* plain ASCII, copied at once */
        p = plain_run(p, end);
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p >= end) {
            fail(j, p, "unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20) {
            fail(j, p, "control character 0x%02x in a string", c);
            return NULL;
        }
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n) {
                fail(j, p, "invalid UTF-8 in a string");
                return NULL;
            }
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        /* an escape */
        if (end - p < 2) {
            fail(j, p, "unterminated string");
            return NULL;
        }
        static const char plain[] = "\"\\/bfnrt", value[] = "\"\\/\b\f\n\r\t";
        const char *k = p[1] ? strchr(plain, p[1]) : NULL;
        if (k) {
            *o++ = value[k - plain];
            p += 2;
            continue;
        }
        unsigned u, lo;
        if (p[1] != 'u' || end - p < 6 || hex4(p + 2, &u)) {
            fail(j, p, "invalid escape in a string");
            return NULL;
        }
        if (u >= 0xd800 && u <= 0xdbff) {
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                fail(j, p, "\\u%04X is half a surrogate pair", u);
                return NULL;
            }
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            fail(j, p, "\\u%04X is half a surrogate pair", u);
            return NULL;
        } else if (u == 0) {
            fail(j, p, "\\u0000 is not allowed in a string");
            return NULL;
        }
        o = put_utf8(o, u);
        p += 6;
    }
    *o++ = '\0';
    j->out = o;
    j->p = p + 1;
    return s;
}

char *qm_js_mark(const qm_js *j)
{
    return j->out;
}

void qm_js_release(qm_js *j, char *mark)
{
    j->out = mark;
}

const char *qm_js_key(qm_js *j)
{
    char b[16];
    const char *k = qm_js_string(j);
    if (k && qm_js_peek(j) != ':') {
        fail(j, j->p, "expected ':' after the key '%s', found %s", k, found(j, b, sizeof b));
        return NULL;
    }
    if (k)
        j->p++;
    return k;
}

int qm_js_number(qm_js *j, uint64_t *v)
{
    char b[16];
    qm_js_peek(j);
    const char *p = j->p, *end = j->end, *start = p;
    int neg = 0, integral = 1, overflow = 0;
    uint64_t x = 0;
    if (p < end && *p == '-')
        neg = 1, p++;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            unsigned dgt = (unsigned)(*p - '0');
            if (x > UINT64_MAX / 10 || (x == UINT64_MAX / 10 && dgt > UINT64_MAX % 10))
                overflow = 1;
            x = x * 10 + dgt;
        }
    } else {
        j->p = start;
        return fail(j, start, "expected a value, found %s", found(j, b, sizeof b));
    }
    if (p < end && *p == '.') {
        integral = 0;
        if (++p >= end || *p < '0' || *p > '9')
            return fail(j, p, "invalid number: no digit after '.'");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(j, p, "invalid number: no digit in the exponent");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    if (!integral || overflow || (neg && x != 0))
        return 0;
    *v = x;
    return 1;
}

int qm_js_dup(qm_js *j, qm_strmap *seen, const char *key)
{
    if (!seen->cap && qm_strmap_init(seen, 8) != QM_OK)
        return fail(j, j->p, "out of memory");
    switch (qm_strmap_put(seen, key, 0, NULL)) {
    case QM_OK: return 0;
    case QM_EINVAL: return fail(j, j->p, "duplicate key '%s'", key);
    default: return fail(j, j->p, "out of memory");
    }
}

int qm_js_skip(qm_js *j)
{
    char b[16];
    int c = qm_js_peek(j), more;
    const char *at = j->p;
    if (c == '{') {
        qm_strmap seen = {0};
        for (more = qm_js_open(j, '{', '}'); more > 0; more = qm_js_next(j, '}')) {
            const char *k = qm_js_key(j);
            if (!k || qm_js_dup(j, &seen, k) || qm_js_skip(j))
                break;
        }
        qm_strmap_free(&seen);
    } else if (c == '[') {
        for (more = qm_js_open(j, '[', ']'); more > 0; more = qm_js_next(j, ']'))
            if (qm_js_skip(j))
                break;
    } else if (c == '"') {
        qm_js_string(j);
    } else if (c == 't' || c == 'f' || c == 'n') {
        const char *w = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t n = strlen(w);
        if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
            return fail(j, at, "expected a value, found %s", found(j, b, sizeof b));
        j->p += n;
    } else {
        uint64_t v;
        qm_js_number(j, &v);
    }
    return j->failed ? -1 : 0;
}

int qm_js_finish(qm_js *j)
{
    char b[16];
    if (qm_js_peek(j) >= 0 || j->p < j->end)
        return fail(j, j->p, "%s after the end of the value", found(j, b, sizeof b));
    return j->failed ? -1 : 0;
}

void qm_js_linecol(const qm_js *j, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = j->begin; p < j->begin + j->err_at; p++) {
        if (*p == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}
