/* test_par_conv_gemm.c: the threaded paths of Conv / ConvTranspose (src/cpu/ops/conv.c) and
 * batched MatMul (src/cpu/ops/gemm.c) against naive references in double.
 *
 * Every case runs twice: without a pool (as a one-thread session) and with a session pool of
 * 3 threads, built here as the executor would hand it to the kernel. Both must be within
 * 1e-5 * sum|terms| of the reference (float32 accumulation with margin). The cases cover both
 * ways the kernels thread: (image, group) units or batch entries whose GEMMs are too small to
 * split run side by side, one plain kiln_sgemm each, so there the threaded result must equal
 * the unthreaded one bit for bit (the same call shapes); big GEMMs run one at a time with the
 * im2col / col2im, the GEMM (kiln_sgemm_par) and the bias split over the threads.
 *
 * Conv: groups 1, 2, 4; batch 1 and 3; 3x3 pad 1, 1x1 (the no-im2col path), 5x5 stride 2
 * with asymmetric pads; with and without bias; plus ResNet-sized layers whose GEMMs split.
 * ConvTranspose: small batched / grouped cases and a big one. MatMul: batch dims [2,3] x
 * [2,3] and broadcast [1,3] x [2,1], a batched A with a 2-D B (the folded path), small and
 * BERT-attention-sized (128x64x128) products and one big enough to split.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/kernel.h"
#include "test_support.h"

/* Checks got[0..n) against want within 1e-5 * mag; `what` names the run. */
static void check_ref(const struct kiln_value *got, const double *want, const double *mag,
                      size_t n, const char *what, int t)
{
    const float *y = got->t.data;
    int bad = 0;
    for (size_t i = 0; i < n && bad < 3; i++) {
        double tol = 1e-5 * mag[i] + 1e-30;
        if (!(fabs((double)y[i] - want[i]) <= tol)) {
            bad++;
            test_fail(__FILE__, __LINE__, NULL, "case %d %s: y[%zu] = %.9g, want %.9g (tol %.3g)",
                      t, what, i, (double)y[i], want[i], tol);
        }
    }
    test_checks++;
}

/* Whether the two float32 results are the same bits. */
static bool same_bits(const struct kiln_value *a, const struct kiln_value *b, size_t n)
{
    return memcmp(a->t.data, b->t.data, n * sizeof(float)) == 0;
}

/* kiln_sgemm_par's rule (sgemm.c) for splitting an M x N x K product over 3 threads. */
static bool splits3(double M, double N, double K)
{
    return 2.0 * M * N * K >= 2e6 * 3 && !(M < 32 && N < 32);
}

/* ------------------------------------------------------------------ Conv / ConvTranspose */

struct ccase {
    int64_t N, C, H, W, M, group, kh, kw, s, pads[4]; /* pads: top, left, bottom, right */
    bool bias;
};

static void check_conv(const struct ccase *c, struct kiln_pool *pool, int t)
{
    int64_t cg = c->C / c->group, mg = c->M / c->group;
    int64_t OH = (c->H + c->pads[0] + c->pads[2] - c->kh) / c->s + 1;
    int64_t OW = (c->W + c->pads[1] + c->pads[3] - c->kw) / c->s + 1;
    int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->M, cg, c->kh, c->kw}, bd[1] = {c->M};
    struct kiln_value *in[3] = {rand_tensor(4, xd), rand_tensor(4, wd),
                                c->bias ? rand_tensor(1, bd) : NULL};
    const float *x = in[0]->t.data, *w = in[1]->t.data;
    const float *b = c->bias ? in[2]->t.data : NULL;
    size_t ny = (size_t)(c->N * c->M * OH * OW);
    double *want = malloc(ny * sizeof *want), *mag = malloc(ny * sizeof *mag);
    if (!want || !mag) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t m = 0; m < c->M; m++)
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double s = b ? b[m] : 0.0, a = b ? fabs(b[m]) : 0.0;
                    int64_t gi = m / mg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                int64_t iy = oy * c->s - c->pads[0] + ky;
                                int64_t ix = ox * c->s - c->pads[1] + kx;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                                double term =
                                    (double)x[((n * c->C + gi * cg + ci) * c->H + iy) * c->W + ix] *
                                    (double)w[((m * cg + ci) * c->kh + ky) * c->kw + kx];
                                s += term;
                                a += fabs(term);
                            }
                    size_t o = (size_t)(((n * c->M + m) * OH + oy) * OW + ox);
                    want[o] = s;
                    mag[o] = a;
                }
    struct attrs at = {0};
    int64_t ks[2] = {c->kh, c->kw}, st[2] = {c->s, c->s};
    add_ints(&at, "kernel_shape", ks, 2);
    add_ints(&at, "strides", st, 2);
    add_ints(&at, "pads", c->pads, 4);
    add_i(&at, "group", c->group);
    struct kiln_value *y1 = NULL, *yt = NULL;
    kiln_err err = {0};
    kiln_status s1 = run_op_pool(NULL, "Conv", 11, at.a, at.n, in, c->bias ? 3 : 2, &y1, 1, &err);
    CHECK(s1 == KILN_OK, "case %d: %s", t, err.msg);
    kiln_status s3 = run_op_pool(pool, "Conv", 11, at.a, at.n, in, c->bias ? 3 : 2, &yt, 1, &err);
    CHECK(s3 == KILN_OK, "case %d: %s", t, err.msg);
    int64_t yd[4] = {c->N, c->M, OH, OW};
    if (!s1 && !s3) {
        CHECK(same_shape(&y1->t, 4, yd) && same_shape(&yt->t, 4, yd), "case %d: Y shape", t);
        check_ref(y1, want, mag, ny, "Conv 1 thread", t);
        check_ref(yt, want, mag, ny, "Conv 3 threads", t);
        if (!splits3((double)mg, (double)(OH * OW), (double)(cg * c->kh * c->kw)))
            CHECK(same_bits(y1, yt, ny), "case %d: small GEMMs side by side differ from serial",
                  t);
    }
    kiln_value_free(y1);
    kiln_value_free(yt);
    free(want);
    free(mag);
    free_all(in, 3);
}

