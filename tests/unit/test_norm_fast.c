/* test_norm_fast.c: the vectorized Softmax/LogSoftmax and normalization passes.
 *
 * 1. The row passes of every ISA variant up to kiln_isa_best() (cpu/isa/softmax.c,
 *    cpu/isa/norm.c) against float64 references on odd and tiny lengths (sums within
 *    4e-7 relative, elementwise passes within 1.2e-7 relative: one float rounding; the
 *    float-lane normalization row within 6 roundings of its terms).
 * 2. Softmax/LogSoftmax (opset 13, every axis) and LayerNormalization (every axis) on random
 *    float32 shapes of rank 1..4 against float64 references written here, inline and over a
 *    2-thread pool (identical results). Tolerances: Softmax 1e-6 absolute + 4e-6 relative
 *    (exp within 2 ulp, then two roundings); LogSoftmax 2e-6 absolute; LayerNormalization
 *    2e-5 absolute on unit-scale data (float32 output of values of size ~3).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/isa.h"
#include "cpu/reduce_isa.h"
#include "test_support.h"

static struct kiln_pool *g_pool;

static void test_rows(void)
{
    static const size_t lens[] = {1, 2, 3, 15, 16, 17, 33, 100, 768, 1001};
    float *x = malloc(1001 * sizeof *x), *e = malloc(1001 * sizeof *e), *e0 = malloc(1001 * sizeof *e0);
    float *s = malloc(1001 * sizeof *s), *b = malloc(1001 * sizeof *b);
    for (size_t i = 0; i < 1001; i++) x[i] = 3 * rng_f32(), s[i] = rng_f32(), b[i] = rng_f32();
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        const char *nm = kiln_isa_name(isa);
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            size_t n = lens[li];
            double mx = -INFINITY, sum = 0, sq = 0, m = 0, v = 0;
            for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx, m += x[i], sq += (double)x[i] * x[i];
            m /= (double)n;
            for (size_t i = 0; i < n; i++) sum += exp(x[i] - mx), v += (x[i] - m) * (x[i] - m);
            v /= (double)n;
            float gm = KILN_ISA_VARIANT(kiln_sm_max_f32_isa, isa)(x, n);
            CHECK(gm == (float)mx, "%s max n %zu", nm, n);
            double gs = KILN_ISA_VARIANT(kiln_sm_expsum_f32_isa, isa)(x, e, n, (float)mx);
            double gs0 = kiln_sm_expsum_f32_isa_portable(x, e0, n, (float)mx);
            CHECK(fabs(gs - sum) <= 4e-7 * sum, "%s expsum n %zu: %.9g vs %.9g", nm, n, gs, sum);
            /* Variants may fuse multiply-adds (FMA), so they agree to rounding, not bits. */
            CHECK(fabs(gs - gs0) <= 4e-7 * gs0, "%s expsum n %zu vs portable", nm, n);
            double gmu, gvar;
            KILN_ISA_VARIANT(kiln_norm_stats_f32_isa, isa)(x, n, &gmu, &gvar);
            CHECK(fabs(gmu - m) <= 1e-14 && fabs(gvar - v) <= 1e-13, "%s stats n %zu", nm, n);
            double gq = KILN_ISA_VARIANT(kiln_norm_meansq_f32_isa, isa)(x, n);
            CHECK(fabs(gq - sq / (double)n) <= 1e-13, "%s meansq n %zu", nm, n);
            /* The whole row in float lanes (LayerNorm and RMS, with and without bias) against
             * float64. A float-lane sum of n terms is within g = 6e-8 (n / 16 + 4) of the sum
             * of their magnitudes: the mean within g * mean|x|, 1 / sqrt(var + eps) within
             * 2 g relative; each output within 6 roundings of its terms plus what those two
             * errors carry (|s| inv dmu + |x - mu| |s| dinv). */
            double ax = 0;
            for (size_t i = 0; i < n; i++) ax += fabs(x[i]);
            ax /= (double)n;
            const double g = 6e-8 * ((double)n / 16 + 4);
            bool ok = true;
            for (int rms = 0; rms <= 1; rms++)
                for (int wb = 0; wb <= 1; wb++) {
                    double rmu = rms ? 0 : m, rvar = rms ? sq / (double)n : v, eps = 1e-5;
                    double rinv = 1.0 / sqrt(rvar + eps), gmu2, ginv;
                    double dmu = g * ax + 6e-8 * fabs(rmu), dinv = 2 * g * rinv;
                    KILN_ISA_VARIANT(kiln_norm_row_f32_isa, isa)(x, e, n, eps, s, wb ? b : NULL, rms, &gmu2, &ginv);
                    CHECK(fabs(gmu2 - rmu) <= dmu && fabs(ginv - rinv) <= dinv,
                          "%s row rms %d n %zu: mu %.9g vs %.9g, inv %.9g vs %.9g", nm, rms, n, gmu2, rmu, ginv, rinv);
                    for (size_t i = 0; i < n; i++) {
                        double t = fabs(x[i] - rmu) * rinv * fabs(s[i]);
                        double r = (x[i] - rmu) * rinv * s[i] + (wb ? b[i] : 0);
                        double tol = 6 * 6e-8 * (t + (wb ? fabs(b[i]) : 0)) + fabs(s[i]) * rinv * dmu +
                                     fabs(x[i] - rmu) * fabs(s[i]) * dinv;
                        ok = ok && fabs(e[i] - r) <= tol;
                    }
                    CHECK(ok, "%s row rms %d bias %d n %zu", nm, rms, wb, n);
                }
            ok = true;
            KILN_ISA_VARIANT(kiln_norm_affine_f32_isa, isa)(x, e, n, 0.7, -0.2);
            for (size_t i = 0; i < n; i++) {
                double r = 0.7 * x[i] - 0.2;
                ok = ok && fabs(e[i] - r) <= 1.2e-7 * fabs(r) + 1e-12;
            }
            CHECK(ok, "%s affine n %zu", nm, n);
        }
    }
    free(x), free(e), free(e0), free(s), free(b);
}

