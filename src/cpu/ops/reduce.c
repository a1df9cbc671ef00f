/* src/cpu/ops/reduce.c: ONNX reductions and ArgMax/ArgMin, every opset version.
 *
 * ReduceSum (1, 11, 13), ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare (1, 11,
 * 13, 18; Max/Min also 12 and 20), ArgMax/ArgMin (1, 11, 12, 13).
 *
 * Axes come from the `axes` attribute before opset 13 (ReduceSum) / 18 (the others) and
 * from the optional input 1 from then on. No axes means "all axes", except that with
 * noop_with_empty_axes=1 nothing is reduced and each output element is the op applied to
 * one input element (ReduceSumSquare gives x^2, ReduceL1 |x|, as the ONNX reference
 * does). Reducing an empty set gives the op's identity: 0 for sums, 1 for ReduceProd,
 * -inf/+inf (or the integer type's min/max) for ReduceMax/ReduceMin, -inf for
 * ReduceLogSum/ReduceLogSumExp, NaN for ReduceMean (0/0, as numpy gives).
 *
 * Floats (float16/bfloat16 included) accumulate in double, float32 and float64 straight from
 * the tensor (cpu/isa/reduce.c: sums carry at most (n/32 + 6) * 2^-53 * sum |x| of error
 * before the final rounding, cpu/reduce_isa.h), the others converted a block at a time.
 * Integers accumulate in 64 bits: sums and products wrap modulo 2^64 before the cast back to
 * the tensor's type (never signed overflow), max/min compare as signed or unsigned as the
 * type is; ReduceL2, ReduceLogSum and ReduceLogSumExp of integers are computed in double and
 * truncated, as the reference's astype does. NaN propagates through ReduceMax/ReduceMin as
 * numpy does.
 *
 * The input is never copied nor converted whole: see the reduction engine below for how it
 * is walked (row folds, column folds, stride iterator) and split over threads (results do
 * not depend on the thread count).
 *
 * Prepare decodes the attributes (keepdims, axes, noop_with_empty_axes; axis and
 * select_last_index for ArgMax/ArgMin) once; axes are checked against the input's rank at
 * run time, as the rank may differ from run to run.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/reduce_isa.h"
#include "cpu/tensor_util.h"

/* Smallest and largest value of an integer/bool dtype, as int64 (uint64's max is stored
 * as its bit pattern, -1). */
static void int_limits(kiln_dtype dt, int64_t *lo, int64_t *hi)
{
    switch (dt) {
    case KILN_DTYPE_BOOL: *lo = 0; *hi = 1; break;
    case KILN_DTYPE_I8: *lo = INT8_MIN; *hi = INT8_MAX; break;
    case KILN_DTYPE_U8: *lo = 0; *hi = UINT8_MAX; break;
    case KILN_DTYPE_I16: *lo = INT16_MIN; *hi = INT16_MAX; break;
    case KILN_DTYPE_U16: *lo = 0; *hi = UINT16_MAX; break;
    case KILN_DTYPE_I32: *lo = INT32_MIN; *hi = INT32_MAX; break;
    case KILN_DTYPE_U32: *lo = 0; *hi = UINT32_MAX; break;
    case KILN_DTYPE_U64: *lo = 0; *hi = -1; break;
    default: *lo = INT64_MIN; *hi = INT64_MAX; break;
    }
}

/* ------------------------------------------------------------------ reduction engine */

/* How the input folds: after dropping size-1 dims and merging neighbours of the same status,
 * the innermost merged dim (s elements, contiguous) is either reduced (case 1: each output
 * folds rows of s contiguous elements, `row` folds) or kept (case 2: a block of up to RED_CB
 * outputs folds one segment of each reduced row, `column` folds). The other dims are walked
 * with a stride iterator: kept ones (ksize/kstride) pick the output group, reduced ones
 * (rsize/rstride) the rows folded into it.
 *
 * Each group's reduction is split into chunks of RED_CH elements (case 1) or of rows worth
 * about RED_CH elements (case 2); chunks fold into partial accumulators that are then
 * combined in chunk order. The chunking depends only on the shapes, and every (group, chunk)
 * unit is computed alone, so splitting the units over threads never changes a result. With
 * one chunk per group (the usual case) a unit folds, finishes and stores its outputs at once
 * with no partials array; with more, the partials take one accumulator per chunk per output,
 * at most 1/1024 of the input's elements. The input is never copied: float32 and float64 are
 * folded in place (cpu/isa/reduce.c), other types are converted RED_CB elements at a time
 * into the unit's stack buffer. */
#define RED_CH ((size_t)1 << 18)
#define RED_CB 256

enum red_acc { ACC_F, ACC_I, ACC_U }; /* double; int64 wrapping, compared signed / unsigned */

