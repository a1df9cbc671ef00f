/* test_int8_fast.c: MatMulInteger's prepared oneDNN int8 product (src/cpu/dnnl_int8.c: B
 * a constant [K, N], packed at prepare as int8, zero points folded in afterwards) against
 * the reference loop of src/cpu/ops/quant.c and against the ONNX definition computed here
 * in int64: Y[m, n] = sum_k (A[m, k] - a_zp) * (B[k, n] - b_zp[n]).
 *
 * Small models in the text form of support/test_text_model.h run through kiln_session with
 * 1, 2 and 3 threads: A and its zero point are graph inputs (as DynamicQuantizeLinear's
 * outputs are), B and b_zero_point initializers (the prepared variant where kiln has oneDNN
 * and oneDNN runs VNNI or AMX) or graph inputs (the reference variant). Shapes: random, odd
 * and tiny (M = 1, K not a multiple of 4, N not a multiple of 16), batch dims on A;
 * uint8 and int8 A and B; zero points absent, 0, 128, 255 (uint8), -128, 127 (int8),
 * random, and per column for B. Values are drawn mostly from the extremes (0/255, -128/127)
 * so that a kernel whose pair sums saturate (vpmaddubsw) would be caught. Every comparison
 * is exact (int32). ctest also runs this test with KILN_CPU_ISA=avx2 and =portable, where
 * the prepared variant is kiln's own int8 kernel (cpu/int8_gemm_isa.h, "kiln-int8-*").
 *
 * ConvInteger's prepared variant (2-D, one group, w and its zero point constant: x unfolded
 * channels-last into the same int8 product) likewise against its reference variant and an
 * int64 convolution written here: random channels, kernels 1..3, strides, dilations,
 * asymmetric pads (taps in the padding add nothing: the reference pads the zero-point-shifted
 * x), zero points per tensor and per output channel, uint8 and int8; two groups take the
 * reference (checked all the same). Depthwise convolutions (group = C = M) take the prepared
 * int32 depthwise kernel (kiln_qdw_tap_isa, any instruction set), checked the same way.
 *
 * kiln.DynQuantConv (fuse_dynquant over DynamicQuantizeLinear -> ConvInteger -> Cast ->
 * Mul(scales) [-> Add(Reshape(bias, [1, -1, 1, 1]))], as quantize_dynamic writes it): fused
 * against unfused bit for bit (memcmp), 1/2/3 threads, group 1 (1x1 direct and unfolded),
 * depthwise and two groups (the fused op's reference path), channel counts and image sizes
 * around the 16-lane tiles, weights uint8/int8, zero points absent / per tensor / per channel.
 * Its tile kernels (kiln_dql_quantize_nhwc_isa, kiln_qconv_epilogue_isa, kiln_qdw_tap_isa),
 * every compiled variant, against scalar loops written here on odd tile sizes.
 *
 * kiln.DynQuantMatMul (the optimizer's fuse_dynquant pass over DynamicQuantizeLinear ->
 * MatMulInteger -> Cast -> Mul(scales) [-> Add(bias)]): the fused engine's output equals
 * the unfused one (level none) bit for bit, float32 compared with memcmp, 1/2/3 threads,
 * weights uint8/int8 with zero points absent, per tensor or per column, w_scale per tensor
 * or per column, with and without bias, batch dims on x, inputs with and without negatives.
 *
 * DynamicQuantizeLinear's range and quantize passes (cpu/quant_isa.h), every compiled
 * variant up to the CPU's best, against the ONNX definition in float32 written here: exact
 * equality of the range, the scale, the zero point and every byte, on lengths around the
 * vector widths, with NaN, +-inf, -0, exact halves (ties: half to even), values that
 * saturate, all-negative and all-positive inputs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "cpu/isa.h"
#include "cpu/quant_isa.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

/* Whether a variant name is the prepared int8 product's or the depthwise kernel's. */
static bool is_prepared(const char *variant)
{
    return variant && (!strcmp(variant, "onednn-int8") || !strncmp(variant, "kiln-int8-", 10) ||
                       !strcmp(variant, "int32-depthwise"));
}

/* The model text being built (support/test_text_model.h). */
#define tf model_text_add

static int cases_run, prepared_runs, prepared_wanted;

/* QLinearMatMul / QLinearConv's extra inputs (on: the node is the QLinear form; zero points
 * are then required). The scales and the bias are constants in every variant. */
struct qlin {
    bool on, y_s8;
    float as, ys, *bs; /* bs: [nbs], nbs 1 or per column / output channel */
    size_t nbs;
    int32_t yzp;
    int32_t *bias;     /* QLinearConv: [M] or NULL */
};

struct cfg {
    struct qlin q;
    int brank;         /* batch dims on A: 0..2 */
    int64_t batch[2];
    int64_t M, K, N;
    bool a_s8, b_s8;
    bool sym;          /* A's leading dims symbolic: the rows known only at run */
    int azp_kind;      /* 0: absent, 1: given */
    int bzp_kind;      /* 0: absent, 1: per tensor, 2: per column */
    int32_t azp;
    int32_t *bzp;      /* [N] (per tensor: all equal) */
    int32_t *a, *b;    /* values */
};

static size_t rows(const struct cfg *c)
{
    size_t r = (size_t)c->M;
    for (int i = 0; i < c->brank; i++) r *= (size_t)c->batch[i];
    return r;
}

static int32_t draw(bool s8)
{
    int lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
    int u = rng_int(8);
    return u < 3 ? lo : u < 6 ? hi : lo + rng_int(hi - lo + 1);
}

static int32_t draw_zp(bool s8)
{
    static const int32_t u8z[] = {0, 128, 255}, s8z[] = {0, -128, 127};
    return rng_int(2) ? (s8 ? s8z : u8z)[rng_int(3)] : draw(s8);
}

/* The QLinear form's constants: AS, BS, YS, YZ (and B for a bias). */
static void qlin_text(const struct qlin *q, const char *bs_dims)
{
    tf("init AS f32 -");
    model_text_floats(&q->as, 1);
    tf("\ninit BS f32 %s", q->nbs == 1 ? "-" : bs_dims);
    model_text_floats(q->bs, q->nbs);
    tf("\ninit YS f32 -");
    model_text_floats(&q->ys, 1);
    tf("\ninit YZ %s - = %d\n", q->y_s8 ? "i8" : "u8", q->yzp);
}

static void write_model(const struct cfg *c, bool bconst)
{
    const char *at = c->a_s8 ? "i8" : "u8", *bt = c->b_s8 ? "i8" : "u8";
    model_text_reset();
    tf("opset 17\ninput A %s ", at);
    for (int i = 0; i < c->brank; i++) {
        if (c->sym) tf("b%d,", i);
        else tf("%lld,", (long long)c->batch[i]);
    }
    if (c->sym) tf("rows,%lld\n", (long long)c->K);
    else tf("%lld,%lld\n", (long long)c->M, (long long)c->K);
    if (c->azp_kind) tf("input AZ %s -\n", at);
    tf("%s B %s %lld,%lld", bconst ? "init" : "input", bt, (long long)c->K, (long long)c->N);
    if (bconst) model_text_ints(c->b, (size_t)(c->K * c->N));
    tf("\n");
    if (c->bzp_kind) {
        tf("%s BZ %s %s", bconst ? "init" : "input", bt, c->bzp_kind == 1 ? "-" : "");
        if (c->bzp_kind == 2) tf("%lld", (long long)c->N);
        if (bconst) model_text_ints(c->bzp, c->bzp_kind == 1 ? 1 : (size_t)c->N);
        tf("\n");
    }
    if (c->q.on) {
        char nd[32];
        snprintf(nd, sizeof nd, "%lld", (long long)c->N);
        qlin_text(&c->q, nd);
        tf("output Y %s\nnode QLinearMatMul A,AS,AZ,B,BS,BZ,YS,YZ -> Y\n", c->q.y_s8 ? "i8" : "u8");
        return;
    }
    tf("output Y i32\nnode MatMulInteger A,B%s%s -> Y\n", c->azp_kind ? ",AZ" : c->bzp_kind ? ",_" : "",
       c->bzp_kind ? ",BZ" : "");
}

