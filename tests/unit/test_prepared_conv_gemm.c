/* test_prepared_conv_gemm.c: the prepared kernels of src/cpu/ops/{conv,gemm,fused,pool}.c
 * (prepare decodes the attributes, picks a variant, prepacks constant weights; run reads
 * k->state).
 *
 * Sessions. Small models in the text form of support/test_text_model.h run through
 * kiln_session (shape inference, every node prepared with its inferred types, prepacked
 * blobs for constant weights, planned memory): Conv and FusedConv (1-D..3-D, groups,
 * depthwise, 1x1, strides, dilations, asymmetric pads, every auto_pad, bias, residual,
 * activation), Gemm and FusedGemm (transA/transB, alpha/beta, every shape of C), MatMul and
 * FusedMatMul (1-D promotion, broadcasting batch dims, bias), each with its weight as an
 * initializer (a constant at prepare), as a graph input, and for Conv as the output of a
 * Reshape by a runtime shape (W's shape unknown at prepare). Random, odd and tiny shapes;
 * every Conv case on one thread and on three, Gemm and MatMul cases alternately.
 *
 * Prepare. The kernels' prepare called directly as an engine calls it (a kiln_prep_store),
 * with the inputs' types static, symbolic or unknown: every variant forced through
 * p->variant must give the reference's result and name itself in p->kernel; an unknown W
 * leaves the choice to the run (p->kernel NULL); a transB Gemm with a constant B makes one
 * blob of K * N floats, and a second prepare "loading" that blob from read-only pages
 * (*fill false, a write would fault) gives the same output; tuning (p->tune, and an engine
 * built with kiln_builder_set_tune) picks an applicable variant. MaxPool / AveragePool's
 * "generic" and "2d" variants likewise.
 *
 * Every result is compared with a float64 reference written from the ONNX definitions:
 * |got - want| <= 1e-5 + 1e-5 * |want| (close_to with tol 1e-5: rel 1e-5, abs 1e-5). Inputs
 * and weights lie on a 1/16 grid in [-1, 1] and alpha/beta/activation parameters are
 * dyadic, so float32 products and sums are exact whatever the summation order: the
 * tolerance then catches layout and indexing mistakes, never rounding. (AveragePool divides,
 * which rounds once; the tolerance covers that.)
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/base.h"
#include "base/pool.h"
#include "exec/engine.h"
#include "infer/infer.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-5 /* close_to: |got - want| <= TOL * (1 + |want|) */

/* ------------------------------------------------------------------ helpers */

/* A growing string (out of memory ends the test). */
struct sb {
    char *p;
    size_t len, cap;
};

static void sbf(struct sb *s, const char *fmt, ...) KILN_PRINTF(2, 3);
static void sbf(struct sb *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) exit(1);
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) exit(1);
        s->p = q;
        s->cap = cap;
    }
}

/* A test tensor: float32 values held as doubles (all on the 1/16 grid). */
struct ten {
    int rank;
    int64_t dims[KILN_MAX_RANK];
    size_t n;
    double *v;
};

static double grid(void)
{
    return (double)(rng_int(33) - 16) / 16.0;
}

static struct ten ten_rand(int rank, const int64_t *dims)
{
    struct ten t = {.rank = rank, .n = 1};
    for (int d = 0; d < rank; d++) {
        t.dims[d] = dims[d];
        t.n *= (size_t)dims[d];
    }
    t.v = malloc((t.n ? t.n : 1) * sizeof *t.v);
    if (!t.v) exit(1);
    for (size_t i = 0; i < t.n; i++) t.v[i] = grid();
    return t;
}

static void ten_free(struct ten *t)
{
    free(t->v);
    t->v = NULL;
}

static struct kiln_value *ten_value(const struct ten *t)
{
    float *f = malloc((t->n ? t->n : 1) * sizeof *f);
    if (!f) exit(1);
    for (size_t i = 0; i < t->n; i++) f[i] = (float)t->v[i];
    struct kiln_value *v = tensor_of(KILN_DTYPE_F32, t->rank, t->dims, f);
    free(f);
    return v;
}

static void sb_dims(struct sb *s, int rank, const int64_t *dims)
{
    if (rank == 0) sbf(s, "-");
    for (int d = 0; d < rank; d++) sbf(s, "%s%lld", d ? "," : "", (long long)dims[d]);
}

/* "init NAME f32 DIMS = values" (constant) or "input NAME f32 DIMS" (graph input). */
static void sb_tensor(struct sb *s, const char *name, const struct ten *t, bool constant)
{
    sbf(s, "%s %s f32 ", constant ? "init" : "input", name);
    sb_dims(s, t->rank, t->dims);
    if (constant) {
        sbf(s, " = ");
        for (size_t i = 0; i < t->n; i++) sbf(s, "%s%g", i ? "," : "", t->v[i]);
    }
    sbf(s, "\n");
}

static void sb_ints(struct sb *s, const char *name, const int64_t *v, int n)
{
    sbf(s, " %s=ints:", name);
    for (int i = 0; i < n; i++) sbf(s, "%s%lld", i ? "," : "", (long long)v[i]);
}


/* Output `got` has shape dims[0..rank) and holds want[0..n) within TOL. */
static void expect(const kiln_value *got, int rank, const int64_t *dims, const double *want, size_t n,
                   const char *what)
{
    if (!got) return;
    CHECK(same_shape(&got->t, rank, dims), "%s: output shape differs", what);
    close_to(got, want, n, TOL, what);
}

/* The activations the tests use: exact on the grid. */
enum act { ACT_NONE, ACT_RELU, ACT_LEAKY, ACT_CLIP, ACT_COUNT };

static double act_apply(enum act a, double v)
{
    switch (a) {
    case ACT_RELU:
        return v < 0 ? 0 : v;
    case ACT_LEAKY:
        return v < 0 ? 0.125 * v : v;
    case ACT_CLIP:
        return v < -0.5 ? -0.5 : v > 0.75 ? 0.75 : v;
    default:
        return v;
    }
}

/* The activation's attributes in text form. */
static const char *act_attrs(enum act a)
{
    switch (a) {
    case ACT_RELU:
        return " activation=string:Relu";
    case ACT_LEAKY:
        return " activation=string:LeakyRelu activation_params=floats:0.125";
    case ACT_CLIP:
        return " activation=string:Clip activation_params=floats:-0.5,0.75";
    default:
        return "";
    }
}

/* ------------------------------------------------------------------ Conv */