struct red_plan {
    int nk, nr;
    size_t ksize[KILN_MAX_RANK], kstride[KILN_MAX_RANK];
    size_t rsize[KILN_MAX_RANK], rstride[KILN_MAX_RANK];
    bool inner_red;
    size_t s;      /* the innermost merged dim */
    size_t rows;   /* product of rsize */
    size_t width;  /* accumulators per group: 1 (case 1), min(s, RED_CB) (case 2) */
    size_t nblk;   /* column blocks per kept position: 1 (case 1), ceil(s / RED_CB) */
    size_t groups; /* product of ksize, times nblk */
    size_t chunk;  /* elements (case 1) or rows (case 2) per chunk */
    size_t nchunk; /* chunks per group, >= 1 */
};

static size_t ceil_div(size_t a, size_t b) { return a / b + (a % b != 0); }

static void red_plan_init(struct red_plan *pl, int rank, const int64_t *dims, const bool *reduced)
{
    size_t size[KILN_MAX_RANK];
    bool red[KILN_MAX_RANK];
    int nd = 0;
    for (int d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        if (nd > 0 && red[nd - 1] == reduced[d]) {
            size[nd - 1] *= (size_t)dims[d];
        } else {
            size[nd] = (size_t)dims[d];
            red[nd] = reduced[d];
            nd++;
        }
    }
    if (nd == 0) {
        size[0] = 1;
        red[0] = false;
        nd = 1;
    }
    size_t stride[KILN_MAX_RANK], st = 1;
    for (int d = nd - 1; d >= 0; d--) {
        stride[d] = st;
        st *= size[d];
    }
    memset(pl, 0, sizeof *pl);
    pl->s = size[nd - 1];
    pl->inner_red = red[nd - 1];
    pl->rows = 1;
    size_t kept = 1;
    for (int d = 0; d < nd - 1; d++) {
        if (red[d]) {
            pl->rsize[pl->nr] = size[d];
            pl->rstride[pl->nr++] = stride[d];
            pl->rows *= size[d];
        } else {
            pl->ksize[pl->nk] = size[d];
            pl->kstride[pl->nk++] = stride[d];
            kept *= size[d];
        }
    }
    if (pl->inner_red) {
        pl->width = 1;
        pl->nblk = 1;
        pl->chunk = RED_CH;
        pl->nchunk = pl->rows * pl->s > RED_CH ? ceil_div(pl->rows * pl->s, RED_CH) : 1;
    } else {
        pl->width = pl->s < RED_CB ? pl->s : RED_CB;
        pl->nblk = ceil_div(pl->s, RED_CB);
        pl->chunk = RED_CH / pl->width;
        pl->nchunk = pl->rows > pl->chunk ? ceil_div(pl->rows, pl->chunk) : 1;
    }
    pl->groups = kept * pl->nblk;
}

/* Input offset of kept position kp (row-major over ksize). */
static size_t kept_offset(const struct red_plan *pl, size_t kp)
{
    size_t off = 0;
    for (int d = pl->nk - 1; d >= 0; d--) {
        off += (kp % pl->ksize[d]) * pl->kstride[d];
        kp /= pl->ksize[d];
    }
    return off;
}

/* A position in the reduced rows: index per reduced dim and the input offset. */
struct row_it {
    size_t idx[KILN_MAX_RANK];
    size_t off;
};

static void row_it_at(const struct red_plan *pl, struct row_it *it, size_t row)
{
    it->off = 0;
    for (int d = pl->nr - 1; d >= 0; d--) {
        it->idx[d] = row % pl->rsize[d];
        it->off += it->idx[d] * pl->rstride[d];
        row /= pl->rsize[d];
    }
}

static void row_it_next(const struct red_plan *pl, struct row_it *it)
{
    for (int d = pl->nr - 1; d >= 0; d--) {
        it->off += pl->rstride[d];
        if (++it->idx[d] < pl->rsize[d]) return;
        it->off -= pl->rstride[d] * pl->rsize[d];
        it->idx[d] = 0;
    }
}

