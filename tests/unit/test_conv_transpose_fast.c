/* test_conv_transpose_fast.c: ConvTranspose's "onednn" and "pgemm+col2im" variants
 * (src/cpu/ops/conv.c: a prepared oneDNN matmul, or kiln's GEMM, on W^T laid out at prepare,
 * then col2im, split by output channels over the threads) and kiln.FusedConvTranspose
 * (ConvTranspose, then an activation).
 *
 * Small models in the text form of support/test_text_model.h run through kiln_session with
 * 1 and 2 threads. X is a graph input of static shape; W and B are initializers (constants
 * at prepare: the "onednn" variant where kiln has oneDNN and runs at AVX-512, the
 * "pgemm+col2im" one at AVX2) or
 * graph inputs (the reference "sgemm+col2im" variant, the loop kiln had before). Shapes:
 * random, odd and tiny (1-wide images, one channel per group, more threads than channels),
 * 1-D, 2-D and 3-D, groups, strides, dilations, asymmetric pads, output_padding,
 * output_shape, every auto_pad, with and without bias, activations Relu, LeakyRelu, Clip and
 * Tanh; then DCGAN's layer shapes.
 *
 * Each result is compared with a float64 ConvTranspose written here from the ONNX definition
 * (y[o * s - pb + k * d] += x[o] * w[k]), and the oneDNN variant's output with the reference
 * variant's. Inputs and weights lie on a 1/16 grid in [-1, 1] and activation parameters are
 * dyadic, so float32 products and sums are exact in any order: |got - want| <= 1e-5 * (1 +
 * |want|) then catches indexing, padding and slicing mistakes, never rounding (Tanh adds
 * vmath's few ulp, well inside it). ctest also runs this test with KILN_CPU_ISA=avx2 (the
 * "pgemm+col2im" variant) and =portable, where every case takes the reference variant.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-5

/* The model text being built (support/test_text_model.h). */
#define tf model_text_add

static double grid(void) { return (double)(rng_int(33) - 16) / 16.0; }

enum act { ACT_NONE, ACT_RELU, ACT_LEAKY, ACT_CLIP, ACT_TANH, ACT_COUNT };

static double act_apply(enum act a, double v)
{
    switch (a) {
    case ACT_RELU: return v < 0 ? 0 : v;
    case ACT_LEAKY: return v < 0 ? 0.125 * v : v;
    case ACT_CLIP: return v < -0.5 ? -0.5 : v > 0.75 ? 0.75 : v;
    case ACT_TANH: return tanh(v);
    default: return v;
    }
}

static const char *act_attrs(enum act a)
{
    switch (a) {
    case ACT_RELU: return " activation=string:Relu";
    case ACT_LEAKY: return " activation=string:LeakyRelu activation_params=floats:0.125";
    case ACT_CLIP: return " activation=string:Clip activation_params=floats:-0.5,0.75";
    case ACT_TANH: return " activation=string:Tanh";
    default: return "";
    }
}

enum pad_mode { PAD_EXPLICIT, PAD_NONE, PAD_UPPER, PAD_LOWER, PAD_VALID, PAD_OSHAPE };

struct cfg {
    int nd;
    int64_t N, C, M, G; /* C input channels, M output channels */
    int64_t in[3], k[3], s[3], d[3], pb[3], pe[3], opad[3];
    int64_t oshape[3]; /* PAD_OSHAPE */
    enum pad_mode pad;
    bool bias;
    enum act act;
};

/* Output size and begin padding of dim i (ONNX ConvTranspose; the total padding of
 * output_shape and SAME_* split with the odd one at the end for SAME_UPPER, else at the
 * beginning). */
