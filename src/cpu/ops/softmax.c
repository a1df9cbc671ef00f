/* src/cpu/ops/softmax.c: ONNX Softmax, LogSoftmax, Hardmax (1, 11, 13) and the losses
 * NegativeLogLikelihoodLoss (12, 13, 22) and SoftmaxCrossEntropyLoss (12, 13).
 *
 * Before opset 13 the softmax family coerces the input to 2-D at `axis` (default 1): rows
 * are the product of the dims before it, columns the product of the dims from it on, and
 * the op runs over each row. From 13 on it runs along the single dim `axis` (default -1).
 * Softmax subtracts the max first so exp cannot overflow; a row that contains +inf gives
 * NaN as the reference does. Hardmax puts its 1 on the first maximal element.
 *
 * The losses follow the ONNX reference: with input (N, C, d1..dk) and target (N, d1..dk),
 * each element's loss is -input[n, target, d...] * w, where w is weight[target] (1 without
 * weights) and 0 where target == ignore_index. reduction "none" returns these, "sum" their
 * sum and "mean" sum(loss) / sum(w) (NaN when every target is ignored). A target outside
 * [0, C) that is not ignore_index is an error. SoftmaxCrossEntropyLoss first takes the
 * log-softmax of the scores along dim 1 and can return it as its second output.
 *
 * float32 Softmax and LogSoftmax run in three vectorized passes per row (cpu/isa/softmax.c):
 * the max in float, exp (vmath's core, within 2 ulp) with the sum in double, then the scaling
 * in double; each
 * result is within a few ulp of the double computation, with the same NaN/inf behaviour.
 * Everything else (Hardmax, the losses, double, float16, bfloat16) is computed in double;
 * float16/bfloat16 results are rounded once at the end.
 *
 * Prepared kernels (cpu/kernel.h): prepare decodes `axis` (softmax family) and `reduction` /
 * `ignore_index` (losses, refusing an unknown reduction there); run reads them as k->state. A
 * kernel run without prepare (k->state NULL: the unit tests call run directly) decodes
 * through the same function at run time.
 *
 * In place (KILN_OP_INPLACE: Softmax, LogSoftmax, Hardmax): every row is read whole before
 * any of it is written (float32: max over x, then e = x - max, then y from e, or for
 * LogSoftmax y[j] from x[j] itself; a strided row is gathered into scratch first; the double
 * path works on a copy), and rows are disjoint, so output 0 may occupy input 0's memory.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/reduce_isa.h"
#include "cpu/tensor_util.h"

/* ------------------------------------------------------------------ Softmax family */

enum sm_kind { SM_SOFTMAX, SM_LOGSOFTMAX, SM_HARDMAX };

/* Applies the op in place to x viewed as [outer, len, inner], along the middle dim. */
static void softmax_f64(double *x, size_t outer, size_t len, size_t inner, enum sm_kind kind)
{
    for (size_t a = 0; a < outer; a++) {
        for (size_t b = 0; b < inner; b++) {
            double *p = x + a * len * inner + b;
            double mx = -INFINITY;
            size_t mi = 0;
            for (size_t j = 0; j < len; j++) {
                if (p[j * inner] > mx) {
                    mx = p[j * inner];
                    mi = j;
                }
            }
            if (kind == SM_HARDMAX) {
                for (size_t j = 0; j < len; j++) p[j * inner] = j == mi ? 1.0 : 0.0;
                continue;
            }
            /* An all -inf row keeps the shift at 0 so the result is NaN, as numpy gives. */
            double shift = isinf(mx) && mx < 0 ? 0 : mx;
            double sum = 0;
            for (size_t j = 0; j < len; j++) sum += exp(p[j * inner] - shift);
            if (kind == SM_SOFTMAX) {
                for (size_t j = 0; j < len; j++) p[j * inner] = exp(p[j * inner] - shift) / sum;
            } else {
                double ls = log(sum);
                for (size_t j = 0; j < len; j++) p[j * inner] = p[j * inner] - shift - ls;
            }
        }
    }
}

/* The vectorized row passes (cpu/isa/softmax.c), chosen once per run. */
struct sm_fns {
    float (*max)(const float *, size_t);
    double (*expsum)(const float *, float *, size_t, float);
    void (*scale)(const float *, float *, size_t, double);
    void (*sub)(const float *, float *, size_t, double);
};