static kiln_value *int_value(kiln_dtype dt, const int32_t *v, int rank, const int64_t *dims, size_t n)
{
    uint8_t *raw = malloc(n + 1);
    if (!raw) exit(1);
    for (size_t i = 0; i < n; i++) raw[i] = (uint8_t)v[i];
    kiln_value *t = tensor_of(dt, rank, dims, raw);
    free(raw);
    return t;
}

static kiln_value *run_text(kiln_value **in, const char **names, size_t n_in, int threads, bool *prepared,
                            const char *what);

/* Runs MatMulInteger's model with `threads` threads (run_text). */
static kiln_value *run_model(const struct cfg *c, bool bconst, int threads, bool *prepared, const char *what)
{
    kiln_dtype at = c->a_s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8, bt = c->b_s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8;
    write_model(c, bconst);
    int64_t ad[4];
    int ar = 0;
    for (int i = 0; i < c->brank; i++) ad[ar++] = c->batch[i];
    ad[ar++] = c->M, ad[ar++] = c->K;
    int64_t bd[2] = {c->K, c->N};
    const char *names[4];
    kiln_value *in[4];
    size_t n_in = 0;
    names[n_in] = "A", in[n_in++] = int_value(at, c->a, ar, ad, rows(c) * (size_t)c->K);
    if (c->azp_kind) names[n_in] = "AZ", in[n_in++] = int_value(at, &c->azp, 0, NULL, 1);
    if (!bconst) {
        names[n_in] = "B", in[n_in++] = int_value(bt, c->b, 2, bd, (size_t)(c->K * c->N));
        if (c->bzp_kind == 1) names[n_in] = "BZ", in[n_in++] = int_value(bt, c->bzp, 0, NULL, 1);
        if (c->bzp_kind == 2) names[n_in] = "BZ", in[n_in++] = int_value(bt, c->bzp, 1, &c->N, (size_t)c->N);
    }
    return run_text(in, names, n_in, threads, prepared, what);
}

/* Runs the model in `text` with the inputs in[0..n_in) (freed here) and `threads` threads;
 * returns Y (NULL after a failed CHECK) and, in *prepared, whether node 0 took the prepared
 * variant ("onednn-int8"). */
static kiln_value *run_text(kiln_value **in, const char **names, size_t n_in, int threads, bool *prepared,
                            const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_session *s = NULL;
    kiln_value *out = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, threads, &err);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    if (!st) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, 0, &be, &kernel, &variant);
        *prepared = is_prepared(variant);
        st = kiln_session_create_from_engine(e, NULL, &s, &err);
    }
    if (!st) st = kiln_session_run(s, n_in, names, (const kiln_value *const *)in, 1, &out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_session_free(s);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    free_all(in, n_in);
    return out;
}

/* The ONNX definition in int64 (no overflow for these sizes, so int32 wrapping is moot). */
static void expected(const struct cfg *c, int32_t *y)
{
    size_t R = rows(c), K = (size_t)c->K, N = (size_t)c->N;
    int64_t az = c->azp_kind ? c->azp : 0;
    for (size_t r = 0; r < R; r++)
        for (size_t n = 0; n < N; n++) {
            int64_t bz = c->bzp_kind ? c->bzp[n] : 0, acc = 0;
            for (size_t k = 0; k < K; k++) acc += ((int64_t)c->a[r * K + k] - az) * ((int64_t)c->b[k * N + n] - bz);
            y[r * N + n] = (int32_t)acc;
        }
}

/* Element i of an int32, uint8 or int8 output. */
static int32_t out_at(const kiln_value *v, size_t i)
{
    if (v->t.dtype == KILN_DTYPE_U8) return ((const uint8_t *)v->t.data)[i];
    if (v->t.dtype == KILN_DTYPE_I8) return ((const int8_t *)v->t.data)[i];
    return ((const int32_t *)v->t.data)[i];
}