enum { AP_PADS, AP_NONE, AP_UPPER, AP_LOWER, AP_VALID }; /* pads given / absent / auto_pad */
static const char *const ap_name[] = {"NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};

struct conv_case {
    int nd, ap;
    int64_t N, G, cg, mg;
    int64_t in[3], k[3], s[3], d[3], pads[6];
    bool bias;
    /* derived */
    int64_t C, M, out[3], pb[3];
    size_t os;
};

/* Output sizes and the begin pads the reference uses. */
static void conv_derive(struct conv_case *c)
{
    c->C = c->G * c->cg;
    c->M = c->G * c->mg;
    c->os = 1;
    for (int i = 0; i < c->nd; i++) {
        int64_t dk = (c->k[i] - 1) * c->d[i] + 1;
        if (c->ap == AP_UPPER || c->ap == AP_LOWER) {
            c->out[i] = (c->in[i] + c->s[i] - 1) / c->s[i];
            int64_t tot = (c->out[i] - 1) * c->s[i] + dk - c->in[i];
            if (tot < 0) tot = 0;
            c->pb[i] = c->ap == AP_UPPER ? tot / 2 : tot - tot / 2;
        } else {
            int64_t pb = c->ap == AP_PADS ? c->pads[i] : 0, pe = c->ap == AP_PADS ? c->pads[c->nd + i] : 0;
            c->pb[i] = pb;
            c->out[i] = (c->in[i] + pb + pe - dk) / c->s[i] + 1;
        }
        c->os *= (size_t)c->out[i];
    }
}

/* A random case: kind 0 any, 1 depthwise, 2 1x1, 3 tiny, 4 odd sizes. */
static struct conv_case conv_random(int kind)
{
    struct conv_case c = {.nd = 1 + rng_int(3),
                          .ap = rng_int(5),
                          .N = 1 + rng_int(2),
                          .G = 1 + rng_int(3),
                          .cg = 1 + rng_int(3),
                          .mg = 1 + rng_int(3),
                          .bias = rng_int(2)};
    for (int i = 0; i < c.nd; i++) {
        c.k[i] = 1 + rng_int(3);
        c.s[i] = 1 + rng_int(2);
        c.d[i] = 1 + rng_int(2);
        c.pads[i] = rng_int(3);
        c.pads[c.nd + i] = rng_int(3);
    }
    if (kind == 1) { /* depthwise: 2-D, one input channel per group, multiplier 1..2 */
        c.nd = 2;
        c.cg = 1;
        c.G = 1 + rng_int(4);
        c.mg = 1 + rng_int(2);
        for (int i = 0; i < 2; i++) {
            c.k[i] = 1 + rng_int(4);
            c.s[i] = 1 + rng_int(3);
            c.d[i] = 1 + rng_int(2);
            c.pads[i] = rng_int(3);
            c.pads[2 + i] = rng_int(3);
        }
    } else if (kind == 2) { /* 1x1, stride 1, no pads */
        static const int aps[] = {AP_NONE, AP_VALID, AP_UPPER, AP_PADS};
        c.ap = aps[rng_int(4)];
        for (int i = 0; i < c.nd; i++) {
            c.k[i] = 1;
            c.s[i] = 1;
            c.pads[i] = c.pads[c.nd + i] = 0;
        }
    } else if (kind == 3) { /* tiny: one of everything */
        c.N = c.G = c.cg = c.mg = 1;
        for (int i = 0; i < c.nd; i++) c.k[i] = 1, c.s[i] = 1, c.d[i] = 1, c.in[i] = 1;
        c.ap = AP_NONE;
    }
    for (int i = 0; i < c.nd; i++) {
        int64_t dk = (c.k[i] - 1) * c.d[i] + 1;
        if (kind == 3) continue;
        c.in[i] = dk + rng_int(kind == 4 ? 9 : 5);
        if (kind == 4 && c.in[i] % 2 == 0) c.in[i]++; /* odd sizes */
    }
    if (c.nd > 2) /* keep 3-D small */
        for (int i = 0; i < c.nd; i++) c.in[i] = (c.k[i] - 1) * c.d[i] + 1 + rng_int(3);
    conv_derive(&c);
    return c;
}

/* y = act(conv(x, w) + b + z) in double. z may be NULL. */
static void conv_ref(const struct conv_case *c, const double *x, const double *w, const double *b,
                     const double *z, enum act a, double *y)
{
    size_t ks = 1, is = 1;
    for (int i = 0; i < c->nd; i++) ks *= (size_t)c->k[i], is *= (size_t)c->in[i];
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t m = 0; m < c->M; m++)
            for (size_t o = 0; o < c->os; o++) {
                int64_t oi[3];
                size_t r = o;
                for (int i = c->nd - 1; i >= 0; i--)
                    oi[i] = (int64_t)(r % (size_t)c->out[i]), r /= (size_t)c->out[i];
                double acc = 0;
                int64_t g = m / c->mg;
                for (int64_t ci = 0; ci < c->cg; ci++)
                    for (size_t kq = 0; kq < ks; kq++) {
                        int64_t ki[3];
                        size_t rr = kq;
                        for (int i = c->nd - 1; i >= 0; i--)
                            ki[i] = (int64_t)(rr % (size_t)c->k[i]), rr /= (size_t)c->k[i];
                        size_t xo = 0;
                        bool ok = true;
                        for (int i = 0; i < c->nd; i++) {
                            int64_t ix = oi[i] * c->s[i] - c->pb[i] + ki[i] * c->d[i];
                            if (ix < 0 || ix >= c->in[i]) ok = false;
                            xo = xo * (size_t)c->in[i] + (size_t)ix;
                        }
                        if (ok)
                            acc += x[(size_t)(n * c->C + g * c->cg + ci) * is + xo] *
                                   w[(size_t)(m * c->cg + ci) * ks + kq];
                    }
                size_t yi = (size_t)(n * c->M + m) * c->os + o;
                if (b) acc += b[m];
                if (z) acc += z[yi];
                y[yi] = act_apply(a, acc);
            }
}

static void conv_attrs_text(struct sb *s, const struct conv_case *c)
{
    sbf(s, " group=int:%lld", (long long)c->G);
    sb_ints(s, "strides", c->s, c->nd);
    sb_ints(s, "dilations", c->d, c->nd);
    if (c->ap == AP_PADS) sb_ints(s, "pads", c->pads, 2 * c->nd);
    if (c->ap >= AP_UPPER) sbf(s, " auto_pad=string:%s", ap_name[c->ap]);
    if (rng_int(2)) sb_ints(s, "kernel_shape", c->k, c->nd);
}

/* W's form in a session: an initializer, a graph input, or Reshape(graph input, runtime
 * shape) whose shape inference cannot know. */
enum wform { W_CONST, W_INPUT, W_RESHAPED, W_FORMS };
static const char *const wform_name[] = {"const", "input", "reshaped"};

static void test_conv_sessions(void)
{
    int count = 0;
    for (int t = 0; t < 150; t++) {
        int kind = t % 5;
        struct conv_case c = conv_random(kind);
        enum wform wf = (enum wform)rng_int(W_FORMS);
        bool fused = rng_int(3) == 0, resid = fused && rng_int(2);
        enum act a = fused ? (enum act)rng_int(ACT_COUNT) : ACT_NONE;
        int64_t xd[5] = {c.N, c.C}, wd[5] = {c.M, c.cg}, yd[5] = {c.N, c.M};
        for (int i = 0; i < c.nd; i++) xd[2 + i] = c.in[i], wd[2 + i] = c.k[i], yd[2 + i] = c.out[i];
        struct ten x = ten_rand(c.nd + 2, xd), w = ten_rand(c.nd + 2, wd), b = ten_rand(1, &c.M);
        struct ten z = ten_rand(c.nd + 2, yd);
        double *want = malloc((size_t)(c.N * c.M) * c.os * sizeof *want);
        if (!want) exit(1);
        conv_ref(&c, x.v, w.v, c.bias ? b.v : NULL, resid ? z.v : NULL, a, want);

        struct sb s = {0};
        sbf(&s, "opset 17 kiln\n");
        sb_tensor(&s, "X", &x, false);
        const char *names[4] = {"X"};
        kiln_value *in[4] = {ten_value(&x)};
        size_t n_in = 1;
        if (wf == W_CONST) {
            sb_tensor(&s, "W", &w, true);
        } else if (wf == W_INPUT) {
            sb_tensor(&s, "W", &w, false);
            names[n_in] = "W", in[n_in++] = ten_value(&w);
        } else {
            int64_t flat = (int64_t)w.n;
            struct ten wf1 = {.rank = 1, .dims = {flat}, .n = w.n, .v = w.v};
            sb_tensor(&s, "WF", &wf1, false);
            sbf(&s, "input WS i64 %d\nnode Reshape WF,WS -> W\n", c.nd + 2);
            names[n_in] = "WF", in[n_in++] = ten_value(&wf1);
            names[n_in] = "WS", in[n_in++] = tensor_of(KILN_DTYPE_I64, 1, (int64_t[]){c.nd + 2}, wd);
        }
        bool bconst = rng_int(2);
        if (c.bias) sb_tensor(&s, "B", &b, bconst);
        if (c.bias && !bconst) names[n_in] = "B", in[n_in++] = ten_value(&b);
        if (resid) {
            sb_tensor(&s, "Z", &z, false);
            names[n_in] = "Z", in[n_in++] = ten_value(&z);
        }
        sbf(&s, "node %s X,W%s%s -> Y", fused ? "kiln.FusedConv" : "Conv",
            c.bias ? ",B" : (resid ? ",_" : ""), resid ? ",Z" : "");
        conv_attrs_text(&s, &c);
        if (fused) sbf(&s, "%s", act_attrs(a));
        sbf(&s, "\noutput Y\n");

        char what[160];
        snprintf(what, sizeof what, "%s case %d (kind %d, nd %d, G %lld, %s, W %s, act %d)",
                 fused ? "FusedConv" : "Conv", t, kind, c.nd, (long long)c.G, ap_name[c.ap], wform_name[wf],
                 (int)a);
        for (int threads = 1; threads <= 3; threads += 2) {
            kiln_value *y = run_text_model(s.p, n_in, names, in, threads, what);
            expect(y, c.nd + 2, yd, want, (size_t)(c.N * c.M) * c.os, what);
            kiln_value_free(y);
            count++;
        }
        free_all(in, n_in);
        free(s.p);
        free(want);
        ten_free(&x), ten_free(&w), ten_free(&b), ten_free(&z);
    }
    CHECK(count == 300, "ran %d Conv sessions", count);
}