/* Softmax or LogSoftmax of one contiguous float32 row x[0..len) into y (which may be x);
 * e is len floats of scratch (may be y for Softmax). Same rules as softmax_f64: NaN is
 * skipped by the max and then spreads through the sum; a +inf gives NaN; an all -inf row
 * keeps the shift at 0 (NaN). Three passes: max, exp + sum (double), scale. */
static void softmax_row_f32(const struct sm_fns *f, const float *x, float *y, size_t len, float *e,
                            enum sm_kind kind)
{
    const float mx = f->max(x, len);
    const float shift = isinf(mx) && mx < 0 ? 0.0f : mx;
    const double sum = f->expsum(x, e, len, shift);
    if (kind == SM_SOFTMAX) f->scale(e, y, len, 1.0 / sum);
    else f->sub(x, y, len, (double)shift + log(sum));
}

/* Work for one float32 Softmax/LogSoftmax: x viewed as [outer, len, inner] into y. The
 * outer * inner rows are split over the session's threads; each row is computed alone by
 * the same code, so results do not depend on the thread count. scratch holds 2 * len floats
 * per thread (indexed by the pool's worker number). */
struct sm_job {
    const float *x;
    float *y;
    size_t outer, len, inner;
    enum sm_kind kind;
    float *scratch;
    struct sm_fns f;
};

static void softmax_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct sm_job *j = ctx;
    const size_t len = j->len, inner = j->inner;
    float *e = j->scratch + (size_t)worker * 2 * len, *col = e + len;
    for (size_t r = begin; r < end; r++) {
        size_t a = r / inner, b = r % inner;
        const float *xa = j->x + a * len * inner;
        float *ya = j->y + a * len * inner;
        if (inner == 1) {
            softmax_row_f32(&j->f, xa, ya, len, j->kind == SM_SOFTMAX ? ya : e, j->kind);
            continue;
        }
        for (size_t i = 0; i < len; i++) col[i] = xa[i * inner + b];
        softmax_row_f32(&j->f, col, col, len, e, j->kind);
        for (size_t i = 0; i < len; i++) ya[i * inner + b] = col[i];
    }
}

/* Softmax/LogSoftmax of float32 x viewed as [outer, len, inner] into y. Rows along the
 * middle dim are contiguous when inner == 1; otherwise each is gathered into scratch. Rows
 * run in chunks of >= ~16K elements over the session's threads. */
static kiln_status softmax_f32(struct kiln_kctx *k, const float *x, float *y, size_t outer,
                               size_t len, size_t inner, enum sm_kind kind)
{
    size_t threads = (size_t)kiln_pool_threads(k->pool);
    float *e;
    KILN_TRY(kiln_scratch(k, threads * 2 * len * sizeof *e, (void **)&e));
    struct sm_job j = {x, y, outer, len, inner, kind, e,
                       {KILN_ISA_SELECT(kiln_sm_max_f32_isa), KILN_ISA_SELECT(kiln_sm_expsum_f32_isa),
                        KILN_ISA_SELECT(kiln_sm_scale_f32_isa), KILN_ISA_SELECT(kiln_sm_sub_f32_isa)}};
    size_t grain = kiln_pool_grain(len, 16384);
    kiln_pool_for(k->pool, outer * inner, grain, softmax_chunk, &j);
    return KILN_OK;
}

/* The softmax family's `axis` as written (default 1 before opset 13, -1 from 13). */
struct sm_state {
    int64_t axis;
};

static kiln_status decode_softmax(struct kiln_kctx *k, struct sm_state *s)
{
    s->axis = kiln_attr_i(k, "axis", k->opset < 13 ? 1 : -1);
    return KILN_OK;
}

KILN_PREPARE_WITH(softmax_prepare, struct sm_state, decode_softmax)