/* Integer folds, row (into *acc) or column (acc[j]); sums and products wrap modulo 2^64. */
static void ifold(const int64_t *x, size_t n, int op, bool uns, bool row, int64_t *acc)
{
#define IADD(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define IMUL(a, b) ((int64_t)((uint64_t)(a) * (uint64_t)(b)))
#define IABS(v) ((v) < 0 && !uns ? (int64_t)(0 - (uint64_t)(v)) : (v))
#define IGT(a, b) (uns ? (uint64_t)(a) > (uint64_t)(b) : (a) > (b))
#define ILOOP(EXPR)                                                                            \
    do {                                                                                       \
        if (row) {                                                                             \
            int64_t a_ = *acc;                                                                 \
            for (size_t j = 0; j < n; j++) {                                                   \
                int64_t *a = &a_, v = x[j];                                                    \
                EXPR;                                                                          \
            }                                                                                  \
            *acc = a_;                                                                         \
        } else {                                                                               \
            for (size_t j = 0; j < n; j++) {                                                   \
                int64_t *a = acc + j, v = x[j];                                                \
                EXPR;                                                                          \
            }                                                                                  \
        }                                                                                      \
    } while (0)
    switch (op) {
    case KILN_RED_SUM: ILOOP(*a = IADD(*a, v)); break;
    case KILN_RED_ASUM: ILOOP(*a = IADD(*a, IABS(v))); break;
    case KILN_RED_SQSUM: ILOOP(*a = IADD(*a, IMUL(v, v))); break;
    case KILN_RED_PROD: ILOOP(*a = IMUL(*a, v)); break;
    case KILN_RED_MAX: ILOOP(if (IGT(v, *a)) *a = v); break;
    case KILN_RED_MIN: ILOOP(if (IGT(*a, v)) *a = v); break;
    default: break;
    }
#undef ILOOP
}

/* One reduction pass: op over the plan, from x into y (or, with to_ref, the combined values
 * into to_ref[], for LogSumExp's shift). */
struct red_job {
    const struct red_plan *pl;
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    enum red_op_final { F_NONE, F_MEAN, F_SQRT, F_LOG, F_LOGREF } fin;
    int op;                 /* KILN_RED_* */
    enum red_acc acc;
    int64_t iinit;          /* identity of ACC_I / ACC_U */
    double count;           /* elements folded into each output (MEAN) */
    const double *ref;      /* EXPSUM's shift per output */
    double *to_ref;
    void *partials;         /* groups * nchunk * width accumulators, when nchunk > 1 */
    void (*row32)(const float *, size_t, int, double, double *);
    void (*row64)(const double *, size_t, int, double, double *);
    void (*col32)(const float *, size_t, int, const double *, double *);
    void (*col64)(const double *, size_t, int, const double *, double *);
};

static double fident(int op)
{
    return op == KILN_RED_PROD ? 1 : op == KILN_RED_MAX ? -INFINITY : op == KILN_RED_MIN ? INFINITY : 0;
}

/* Folds input elements [off, off + n) into acc (row: one accumulator; column: acc[0..n)).
 * ref: the shift (row) or shifts (column) of EXPSUM. */
static void fold_seg(const struct red_job *j, size_t off, size_t n, bool row, const double *ref,
                     void *acc)
{
    const kiln_dtype dt = j->x->dtype;
    const void *x = j->x->data;
    if (j->acc == ACC_F) {
        double r0 = ref && row ? *ref : 0;
        if (dt == KILN_DTYPE_F32) {
            if (row) j->row32((const float *)x + off, n, j->op, r0, acc);
            else j->col32((const float *)x + off, n, j->op, ref, acc);
            return;
        }
        if (dt == KILN_DTYPE_F64) {
            if (row) j->row64((const double *)x + off, n, j->op, r0, acc);
            else j->col64((const double *)x + off, n, j->op, ref, acc);
            return;
        }
        double buf[RED_CB];
        for (size_t i = 0; i < n; i += RED_CB) {
            size_t m = n - i < RED_CB ? n - i : RED_CB;
            kiln_to_f64_n(dt, x, off + i, m, buf);
            if (row) j->row64(buf, m, j->op, r0, acc);
            else j->col64(buf, m, j->op, ref ? ref + i : NULL, (double *)acc + i);
        }
        return;
    }
    const bool uns = j->acc == ACC_U;
    if (dt == KILN_DTYPE_I64 || dt == KILN_DTYPE_U64) {
        ifold((const int64_t *)x + off, n, j->op, uns, row, acc);
        return;
    }
    int64_t buf[RED_CB];
    for (size_t i = 0; i < n; i += RED_CB) {
        size_t m = n - i < RED_CB ? n - i : RED_CB;
        kiln_to_i64_n(dt, x, off + i, m, buf);
        ifold(buf, m, j->op, uns, row, row ? acc : (int64_t *)acc + i);
    }
}

/* Group g's output elements: the first one and how many. */
static void group_outs(const struct red_plan *pl, size_t g, size_t *o0, size_t *w)
{
    if (pl->inner_red) {
        *o0 = g;
        *w = 1;
        return;
    }
    size_t kp = g / pl->nblk, c0 = (g % pl->nblk) * RED_CB;
    *o0 = kp * pl->s + c0;
    *w = pl->s - c0 < RED_CB ? pl->s - c0 : RED_CB;
}

static void acc_init(const struct red_job *j, void *acc, size_t w)
{
    if (j->acc == ACC_F) {
        double v = fident(j->op);
        for (size_t i = 0; i < w; i++) ((double *)acc)[i] = v;
    } else {
        for (size_t i = 0; i < w; i++) ((int64_t *)acc)[i] = j->iinit;
    }
}

