/* test_quant_qdq.c: the fast paths of QuantizeLinear and DequantizeLinear (src/cpu/ops/quant.c
 * with the kernels of src/cpu/isa/quant.c) against the ONNX reference computed here.
 *
 * QuantizeLinear, float32 x and scale, targets uint8, int8, uint16, int16, uint4, int4:
 * y = saturate(round_half_to_even(float32(x / scale)) + zero_point), NaN to the zero point, the
 * quotient of the two floats rounded to float32 (numpy divides float32 by float32). Dequantize-
 * Linear, x uint8 / int8 / uint16 / int16 / int32 / uint4 / int4, float32 scale:
 * y = (float(x) - float(zero_point)) * scale in float32. Per tensor, per axis (every axis,
 * negative ones too) and blocked (opset 21, every axis, block sizes that do and do not divide
 * the axis), zero points present and absent, shapes random with odd and tiny dims, x with NaN,
 * infinities, exact halves and values that saturate, run inline and on a pool of 2 and 3
 * threads. Every comparison is exact (memcmp). The kernels themselves, every compiled variant,
 * against the same definitions on lengths around the vector widths, with one parameter and
 * with a parameter per element.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/quant_isa.h"
#include "kiln.h"
#include "test_support.h"

struct qtype {
    kiln_dtype dt;
    double lo, hi;
    int opset; /* the first opset that has it */
};

static const struct qtype qtypes[] = {
    {KILN_DTYPE_U8, 0, 255, 10},   {KILN_DTYPE_I8, -128, 127, 10}, {KILN_DTYPE_U16, 0, 65535, 21},
    {KILN_DTYPE_I16, -32768, 32767, 21}, {KILN_DTYPE_U4, 0, 15, 21}, {KILN_DTYPE_I4, -8, 7, 21},
};

/* The reference quantization of one element. */
static double q_ref(float x, float s, double z, double lo, double hi)
{
    float v = (float)((double)x / (double)s);
    if (isnan(v)) return z;
    double q = nearbyint((double)v) + z;
    return q < lo ? lo : q > hi ? hi : q;
}

static float x_value(float s, double span)
{
    switch (rng_int(24)) {
    case 0: return NAN;
    case 1: return rng_int(2) ? INFINITY : -INFINITY;
    case 2: return -0.0f;
    case 3: case 4: return ((float)(rng_int(81) - 40) + 0.5f) * s; /* ties */
    case 5: return (float)rng_range(-1e6, 1e6);                     /* saturates */
    default: return (float)rng_range(-span, span) * s;
    }
}

/* Layout of one case: x dims, the parameter shape, and each element's parameter index. */
struct qcase {
    int rank;
    int64_t dims[4], pdims[4];
    int prank;
    int64_t axis, block;
    size_t n, np;
    size_t *pidx;
};

static void draw_case(struct qcase *c, int kind)
{
    c->rank = 1 + rng_int(4);
    c->n = 1;
    for (int d = 0; d < c->rank; d++) {
        c->dims[d] = rng_int(4) == 0 ? 1 : 1 + rng_int(rng_int(2) ? 5 : 40);
        c->n *= (size_t)c->dims[d];
    }
    int ax = rng_int(c->rank);
    c->axis = rng_int(2) ? ax : ax - c->rank;
    c->block = kind == 2 ? 1 + rng_int(6) : 0;
    size_t inner = 1, D = (size_t)c->dims[ax];
    for (int d = ax + 1; d < c->rank; d++) inner *= (size_t)c->dims[d];
    size_t nb = kind == 2 ? (D + (size_t)c->block - 1) / (size_t)c->block : D;
    if (kind == 0) c->prank = 0, c->np = 1;
    if (kind == 1) c->prank = 1, c->pdims[0] = (int64_t)D, c->np = D;
    if (kind == 2) {
        c->prank = c->rank;
        c->np = 1;
        for (int d = 0; d < c->rank; d++) {
            c->pdims[d] = d == ax ? (int64_t)nb : c->dims[d];
            c->np *= (size_t)c->pdims[d];
        }
    }
    c->pidx = malloc(c->n * sizeof *c->pidx);
    if (!c->pidx) exit(1);
    for (size_t j = 0; j < c->n; j++) {
        size_t i = j % inner, cc = (j / inner) % D, o = j / inner / D;
        c->pidx[j] = kind == 0 ? 0 : kind == 1 ? cc : (o * nb + cc / (size_t)c->block) * inner + i;
    }
}

static kiln_status run_q(const char *op, int opset, const struct qcase *c, kiln_value **in, int threads,
                         kiln_value **out, kiln_err *err)
{
    struct attrs at = {0};
    if (c->prank) add_i(&at, "axis", c->axis);
    if (c->block) add_i(&at, "block_size", c->block);
    struct kiln_pool *pool = NULL;
    if (threads > 1 && kiln_pool_create(threads, &pool, err)) return KILN_E_NOMEM;
    kiln_status st = run_op_pool(pool, op, opset, at.a, at.n, in, 3, out, 1, err);
    kiln_pool_free(pool);
    return st;
}