/* got (of dtype dt) equals want exactly. */
static bool same(const kiln_value *got, kiln_dtype dt, const int32_t *want, size_t n, const char *what)
{
    CHECK(got && got->t.dtype == dt && kiln_tensor_numel(&got->t) == n, "%s: wrong output", what);
    if (!got || got->t.dtype != dt || kiln_tensor_numel(&got->t) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (out_at(got, i) != want[i]) {
            CHECK(false, "%s: Y[%zu] = %d, want %d", what, i, out_at(got, i), want[i]);
            return false;
        }
    return true;
}

static bool same_values(const kiln_value *got, const kiln_value *ref, size_t n, const char *what)
{
    int32_t *w = malloc((n + 1) * sizeof *w);
    if (!w) exit(1);
    for (size_t i = 0; i < n; i++) w[i] = out_at(ref, i);
    bool ok = same(got, ref->t.dtype, w, n, what);
    free(w);
    return ok;
}

static kiln_dtype out_dtype(const struct qlin *q)
{
    return !q->on ? KILN_DTYPE_I32 : q->y_s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8;
}

/* Random QLinear constants for nch channels (scales: random in [2^-10, 2^-4) * [1, 2)). */
static void qlin_draw(struct qlin *q, size_t nch, bool bias)
{
    q->on = true;
    q->y_s8 = rng_int(2);
    q->as = (float)rng_range(0.001, 0.03);
    q->ys = (float)rng_range(0.01, 0.5);
    q->nbs = rng_int(2) ? 1 : nch;
    q->bs = malloc(nch * sizeof *q->bs);
    q->bias = bias ? malloc(nch * sizeof *q->bias) : NULL;
    if (!q->bs || (bias && !q->bias)) exit(1);
    for (size_t i = 0; i < nch; i++) q->bs[i] = (float)rng_range(0.001, 0.03);
    for (size_t i = 0; bias && i < nch; i++) q->bias[i] = rng_int(20001) - 10000;
    q->yzp = draw_zp(q->y_s8);
}

/* The ONNX definition of the requantization, as the reference computes it: the multiplier
 * rounded to float32 twice (a_scale * b_scale, then / y_scale), then
 * saturate(round_half_even(acc * multiplier + y_zero_point)) in double; channel of element
 * j: (j / div) % nch. acc is replaced by the result. */
static void requantize(const struct qlin *q, int32_t *acc, size_t n, size_t div, size_t nch)
{
    double lo = q->y_s8 ? -128 : 0, hi = q->y_s8 ? 127 : 255;
    for (size_t j = 0; j < n; j++) {
        size_t c = (j / div) % nch;
        double bs = q->bs[q->nbs == 1 ? 0 : c];
        double mult = (double)(float)((double)(float)((double)q->as * bs) / (double)q->ys);
        double v = nearbyint((double)acc[j] * mult + (double)q->yzp);
        acc[j] = (int32_t)(v < lo ? lo : v > hi ? hi : v);
    }
}

/* The prepared int8 product runs at every level: oneDNN's where it has VNNI/AMX, else
 * kiln's own (cpu/int8_gemm_isa.h). */
static bool exact_isa_expected(void)
{
    return true;
}

static void run_case(struct cfg *c, const char *label)
{
    size_t R = rows(c), K = (size_t)c->K, N = (size_t)c->N;
    c->a = malloc(R * K * sizeof *c->a);
    c->b = malloc(K * N * sizeof *c->b);
    c->bzp = malloc(N * sizeof *c->bzp);
    int32_t *want = malloc(R * N * sizeof *want);
    if (!c->a || !c->b || !c->bzp || !want) exit(1);
    for (size_t i = 0; i < R * K; i++) c->a[i] = draw(c->a_s8);
    for (size_t i = 0; i < K * N; i++) c->b[i] = draw(c->b_s8);
    c->azp = draw_zp(c->a_s8);
    int32_t z = draw_zp(c->b_s8);
    for (size_t n = 0; n < N; n++) c->bzp[n] = c->bzp_kind == 2 ? draw_zp(c->b_s8) : z;
    expected(c, want);
    if (c->q.on) requantize(&c->q, want, R * N, 1, N);
    kiln_dtype yt = out_dtype(&c->q);
    char what[300];
    bool prep = false;
    snprintf(what, sizeof what, "%s: reference variant", label);
    kiln_value *yr = run_model(c, false, 1, &prep, what);
    CHECK(!prep, "%s took the prepared variant", what);
    same(yr, yt, want, R * N, what);
    for (int t = 1; t <= 3; t++) {
        snprintf(what, sizeof what, "%s: B constant, %d threads", label, t);
        kiln_value *y = run_model(c, true, t, &prep, what);
        if (exact_isa_expected()) CHECK(prep, "%s: expected the onednn-int8 variant", what);
        prepared_wanted += exact_isa_expected();
        prepared_runs += prep;
        same(y, yt, want, R * N, what);
        if (y && yr) same_values(y, yr, R * N, what); /* bit-exact against the reference kernel */
        kiln_value_free(y);
    }
    kiln_value_free(yr);
    free(c->a), free(c->b), free(c->bzp), free(want), free(c->q.bs), free(c->q.bias);
    cases_run++;
}

static void describe(const struct cfg *c, char *buf, size_t size)
{
    snprintf(buf, size, "%s%sbatch %d M%lld K%lld N%lld A %s B %s azp %s bzp %s", c->q.on ? "QLinearMatMul " : "",
             c->sym ? "symbolic rows, " : "", c->brank, (long long)c->M,
             (long long)c->K, (long long)c->N, c->a_s8 ? "i8" : "u8", c->b_s8 ? "i8" : "u8",
             c->azp_kind ? "given" : "absent", c->bzp_kind == 0 ? "absent" : c->bzp_kind == 1 ? "tensor" : "column");
}

static void random_cases(int n)
{
    static const int64_t small[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 64, 65, 100};
    for (int i = 0; i < n; i++) {
        struct cfg c = {0};
        c.brank = rng_int(3);
        for (int d = 0; d < c.brank; d++) c.batch[d] = 1 + rng_int(3);
        c.M = rng_int(3) ? small[rng_int(13)] : 1;
        c.K = rng_int(4) ? small[rng_int(13)] : 1 + rng_int(300);
        c.N = rng_int(4) ? small[rng_int(13)] : 1 + rng_int(200);
        c.a_s8 = rng_int(4) == 0;
        c.b_s8 = rng_int(2);
        c.azp_kind = rng_int(4) != 0;
        c.bzp_kind = rng_int(3);
        c.sym = rng_int(3) == 0;
        if (c.sym && rng_int(2)) c.M = 1 + rng_int(600); /* several row buckets */
        if (rng_int(3) == 0) { /* QLinearMatMul: zero points required */
            c.azp_kind = 1, c.bzp_kind = 1 + rng_int(2);
            qlin_draw(&c.q, (size_t)c.N, false);
        }
        char label[200];
        describe(&c, label, sizeof label);
        snprintf(label + strlen(label), sizeof label - strlen(label), " (#%d)", i);
        run_case(&c, label);
    }
}

/* Transformer-like shapes (more columns than one slice, K large enough that float32 would
 * lose exactness: |Y| up to 2^24 and more). */
static void large_cases(void)
{
    struct cfg shapes[] = {
        {.M = 16, .K = 768, .N = 256, .azp_kind = 1, .bzp_kind = 1},
        {.M = 1, .K = 1024, .N = 1000, .azp_kind = 1, .bzp_kind = 2, .b_s8 = true},
        {.brank = 1, .batch = {2}, .M = 9, .K = 515, .N = 130, .azp_kind = 1, .bzp_kind = 0, .b_s8 = true},
        {.M = 33, .K = 2048, .N = 48, .a_s8 = true, .b_s8 = true, .azp_kind = 1, .bzp_kind = 2},
        {.M = 599, .K = 300, .N = 70, .azp_kind = 1, .bzp_kind = 2, .sym = true}, /* 256 * 2 + 64 + 16 + 4 * 1 + 1 * 3 */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char label[200];
        describe(&shapes[i], label, sizeof label);
        run_case(&shapes[i], label);
    }
}

/* ------------------------------------------------------------------ kiln.DynQuantMatMul */

/* Builds and runs the quantize_dynamic pattern (DynamicQuantizeLinear -> MatMulInteger ->
 * Cast -> Mul(x_scale * w_scale) [-> Add(bias)]) at `level`; returns Y and, in *fused,
 * whether some node runs kiln.DynQuantMatMul. */
/* Whether the last fused node run_dynquant_op found took a prepared variant; the number of
 * nodes of its engine. */
static bool fused_prepared;
static size_t engine_nodes;
/* Op names (comma-separated) whose kernels must not be left in a fused engine (the
 * activation absorbed by kiln.DynQuantMatMul); run_dynquant_op sets act_left when one is. */
static const char *g_absorbed;
static bool act_left;

/* The residual input R of kiln.DynQuantConv's cases (NULL: none). */
static const float *g_res;
static int64_t g_res_dims[4];

static kiln_value *run_dynquant_op(const float *x, int xr, const int64_t *xd, int threads, kiln_opt_level level,
                                   const char *op, bool *fused, const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_session *s = NULL;
    kiln_value *out = NULL, *ins[2] = {tensor_of(KILN_DTYPE_F32, xr, xd, x), NULL};
    const char *names[2] = {"X", "R"};
    if (g_res) ins[1] = tensor_of(KILN_DTYPE_F32, 4, g_res_dims, g_res);
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, threads, &err);
    if (!st) kiln_builder_set_opt_level(b, level);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    *fused = false;
    engine_nodes = st ? 0 : kiln_model_node_count(kiln_engine_model(e));
    for (size_t i = 0; !st && i < kiln_model_node_count(kiln_engine_model(e)); i++) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, i, &be, &kernel, &variant);
        bool hit = kernel && strstr(kernel, op) != NULL;
        *fused |= hit;
        for (const char *a = g_absorbed; a && *a && kernel && !hit;) {
            size_t l = strcspn(a, ","); /* kernel: "Relu" or "Relu v14+" */
            act_left |= !strncmp(kernel, a, l) && (kernel[l] == ' ' || !kernel[l]);
            a += l + (a[l] == ',');
        }
        if (hit) fused_prepared = is_prepared(variant);
    }
    if (!st) st = kiln_session_create_from_engine(e, NULL, &s, &err);
    if (!st) st = kiln_session_run(s, g_res ? 2 : 1, names, (const kiln_value *const *)ins, 1, &out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_session_free(s);
    kiln_engine_free(e);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    free_all(ins, 2);
    return out;
}