/* Folds chunk c of group g into acc (w accumulators, initialized). */
static void fold_unit(const struct red_job *j, size_t g, size_t c, void *acc)
{
    const struct red_plan *pl = j->pl;
    size_t o0, w;
    group_outs(pl, g, &o0, &w);
    struct row_it it;
    if (pl->inner_red) {
        const size_t total = pl->rows * pl->s, base = kept_offset(pl, g);
        size_t t = c * pl->chunk, t1 = t + pl->chunk < total ? t + pl->chunk : total;
        if (t >= t1) return;
        size_t col = t % pl->s;
        row_it_at(pl, &it, t / pl->s);
        const double *ref = j->ref ? j->ref + o0 : NULL;
        while (t < t1) {
            size_t len = pl->s - col < t1 - t ? pl->s - col : t1 - t;
            fold_seg(j, base + it.off + col, len, true, ref, acc);
            t += len;
            col = 0;
            row_it_next(pl, &it);
        }
    } else {
        const size_t kp = g / pl->nblk, base = kept_offset(pl, kp) + (g % pl->nblk) * RED_CB;
        size_t r = c * pl->chunk, r1 = r + pl->chunk < pl->rows ? r + pl->chunk : pl->rows;
        if (r >= r1) return;
        row_it_at(pl, &it, r);
        const double *ref = j->ref ? j->ref + o0 : NULL;
        for (; r < r1; r++) {
            fold_seg(j, base + it.off, w, false, ref, acc);
            row_it_next(pl, &it);
        }
    }
}

/* Combines the nc partials of group g (parts[c * stride + i]) in order, finishes the op and
 * stores the group's outputs. */
static void finish_group(const struct red_job *j, size_t g, const void *parts, size_t nc,
                         size_t stride)
{
    size_t o0, w;
    group_outs(j->pl, g, &o0, &w);
    if (j->acc == ACC_F) {
        double v[RED_CB];
        const double *p = parts;
        for (size_t i = 0; i < w; i++) v[i] = p[i];
        for (size_t c = 1; c < nc; c++) {
            const double *q = p + c * stride;
            for (size_t i = 0; i < w; i++) {
                switch (j->op) {
                case KILN_RED_PROD: v[i] *= q[i]; break;
                case KILN_RED_MAX: if (q[i] > v[i] || isnan(q[i])) v[i] = isnan(v[i]) ? v[i] : q[i]; break;
                case KILN_RED_MIN: if (q[i] < v[i] || isnan(q[i])) v[i] = isnan(v[i]) ? v[i] : q[i]; break;
                default: v[i] += q[i]; break;
                }
            }
        }
        for (size_t i = 0; i < w; i++) {
            switch (j->fin) {
            case F_MEAN: v[i] /= j->count; break;
            case F_SQRT: v[i] = sqrt(v[i]); break;
            case F_LOG: v[i] = log(v[i]); break;
            case F_LOGREF: v[i] = log(v[i]) + j->ref[o0 + i]; break;
            default: break;
            }
        }
        if (j->to_ref) {
            memcpy(j->to_ref + o0, v, w * sizeof *v);
            return;
        }
        struct kiln_tensor view = *j->y;
        view.data = (char *)j->y->data + o0 * kiln_dtype_size(view.dtype);
        kiln_store_f64(&view, v, w);
        return;
    }
    int64_t v[RED_CB];
    const int64_t *p = parts;
    const bool uns = j->acc == ACC_U;
    for (size_t i = 0; i < w; i++) v[i] = p[i];
    for (size_t c = 1; c < nc; c++) {
        const int64_t *q = p + c * stride;
        for (size_t i = 0; i < w; i++) {
            switch (j->op) {
            case KILN_RED_PROD: v[i] = IMUL(v[i], q[i]); break;
            case KILN_RED_MAX: if (IGT(q[i], v[i])) v[i] = q[i]; break;
            case KILN_RED_MIN: if (IGT(v[i], q[i])) v[i] = q[i]; break;
            default: v[i] = IADD(v[i], q[i]); break;
            }
        }
    }
    if (j->fin == F_MEAN) {
        uint64_t cnt = (uint64_t)j->count;
        for (size_t i = 0; i < w; i++) {
            if (cnt == 0) v[i] = 0;
            else if (uns) v[i] = (int64_t)((uint64_t)v[i] / cnt);
            else v[i] = v[i] / (int64_t)cnt;
        }
    }
    struct kiln_tensor view = *j->y;
    view.data = (char *)j->y->data + o0 * kiln_dtype_size(view.dtype);
    kiln_store_i64(&view, v, w);
}

