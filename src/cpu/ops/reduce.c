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
 * Floats (float16/bfloat16 included) accumulate in double. Integers accumulate in 64 bits:
 * sums and products wrap modulo 2^64 before the cast back to the tensor's type (never
 * signed overflow), max/min compare as signed or unsigned as the type is; ReduceL2,
 * ReduceLogSum and ReduceLogSumExp of integers are computed in double and truncated, as the
 * reference's astype does. NaN propagates through ReduceMax/ReduceMin as numpy does.
 *
 * The reduction walks the input once in memory order. Size-1 dims are dropped and adjacent
 * dims with the same reduced/kept status are merged, so the inner loop runs over the
 * longest contiguous stretch that either folds into one accumulator or adds elementwise
 * to a row of them.
 *
 * Prepare decodes the attributes (keepdims, axes, noop_with_empty_axes; axis and
 * select_last_index for ArgMax/ArgMin) once; axes are checked against the input's rank at
 * run time, as the rank may differ from run to run.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
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

enum red_kind { K_ADD, K_MUL, K_MAX, K_MIN, K_ADDEXP };

/* The input's shape after dropping size-1 dims and merging neighbours of the same status.
 * ostride[d] is the output stride of dim d (0 for reduced dims). nd >= 1. */
struct red_iter {
    int nd;
    size_t size[KILN_MAX_RANK];
    size_t ostride[KILN_MAX_RANK];
};

static void red_iter_init(struct red_iter *it, int rank, const int64_t *dims, const bool *reduced)
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
    size_t os = 1;
    for (int d = nd - 1; d >= 0; d--) {
        it->size[d] = size[d];
        it->ostride[d] = red[d] ? 0 : os;
        if (!red[d]) os *= size[d];
    }
    it->nd = nd;
}

/* Folds x (the whole input, in memory order) into acc (one slot per output element,
 * pre-filled with the identity). K_ADDEXP adds exp(x - ref[o]) and exists for double only.
 * The input must be non-empty. */
#define DEFINE_RED(NAME, T, ISNAN, GT, LT)                                                     \
    static void NAME(const T *x, T *acc, const T *ref, const struct red_iter *it,               \
                     enum red_kind kind)                                                        \
    {                                                                                           \
        size_t idx[KILN_MAX_RANK] = {0};                                                        \
        const int nd = it->nd;                                                                  \
        const size_t s = it->size[nd - 1];                                                      \
        const bool along = it->ostride[nd - 1] == 0;                                            \
        size_t i = 0, o = 0;                                                                    \
        for (;;) {                                                                              \
            const T *xs = x + i;                                                                \
            T *a = acc + o;                                                                     \
            switch (kind) {                                                                     \
            case K_ADD:                                                                         \
                if (along) {                                                                    \
                    T t = *a;                                                                   \
                    for (size_t j = 0; j < s; j++) t += xs[j];                                  \
                    *a = t;                                                                     \
                } else {                                                                        \
                    for (size_t j = 0; j < s; j++) a[j] += xs[j];                               \
                }                                                                               \
                break;                                                                          \
            case K_MUL:                                                                         \
                if (along) {                                                                    \
                    T t = *a;                                                                   \
                    for (size_t j = 0; j < s; j++) t *= xs[j];                                  \
                    *a = t;                                                                     \
                } else {                                                                        \
                    for (size_t j = 0; j < s; j++) a[j] *= xs[j];                               \
                }                                                                               \
                break;                                                                          \
            case K_MAX:                                                                         \
                if (along) {                                                                    \
                    T t = *a;                                                                   \
                    for (size_t j = 0; j < s; j++)                                              \
                        if (GT(xs[j], t) || ISNAN(xs[j])) t = xs[j];                            \
                    *a = t;                                                                     \
                } else {                                                                        \
                    for (size_t j = 0; j < s; j++)                                              \
                        if (GT(xs[j], a[j]) || ISNAN(xs[j])) a[j] = xs[j];                      \
                }                                                                               \
                break;                                                                          \
            case K_MIN:                                                                         \
                if (along) {                                                                    \
                    T t = *a;                                                                   \
                    for (size_t j = 0; j < s; j++)                                              \
                        if (LT(xs[j], t) || ISNAN(xs[j])) t = xs[j];                            \
                    *a = t;                                                                     \
                } else {                                                                        \
                    for (size_t j = 0; j < s; j++)                                              \
                        if (LT(xs[j], a[j]) || ISNAN(xs[j])) a[j] = xs[j];                      \
                }                                                                               \
                break;                                                                          \
            case K_ADDEXP:                                                                      \
                if (along) {                                                                    \
                    double t = (double)*a, r = (double)ref[o];                                  \
                    for (size_t j = 0; j < s; j++) t += exp((double)xs[j] - r);                 \
                    *a = (T)t;                                                                  \
                } else {                                                                        \
                    for (size_t j = 0; j < s; j++)                                              \
                        a[j] = (T)((double)a[j] + exp((double)xs[j] - (double)ref[o + j]));    \
                }                                                                               \
                break;                                                                          \
            }                                                                                   \
            i += s;                                                                             \
            int d = nd - 2;                                                                     \
            for (; d >= 0; d--) {                                                               \
                o += it->ostride[d];                                                            \
                if (++idx[d] < it->size[d]) break;                                              \
                o -= it->ostride[d] * it->size[d];                                              \
                idx[d] = 0;                                                                     \
            }                                                                                   \
            if (d < 0) break;                                                                   \
        }                                                                                       \
    }

