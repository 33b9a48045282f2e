/* util.c: pieces several subcommands share: sizes, opening a model to run. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/dist.h"
#include "model/gguf.h"

int qm_cli_mpi_timeout(const qm_cmd *cmd, const char *arg, double *t)
{
    if (qm_dist_parse_timeout(arg, t))
        return 0;
    qm_cli_usage(cmd, "--mpi-timeout must be a number of seconds > 0, not '%s'", arg);
    return 1;
}

int qm_cli_end_job(qm_dist *dist, qm_status st, qm_diag *d)
{
    int ranks = qm_dist_size(dist);
    if (st != QM_OK && ranks > 1 && d)
        qm_diag_note(d, "on rank %d of %d; the whole job ends", qm_dist_rank(dist), ranks);
    int rc = d ? qm_cli_report(d) : QM_EXIT_FAIL;
    qm_diag_free(d);
    if (st != QM_OK) /* the other ranks may wait for this one: end them too */
        qm_dist_abort(dist, QM_EXIT_FAIL);
    qm_dist_close(dist);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

int qm_cli_size(const qm_cmd *cmd, const char *opt, const char *arg, size_t *v)
{
    static const char units[] = "KMGT";
    char *end;
    errno = 0;
    double x = strtod(arg, &end);
    const char *u = *end ? strchr(units, *end) : NULL;
    double scale = u ? ldexp(1.0, 10 * (int)(u - units + 1)) : 1;
    if (u)
        end++;
    if (u && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (end == arg || *end || errno || !(x > 0) || x * scale >= 0x1p63 || x * scale < 1) {
        qm_cli_usage(cmd, "%s must be a size such as 512M, 16G or 64GiB, not '%s'", opt, arg);
        return 1;
    }
    *v = (size_t)(x * scale);
    return 0;
}

qm_status qm_cli_open_net(const char *dir, qm_model **m, qm_net *net, qm_diag *d)
{
    qm_status st = qm_model_open(dir, m, d);
    if (st != QM_OK)
        return st;
    if ((st = qm_net_open(*m, net, d)) != QM_OK) {
        qm_model_close(*m);
        *m = NULL;
    }
    return st;
}

qm_status qm_cli_open_gguf_net(const char *path, const char *base, qm_model **m, qm_net *net, qm_diag *d)
{
    qm_status st = qm_model_open(base, m, d);
    if (st == QM_OK && (st = qm_model_attach_gguf(*m, path, d)) == QM_OK)
        st = qm_net_open(*m, net, d);
    if (st != QM_OK) {
        qm_model_close(*m);
        *m = NULL;
    }
    return st;
}

int qm_cli_is_gguf(const char *p)
{
    size_t n = strlen(p);
    return n > 5 && strcmp(p + n - 5, ".gguf") == 0;
}

void qm_cli_close_net(qm_model *m, qm_net *net)
{
    if (!m)
        return;
    qm_model_close(m);
}