static void red_units(void *ctx, size_t begin, size_t end, int worker)
{
    const struct red_job *j = ctx;
    const struct red_plan *pl = j->pl;
    (void)worker;
    union {
        double d[RED_CB];
        int64_t i[RED_CB];
    } acc;
    for (size_t u = begin; u < end; u++) {
        size_t g = u / pl->nchunk, c = u % pl->nchunk, o0, w;
        group_outs(pl, g, &o0, &w);
        void *a = pl->nchunk > 1 ? (char *)j->partials + (g * pl->nchunk + c) * pl->width * 8
                                 : (void *)&acc;
        acc_init(j, a, w);
        fold_unit(j, g, c, a);
        if (pl->nchunk == 1) finish_group(j, g, a, 1, 0);
    }
}

static void red_finish(void *ctx, size_t begin, size_t end, int worker)
{
    const struct red_job *j = ctx;
    const struct red_plan *pl = j->pl;
    (void)worker;
    for (size_t g = begin; g < end; g++)
        finish_group(j, g, (char *)j->partials + g * pl->nchunk * pl->width * 8, pl->nchunk,
                     pl->width);
}

/* Runs job j over the pool: units, then (with several chunks per group) the combination. */
static kiln_status red_run_job(struct kiln_kctx *k, struct red_job *j)
{
    const struct red_plan *pl = j->pl;
    j->row32 = KILN_ISA_SELECT(kiln_red_row_f32_isa);
    j->row64 = KILN_ISA_SELECT(kiln_red_row_f64_isa);
    j->col32 = KILN_ISA_SELECT(kiln_red_col_f32_isa);
    j->col64 = KILN_ISA_SELECT(kiln_red_col_f64_isa);
    if (pl->nchunk > 1)
        KILN_TRY(kiln_scratch(k, pl->groups * pl->nchunk * pl->width * 8, &j->partials));
    size_t work = pl->inner_red ? (pl->rows * pl->s < pl->chunk ? pl->rows * pl->s : pl->chunk)
                                : (pl->rows < pl->chunk ? pl->rows : pl->chunk) * pl->width;
    kiln_pool_for(k->pool, pl->groups * pl->nchunk, kiln_pool_grain(work + 1, 16384), red_units, j);
    if (pl->nchunk > 1)
        kiln_pool_for(k->pool, pl->groups, kiln_pool_grain(pl->nchunk * pl->width, 16384),
                      red_finish, j);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Reduce* ops */

enum red_op { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD, R_L1, R_L2, R_LOGSUM, R_LOGSUMEXP, R_SUMSQ };

/* The attributes of every Reduce* op (the `axes` list is the node's; read only before the
 * opset that moves axes to input 1). */
struct reduce_state {
    bool keepdims;
    bool noop_with_empty_axes;
    const int64_t *axes;
    size_t n_axes;
};

static kiln_status reduce_prepare(struct kiln_kprep *p)
{
    struct reduce_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->keepdims = kiln_attr_i(&p->kc, "keepdims", 1) != 0;
    s->noop_with_empty_axes = kiln_attr_i(&p->kc, "noop_with_empty_axes", 0) != 0;
    s->n_axes = kiln_attr_ints(&p->kc, "axes", &s->axes);
    p->state = s;
    return KILN_OK;
}

/* Reads the axes (attribute or input 1, as the opset says) into reduced[]. Returns with
 * *none = true when no axes were given. */
static kiln_status read_axes(struct kiln_kctx *k, const struct reduce_state *rs, int rank,
                             bool axes_from_input, bool *reduced, bool *none)
{
    const int64_t *av = NULL;
    size_t na = 0;
    int64_t *buf = NULL;
    for (int d = 0; d < rank; d++) reduced[d] = false;
    if (axes_from_input) {
        const struct kiln_tensor *at = kiln_in(k, 1);
        if (at) {
            if (!kiln_dtype_is_int(at->dtype) || at->rank > 1)
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "input 'axes' is %s of rank %d; expected a 1-D int64 tensor",
                                  kiln_dtype_name(at->dtype), at->rank);
            na = kiln_tensor_numel(at);
            if (na > 0) {
                if (na > (size_t)KILN_MAX_RANK * 2)
                    return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'axes' has %zu entries for "
                                      "a rank-%d input", na, rank);
                buf = kiln_malloc(na * sizeof *buf);
                if (!buf) return kiln_kfail(k, KILN_E_NOMEM, "out of memory reading axes");
                for (size_t i = 0; i < na; i++) buf[i] = kiln_tensor_get_i64(at, i);
                av = buf;
            }
        }
    } else {
        na = rs->n_axes;
        av = rs->axes;
    }
    *none = na == 0;
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < na; i++) {
        int a;
        if ((st = kiln_norm_axis(k, av[i], rank, "axis", &a))) break;
        if (reduced[a]) {
            st = kiln_kfail(k, KILN_E_INVALID_ARG, "axis %lld is listed twice", (long long)av[i]);
            break;
        }
        reduced[a] = true;
    }
    kiln_free(buf);
    return st;
}