static void check_convt(const struct ccase *c, struct kiln_pool *pool, int t)
{
    /* X [N, C, H, W], W [C, M/group, kh, kw], Y [N, M, OH, OW]. */
    int64_t cg = c->C / c->group, mg = c->M / c->group;
    int64_t OH = c->s * (c->H - 1) + c->kh - c->pads[0] - c->pads[2];
    int64_t OW = c->s * (c->W - 1) + c->kw - c->pads[1] - c->pads[3];
    int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->C, mg, c->kh, c->kw}, bd[1] = {c->M};
    struct kiln_value *in[3] = {rand_tensor(4, xd), rand_tensor(4, wd),
                                c->bias ? rand_tensor(1, bd) : NULL};
    const float *x = in[0]->t.data, *w = in[1]->t.data;
    const float *b = c->bias ? in[2]->t.data : NULL;
    size_t ny = (size_t)(c->N * c->M * OH * OW);
    double *want = calloc(ny, sizeof *want), *mag = calloc(ny, sizeof *mag);
    if (!want || !mag) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ch = 0; ch < c->C; ch++)
            for (int64_t iy = 0; iy < c->H; iy++)
                for (int64_t ix = 0; ix < c->W; ix++)
                    for (int64_t mo = 0; mo < mg; mo++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                int64_t oy = iy * c->s - c->pads[0] + ky;
                                int64_t ox = ix * c->s - c->pads[1] + kx;
                                if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
                                int64_t m = (ch / cg) * mg + mo;
                                double term =
                                    (double)x[((n * c->C + ch) * c->H + iy) * c->W + ix] *
                                    (double)w[((ch * mg + mo) * c->kh + ky) * c->kw + kx];
                                size_t o = (size_t)(((n * c->M + m) * OH + oy) * OW + ox);
                                want[o] += term;
                                mag[o] += fabs(term);
                            }
    for (size_t o = 0; o < ny && b; o++) {
        size_t m = (o / (size_t)(OH * OW)) % (size_t)c->M;
        want[o] += b[m];
        mag[o] += fabs(b[m]);
    }
    struct attrs at = {0};
    int64_t ks[2] = {c->kh, c->kw}, st[2] = {c->s, c->s};
    add_ints(&at, "kernel_shape", ks, 2);
    add_ints(&at, "strides", st, 2);
    add_ints(&at, "pads", c->pads, 4);
    add_i(&at, "group", c->group);
    struct kiln_value *y1 = NULL, *yt = NULL;
    kiln_err err = {0};
    size_t nin = c->bias ? 3 : 2;
    kiln_status s1 = run_op_pool(NULL, "ConvTranspose", 11, at.a, at.n, in, nin, &y1, 1, &err);
    CHECK(s1 == KILN_OK, "case %d: %s", t, err.msg);
    kiln_status s3 = run_op_pool(pool, "ConvTranspose", 11, at.a, at.n, in, nin, &yt, 1, &err);
    CHECK(s3 == KILN_OK, "case %d: %s", t, err.msg);
    int64_t yd[4] = {c->N, c->M, OH, OW};
    if (!s1 && !s3) {
        CHECK(same_shape(&y1->t, 4, yd) && same_shape(&yt->t, 4, yd), "case %d: Y shape", t);
        check_ref(y1, want, mag, ny, "ConvTranspose 1 thread", t);
        check_ref(yt, want, mag, ny, "ConvTranspose 3 threads", t);
        if (!splits3((double)(mg * c->kh * c->kw), (double)(c->H * c->W), (double)cg))
            CHECK(same_bits(y1, yt, ny), "case %d: small GEMMs side by side differ from serial",
                  t);
    }
    kiln_value_free(y1);
    kiln_value_free(yt);
    free(want);
    free(mag);
    free_all(in, 3);
}

