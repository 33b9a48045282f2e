/* cmd_gptq_tensor.c: `qmoe gptq-tensor`: GPTQ on one linear, from files. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/gptq.h"
#include "runtime/pack.h"
#include "model/safetensors.h"

/* The 2-D tensor `name` of `path` as float32 (rows, cols); caller frees. */
static qm_status read_matrix(const char *path, const char *name, float **m, int *rows, int *cols, qm_diag *d)
{
    qm_st_file *f;
    qm_status st = qm_st_open(path, &f, d);
    if (st != QM_OK)
        return st;
    const qm_st_tensor *t = qm_st_find(f, name);
    if (!t || t->ndim != 2 || t->shape[0] > (1u << 30) || t->shape[1] > (1u << 30)) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: needs a 2-D tensor named '%s'", path, name);
    } else if ((st = qm_st_check_live(f, t, d)) != QM_OK) {
        /* the file changed since it was opened: reading would die of SIGBUS */
    } else if (!(*m = malloc((size_t)t->numel * sizeof **m))) {
        st = qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    } else if ((st = qm_st_to_f32(path, t, *m, d)) != QM_OK) {
        free(*m);
    } else {
        *rows = (int)t->shape[0];
        *cols = (int)t->shape[1];
    }
    qm_st_close(f);
    return st;
}