static bool red_dtype_ok(enum red_op op, kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_BF16:
    case KILN_DTYPE_I32: case KILN_DTYPE_I64: case KILN_DTYPE_U32: case KILN_DTYPE_U64:
        return true;
    case KILN_DTYPE_I8: case KILN_DTYPE_U8:
    case KILN_DTYPE_I16: case KILN_DTYPE_U16: /* not in the spec, but harmless */
        return true;
    case KILN_DTYPE_BOOL:
        return op == R_MAX || op == R_MIN;
    default:
        return false;
    }
}

/* The shared body of every Reduce* op. axes_input_since: the first version that takes
 * axes as an input. */
static kiln_status reduce_run(struct kiln_kctx *k, enum red_op op, int axes_input_since)
{
    const struct reduce_state *rs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!red_dtype_ok(op, x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'data' is %s; this op takes numeric "
                          "types%s", kiln_dtype_name(x->dtype),
                          (op == R_MAX || op == R_MIN) ? " and bool" : "");
    const int rank = x->rank;
    bool reduced[KILN_MAX_RANK];
    bool none = false;
    const bool from_input = k->opset >= axes_input_since;
    KILN_TRY(read_axes(k, rs, rank, from_input, reduced, &none));
    const bool keepdims = rs->keepdims;
    if (none) {
        const bool noop = from_input && rs->noop_with_empty_axes;
        for (int d = 0; d < rank; d++) reduced[d] = !noop;
    }

    int64_t odims[KILN_MAX_RANK];
    int orank = 0;
    size_t count = 1; /* elements folded into each output */
    for (int d = 0; d < rank; d++) {
        if (reduced[d]) {
            count *= (size_t)x->dims[d];
            if (keepdims) odims[orank++] = 1;
        } else {
            odims[orank++] = x->dims[d];
        }
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, orank, odims, &y));
    const size_t n = kiln_tensor_numel(x), on = kiln_tensor_numel(y);
    if (on == 0) return KILN_OK;

    struct red_plan pl;
    red_plan_init(&pl, rank, x->dims, reduced);
    const bool as_int = kiln_dtype_is_int(x->dtype) || x->dtype == KILN_DTYPE_BOOL;
    const bool int_path = as_int && op != R_L2 && op != R_LOGSUM && op != R_LOGSUMEXP;
    (void)n;
    struct red_job j = {.pl = &pl, .x = x, .y = y, .fin = F_NONE, .count = (double)count};
    j.acc = !int_path ? ACC_F : x->dtype == KILN_DTYPE_U64 ? ACC_U : ACC_I;
    switch (op) {
    case R_SUM: j.op = KILN_RED_SUM; break;
    case R_MEAN: j.op = KILN_RED_SUM; j.fin = F_MEAN; break;
    case R_MAX: j.op = KILN_RED_MAX; break;
    case R_MIN: j.op = KILN_RED_MIN; break;
    case R_PROD: j.op = KILN_RED_PROD; break;
    case R_L1: j.op = KILN_RED_ASUM; break;
    case R_L2: j.op = KILN_RED_SQSUM; j.fin = F_SQRT; break;
    case R_LOGSUM: j.op = KILN_RED_SUM; j.fin = F_LOG; break;
    case R_LOGSUMEXP: j.op = KILN_RED_EXPSUM; j.fin = F_LOGREF; break;
    case R_SUMSQ: j.op = KILN_RED_SQSUM; break;
    }
    if (j.acc != ACC_F) {
        int64_t lo, hi;
        int_limits(x->dtype, &lo, &hi);
        j.iinit = j.op == KILN_RED_PROD ? 1 : j.op == KILN_RED_MAX ? lo : j.op == KILN_RED_MIN ? hi : 0;
    }
    if (op == R_LOGSUMEXP) {
        /* Shift by the max so exp cannot overflow; an infinite max shifts by 0 so that
         * -inf inputs give -inf and +inf gives +inf instead of NaN. */
        double *ref;
        KILN_TRY(kiln_scratch(k, on * sizeof *ref, (void **)&ref));
        struct red_job mj = j;
        mj.op = KILN_RED_MAX;
        mj.fin = F_NONE;
        mj.to_ref = ref;
        KILN_TRY(red_run_job(k, &mj));
        for (size_t i = 0; i < on; i++)
            if (isinf(ref[i])) ref[i] = 0;
        j.ref = ref;
    }
    return red_run_job(k, &j);
}

/* One run function per op: op, and the first version taking axes as input 1. */
#define REDUCE_OP(fn, op, since)                                                               \
    static kiln_status fn(struct kiln_kctx *k)                                                 \
    {                                                                                          \
        if (!k->state) return kiln_cpu_run_unprepared(k, reduce_prepare, fn);                  \
        return reduce_run(k, op, since);                                                       \
    }

