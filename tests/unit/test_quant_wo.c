/* test_quant_wo.c: kiln.DequantMatMul, weight-only quantized MatMul (src/cpu/ops/quant_wo.c,
 * the fuse_dynquant pass's MatMul(x, DequantizeLinear(constant W)) rewrite).
 *
 * Models: x float32 [B, M, K] (M = 1 as in token-by-token decoding, and longer), W a constant
 * uint8 / int8 [K, N] with its float32 scale and optional zero point per tensor, per axis 0 or
 * 1, or blocked along axis 0 (the exporters' int4/int8 layout, block sizes that do and do not
 * divide K) or axis 1 (opset 21), K and N odd, below and above the 256-row tile. The model is
 * optimized with folding off (so the DequantizeLinear stays, as for weights beyond the fold
 * limit; W has more elements than shape inference evaluates) and must then hold a
 * kiln.DequantMatMul; its output, with 1, 2 and 3 threads, and
 * the unfused graph's are both compared with Y computed here in double from the
 * DequantizeLinear's float32 weights: |y - ref| <= 1e-5 * sum_k |x[m, k] * w[k, n]| + 1e-30
 * (float32 sums in another order). 4-bit weights (int4 / uint4, which the text models cannot
 * write) run the kernel directly (run_node) against the same reference.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define tf model_text_add

struct wcase {
    int64_t B, M, K, N, axis, block;
    kiln_dtype dt;
    bool zp;
    int32_t *w, *z;
    float *s, *x;
    size_t ns;
    int64_t sdims[2];
    int srank;
};

static int cases_run;

static double lo_of(kiln_dtype dt) { return dt == KILN_DTYPE_U8 || dt == KILN_DTYPE_U4 ? 0 : dt == KILN_DTYPE_I8 ? -128 : -8; }
static double hi_of(kiln_dtype dt) { return dt == KILN_DTYPE_U8 ? 255 : dt == KILN_DTYPE_I8 ? 127 : dt == KILN_DTYPE_U4 ? 15 : 7; }

static size_t pidx(const struct wcase *c, int64_t k, int64_t n)
{
    if (c->ns == 1 && !c->block) return 0;
    if (!c->block) return (size_t)(c->axis ? n : k);
    if (c->axis == 0) return (size_t)((k / c->block) * c->N + n);
    return (size_t)(k * c->sdims[1] + n / c->block);
}

static void draw_wcase(struct wcase *c)
{
    int kind = rng_int(5); /* 0 tensor, 1 axis 0, 2 axis 1, 3 blocks on axis 0, 4 blocks on axis 1 */
    c->axis = kind == 1 || kind == 3 ? 0 : 1;
    c->block = kind >= 3 ? (rng_int(2) ? 32 : 2 + rng_int(19)) : 0; /* block 1: scales as big as W_f, folded */
    if (kind == 0) c->srank = 0, c->ns = 1;
    if (kind == 1 || kind == 2) c->srank = 1, c->sdims[0] = kind == 1 ? c->K : c->N, c->ns = (size_t)c->sdims[0];
    if (kind >= 3) {
        c->srank = 2;
        c->sdims[0] = kind == 3 ? (c->K + c->block - 1) / c->block : c->K;
        c->sdims[1] = kind == 3 ? c->N : (c->N + c->block - 1) / c->block;
        c->ns = (size_t)(c->sdims[0] * c->sdims[1]);
    }
    size_t nw = (size_t)(c->K * c->N), nx = (size_t)(c->B * c->M * c->K);
    c->w = malloc(nw * sizeof *c->w), c->z = malloc(c->ns * sizeof *c->z);
    c->s = malloc(c->ns * sizeof *c->s), c->x = malloc(nx * sizeof *c->x);
    if (!c->w || !c->z || !c->s || !c->x) exit(1);
    double lo = lo_of(c->dt), w = hi_of(c->dt) - lo + 1;
    for (size_t j = 0; j < nw; j++) c->w[j] = (int32_t)(lo + floor(rng_unit() * w));
    for (size_t j = 0; j < c->ns; j++) c->z[j] = (int32_t)(lo + floor(rng_unit() * w)), c->s[j] = (float)rng_range(0.001, 0.1);
    for (size_t j = 0; j < nx; j++) c->x[j] = (float)rng_range(-2, 2);
}