static void test_conv(struct kiln_pool *pool)
{
    static const int64_t groups[3] = {1, 2, 4}, batches[2] = {1, 3};
    /* kernel, stride, pads (top, left, bottom, right) */
    static const int64_t kinds[3][6] = {{3, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 0, 0}, {5, 2, 2, 1, 1, 2}};
    int t = 0;
    for (int gi = 0; gi < 3; gi++)
        for (int bi = 0; bi < 2; bi++)
            for (int ki = 0; ki < 3; ki++, t++) {
                struct ccase c = {batches[bi], 8, 11, 13, 12, groups[gi], kinds[ki][0],
                                  kinds[ki][0], kinds[ki][1],
                                  {kinds[ki][2], kinds[ki][3], kinds[ki][4], kinds[ki][5]},
                                  t % 2 == 0};
                check_conv(&c, pool, t);
            }
    /* Big GEMMs (split over the threads), with im2col, bias and a direct 1x1. */
    static const struct ccase big[] = {
        {1, 32, 28, 28, 64, 1, 3, 3, 1, {1, 1, 1, 1}, true},
        {2, 16, 30, 26, 48, 2, 5, 5, 2, {2, 1, 1, 2}, true},
        {1, 3, 56, 56, 32, 1, 7, 7, 2, {3, 3, 3, 3}, false},
        {3, 64, 14, 14, 128, 1, 1, 1, 1, {0, 0, 0, 0}, true},
        {2, 64, 14, 14, 96, 1, 1, 1, 2, {0, 0, 0, 0}, false},
        {5, 16, 9, 9, 16, 4, 3, 3, 1, {1, 1, 1, 1}, true}, /* 20 small units, 3 threads */
    };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++, t++) check_conv(&big[i], pool, t);

    static const struct ccase tr[] = {
        {3, 8, 7, 9, 12, 1, 3, 3, 2, {1, 1, 0, 1}, true},
        {3, 8, 7, 9, 12, 4, 3, 3, 1, {1, 0, 1, 1}, false},
        {1, 8, 7, 9, 12, 2, 5, 5, 2, {2, 1, 1, 2}, true},
        {2, 64, 16, 16, 32, 1, 4, 4, 2, {1, 1, 1, 1}, true}, /* big: splits */
    };
    for (size_t i = 0; i < sizeof tr / sizeof *tr; i++, t++) check_convt(&tr[i], pool, t);
}

/* ------------------------------------------------------------------ MatMul */

/* A [ad..., M, K] x B [bd..., K, N] with batch dims of rank ra / rb (right-aligned,
 * broadcast where 1). */
struct mcase {
    int ra, rb;
    int64_t ad[2], bd[2], M, K, N;
};

