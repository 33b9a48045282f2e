/* base.h: what every stage of qmoe shares.
 *
 * qmoe is a one-way pipeline: lang (policy text -> AST), compiler (AST +
 * model metadata + scores -> bit plan), runtime (plan -> quantized weights and
 * metrics).  The pieces here sit under all three: status codes, the
 * diagnostics sink through which library code reports errors (library code
 * never prints and never exits; only the driver in cli/ does), a string map,
 * atomic file output, a thin YAML emitter and the strict YAML reader.
 */
#ifndef QM_BASE_H
#define QM_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define QM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define QM_PRINTF(f, a)
#endif

/* Status codes at every fallible API boundary.  The diagnostic that goes
 * with a failure says what and where; the code says which kind. */
typedef enum qm_status {
    QM_OK = 0,
    QM_ENOMEM,       /* allocation failed */
    QM_EIO,          /* the operating system refused a read, write, map or rename */
    QM_EFORMAT,      /* an input file is malformed */
    QM_EINVAL,       /* a value is out of range or inconsistent */
    QM_EUNSUPPORTED, /* well-formed, but not something qmoe handles */
    QM_ENOTFOUND,    /* a named file, tensor or key does not exist */
    QM_STATUS_COUNT
} qm_status;

/* Short stable name of a status ("format", "io", ...). */
const char *qm_status_name(qm_status s);

/* ---- diagnostics -------------------------------------------------------- */

typedef enum qm_severity { QM_SEV_ERROR, QM_SEV_WARNING, QM_SEV_NOTE } qm_severity;

typedef struct qm_diag qm_diag;
typedef struct qm_buf qm_buf;

/* Where a diagnostic points: a file and, when line > 0, a line and column
 * in it (1-based).  The excerpt, when not NULL, is shown under the message:
 * lines separated by '\n' without a final one (lang/ gives the source line
 * and an underline).  A sink copies what a location points to. */
typedef struct qm_diag_loc {
    const char *file;    /* NULL: no location */
    size_t line, col;    /* line 0: the whole file; col 0: the whole line */
    const char *excerpt; /* or NULL */
} qm_diag_loc;

/* A new, empty sink; caller frees with qm_diag_free(). NULL when out of memory. */
qm_diag *qm_diag_new(void);
void qm_diag_free(qm_diag *d);

/* Record an error and return `code`, so that failing reads as
 *   return qm_diag_fail(d, QM_EFORMAT, "%s: ...", path);
 * A NULL sink is allowed (the message is dropped).  The text is the message
 * alone: the severity word and the location are added when printed. */
qm_status qm_diag_fail(qm_diag *d, qm_status code, const char *fmt, ...) QM_PRINTF(3, 4);
void qm_diag_warn(qm_diag *d, const char *fmt, ...) QM_PRINTF(2, 3);
void qm_diag_note(qm_diag *d, const char *fmt, ...) QM_PRINTF(2, 3);
void qm_diag_add(qm_diag *d, qm_severity sev, const char *fmt, va_list ap);
/* The same at a location (loc NULL or loc->file NULL: none). */
qm_status qm_diag_fail_at(qm_diag *d, qm_status code, const qm_diag_loc *loc, const char *fmt, ...)
    QM_PRINTF(4, 5);
void qm_diag_at(qm_diag *d, qm_severity sev, const qm_diag_loc *loc, const char *fmt, ...) QM_PRINTF(4, 5);
/* Add copies of from's messages and locations to `to` (a worker thread's
 * sink to the caller's). */
void qm_diag_append(qm_diag *to, const qm_diag *from);

size_t qm_diag_errors(const qm_diag *d);
size_t qm_diag_warnings(const qm_diag *d);
size_t qm_diag_count(const qm_diag *d);
qm_severity qm_diag_severity(const qm_diag *d, size_t i);
const char *qm_diag_text(const qm_diag *d, size_t i); /* the message alone; owned by the sink */
const qm_diag_loc *qm_diag_location(const qm_diag *d, size_t i); /* NULL when none; owned by the sink */

