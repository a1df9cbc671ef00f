/* test_qdq_kernels.c: kiln.QConv's prepared oneDNN int8 convolution (cpu/dnnl_qconv.c) and
 * its reference loop (src/cpu/ops/qconv.c) against the definition of docs/fused-ops.md
 * computed here (int64 accumulator, then the float32 epilogue in the documented order),
 * and kiln.QAdd's loop (cpu/qdq_isa.h), every compiled variant up to the CPU's best,
 * against the unfused DequantizeLinear + Add + QuantizeLinear in float32. Every comparison
 * is exact (byte for byte).
 *
 * QConv: small text models (support/test_text_model.h), run with 1, 2 and 3 threads; W an
 * initializer (the prepared variant where oneDNN has VNNI or AMX) or a graph input (the
 * reference variant). Shapes random, odd and tiny: channels 1..37, group 1, 2-3 groups or
 * depthwise (M = C or 2C), kernels 1..5, strides 1..3, dilations 1..2, asymmetric pads and
 * SAME_UPPER / VALID, 1x1 images, two images; uint8 and int8 activations; zero points 0,
 * 128, 255 / -128, 127 and random; bias absent or random; activation none, Relu or Clip.
 * Half the cases use scales that make S[m] = 0.5 or 0.25 exactly, so that many results
 * are exact halves: they check that rounding is half to even and that y_zero_point is
 * added before rounding (an odd zero point tells the two orders apart). Weights and
 * activations come mostly from the extremes of their ranges (a saturating pair sum would
 * show). ctest also runs it with KILN_CPU_ISA=avx2 and =portable, where a constant W with
 * group 1 takes kiln's own int8 product ("kiln-int8-*", cpu/int8_gemm_isa.h), a depthwise
 * one the int32 taps ("int32-depthwise") and the rest the reference (checked all the same).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/isa.h"
#include "cpu/qdq_isa.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define tf model_text_add

static int cases_run, prepared_runs;
static char last_variant[32]; /* node 0's variant in the last run */

struct qc {
    bool s8, bias, wconst;
    int act; /* 0 none, 1 Relu, 2 Clip */
    float lo, hi;
    int64_t N, H, W, C, M, G, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int auto_pad; /* 0 explicit pads, 1 SAME_UPPER, 3 VALID */
    int64_t OH, OW;
    int32_t xz, yz;
    float xs, ys, *ws;
    int32_t *x, *w, *b;
};

static int32_t extreme(int lo, int hi)
{
    int r = rng_int(4);
    if (r == 0) return lo;
    if (r == 1) return hi;
    return lo + rng_int(hi - lo + 1);
}

static void geometry(struct qc *c)
{
    int64_t dk[2] = {(c->kh - 1) * c->dh + 1, (c->kw - 1) * c->dw + 1}, in[2] = {c->H, c->W};
    int64_t s[2] = {c->sh, c->sw}, *o[2] = {&c->OH, &c->OW}, *pb[2] = {&c->pt, &c->pl}, *pe[2] = {&c->pb, &c->pr};
    for (int i = 0; i < 2; i++) {
        if (c->auto_pad == 1) {
            *o[i] = (in[i] + s[i] - 1) / s[i];
            int64_t tot = (*o[i] - 1) * s[i] + dk[i] - in[i];
            if (tot < 0) tot = 0;
            *pb[i] = tot / 2;
            *pe[i] = tot - tot / 2;
            continue;
        }
        if (c->auto_pad == 3) *pb[i] = *pe[i] = 0;
        int64_t span = in[i] + *pb[i] + *pe[i] - dk[i];
        *o[i] = span < 0 ? 0 : span / s[i] + 1;
    }
}