static kiln_value *run_dynquant(const float *x, int xr, const int64_t *xd, int threads, kiln_opt_level level,
                                bool *fused, const char *what)
{
    return run_dynquant_op(x, xr, xd, threads, level, "DynQuantMatMul", fused, what);
}

static void dynquant_cases(int n)
{
    static const int64_t small[] = {1, 2, 3, 5, 7, 15, 16, 17, 33, 64, 100};
    for (int i = 0; i < n; i++) {
        int64_t M = rng_int(3) ? small[rng_int(11)] : 1, K = small[rng_int(11)], N = small[rng_int(11)];
        int64_t B = 1 + rng_int(2);
        bool w_s8 = rng_int(2), bias = rng_int(3) != 0, ws_vec = rng_int(2);
        int wz_kind = rng_int(3);
        const char *wt = w_s8 ? "i8" : "u8";
        int32_t *w = malloc((size_t)(K * N) * sizeof *w), *wz = malloc((size_t)N * sizeof *wz);
        float *ws = malloc((size_t)N * sizeof *ws), *bv = malloc((size_t)N * sizeof *bv);
        float *x = malloc((size_t)(B * M * K) * sizeof *x);
        if (!w || !wz || !ws || !bv || !x) exit(1);
        for (int64_t j = 0; j < K * N; j++) w[j] = draw(w_s8);
        int32_t z = draw_zp(w_s8);
        for (int64_t j = 0; j < N; j++) {
            wz[j] = wz_kind == 2 ? draw_zp(w_s8) : z;
            ws[j] = (float)rng_range(0.001, 0.05);
            bv[j] = (float)rng_range(-1, 1);
        }
        double lo = rng_int(4) == 0 ? 0.0 : -rng_range(0.1, 4);
        for (int64_t j = 0; j < B * M * K; j++) x[j] = (float)rng_range(lo, rng_range(0.1, 4));
        /* An activation after the product: none, Relu, Tanh or Gelu (opset 20's op, the
         * function fuse_gelu makes of exporters' Erf form); fuse_activation puts each into
         * kiln.DynQuantMatMul, which must give the same floats as the activation's node. */
        static const char *const acts[] = {"none", "Relu", "Tanh", "Gelu"};
        int act = rng_int(4);
        const char *yp = act ? "YP" : "Y";
        model_text_reset();
        tf("opset %d kiln\ninput X f32 %lld,%lld,%lld\ninit W %s %lld,%lld", act == 3 ? 20 : 17, (long long)B,
           (long long)M, (long long)K, wt, (long long)K, (long long)N);
        model_text_ints(w, (size_t)(K * N));
        if (wz_kind) {
            tf("\ninit WZ %s ", wt);
            if (wz_kind == 1) tf("-");
            else tf("%lld", (long long)N);
            model_text_ints(wz, wz_kind == 1 ? 1 : (size_t)N);
        }
        tf("\ninit WS f32 ");
        if (ws_vec) tf("%lld", (long long)N);
        else tf("-");
        model_text_floats(ws, ws_vec ? (size_t)N : 1);
        if (bias) {
            tf("\ninit BIAS f32 %lld", (long long)N);
            model_text_floats(bv, (size_t)N);
        }
        tf("\noutput Y\nnode DynamicQuantizeLinear X -> XQ,XS,XZ\nnode MatMulInteger XQ,W,XZ%s -> YI\n"
           "node Cast YI -> YF to=int:1\nnode Mul XS,WS -> SC\nnode Mul YF,SC -> %s\n",
           wz_kind ? ",WZ" : "", bias ? "YM" : yp);
        if (bias) tf("node Add YM,BIAS -> %s\n", yp);
        if (act) tf("node %s YP -> Y\n", acts[act]);
        g_absorbed = act ? acts[act] : NULL;
        char what[300];
        snprintf(what, sizeof what, "dynquant #%d: B%lld M%lld K%lld N%lld w %s wz %d ws %s bias %d act %s", i,
                 (long long)B, (long long)M, (long long)K, (long long)N, wt, wz_kind, ws_vec ? "column" : "tensor",
                 bias, acts[act]);
        int64_t xd[3] = {B, M, K};
        size_t ny = (size_t)(B * M * N);
        bool fused = false;
        kiln_value *yr = run_dynquant(x, 3, xd, 1, KILN_OPT_NONE, &fused, what);
        CHECK(!fused, "%s: fused at level none", what);
        for (int t = 1; t <= 3 && yr; t++) {
            act_left = false;
            kiln_value *y = run_dynquant(x, 3, xd, t, KILN_OPT_EXTENDED, &fused, what);
            CHECK(fused, "%s: not fused (%d threads)", what, t);
            CHECK(!act_left, "%s: the activation was not absorbed (%d threads)", what, t);
            CHECK(y && y->t.dtype == KILN_DTYPE_F32 && kiln_tensor_numel(&y->t) == ny, "%s: wrong output", what);
            if (y && y->t.dtype == KILN_DTYPE_F32 && kiln_tensor_numel(&y->t) == ny &&
                memcmp(y->t.data, yr->t.data, ny * sizeof(float)) != 0) {
                const float *g = y->t.data, *r = yr->t.data;
                size_t j = 0;
                while (j < ny && g[j] == r[j]) j++;
                CHECK(false, "%s, %d threads: Y[%zu] = %.9g, unfused %.9g", what, t, j, (double)g[j], (double)r[j]);
            }
            kiln_value_free(y);
        }
        kiln_value_free(yr);
        g_absorbed = NULL;
        free(w), free(wz), free(ws), free(bv), free(x);
        cases_run++;
    }
}

/* ------------------------------------------------------------------ ConvInteger */

struct ccfg {
    struct qlin q;
    int64_t N, C, M, G, H, W, KH, KW, sh, sw, dh, dw, p[4]; /* pads: top, left, bottom, right */
    bool x_s8, w_s8;
    bool sym;               /* x's batch and image size symbolic: known only at run */
    int xzp_kind, wzp_kind; /* x: 0 absent, 1 given; w: 0 absent, 1 per tensor, 2 per channel */
    int32_t xzp, *wzp, *x, *w;
    int64_t OH, OW;
};

