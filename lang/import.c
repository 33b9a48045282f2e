/* import.c: finding imported policies and expanding them in place.
 *
 * An import names a policy the way a C include names a header: "paper/attn-4bit"
 * is looked for as paper/attn-4bit.qmoe in the -I directories, then in each
 * directory of $QMOE_PATH, then in the installed standard library.  Expansion
 * splices the imported statements where the import stood, recursively; the
 * chain of files being expanded is kept (by device and inode, so two
 * spellings of one file are one file) to report a cycle as the chain that
 * closes it.  Still the front end: no model is involved.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lang/internal.h"

#ifndef QM_DATADIR
#define QM_DATADIR "/usr/local/share/qmoe"
#endif

enum { MAX_DEPTH = 32 };

static const char suffix[] = ".qmoe";

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir/file in fresh memory ("." adds nothing, so names stay short). */
static char *join(const char *dir, size_t dlen, const char *file)
{
    if (dlen == 1 && dir[0] == '.')
        return qm_strdup(file);
    int slash = dlen > 0 && dir[dlen - 1] == '/';
    return qm_strfmt("%.*s%s%s", (int)dlen, dir, slash ? "" : "/", file);
}

/* Try dir/file; 1 and *path when it is a file, 0 when not, -1 when out of memory. */
static int try_dir(const char *dir, size_t dlen, const char *file, qm_buf *looked, char **path)
{
    if (dlen == 0)
        return 0;
    char *p = join(dir, dlen, file);
    if (!p)
        return -1;
    if (is_file(p)) {
        *path = p;
        return 1;
    }
    free(p);
    qm_buf_printf(looked, "%s%.*s", looked->n ? ", " : "", (int)dlen, dir);
    return 0;
}

qm_status qm_policy_find_import(const char *name, const char *from_dir, const qm_search *s,
                                char **path, char **looked)
{
    *path = NULL;
    if (looked)
        *looked = NULL;
    size_t nlen = strlen(name), slen = sizeof suffix - 1;
    int has_suffix = nlen >= slen && strcmp(name + nlen - slen, suffix) == 0;
    char *file = qm_strfmt("%s%s", name, has_suffix ? "" : suffix);
    if (!file)
        return QM_ENOMEM;
    qm_buf seen = {0};
    int found = 0;
    if (name[0] == '/') {
        if (is_file(file)) {
            *path = file;
            return QM_OK;
        }
        qm_buf_printf(&seen, "%s", file);
    } else if (strncmp(name, "./", 2) == 0 || strncmp(name, "../", 3) == 0) {
        const char *dir = from_dir && *from_dir ? from_dir : ".";
        found = try_dir(dir, strlen(dir), file + (name[1] == '/' ? 2 : 0), &seen, path);
    } else {
        static const qm_search none = {0};
        if (!s)
            s = &none;
        for (size_t i = 0; i < s->n_dirs && !found; i++)
            found = try_dir(s->dirs[i], strlen(s->dirs[i]), file, &seen, path);
        const char *env = s->path_env ? s->path_env : getenv("QMOE_PATH");
        while (env && *env && !found) {
            const char *colon = strchr(env, ':');
            size_t len = colon ? (size_t)(colon - env) : strlen(env);
            found = try_dir(env, len, file, &seen, path);
            env = colon ? colon + 1 : NULL;
        }
        const char *lib = s->stdlib ? s->stdlib : QM_DATADIR;
        if (!found)
            found = try_dir(lib, strlen(lib), file, &seen, path);
    }
    free(file);
    if (found > 0) {
        free(seen.s);
        return QM_OK;
    }
    if (looked && found == 0 && !seen.oom)
        *looked = seen.s ? seen.s : qm_strdup("");
    else
        free(seen.s);
    return found < 0 || seen.oom ? QM_ENOMEM : QM_ENOTFOUND;
}

/* ---- expansion --------------------------------------------------------------------- */

/* The files being expanded, innermost first. */
typedef struct frame {
    const char *path;
    int known;       /* dev/ino are valid */
    dev_t dev;
    ino_t ino;
    const struct frame *up;
} frame;

static frame frame_of(const char *path, const frame *up)
{
    struct stat sb;
    frame f = {.path = path, .up = up};
    if (stat(path, &sb) == 0) {
        f.known = 1;
        f.dev = sb.st_dev;
        f.ino = sb.st_ino;
    }
    return f;
}

/* "a.qmoe -> b.qmoe -> a.qmoe": the chain from the outermost file, then `last`. */
static void chain_str(qm_buf *b, const frame *f, const char *last)
{
    if (f->up)
        chain_str(b, f->up, NULL);
    qm_buf_printf(b, "%s%s", b->n ? " -> " : "", f->path);
    if (last)
        qm_buf_printf(b, " -> %s", last);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return qm_strdup(".");
    if (slash == path)
        return qm_strdup("/");
    return qm_strfmt("%.*s", (int)(slash - path), path);
}

static qm_status expand(qm_policy *p, const qm_search *s, const frame *chain, int depth, qm_diag *d);

/* The name a plan records for the policy that `name` imports from the
 * policy named `from`: a search-path or absolute name as written, so that
 * it does not depend on where the file was found; a "./" or "../" name
 * joined to the directory of `from`'s name ("paper/a" importing "./b" is
 * "paper/b").  Caller frees; NULL when out of memory. */
static char *import_name(const char *from, const char *name)
{
    if (strncmp(name, "./", 2) != 0 && strncmp(name, "../", 3) != 0)
        return qm_strdup(name);
    const char *slash = strrchr(from, '/');
    const char *rest = name[1] == '/' ? name + 2 : name;
    if (!slash)
        return qm_strdup(rest);
    return qm_strfmt("%.*s/%s", (int)(slash - from), from, rest);
}

