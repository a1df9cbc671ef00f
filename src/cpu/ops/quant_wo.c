/* src/cpu/ops/quant_wo.c: kiln.DequantMatMul(x, W, w_scale[, w_zero_point[, bias]])
 * (docs/fused-ops.md),
 * weight-only quantization as transformer exporters write it: DequantizeLinear of a constant
 * 8- or 4-bit W [K, N] (per tensor, per axis or blocked along either axis) feeding MatMul's B.
 * The optimizer's fuse_dynquant pass makes it (the DequantizeLinear's attributes `axis`,
 * default 1, and `block_size` come along).
 *
 * Y = x @ W_f with W_f[k, n] = (float(W[k, n]) - float(zp[p])) * scale[p], the very float32
 * operations of DequantizeLinear (kiln_dq_f32_isa), but W_f is never whole in memory: each
 * thread takes its columns in chunks of NTILE, dequantizes a tile of KTILE rows of the chunk
 * and multiplies it with kiln_sgemm, accumulating over the tiles; up to FEW_ROWS rows of x (decoding)
 * instead sum x[k] * float(W[k, n] - zp) over each block of rows sharing a scale and scale
 * the block's sum once (wo_few_rows). So the output agrees with the unfused DequantizeLinear ->
 * MatMul up to the float32 summation order of the products (not bit for bit); the weights stay
 * a byte each. The optional bias (N values, fuse_matmul_add's) is added to each row at the
 * end, as the Add after the MatMul. The parameter index of element (k, n) is (k / bk) * rs + (n / bn) * cs, which
 * covers every granularity: per tensor (rs = cs = 0), per axis 0 (scale [K]: bk = 1, rs = 1)
 * or 1 (scale [N]: bn = 1, cs = 1), blocks along axis 0 (scale [ceil(K / b), N]: bk = b,
 * rs = N, bn = cs = 1) or axis 1 (scale [K, ceil(N / b)]: bk = 1, rs = ceil(N / b), bn = b,
 * cs = 1).
 */
#include <string.h>

#include "cpu/isa.h"
#include "cpu/kernel.h"
#include "cpu/quant_isa.h"
#include "cpu/sgemm.h"

/* A tile: KTILE rows by at most NTILE columns of W as float32 (256 KiB: in L2). */
#define KTILE 256
#define NTILE 256
/* At most this many rows of x take wo_few_rows, FEW_COLS columns at a time (its four
 * vectors fill one tile's memory). */
#define FEW_ROWS 4
#define FEW_COLS (KTILE * NTILE / 4)

struct wo_params {
    size_t K, N, bk, rs, bn, cs;
    int kind;              /* KILN_DQ_U8 / KILN_DQ_I8 (4-bit types are stored a byte each) */
    const float *s, *z;    /* z NULL without a zero point */
    const int32_t *zi;     /* z as int32 */
};

struct wo_state {
    int64_t axis, block;
    bool ready;            /* params prepared for the constants at w */
    const void *w;
    struct wo_params P;
};

/* The parameters of W (dtype/shape), scale and zero point; an error names what is wrong.
 * The float copies come from alloc(ctx, bytes). */