static int cases_run;

static void quantize_case(int i, int kind)
{
    const struct qtype *t = &qtypes[rng_int(6)];
    struct qcase c = {0};
    draw_case(&c, kind);
    int opset = kind == 2 || t->opset > 10 ? 21 : 10 + rng_int(12);
    float *x = malloc(c.n * sizeof *x), *s = malloc(c.np * sizeof *s);
    double *z = malloc(c.np * sizeof *z), *want = malloc(c.n * sizeof *want);
    if (!x || !s || !z || !want) exit(1);
    bool zp = t->dt != KILN_DTYPE_U8 || rng_int(3) != 0;
    for (size_t j = 0; j < c.np; j++) {
        s[j] = (float)rng_range(0.01, 2.0);
        z[j] = zp ? t->lo + (double)rng_int((int)(t->hi - t->lo) + 1) : 0;
    }
    double span = (t->hi - t->lo) * 0.7;
    for (size_t j = 0; j < c.n; j++) x[j] = x_value(s[c.pidx[j]], span);
    for (size_t j = 0; j < c.n; j++) want[j] = q_ref(x[j], s[c.pidx[j]], z[c.pidx[j]], t->lo, t->hi);
    kiln_value *wv = tensor_f64(t->dt, c.rank, c.dims, want);
    for (int th = 1; th <= 3; th++) {
        kiln_value *in[3] = {tensor_of(KILN_DTYPE_F32, c.rank, c.dims, x), tensor_of(KILN_DTYPE_F32, c.prank, c.pdims, s),
                             zp ? tensor_f64(t->dt, c.prank, c.pdims, z) : NULL};
        kiln_value *out = NULL;
        kiln_err err = {0};
        kiln_status st = run_q("QuantizeLinear", opset, &c, in, th, &out, &err);
        CHECK(st == KILN_OK, "quantize #%d: %s", i, err.msg);
        if (!st) {
            size_t bytes = c.n * kiln_dtype_size(t->dt);
            CHECK(out->t.dtype == t->dt && !memcmp(out->t.data, wv->t.data, bytes),
                  "quantize #%d (%s, kind %d, rank %d, axis %lld, block %lld, n %zu, %d threads) differs", i,
                  kiln_dtype_name(t->dt), kind, c.rank, (long long)c.axis, (long long)c.block, c.n, th);
        }
        kiln_value_free(out);
        free_all(in, 3);
    }
    kiln_value_free(wv);
    free(x), free(s), free(z), free(want), free(c.pidx);
    cases_run++;
}

static void dequantize_case(int i, int kind)
{
    static const struct qtype i32 = {KILN_DTYPE_I32, -2147483648.0, 2147483647.0, 10};
    const struct qtype *t = rng_int(7) == 0 ? &i32 : &qtypes[rng_int(6)];
    struct qcase c = {0};
    draw_case(&c, kind);
    int opset = kind == 2 || t->opset > 10 ? 21 : 10 + rng_int(12);
    double *x = malloc(c.n * sizeof *x), *z = malloc(c.np * sizeof *z);
    float *s = malloc(c.np * sizeof *s), *want = malloc(c.n * sizeof *want);
    if (!x || !s || !z || !want) exit(1);
    bool zp = rng_int(3) != 0;
    double lo = t->lo, w = t->hi - t->lo;
    for (size_t j = 0; j < c.np; j++) {
        s[j] = (float)rng_range(0.001, 2.0);
        z[j] = zp ? floor(lo + rng_unit() * (w + 1)) : 0;
    }
    for (size_t j = 0; j < c.n; j++) x[j] = rng_int(4) ? floor(lo + rng_unit() * (w + 1)) : rng_int(2) ? t->lo : t->hi;
    for (size_t j = 0; j < c.n; j++) {
        float dx = (float)x[j];
        if (zp) dx -= (float)z[c.pidx[j]];
        want[j] = dx * s[c.pidx[j]];
    }
    for (int th = 1; th <= 3; th++) {
        kiln_value *in[3] = {tensor_f64(t->dt, c.rank, c.dims, x), tensor_of(KILN_DTYPE_F32, c.prank, c.pdims, s),
                             zp ? tensor_f64(t->dt, c.prank, c.pdims, z) : NULL};
        kiln_value *out = NULL;
        kiln_err err = {0};
        kiln_status st = run_q("DequantizeLinear", opset, &c, in, th, &out, &err);
        CHECK(st == KILN_OK, "dequantize #%d: %s", i, err.msg);
        if (!st)
            CHECK(out->t.dtype == KILN_DTYPE_F32 && !memcmp(out->t.data, want, c.n * sizeof(float)),
                  "dequantize #%d (%s, kind %d, rank %d, axis %lld, block %lld, n %zu, %d threads) differs", i,
                  kiln_dtype_name(t->dt), kind, c.rank, (long long)c.axis, (long long)c.block, c.n, th);
        kiln_value_free(out);
        free_all(in, 3);
    }
    free(x), free(s), free(z), free(want), free(c.pidx);
    cases_run++;
}