static void out_dim(const struct cfg *c, int i, int64_t *out, int64_t *pb)
{
    int64_t dk = (c->k[i] - 1) * c->d[i] + 1;
    int64_t full = c->s[i] * (c->in[i] - 1) + c->opad[i] + dk;
    if (c->pad == PAD_UPPER || c->pad == PAD_LOWER || c->pad == PAD_OSHAPE) {
        *out = c->pad == PAD_OSHAPE ? c->oshape[i] : c->in[i] * c->s[i];
        int64_t tot = full - *out;
        int64_t half = tot >= 0 ? tot / 2 : -((-tot + 1) / 2); /* floor */
        *pb = c->pad == PAD_UPPER ? half : tot - half;
        return;
    }
    int64_t b = c->pad == PAD_EXPLICIT ? c->pb[i] : 0, e = c->pad == PAD_EXPLICIT ? c->pe[i] : 0;
    *pb = b;
    *out = full - b - e;
}

/* The float64 reference: y [N, M, out...] from the ONNX definition. */
static void reference(const struct cfg *c, const double *x, const double *w, const double *b,
                      const int64_t *out, const int64_t *pb, double *y)
{
    int64_t cg = c->C / c->G, mg = c->M / c->G, is = 1, os = 1, ks = 1;
    for (int i = 0; i < c->nd; i++) is *= c->in[i], os *= out[i], ks *= c->k[i];
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t m = 0; m < c->M; m++)
            for (int64_t o = 0; o < os; o++) y[(n * c->M + m) * os + o] = c->bias ? b[m] : 0.0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ci = 0; ci < c->C; ci++) {
            int64_t g = ci / cg;
            for (int64_t p = 0; p < is; p++) {
                int64_t ip[3], r = p;
                for (int i = c->nd - 1; i >= 0; i--) ip[i] = r % c->in[i], r /= c->in[i];
                double xv = x[(n * c->C + ci) * is + p];
                for (int64_t kk = 0; kk < ks; kk++) {
                    int64_t kp[3], q = kk, o = 0;
                    for (int i = c->nd - 1; i >= 0; i--) kp[i] = q % c->k[i], q /= c->k[i];
                    bool inside = true;
                    for (int i = 0; i < c->nd; i++) {
                        int64_t oi = ip[i] * c->s[i] - pb[i] + kp[i] * c->d[i];
                        if (oi < 0 || oi >= out[i]) inside = false;
                        o = o * out[i] + oi;
                    }
                    if (!inside) continue;
                    for (int64_t j = 0; j < mg; j++)
                        y[(n * c->M + g * mg + j) * os + o] += xv * w[(ci * mg + j) * ks + kk];
                }
            }
        }
    size_t ny = (size_t)(c->N * c->M * os);
    for (size_t i = 0; i < ny; i++) y[i] = act_apply(c->act, y[i]);
}

static void tf_ints(const char *name, const int64_t *v, int n)
{
    tf(" %s=ints:", name);
    for (int i = 0; i < n; i++) tf("%s%lld", i ? "," : "", (long long)v[i]);
}

static void tf_dims(const int64_t *d, int n)
{
    for (int i = 0; i < n; i++) tf("%s%lld", i ? "," : "", (long long)d[i]);
}

static void tf_values(const double *v, size_t n)
{
    tf(" =");
    for (size_t i = 0; i < n; i++) tf("%s%g", i ? "," : " ", v[i]);
}

static const char *const pad_name[] = {"pads", "none", "SAME_UPPER", "SAME_LOWER", "VALID", "output_shape"};