static void check_matmul(const struct mcase *c, struct kiln_pool *pool, int t)
{
    int64_t adims[4], bdims[4], ydims[4];
    int br = c->ra > c->rb ? c->ra : c->rb;
    for (int d = 0; d < c->ra; d++) adims[d] = c->ad[d];
    for (int d = 0; d < c->rb; d++) bdims[d] = c->bd[d];
    adims[c->ra] = c->M, adims[c->ra + 1] = c->K;
    bdims[c->rb] = c->K, bdims[c->rb + 1] = c->N;
    int64_t batch = 1;
    for (int d = 0; d < br; d++) {
        int64_t a = d - (br - c->ra) >= 0 ? c->ad[d - (br - c->ra)] : 1;
        int64_t b = d - (br - c->rb) >= 0 ? c->bd[d - (br - c->rb)] : 1;
        ydims[d] = a > b ? a : b;
        batch *= ydims[d];
    }
    ydims[br] = c->M, ydims[br + 1] = c->N;
    struct kiln_value *in[2] = {rand_tensor(c->ra + 2, adims), rand_tensor(c->rb + 2, bdims)};
    const float *a = in[0]->t.data, *b = in[1]->t.data;
    size_t ny = (size_t)(batch * c->M * c->N);
    double *want = malloc(ny * sizeof *want), *mag = malloc(ny * sizeof *mag);
    if (!want || !mag) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t bt = 0; bt < batch; bt++) {
        /* The batch index per output dim, then each operand's offset (broadcast dims: 0). */
        int64_t idx[2] = {0}, rem = bt, oa = 0, ob = 0, sa = c->M * c->K, sb = c->K * c->N;
        for (int d = br - 1; d >= 0; d--) idx[d] = rem % ydims[d], rem /= ydims[d];
        for (int d = c->ra - 1; d >= 0; d--) {
            oa += (c->ad[d] == 1 ? 0 : idx[d + br - c->ra]) * sa;
            sa *= c->ad[d];
        }
        for (int d = c->rb - 1; d >= 0; d--) {
            ob += (c->bd[d] == 1 ? 0 : idx[d + br - c->rb]) * sb;
            sb *= c->bd[d];
        }
        for (int64_t i = 0; i < c->M; i++)
            for (int64_t j = 0; j < c->N; j++) {
                double s = 0, m = 0;
                for (int64_t p = 0; p < c->K; p++) {
                    double term = (double)a[oa + i * c->K + p] * (double)b[ob + p * c->N + j];
                    s += term;
                    m += fabs(term);
                }
                size_t o = (size_t)((bt * c->M + i) * c->N + j);
                want[o] = s;
                mag[o] = m;
            }
    }
    struct kiln_value *y1 = NULL, *yt = NULL;
    kiln_err err = {0};
    kiln_status s1 = run_op_pool(NULL, "MatMul", 13, NULL, 0, in, 2, &y1, 1, &err);
    CHECK(s1 == KILN_OK, "case %d: %s", t, err.msg);
    kiln_status s3 = run_op_pool(pool, "MatMul", 13, NULL, 0, in, 2, &yt, 1, &err);
    CHECK(s3 == KILN_OK, "case %d: %s", t, err.msg);
    if (!s1 && !s3) {
        CHECK(same_shape(&y1->t, br + 2, ydims) && same_shape(&yt->t, br + 2, ydims),
              "case %d: Y shape", t);
        check_ref(y1, want, mag, ny, "MatMul 1 thread", t);
        check_ref(yt, want, mag, ny, "MatMul 3 threads", t);
        if (c->rb > 0 && !splits3((double)c->M, (double)c->N, (double)c->K))
            CHECK(same_bits(y1, yt, ny), "case %d: small GEMMs side by side differ from serial",
                  t);
    }
    kiln_value_free(y1);
    kiln_value_free(yt);
    free(want);
    free(mag);
    free_all(in, 2);
}

static void test_matmul(struct kiln_pool *pool)
{
    static const int64_t sizes[4][3] = {{5, 7, 6}, {1, 9, 3}, {128, 64, 128}, {200, 100, 160}};
    int t = 100;
    for (int si = 0; si < 4; si++) {
        int64_t M = sizes[si][0], K = sizes[si][1], N = sizes[si][2];
        const struct mcase cs[] = {
            {2, 2, {2, 3}, {2, 3}, M, K, N}, /* [2,3] x [2,3] */
            {2, 2, {1, 3}, {2, 1}, M, K, N}, /* [1,3] x [2,1]: both broadcast */
            {1, 2, {3, 0}, {2, 3}, M, K, N}, /* [3] x [2,3] */
            {2, 0, {2, 3}, {0, 0}, M, K, N}, /* B 2-D: the folded product */
            {0, 2, {0, 0}, {2, 3}, M, K, N}, /* A 2-D shared by the batch */
        };
        for (size_t i = 0; i < sizeof cs / sizeof *cs; i++, t++) check_matmul(&cs[i], pool, t);
    }
    /* BERT-base attention: [1, 12, 128, 64] x [1, 12, 64, 128]. */
    const struct mcase bert = {2, 2, {1, 12}, {1, 12}, 128, 64, 128};
    check_matmul(&bert, pool, t);
}

int main(void)
{
    rng_seed(0x9a7c0117ULL);
    struct kiln_pool *pool = NULL;
    kiln_err err = {0};
    CHECK(kiln_pool_create(3, &pool, &err) == KILN_OK, "pool: %s", err.msg);
    test_conv(pool);
    test_matmul(pool);
    kiln_pool_free(pool);
    return test_summary("test_par_conv_gemm");
}