/* ------------------------------------------------------------------ Gemm */

enum { C_NONE, C_SCALAR, C_N, C_MN, C_M1, C_1N, C_SHAPES };

struct gemm_case {
    int64_t M, N, K;
    bool tA, tB;
    double alpha, beta;
    int cshape;
};

static struct gemm_case gemm_random(int t)
{
    static const double alphas[] = {1, 0.5, -1.25, 2}, betas[] = {1, 0, 0.75, -2};
    struct gemm_case g = {.M = 1 + rng_int(12),
                          .N = 1 + rng_int(12),
                          .K = 1 + rng_int(12),
                          .tA = rng_int(2),
                          .tB = rng_int(2),
                          .alpha = alphas[rng_int(4)],
                          .beta = betas[rng_int(4)],
                          .cshape = rng_int(C_SHAPES)};
    if (t % 7 == 0) g.M = g.N = g.K = 1;          /* tiny */
    if (t % 7 == 1) g.M = 1, g.N = 17, g.K = 33;  /* a batch-1 layer, odd sizes */
    if (t % 7 == 2) g.M = 37, g.N = 5, g.K = 129; /* past one GEMM tile */
    return g;
}

static void c_dims(const struct gemm_case *g, int *rank, int64_t *d)
{
    switch (g->cshape) {
    case C_SCALAR:
        *rank = 0;
        break;
    case C_N:
        *rank = 1, d[0] = g->N;
        break;
    case C_MN:
        *rank = 2, d[0] = g->M, d[1] = g->N;
        break;
    case C_M1:
        *rank = 2, d[0] = g->M, d[1] = 1;
        break;
    case C_1N:
        *rank = 2, d[0] = 1, d[1] = g->N;
        break;
    default:
        *rank = -1;
        break;
    }
}

/* y = act(alpha op(A) op(B) + beta C + Z) in double. */
static void gemm_ref(const struct gemm_case *g, const double *a, const double *b, const double *c,
                     const double *z, enum act act, double *y)
{
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = 0; j < g->N; j++) {
            double s = 0;
            for (int64_t p = 0; p < g->K; p++)
                s += a[g->tA ? p * g->M + i : i * g->K + p] * b[g->tB ? j * g->K + p : p * g->N + j];
            s *= g->alpha;
            if (c) {
                size_t ci = 0;
                if (g->cshape == C_N || g->cshape == C_1N) ci = (size_t)j;
                if (g->cshape == C_MN) ci = (size_t)(i * g->N + j);
                if (g->cshape == C_M1) ci = (size_t)i;
                s += g->beta * c[ci];
            }
            if (z) s += z[i * g->N + j];
            y[i * g->N + j] = act_apply(act, s);
        }
}

static void test_gemm_sessions(void)
{
    for (int t = 0; t < 120; t++) {
        struct gemm_case g = gemm_random(t);
        bool bconst = rng_int(2), fused = rng_int(3) == 0, resid = fused && rng_int(2);
        enum act a = fused ? (enum act)rng_int(ACT_COUNT) : ACT_NONE;
        int64_t ad[2] = {g.tA ? g.K : g.M, g.tA ? g.M : g.K};
        int64_t bd[2] = {g.tB ? g.N : g.K, g.tB ? g.K : g.N}, yd[2] = {g.M, g.N}, cd[2];
        int cr;
        c_dims(&g, &cr, cd);
        struct ten A = ten_rand(2, ad), B = ten_rand(2, bd), C = ten_rand(cr < 0 ? 0 : cr, cd);
        struct ten Z = ten_rand(2, yd);
        double *want = malloc((size_t)(g.M * g.N) * sizeof *want);
        if (!want) exit(1);
        gemm_ref(&g, A.v, B.v, cr >= 0 ? C.v : NULL, resid ? Z.v : NULL, a, want);

        struct sb s = {0};
        sbf(&s, "opset 17 kiln\n");
        sb_tensor(&s, "A", &A, false);
        sb_tensor(&s, "B", &B, bconst);
        const char *names[4] = {"A"};
        kiln_value *in[4] = {ten_value(&A)};
        size_t n_in = 1;
        if (!bconst) names[n_in] = "B", in[n_in++] = ten_value(&B);
        if (cr >= 0) sb_tensor(&s, "C", &C, true);
        if (resid) {
            sb_tensor(&s, "Z", &Z, false);
            names[n_in] = "Z", in[n_in++] = ten_value(&Z);
        }
        sbf(&s,
            "node %s A,B%s%s -> Y transA=int:%d transB=int:%d alpha=float:%g beta=float:%g%s\n"
            "output Y\n",
            fused ? "kiln.FusedGemm" : "Gemm", cr >= 0 ? ",C" : (resid ? ",_" : ""), resid ? ",Z" : "", g.tA,
            g.tB, g.alpha, g.beta, fused ? act_attrs(a) : "");
        char what[160];
        snprintf(what, sizeof what, "%s case %d (%lldx%lldx%lld, tA %d tB %d, C shape %d, B %s)",
                 fused ? "FusedGemm" : "Gemm", t, (long long)g.M, (long long)g.N, (long long)g.K, g.tA, g.tB,
                 g.cshape, bconst ? "const" : "input");
        kiln_value *y = run_text_model(s.p, n_in, names, in, 1 + 2 * (t % 2), what);
        expect(y, 2, yd, want, (size_t)(g.M * g.N), what);
        kiln_value_free(y);
        free_all(in, n_in);
        free(s.p);
        free(want);
        ten_free(&A), ten_free(&B), ten_free(&C), ten_free(&Z);
    }
}

/* ------------------------------------------------------------------ MatMul */

struct mm_case {
    int ra, rb;
    int64_t ad[4], bd[4], yd[6];
    int yr;
    int64_t M, N, K;
    int br;           /* batch rank of Y */
    int64_t bdims[2]; /* Y's batch dims */
};