/* The definition: int64 accumulator, then the float32 epilogue of the header. */
static void expected(const struct qc *c, int32_t *y)
{
    int64_t Cg = c->C / c->G, Mg = c->M / c->G;
    int32_t qlo = c->s8 ? -128 : 0, qhi = c->s8 ? 127 : 255;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t oh = 0; oh < c->OH; oh++)
            for (int64_t ow = 0; ow < c->OW; ow++)
                for (int64_t m = 0; m < c->M; m++) {
                    int64_t g = m / Mg, acc = 0;
                    for (int64_t ky = 0; ky < c->kh; ky++)
                        for (int64_t kx = 0; kx < c->kw; kx++) {
                            int64_t ih = oh * c->sh - c->pt + ky * c->dh, iw = ow * c->sw - c->pl + kx * c->dw;
                            if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                            for (int64_t ci = 0; ci < Cg; ci++) {
                                int64_t xv = c->x[((n * c->H + ih) * c->W + iw) * c->C + g * Cg + ci];
                                int64_t wv = c->w[((m * Cg + ci) * c->kh + ky) * c->kw + kx];
                                acc += (xv - c->xz) * wv;
                            }
                        }
                    float S = (c->xs * c->ws[m]) / c->ys;
                    volatile float v = ((float)acc + (float)(c->bias ? c->b[m] : 0)) * S;
                    if (c->act == 1 && v < 0.0f) v = 0.0f;
                    if (c->act == 2) {
                        float lo = c->lo / c->ys, hi = c->hi / c->ys;
                        v = v < lo ? lo : v > hi ? hi : v;
                    }
                    float r = nearbyintf(v + (float)c->yz);
                    int32_t q = r < (float)qlo ? qlo : r > (float)qhi ? qhi : (int32_t)r;
                    y[((n * c->OH + oh) * c->OW + ow) * c->M + m] = q;
                }
}

static void list_ints(const int32_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) tf("%s%d", i ? "," : "", v[i]);
}

static void write_model(const struct qc *c)
{
    const char *t = c->s8 ? "i8" : "u8";
    model_text_reset();
    tf("opset 17 kiln\n");
    tf("input X %s %lld,%lld,%lld,%lld\n", t, (long long)c->N, (long long)c->H, (long long)c->W, (long long)c->C);
    int64_t Cg = c->C / c->G;
    size_t nw = (size_t)(c->M * Cg * c->kh * c->kw);
    if (c->wconst) {
        tf("init W i8 %lld,%lld,%lld,%lld = ", (long long)c->M, (long long)Cg, (long long)c->kh, (long long)c->kw);
        list_ints(c->w, nw);
        tf("\n");
    } else {
        tf("input W i8 %lld,%lld,%lld,%lld\n", (long long)c->M, (long long)Cg, (long long)c->kh, (long long)c->kw);
    }
    if (c->bias) {
        tf("init B i32 %lld = ", (long long)c->M);
        list_ints(c->b, (size_t)c->M);
        tf("\n");
    }
    tf("init XS f32 - = %.9g\ninit YS f32 - = %.9g\n", c->xs, c->ys);
    tf("init XZ %s - = %d\ninit YZ %s - = %d\n", t, c->xz, t, c->yz);
    tf("init WS f32 %lld = ", (long long)c->M);
    for (int64_t m = 0; m < c->M; m++) tf("%s%.9g", m ? "," : "", c->ws[m]);
    tf("\n");
    tf("node kiln.QConv X,W,%s,XS,XZ,WS,YS,YZ -> Y group=int:%lld kernel_shape=ints:%lld,%lld "
       "strides=ints:%lld,%lld dilations=ints:%lld,%lld",
       c->bias ? "B" : "_", (long long)c->G, (long long)c->kh, (long long)c->kw, (long long)c->sh,
       (long long)c->sw, (long long)c->dh, (long long)c->dw);
    if (c->auto_pad)
        tf(" auto_pad=string:%s", c->auto_pad == 1 ? "SAME_UPPER" : "VALID");
    else
        tf(" pads=ints:%lld,%lld,%lld,%lld", (long long)c->pt, (long long)c->pl, (long long)c->pb, (long long)c->pr);
    if (c->act == 1) tf(" activation=string:Relu");
    if (c->act == 2) tf(" activation=string:Clip activation_params=floats:%.9g,%.9g", c->lo, c->hi);
    tf("\noutput Y %s\n", t);
}