static struct kiln_value *run1(const char *op, int opset, struct attrs *at, struct kiln_value **in,
                               size_t nin, struct kiln_pool *pool)
{
    struct kiln_value *out[1] = {NULL};
    kiln_err err = {0};
    kiln_status st = run_op_pool(pool, op, opset, at->a, at->n, in, nin, out, 1, &err);
    CHECK(st == KILN_OK, "%s: %s", op, err.msg);
    return out[0];
}

static void test_ops(void)
{
    for (int trial = 0; trial < 30; trial++) {
        int rank = 1 + trial % 4;
        int64_t dims[4];
        size_t n = 1;
        for (int d = 0; d < rank; d++) dims[d] = 1 + rng_int(trial < 6 ? 3 : 19), n *= (size_t)dims[d];
        float *xv = malloc(n * sizeof *xv);
        for (size_t i = 0; i < n; i++) xv[i] = 3 * rng_f32();
        struct kiln_value *x = tensor_of(KILN_DTYPE_F32, rank, dims, xv);
        for (int axis = 0; axis < rank; axis++) {
            size_t outer = 1, len = (size_t)dims[axis], inner = 1, D = 1;
            for (int d = 0; d < axis; d++) outer *= (size_t)dims[d];
            for (int d = axis + 1; d < rank; d++) inner *= (size_t)dims[d];
            for (int d = axis; d < rank; d++) D *= (size_t)dims[d];
            for (int op = 0; op < 3; op++) {
                struct attrs at = {0};
                add_i(&at, "axis", axis);
                struct kiln_value *in[3] = {x, NULL, NULL};
                size_t nin = 1;
                float *sc = NULL, *bs = NULL;
                const char *name = op == 0 ? "Softmax" : op == 1 ? "LogSoftmax" : "LayerNormalization";
                if (op == 2) {
                    sc = malloc(D * sizeof *sc), bs = malloc(D * sizeof *bs);
                    for (size_t i = 0; i < D; i++) sc[i] = rng_f32(), bs[i] = rng_f32();
                    in[1] = tensor_of(KILN_DTYPE_F32, rank - axis, dims + axis, sc);
                    in[2] = tensor_of(KILN_DTYPE_F32, rank - axis, dims + axis, bs);
                    nin = 3;
                }
                struct kiln_value *y1 = run1(name, op == 2 ? 17 : 13, &at, in, nin, NULL);
                struct kiln_value *y2 = run1(name, op == 2 ? 17 : 13, &at, in, nin, g_pool);
                if (y1 && y2) {
                    const float *a = y1->t.data;
                    CHECK(memcmp(a, y2->t.data, n * sizeof *a) == 0, "%s axis %d: 1 vs 2 threads", name, axis);
                    double worst = 0;
                    if (op < 2) {
                        for (size_t o = 0; o < outer; o++)
                            for (size_t ib = 0; ib < inner; ib++) {
                                const float *p = xv + o * len * inner + ib;
                                double mx = -INFINITY, s = 0;
                                for (size_t j = 0; j < len; j++) mx = p[j * inner] > mx ? p[j * inner] : mx;
                                for (size_t j = 0; j < len; j++) s += exp(p[j * inner] - mx);
                                for (size_t j = 0; j < len; j++) {
                                    size_t at_ = o * len * inner + ib + j * inner;
                                    double r = op == 0 ? exp(p[j * inner] - mx) / s : p[j * inner] - mx - log(s);
                                    double tol = op == 0 ? 1e-6 + 4e-6 * fabs(r) : 2e-6;
                                    double err = fabs(a[at_] - r) / tol;
                                    worst = err > worst ? err : worst;
                                }
                            }
                    } else {
                        for (size_t o = 0; o < outer; o++) {
                            const float *p = xv + o * D;
                            double m = 0, v = 0;
                            for (size_t i = 0; i < D; i++) m += p[i];
                            m /= (double)D;
                            for (size_t i = 0; i < D; i++) v += (p[i] - m) * (p[i] - m);
                            v /= (double)D;
                            for (size_t i = 0; i < D; i++) {
                                double r = (p[i] - m) / sqrt(v + 1e-5) * sc[i] + bs[i];
                                double err = fabs(a[o * D + i] - r) / 2e-5;
                                worst = err > worst ? err : worst;
                            }
                        }
                    }
                    CHECK(worst <= 1, "%s rank %d axis %d: error %.3g x tolerance", name, rank, axis, worst);
                }
                if (y1) kiln_value_free(y1);
                if (y2) kiln_value_free(y2);
                if (in[1]) kiln_value_free(in[1]);
                if (in[2]) kiln_value_free(in[2]);
                free(sc), free(bs);
            }
        }
        kiln_value_free(x);
        free(xv);
    }
}

int main(void)
{
    rng_seed(0x40e3f1);
    kiln_err err = {0};
    if (kiln_pool_create(2, &g_pool, &err) != KILN_OK) {
        printf("FAIL: no pool: %s\n", err.msg);
        return 1;
    }
    test_rows();
    test_ops();
    kiln_pool_free(g_pool);
    return test_summary("test_norm_fast");
}