/* The model text: X a graph input, W and B initializers (wconst, bconst) or graph inputs. */
static void write_model(const struct cfg *c, const double *w, const double *b, bool wconst, bool bconst)
{
    int r = c->nd + 2;
    int64_t xd[5] = {c->N, c->C}, wd[5] = {c->C, c->M / c->G};
    for (int i = 0; i < c->nd; i++) xd[2 + i] = c->in[i], wd[2 + i] = c->k[i];
    size_t nw = 1;
    for (int i = 0; i < r; i++) nw *= (size_t)wd[i];
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 ");
    tf_dims(xd, r);
    tf("\n%s W f32 ", wconst ? "init" : "input");
    tf_dims(wd, r);
    if (wconst) tf_values(w, nw);
    tf("\n");
    if (c->bias) {
        tf("%s B f32 %lld", bconst ? "init" : "input", (long long)c->M);
        if (bconst) tf_values(b, (size_t)c->M);
        tf("\n");
    }
    tf("output Y\nnode %s X,W%s -> Y group=int:%lld", c->act ? "kiln.FusedConvTranspose" : "ConvTranspose",
       c->bias ? ",B" : "", (long long)c->G);
    tf_ints("strides", c->s, c->nd);
    tf_ints("dilations", c->d, c->nd);
    if (c->pad == PAD_EXPLICIT) {
        int64_t p[6];
        for (int i = 0; i < c->nd; i++) p[i] = c->pb[i], p[c->nd + i] = c->pe[i];
        tf_ints("pads", p, 2 * c->nd);
    }
    if (c->pad == PAD_UPPER || c->pad == PAD_LOWER || c->pad == PAD_VALID)
        tf(" auto_pad=string:%s", pad_name[c->pad]);
    if (c->pad == PAD_OSHAPE) tf_ints("output_shape", c->oshape, c->nd);
    bool any_opad = false;
    for (int i = 0; i < c->nd; i++) any_opad |= c->opad[i] != 0;
    if (any_opad || rng_int(4) == 0) tf_ints("output_padding", c->opad, c->nd);
    if (rng_int(2)) tf_ints("kernel_shape", c->k, c->nd);
    tf("%s\n", act_attrs(c->act));
}

static kiln_value *f32_value(const double *v, int rank, const int64_t *dims, size_t n)
{
    float *f = malloc((n + 1) * sizeof *f);
    if (!f) exit(1);
    for (size_t i = 0; i < n; i++) f[i] = (float)v[i];
    kiln_value *t = tensor_of(KILN_DTYPE_F32, rank, dims, f);
    free(f);
    return t;
}

/* Runs the model in `text` with `threads` threads; returns output Y (NULL after a failed
 * CHECK). W and B are bound as inputs unless wconst / bconst. */
static kiln_value *run_model(const struct cfg *c, const double *x, const double *w, const double *b,
                             bool wconst, bool bconst, int threads, const char *what)
{
    int r = c->nd + 2;
    int64_t xd[5] = {c->N, c->C}, wd[5] = {c->C, c->M / c->G};
    for (int i = 0; i < c->nd; i++) xd[2 + i] = c->in[i], wd[2 + i] = c->k[i];
    size_t nx = 1, nw = 1;
    for (int i = 0; i < r; i++) nx *= (size_t)xd[i], nw *= (size_t)wd[i];
    const char *names[3] = {"X", "W", "B"};
    kiln_value *in[3] = {f32_value(x, r, xd, nx), NULL, NULL};
    size_t n_in = 1;
    if (!wconst) names[n_in] = "W", in[n_in++] = f32_value(w, r, wd, nw);
    if (c->bias && !bconst) names[n_in] = "B", in[n_in++] = f32_value(b, 1, &c->M, (size_t)c->M);
    kiln_value *out = run_text_model(model_text(), n_in, names, in, threads, what);
    free_all(in, n_in);
    return out;
}

static int cases_run;