static kiln_status wo_layout(struct kiln_kctx *k, const struct wo_state *st, const struct kiln_tensor *w,
                             const struct kiln_tensor *s, const struct kiln_tensor *z, struct wo_params *P,
                             kiln_status (*alloc)(void *, size_t, void **), void *actx)
{
    kiln_dtype dt = w->dtype;
    if (w->rank != 2 || !(dt == KILN_DTYPE_U8 || dt == KILN_DTYPE_I8 || dt == KILN_DTYPE_U4 || dt == KILN_DTYPE_I4) ||
        s->dtype != KILN_DTYPE_F32 || (z && z->dtype != dt))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "W must be a 2-D 8- or 4-bit integer matrix (got %s of rank %d), "
                          "w_scale float32 (got %s) and w_zero_point W's type", kiln_dtype_name(dt), w->rank,
                          kiln_dtype_name(s->dtype));
    size_t K = (size_t)w->dims[0], N = (size_t)w->dims[1], ns = kiln_tensor_numel(s);
    memset(P, 0, sizeof *P);
    P->K = K, P->N = N, P->bk = 1, P->bn = 1;
    P->kind = dt == KILN_DTYPE_U8 || dt == KILN_DTYPE_U4 ? KILN_DQ_U8 : KILN_DQ_I8;
    int64_t axis = st->axis < 0 ? st->axis + 2 : st->axis, b = st->block;
    bool ok = axis == 0 || axis == 1;
    if (ok && ns == 1 && b == 0) {
        /* per tensor: rs = cs = 0 */
    } else if (ok && b == 0) {
        ok = s->rank == 1 && ns == (axis ? N : K);
        if (axis) P->cs = 1;
        else P->rs = 1;
    } else if (ok && b > 0) {
        size_t len = axis ? N : K, nb = (len + (size_t)b - 1) / (size_t)b;
        ok = s->rank == 2 && (size_t)s->dims[0] == (axis ? K : nb) && (size_t)s->dims[1] == (axis ? nb : N);
        if (axis) P->rs = nb, P->bn = (size_t)b, P->cs = 1;
        else P->bk = (size_t)b, P->rs = N, P->cs = 1;
    } else {
        ok = false;
    }
    if (!ok || (z && kiln_tensor_numel(z) != ns))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "w_scale (%zu elements) and w_zero_point do not fit W [%zu, %zu] with "
                          "axis %lld and block_size %lld", ns, K, N, (long long)st->axis, (long long)st->block);
    float *sf, *zf = NULL;
    int32_t *zi = NULL;
    KILN_TRY(alloc(actx, ns * sizeof *sf, (void **)&sf));
    memcpy(sf, s->data, ns * sizeof *sf);
    if (z) {
        KILN_TRY(alloc(actx, ns * sizeof *zf, (void **)&zf));
        KILN_TRY(alloc(actx, ns * sizeof *zi, (void **)&zi));
        for (size_t j = 0; j < ns; j++) {
            zi[j] = P->kind == KILN_DQ_U8 ? ((const uint8_t *)z->data)[j] : ((const int8_t *)z->data)[j];
            zf[j] = (float)zi[j];
        }
    }
    P->s = sf, P->z = zf, P->zi = zi;
    return KILN_OK;
}

static kiln_status prep_alloc(void *ctx, size_t bytes, void **p) { return kiln_kprep_alloc(ctx, bytes, p); }
static kiln_status run_alloc(void *ctx, size_t bytes, void **p) { return kiln_scratch(ctx, bytes, p); }

static kiln_status wo_prepare(struct kiln_kprep *p)
{
    struct wo_state *st;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *st, (void **)&st));
    st->axis = kiln_attr_i(&p->kc, "axis", 1);
    st->block = kiln_attr_i(&p->kc, "block_size", 0);
    p->state = st;
    const struct kiln_tensor *w = kiln_kprep_const(p, 1), *s = kiln_kprep_const(p, 2);
    const struct kiln_tensor *z = p->kc.n_in > 3 ? kiln_kprep_const(p, 3) : NULL;
    bool z_absent = p->kc.n_in <= 3 || !p->in[3];
    if (!w || !w->data || !s || !s->data || (!z && !z_absent)) return KILN_OK;
    kiln_err e = {0}, *saved = p->kc.err;
    p->kc.err = &e; /* a misfit is run's to report */
    kiln_status r = wo_layout(&p->kc, st, w, s, z, &st->P, prep_alloc, p);
    p->kc.err = saved;
    if (r == KILN_E_NOMEM) return r;
    st->ready = r == KILN_OK;
    st->w = w->data;
    p->kernel = "dequant-tiles";
    return KILN_OK;
}

struct wo_job {
    const struct wo_params *P;
    const void *w;
    const float *x, *bias;
    float *y, *tiles;      /* tiles: one KTILE x per floats per slice */
    size_t M, per;
};

