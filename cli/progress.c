/* progress.c: the progress lines of every long-running command (quantize,
 * measure, score, eval, bench), one sink for all of them.
 *
 * Library code reports through a qm_progress_fn (base.h), one line at a
 * time; qm_cli_line() is that function for every command.  Where standard
 * error goes decides how a line is shown:
 *
 *   a terminal   each line replaces the one before it in place (carriage
 *                return, erase to the end of the line, no newline), so a
 *                long run shows one status line (layer i/N, tokens per
 *                second, ETA) that moves; qm_cli_progress_end() ends the
 *                line left standing before anything else is printed
 *                (qm_cli_report() does, and the commands before their
 *                results go to standard output)
 *   anything else   (a log file, a pipe) each line on a line of its own,
 *                except passing detail: a line that begins with '\r'
 *                (qm_progress_fn's convention: the start of a layer,
 *                each linear of quantize) is shown only on a terminal,
 *                so a log gets one line per layer
 *
 * The state (is stderr a terminal, is a line standing) is the process's
 * own, like stderr itself: commands run one at a time.
 */
#include "config.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static int tty = -1;   /* stderr is a terminal: -1 not asked yet */
static int standing;   /* a line is drawn without its newline */

static int on_terminal(void)
{
    if (tty < 0)
        tty = isatty(2);
    return tty;
}

/* "qmoe: LINE" in place of the standing line (terminal only). */
static void draw(const char *line)
{
    fprintf(stderr, "\r\033[Kqmoe: %s", line);
    fflush(stderr);
    standing = 1;
}

void qm_cli_line(void *ctx, const char *line)
{
    (void)ctx;
    int detail = line[0] == '\r';
    if (on_terminal())
        draw(line + detail);
    else if (!detail)
        fprintf(stderr, "qmoe: %s\n", line);
}

void qm_cli_progress_end(void)
{
    if (standing)
        fputc('\n', stderr);
    standing = 0;
}

int qm_cli_progress_start(qm_cli_progress *p, int quiet)
{
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    return !quiet && on_terminal();
}

void qm_cli_progress_show(void *ctx, size_t done, size_t total)
{
    qm_cli_progress *p = ctx;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double s = (double)(t.tv_sec - p->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - p->t0.tv_nsec);
    double rate = (double)done / (s > 0 ? s : 1e-9);
    char line[160];
    snprintf(line, sizeof line, "%zu/%zu tokens  %.0f tok/s  ETA %.0f s", done, total, rate,
             (double)(total - done) / (rate > 0 ? rate : 1));
    draw(line);
}