/* Entry i as printed, appended to b:
 *   FILE:LINE:COL: SEVERITY: TEXT   (FILE: SEVERITY: TEXT for a whole file)
 * followed by the excerpt's lines, or PROG: SEVERITY: TEXT without a
 * location; each line ends with '\n'. */
void qm_diag_format(const qm_diag *d, size_t i, const char *prog, qm_buf *b);
/* Print every entry as qm_diag_format() has it, then a note when some were
 * not kept, and empty the sink. */
void qm_diag_print(qm_diag *d, FILE *f, const char *prog);
void qm_diag_clear(qm_diag *d);

/* ---- widths (widths.c) ------------------------------------------------- */

/* The widths a weight can be quantized to, in increasing order; a plan's
 * `bits` is one of these or 0 (kept). */
enum { QM_WIDTH_COUNT = 5, QM_MAX_WIDTH = 8 };
extern const int qm_widths[QM_WIDTH_COUNT];
int qm_is_width(long long bits);
/* The widths as text into buf (size bytes), each followed by `suffix`,
 * `sep` between them and `last` before the last one:
 * ("bit", " ", " ") gives "2bit 3bit 4bit 8bit", ("", ", ", " or ") gives
 * "2, 3, 4 or 8".  Returns buf. */
const char *qm_widths_text(char *buf, size_t size, const char *suffix, const char *sep, const char *last);
/* The greatest common divisor (gcd(a, 0) = a): the group size that divides
 * several input widths, the budget step that divides several sizes. */
uint64_t qm_gcd(uint64_t a, uint64_t b);

/* ---- architecture families (family.c) ---------------------------------- */

/* The families a model can be, by the short name policies' `arch` guards
 * use; each has one adapter in model/arch_*.c. */
typedef enum qm_family {
    QM_FAMILY_MIXTRAL,
    QM_FAMILY_DEEPSEEK,
    QM_FAMILY_QWEN2MOE,
    QM_FAMILY_QWEN3MOE,
    QM_FAMILY_OLMOE,
    QM_FAMILY_COUNT
} qm_family;

extern const char *const qm_family_names[QM_FAMILY_COUNT];
const char *qm_family_name(qm_family f); /* "mixtral", ...; "?" when out of range */

/* ---- memory ------------------------------------------------------------- */

/* Formatted string in fresh memory; caller frees.  NULL when out of memory. */
char *qm_strfmt(const char *fmt, ...) QM_PRINTF(1, 2);
char *qm_strdup(const char *s);

/* Memory freed all at once (arena.c).  Zero-initialise; what it hands out
 * lives until qm_arena_free(); NULL when out of memory. */
typedef struct qm_arena_chunk qm_arena_chunk;
typedef struct qm_arena {
    qm_arena_chunk *head;
} qm_arena;

void *qm_arena_alloc(qm_arena *a, size_t size); /* zeroed, aligned for any type */
char *qm_arena_strdup(qm_arena *a, const char *s);
char *qm_arena_strndup(qm_arena *a, const char *s, size_t n); /* n bytes of s and a NUL */
void qm_arena_free(qm_arena *a);
/* Move everything `from` holds into a (freed with a); `from` is left empty. */
void qm_arena_adopt(qm_arena *a, qm_arena *from);

/* A growable string (buf.c).  Zero-initialise; free(b.s) when done. */
typedef struct qm_buf {
    char *s;   /* NUL-terminated when not NULL */
    size_t n, cap;
    int oom;   /* sticky: a failed append leaves the buffer as it was and sets this */
} qm_buf;

/* Append n bytes of s.  Inline while there is room: writers of big texts
 * (a 235B-scale plan is ~800k appends) would otherwise spend more on the
 * calls than on the copying. */