static kiln_value *int_value(kiln_dtype dt, const int32_t *v, int rank, const int64_t *dims, size_t n)
{
    int8_t *raw = malloc(n + 1);
    if (!raw) exit(1);
    for (size_t i = 0; i < n; i++) raw[i] = (int8_t)v[i];
    kiln_value *t = tensor_of(dt, rank, dims, raw);
    free(raw);
    return t;
}

/* Runs the model with `threads`; Y, and whether node 0 took "onednn-int8". */
static kiln_value *run(const struct qc *c, int threads, bool *prepared, const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_session *s = NULL;
    kiln_value *out = NULL, *in[2];
    const char *names[2] = {"X", "W"};
    int64_t xd[4] = {c->N, c->H, c->W, c->C}, wd[4] = {c->M, c->C / c->G, c->kh, c->kw};
    in[0] = int_value(c->s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8, c->x, 4, xd, (size_t)(c->N * c->H * c->W * c->C));
    in[1] = int_value(KILN_DTYPE_I8, c->w, 4, wd, (size_t)(wd[0] * wd[1] * wd[2] * wd[3]));
    size_t n_in = c->wconst ? 1 : 2;
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, threads, &err);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    if (!st) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
        *prepared = variant && !strncmp(variant, "onednn-int8", 11);
        snprintf(last_variant, sizeof last_variant, "%s", variant ? variant : "");
        st = kiln_session_create_from_engine(e, NULL, &s, &err);
    }
    if (!st) st = kiln_session_run(s, n_in, names, (const kiln_value *const *)in, 1, &out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_session_free(s);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    free_all(in, 2);
    return out;
}

static void random_case(struct qc *c, int i)
{
    memset(c, 0, sizeof *c);
    c->s8 = rng_int(4) == 0;
    c->N = rng_int(5) == 0 ? 2 : 1;
    int kind = rng_int(4); /* 0, 1: group 1; 2: depthwise; 3: 2-3 groups */
    c->G = 1;
    c->C = 1 + rng_int(37);
    if (kind == 2) c->G = c->C;
    if (kind == 3) {
        c->G = 2 + rng_int(2);
        c->C = c->G * (1 + rng_int(9));
    }
    c->M = c->G * (kind == 2 ? 1 + rng_int(2) : 1 + rng_int(kind == 3 ? 9 : 37));
    c->kh = 1 + rng_int(i % 3 == 0 ? 5 : 3);
    c->kw = rng_int(3) == 0 ? 1 + rng_int(3) : c->kh;
    c->sh = 1 + rng_int_low(3), c->sw = rng_int(3) == 0 ? 1 + rng_int(3) : c->sh;
    c->dh = 1 + rng_int(4) / 3, c->dw = 1 + rng_int(4) / 3;
    c->H = 1 + rng_int(i % 7 == 0 ? 3 : 14), c->W = 1 + rng_int(14);
    c->auto_pad = rng_int(6) == 0 ? 1 : rng_int(8) == 0 ? 3 : 0;
    c->pt = rng_int(3), c->pl = rng_int(3), c->pb = rng_int(3), c->pr = rng_int(3);
    /* the kernel must fit the padded input */
    if ((c->kh - 1) * c->dh + 1 > c->H + c->pt + c->pb) c->pb += (c->kh - 1) * c->dh + 1 - c->H;
    if ((c->kw - 1) * c->dw + 1 > c->W + c->pl + c->pr) c->pr += (c->kw - 1) * c->dw + 1 - c->W;
    if (c->auto_pad == 3 && ((c->kh - 1) * c->dh + 1 > c->H || (c->kw - 1) * c->dw + 1 > c->W)) c->auto_pad = 0;
    geometry(c);
    int lo = c->s8 ? -128 : 0, hi = c->s8 ? 127 : 255;
    static const int zu[] = {0, 0, 128, 255, -1}, zs[] = {0, 0, -128, 127, -1};
    int r = rng_int(5);
    c->xz = (c->s8 ? zs : zu)[r];
    if (c->xz == -1) c->xz = lo + rng_int(256);
    c->yz = lo + rng_int(256);
    if (rng_int(3) == 0) c->yz = c->s8 ? 1 : 129; /* odd: rounding before or after it differs */
    c->bias = rng_int(3) != 0;
    c->act = rng_int(3);
    bool ties = rng_int(2) == 0;
    c->xs = ties ? 1.0f : (float)rng_range(0.002, 0.05);
    c->ys = ties ? (rng_int(2) ? 2.0f : 4.0f) : (float)rng_range(0.01, 0.2);
    c->lo = ties ? -3.0f : (float)rng_range(-2.0, 0.0);
    c->hi = ties ? 7.0f : (float)rng_range(0.5, 6.0);
    size_t nx = (size_t)(c->N * c->H * c->W * c->C), nw = (size_t)(c->M * (c->C / c->G) * c->kh * c->kw);
    c->x = malloc((nx + 1) * sizeof *c->x);
    c->w = malloc((nw + 1) * sizeof *c->w);
    c->b = malloc((size_t)(c->M + 1) * sizeof *c->b);
    c->ws = malloc((size_t)(c->M + 1) * sizeof *c->ws);
    if (!c->x || !c->w || !c->b || !c->ws) exit(1);
    for (size_t j = 0; j < nx; j++) c->x[j] = extreme(lo, hi);
    for (size_t j = 0; j < nw; j++) c->w[j] = extreme(-127, 127);
    for (int64_t m = 0; m < c->M; m++) {
        c->b[m] = rng_int(20001) - 10000;
        c->ws[m] = ties ? 1.0f : (float)rng_range(0.001, 0.02);
    }
}