static void conv_text(const struct ccfg *c, bool wconst)
{
    const char *xt = c->x_s8 ? "i8" : "u8", *wt = c->w_s8 ? "i8" : "u8";
    size_t nw = (size_t)(c->M * (c->C / c->G) * c->KH * c->KW);
    model_text_reset();
    if (c->sym)
        tf("opset 17\ninput X %s n,%lld,h,w\n", xt, (long long)c->C);
    else
        tf("opset 17\ninput X %s %lld,%lld,%lld,%lld\n", xt, (long long)c->N, (long long)c->C, (long long)c->H,
           (long long)c->W);
    if (c->xzp_kind) tf("input XZ %s -\n", xt);
    tf("%s W %s %lld,%lld,%lld,%lld", wconst ? "init" : "input", wt, (long long)c->M, (long long)(c->C / c->G),
       (long long)c->KH, (long long)c->KW);
    if (wconst) model_text_ints(c->w, nw);
    tf("\n");
    if (c->wzp_kind) {
        tf("%s WZ %s ", wconst ? "init" : "input", wt);
        if (c->wzp_kind == 1) tf("-");
        else tf("%lld", (long long)c->M);
        if (wconst) model_text_ints(c->wzp, c->wzp_kind == 1 ? 1 : (size_t)c->M);
        tf("\n");
    }
    if (c->q.on) {
        char md[32];
        snprintf(md, sizeof md, "%lld", (long long)c->M);
        qlin_text(&c->q, md);
        if (c->q.bias) {
            tf("init BIAS i32 %lld", (long long)c->M);
            model_text_ints(c->q.bias, (size_t)c->M);
            tf("\n");
        }
        tf("output Y %s\nnode QLinearConv X,AS,XZ,W,BS,WZ,YS,YZ%s -> Y group=int:%lld strides=ints:%lld,%lld "
           "dilations=ints:%lld,%lld pads=ints:%lld,%lld,%lld,%lld\n",
           c->q.y_s8 ? "i8" : "u8", c->q.bias ? ",BIAS" : "", (long long)c->G, (long long)c->sh, (long long)c->sw,
           (long long)c->dh, (long long)c->dw, (long long)c->p[0], (long long)c->p[1], (long long)c->p[2],
           (long long)c->p[3]);
        return;
    }
    tf("output Y i32\nnode ConvInteger X,W%s%s -> Y group=int:%lld strides=ints:%lld,%lld dilations=ints:%lld,%lld "
       "pads=ints:%lld,%lld,%lld,%lld\n",
       c->xzp_kind ? ",XZ" : c->wzp_kind ? ",_" : "", c->wzp_kind ? ",WZ" : "", (long long)c->G, (long long)c->sh,
       (long long)c->sw, (long long)c->dh, (long long)c->dw, (long long)c->p[0], (long long)c->p[1],
       (long long)c->p[2], (long long)c->p[3]);
}

static kiln_value *run_conv(const struct ccfg *c, bool wconst, int threads, bool *prepared, const char *what)
{
    kiln_dtype xt = c->x_s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8, wt = c->w_s8 ? KILN_DTYPE_I8 : KILN_DTYPE_U8;
    conv_text(c, wconst);
    int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->M, c->C / c->G, c->KH, c->KW};
    const char *names[4];
    kiln_value *in[4];
    size_t n_in = 0;
    names[n_in] = "X", in[n_in++] = int_value(xt, c->x, 4, xd, (size_t)(c->N * c->C * c->H * c->W));
    if (c->xzp_kind) names[n_in] = "XZ", in[n_in++] = int_value(xt, &c->xzp, 0, NULL, 1);
    if (!wconst) {
        names[n_in] = "W", in[n_in++] = int_value(wt, c->w, 4, wd, (size_t)(wd[0] * wd[1] * wd[2] * wd[3]));
        if (c->wzp_kind == 1) names[n_in] = "WZ", in[n_in++] = int_value(wt, c->wzp, 0, NULL, 1);
        if (c->wzp_kind == 2) names[n_in] = "WZ", in[n_in++] = int_value(wt, c->wzp, 1, &c->M, (size_t)c->M);
    }
    return run_text(in, names, n_in, threads, prepared, what);
}

static void conv_expected(const struct ccfg *c, int32_t *y)
{
    int64_t cg = c->C / c->G, mg = c->M / c->G;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t m = 0; m < c->M; m++)
            for (int64_t oh = 0; oh < c->OH; oh++)
                for (int64_t ow = 0; ow < c->OW; ow++) {
                    int64_t acc = 0, g = m / mg, wz = c->wzp_kind ? c->wzp[m] : 0, xz = c->xzp_kind ? c->xzp : 0;
                    for (int64_t ic = 0; ic < cg; ic++)
                        for (int64_t kh = 0; kh < c->KH; kh++)
                            for (int64_t kw = 0; kw < c->KW; kw++) {
                                int64_t ih = oh * c->sh - c->p[0] + kh * c->dh, iw = ow * c->sw - c->p[1] + kw * c->dw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xv = c->x[((n * c->C + g * cg + ic) * c->H + ih) * c->W + iw] - xz;
                                int64_t wv = c->w[((m * cg + ic) * c->KH + kh) * c->KW + kw] - wz;
                                acc += xv * wv;
                            }
                    y[((n * c->M + m) * c->OH + oh) * c->OW + ow] = (int32_t)acc;
                }
}

static void conv_case(struct ccfg *c, const char *label)
{
    c->OH = (c->H + c->p[0] + c->p[2] - ((c->KH - 1) * c->dh + 1)) / c->sh + 1;
    c->OW = (c->W + c->p[1] + c->p[3] - ((c->KW - 1) * c->dw + 1)) / c->sw + 1;
    size_t nx = (size_t)(c->N * c->C * c->H * c->W), nw = (size_t)(c->M * (c->C / c->G) * c->KH * c->KW);
    size_t ny = (size_t)(c->N * c->M * c->OH * c->OW);
    c->x = malloc(nx * sizeof *c->x);
    c->w = malloc(nw * sizeof *c->w);
    c->wzp = malloc((size_t)c->M * sizeof *c->wzp);
    int32_t *want = malloc(ny * sizeof *want);
    if (!c->x || !c->w || !c->wzp || !want) exit(1);
    for (size_t i = 0; i < nx; i++) c->x[i] = draw(c->x_s8);
    for (size_t i = 0; i < nw; i++) c->w[i] = draw(c->w_s8);
    c->xzp = draw_zp(c->x_s8);
    int32_t z = draw_zp(c->w_s8);
    for (int64_t m = 0; m < c->M; m++) c->wzp[m] = c->wzp_kind == 2 ? draw_zp(c->w_s8) : z;
    conv_expected(c, want);
    size_t ohw = (size_t)(c->OH * c->OW);
    if (c->q.on && c->q.bias)
        for (size_t j = 0; j < ny; j++) want[j] += c->q.bias[(j / ohw) % (size_t)c->M];
    if (c->q.on) requantize(&c->q, want, ny, ohw, (size_t)c->M);
    kiln_dtype yt = out_dtype(&c->q);
    char what[300];
    bool prep = false;
    snprintf(what, sizeof what, "%s: reference variant", label);
    kiln_value *yr = run_conv(c, false, 1, &prep, what);
    CHECK(!prep, "%s took the prepared variant", what);
    same(yr, yt, want, ny, what);
    for (int t = 1; t <= 3; t++) {
        snprintf(what, sizeof what, "%s: W constant, %d threads", label, t);
        kiln_value *y = run_conv(c, true, t, &prep, what);
        if (exact_isa_expected() && c->G == 1) CHECK(prep, "%s: expected the onednn-int8 variant", what);
        bool dw = c->G > 1 && c->G == c->C && c->G == c->M;
        if (dw) CHECK(prep, "%s: expected the int32-depthwise variant", what);
        prepared_wanted += (exact_isa_expected() && c->G == 1) || dw;
        prepared_runs += prep;
        same(y, yt, want, ny, what);
        if (y && yr) same_values(y, yr, ny, what);
        kiln_value_free(y);
    }
    kiln_value_free(yr);
    free(c->x), free(c->w), free(c->wzp), free(want), free(c->q.bs), free(c->q.bias);
    cases_run++;
}