/* Rows [k0, k0 + kb) of columns [n0, n1) of W dequantized into t (row stride n1 - n0). */
static void wo_tile(const struct wo_params *P, const void *w, size_t k0, size_t kb, size_t n0, size_t n1, float *t)
{
    size_t nw = n1 - n0, es = 1;
    for (size_t kk = 0; kk < kb; kk++) {
        size_t k = k0 + kk, rb = (k / P->bk) * P->rs;
        const char *row = (const char *)w + (k * P->N) * es;
        float *dst = t + kk * nw;
        if (P->bn == 1) {
            size_t p = rb + n0 * P->cs;
            KILN_ISA_DISPATCH(kiln_dq_f32_isa, (row + n0, P->kind, nw, P->s + p, P->z ? P->z + p : NULL, P->cs == 1, dst));
            continue;
        }
        for (size_t c = n0; c < n1;) { /* blocks of bn columns share a parameter */
            size_t e = (c / P->bn + 1) * P->bn;
            if (e > n1) e = n1;
            size_t p = rb + (c / P->bn) * P->cs;
            KILN_ISA_DISPATCH(kiln_dq_f32_isa, (row + c, P->kind, e - c, P->s + p, P->z ? P->z + p : NULL, false,
                                                dst + (c - n0)));
            c = e;
        }
    }
}

/* Few rows of x (token-by-token decoding): no float tile; for each block of rows of W that
 * share their parameters (bk rows, or all K when the parameters do not depend on k),
 * acc[n] = sum_k x[k] * float(W[k, n] - zp) (kiln_wo_rows_isa, exact differences), then
 * y[n] += scale * acc[n]. Columns [n0, n1), n1 - n0 <= FEW_COLS; acc: FEW_COLS floats, yc:
 * 2 * FEW_COLS floats, zr: FEW_COLS int32. */
static void wo_few_rows(const struct wo_job *j, size_t n0, size_t n1, float *acc, float *yc, int32_t *zr)
{
    const struct wo_params *P = j->P;
    size_t nw = n1 - n0, blk = P->rs ? P->bk : P->K;
    for (size_t m = 0; m < j->M; m++) {
        const float *x = j->x + m * P->K;
        memset(yc, 0, nw * sizeof *yc);
        for (size_t k0 = 0; k0 < P->K; k0 += blk) {
            size_t kb = P->K - k0 < blk ? P->K - k0 : blk, rb = (k0 / P->bk) * P->rs;
            /* the block's zero points and scales for columns n0.. (p = rb + (n / bn) * cs) */
            const int32_t *zb = NULL;
            const float *sb = NULL;
            if (P->bn == 1 && P->cs == 1) { /* one per column: the arrays themselves */
                zb = P->zi ? P->zi + rb + n0 : NULL;
                sb = P->s + rb + n0;
            } else {
                for (size_t n = n0; n < n1; n++) {
                    size_t p = rb + (n / P->bn) * P->cs;
                    if (P->zi) zr[n - n0] = P->zi[p];
                    acc[n - n0] = P->s[p]; /* the scales, moved to yc's side below */
                }
                zb = P->zi ? zr : NULL;
            }
            float *sc = yc + FEW_COLS; /* scratch for the gathered scales */
            if (!sb) {
                memcpy(sc, acc, nw * sizeof *sc);
                sb = sc;
            }
            memset(acc, 0, nw * sizeof *acc);
            KILN_ISA_DISPATCH(kiln_wo_rows_isa, (acc, x + k0, (const uint8_t *)j->w + k0 * P->N + n0, P->N,
                                                 P->kind == KILN_DQ_I8, zb, kb, nw));
            for (size_t i = 0; i < nw; i++) yc[i] += sb[i] * acc[i];
        }
        memcpy(j->y + m * P->N + n0, yc, nw * sizeof *yc);
    }
}