/* Random ranks 1..4 with broadcasting batch dims (some 1, some missing). */
static struct mm_case mm_random(int t)
{
    struct mm_case c = {.ra = 1 + rng_int(4),
                        .rb = 1 + rng_int(4),
                        .M = 1 + rng_int(6),
                        .N = 1 + rng_int(6),
                        .K = 1 + rng_int(9)};
    if (t % 5 == 0) c.M = c.N = c.K = 1;
    int ba = c.ra > 2 ? c.ra - 2 : 0, bb = c.rb > 2 ? c.rb - 2 : 0;
    c.br = ba > bb ? ba : bb;
    for (int d = 0; d < c.br; d++) c.bdims[d] = 1 + rng_int(3);
    for (int d = 0; d < ba; d++) c.ad[d] = rng_int(3) ? c.bdims[c.br - ba + d] : 1;
    for (int d = 0; d < bb; d++) c.bd[d] = rng_int(3) ? c.bdims[c.br - bb + d] : 1;
    for (int d = 0; d < c.br; d++) { /* Y's batch dim is the larger of the two present */
        int64_t va = d >= c.br - ba ? c.ad[d - (c.br - ba)] : 1;
        int64_t vb = d >= c.br - bb ? c.bd[d - (c.br - bb)] : 1;
        c.bdims[d] = va > vb ? va : vb;
    }
    if (c.ra == 1)
        c.ad[0] = c.K;
    else
        c.ad[ba] = c.M, c.ad[ba + 1] = c.K;
    if (c.rb == 1)
        c.bd[0] = c.K;
    else
        c.bd[bb] = c.K, c.bd[bb + 1] = c.N;
    for (int d = 0; d < c.br; d++) c.yd[c.yr++] = c.bdims[d];
    if (c.ra > 1) c.yd[c.yr++] = c.M;
    if (c.rb > 1) c.yd[c.yr++] = c.N;
    return c;
}

/* y = act(matmul(a, b) + bias + z) in double (numpy matmul with broadcasting). */
static void mm_ref(const struct mm_case *c, const double *a, const double *b, const double *bias,
                   const double *z, enum act act, double *y)
{
    int ba = c->ra > 2 ? c->ra - 2 : 0, bb = c->rb > 2 ? c->rb - 2 : 0;
    size_t batch = 1;
    for (int d = 0; d < c->br; d++) batch *= (size_t)c->bdims[d];
    size_t M = (size_t)c->M, N = (size_t)c->N, K = (size_t)c->K, Nl = c->rb > 1 ? N : 1;
    size_t Ml = c->ra > 1 ? M : 1;
    for (size_t t = 0; t < batch; t++) {
        size_t oa = 0, ob = 0, rem = t, sa = 1, sb = 1;
        int64_t idx[2] = {0, 0};
        for (int d = c->br - 1; d >= 0; d--)
            idx[d] = (int64_t)(rem % (size_t)c->bdims[d]), rem /= (size_t)c->bdims[d];
        for (int d = ba - 1; d >= 0; d--) {
            int64_t i = c->ad[d] == 1 ? 0 : idx[c->br - ba + d];
            oa += (size_t)i * sa;
            sa *= (size_t)c->ad[d];
        }
        for (int d = bb - 1; d >= 0; d--) {
            int64_t i = c->bd[d] == 1 ? 0 : idx[c->br - bb + d];
            ob += (size_t)i * sb;
            sb *= (size_t)c->bd[d];
        }
        const double *at = a + oa * Ml * K, *bt = b + ob * K * Nl;
        for (size_t i = 0; i < Ml; i++)
            for (size_t j = 0; j < Nl; j++) {
                double s = 0;
                for (size_t p = 0; p < K; p++) s += at[i * K + p] * bt[p * Nl + j];
                size_t yi = (t * Ml + i) * Nl + j;
                if (bias) s += bias[c->rb > 1 ? j : i]; /* along Y's last dim */
                if (z) s += z[yi];
                y[yi] = act_apply(act, s);
            }
    }
}

static void test_matmul_sessions(void)
{
    for (int t = 0; t < 120; t++) {
        struct mm_case c = mm_random(t);
        bool bconst = rng_int(2), fused = rng_int(3) == 0, resid = fused && rng_int(2);
        /* FusedMatMul's bias runs along Y's last dim; Y must have one. */
        bool bias = fused && c.yr >= 1 && rng_int(2);
        enum act a = fused ? (enum act)rng_int(ACT_COUNT) : ACT_NONE;
        struct ten A = ten_rand(c.ra, c.ad), B = ten_rand(c.rb, c.bd), Z = ten_rand(c.yr, c.yd);
        int64_t last = c.yr ? c.yd[c.yr - 1] : 1;
        struct ten Bias = ten_rand(1, &last);
        size_t ny = Z.n;
        double *want = malloc((ny ? ny : 1) * sizeof *want);
        if (!want) exit(1);
        mm_ref(&c, A.v, B.v, bias ? Bias.v : NULL, resid ? Z.v : NULL, a, want);

        struct sb s = {0};
        sbf(&s, "opset 17 kiln\n");
        sb_tensor(&s, "A", &A, false);
        sb_tensor(&s, "B", &B, bconst);
        const char *names[4] = {"A"};
        kiln_value *in[4] = {ten_value(&A)};
        size_t n_in = 1;
        if (!bconst) names[n_in] = "B", in[n_in++] = ten_value(&B);
        if (bias) sb_tensor(&s, "bias", &Bias, true);
        if (resid) {
            sb_tensor(&s, "Z", &Z, false);
            names[n_in] = "Z", in[n_in++] = ten_value(&Z);
        }
        sbf(&s, "node %s A,B%s%s -> Y%s\noutput Y\n", fused ? "kiln.FusedMatMul" : "MatMul",
            bias ? ",bias" : (resid ? ",_" : ""), resid ? ",Z" : "", fused ? act_attrs(a) : "");
        char what[160];
        snprintf(what, sizeof what, "%s case %d (ranks %d, %d; batch rank %d; B %s)",
                 fused ? "FusedMatMul" : "MatMul", t, c.ra, c.rb, c.br, bconst ? "const" : "input");
        kiln_value *y = run_text_model(s.p, n_in, names, in, 1 + 2 * (t % 2), what);
        expect(y, c.yr, c.yd, want, ny, what);
        kiln_value_free(y);
        free_all(in, n_in);
        free(s.p);
        free(want);
        ten_free(&A), ten_free(&B), ten_free(&Z), ten_free(&Bias);
    }
    /* Wide products split over threads whose row stride is odd (GPT-2's vocabulary is 50257):
     * oneDNN's packed matmul declines to write such column slices in place, so they run on a
     * dense buffer copied into Y (dnnl_matmul.c). Tolerance as above. */
    static const int64_t wide[][3] = {{3, 16, 20001}, {8, 7, 8001}, {1, 5, 12003}};
    for (size_t w = 0; w < sizeof wide / sizeof *wide; w++) {
        struct mm_case c = {.ra = 2, .rb = 2, .yr = 2, .M = wide[w][0], .K = wide[w][1], .N = wide[w][2]};
        c.ad[0] = c.M, c.ad[1] = c.K, c.bd[0] = c.K, c.bd[1] = c.N, c.yd[0] = c.M, c.yd[1] = c.N;
        struct ten A = ten_rand(2, c.ad), B = ten_rand(2, c.bd);
        size_t ny = (size_t)(c.M * c.N);
        double *want = malloc(ny * sizeof *want);
        if (!want) exit(1);
        mm_ref(&c, A.v, B.v, NULL, NULL, ACT_NONE, want);
        struct sb s = {0};
        sbf(&s, "opset 17 kiln\n");
        sb_tensor(&s, "A", &A, false);
        sb_tensor(&s, "B", &B, true);
        sbf(&s, "node MatMul A,B -> Y\noutput Y\n");
        const char *names[1] = {"A"};
        for (int threads = 2; threads <= 3; threads++) {
            kiln_value *in[1] = {ten_value(&A)};
            char what[96];
            snprintf(what, sizeof what, "wide MatMul %lldx%lldx%lld, %d threads", (long long)c.M,
                     (long long)c.K, (long long)c.N, threads);
            kiln_value *y = run_text_model(s.p, 1, names, in, threads, what);
            expect(y, c.yr, c.yd, want, ny, what);
            kiln_value_free(y);
            free_all(in, 1);
        }
        free(s.p);
        free(want);
        ten_free(&A), ten_free(&B);
    }
}

/* ------------------------------------------------------------------ prepare, directly */

/* How prepare sees an input. */
enum seen { SEEN_CONST, SEEN_STATIC, SEEN_SYMBOLIC, SEEN_UNKNOWN };

