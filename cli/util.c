/* util.c: pieces several subcommands share: loading a model, progress lines. */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "cli/cli.h"

qm_status qm_cli_open_net(const char *dir, qm_model **m, qm_net *net, qm_diag *d)
{
    qm_status st = qm_model_open(dir, m, d);
    if (st != QM_OK)
        return st;
    if ((st = qm_net_load(*m, net, d)) != QM_OK) {
        qm_model_close(*m);
        *m = NULL;
    }
    return st;
}

void qm_cli_close_net(qm_model *m, qm_net *net)
{
    if (!m)
        return;
    qm_net_free(net);
    qm_model_close(m);
}

int qm_cli_progress_start(qm_cli_progress *p, int quiet)
{
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    return !quiet && isatty(2);
}

void qm_cli_progress_show(void *ctx, size_t done, size_t total)
{
    qm_cli_progress *p = ctx;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - p->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - p->t0.tv_nsec);
    double rate = (double)done / (s > 0 ? s : 1e-9);
    fprintf(stderr, "\rqmoe: %zu/%zu tokens  %.0f tok/s  ETA %.0f s   ", done, total, rate,
            (double)(total - done) / (rate > 0 ? rate : 1));
    if (done == total)
        fputc('\n', stderr);
}