static kiln_status softmax_family_run(struct kiln_kctx *k, enum sm_kind kind)
{
    struct sm_state dec;
    const struct sm_state *ss;
    KILN_STATE_OR_DECODE(k, decode_softmax, dec, ss);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'input' is %s; expected float16, float, "
                          "double or bfloat16", kiln_dtype_name(x->dtype));
    const int rank = x->rank;
    const bool coerce = k->opset < 13;
    int64_t axis = ss->axis;
    /* Coercion accepts axis == rank (one column per row); 13+ needs a real dim. */
    const int hi = coerce ? rank : rank - 1;
    if (axis < -rank || axis > hi)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'axis' is %lld; expected [%d, %d] "
                          "for a rank-%d input", (long long)axis, -rank, hi, rank);
    if (axis < 0) axis += rank;
    size_t outer = 1, len = 1, inner = 1;
    for (int d = 0; d < rank; d++) {
        size_t s = (size_t)x->dims[d];
        if (d < axis) outer *= s;
        else if (d == axis || coerce) len *= s;
        else inner *= s;
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, rank, x->dims, &y));
    size_t n = kiln_tensor_numel(x);
    if (n == 0) return KILN_OK;
    if (x->dtype == KILN_DTYPE_F32 && kind != SM_HARDMAX)
        return softmax_f32(k, x->data, y->data, outer, len, inner, kind);
    double *d;
    KILN_TRY(kiln_load_f64(k, x, "input", &d));
    softmax_f64(d, outer, len, inner, kind);
    kiln_store_f64(y, d, n);
    kiln_free(d);
    return KILN_OK;
}

static kiln_status softmax_run(struct kiln_kctx *k) { return softmax_family_run(k, SM_SOFTMAX); }
static kiln_status logsoftmax_run(struct kiln_kctx *k)
{
    return softmax_family_run(k, SM_LOGSOFTMAX);
}
static kiln_status hardmax_run(struct kiln_kctx *k) { return softmax_family_run(k, SM_HARDMAX); }

/* ------------------------------------------------------------------ losses */

enum loss_reduction { LR_NONE, LR_SUM, LR_MEAN };

/* The losses' reduction and ignore_index (has_ii: given). */
struct loss_state {
    enum loss_reduction red;
    bool has_ii;
    int64_t ii;
};

static kiln_status decode_loss(struct kiln_kctx *k, struct loss_state *s)
{
    const char *red_s = kiln_attr_s(k, "reduction", "mean");
    if (!strcmp(red_s, "none")) s->red = LR_NONE;
    else if (!strcmp(red_s, "sum")) s->red = LR_SUM;
    else if (!strcmp(red_s, "mean")) s->red = LR_MEAN;
    else
        return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'reduction' is \"%s\"; expected "
                          "\"none\", \"sum\" or \"mean\"", red_s);
    s->has_ii = kiln_attr_has(k, "ignore_index");
    s->ii = kiln_attr_i(k, "ignore_index", 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(loss_prepare, struct loss_state, decode_loss)

/* Checks the shapes of input (N, C, d...) / target (N, d...) / weight (C) and writes the loss
 * of logp (the input, as doubles) to output 0, reduced as ls says. */
static kiln_status nll_compute(struct kiln_kctx *k, const struct loss_state *ls,
                               const struct kiln_tensor *x, const double *logp, const char *xname,
                               const char *tname)
{
    const struct kiln_tensor *t, *w = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 1, &t));
    char b1[128], b2[128];
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' has rank %d; expected (N, C, ...)",
                          xname, x->rank);
    bool shape_ok = t->rank == x->rank - 1 && t->dims[0] == x->dims[0];
    for (int d = 2; shape_ok && d < x->rank; d++) shape_ok = t->dims[d - 1] == x->dims[d];
    if (!shape_ok)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' has shape %s; expected %s's shape "
                          "without dim 1 (%s)", tname, kiln_shape_str(t->rank, t->dims, b1, sizeof b1),
                          xname, kiln_shape_str(x->rank, x->dims, b2, sizeof b2));
    if (!kiln_dtype_is_int(t->dtype))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s; expected int32 or int64",
                          tname, kiln_dtype_name(t->dtype));
    const int64_t C = x->dims[1];
    double *wd = NULL;
    if (w) {
        if (w->rank != 1 || w->dims[0] != C)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'weight' has shape %s; expected [%lld]",
                              kiln_shape_str(w->rank, w->dims, b1, sizeof b1), (long long)C);
        if (!kiln_dtype_is_real_float(w->dtype))
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'weight' is %s; expected float16, "
                              "float, double or bfloat16", kiln_dtype_name(w->dtype));
        KILN_TRY(kiln_load_f64(k, w, "weight", &wd));
    }
    const enum loss_reduction red = ls->red;
    const bool has_ii = ls->has_ii;
    const int64_t ii = ls->ii;

    const size_t N = (size_t)x->dims[0], D = kiln_tensor_numel(t) / (N ? N : 1);
    const size_t nt = kiln_tensor_numel(t);
    struct kiln_tensor *y;
    kiln_status st = kiln_out_tensor(k, 0, x->dtype, red == LR_NONE ? t->rank : 0, t->dims, &y);
    if (st) {
        kiln_free(wd);
        return st;
    }
    double *loss = kiln_malloc((nt ? nt : 1) * sizeof *loss);
    if (!loss) {
        kiln_free(wd);
        return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu losses", nt);
    }
    double sum = 0, wsum = 0;
    for (size_t n = 0; n < N; n++) {
        for (size_t d = 0; d < D; d++) {
            size_t j = n * D + d;
            int64_t c = kiln_tensor_get_i64(t, j);
            if (has_ii && c == ii) {
                loss[j] = 0;
                continue;
            }
            if (c < 0 || c >= C) {
                st = kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' holds class %lld at element "
                                "%zu; expected [0, %lld) or ignore_index", tname, (long long)c, j,
                                (long long)C);
                goto done;
            }
            double wc = wd ? wd[c] : 1.0;
            loss[j] = -logp[(n * (size_t)C + (size_t)c) * D + d] * wc;
            sum += loss[j];
            wsum += wc;
        }
    }
    if (red == LR_NONE) {
        kiln_store_f64(y, loss, nt);
    } else {
        double v = red == LR_SUM ? sum : sum / wsum;
        kiln_store_f64(y, &v, 1);
    }