/* What one prepare + run gave. */
struct prepped {
    kiln_status st;
    const char *kernel;
    int chosen;
    size_t n_blobs;      /* kiln's own blobs (keys 0, 1, ...) */
    size_t n_dnnl_blobs; /* oneDNN's packed weights (dnnl_util.h; keys from 0x10000 up) */
    size_t blob_bytes[4];
    void *blob_copy[4]; /* read-only copies of the blobs (munmap'd by prepped_free) */
};

static void prepped_free(struct prepped *r)
{
    for (size_t i = 0; i < r->n_blobs && i < 4; i++)
        if (r->blob_copy[i]) munmap(r->blob_copy[i], r->blob_bytes[i]);
}

/* Read-only pages holding a copy of n bytes of p. */
static void *ro_copy(const void *p, size_t n)
{
    void *m = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) exit(1);
    memcpy(m, p, n);
    if (mprotect(m, n ? n : 1, PROT_READ)) exit(1);
    return m;
}

/* Prepares node domain:op (opset, attrs) with its inputs seen as how[i], then runs it on
 * in[0..n_in) into *out. variant/tune as p->variant / p->tune. `load` (may be NULL): a
 * previous build's result whose blobs this prepare must take as loaded (read-only). */
static struct prepped prep_run(const char *domain, const char *op, int opset, const struct kiln_attr *attrs,
                               size_t n_attr, struct kiln_value **in, size_t n_in, const enum seen *how,
                               int variant, int tune, const struct prepped *load, struct kiln_pool *pool,
                               struct kiln_value **out, kiln_err *err)
{
    static const char *const in_names[8] = {"A", "B", "C", "D", "E", "F", "G", "H"};
    static const char *const syms[KILN_MAX_RANK] = {"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"};
    struct prepped r = {.st = KILN_OK};
    const char *names[8] = {0}, *outs[2] = {"y", "y1"};
    struct kiln_vtype vt[8];
    struct kiln_dim dims[8][KILN_MAX_RANK];
    const struct kiln_vtype *vin[8] = {0}, *vout[2] = {0};
    memset(vt, 0, sizeof vt);
    for (size_t i = 0; i < n_in; i++) {
        names[i] = in[i] ? in_names[i] : "";
        if (!in[i] || how[i] == SEEN_UNKNOWN) continue;
        const struct kiln_tensor *t = &in[i]->t;
        vt[i].type.kind = KILN_TYPE_TENSOR;
        vt[i].type.elem = t->dtype;
        vt[i].type.rank = t->rank;
        vt[i].n_vals = -1;
        for (int d = 0; d < t->rank; d++)
            dims[i][d] = how[i] == SEEN_SYMBOLIC ? (struct kiln_dim){-1, syms[d]}
                                                 : (struct kiln_dim){t->dims[d], NULL};
        vt[i].type.dims = dims[i];
        if (how[i] == SEEN_CONST) vt[i].konst = t;
        vin[i] = &vt[i];
    }
    struct kiln_node node = {.name = "t",
                             .op_type = op,
                             .domain = domain,
                             .n_in = n_in,
                             .n_out = 1,
                             .n_attr = n_attr,
                             .inputs = names,
                             .outputs = outs,
                             .attrs = (struct kiln_attr *)attrs,
                             .since = opset};
    const struct kiln_cpu_op *kop = kiln_cpu_find_op(domain, op, opset);
    *out = NULL;
    if (!kop || !kop->prepare) {
        test_fail(__FILE__, __LINE__, NULL, "%s has no kernel with a prepare", op);
        r.st = KILN_E_INTERNAL;
        return r;
    }
    struct kiln_arena arena = {0};
    struct kiln_eblob loaded[4];
    struct kiln_prep_store store = {.arena = &arena};
    if (load) {
        for (size_t i = 0; i < load->n_blobs && i < 4; i++)
            loaded[i] = (struct kiln_eblob){
                .key = (uint32_t)i, .bytes = load->blob_bytes[i], .data = load->blob_copy[i], .owned = false};
        store.blobs = loaded;
        store.n_blobs = store.cap_blobs = load->n_blobs;
        store.loading = true;
    }
    struct kiln_kprep p = {.kc = {.node = &node, .opset = opset, .n_in = n_in, .n_out = 1, .err = err},
                           .in = vin,
                           .out = vout,
                           .threads = 1,
                           .tune = tune,
                           .variant = variant,
                           .store = &store};
    r.st = kop->prepare(&p);
    r.kernel = p.kernel;
    r.chosen = p.chosen;
    if (!r.st) {
        struct kiln_value *o[2] = {0};
        struct kiln_kctx k = {.node = &node,
                              .opset = opset,
                              .n_in = n_in,
                              .n_out = 1,
                              .in = in,
                              .out = o,
                              .err = err,
                              .pool = pool,
                              .state = p.state};
        r.st = kop->run(&k);
        kiln_kctx_free_scratch(&k);
        if (r.st)
            kiln_value_free(o[0]);
        else
            *out = o[0];
    }
    if (!load) {
        for (size_t i = 0; i < store.n_blobs; i++) {
            if (store.blobs[i].key >= 0x10000u) { /* oneDNN's, made after kiln's own */
                CHECK(r.kernel && !strcmp(r.kernel, "onednn-packed"), "%s: blob %u without oneDNN packing",
                      op, store.blobs[i].key);
                r.n_dnnl_blobs++;
                kiln_aligned_free(store.blobs[i].data);
                continue;
            }
            r.n_blobs++;
            CHECK(store.blobs[i].key == i, "%s: blob keys are 0, 1, ...: got %u", op, store.blobs[i].key);
            if (i < 4) {
                r.blob_bytes[i] = store.blobs[i].bytes;
                r.blob_copy[i] = ro_copy(store.blobs[i].data, store.blobs[i].bytes);
            }
            kiln_aligned_free(store.blobs[i].data);
        }
        kiln_free(store.blobs);
    }
    kiln_arena_free(&arena);
    return r;
}

/* A conv_case's attributes as a struct attrs (for prep_run). */
static void conv_attrs_list(const struct conv_case *c, struct attrs *at)
{
    add_i(at, "group", c->G);
    add_ints(at, "strides", c->s, (size_t)c->nd);
    add_ints(at, "dilations", c->d, (size_t)c->nd);
    if (c->ap == AP_PADS) add_ints(at, "pads", c->pads, 2 * (size_t)c->nd);
    if (c->ap >= AP_UPPER) add_s(at, "auto_pad", ap_name[c->ap]);
}

static bool conv_is_1x1(const struct conv_case *c)
{
    for (int i = 0; i < c->nd; i++)
        if (c->k[i] != 1 || c->s[i] != 1 || c->pb[i] != 0 || c->out[i] != c->in[i]) return false;
    return true;
}