/* Checks y against the double reference over the float32 dequantized weights. */
static void check_y(const struct wcase *c, const kiln_value *y, const char *what)
{
    size_t rows = (size_t)(c->B * c->M), ny = rows * (size_t)c->N;
    if (!y || y->t.dtype != KILN_DTYPE_F32 || kiln_tensor_numel(&y->t) != ny) {
        CHECK(false, "%s: wrong output", what);
        return;
    }
    const float *g = y->t.data;
    for (size_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < c->N; n++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < c->K; k++) {
                size_t p = pidx(c, k, n);
                float dx = (float)c->w[k * c->N + n];
                if (c->zp) dx -= (float)c->z[p];
                float wf = dx * c->s[p];
                double t = (double)c->x[r * (size_t)c->K + (size_t)k] * (double)wf;
                ref += t, mag += fabs(t);
            }
            double got = g[r * (size_t)c->N + (size_t)n];
            if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30)) {
                CHECK(false, "%s: y[%zu, %lld] = %.9g, want %.9g (sum |terms| %g)", what, r, (long long)n, got, ref, mag);
                return;
            }
        }
}

static kiln_value *run_model(const struct wcase *c, bool fuse, int threads, bool *fused, const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_session *s = NULL;
    int64_t xd[3] = {c->B, c->M, c->K};
    kiln_value *out = NULL, *in = tensor_of(KILN_DTYPE_F32, 3, xd, c->x);
    const char *names[1] = {"X"};
    kiln_err err = {0};
    kiln_optimize_options oo = {.level = KILN_OPT_EXTENDED, .keep_fused = 1, .fold_limit_bytes = 1};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st && fuse) st = kiln_model_optimize(m, &oo, &err);
    *fused = false;
    for (size_t i = 0; !st && i < kiln_model_node_count(m); i++) {
        const char *nm, *op;
        kiln_model_node(m, i, &nm, &op, NULL);
        *fused |= !strcmp(op, "DequantMatMul");
    }
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, threads, &err);
    if (!st) kiln_builder_set_opt_level(b, KILN_OPT_NONE);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    if (!st) st = kiln_session_create_from_engine(e, NULL, &s, &err);
    if (!st) st = kiln_session_run(s, 1, names, (const kiln_value *const *)&in, 1, &out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_session_free(s);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    kiln_value_free(in);
    return out;
}

