/* svg.c: the bench's plot: mean KL divergence (log scale) against average
 * bits, one labelled point per policy, the Pareto front drawn as a staircase
 * through its points (matrix.h).
 *
 * Plain SVG 1.1 with no scripts or external references, so any browser or
 * image viewer shows it.  KLD spans orders of magnitude between 2 and 8 bits,
 * hence the log axis; a KLD of 0 (a lossless run) is drawn on the axis floor.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "matrix/matrix.h"

enum { W = 880, H = 560, LEFT = 80, RIGHT = 200, TOP = 50, BOTTOM = 60 };

typedef struct axes {
    double x0, x1;      /* bits at the left and right edges */
    double ly0, ly1;    /* log10 KLD at the bottom and top edges */
} axes;

static double px(const axes *a, double bits) { return LEFT + (bits - a->x0) / (a->x1 - a->x0) * (W - LEFT - RIGHT); }

static double py(const axes *a, double kld)
{
    double l = kld > 0 ? log10(kld) : a->ly0;
    l = l < a->ly0 ? a->ly0 : l;
    return TOP + (a->ly1 - l) / (a->ly1 - a->ly0) * (H - TOP - BOTTOM);
}

/* Text with the five XML special characters escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

static axes fit(const qm_matrix_row *rows, size_t n)
{
    double bmin = INFINITY, bmax = -INFINITY, kmin = INFINITY, kmax = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double b = rows[i].average_bits, k = rows[i].ev.kld_mean;
        bmin = b < bmin ? b : bmin;
        bmax = b > bmax ? b : bmax;
        if (k > 0) {
            kmin = k < kmin ? k : kmin;
            kmax = k > kmax ? k : kmax;
        }
    }
    axes a = {floor(n ? bmin : 2), ceil(n ? bmax : 8), -3, 0};
    if (a.x1 - a.x0 < 1)
        a.x1 = a.x0 + 1;
    if (kmin <= kmax) {
        /* the bottom on a decade, the top a little above the largest KLD,
         * so that a point just past a decade does not waste one */
        a.ly0 = floor(log10(kmin));
        a.ly1 = log10(kmax) + 0.15;
        if (a.ly1 - a.ly0 < 1)
            a.ly1 = a.ly0 + 1;
    }
    return a;
}

static void grid(FILE *f, const axes *a)
{
    int x1 = W - RIGHT, y1 = H - BOTTOM;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", LEFT, TOP,
            x1 - LEFT, y1 - TOP);
    double step = a->x1 - a->x0 > 8 ? 2 : a->x1 - a->x0 > 3 ? 1 : 0.5;
    for (double b = a->x0; b <= a->x1 + 1e-9; b += step) {
        double x = px(a, b);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", x, TOP, x, y1);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, y1 + 18, b);
    }
    for (int e = (int)a->ly0; e <= (int)floor(a->ly1); e++) {
        double y = py(a, pow(10, e));
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT, y, x1, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n", LEFT - 6, y + 4, e);
        for (int m = 2; m < 10 && log10(m) + e <= a->ly1; m++) {
            double ym = py(a, m * pow(10, e));
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#444\"/>\n", LEFT, ym, LEFT + 4,
                    ym);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">average bits per quantized weight</text>\n",
            (LEFT + x1) / 2, H - 18);
    fprintf(f, "<text transform=\"translate(20 %d) rotate(-90)\" text-anchor=\"middle\">mean KL divergence "
               "(nats/token, log scale)</text>\n", (TOP + y1) / 2);
}

/* The front as a staircase: from each front point right to the next one's
 * bits, then down to its KLD (rows sorted by bits). */
static void front(FILE *f, const axes *a, const qm_matrix_row *rows, size_t n)
{
    int started = 0;
    double lx = 0, ly = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].pareto)
            continue;
        double x = px(a, rows[i].average_bits), y = py(a, rows[i].ev.kld_mean);
        if (!started)
            fprintf(f, "<path d=\"M%.1f %.1f", x, y);
        else
            fprintf(f, " L%.1f %.1f L%.1f %.1f", x, ly, x, y);
        started = 1;
        lx = x;
        ly = y;
    }
    if (started)
        fprintf(f, " L%.1f %.1f\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"2\"/>\n", lx, ly);
}

/* A label's box: x, y of its top left corner, width and height. */
typedef struct box {
    double x, y, w, h;
} box;

static int overlap(const box *p, const box *q)
{
    return p->x < q->x + q->w && q->x < p->x + p->w && p->y < q->y + q->h && q->y < p->y + p->h;
}

/* Names beside their points, each at the first of a few places around the
 * point where it covers no other label and no point (widths estimated at
 * 5.6 px a character of the 10 px font); the first place when none is free. */
static void labels(FILE *f, const axes *a, const qm_matrix_row *rows, size_t n)
{
    static const struct {
        double dx, dy;
        int right;
    } at[] = {{8, 3, 1}, {-8, 3, 0}, {8, -8, 1}, {8, 14, 1}, {-8, -8, 0}, {-8, 14, 0}};
    enum { PLACES = sizeof at / sizeof *at };
    box *used = malloc((2 * n + 1) * sizeof *used);
    size_t nu = 0;
    for (size_t i = 0; used && i < n; i++) /* the points themselves */
        used[nu++] = (box){px(a, rows[i].average_bits) - 5, py(a, rows[i].ev.kld_mean) - 5, 10, 10};
    for (size_t i = 0; i < n; i++) {
        double x = px(a, rows[i].average_bits), y = py(a, rows[i].ev.kld_mean), w = 5.6 * (double)strlen(rows[i].name);
        int pick = 0;
        box b = {0};
        for (int k = 0; k < PLACES; k++) {
            box c = {at[k].right ? x + at[k].dx : x + at[k].dx - w, y + at[k].dy - 9, w, 11};
            int free_here = 1;
            for (size_t j = 0; used && j < nu && free_here; j++)
                free_here = !overlap(&c, &used[j]);
            if (k == 0)
                b = c;
            if (free_here) {
                pick = k;
                b = c;
                break;
            }
        }
        if (used)
            used[nu++] = b;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"%s\">", x + at[pick].dx,
                y + at[pick].dy, at[pick].right ? "start" : "end");
        xml_text(f, rows[i].name);
        fputs("</text>\n", f);
    }
    free(used);
}

void qm_matrix_svg(const qm_matrix_row *rows, size_t n, const char *title, FILE *f)
{
    axes a = fit(rows, n);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"15\" text-anchor=\"middle\">", (LEFT + W - RIGHT) / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
    grid(f, &a);
    front(f, &a, rows, n);
    for (size_t i = 0; i < n; i++) {
        const qm_matrix_row *r = &rows[i];
        double x = px(&a, r->average_bits), y = py(&a, r->ev.kld_mean);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\" stroke=\"#222\"><title>", x, y,
                r->pareto ? 5 : 4, r->pareto ? "#c0392b" : "#7f8c8d");
        xml_text(f, r->name);
        fprintf(f, ": %.3f bits, KLD %.5f</title></circle>\n", r->average_bits, r->ev.kld_mean);
    }
    labels(f, &a, rows, n);
    int lx = W - RIGHT + 16;
    fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"#c0392b\" stroke=\"#222\"/>"
               "<text x=\"%d\" y=\"%d\">Pareto front</text>\n", lx, TOP + 10, lx + 10, TOP + 14);
    fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"#7f8c8d\" stroke=\"#222\"/>"
               "<text x=\"%d\" y=\"%d\">dominated</text>\n", lx, TOP + 30, lx + 10, TOP + 34);
    fputs("</svg>\n", f);
}