static void test_conv_variants(struct kiln_pool *pool)
{
    static const char *const vname[] = {NULL, "im2col+sgemm", "1x1-sgemm", "depthwise"};
    int forced = 0;
    for (int t = 0; t < 120; t++) {
        struct conv_case c = conv_random(t % 5);
        bool fused = t % 4 == 3;
        int64_t xd[5] = {c.N, c.C}, wd[5] = {c.M, c.cg}, yd[5] = {c.N, c.M};
        for (int i = 0; i < c.nd; i++) xd[2 + i] = c.in[i], wd[2 + i] = c.k[i], yd[2 + i] = c.out[i];
        struct ten x = ten_rand(c.nd + 2, xd), w = ten_rand(c.nd + 2, wd), b = ten_rand(1, &c.M);
        size_t ny = (size_t)(c.N * c.M) * c.os;
        double *want = malloc(ny * sizeof *want);
        if (!want) exit(1);
        conv_ref(&c, x.v, w.v, c.bias ? b.v : NULL, NULL, fused ? ACT_RELU : ACT_NONE, want);
        struct attrs at = {0};
        conv_attrs_list(&c, &at);
        if (fused) add_s(&at, "activation", "Relu");
        struct kiln_value *in[3] = {ten_value(&x), ten_value(&w), c.bias ? ten_value(&b) : NULL};
        bool dw = c.nd == 2 && c.cg == 1, one = conv_is_1x1(&c);
        int def = dw ? 3 : one ? 2 : 1;
        /* X static / symbolic / unknown; W constant / static / unknown. */
        static const enum seen xs[3] = {SEEN_STATIC, SEEN_SYMBOLIC, SEEN_UNKNOWN};
        static const enum seen ws[3] = {SEEN_CONST, SEEN_STATIC, SEEN_UNKNOWN};
        enum seen how[3] = {xs[t % 3], ws[(t / 3) % 3], SEEN_CONST};
        bool w_known = how[1] != SEEN_UNKNOWN;
        for (int v = -1; v < 4; v++) {
            bool applies = v <= 1 || (v == 2 && one) || (v == 3 && dw);
            struct kiln_value *y = NULL;
            kiln_err e = {0};
            struct prepped r = prep_run(fused ? "kiln" : "", fused ? "FusedConv" : "Conv", fused ? 1 : 11,
                                        at.a, at.n, in, 3, how, v, 0, NULL, t % 2 ? pool : NULL, &y, &e);
            char what[200];
            snprintf(what, sizeof what, "%s variant %d case %d (nd %d, G %lld, cg %lld, %s, seen %d/%d)",
                     fused ? "FusedConv" : "Conv", v, t, c.nd, (long long)c.G, (long long)c.cg, ap_name[c.ap],
                     how[0], how[1]);
            CHECK(r.st == KILN_OK, "%s: %s", what, e.msg);
            CHECK(r.n_blobs == 0, "%s: %zu blobs; Conv prepacks nothing", what, r.n_blobs);
            /* The name says what runs: the variant asked for when it applies (or, W unknown,
             * when asked: the run checks), else the default; nothing when W is unknown and
             * nothing was asked. */
            int expect_v = v == 0 ? 0 : !w_known ? (v > 0 ? v : 0) : (v > 0 && applies ? v : def);
            CHECK(r.chosen == expect_v, "%s: chose %d, expected %d", what, r.chosen, expect_v);
            CHECK(r.kernel == vname[expect_v] ||
                      (r.kernel && vname[expect_v] && !strcmp(r.kernel, vname[expect_v])),
                  "%s: kernel '%s', expected '%s'", what, r.kernel ? r.kernel : "(null)",
                  vname[expect_v] ? vname[expect_v] : "(null)");
            if (y) expect(y, c.nd + 2, yd, want, ny, what);
            forced += v > 0 && applies;
            kiln_value_free(y);
            prepped_free(&r);
        }
        free_all(in, 3);
        free(want);
        ten_free(&x), ten_free(&w), ten_free(&b);
    }
    CHECK(forced >= 170, "only %d forced variants ran", forced);
}

/* Gemm with a constant B: transB makes one blob, op(B) as [K, N] floats; a load of it from
 * read-only pages gives the same result; every seen-combination gives the reference. */
static void test_gemm_prepare(struct kiln_pool *pool)
{
    for (int t = 0; t < 80; t++) {
        struct gemm_case g = gemm_random(t);
        bool fused = t % 3 == 2;
        int64_t ad[2] = {g.tA ? g.K : g.M, g.tA ? g.M : g.K};
        int64_t bd[2] = {g.tB ? g.N : g.K, g.tB ? g.K : g.N}, yd[2] = {g.M, g.N}, cd[2];
        int cr;
        c_dims(&g, &cr, cd);
        struct ten A = ten_rand(2, ad), B = ten_rand(2, bd), C = ten_rand(cr < 0 ? 0 : cr, cd);
        double *want = malloc((size_t)(g.M * g.N) * sizeof *want);
        if (!want) exit(1);
        gemm_ref(&g, A.v, B.v, cr >= 0 ? C.v : NULL, NULL, fused ? ACT_LEAKY : ACT_NONE, want);
        struct attrs at = {0};
        add_i(&at, "transA", g.tA);
        add_i(&at, "transB", g.tB);
        add_f(&at, "alpha", (float)g.alpha);
        add_f(&at, "beta", (float)g.beta);
        if (fused) {
            add_s(&at, "activation", "LeakyRelu");
            static const float alpha8[1] = {0.125f};
            at.a[at.n++] = attr_floats("activation_params", alpha8, 1);
        }
        struct kiln_value *in[3] = {ten_value(&A), ten_value(&B), cr >= 0 ? ten_value(&C) : NULL};
        static const enum seen bs[4] = {SEEN_CONST, SEEN_STATIC, SEEN_SYMBOLIC, SEEN_UNKNOWN};
        enum seen how[3] = {t % 2 ? SEEN_SYMBOLIC : SEEN_STATIC, bs[t % 4], SEEN_CONST};
        const char *dom = fused ? "kiln" : "", *op = fused ? "FusedGemm" : "Gemm";
        int opset = fused ? 1 : 13;
        struct kiln_value *y = NULL;
        kiln_err e = {0};
        struct prepped r =
            prep_run(dom, op, opset, at.a, at.n, in, 3, how, -1, 0, NULL, t % 2 ? pool : NULL, &y, &e);
        char what[200];
        snprintf(what, sizeof what, "%s prepare case %d (%lldx%lldx%lld, tA %d tB %d, B seen %d)", op, t,
                 (long long)g.M, (long long)g.N, (long long)g.K, g.tA, g.tB, how[1]);
        CHECK(r.st == KILN_OK, "%s: %s", what, e.msg);
        bool packs = g.tB && how[1] == SEEN_CONST;
        CHECK(r.n_blobs == (packs ? 1u : 0u), "%s: %zu blobs", what, r.n_blobs);
        if (packs && r.n_blobs == 1) {
            CHECK(r.blob_bytes[0] == (size_t)(g.K * g.N) * sizeof(float), "%s: blob of %zu bytes", what,
                  r.blob_bytes[0]);
            const float *bt = r.blob_copy[0];
            bool same = true;
            for (int64_t p = 0; p < g.K; p++)
                for (int64_t j = 0; j < g.N; j++) same = same && bt[p * g.N + j] == (float)B.v[j * g.K + p];
            CHECK(same, "%s: the blob is not B^T", what);
        }
        /* One kernel, or with oneDNN the prepacked product (dnnl_matmul.h), which needs a
         * constant B, transA 0 and A's shape. */
        bool packed = r.kernel && !strcmp(r.kernel, "onednn-packed") && r.chosen == 1;
        CHECK((r.kernel == NULL && r.chosen == 0) ||
                  (packed && how[1] == SEEN_CONST && !g.tA && how[0] == SEEN_STATIC),
              "%s: kernel %s (variant %d)", what, r.kernel ? r.kernel : "(none)", r.chosen);
        if (y) expect(y, 2, yd, want, (size_t)(g.M * g.N), what);
        kiln_value_free(y);
        if (r.n_blobs) { /* as an engine file would map it back */
            struct kiln_value *y2 = NULL;
            struct prepped r2 =
                prep_run(dom, op, opset, at.a, at.n, in, 3, how, r.chosen, 0, &r, pool, &y2, &e);
            CHECK(r2.st == KILN_OK, "%s, loaded: %s", what, e.msg);
            if (y2) expect(y2, 2, yd, want, (size_t)(g.M * g.N), what);
            kiln_value_free(y2);
        }
        prepped_free(&r);
        free_all(in, 3);
        free(want);
        ten_free(&A), ten_free(&B), ten_free(&C);
    }
    /* MatMul and FusedMatMul: a constant B is taken as it is (no blob). */
    int64_t ad[3] = {2, 3, 4}, bd[2] = {4, 5}, yd[3] = {2, 3, 5};
    struct ten A = ten_rand(3, ad), B = ten_rand(2, bd);
    struct mm_case c = {
        .ra = 3, .rb = 2, .ad = {2, 3, 4}, .bd = {4, 5}, .M = 3, .N = 5, .K = 4, .br = 1, .bdims = {2}};
    double want[30];
    mm_ref(&c, A.v, B.v, NULL, NULL, ACT_NONE, want);
    struct kiln_value *in[2] = {ten_value(&A), ten_value(&B)}, *y = NULL;
    enum seen how[2] = {SEEN_STATIC, SEEN_CONST};
    kiln_err e = {0};
    struct prepped r = prep_run("kiln", "FusedMatMul", 1, NULL, 0, in, 2, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_OK && r.n_blobs == 0, "FusedMatMul prepare: %s, %zu blobs", e.msg, r.n_blobs);
    if (y) expect(y, 3, yd, want, 30, "FusedMatMul prepared");
    kiln_value_free(y);
    free_all(in, 2);
    ten_free(&A), ten_free(&B);
}