static void conv_cases(int n)
{
    for (int i = 0; i < n; i++) {
        struct ccfg c = {0};
        c.N = 1 + rng_int(2);
        c.G = rng_int(5) == 0 ? 2 : 1;
        c.C = c.G * (1 + rng_int(rng_int(2) ? 5 : 40));
        c.M = c.G * (1 + rng_int(rng_int(2) ? 5 : 40));
        if (rng_int(4) == 0) c.G = c.C = c.M = 2 + rng_int(rng_int(2) ? 6 : 40); /* depthwise */
        c.KH = 1 + rng_int(3), c.KW = 1 + rng_int(3);
        c.sh = 1 + rng_int(2), c.sw = 1 + rng_int(2);
        c.dh = 1 + (rng_int(4) == 0), c.dw = 1 + (rng_int(4) == 0);
        for (int d = 0; d < 4; d++) c.p[d] = rng_int(3);
        c.H = (c.KH - 1) * c.dh + 1 + rng_int(9);
        c.W = (c.KW - 1) * c.dw + 1 + rng_int(9);
        c.x_s8 = rng_int(4) == 0;
        c.w_s8 = rng_int(2);
        c.sym = rng_int(4) == 0;
        c.xzp_kind = rng_int(4) != 0;
        c.wzp_kind = rng_int(3);
        if (rng_int(3) == 0) { /* QLinearConv */
            c.xzp_kind = 1, c.wzp_kind = 1 + rng_int(2);
            qlin_draw(&c.q, (size_t)c.M, rng_int(2));
        }
        char label[300];
        snprintf(label, sizeof label,
                 "conv #%d: N%lld C%lld M%lld G%lld in %lldx%lld k %lldx%lld s %lld,%lld d %lld,%lld p %lld,%lld,%lld,%lld "
                 "x %s w %s xzp %d wzp %d%s%s",
                 i, (long long)c.N, (long long)c.C, (long long)c.M, (long long)c.G, (long long)c.H, (long long)c.W,
                 (long long)c.KH, (long long)c.KW, (long long)c.sh, (long long)c.sw, (long long)c.dh, (long long)c.dw,
                 (long long)c.p[0], (long long)c.p[1], (long long)c.p[2], (long long)c.p[3], c.x_s8 ? "i8" : "u8",
                 c.w_s8 ? "i8" : "u8", c.xzp_kind, c.wzp_kind, c.q.on ? " QLinearConv" : "", c.sym ? " symbolic" : "");
        conv_case(&c, label);
    }
    /* a ResNet-sized layer: 64 -> 64, 3x3, pads 1, 28x28 */
    struct ccfg big = {.N = 1, .C = 64, .M = 64, .G = 1, .H = 28, .W = 28, .KH = 3, .KW = 3, .sh = 1, .sw = 1,
                       .dh = 1, .dw = 1, .p = {1, 1, 1, 1}, .xzp_kind = 1, .wzp_kind = 1};
    conv_case(&big, "conv 64x28x28 3x3 u8/u8");
    /* a MobileNetV2 depthwise layer: 96 channels, 3x3, stride 2, pads 1, 29x29 */
    struct ccfg dw = {.N = 1, .C = 96, .M = 96, .G = 96, .H = 29, .W = 29, .KH = 3, .KW = 3, .sh = 2, .sw = 2,
                      .dh = 1, .dw = 1, .p = {1, 1, 1, 1}, .xzp_kind = 1, .wzp_kind = 1, .w_s8 = true};
    conv_case(&dw, "depthwise 96x29x29 3x3 s2 u8/i8");
}

/* ------------------------------------------------------------------ kiln.DynQuantConv */