static void wo_slices(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    const struct wo_job *j = ctx;
    const struct wo_params *P = j->P;
    for (size_t i = i0; i < i1; i++) {
        size_t s0 = i * j->per, s1 = s0 + j->per < P->N ? s0 + j->per : P->N;
        float *t = j->tiles + i * KTILE * NTILE;
        if (j->M <= FEW_ROWS) { /* whole rows of the slice: W streams in order */
            for (size_t n0 = s0; n0 < s1; n0 += FEW_COLS)
                wo_few_rows(j, n0, n0 + FEW_COLS < s1 ? n0 + FEW_COLS : s1, t, t + FEW_COLS,
                            (int32_t *)(t + 3 * FEW_COLS));
        }
        for (size_t n0 = s0; n0 < s1 && j->M > FEW_ROWS; n0 += NTILE) {
            size_t n1 = n0 + NTILE < s1 ? n0 + NTILE : s1;
            for (size_t k0 = 0; k0 < P->K; k0 += KTILE) {
                size_t kb = P->K - k0 < KTILE ? P->K - k0 : KTILE;
                wo_tile(P, j->w, k0, kb, n0, n1, t);
                kiln_sgemm(false, false, j->M, n1 - n0, kb, 1.0f, j->x + k0, P->K, t, n1 - n0, k0 ? 1.0f : 0.0f,
                           j->y + n0, P->N);
            }
        }
        size_t n0 = s0, n1 = s1;
        if (j->bias)
            for (size_t r = 0; r < j->M; r++) {
                float *row = j->y + r * P->N;
                for (size_t n = n0; n < n1; n++) row[n] = row[n] + j->bias[n];
            }
    }
}

static kiln_status wo_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, wo_prepare, wo_run);
    const struct wo_state *st = k->state;
    const struct kiln_tensor *x, *w, *s, *z = kiln_in(k, 3), *bias = kiln_in(k, 4);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &w));
    KILN_TRY(kiln_in_req(k, 2, &s));
    struct wo_params Pl;
    const struct wo_params *P = &st->P;
    if (!st->ready || w->data != st->w) {
        KILN_TRY(wo_layout(k, st, w, s, z, &Pl, run_alloc, k));
        P = &Pl;
    }
    char sx[200];
    if (x->dtype != KILN_DTYPE_F32 || x->rank < 2 || (size_t)x->dims[x->rank - 1] != P->K)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "x is %s %s; expected float32 of rank >= 2 with %zu columns",
                          kiln_dtype_name(x->dtype), kiln_shape_str(x->rank, x->dims, sx, sizeof sx), P->K);
    if (bias && (bias->dtype != KILN_DTYPE_F32 || kiln_tensor_numel(bias) != P->N))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "bias is %s with %zu elements; expected float32 with %zu",
                          kiln_dtype_name(bias->dtype), kiln_tensor_numel(bias), P->N);
    int64_t od[KILN_MAX_RANK];
    memcpy(od, x->dims, sizeof od[0] * (size_t)x->rank);
    od[x->rank - 1] = (int64_t)P->N;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, x->rank, od, &y));
    size_t M = P->K ? kiln_tensor_numel(x) / P->K : 0;
    if (!M || !P->N) return KILN_OK;
    if (!P->K) {
        memset(y->data, 0, M * P->N * sizeof(float));
        return KILN_OK;
    }
    size_t t = (size_t)kiln_pool_threads(k->pool), per = (P->N + t - 1) / t;
    per = (per + 15) / 16 * 16;
    size_t n_sl = (P->N + per - 1) / per;
    struct wo_job j = {P, w->data, x->data, bias ? bias->data : NULL, y->data, NULL, M, per};
    KILN_TRY(kiln_scratch(k, n_sl * KTILE * NTILE * sizeof(float), (void **)&j.tiles));
    kiln_pool_for(k->pool, n_sl, 1, wo_slices, &j);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_quant_wo[] = {
    /* kiln.DequantMatMul (docs/fused-ops.md): weight-only quantized MatMul */
    {"DequantMatMul", "kiln", 1, 0, wo_run, wo_prepare, 0},
    {0},
};