/* MaxPool / AveragePool: "generic" and "2d" forced and chosen, against a window walk. */
static void test_pool_variants(void)
{
    for (int t = 0; t < 60; t++) {
        bool avg = t % 2, include = avg && rng_int(2);
        int nd = t % 5 == 4 ? 1 : 2;
        int64_t N = 1 + rng_int(2), C = 1 + rng_int(3), in[2], k[2], s[2], d[2], pads[4], out[2];
        for (int i = 0; i < nd; i++) {
            k[i] = 1 + rng_int(3);
            s[i] = 1 + rng_int(2);
            d[i] = avg ? 1 : 1 + rng_int(2);
            pads[i] = rng_int((int)k[i]);
            pads[nd + i] = rng_int((int)k[i]);
            in[i] = (k[i] - 1) * d[i] + 1 + rng_int(6);
            out[i] = (in[i] + pads[i] + pads[nd + i] - ((k[i] - 1) * d[i] + 1)) / s[i] + 1;
        }
        int64_t xd[4] = {N, C}, yd[4] = {N, C};
        for (int i = 0; i < nd; i++) xd[2 + i] = in[i], yd[2 + i] = out[i];
        struct ten x = ten_rand(nd + 2, xd);
        size_t os = (size_t)out[0] * (nd == 2 ? (size_t)out[1] : 1),
               is = (size_t)in[0] * (nd == 2 ? (size_t)in[1] : 1);
        size_t ny = (size_t)(N * C) * os;
        double *want = malloc(ny * sizeof *want);
        if (!want) exit(1);
        for (size_t pl = 0; pl < (size_t)(N * C); pl++)
            for (size_t o = 0; o < os; o++) {
                int64_t oy = nd == 2 ? (int64_t)(o / (size_t)out[1]) : (int64_t)o;
                int64_t ox = nd == 2 ? (int64_t)(o % (size_t)out[1]) : 0;
                double best = -INFINITY, sum = 0;
                int64_t cnt = 0;
                for (int64_t ky = 0; ky < k[0]; ky++)
                    for (int64_t kx = 0; kx < (nd == 2 ? k[1] : 1); kx++) {
                        int64_t iy = oy * s[0] - pads[0] + ky * d[0];
                        int64_t ix = nd == 2 ? ox * s[1] - pads[1] + kx * d[1] : 0;
                        bool inside = iy >= 0 && iy < in[0] && (nd == 1 || (ix >= 0 && ix < in[1]));
                        if (include) cnt++; /* NOTSET pads, no ceil: every tap lies in input + pads */
                        if (!inside) continue;
                        double v = x.v[pl * is + (size_t)(nd == 2 ? iy * in[1] + ix : iy)];
                        if (v > best) best = v;
                        sum += v;
                        if (!include) cnt++;
                    }
                want[pl * os + o] = avg ? sum / (double)cnt : best;
            }
        struct attrs at = {0};
        add_ints(&at, "kernel_shape", k, (size_t)nd);
        add_ints(&at, "strides", s, (size_t)nd);
        add_ints(&at, "pads", pads, 2 * (size_t)nd);
        if (avg)
            add_i(&at, "count_include_pad", include);
        else
            add_ints(&at, "dilations", d, (size_t)nd);
        struct kiln_value *xin[1] = {ten_value(&x)};
        static const enum seen xs[3] = {SEEN_STATIC, SEEN_SYMBOLIC, SEEN_UNKNOWN};
        enum seen how[1] = {xs[t % 3]};
        const char *op = avg ? "AveragePool" : "MaxPool";
        for (int v = -1; v < 3; v++) {
            struct kiln_value *y = NULL;
            kiln_err e = {0};
            struct prepped r =
                prep_run("", op, avg ? 19 : 12, at.a, at.n, xin, 1, how, v, 0, NULL, NULL, &y, &e);
            char what[160];
            snprintf(what, sizeof what, "%s variant %d case %d (nd %d, seen %d)", op, v, t, nd, how[0]);
            CHECK(r.st == KILN_OK, "%s: %s", what, e.msg);
            int def = nd == 2 ? 2 : 1;
            int expect_v = v == 0                   ? 0
                           : how[0] == SEEN_UNKNOWN ? (v > 0 ? v : 0)
                                                    : (v == 1 || (v == 2 && nd == 2) ? v : def);
            CHECK(r.chosen == expect_v, "%s: chose %d, expected %d", what, r.chosen, expect_v);
            if (y) expect(y, nd + 2, yd, want, ny, what);
            kiln_value_free(y);
        }
        kiln_value_free(xin[0]);
        free(want);
        ten_free(&x);
    }
}

/* Prepare's own failures: the attribute errors the run used to report, same messages. */
static void test_prepare_errors(void)
{
    int64_t xd[4] = {1, 2, 3, 3}, wd[4] = {2, 2, 1, 1};
    struct ten x = ten_rand(4, xd), w = ten_rand(4, wd);
    struct kiln_value *in[2] = {ten_value(&x), ten_value(&w)}, *y = NULL;
    enum seen how[2] = {SEEN_STATIC, SEEN_CONST};
    kiln_err e = {0};
    struct attrs g0 = {0};
    add_i(&g0, "group", 0);
    struct prepped r = prep_run("", "Conv", 11, g0.a, g0.n, in, 2, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_E_INVALID_MODEL && strstr(e.msg, "group = 0; expected >= 1"), "group 0: %s", e.msg);
    struct attrs ap = {0};
    add_s(&ap, "auto_pad", "SAME");
    r = prep_run("", "Conv", 11, ap.a, ap.n, in, 2, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_E_INVALID_MODEL && strstr(e.msg, "auto_pad 'SAME' is not one of"), "auto_pad: %s",
          e.msg);
    struct attrs act = {0};
    add_s(&act, "activation", "Softmax");
    r = prep_run("kiln", "FusedConv", 1, act.a, act.n, in, 2, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_E_INVALID_MODEL && strstr(e.msg, "Softmax"), "activation: %s", e.msg);
    struct attrs lp = {0};
    add_ints(&lp, "kernel_shape", (int64_t[]){2, 2}, 2);
    add_i(&lp, "p", 0);
    r = prep_run("", "LpPool", 18, lp.a, lp.n, in, 1, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_E_INVALID_MODEL && strstr(e.msg, "p = 0; expected > 0"), "LpPool p: %s", e.msg);
    /* A rank-dependent attribute error stays the run's, with its message. */
    struct attrs st = {0};
    add_ints(&st, "strides", (int64_t[]){1, 1, 1}, 3);
    r = prep_run("", "Conv", 11, st.a, st.n, in, 2, how, -1, 0, NULL, NULL, &y, &e);
    CHECK(r.st == KILN_E_INVALID_MODEL && strstr(e.msg, "strides has 3 values; expected 2"), "strides: %s",
          e.msg);
    CHECK(!y, "no output after a failure");
    free_all(in, 2);
    ten_free(&x), ten_free(&w);
}