void qm_buf_add_grow(qm_buf *b, const char *s, size_t n);
static inline void qm_buf_add(qm_buf *b, const char *s, size_t n)
{
    if (!b->oom && b->cap - b->n > n) {
        memcpy(b->s + b->n, s, n);
        b->s[b->n += n] = '\0';
    } else {
        qm_buf_add_grow(b, s, n);
    }
}
void qm_buf_printf(qm_buf *b, const char *fmt, ...) QM_PRINTF(2, 3);
void qm_buf_vprintf(qm_buf *b, const char *fmt, va_list ap);

/* ---- string map ---------------------------------------------------------- */

/* Open-addressing map from borrowed NUL-terminated keys to size_t values.
 * The map does not copy keys: they must outlive it. */
typedef struct qm_strmap_entry {
    const char *key;   /* NULL = empty slot */
    uint32_t hash;     /* low half of key's hash: probes compare it before touching the string */
    uint32_t val;      /* 16-byte slots: a 235B checkpoint's map is 37k of them */
} qm_strmap_entry;

typedef struct qm_strmap {
    qm_strmap_entry *e; /* (cap) */
    size_t cap, n;
} qm_strmap;

qm_status qm_strmap_init(qm_strmap *m, size_t expected);
void qm_strmap_free(qm_strmap *m);
/* Insert key; if it was present, leave the map unchanged and return QM_EINVAL
 * with *old set to the existing value (when old is not NULL).  Values are
 * below 2^32 (QM_EUNSUPPORTED otherwise). */
qm_status qm_strmap_put(qm_strmap *m, const char *key, size_t val, size_t *old);
/* 1 and *val set when key is present, 0 otherwise. */
int qm_strmap_get(const qm_strmap *m, const char *key, size_t *val);
/* The same with the key's qm_strmap_hash() already known: for a caller
 * that hashes once and spreads keys over several maps by the hash's top
 * bits (the slot comes from its low bits). */
uint64_t qm_strmap_hash(const char *key);
qm_status qm_strmap_put_hashed(qm_strmap *m, const char *key, uint64_t h, size_t val, size_t *old);
int qm_strmap_get_hashed(const qm_strmap *m, const char *key, uint64_t h, size_t *val);
/* Start loading the slot of hash h: a loop of lookups that prefetches a few
 * ahead waits for one cache miss at a time instead of one per lookup. */
void qm_strmap_prefetch(const qm_strmap *m, uint64_t h);

/* ---- atomic output ------------------------------------------------------- */

/* Output goes to a temporary file beside `path` and replaces `path` only on
 * qm_afile_commit(), so a failure or an interruption never leaves a
 * half-written file under the final name. */
typedef struct qm_afile {
    FILE *f;     /* write here */
    char *path;  /* final name (owned) */
    char *tmp;   /* temporary name (owned) */
    /* A second descriptor of the temporary holding flock() on it from its
     * creation until after the rename: a temporary nobody holds was left by
     * a writer that died, and the next qm_afile_open() of the same path
     * removes it.  Valid while tmp is not NULL. */
    int lock;
    /* 1 (what qm_afile_open() sets): fsync before the rename, so that after
     * a crash of the machine the name holds the new data, not an empty
     * file.  Checkpoints, scores and bench records, which cost minutes to
     * hours to make again, keep it.  A writer may clear it for output that
     * is made again in a blink and whose reader rejects an empty or cut
     * file (plans: 0.1 s from policy and model; the fsync of a 235B-scale
     * plan, 8 MB, is 20-30 ms of disk on the machines we measure on). */
    int durable;
} qm_afile;

/* Open a temporary beside path, mode 0666 less the umask (as a plain
 * fopen() would make it), having first removed the temporaries of path
 * that earlier writers killed mid-write left behind. */
qm_status qm_afile_open(qm_afile *a, const char *path, qm_diag *d);
/* Flush, fsync (when durable), close and rename; on any failure the
 * temporary is removed.  A kill at any point leaves the old file or the
 * new one, durable or not. */
qm_status qm_afile_commit(qm_afile *a, qm_diag *d);
/* Discard the temporary (safe to call after a failed commit or twice). */
void qm_afile_abort(qm_afile *a);