/* dequantized weight and the GPTQ checkpoint tensors of one linear */
static qm_status write_result(const char *path, const qm_qresult *r, int bits, qm_diag *d)
{
    int out = r->out, in = r->in;
    if ((in * bits) % 32 || (out * bits) % 32)
        return qm_diag_fail(d, QM_EINVAL, "%s: packing needs in and out to be multiples of 32/gcd(bits, 32)", path);
    qm_packed_linear p;
    qm_status st = qm_pack_linear(r, bits, qm_pack_names, &p, d);
    if (st != QM_OK)
        return st;
    uint64_t sw[2] = {(uint64_t)out, (uint64_t)in};
    qm_st_entry e[] = {{"weight", QM_DT_F32, 2, sw, r->deq}, p.e[0], p.e[1], p.e[2], p.e[3]};
    char b[16];
    snprintf(b, sizeof b, "%d", bits);
    const char *meta[] = {"format", "pt", "checkpoint_format", "gptq", "bits", b, NULL};
    st = qm_st_write(path, e, sizeof e / sizeof *e, meta, d);
    qm_packed_linear_free(&p);
    return st;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"weight", required_argument, NULL, 'w'}, {"inputs", required_argument, NULL, 'x'},
        {"bits", required_argument, NULL, 'b'},   {"group", required_argument, NULL, 'g'},
        {"sym", no_argument, NULL, 's'},          {"asym", no_argument, NULL, 'a'},
        {"act-order", no_argument, NULL, 'A'},    {"static-groups", no_argument, NULL, 'S'},
        {"mse", no_argument, NULL, 'M'},          {"damp", required_argument, NULL, 'd'},
        {"output", required_argument, NULL, 'o'}, {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *wpath = NULL, *xpath = NULL, *out = NULL, *group_arg = NULL;
    long bits = 0;
    qm_qspec spec = qm_qspec_default();
    double damp = spec.damp;
    int yaml = 0, json = 0, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "ho:f:", opts, NULL)) != -1) {
        char *end;
        switch (o) {
        case 'w': wpath = optarg; break;
        case 'x': xpath = optarg; break;
        case 'o': out = optarg; break;
        case 'g': group_arg = optarg; break;
        case 's': spec.sym = 1; break;
        case 'a': spec.sym = 0; break;
        case 'A': spec.act_order = 1; break;
        case 'S': spec.static_groups = 1; break;
        case 'M': spec.mse = 1; break;
        case 'b':
            if (qm_cli_long(&qm_cmd_gptq_tensor, "--bits", optarg, 2, 8, &bits))
                return QM_EXIT_USAGE;
            if (!qm_is_width(bits)) {
                char w[64];
                return qm_cli_usage(&qm_cmd_gptq_tensor, "--bits must be %s, not %ld",
                                    qm_widths_text(w, sizeof w, "", ", ", " or "), bits);
            }
            break;
        case 'd':
            damp = strtod(optarg, &end);
            if (end == optarg || *end || !(damp >= 0 && damp <= 10))
                return qm_cli_usage(&qm_cmd_gptq_tensor, "--damp must be a number in [0, 10], not '%s'", optarg);
            break;
        case 'f':
            yaml = strcmp(optarg, "yaml") == 0;
            json = strcmp(optarg, "json") == 0;
            if (!yaml && !json && strcmp(optarg, "text") != 0)
                return qm_cli_usage(&qm_cmd_gptq_tensor, "--format must be 'text', 'yaml' or 'json', not '%s'",
                                    optarg);
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_gptq_tensor.synopsis, qm_cmd_gptq_tensor.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_gptq_tensor, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return qm_cli_usage(&qm_cmd_gptq_tensor, "unexpected argument '%s'", argv[optind]);
    if (!wpath || !xpath || !bits)
        return qm_cli_usage(&qm_cmd_gptq_tensor, "--weight, --inputs and --bits are required");
    spec.bits = (int)bits;
    spec.damp = damp;

    qm_diag *d = qm_diag_new();
    float *W = NULL, *X = NULL, *H = NULL, *H2 = NULL;
    int rows, in, n, xin;
    qm_qresult g = {0}, r = {0};
    double secs = 0;
    qm_status st = read_matrix(wpath, "weight", &W, &rows, &in, d);
    if (st == QM_OK)
        st = read_matrix(xpath, "inputs", &X, &n, &xin, d);
    if (st == QM_OK && xin != in)
        st = qm_diag_fail(d, QM_EINVAL, "%s: inputs have %d columns, the weight %d", xpath, xin, in);
    if (st == QM_OK) {
        long grp = 0;
        if (!group_arg)
            grp = qm_plan_default_group((uint64_t)in);
        else if (strcmp(group_arg, "none") != 0 && strcmp(group_arg, "0") != 0 &&
                 qm_cli_long(&qm_cmd_gptq_tensor, "--group", group_arg, 1, in, &grp))
            st = QM_EINVAL;
        else if (grp && in % grp)
            st = qm_diag_fail(d, QM_EINVAL, "--group %ld does not divide the %d input columns", grp, in);
        spec.group = (int)grp;
    }
    if (st == QM_OK && (!(H = calloc((size_t)in * in, sizeof *H)) || !(H2 = malloc((size_t)in * in * sizeof *H2))))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        double t0 = qm_clock();
        qm_hessian_add(H, X, n, in);
        qm_hessian_finish(H, in, n);
        memcpy(H2, H, (size_t)in * in * sizeof *H);
        st = qm_gptq(W, rows, in, H2, &spec, &g, d);
        secs = qm_clock() - t0;
    }
    if (st == QM_OK)
        st = qm_rtn(W, rows, in, &spec, &r, d);
    if (st == QM_OK && out)
        st = write_result(out, &g, spec.bits, d);
    if (st == QM_OK) {
        double e = qm_relative_error(W, g.deq, rows, in, H), er = qm_relative_error(W, r.deq, rows, in, H);
        if (yaml || json) {
            qm_yaml *y = json ? qm_json_begin(stdout) : qm_yaml_begin(stdout);
            qm_yaml_map(y);
            qm_yaml_str(y, "relative_error");
            qm_yaml_real(y, e, 8);
            qm_yaml_str(y, "rtn_relative_error");
            qm_yaml_real(y, er, 8);
            qm_yaml_str(y, "seconds");
            qm_yaml_real(y, secs, 3);
            qm_yaml_kint(y, "bits", spec.bits);
            qm_yaml_kint(y, "group_size", spec.group);
            qm_yaml_str(y, "sym");
            qm_yaml_bool(y, spec.sym);
            qm_yaml_str(y, "act_order");
            qm_yaml_bool(y, spec.act_order);
            qm_yaml_str(y, "damp");
            qm_yaml_real(y, g.damp, 6);
            qm_yaml_kint(y, "damp_retries", g.retries);
            qm_yaml_kint(y, "dead_columns", g.dead);
            st = qm_yaml_end(y, d);
        } else {
            printf("linear %d x %d, %d calibration rows, %d bits, group %d, %s%s\n", rows, in, n, spec.bits,
                   spec.group, spec.sym ? "sym" : "asym", spec.act_order ? ", act-order" : "");
            printf("relative_error      %.8f\n", e);
            printf("rtn_relative_error  %.8f\n", er);
            printf("seconds             %.3f\n", secs);
            if (g.retries || g.dead)
                printf("damping %g after %d retries; %d dead columns\n", g.damp, g.retries, g.dead);
        }
    }
    if (st == QM_OK && (fflush(stdout) != 0 || ferror(stdout)))
        st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
    qm_qresult_free(&g);
    qm_qresult_free(&r);
    free(W);
    free(X);
    free(H);
    free(H2);
    int rc = qm_cli_report(d);
    qm_diag_free(d);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_gptq_tensor = {
    .name = "gptq-tensor",
    .run = run,
    .synopsis = "gptq-tensor --weight W.safetensors --inputs X.safetensors --bits B [--group G|none]\n"
                "                 [--sym|--asym] [--act-order] [--damp D] [-o OUT.safetensors] [--format yaml|json]",
    .summary = "GPTQ on one linear layer, with the error against round-to-nearest",
    .help = "W holds a 2-D tensor 'weight' (out, in); X holds 'inputs' (tokens, in); F32, F16 or BF16.\n"
            "Prints relative_error = ||W X^T - Q X^T||^2 / ||W X^T||^2 (Frobenius), the same for\n"
            "round-to-nearest on the same grid, and the GPTQ seconds (Hessian included).\n\n"
            "  --bits B          2, 3, 4 or 8\n"
            "  --group G         input columns per group, or none (per channel); default 128 when it\n"
            "                    divides the columns, else none\n"
            "  --sym, --asym     grid (default sym)\n"
            "  --act-order       columns by descending Hessian diagonal\n"
            "  --static-groups   groups fixed from the original weights (with --act-order)\n"
            "  --mse             search the clipping range\n"
            "  --damp D          damping, fraction of the mean Hessian diagonal (default 0.01)\n"
            "  -o FILE           write 'weight' (dequantized, F32) and qweight, qzeros, scales, g_idx\n"
            "  --format FORMAT   text (default), yaml or json (the same keys)\n",
};
