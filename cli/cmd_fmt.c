/* cmd_fmt.c: `qmoe fmt POLICY`: print a policy in canonical form, or
 * rewrite it in place. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "lang/ast.h"

typedef struct formatted {
    const char *path, *text;
    size_t len;
} formatted;

static qm_status put_formatted(const void *ctx, FILE *f, qm_diag *d)
{
    const formatted *p = ctx;
    struct stat sb;
    if (stat(p->path, &sb) == 0)
        fchmod(fileno(f), sb.st_mode & 07777); /* mkstemp made it 0600 */
    if (p->len && fwrite(p->text, 1, p->len, f) != p->len)
        return qm_diag_fail(d, QM_EIO, "%s: cannot write the formatted policy", p->path);
    return QM_OK;
}

/* Replace path's contents with text[0, len) atomically, keeping its mode;
 * failures are reported on stderr. */
static qm_status rewrite(const char *path, const char *text, size_t len)
{
    qm_diag *d = qm_diag_new();
    qm_status st = d ? qm_afile_write(path, put_formatted, &(formatted){path, text, len}, 1, d) : QM_ENOMEM;
    if (d)
        qm_cli_report(d);
    else
        fputs("qmoe: out of memory\n", stderr);
    qm_diag_free(d);
    return st;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"in-place", no_argument, NULL, 'i'},
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int in_place = 0, check = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "hi", opts, NULL)) != -1) {
        switch (o) {
        case 'i': in_place = 1; break;
        case 'c': check = 1; break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_fmt.synopsis, qm_cmd_fmt.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_fmt, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_fmt, "expected one POLICY");
    if (in_place && check)
        return qm_cli_usage(&qm_cmd_fmt, "-i and --check do not go together");
    const char *path = argv[optind];
    qm_diag *d = qm_diag_new();
    if (!d) {
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_policy *p;
    char *text = NULL;
    size_t len = 0;
    int differs = 0;
    qm_status st = qm_policy_parse_file(path, &p, d);
    if (st == QM_OK) {
        st = qm_policy_format(p, &text, &len);
        if (st != QM_OK)
            fputs("qmoe: out of memory\n", stderr);
        else
            differs = len != p->src->len || memcmp(text, p->src->text, len) != 0;
        qm_policy_free(p);
    }
    if (st == QM_OK) {
        if (check) {
            if (differs)
                fprintf(stderr, "%s: not in canonical form; 'qmoe fmt -i %s' rewrites it\n", path, path);
        } else if (in_place) {
            if (differs) /* an unchanged file keeps its time stamp */
                st = rewrite(path, text, len);
        } else if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
            fputs("qmoe: error: writing standard output failed\n", stderr);
            st = QM_EIO;
        }
    }
    free(text);
    int rc = qm_cli_report(d);
    qm_diag_free(d);
    return st != QM_OK || (check && differs) ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_fmt = {
    .name = "fmt",
    .run = run,
    .synopsis = "fmt [-i | --check] POLICY",
    .summary = "print a policy in canonical form (comments kept), or rewrite it",
    .help = "Prints POLICY in canonical form: one statement per line, canonical\n"
            "spacing, comments and single blank lines kept.  Formatting twice changes\n"
            "nothing.  A policy with errors is reported, not formatted.\n\n"
            "  -i, --in-place  rewrite POLICY (atomically; only when it changes)\n"
            "  --check         write nothing; exit 1, naming POLICY, when it is not in\n"
            "                  canonical form\n",
};