/* What a writer puts into a file: write what ctx describes to f and return
 * QM_OK, or a failure already reported to d.  A failed write need not be
 * checked here: the commit sees it in f's error flag. */
typedef qm_status qm_afile_put_fn(const void *ctx, FILE *f, qm_diag *d);
/* The whole open, put, commit sequence: path is replaced by what put
 * writes, or left as it was when put or the commit fails.  durable: fsync
 * before the rename (qm_afile.durable says who needs it). */
qm_status qm_afile_write(const char *path, qm_afile_put_fn *put, const void *ctx, int durable, qm_diag *d);
/* The same for n bytes already in memory. */
qm_status qm_afile_write_bytes(const char *path, const void *data, size_t n, int durable, qm_diag *d);
/* Read back exactly n bytes that qm_afile_write_bytes() wrote to path (a
 * resumable run's progress state): a missing file or one of another size
 * is QM_EFORMAT, "PATH: missing or of the wrong size; remove RESTART to
 * start over". */
qm_status qm_afile_read_bytes(const char *path, void *data, size_t n, const char *restart, qm_diag *d);

/* ---- a resumable run's progress state (resume.c) ------------------------ */

/* quantize and measure run layer by layer.  After each layer they save what
 * the next one needs (hidden states, errors, logs: blobs) in a state
 * folder, then the state file: what the run is of (named fields: hashes of
 * its inputs, its settings) and how many layers are done.  Every file is
 * written atomically and the state file last, so whenever a kill
 * interrupts, the state file names blobs that exist, and the run resumes
 * to the same bytes.  The state file reads "NAME VALUE" a line per field,
 * then "layers_done N". */
typedef struct qm_resume_field {
    const char *name, *value; /* value: one line */
} qm_resume_field;
/* Compare the state file in dir with fields[0..n): -1 when there is none (or
 * it cannot be read as one), the index of the first field that differs, or
 * n when all equal, and then *layers_done is its count. */
int qm_resume_match(const char *dir, const qm_resume_field *fields, int n, int *layers_done);
/* Write the state file: fields[0..n) and layers_done. */
qm_status qm_resume_mark(const char *dir, const qm_resume_field *fields, int n, int layers_done, qm_diag *d);
/* "DIR/FILE"; caller frees (NULL when out of memory). */
char *qm_resume_path(const char *dir, const char *file);
/* Save n bytes as the blob `file`; load exactly n bytes back (a missing
 * blob or one of another size is QM_EFORMAT, naming dir to remove); drop it
 * once no longer needed. */
qm_status qm_resume_save(const char *dir, const char *file, const void *data, size_t n, qm_diag *d);
qm_status qm_resume_load(const char *dir, const char *file, void *data, size_t n, qm_diag *d);
void qm_resume_drop(const char *dir, const char *file);

/* ---- progress ------------------------------------------------------------ */

/* A long-running stage reports one line at a time through a callback the
 * driver supplies (it decides whether and where to print): one line per
 * layer (layer i/N, tokens per second, ETA), and passing detail within a
 * layer (its start, each linear) as lines beginning with '\r', which the
 * command line shows only on a terminal, where every line replaces the one
 * before it (cli/progress.c).  Format a line and pass it to fn(ctx, line);
 * nothing when fn is NULL. */
typedef void qm_progress_fn(void *ctx, const char *line);
void qm_progressf(qm_progress_fn *fn, void *ctx, const char *fmt, ...) QM_PRINTF(3, 4);

/* ---- the operating system ------------------------------------------------ */

/* Seconds on a monotonic clock (differences only). */
double qm_clock(void);
/* Make directory `path` (mode 0755); an existing directory is fine. */
qm_status qm_mkdir(const char *path, qm_diag *d);
/* Remove path and, when a directory, all below it (symbolic links
 * removed, not followed); a path that does not exist is fine. */