done:
    kiln_free(loss);
    kiln_free(wd);
    return st;
}

static kiln_status nllloss_run(struct kiln_kctx *k)
{
    struct loss_state dec;
    const struct loss_state *ls;
    KILN_STATE_OR_DECODE(k, decode_loss, dec, ls);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'input' is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    double *xd;
    KILN_TRY(kiln_load_f64(k, x, "input", &xd));
    kiln_status st = nll_compute(k, ls, x, xd, "input", "target");
    kiln_free(xd);
    return st;
}

static kiln_status sce_run(struct kiln_kctx *k)
{
    struct loss_state dec;
    const struct loss_state *ls;
    KILN_STATE_OR_DECODE(k, decode_loss, dec, ls);
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'scores' is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    if (x->rank < 2)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'scores' has rank %d; expected (N, C, ...)",
                          x->rank);
    double *xd;
    KILN_TRY(kiln_load_f64(k, x, "scores", &xd));
    size_t inner = 1;
    for (int d = 2; d < x->rank; d++) inner *= (size_t)x->dims[d];
    softmax_f64(xd, (size_t)x->dims[0], (size_t)x->dims[1], inner, SM_LOGSOFTMAX);
    kiln_status st = nll_compute(k, ls, x, xd, "scores", "labels");
    if (st == KILN_OK && kiln_out_wanted(k, 1)) {
        struct kiln_tensor *lp;
        st = kiln_out_tensor(k, 1, x->dtype, x->rank, x->dims, &lp);
        if (st == KILN_OK) kiln_store_f64(lp, xd, kiln_tensor_numel(x));
    }
    kiln_free(xd);
    return st;
}

const struct kiln_cpu_op kiln_cpu_ops_softmax[] = {
    {"Softmax", "", 1, KILN_OPSET_ANY, softmax_run, softmax_prepare, KILN_OP_INPLACE},
    {"LogSoftmax", "", 1, KILN_OPSET_ANY, logsoftmax_run, softmax_prepare, KILN_OP_INPLACE},
    {"Hardmax", "", 1, KILN_OPSET_ANY, hardmax_run, softmax_prepare, KILN_OP_INPLACE},
    {"NegativeLogLikelihoodLoss", "", 12, KILN_OPSET_ANY, nllloss_run, loss_prepare, 0},
    {"SoftmaxCrossEntropyLoss", "", 12, KILN_OPSET_ANY, sce_run, loss_prepare, 0},
    {0},
};