#define RED_GT(a, b) ((a) > (b))
#define RED_LT(a, b) ((a) < (b))
#define RED_NAN_F(v) isnan(v)
#define RED_NAN_NONE(v) 0

DEFINE_RED(red_f64, double, RED_NAN_F, RED_GT, RED_LT)
DEFINE_RED(red_i64, int64_t, RED_NAN_NONE, RED_GT, RED_LT)
DEFINE_RED(red_u64, uint64_t, RED_NAN_NONE, RED_GT, RED_LT)

/* Splitting a reduction over the session's threads: when the outermost (merged) dim is
 * kept, its slices fold into disjoint output elements, each in the same order as one pass,
 * so chunks of it run independently (>= ~16K input elements a chunk) with bit-identical
 * results. Otherwise (outermost dim reduced, or a single dim) the fold runs inline. */
struct red_job {
    const void *x;
    void *acc;
    const void *ref;
    const struct red_iter *it;
    size_t slice; /* input elements per index of dim 0 */
    enum red_kind kind;
    int type; /* 0: double, 1: int64, 2: uint64 */
};

static void red_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct red_job *j = ctx;
    struct red_iter sub = *j->it;
    (void)worker;
    sub.size[0] = end - begin;
    size_t xo = begin * j->slice, ao = begin * sub.ostride[0];
    switch (j->type) {
    case 0:
        red_f64((const double *)j->x + xo, (double *)j->acc + ao,
                j->ref ? (const double *)j->ref + ao : NULL, &sub, j->kind);
        break;
    case 1: red_i64((const int64_t *)j->x + xo, (int64_t *)j->acc + ao, NULL, &sub, j->kind); break;
    default:
        red_u64((const uint64_t *)j->x + xo, (uint64_t *)j->acc + ao, NULL, &sub, j->kind);
        break;
    }
}

/* Runs red_f64/red_i64/red_u64 (type 0/1/2) over the whole non-empty input, split over pool
 * where the iteration allows it. */