static void run_case(const struct cfg *c, const char *what)
{
    int64_t out[3], pb[3], yd[5] = {c->N, c->M};
    size_t nx = (size_t)(c->N * c->C), nw = (size_t)(c->C * (c->M / c->G)), ny = (size_t)(c->N * c->M);
    for (int i = 0; i < c->nd; i++) {
        out_dim(c, i, &out[i], &pb[i]);
        if (out[i] < 1) return; /* not a valid case */
        yd[2 + i] = out[i];
        nx *= (size_t)c->in[i], nw *= (size_t)c->k[i], ny *= (size_t)out[i];
    }
    double *x = malloc((nx + 1) * sizeof *x), *w = malloc((nw + 1) * sizeof *w);
    double *b = malloc((size_t)(c->M + 1) * sizeof *b), *want = malloc((ny + 1) * sizeof *want);
    double *ref = malloc((ny + 1) * sizeof *ref);
    if (!x || !w || !b || !want || !ref) exit(1);
    for (size_t i = 0; i < nx; i++) x[i] = grid();
    for (size_t i = 0; i < nw; i++) w[i] = grid();
    for (int64_t i = 0; i < c->M; i++) b[i] = grid();
    reference(c, x, w, b, out, pb, want);
    char msg[600];
    /* The reference variant: W (and B) graph inputs. */
    write_model(c, w, b, false, false);
    snprintf(msg, sizeof msg, "%s, reference variant", what);
    kiln_value *yr = run_model(c, x, w, b, false, false, 1, msg);
    if (yr) {
        CHECK(same_shape(&yr->t, c->nd + 2, yd), "%s: output shape", msg);
        close_to(yr, want, ny, TOL, msg);
        for (size_t i = 0; i < ny; i++) ref[i] = ((const float *)yr->t.data)[i];
    }
    /* The prepared variant, W an initializer (B too, or a graph input), 1 and 2 threads. */
    bool bconst = rng_int(3) != 0;
    write_model(c, w, b, true, bconst);
    for (int t = 1; t <= 2; t++) {
        snprintf(msg, sizeof msg, "%s, prepared (B %s), %d threads", what, bconst ? "const" : "input", t);
        kiln_value *y = run_model(c, x, w, b, true, bconst, t, msg);
        if (y) {
            CHECK(same_shape(&y->t, c->nd + 2, yd), "%s: output shape", msg);
            close_to(y, want, ny, TOL, msg);
            if (yr) {
                snprintf(msg, sizeof msg, "%s, prepared (%d threads) vs reference variant", what, t);
                close_to(y, ref, ny, TOL, msg);
            }
        }
        kiln_value_free(y);
    }
    kiln_value_free(yr);
    cases_run++;
    free(x), free(w), free(b), free(want), free(ref);
}

static void describe(const struct cfg *c, const char *label, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s: nd %d N%lld C%lld M%lld G%lld %s bias %d act %d", label, c->nd,
                     (long long)c->N, (long long)c->C, (long long)c->M, (long long)c->G, pad_name[c->pad],
                     c->bias, (int)c->act);
    for (int i = 0; i < c->nd && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, " [in %lld k %lld s %lld d %lld p %lld,%lld op %lld]",
                      (long long)c->in[i], (long long)c->k[i], (long long)c->s[i], (long long)c->d[i],
                      (long long)c->pb[i], (long long)c->pe[i], (long long)c->opad[i]);
}

static void random_cases(int count)
{
    for (int t = 0; t < count; t++) {
        struct cfg c = {0};
        c.nd = t % 7 == 6 ? 3 : t % 7 == 5 ? 1 : 2;
        c.N = 1 + rng_int(2);
        int kind = rng_int(4); /* 0 dense, 1 grouped, 2 depthwise-like, 3 wide */
        c.G = kind == 1 ? 1 + rng_int(3) : kind == 2 ? 1 + rng_int(6) : 1;
        c.C = c.G * (kind == 2 ? 1 : 1 + rng_int(kind == 3 ? 40 : 6));
        c.M = c.G * (kind == 2 ? 1 + rng_int(2) : 1 + rng_int(kind == 3 ? 40 : 6));
        for (int i = 0; i < c.nd; i++) {
            c.in[i] = 1 + rng_int(c.nd == 3 ? 4 : 7);
            c.k[i] = 1 + rng_int(c.nd == 3 ? 3 : 4);
            c.s[i] = 1 + rng_int(3);
            c.d[i] = rng_int(4) ? 1 : 2;
            c.pb[i] = rng_int((int)c.k[i]);
            c.pe[i] = rng_int((int)c.k[i]);
            int64_t mx = c.s[i] > c.d[i] ? c.s[i] : c.d[i];
            c.opad[i] = rng_int(3) ? 0 : rng_int((int)mx);
            int64_t full = c.s[i] * (c.in[i] - 1) + c.opad[i] + (c.k[i] - 1) * c.d[i] + 1;
            c.oshape[i] = full - rng_int((int)(full < 3 ? full : 3));
        }
        c.pad = (enum pad_mode)(rng_int(3) ? PAD_EXPLICIT : rng_int(6));
        if (c.pad == PAD_UPPER || c.pad == PAD_LOWER) /* SAME: output in * s, no output_padding */
            for (int i = 0; i < c.nd; i++) c.opad[i] = 0;
        c.bias = rng_int(3) != 0;
        c.act = rng_int(2) ? ACT_NONE : (enum act)(1 + rng_int(ACT_COUNT - 1));
        char what[600];
        describe(&c, "random case", what, sizeof what);
        snprintf(what + strlen(what), sizeof what - strlen(what), " (#%d)", t);
        run_case(&c, what);
    }
}