qm_status qm_remove_tree(const char *path, qm_diag *d);
/* Every input file is opened through here: a path that is not a regular
 * file (a FIFO, a directory, a device such as /dev/zero) is refused with
 * a message naming what it is, and opening a FIFO never blocks.  On
 * success *fd is open read-only (close-on-exec, blocking reads) and *sb
 * its status; on failure *fd is -1 and the message has the errno text. */
struct stat;
qm_status qm_open_input(const char *path, int *fd, struct stat *sb, qm_diag *d);
/* The same without a message: the fd, or -1 with errno set and *why the
 * text to print (strerror's, or what the file is instead). */
int qm_open_regular(const char *path, struct stat *sb, const char **why);
/* The same as a stdio stream in *f (caller fcloses; NULL on failure). */
qm_status qm_fopen_input(const char *path, FILE **f, qm_diag *d);
/* A stream on the regular file at path without a message, for files whose
 * absence is no error (state a command left in its own output directory):
 * caller fcloses; NULL with errno set and *why the text to print. */
FILE *qm_fopen_regular(const char *path, const char **why);
/* Map size bytes of fd (opened for path) read-only; an empty file maps to
 * an empty string.  Release with qm_unmap_file(). */
qm_status qm_map_fd(int fd, const char *path, size_t size, const char **data, qm_diag *d);
/* Map the file at `path` read-only: *data and *len (0 for an empty file,
 * with *data pointing at an empty string).  Release with qm_unmap_file().
 * Large inputs read this way come from the page cache without a copy. */
qm_status qm_map_file(const char *path, const char **data, size_t *len, qm_diag *d);
void qm_unmap_file(const char *data, size_t len);
/* The whole file at `path` in fresh memory, NUL-terminated (so text can be
 * scanned as a string), its length without the NUL in *len; caller frees
 * *data.  Regular files only (qm_open_input()). */
qm_status qm_read_file(const char *path, char **data, size_t *len, qm_diag *d);
/* The same for at most the first max bytes (max < SIZE_MAX): what a
 * reader needs of a file that may be far larger. */
qm_status qm_read_file_head(const char *path, size_t max, char **data, size_t *len, qm_diag *d);
/* Processors online (at least 1). */
int qm_cpus(void);

/* One unit of parallel work: task number `task` on worker `worker`
 * (0 <= worker < workers), which may use that worker's scratch. */
typedef void qm_task_fn(void *ctx, int task, int worker);
enum { QM_MAX_WORKERS = 64 };
/* Run fn for tasks 0..tasks-1 on up to `workers` threads (the caller's
 * included, at most QM_MAX_WORKERS), each task exactly once, and return
 * when all are done.  Tasks must write disjoint memory; then the results do
 * not depend on which worker ran which task.  If a thread cannot be started
 * the others take its share. */
void qm_parallel(int workers, int tasks, qm_task_fn *fn, void *ctx);
/* qm_parallel() over items [0, n) in ranges of `per`: fn(ctx, begin, end,
 * worker) once for each range. */
typedef void qm_range_fn(void *ctx, size_t begin, size_t end, int worker);
void qm_parallel_ranges(int workers, size_t n, size_t per, qm_range_fn *fn, void *ctx);

/* ---- where a command may write (paths.c) ------------------------------------- */

/* An input a command reads, for qm_path_check_output(): its path as given
 * and what it is, for the message ("the model directory", "the plan"). */
typedef struct qm_path_input {
    const char *path; /* NULL: none (skipped) */
    const char *what;
} qm_path_input;

/* QM_OK when writing `out` (the value of option `opt`, e.g. "-o") cannot
 * touch any of in[0, n): out is none of them and not inside an input
 * directory; with out_is_dir, an existing out also holds no input (a
 * directory output gets files of the command's choosing).  Files are
 * compared as the kernel knows them (device and inode, symbolic links
 * resolved), never by spelling; an out that does not exist yet is compared
 * through the directory it would be created in.  Otherwise QM_EINVAL with a
 * message naming both paths.  Inputs that do not exist are skipped: their
 * readers report them. */