static void model_case(int i)
{
    /* K * N above shape inference's 64 KiB of known values, which would fold W before fusion */
    static const int64_t ks[] = {255, 256, 300, 513}, ns[] = {65, 130, 300}; /* N = 300: two 256-column chunks */
    struct wcase c = {.B = 1 + rng_int(2), .M = rng_int(2) ? 1 : 1 + rng_int(40), .K = ks[rng_int(4)], .N = ns[rng_int(3)],
                      .dt = rng_int(2) ? KILN_DTYPE_U8 : KILN_DTYPE_I8, .zp = rng_int(3) != 0};
    draw_wcase(&c);
    const char *wt = c.dt == KILN_DTYPE_U8 ? "u8" : "i8";
    model_text_reset();
    tf("opset 21\ninput X f32 %lld,%lld,%lld\ninit WQ %s %lld,%lld", (long long)c.B, (long long)c.M, (long long)c.K, wt,
       (long long)c.K, (long long)c.N);
    model_text_ints(c.w, (size_t)(c.K * c.N));
    tf("\ninit S f32 ");
    if (c.srank == 0) tf("-");
    else if (c.srank == 1) tf("%lld", (long long)c.sdims[0]);
    else tf("%lld,%lld", (long long)c.sdims[0], (long long)c.sdims[1]);
    model_text_floats(c.s, c.ns);
    if (c.zp) {
        tf("\ninit Z %s ", wt);
        if (c.srank == 0) tf("-");
        else if (c.srank == 1) tf("%lld", (long long)c.sdims[0]);
        else tf("%lld,%lld", (long long)c.sdims[0], (long long)c.sdims[1]);
        model_text_ints(c.z, c.ns);
    }
    tf("\noutput Y\nnode DequantizeLinear WQ,S%s -> W axis=int:%lld", c.zp ? ",Z" : "", (long long)c.axis);
    if (c.block) tf(" block_size=int:%lld", (long long)c.block);
    tf("\nnode MatMul X,W -> Y\n");
    char what[200];
    snprintf(what, sizeof what, "wo #%d: B%lld M%lld K%lld N%lld %s axis %lld block %lld zp %d", i, (long long)c.B,
             (long long)c.M, (long long)c.K, (long long)c.N, wt, (long long)c.axis, (long long)c.block, c.zp);
    bool fused;
    kiln_value *yr = run_model(&c, false, 1, &fused, what);
    CHECK(!fused, "%s: fused without optimizing", what);
    check_y(&c, yr, what);
    kiln_value_free(yr);
    for (int t = 1; t <= 3; t++) {
        kiln_value *y = run_model(&c, true, t, &fused, what);
        CHECK(fused, "%s: no kiln.DequantMatMul", what);
        check_y(&c, y, what);
        kiln_value_free(y);
    }
    free(c.w), free(c.z), free(c.s), free(c.x);
    cases_run++;
}

/* 4-bit weights through the kernel itself. */
static void kernel_case(int i)
{
    struct wcase c = {.B = 1, .M = 1 + rng_int(3), .K = 1 + rng_int(300), .N = 1 + rng_int(40),
                      .dt = rng_int(2) ? KILN_DTYPE_U4 : KILN_DTYPE_I4, .zp = rng_int(2)};
    draw_wcase(&c);
    int64_t xd[3] = {c.B, c.M, c.K}, wd[2] = {c.K, c.N};
    double *wv = malloc((size_t)(c.K * c.N) * sizeof *wv), *zv = malloc(c.ns * sizeof *zv);
    if (!wv || !zv) exit(1);
    for (int64_t j = 0; j < c.K * c.N; j++) wv[j] = c.w[j];
    for (size_t j = 0; j < c.ns; j++) zv[j] = c.z[j];
    kiln_value *in[4] = {tensor_of(KILN_DTYPE_F32, 3, xd, c.x), tensor_f64(c.dt, 2, wd, wv),
                         tensor_of(KILN_DTYPE_F32, c.srank, c.sdims, c.s), c.zp ? tensor_f64(c.dt, c.srank, c.sdims, zv) : NULL};
    struct attrs at = {0};
    add_i(&at, "axis", c.axis);
    if (c.block) add_i(&at, "block_size", c.block);
    kiln_value *out = NULL;
    kiln_err err = {0};
    char what[200];
    snprintf(what, sizeof what, "wo kernel #%d: M%lld K%lld N%lld %s axis %lld block %lld zp %d", i, (long long)c.M,
             (long long)c.K, (long long)c.N, kiln_dtype_name(c.dt), (long long)c.axis, (long long)c.block, c.zp);
    kiln_status st = run_node("kiln", "DequantMatMul", 1, at.a, at.n, in, 4, &out, 1, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    if (!st) check_y(&c, out, what);
    kiln_value_free(out);
    free_all(in, 4);
    free(wv), free(zv), free(c.w), free(c.z), free(c.s), free(c.x);
    cases_run++;
}

int main(void)
{
    rng_seed(0x4B17);
    for (int i = 0; i < 40; i++) model_case(i);
    for (int i = 0; i < 60; i++) kernel_case(i);
    CHECK(cases_run == 100, "only %d cases ran", cases_run);
    printf("test_quant_wo: %d cases\n", cases_run);
    return test_summary("test_quant_wo");
}