/* Tuning: prepare times the applicable variants (direct), and an engine built with
 * kiln_builder_set_tune names one of them per node and runs right. */
static void test_tuning(void)
{
    /* Direct: a depthwise and a 1x1 Conv, a 2-D MaxPool, static shapes. */
    for (int t = 0; t < 6; t++) {
        struct conv_case c = conv_random(t % 2 ? 1 : 2);
        int64_t xd[5] = {c.N, c.C}, wd[5] = {c.M, c.cg}, yd[5] = {c.N, c.M};
        for (int i = 0; i < c.nd; i++) xd[2 + i] = c.in[i], wd[2 + i] = c.k[i], yd[2 + i] = c.out[i];
        struct ten x = ten_rand(c.nd + 2, xd), w = ten_rand(c.nd + 2, wd);
        size_t ny = (size_t)(c.N * c.M) * c.os;
        double *want = malloc(ny * sizeof *want);
        if (!want) exit(1);
        conv_ref(&c, x.v, w.v, NULL, NULL, ACT_NONE, want);
        struct attrs at = {0};
        conv_attrs_list(&c, &at);
        struct kiln_value *in[2] = {ten_value(&x), ten_value(&w)}, *y = NULL;
        enum seen how[2] = {SEEN_STATIC, SEEN_CONST};
        kiln_err e = {0};
        struct prepped r = prep_run("", "Conv", 11, at.a, at.n, in, 2, how, -1, 1, NULL, NULL, &y, &e);
        char what[100];
        snprintf(what, sizeof what, "tuned Conv case %d", t);
        CHECK(r.st == KILN_OK && r.kernel, "%s: %s", what, e.msg);
        bool ok =
            r.chosen == 1 || (r.chosen == 2 && conv_is_1x1(&c)) || (r.chosen == 3 && c.nd == 2 && c.cg == 1);
        CHECK(ok, "%s: chose %d", what, r.chosen);
        if (y) expect(y, c.nd + 2, yd, want, ny, what);
        kiln_value_free(y);
        free_all(in, 2);
        free(want);
        ten_free(&x), ten_free(&w);
    }
    /* An engine, tuned: a 1x1 Conv, a depthwise Conv, a MaxPool, Flatten and a Gemm with
     * transB (f is [1, 72]). */
    struct sb s = {0};
    sbf(&s, "opset 17\ninput X f32 1,4,9,7\n");
    int64_t w1d[4] = {6, 4, 1, 1}, w2d[4] = {6, 1, 3, 3}, w3d[2] = {5, 72}, xd[4] = {1, 4, 9, 7};
    struct ten W1 = ten_rand(4, w1d), W2 = ten_rand(4, w2d), W3 = ten_rand(2, w3d), X = ten_rand(4, xd);
    sb_tensor(&s, "W1", &W1, true);
    sb_tensor(&s, "W2", &W2, true);
    sb_tensor(&s, "W3", &W3, true);
    sbf(&s, "node Conv X,W1 -> a\nnode Conv a,W2 -> b group=int:6 pads=ints:1,1,1,1\n"
            "node MaxPool b -> c kernel_shape=ints:2,2 strides=ints:2,2\n"
            "node Flatten c -> f\nnode Gemm f,W3 -> Y transB=int:1\noutput Y\n");
    /* The reference, stage by stage. */
    struct conv_case c1 = {.nd = 2,
                           .ap = AP_NONE,
                           .N = 1,
                           .G = 1,
                           .cg = 4,
                           .mg = 6,
                           .in = {9, 7},
                           .k = {1, 1},
                           .s = {1, 1},
                           .d = {1, 1}};
    struct conv_case c2 = {.nd = 2,
                           .ap = AP_PADS,
                           .N = 1,
                           .G = 6,
                           .cg = 1,
                           .mg = 1,
                           .in = {9, 7},
                           .k = {3, 3},
                           .s = {1, 1},
                           .d = {1, 1},
                           .pads = {1, 1, 1, 1}};
    conv_derive(&c1);
    conv_derive(&c2);
    double a[378], bb[378], f[72], want[5];
    conv_ref(&c1, X.v, W1.v, NULL, NULL, ACT_NONE, a);
    conv_ref(&c2, a, W2.v, NULL, NULL, ACT_NONE, bb);
    for (int ch = 0; ch < 6; ch++)
        for (int oy = 0; oy < 4; oy++)
            for (int ox = 0; ox < 3; ox++) {
                double m = -INFINITY;
                for (int ky = 0; ky < 2; ky++)
                    for (int kx = 0; kx < 2; kx++) {
                        double v = bb[ch * 63 + (oy * 2 + ky) * 7 + ox * 2 + kx];
                        if (v > m) m = v;
                    }
                f[ch * 12 + oy * 3 + ox] = m;
            }
    for (int j = 0; j < 5; j++) {
        want[j] = 0;
        for (int p = 0; p < 72; p++) want[j] += f[p] * W3.v[j * 72 + p];
    }
    struct buf mb = {0};
    parse_model(s.p, &mb);
    kiln_model *m = NULL;
    kiln_builder *bld = NULL;
    kiln_engine *eng = NULL;
    kiln_context *ctx = NULL;
    kiln_value *xin = ten_value(&X), *y = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &e);
    if (!st) st = kiln_builder_create(&bld, &e);
    if (!st) {
        kiln_builder_set_opt_level(bld, KILN_OPT_NONE);
        kiln_builder_set_tune(bld, 1);
        st = kiln_builder_set_threads(bld, 2, &e);
    }
    if (!st) st = kiln_builder_build(bld, m, &eng, &e);
    CHECK(st == KILN_OK, "tuned engine: %s", e.msg);
    if (!st) {
        static const char *const allowed[5][3] = {
            {"im2col+sgemm", "1x1-sgemm"}, {"im2col+sgemm", "depthwise"}, {"generic", "2d"}, {NULL},
            {NULL, "onednn-packed"}}; /* Gemm: oneDNN's packed B when kiln has oneDNN */
        for (size_t i = 0; i < 5; i++) {
            const char *be, *kern, *var;
            kiln_engine_node_kernel(eng, i, &be, &kern, &var);
            bool ok = !allowed[i][0] ? var == NULL || (allowed[i][1] && !strcmp(var, allowed[i][1]))
                                     : var && (!strcmp(var, allowed[i][0]) || !strcmp(var, allowed[i][1]));
            CHECK(ok, "tuned engine node %zu: variant '%s'", i, var ? var : "(null)");
        }
        st = kiln_context_create(eng, &ctx, &e);
        const char *names[1] = {"X"};
        if (!st) st = kiln_context_run(ctx, NULL, 1, names, (const kiln_value *const *)&xin, 1, &y, &e);
        CHECK(st == KILN_OK, "tuned engine run: %s", e.msg);
        int64_t yd[2] = {1, 5};
        expect(y, 2, yd, want, 5, "tuned engine");
    }
    kiln_value_free(y);
    kiln_value_free(xin);
    kiln_context_free(ctx);
    kiln_engine_free(eng);
    kiln_builder_free(bld);
    kiln_model_free(m);
    free(mb.p);
    free(s.p);
    ten_free(&W1), ten_free(&W2), ten_free(&W3), ten_free(&X);
}

int main(void)
{
    rng_seed(0x9E9A4EDu);
    kiln_err e = {0};
    struct kiln_pool *pool = NULL;
    if (kiln_pool_create(3, &pool, &e)) {
        printf("FAIL: pool: %s\n", e.msg);
        return 1;
    }
    test_conv_sessions();
    test_gemm_sessions();
    test_matmul_sessions();
    test_conv_variants(pool);
    test_gemm_prepare(pool);
    test_pool_variants();
    test_prepare_errors();
    test_tuning();
    kiln_pool_free(pool);
    return test_summary("test_prepared_conv_gemm");
}