qm_status qm_path_check_output(const char *opt, const char *out, int out_is_dir, const qm_path_input *in, size_t n,
                               qm_diag *d);

/* An exclusive lock on an output directory: flock() on DIR/.qmoe-lock,
 * which holds the holder's process id.  The lock goes with the process, so
 * a run that was killed leaves nothing that blocks the next one. */
typedef struct qm_lock {
    int fd;     /* -1 when not held */
    char *path; /* owned */
} qm_lock;

/* Take the lock on the existing directory dir, without waiting: when
 * another process holds it, QM_EINVAL naming dir and that process. */
qm_status qm_dir_lock(const char *dir, qm_lock *l, qm_diag *d);
/* Release the lock and remove its file.  Safe after a failed qm_dir_lock(),
 * twice, and on a lock initialised as {-1, NULL} and never taken. */
void qm_dir_unlock(qm_lock *l);

/* ---- SHA-256 ---------------------------------------------------------------- */

typedef struct qm_sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t fill;
} qm_sha256;

void qm_sha256_init(qm_sha256 *s);
void qm_sha256_update(qm_sha256 *s, const void *data, size_t n);
/* Finish and write 64 lowercase hex digits and a NUL. */
void qm_sha256_hex(qm_sha256 *s, char out[65]);
qm_status qm_sha256_file(const char *path, char out[65], qm_diag *d);

/* ---- YAML output ----------------------------------------------------------- */

/* A small layer over libyaml's emitter with explicit structure calls.
 * Errors are sticky: check qm_yaml_end()'s result once at the end. */
typedef struct qm_yaml qm_yaml;

qm_yaml *qm_yaml_begin(FILE *f); /* caller ends with qm_yaml_end(); NULL when out of memory */
/* The same calls printing JSON to f (--format json): objects, arrays, a
 * scalar in a key's place as a string, NaN and infinities as null; ended
 * with qm_yaml_end() like the other.  NULL when out of memory. */
qm_yaml *qm_json_begin(FILE *f);
void qm_yaml_map(qm_yaml *y);    /* start a block mapping */
void qm_yaml_flow_map(qm_yaml *y);
void qm_yaml_seq(qm_yaml *y);    /* start a block sequence */
void qm_yaml_flow_seq(qm_yaml *y);
void qm_yaml_close(qm_yaml *y);  /* end the innermost mapping or sequence */
void qm_yaml_str(qm_yaml *y, const char *s); /* quoted only when YAML needs it */
void qm_yaml_int(qm_yaml *y, long long v);
void qm_yaml_uint(qm_yaml *y, unsigned long long v);
void qm_yaml_real(qm_yaml *y, double v, int digits); /* %.*f */
void qm_yaml_sci(qm_yaml *y, double v, int digits);  /* %.*e: a float YAML 1.1 readers take for one too */
void qm_yaml_bool(qm_yaml *y, int v);
void qm_yaml_null(qm_yaml *y);
/* key: value helpers for mappings */
void qm_yaml_kstr(qm_yaml *y, const char *k, const char *v);
void qm_yaml_kint(qm_yaml *y, const char *k, long long v);
void qm_yaml_kuint(qm_yaml *y, const char *k, unsigned long long v);
/* Close everything still open, finish the document, free; QM_OK or QM_EIO. */
/* End the document and free y.  A write that failed is left in the
 * stream's error flag for its owner to report with the path and errno
 * (qm_afile_commit() does); QM_EIO here means libyaml refused an event. */
qm_status qm_yaml_end(qm_yaml *y, qm_diag *d);

/* For writers that print YAML directly where libyaml would be too slow (a
 * 235B model's plan): how qm_yaml_str() would emit `s` in a flow (flow = 1)
 * or block context, when s is simple enough to say: 1 plain, 2
 * single-quoted, 0 not simple (use the emitter). */
