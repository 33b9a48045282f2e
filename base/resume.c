/* resume.c: a resumable run's state folder and state file (base.h tells the
 * story).  The state file is small and read with stdio; every write goes
 * through the atomic output of afile.c. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

char *qm_resume_path(const char *dir, const char *file) { return qm_strfmt("%s/%s", dir, file); }

/* One line of f without its newline into buf; 0 at the end of the file or
 * for a line longer than cap - 1. */
static int line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f))
        return 0;
    size_t n = strlen(buf);
    if (!n || buf[n - 1] != '\n')
        return 0;
    buf[n - 1] = 0;
    return 1;
}

int qm_resume_match(const char *dir, const qm_resume_field *fields, int n, int *layers_done)
{
    char *p = qm_resume_path(dir, "state");
    const char *why;
    FILE *f = p ? qm_fopen_regular(p, &why) : NULL;
    free(p);
    if (!f)
        return -1;
    char buf[1024];
    int got = -1, differs = n;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(fields[i].name);
        if (!line(f, buf, sizeof buf) || strncmp(buf, fields[i].name, k) || buf[k] != ' ')
            goto out; /* not a state file of this kind */
        if (differs == n && strcmp(buf + k + 1, fields[i].value))
            differs = i;
    }
    int done;
    char end;
    if (line(f, buf, sizeof buf) && sscanf(buf, "layers_done %d%c", &done, &end) == 1 && done >= 0) {
        got = differs;
        if (differs == n)
            *layers_done = done;
    }
out:
    fclose(f);
    return got;
}

typedef struct mark {
    const qm_resume_field *fields;
    int n, layers_done;
} mark;

static qm_status put_mark(const void *ctx, FILE *f, qm_diag *d)
{
    const mark *m = ctx;
    (void)d;
    for (int i = 0; i < m->n; i++)
        fprintf(f, "%s %s\n", m->fields[i].name, m->fields[i].value);
    fprintf(f, "layers_done %d\n", m->layers_done);
    return QM_OK;
}

qm_status qm_resume_mark(const char *dir, const qm_resume_field *fields, int n, int layers_done, qm_diag *d)
{
    mark m = {fields, n, layers_done};
    char *p = qm_resume_path(dir, "state");
    qm_status st = p ? qm_afile_write(p, put_mark, &m, 1, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    free(p);
    return st;
}

qm_status qm_resume_save(const char *dir, const char *file, const void *data, size_t n, qm_diag *d)
{
    char *p = qm_resume_path(dir, file);
    qm_status st = p ? qm_afile_write_bytes(p, data, n, 1, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    free(p);
    return st;
}

qm_status qm_resume_load(const char *dir, const char *file, void *data, size_t n, qm_diag *d)
{
    char *p = qm_resume_path(dir, file);
    qm_status st = p ? qm_afile_read_bytes(p, data, n, dir, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    free(p);
    return st;
}

void qm_resume_drop(const char *dir, const char *file)
{
    char *p = qm_resume_path(dir, file);
    if (p)
        remove(p);
    free(p);
}