/* tail: bit 0 a residual Add of a graph input R, bits 1-2: 1 Relu, 2 Clip(0, 6). */
static void dqconv_case(int i, int64_t N, int64_t C, int64_t M, int64_t G, int64_t H, int64_t W, int64_t KH,
                        int64_t KW, int64_t s, int64_t pad, int bias_kind, bool w_s8, int wz_kind, bool sym, int tail)
{
    int64_t OH = (H + 2 * pad - KH) / s + 1, OW = (W + 2 * pad - KW) / s + 1;
    size_t nr = (size_t)(N * M * OH * OW);
    float *res = (tail & 1) ? malloc(nr * sizeof *res) : NULL;
    if ((tail & 1) && !res) exit(1);
    for (size_t j = 0; res && j < nr; j++) res[j] = (float)rng_range(-2, 2);
    g_res = res;
    g_res_dims[0] = N, g_res_dims[1] = M, g_res_dims[2] = OH, g_res_dims[3] = OW;
    size_t nw = (size_t)(M * (C / G) * KH * KW), nx = (size_t)(N * C * H * W);
    const char *wt = w_s8 ? "i8" : "u8";
    int32_t *w = malloc(nw * sizeof *w), *wz = malloc((size_t)M * sizeof *wz);
    float *bv = malloc((size_t)M * sizeof *bv), *x = malloc(nx * sizeof *x);
    if (!w || !wz || !bv || !x) exit(1);
    for (size_t j = 0; j < nw; j++) w[j] = draw(w_s8);
    int32_t z = draw_zp(w_s8);
    for (int64_t j = 0; j < M; j++) wz[j] = wz_kind == 2 ? draw_zp(w_s8) : z, bv[j] = (float)rng_range(-1, 1);
    double lo = rng_int(4) == 0 ? 0.0 : -rng_range(0.1, 4);
    for (size_t j = 0; j < nx; j++) x[j] = (float)rng_range(lo, rng_range(0.1, 4));
    float ws = (float)rng_range(0.001, 0.05);
    model_text_reset();
    if (sym)
        tf("opset 17 kiln\ninput X f32 n,%lld,h,w\ninit W %s %lld,%lld,%lld,%lld", (long long)C, wt, (long long)M,
           (long long)(C / G), (long long)KH, (long long)KW);
    else
        tf("opset 17 kiln\ninput X f32 %lld,%lld,%lld,%lld\ninit W %s %lld,%lld,%lld,%lld", (long long)N, (long long)C,
           (long long)H, (long long)W, wt, (long long)M, (long long)(C / G), (long long)KH, (long long)KW);
    model_text_ints(w, nw);
    if (wz_kind) {
        tf("\ninit WZ %s ", wt);
        if (wz_kind == 1) tf("-");
        else tf("%lld", (long long)M);
        model_text_ints(wz, wz_kind == 1 ? 1 : (size_t)M);
    }
    tf("\ninit WS f32 -");
    model_text_floats(&ws, 1);
    if (bias_kind == 1) { /* quantize_dynamic's Reshape of the [M] bias */
        tf("\ninit B f32 %lld", (long long)M);
        model_text_floats(bv, (size_t)M);
        tf("\ninit BSHAPE i64 4 = 1,-1,1,1");
    } else if (bias_kind == 2) { /* a [1, M, 1, 1] constant */
        tf("\ninit BIAS f32 1,%lld,1,1", (long long)M);
        model_text_floats(bv, (size_t)M);
    }
    if (res) {
        if (sym) tf("\ninput R f32 n,%lld,oh,ow", (long long)M);
        else tf("\ninput R f32 %lld,%lld,%lld,%lld", (long long)N, (long long)M, (long long)OH, (long long)OW);
    }
    if (tail >> 1 == 2) tf("\ninit CMIN f32 - = 0\ninit CMAX f32 - = 6");
    tf("\noutput Y\nnode DynamicQuantizeLinear X -> XQ,XS,XZ\nnode ConvInteger XQ,W,XZ%s -> YI group=int:%lld "
       "strides=ints:%lld,%lld pads=ints:%lld,%lld,%lld,%lld\nnode Cast YI -> YF to=int:1\nnode Mul XS,WS -> SC\n"
       "node Mul YF,SC -> %s\n%s%s",
       wz_kind ? ",WZ" : "", (long long)G, (long long)s, (long long)s, (long long)pad, (long long)pad, (long long)pad,
       (long long)pad, bias_kind ? "YM" : "Y0", bias_kind == 1 ? "node Reshape B,BSHAPE -> BIAS\n" : "",
       bias_kind ? "node Add YM,BIAS -> Y0\n" : "");
    tf("node %s Y0%s -> %s\n", res ? "Add" : "Identity", res ? ",R" : "", tail >> 1 ? "Y1" : "Y");
    if (tail >> 1 == 1) tf("node Relu Y1 -> Y\n");
    if (tail >> 1 == 2) tf("node Clip Y1,CMIN,CMAX -> Y\n");
    char what[300];
    snprintf(what, sizeof what,
             "dqconv #%d%s: N%lld C%lld M%lld G%lld %lldx%lld k%lldx%lld s%lld p%lld w %s wz %d bias %d tail %d", i,
             sym ? " symbolic" : "", (long long)N, (long long)C, (long long)M, (long long)G, (long long)H, (long long)W,
             (long long)KH, (long long)KW, (long long)s, (long long)pad, wt, wz_kind, bias_kind, tail);
    int64_t xd[4] = {N, C, H, W};
    bool fused = false;
    kiln_value *yr = run_dynquant_op(x, 4, xd, 1, KILN_OPT_NONE, "DynQuantConv", &fused, what);
    CHECK(!fused, "%s: fused at level none", what);
    size_t ny = yr ? kiln_tensor_numel(&yr->t) : 0;
    for (int t = 1; t <= 3 && yr; t++) {
        kiln_value *y = run_dynquant_op(x, 4, xd, t, KILN_OPT_EXTENDED, "DynQuantConv", &fused, what);
        CHECK(fused, "%s: not fused (%d threads)", what, t);
        bool dw = G > 1 && G == C && G == M;
        if (dw || (G == 1 && exact_isa_expected()))
            CHECK(fused_prepared, "%s: the fused node took no prepared variant (%d threads)", what, t);
        if (!sym) CHECK(engine_nodes == 1, "%s: %zu nodes after fusion, expected 1", what, engine_nodes);
        CHECK(y && y->t.dtype == KILN_DTYPE_F32 && kiln_tensor_numel(&y->t) == ny, "%s: wrong output", what);
        if (y && y->t.dtype == KILN_DTYPE_F32 && kiln_tensor_numel(&y->t) == ny &&
            memcmp(y->t.data, yr->t.data, ny * sizeof(float)) != 0) {
            const float *g = y->t.data, *r = yr->t.data;
            size_t j = 0;
            while (j < ny && g[j] == r[j]) j++;
            CHECK(false, "%s, %d threads: Y[%zu] = %.9g, unfused %.9g", what, t, j, (double)g[j], (double)r[j]);
        }
        kiln_value_free(y);
    }
    kiln_value_free(yr);
    free(w), free(wz), free(bv), free(x), free(res);
    g_res = NULL;
    cases_run++;
}

static void dqconv_cases(int n)
{
    static const int64_t chans[] = {1, 3, 8, 15, 16, 17, 32, 33};
    for (int i = 0; i < n; i++) {
        int kind = rng_int(4); /* 0: 1x1 direct, 1: unfolded, 2: depthwise, 3: two groups */
        int64_t C = chans[rng_int(8)], M = chans[rng_int(8)], G = 1, K = 1 + 2 * rng_int(2), s = 1, pad = 0;
        if (kind == 0) K = 1;
        if (kind == 1) s = 1 + rng_int(2), pad = rng_int(2), K = 1 + rng_int(3);
        if (kind == 2) G = C = M = 2 + rng_int(40), s = 1 + rng_int(2), pad = K / 2;
        if (kind == 3) G = 2, C = 2 * (1 + rng_int(9)), M = 2 * (1 + rng_int(9)), pad = rng_int(2);
        int64_t H = K + rng_int(20), W = K + rng_int(20);
        dqconv_case(i, 1 + rng_int(2), C, M, G, H, W, K, K, s, pad, rng_int(3), rng_int(2), rng_int(3), rng_int(4) == 0,
                    rng_int(6));
    }
    dqconv_case(n, 1, 64, 64, 1, 28, 28, 3, 3, 1, 1, 1, true, 1, false, 3);     /* ResNet-like: + residual, Relu */
    dqconv_case(n + 1, 1, 96, 96, 96, 28, 28, 3, 3, 2, 1, 1, true, 1, false, 4); /* MobileNetV2 depthwise, Clip */
    dqconv_case(n + 2, 2, 32, 48, 1, 23, 17, 3, 3, 1, 1, 1, true, 1, true, 2);   /* batch and size at run, Relu */
}

/* The tile kernels of kiln.DynQuantConv and the depthwise convolution, every variant,
 * against scalar loops. */