static void free_case(struct qc *c)
{
    free(c->x);
    free(c->w);
    free(c->b);
    free(c->ws);
}

static void check_bytes(const kiln_value *y, const int32_t *want, size_t n, const char *what)
{
    const int8_t *p = y->t.data;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if ((int32_t)(y->t.dtype == KILN_DTYPE_U8 ? (uint8_t)p[i] : p[i]) != want[i] && !bad++) first = i;
    CHECK(bad == 0, "%s: %zu of %zu differ, first at %zu: got %d, want %d", what, bad, n, first,
          (int)(y->t.dtype == KILN_DTYPE_U8 ? (uint8_t)p[first] : p[first]), want[first]);
}

static void qconv_cases(void)
{
    bool want_fast = kiln_isa_active() == KILN_ISA_AVX512;
#ifndef KILN_HAVE_DNNL
    want_fast = false;
#endif
    int fast_possible = 0;
    for (int i = 0; i < 160; i++) {
        struct qc c;
        random_case(&c, i);
        size_t ny = (size_t)(c.N * c.OH * c.OW * c.M);
        int32_t *want = malloc((ny + 1) * sizeof *want);
        if (!want) exit(1);
        expected(&c, want);
        char what[512];
        for (int v = 0; v < 2; v++) {
            c.wconst = v == 0;
            write_model(&c);
            for (int threads = 1; threads <= 3; threads++) {
                snprintf(what, sizeof what,
                         "case %d (%s, N %lld, %lldx%lldx%lld -> %lld, group %lld, k %lldx%lld, s %lld,%lld, d %lld,%lld, "
                         "pads %lld,%lld,%lld,%lld ap %d, xz %d yz %d, bias %d, act %d, %s W, %d threads)",
                         i, c.s8 ? "int8" : "uint8", (long long)c.N, (long long)c.H, (long long)c.W, (long long)c.C,
                         (long long)c.M, (long long)c.G, (long long)c.kh, (long long)c.kw, (long long)c.sh,
                         (long long)c.sw, (long long)c.dh, (long long)c.dw, (long long)c.pt, (long long)c.pl,
                         (long long)c.pb, (long long)c.pr, c.auto_pad, c.xz, c.yz, c.bias, c.act,
                         c.wconst ? "constant" : "input", threads);
                bool prep = false;
                kiln_value *y = run(&c, threads, &prep, what);
                cases_run++;
                if (c.wconst) fast_possible++;
                prepared_runs += prep;
                if (c.wconst && !prep && getenv("QDQ_TEST_VERBOSE")) printf("not prepared: %s\n", what);
                CHECK(!prep || c.wconst, "%s: a graph-input W took the prepared variant", what);
                /* without oneDNN's exact kernels, group 1 takes kiln's own int8 product */
                if (!want_fast && c.wconst && c.G == 1)
                    CHECK(!strncmp(last_variant, "kiln-int8-", 10), "%s: took %s, not kiln-int8-*", what,
                          last_variant);
                /* and depthwise (group = C = M) the int32 taps */
                if (!want_fast && c.wconst && c.G > 1 && c.G == c.C && c.M == c.C)
                    CHECK(!strcmp(last_variant, "int32-depthwise"), "%s: took %s, not int32-depthwise", what,
                          last_variant);
                if (y) {
                    CHECK(y->t.rank == 4 && y->t.dims[1] == c.OH && y->t.dims[2] == c.OW && y->t.dims[3] == c.M,
                          "%s: wrong output shape", what);
                    check_bytes(y, want, ny, what);
                }
                kiln_value_free(y);
            }
        }
        free(want);
        free_case(&c);
    }
    /* oneDNN takes nearly every one of these where it has exact int8 kernels (it declines a
     * few odd geometries, e.g. a 1x1 kernel on a 1x1 image with padding: those run the
     * reference, checked the same) */
    if (want_fast)
        CHECK(prepared_runs * 10 >= fast_possible * 9, "prepared variant ran %d of %d times", prepared_runs,
              fast_possible);
    else
        CHECK(prepared_runs == 0, "prepared variant ran %d times at isa %s", prepared_runs, kiln_cpu_isa());
}