int qm_yaml_simple_style(const char *s, int flow);
/* Print s to f as a scalar inside a flow collection, on one line, for
 * writers that print YAML lines themselves: plain or single-quoted as
 * qm_yaml_str() would where qm_yaml_simple_style() says, else libyaml's
 * double quotes with escapes.  QM_OK, QM_ENOMEM, or QM_EIO (a write failed
 * or s is not UTF-8). */
qm_status qm_yaml_put_flow_str(FILE *f, const char *s, qm_diag *d);

/* ---- YAML input (yaml_in.c) ------------------------------------------------ */

/* The one reader of the YAML files qmoe reads back: plans, scores files and
 * bench records.  A document loads into a tree of read-only nodes in an
 * arena the caller frees.  It is strict where those files' readers would
 * otherwise guess: a mapping whose key appears twice, a key that is not a
 * scalar, an alias, a second document, nesting deeper than
 * QM_YIN_MAX_DEPTH and input longer than QM_YIN_MAX_BYTES are all refused,
 * and numbers are typed (a quoted "128" is a string, not a number). */
enum {
    /* A 235B-scale plan (37k tensors) is ~8 MB and one for a model four
     * times its size would be ~32 MB; past 256 MiB the input is something
     * else (a checkpoint shard passed by mistake) and loading it would
     * only cost memory. */
    QM_YIN_MAX_BYTES = 256 << 20,
    /* qmoe's files nest 4 deep (plan, tensors, a tensor, its shape); 64
     * leaves any hand-written file room while a runaway nesting ("[[[[...")
     * is refused before libyaml's stacks grow with it. */
    QM_YIN_MAX_DEPTH = 64,
};

typedef enum qm_ykind { QM_YSCALAR, QM_YSEQ, QM_YMAP } qm_ykind;

typedef struct qm_ynode qm_ynode;
typedef struct qm_ypair {
    const qm_ynode *key; /* a scalar, unique within its mapping (as a C string, as readers look keys up) */
    const qm_ynode *val;
} qm_ypair;

struct qm_ynode {
    qm_ykind kind;
    unsigned line, col; /* 1-based position where it starts (QM_YIN_MAX_BYTES keeps them in range) */
    int plain;          /* a scalar neither quoted nor tagged: only such a one is a number or a boolean */
    size_t n;           /* scalar: bytes of text; sequence: items; mapping: pairs */
    union {
        const char *text;            /* scalar: NUL-terminated */
        const qm_ynode *const *item; /* sequence: (n) */
        const qm_ypair *pair;        /* mapping: (n), in the document's order */
    };
};

/* Load the YAML file at path: its nodes go into *a (the caller frees them
 * with qm_arena_free()) and *root is the document's top node, NULL when the
 * file holds no document.  Errors are QM_EFORMAT with a message naming the
 * file, and line and column where there is one, followed by `hint` (NULL
 * for none; e.g. what to do about it); a file that cannot be opened or read
 * is QM_ENOTFOUND or QM_EIO. */
qm_status qm_yin_load(const char *path, const char *hint, qm_arena *a, const qm_ynode **root, qm_diag *d);
/* The same from f, opened by the caller (who closes it); path names it in messages. */
qm_status qm_yin_load_file(FILE *f, const char *path, const char *hint, qm_arena *a, const qm_ynode **root,
                           qm_diag *d);
/* map's value for key; NULL when map is NULL or not a mapping or has no such key. */
const qm_ynode *qm_yin_get(const qm_ynode *map, const char *key);
/* n's text when it is a scalar (quoted or not); NULL otherwise (n NULL too). */
const char *qm_yin_str(const qm_ynode *n);
/* Typed scalars: 1 and *v set when n is a plain scalar of the type, else 0
 * and *v untouched.  An integer is decimal and fits a long long; a real is
 * what strtod reads whole (not one too large for a double) or YAML's .nan,
 * .inf and -.inf; a boolean is true or false. */
int qm_yin_int(const qm_ynode *n, long long *v);
int qm_yin_real(const qm_ynode *n, double *v);
int qm_yin_bool(const qm_ynode *n, int *v);

#endif