static void tile_cases(void)
{
    static const size_t sizes[] = {1, 3, 15, 16, 17, 31, 32, 33, 48, 64};
    int checked = 0;
    for (int rep = 0; rep < 40; rep++) {
        size_t np = sizes[rng_int(10)], nc = sizes[rng_int(10)], xs = np + (size_t)rng_int(5), ys = nc + (size_t)rng_int(5);
        float *x = malloc(nc * xs * sizeof *x), *yf = malloc(nc * xs * sizeof *yf), *bias = malloc(nc * sizeof *bias);
        uint8_t *q = malloc(np * ys), *qw = malloc(np * ys);
        int32_t *acc = malloc(np * ys * sizeof *acc), *w = malloc(nc * sizeof *w);
        uint32_t *da = malloc(nc * sizeof *da), *dw = malloc(nc * sizeof *dw);
        if (!x || !yf || !bias || !q || !qw || !acc || !w || !da || !dw) exit(1);
        float scale = (float)rng_range(0.001, 0.1), zp = (float)rng_int(256);
        for (size_t j = 0; j < nc * xs; j++) x[j] = rng_int(20) == 0 ? NAN : (float)rng_range(-30, 30);
        for (size_t j = 0; j < np * ys; j++) acc[j] = (int32_t)(rng_u64() >> 32);
        for (size_t j = 0; j < nc; j++) bias[j] = (float)rng_range(-1, 1), w[j] = draw(true) - draw(false);
        for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
            const char *in = kiln_isa_name((enum kiln_isa)isa);
            /* quantize to channels-last */
            memset(q, 0xAB, np * ys), memset(qw, 0xAB, np * ys);
            KILN_ISA_VARIANT(kiln_dql_quantize_nhwc_isa, isa)(x, xs, np, nc, scale, zp, q, ys);
            for (size_t c = 0; c < nc; c++)
                for (size_t p = 0; p < np; p++) {
                    float v = nearbyintf(x[c * xs + p] / scale) + zp;
                    if (isnan(v)) v = zp;
                    qw[p * ys + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            CHECK(!memcmp(q, qw, np * ys), "quantize_nhwc %s np %zu nc %zu differs", in, np, nc);
            /* the epilogue, with and without bias */
            for (int b = 0; b < 2; b++) {
                for (size_t j = 0; j < nc * xs; j++) yf[j] = -7.0f;
                KILN_ISA_VARIANT(kiln_qconv_epilogue_isa, isa)(yf, xs, acc, ys, np, nc, scale, b ? bias : NULL);
                for (size_t m = 0; m < nc; m++)
                    for (size_t p = 0; p < xs; p++) {
                        float got = yf[m * xs + p];
                        if (p >= np) {
                            CHECK(got == -7.0f, "epilogue %s wrote past np", in);
                            continue;
                        }
                        float f = (float)acc[p * ys + m] * scale;
                        volatile float want = f;
                        if (b) want = want + bias[m];
                        if (memcmp(&got, (const void *)&want, sizeof got))
                            CHECK(false, "epilogue %s np %zu nc %zu bias %d: y[%zu, %zu] = %.9g, want %.9g", in, np, nc,
                                  b, m, p, (double)got, (double)want);
                    }
            }
            /* a depthwise tap, uint8 and int8 x */
            for (int sg = 0; sg < 2; sg++) {
                int32_t z = draw_zp(sg);
                for (size_t j = 0; j < nc; j++) da[j] = dw[j] = (uint32_t)rng_u64();
                KILN_ISA_VARIANT(kiln_qdw_tap_isa, isa)(da, q, sg, z, w, nc);
                for (size_t j = 0; j < nc; j++) {
                    int32_t xv = sg ? (int32_t)(int8_t)q[j] : (int32_t)q[j];
                    dw[j] += (uint32_t)(xv - z) * (uint32_t)w[j];
                }
                CHECK(!memcmp(da, dw, nc * sizeof *da), "dw tap %s nc %zu signed %d differs", in, nc, sg);
            }
            checked++;
        }
        free(x), free(yf), free(bias), free(q), free(qw), free(acc), free(w), free(da), free(dw);
    }
    CHECK(checked >= 40, "only %d tile checks", checked);
}

/* The ONNX definition of DynamicQuantizeLinear (float32). */
static void dql_expected(const float *x, size_t n, float *scale, uint8_t *zp, uint8_t *y)
{
    float mx = 0, mn = 0;
    for (size_t j = 0; j < n; j++) {
        if (x[j] > mx) mx = x[j];
        if (x[j] < mn) mn = x[j];
    }
    *scale = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    float z = nearbyintf(fminf(fmaxf(0.0f - mn / *scale, 0.0f), 255.0f));
    *zp = (uint8_t)z;
    for (size_t j = 0; j < n; j++) {
        float q = nearbyintf(x[j] / *scale) + z;
        if (isnan(q)) q = z;
        y[j] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

static float dql_value(int kind, float scale_hint)
{
    switch (rng_int(kind)) {
    case 0: return NAN;
    case 1: return rng_int(2) ? INFINITY : -INFINITY;
    case 2: return -0.0f;
    case 3: return ((float)(rng_int(41) - 20) + 0.5f) * scale_hint; /* exact ties */
    default: return (float)rng_range(-3, 3);
    }
}

static void dql_cases(void)
{
    static const size_t lens[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 1000, 4099};
    float *x = malloc(4099 * sizeof *x);
    uint8_t *want = malloc(4099), *got = malloc(4099);
    if (!x || !want || !got) exit(1);
    int checked = 0;
    for (int rep = 0; rep < 40; rep++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            int mode = rep % 5; /* 0: plain, 1: specials, 2: all >= 0, 3: all <= 0, 4: ties */
            for (size_t j = 0; j < n; j++) {
                float v = mode == 1 ? dql_value(rep < 20 ? 8 : 40, 0.25f) : mode == 4 ? dql_value(4, 0.0625f) + (rng_int(2) ? 0.0f : 0.125f) : (float)rng_range(-2, 2);
                if (mode == 4 && isnan(v)) v = 1.5f;
                if (mode == 4 && isinf(v)) v = -0.25f;
                x[j] = mode == 2 ? fabsf(v) : mode == 3 ? -fabsf(v) : v;
            }
            float scale;
            uint8_t zp;
            dql_expected(x, n, &scale, &zp, want);
            for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
                float mn, mx;
                KILN_ISA_VARIANT(kiln_dql_range_isa, isa)(x, n, &mn, &mx);
                float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
                CHECK(s == scale || (isnan(s) && isnan(scale)), "dql %s n %zu mode %d: scale %g, want %g",
                      kiln_isa_name((enum kiln_isa)isa), n, mode, s, scale);
                memset(got, 0xAB, n);
                KILN_ISA_VARIANT(kiln_dql_quantize_isa, isa)(x, n, scale, (float)zp, got);
                for (size_t j = 0; j < n; j++)
                    if (got[j] != want[j]) {
                        CHECK(false, "dql %s n %zu mode %d: y[%zu] = %d for x %g (scale %g zp %d), want %d",
                              kiln_isa_name((enum kiln_isa)isa), n, mode, j, got[j], x[j], scale, zp, want[j]);
                        break;
                    }
                checked++;
            }
        }
    /* ties exactly: scale 1 (range [0, 255]), x = k + 0.5 rounds to the even neighbour */
    for (size_t j = 0; j < 64; j++) x[j] = (float)j + 0.5f;
    x[64] = 0.0f, x[65] = 255.0f;
    dql_expected(x, 66, &(float){0}, &(uint8_t){0}, want);
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        KILN_ISA_VARIANT(kiln_dql_quantize_isa, isa)(x, 66, 1.0f, 0.0f, got);
        for (size_t j = 0; j < 64; j++)
            CHECK(got[j] == (uint8_t)(j % 2 ? j + 1 : j), "dql %s tie %zu + 0.5 -> %d", kiln_isa_name((enum kiln_isa)isa),
                  j, got[j]);
    }
    CHECK(checked > 100, "only %d dql checks", checked);
    free(x), free(want), free(got);
}

int main(void)
{
    rng_seed(0x1A78);
    dql_cases();
    tile_cases();
    conv_cases(50);
    dqconv_cases(30);
    dynquant_cases(30);
    large_cases();
    random_cases(60);
    CHECK(cases_run >= 140, "only %d cases ran", cases_run);
    CHECK(prepared_runs == prepared_wanted, "prepared variant ran %d times, expected %d", prepared_runs,
          prepared_wanted);
    printf("test_int8_fast: %d cases, %d prepared runs (isa %s)\n", cases_run, prepared_runs, kiln_cpu_isa());
    return test_summary("test_int8_fast");
}