/* The kernels, every variant, one parameter and a parameter per element. */
static void kernel_cases(void)
{
    static const size_t lens[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 100};
    enum { NMAX = 100 };
    float x[NMAX], s[NMAX], z[NMAX], yf[NMAX], wf[NMAX];
    uint16_t y16[NMAX], w16[NMAX];
    int32_t xi[NMAX];
    int checked = 0;
    for (int rep = 0; rep < 30; rep++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            const struct qtype *t = &qtypes[rng_int(6)];
            int bytes = t->dt == KILN_DTYPE_U16 || t->dt == KILN_DTYPE_I16 ? 2 : 1;
            bool per = rng_int(2), has_z = rng_int(2);
            for (size_t j = 0; j < NMAX; j++) {
                s[j] = (float)rng_range(0.01, 3);
                z[j] = (float)(t->lo + rng_int((int)(t->hi - t->lo) + 1));
                x[j] = x_value(s[per ? j : 0], t->hi - t->lo);
                xi[j] = (int32_t)(rng_u64() >> 32);
            }
            for (size_t j = 0; j < n; j++) {
                size_t p = per ? j : 0;
                double q = q_ref(x[j], s[p], has_z ? z[p] : 0, t->lo, t->hi);
                w16[j] = (uint16_t)(int32_t)q;
                if (bytes == 1) w16[j] &= 0xFF;
            }
            static const int kinds[] = {KILN_DQ_U8, KILN_DQ_I8, KILN_DQ_U16, KILN_DQ_I16, KILN_DQ_I32};
            int kind = kinds[rng_int(5)];
            for (size_t j = 0; j < n; j++) {
                size_t p = per ? j : 0;
                float dx = kind == KILN_DQ_U8 ? (float)(uint8_t)xi[j] : kind == KILN_DQ_I8 ? (float)(int8_t)xi[j]
                         : kind == KILN_DQ_U16 ? (float)(uint16_t)xi[j] : kind == KILN_DQ_I16 ? (float)(int16_t)xi[j]
                                                                                 : (float)xi[j];
                if (has_z) dx -= z[p];
                wf[j] = dx * s[p];
            }
            /* the packed x of kind */
            uint8_t raw[NMAX * 4];
            for (size_t j = 0; j < n; j++) {
                if (kind == KILN_DQ_U8 || kind == KILN_DQ_I8) raw[j] = (uint8_t)xi[j];
                else if (kind == KILN_DQ_U16 || kind == KILN_DQ_I16) memcpy(raw + 2 * j, &(uint16_t){(uint16_t)xi[j]}, 2);
                else memcpy(raw + 4 * j, &xi[j], 4);
            }
            for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
                const char *in = kiln_isa_name((enum kiln_isa)isa);
                memset(y16, 0xAB, sizeof y16);
                KILN_ISA_VARIANT(kiln_q_f32_isa, isa)(x, n, s, has_z ? z : NULL, per, (float)t->lo, (float)t->hi, y16, bytes);
                for (size_t j = 0; j < n; j++) {
                    uint16_t got = bytes == 1 ? ((uint8_t *)y16)[j] : y16[j];
                    if (got != w16[j]) {
                        CHECK(false, "q_f32 %s %s n %zu per %d: y[%zu] = %u for x %g, want %u", in,
                              kiln_dtype_name(t->dt), n, per, j, got, (double)x[j], w16[j]);
                        break;
                    }
                }
                memset(yf, 0xAB, sizeof yf);
                KILN_ISA_VARIANT(kiln_dq_f32_isa, isa)(raw, kind, n, s, has_z ? z : NULL, per, yf);
                CHECK(!memcmp(yf, wf, n * sizeof *yf), "dq_f32 %s kind %d n %zu per %d differs", in, kind, n, per);
                checked++;
            }
        }
    CHECK(checked >= 300, "only %d kernel checks", checked);
}

int main(void)
{
    rng_seed(0x9D0);
    kernel_cases();
    for (int i = 0; i < 150; i++) quantize_case(i, i % 3);
    for (int i = 0; i < 150; i++) dequantize_case(i, i % 3);
    CHECK(cases_run == 300, "only %d cases ran", cases_run);
    printf("test_quant_qdq: %d cases (isa %s)\n", cases_run, kiln_cpu_isa());
    return test_summary("test_quant_qdq");
}