/* kiln.QAdd's loop, each compiled variant, against the unfused float32 computation (a true
 * division: the vector loops multiply by the reciprocal and divide only near ties, so the
 * random scales here test that shortcut and the tie cases the division). */
static void qadd_cases(void)
{
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        void (*fn)(const uint8_t *, const uint8_t *, uint8_t *, size_t, const struct kiln_qadd_params *) =
            KILN_ISA_VARIANT(kiln_qadd_u8_isa, isa);
        for (int t = 0; t < 600; t++) {
            size_t n = (size_t)(t < 40 ? t : rng_int(300));
            uint8_t a[300], b[300], y[300];
            bool ties = t % 2 == 0;
            struct kiln_qadd_params p = {ties ? 0.5f : (float)rng_range(0.001, 0.1), (float)rng_int(256),
                                         ties ? 0.25f : (float)rng_range(0.001, 0.1), (float)rng_int(256),
                                         ties ? 0.5f : (float)rng_range(0.001, 0.2), (float)(ties ? 129 : rng_int(256))};
            for (size_t j = 0; j < n; j++) a[j] = (uint8_t)extreme(0, 255), b[j] = (uint8_t)extreme(0, 255);
            fn(a, b, y, n, &p);
            for (size_t j = 0; j < n; j++) {
                volatile float fa = ((float)a[j] - p.az) * p.as, fb = ((float)b[j] - p.bz) * p.bs;
                float q = nearbyintf((fa + fb) / p.ys) + p.yz;
                int want = q < 0.0f ? 0 : q > 255.0f ? 255 : (int)q;
                CHECK(y[j] == want, "QAdd isa %s n %zu [%zu]: a %d b %d got %d want %d", kiln_isa_name((enum kiln_isa)isa),
                      n, j, a[j], b[j], y[j], want);
            }
        }
    }
}

int main(void)
{
    rng_seed(20261202);
    qconv_cases();
    qadd_cases();
    printf("test_qdq_kernels: %d QConv runs, %d prepared (isa %s)\n", cases_run, prepared_runs, kiln_cpu_isa());
    return test_summary("test_qdq_kernels");
}