REDUCE_OP(reduce_sum_run, R_SUM, 13)
REDUCE_OP(reduce_mean_run, R_MEAN, 18)
REDUCE_OP(reduce_max_run, R_MAX, 18)
REDUCE_OP(reduce_min_run, R_MIN, 18)
REDUCE_OP(reduce_prod_run, R_PROD, 18)
REDUCE_OP(reduce_l1_run, R_L1, 18)
REDUCE_OP(reduce_l2_run, R_L2, 18)
REDUCE_OP(reduce_logsum_run, R_LOGSUM, 18)
REDUCE_OP(reduce_logsumexp_run, R_LOGSUMEXP, 18)
REDUCE_OP(reduce_sumsq_run, R_SUMSQ, 18)

#undef REDUCE_OP

/* ------------------------------------------------------------------ ArgMax / ArgMin */

/* For each (outer, inner) position of x viewed as [outer, len, inner], the index along the
 * axis of the max (or min) element: the first one, or the last with select_last. A NaN
 * counts as larger and smaller than everything (numpy's argmax/argmin return the first
 * NaN). Units are (outer, block of up to ARG_B inner positions), each scanning its
 * positions along the axis with per-position bests on the stack, elements converted to
 * double (float types) or int64 (integers, bool) RED_CB at a time: no copy of the input. */
#define ARG_B 64

struct arg_job {
    const struct kiln_tensor *x;
    int64_t *y;
    size_t len, inner, nblk;
    bool want_max, last;
    int cls; /* 0: double, 1: int64, 2: uint64 */
};

#define ARG_TAKE(T, ISNAN, v, best, bn)                                                        \
    (ISNAN(v) ? (!(bn) || j->last)                                                             \
     : (bn)   ? false                                                                          \
     : j->want_max ? (j->last ? (T)(v) >= (T)(best) : (T)(v) > (T)(best))                     \
                   : (j->last ? (T)(v) <= (T)(best) : (T)(v) < (T)(best)))
#define ARG_NAN_F(v) isnan(v)
#define ARG_NAN_NONE(v) 0

/* Updates slot i (best value b[i], its index bi[i], NaN flag bn[i]) with element v at index
 * t along the axis. */
#define ARG_STEP(T, ISNAN, b, bi, bn, i, v, t)                                                 \
    do {                                                                                       \
        if ((t) == 0 || ARG_TAKE(T, ISNAN, v, b[i], bn[i])) {                                  \
            b[i] = (v);                                                                        \
            bi[i] = (int64_t)(t);                                                              \
            bn[i] = ISNAN(v);                                                                  \
        }                                                                                      \
    } while (0)

#define DEFINE_ARG_UNIT(NAME, A, T, ISNAN, LOAD)                                               \
    static void NAME(const struct arg_job *j, size_t a, size_t blk)                            \
    {                                                                                          \
        const size_t len = j->len, inner = j->inner, b0 = blk * ARG_B;                         \
        const size_t w = inner - b0 < ARG_B ? inner - b0 : ARG_B;                              \
        const size_t base = a * len * inner + b0;                                              \
        A best[ARG_B], buf[RED_CB];                                                            \
        int64_t bi[ARG_B];                                                                     \
        bool bn[ARG_B];                                                                        \
        if (inner == 1) {                                                                      \
            for (size_t t0 = 0; t0 < len; t0 += RED_CB) {                                      \
                size_t m = len - t0 < RED_CB ? len - t0 : RED_CB;                              \
                LOAD(j->x->dtype, j->x->data, base + t0, m, buf);                              \
                for (size_t i = 0; i < m; i++) ARG_STEP(T, ISNAN, best, bi, bn, 0, buf[i], t0 + i); \
            }                                                                                  \
        } else {                                                                               \
            for (size_t t = 0; t < len; t++) {                                                 \
                LOAD(j->x->dtype, j->x->data, base + t * inner, w, buf);                       \
                for (size_t i = 0; i < w; i++) ARG_STEP(T, ISNAN, best, bi, bn, i, buf[i], t); \
            }                                                                                  \
        }                                                                                      \
        memcpy(j->y + a * inner + b0, bi, w * sizeof *bi);                                     \
    }

DEFINE_ARG_UNIT(arg_unit_f, double, double, ARG_NAN_F, kiln_to_f64_n)
DEFINE_ARG_UNIT(arg_unit_i, int64_t, int64_t, ARG_NAN_NONE, kiln_to_i64_n)
DEFINE_ARG_UNIT(arg_unit_u, int64_t, uint64_t, ARG_NAN_NONE, kiln_to_i64_n)