/* DCGAN's generator: 100 -> 512 (1x1 -> 4x4), then stride 2 up to 64x64 and 3 channels;
 * also a batch of 2. */
static void dcgan_shapes(void)
{
    static const int64_t L[][5] = {
        {100, 512, 1, 1, 0}, {512, 256, 4, 2, 1}, {256, 128, 8, 2, 1}, {128, 64, 16, 2, 1}, {64, 3, 32, 2, 1},
    };
    for (size_t l = 0; l < sizeof L / sizeof L[0]; l++) {
        struct cfg c = {.nd = 2, .N = l == 2 ? 2 : 1, .C = L[l][0], .M = L[l][1], .G = 1, .pad = PAD_EXPLICIT,
                        .bias = l % 2 == 0, .act = l == 4 ? ACT_TANH : ACT_RELU};
        for (int i = 0; i < 2; i++)
            c.in[i] = L[l][2], c.k[i] = 4, c.s[i] = L[l][3], c.d[i] = 1, c.pb[i] = c.pe[i] = L[l][4];
        char what[600];
        describe(&c, "DCGAN layer", what, sizeof what);
        run_case(&c, what);
    }
}

/* The variant an engine picks for constant float32 W and static X: "pgemm+col2im" at AVX2,
 * "onednn" at AVX-512 when kiln has oneDNN, else "sgemm+col2im"; W a graph input: the
 * reference. */
static void variants(void)
{
    for (int wconst = 0; wconst < 2; wconst++)
        for (int fused = 0; fused < 2; fused++) {
            model_text_reset();
            tf("opset 17 kiln\ninput X f32 1,8,5,5\n%s W f32 8,4,3,3%s\noutput Y\n"
               "node %s X,W -> Y strides=ints:2,2 pads=ints:1,1,1,1%s\n",
               wconst ? "init" : "input", wconst ? " rand" : "",
               fused ? "kiln.FusedConvTranspose" : "ConvTranspose", fused ? " activation=string:Relu" : "");
            kiln_engine *e = build_text_model(model_text(), 2, "variants");
            if (e) {
                const char *be, *kernel, *variant;
                kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
#ifdef KILN_HAVE_DNNL
                bool dnnl = true;
#else
                bool dnnl = false;
#endif
                const char *isa = kiln_cpu_isa();
                const char *want = !wconst                  ? "sgemm+col2im"
                                   : !strcmp(isa, "avx2")   ? "pgemm+col2im"
                                   : dnnl && !strcmp(isa, "avx512") ? "onednn"
                                                                    : "sgemm+col2im";
                CHECK(variant && !strcmp(variant, want), "W %s, %s: variant %s, expected %s",
                      wconst ? "constant" : "input", fused ? "fused" : "plain", variant ? variant : "(none)",
                      want);
            }
            kiln_engine_free(e);
        }
}

int main(void)
{
    rng_seed(0xC07);
    variants();
    dcgan_shapes();
    random_cases(140);
    CHECK(cases_run >= 100, "only %d cases ran", cases_run);
    return test_summary("test_conv_transpose_fast");
}