static void red_par(struct kiln_pool *pool, int type, const void *x, void *acc, const void *ref,
                    const struct red_iter *it, enum red_kind kind)
{
    struct red_job j = {x, acc, ref, it, 1, kind, type};
    for (int d = 1; d < it->nd; d++) j.slice *= it->size[d];
    if (it->nd < 2 || it->ostride[0] == 0) {
        red_chunk(&j, 0, it->size[0], 0);
        return;
    }
    size_t grain = kiln_pool_grain(j.slice, 16384);
    kiln_pool_for(pool, it->size[0], grain, red_chunk, &j);
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

    struct red_iter it;
    red_iter_init(&it, rank, x->dims, reduced);
    const bool as_int = kiln_dtype_is_int(x->dtype) || x->dtype == KILN_DTYPE_BOOL;
    const bool int_path = as_int && op != R_L2 && op != R_LOGSUM && op != R_LOGSUMEXP;
    kiln_status st = KILN_OK;

    if (int_path) {
        int64_t *xi = NULL, *acc = kiln_malloc(on * sizeof *acc);
        if (!acc) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu accumulators", on);
        if (n) {
            st = kiln_load_i64(k, x, "data", &xi);
            if (st) goto int_done;
        }
        const bool is_u64 = x->dtype == KILN_DTYPE_U64;
        int64_t lo, hi, init = 0;
        int_limits(x->dtype, &lo, &hi);
        enum red_kind kind = K_ADD;
        switch (op) {
        case R_PROD: kind = K_MUL; init = 1; break;
        case R_MAX: kind = K_MAX; init = lo; break;
        case R_MIN: kind = K_MIN; init = hi; break;
        case R_L1:
            for (size_t i = 0; i < n; i++)
                if (xi[i] < 0 && !is_u64) xi[i] = (int64_t)(0 - (uint64_t)xi[i]);
            break;
        case R_SUMSQ:
            for (size_t i = 0; i < n; i++) xi[i] = (int64_t)((uint64_t)xi[i] * (uint64_t)xi[i]);
            break;
        default: break;
        }
        for (size_t i = 0; i < on; i++) acc[i] = init;
        if (n) {
            if (kind == K_ADD || kind == K_MUL || is_u64)
                red_par(k->pool, 2, xi, acc, NULL, &it, kind);
            else
                red_par(k->pool, 1, xi, acc, NULL, &it, kind);
        }
        if (op == R_MEAN) {
            for (size_t i = 0; i < on; i++) {
                if (count == 0) acc[i] = 0;
                else if (is_u64) acc[i] = (int64_t)((uint64_t)acc[i] / count);
                else acc[i] = acc[i] / (int64_t)count;
            }
        }
        kiln_store_i64(y, acc, on);
    int_done:
        kiln_free(xi);
        kiln_free(acc);
        return st;
    }

    double *xd = NULL, *acc = kiln_malloc(on * sizeof *acc), *ref = NULL;
    if (!acc) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu accumulators", on);
    if (n) {
        st = kiln_load_f64(k, x, "data", &xd);
        if (st) goto done;
    }
    double init = 0;
    enum red_kind kind = K_ADD;
    switch (op) {
    case R_PROD: kind = K_MUL; init = 1; break;
    case R_MAX: kind = K_MAX; init = -INFINITY; break;
    case R_MIN: kind = K_MIN; init = INFINITY; break;
    case R_L1: for (size_t i = 0; i < n; i++) xd[i] = fabs(xd[i]); break;
    case R_L2:
    case R_SUMSQ: for (size_t i = 0; i < n; i++) xd[i] *= xd[i]; break;
    case R_LOGSUMEXP: kind = K_ADDEXP; break;
    default: break;
    }
    for (size_t i = 0; i < on; i++) acc[i] = init;
    if (op == R_LOGSUMEXP && n) {
        /* Shift by the max so exp cannot overflow; an infinite max shifts by 0 so that
         * -inf inputs give -inf and +inf gives +inf instead of NaN. */
        ref = kiln_malloc(on * sizeof *ref);
        if (!ref) {
            st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu accumulators", on);
            goto done;
        }
        for (size_t i = 0; i < on; i++) ref[i] = -INFINITY;
        red_par(k->pool, 0, xd, ref, NULL, &it, K_MAX);
        for (size_t i = 0; i < on; i++)
            if (isinf(ref[i])) ref[i] = 0;
    }
    if (n) red_par(k->pool, 0, xd, acc, ref, &it, kind);
    switch (op) {
    case R_MEAN:
        for (size_t i = 0; i < on; i++) acc[i] /= (double)count;
        break;
    case R_L2:
        for (size_t i = 0; i < on; i++) acc[i] = sqrt(acc[i]);
        break;
    case R_LOGSUM:
        for (size_t i = 0; i < on; i++) acc[i] = log(acc[i]);
        break;
    case R_LOGSUMEXP:
        for (size_t i = 0; i < on; i++) acc[i] = log(acc[i]) + (ref ? ref[i] : 0);
        break;
    default: break;
    }
    if (as_int) {
        /* L2 / LogSum / LogSumExp of integers: truncate, saturating, like a C cast. */
        for (size_t i = 0; i < on; i++) kiln_tensor_set_f64(y, i, acc[i]);
    } else {
        kiln_store_f64(y, acc, on);
    }
done:
    kiln_free(xd);
    kiln_free(ref);
    kiln_free(acc);
    return st;
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

/* For each (outer, inner) position, the index along the axis of the max (or min) element:
 * the first one, or the last with select_last. A NaN counts as larger and smaller than
 * everything (numpy's argmax/argmin return the first NaN). */
#define DEFINE_ARG(NAME, T, ISNAN)                                                             \
    static void NAME(const T *x, int64_t *y, size_t outer, size_t len, size_t inner, bool want_max, \
                     bool last)                                                                 \
    {                                                                                           \
        for (size_t a = 0; a < outer; a++) {                                                    \
            for (size_t b = 0; b < inner; b++) {                                                \
                const T *p = x + a * len * inner + b;                                           \
                T best = p[0];                                                                  \
                size_t bi = 0;                                                                  \
                bool best_nan = ISNAN(best);                                                    \
                for (size_t j = 1; j < len && !(best_nan && !last); j++) {                      \
                    T v = p[j * inner];                                                         \
                    bool take;                                                                  \
                    if (ISNAN(v)) take = !best_nan || last;                                     \
                    else if (best_nan) take = false;                                            \
                    else if (want_max) take = last ? v >= best : v > best;                      \
                    else take = last ? v <= best : v < best;                                    \
                    if (take) {                                                                 \
                        best = v;                                                               \
                        bi = j;                                                                 \
                        best_nan = ISNAN(v);                                                    \
                    }                                                                           \
                }                                                                               \
                y[a * inner + b] = (int64_t)bi;                                                 \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_ARG(arg_f64, double, RED_NAN_F)
DEFINE_ARG(arg_i64, int64_t, RED_NAN_NONE)
DEFINE_ARG(arg_u64, uint64_t, RED_NAN_NONE)

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
    kiln_status st;
    if (is_f) {
        double *xd;
        st = kiln_load_f64(k, x, "data", &xd);
        if (st) return st;
        arg_f64(xd, y->data, outer, len, inner, want_max, last);
        kiln_free(xd);
    } else {
        int64_t *xi;
        st = kiln_load_i64(k, x, "data", &xi);
        if (st) return st;
        if (x->dtype == KILN_DTYPE_U64)
            arg_u64((const uint64_t *)xi, y->data, outer, len, inner, want_max, last);
        else
            arg_i64(xi, y->data, outer, len, inner, want_max, last);
        kiln_free(xi);
    }
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