static void arg_units(void *ctx, size_t begin, size_t end, int worker)
{
    const struct arg_job *j = ctx;
    (void)worker;
    for (size_t u = begin; u < end; u++) {
        size_t a = u / j->nblk, blk = u % j->nblk;
        if (j->cls == 0) arg_unit_f(j, a, blk);
        else if (j->cls == 1) arg_unit_i(j, a, blk);
        else arg_unit_u(j, a, blk);
    }
}

struct arg_state {
    bool keepdims;
    bool last; /* select_last_index (opset 12+) */
    int64_t axis;
};

static kiln_status arg_prepare(struct kiln_kprep *p)
{
    struct arg_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->keepdims = kiln_attr_i(&p->kc, "keepdims", 1) != 0;
    s->last = p->kc.opset >= 12 && kiln_attr_i(&p->kc, "select_last_index", 0) != 0;
    s->axis = kiln_attr_i(&p->kc, "axis", 0);
    p->state = s;
    return KILN_OK;
}

static kiln_status arg_run(struct kiln_kctx *k, bool want_max)
{
    const struct arg_state *as = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    const int rank = x->rank;
    const bool keepdims = as->keepdims;
    const bool last = as->last;
    const int r = rank ? rank : 1; /* a scalar acts as shape [1] */
    int axis;
    KILN_TRY(kiln_norm_axis(k, as->axis, r, "attribute 'axis'", &axis));
    /* Real floats, bool and 8- to 64-bit integers (not float8/float4 nor int4/int2). */
    const kiln_dtype dt = x->dtype;
    const bool is_f = kiln_dtype_is_real_float(dt);
    const bool sub_byte = dt == KILN_DTYPE_I4 || dt == KILN_DTYPE_U4 || dt == KILN_DTYPE_I2 ||
                          dt == KILN_DTYPE_U2;
    if (!is_f && dt != KILN_DTYPE_BOOL && (!kiln_dtype_is_int(dt) || sub_byte))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'data' is %s; expected a numeric type",
                          kiln_dtype_name(x->dtype));
    size_t outer = 1, inner = 1, len = rank ? (size_t)x->dims[axis] : 1;
    int64_t odims[KILN_MAX_RANK];
    int orank = 0;
    for (int d = 0; d < rank; d++) {
        if (d < axis) outer *= (size_t)x->dims[d];
        if (d > axis) inner *= (size_t)x->dims[d];
        if (d != axis) odims[orank++] = x->dims[d];
        else if (keepdims) odims[orank++] = 1;
    }
    if (len == 0 && outer * inner > 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'data' has size 0 on axis %lld; the "
                          "arg of an empty set is undefined", (long long)axis);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, orank, odims, &y));
    if (kiln_tensor_numel(y) == 0) return KILN_OK;
    struct arg_job j = {x, y->data, len, inner, (inner + ARG_B - 1) / ARG_B, want_max, last,
                        is_f ? 0 : dt == KILN_DTYPE_U64 ? 2 : 1};
    kiln_pool_for(k->pool, outer * j.nblk, kiln_pool_grain(len * (inner < ARG_B ? inner : ARG_B), 16384),
                  arg_units, &j);
    return KILN_OK;
}

static kiln_status argmax_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, arg_prepare, argmax_run);
    return arg_run(k, true);
}
static kiln_status argmin_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, arg_prepare, argmin_run);
    return arg_run(k, false);
}

const struct kiln_cpu_op kiln_cpu_ops_reduce[] = {
    {"ReduceSum", "", 1, KILN_OPSET_ANY, reduce_sum_run, reduce_prepare, 0},
    {"ReduceMean", "", 1, KILN_OPSET_ANY, reduce_mean_run, reduce_prepare, 0},
    {"ReduceMax", "", 1, KILN_OPSET_ANY, reduce_max_run, reduce_prepare, 0},
    {"ReduceMin", "", 1, KILN_OPSET_ANY, reduce_min_run, reduce_prepare, 0},
    {"ReduceProd", "", 1, KILN_OPSET_ANY, reduce_prod_run, reduce_prepare, 0},
    {"ReduceL1", "", 1, KILN_OPSET_ANY, reduce_l1_run, reduce_prepare, 0},
    {"ReduceL2", "", 1, KILN_OPSET_ANY, reduce_l2_run, reduce_prepare, 0},
    {"ReduceLogSum", "", 1, KILN_OPSET_ANY, reduce_logsum_run, reduce_prepare, 0},
    {"ReduceLogSumExp", "", 1, KILN_OPSET_ANY, reduce_logsumexp_run, reduce_prepare, 0},
    {"ReduceSumSquare", "", 1, KILN_OPSET_ANY, reduce_sumsq_run, reduce_prepare, 0},
    {"ArgMax", "", 1, KILN_OPSET_ANY, argmax_run, arg_prepare, 0},
    {"ArgMin", "", 1, KILN_OPSET_ANY, argmin_run, arg_prepare, 0},
    {0},
};