/* Expand one import statement of p into out. */
static qm_status expand_import(qm_policy *p, const qm_stmt *st, const qm_search *s,
                               const frame *chain, int depth, lang_vec *out, lang_vec *imports, qm_diag *d)
{
    const qm_source *src = st->src;
    qm_span at = st->u.import.name_span;
    const char *name = st->u.import.name;
    if (depth >= MAX_DEPTH)
        return qm_source_diag(d, QM_SEV_ERROR, src, at, "imports nested more than %d deep", MAX_DEPTH);
    char *dir = dir_of(src->path), *path = NULL, *looked = NULL;
    if (!dir)
        return lang_oom(d, src->path);
    qm_status st_find = qm_policy_find_import(name, dir, s, &path, &looked);
    free(dir);
    if (st_find == QM_ENOMEM)
        return lang_oom(d, src->path);
    if (st_find != QM_OK) {
        qm_source_diag(d, QM_SEV_ERROR, src, at, "cannot find the policy \"%s\"; looked in %s", name,
                       looked && *looked ? looked : "no directory");
        free(looked);
        return QM_ENOTFOUND;
    }
    frame here = frame_of(path, chain);
    for (const frame *f = chain; f; f = f->up)
        if (here.known && f->known && f->dev == here.dev && f->ino == here.ino) {
            qm_buf b = {0};
            chain_str(&b, chain, path);
            qm_status r = b.oom ? lang_oom(d, src->path)
                                : qm_source_diag(d, QM_SEV_ERROR, src, at, "import cycle: %s", b.s);
            free(b.s);
            free(path);
            return r;
        }
    /* a link named like a policy may lead to any file; what is not named
     * *.qmoe where it lies is not read (its errors would show its lines) */
    char *real = realpath(path, NULL);
    size_t rn = real ? strlen(real) : 0;
    if (real && (rn < sizeof suffix - 1 || strcmp(real + rn - (sizeof suffix - 1), suffix) != 0)) {
        qm_status r = qm_source_diag(d, QM_SEV_ERROR, src, at, "%s leads to %s, which is not a policy file (*%s)",
                                     path, real, suffix);
        free(real);
        free(path);
        return r;
    }
    free(real);
    qm_policy *child;
    qm_status r = qm_policy_parse_file(path, &child, d);
    if (r == QM_OK) {
        here.path = child->src->path; /* outlives `path` */
        char *iname = import_name(src->name, name);
        int bad = !iname || lang_source_rename(child, iname) != 0;
        free(iname);
        if (bad || lang_arena_adopt(p->arena, child) != 0) {
            qm_policy_free(child);
            r = lang_oom(d, src->path);
        } else {
            r = expand(child, s, &here, depth + 1, d);
        }
        for (size_t i = 0; r == QM_OK && i < child->n; i++)
            if (!lang_vec_push(p->arena, out, &child->stmt[i]))
                r = lang_oom(d, src->path);
        if (r == QM_OK && !lang_vec_push(p->arena, imports, &child->src))
            r = lang_oom(d, src->path);
        for (size_t i = 0; r == QM_OK && i < child->nimports; i++)
            if (!lang_vec_push(p->arena, imports, &child->imports[i]))
                r = lang_oom(d, src->path);
    }
    if (r != QM_OK && r != QM_ENOMEM)
        qm_source_diag(d, QM_SEV_NOTE, src, at, "in the policy imported here");
    free(path);
    return r;
}

static qm_status expand(qm_policy *p, const qm_search *s, const frame *chain, int depth, qm_diag *d)
{
    lang_vec *out = lang_vec_new(p->arena, sizeof(qm_stmt *));
    lang_vec *imports = lang_vec_new(p->arena, sizeof(const qm_source *));
    if (!out || !imports)
        return lang_oom(d, p->src->path);
    qm_status first = QM_OK;
    for (size_t i = 0; i < p->n; i++) {
        qm_stmt *st = p->stmt[i];
        qm_status r = QM_OK;
        if (st->kind == QM_STMT_IMPORT)
            r = expand_import(p, st, s, chain, depth, out, imports, d);
        else if (!lang_vec_push(p->arena, out, &st))
            r = lang_oom(d, p->src->path);
        if (r != QM_OK && first == QM_OK)
            first = r;
        if (r == QM_ENOMEM)
            return r;
    }
    p->stmt = out->v;
    p->n = out->n;
    p->imports = imports->v;
    p->nimports = imports->n;
    return first;
}

qm_status qm_policy_expand(qm_policy *p, const qm_search *s, qm_diag *d)
{
    frame root = frame_of(p->src->path, NULL);
    qm_status r = expand(p, s, &root, 0, d);
    if (r != QM_OK)
        return r;
    /* one budget and one engine to fit to in all (a file with two was
     * already refused by the parser) */
    const qm_stmt *budget = NULL, *fit = NULL;
    for (size_t i = 0; i < p->n; i++) {
        const qm_stmt *st = p->stmt[i];
        int is_fit = st->kind == QM_STMT_ENGINE && st->u.engine.fit > 0;
        if (st->kind != QM_STMT_BUDGET && !is_fit)
            continue;
        const qm_stmt **first = is_fit ? &fit : &budget;
        if (!*first) {
            *first = st;
            continue;
        }
        size_t line, col;
        qm_source_linecol((*first)->src, (*first)->span.begin, &line, &col);
        r = qm_source_diag(d, QM_SEV_ERROR, st->src, st->span, "a second %s; the first is at %s:%zu",
                           is_fit ? "engine to fit to" : "budget", (*first)->src->path, line);
    }
    return r;
}
