/* src/cpu/ops/scan.c: ONNX cumulative, selection, tensor-algebra and signal ops.
 *
 * CumSum (11, 14), CumProd (26): running sum/product along the axis given as input 1;
 * `exclusive` shifts by one (the first output is the identity), `reverse` runs from the
 * end. Floats accumulate in double, integers in 64 bits wrapping modulo 2^64.
 *
 * TopK (1, 10, 11, 24): k from the attribute (opset 1) or input 1; `largest` and `sorted`
 * from 11 on. Results are always sorted (sorted=0 leaves the order unspecified, so sorted
 * order is one valid answer); equal values come out lower index first.
 *
 * Einsum (12): a plain loop nest over every label. Supports explicit and implicit output
 * (implicit: ellipsis dims, then the labels used once, in ASCII order), repeated labels in
 * one operand (diagonals), repeated labels in the output are refused, and `...` with
 * numpy broadcasting of size-1 dims.
 *
 * Det (11, 22): LU decomposition with partial pivoting, in double, over the last two dims.
 *
 * DFT (17, 20): a direct O(n^2) transform in double along one axis, with twiddles indexed
 * by (k*n mod N) so large lengths keep their accuracy. dft_length zero-pads or truncates
 * the signal; onesided keeps bins [0, N/2]; inverse divides by N. inverse+onesided is the
 * real inverse of a half spectrum (numpy's irfft): the missing bins are the conjugates of
 * the given ones, the output is real (last dim 1) and N defaults to 2*(bins-1). Opset 17
 * takes axis as an attribute (default 1), 20 as input 2 (default -2).
 *
 * STFT (17): frames of frame_length samples every frame_step, times the window, each
 * transformed as DFT does; output [batch, frames, bins, 2].
 *
 * HannWindow, HammingWindow, BlackmanWindow (17): the generalized cosine windows, periodic
 * (denominator N) or symmetric (N-1). MelWeightMatrix (17): the triangular filter bank of
 * the ONNX reference implementation (bin edges floored to DFT bins).
 *
 * Prepare decodes every op's attributes once; Einsum's equation is also parsed there into
 * its terms (a malformed equation is reported by run, after the checks of the inputs that
 * precede it, as before).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/tensor_util.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ------------------------------------------------------------------ conversions */

/* Reads input i as one integer (a scalar or a one-element tensor). *present is false when
 * the input is absent (then *v is untouched). */
static kiln_status in_scalar_i64(struct kiln_kctx *k, size_t i, const char *what, int64_t *v,
                                 bool *present)
{
    const struct kiln_tensor *t = kiln_in(k, i);
    *present = t != NULL;
    if (!t) return KILN_OK;
    if (!kiln_dtype_is_int(t->dtype) || kiln_tensor_numel(t) != 1 || t->rank > 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s with %zu elements; expected "
                          "one integer", what, kiln_dtype_name(t->dtype), kiln_tensor_numel(t));
    *v = kiln_tensor_get_i64(t, 0);
    return KILN_OK;
}

/* Reads input i as one float (a scalar or one-element tensor of any numeric type). */
static kiln_status in_scalar_f64(struct kiln_kctx *k, size_t i, const char *what, double *v)
{
    const struct kiln_tensor *t;
    KILN_TRY(kiln_in_req(k, i, &t));
    if (kiln_tensor_numel(t) != 1 || t->rank > 1 || !kiln_dtype_size(t->dtype) ||
        t->dtype == KILN_DTYPE_STRING)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s with %zu elements; expected "
                          "one number", what, kiln_dtype_name(t->dtype), kiln_tensor_numel(t));
    *v = kiln_tensor_get_f64(t, 0);
    return KILN_OK;
}

/* ------------------------------------------------------------------ CumSum / CumProd */

/* Scans the array v of element type T, viewed as [outer, len, inner], in place along the
 * middle axis: a running sum or (prod) product in accumulator type U, from the back when
 * reverse, storing the total before (exclusive) or after each element. Integers accumulate
 * in uint64_t so that overflow wraps. */
#define CUM_SCAN(T, U, v)                                                                      \
    for (size_t a = 0; a < outer; a++)                                                         \
        for (size_t b = 0; b < inner; b++) {                                                   \
            U acc = prod ? 1 : 0;                                                              \
            for (size_t jj = 0; jj < len; jj++) {                                              \
                size_t j = reverse ? len - 1 - jj : jj;                                        \
                T *p = (v) + (a * len + j) * inner + b;                                        \
                U cur = (U)*p;                                                                 \
                if (exclusive) *p = (T)acc;                                                    \
                acc = prod ? acc * cur : acc + cur;                                            \
                if (!exclusive) *p = (T)acc;                                                   \
            }                                                                                  \
        }

struct cum_state {
    bool exclusive, reverse;
};

static kiln_status cum_prepare(struct kiln_kprep *p)
{
    struct cum_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->exclusive = kiln_attr_i(&p->kc, "exclusive", 0) != 0;
    s->reverse = kiln_attr_i(&p->kc, "reverse", 0) != 0;
    p->state = s;
    return KILN_OK;
}

static kiln_status cum_run(struct kiln_kctx *k, bool prod)
{
    const struct cum_state *cs = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t axis_v = 0;
    bool present;
    KILN_TRY(in_scalar_i64(k, 1, "axis", &axis_v, &present));
    if (!present) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'axis' is missing");
    const int rank = x->rank ? x->rank : 1;
    int axis;
    KILN_TRY(kiln_norm_axis(k, axis_v, rank, "input 'axis'", &axis));
    const bool exclusive = cs->exclusive;
    const bool reverse = cs->reverse;
    const bool as_int = kiln_dtype_is_int(x->dtype);
    if (!as_int && !kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'x' is %s; expected a numeric type",
                          kiln_dtype_name(x->dtype));
    size_t outer = 1, len = x->rank ? (size_t)x->dims[axis] : 1, inner = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis) outer *= (size_t)x->dims[d];
        if (d > axis) inner *= (size_t)x->dims[d];
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    const size_t n = kiln_tensor_numel(x);
    if (n == 0) return KILN_OK;

    if (as_int) {
        int64_t *v;
        KILN_TRY(kiln_load_i64(k, x, "x", &v));
        CUM_SCAN(int64_t, uint64_t, v)
        kiln_store_i64(y, v, n);
        kiln_free(v);
    } else {
        double *v;
        KILN_TRY(kiln_load_f64(k, x, "x", &v));
        CUM_SCAN(double, double, v)
        kiln_store_f64(y, v, n);
        kiln_free(v);
    }
    return KILN_OK;
}

#undef CUM_SCAN

static kiln_status cumsum_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, cum_prepare, cumsum_run);
    return cum_run(k, false);
}
static kiln_status cumprod_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, cum_prepare, cumprod_run);
    return cum_run(k, true);
}

/* ------------------------------------------------------------------ TopK */

struct topk_item {
    double f;   /* key for float types */
    int64_t i;  /* key for integer types (uint64 as bits) */
    int64_t idx;
};

/* Comparators: the wanted element first, equal keys by lower index. NaN sorts as the
 * largest value (numpy's order). */
static int cmp_idx(const struct topk_item *a, const struct topk_item *b)
{
    return (a->idx > b->idx) - (a->idx < b->idx);
}
static int cmp_f_desc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    bool na = isnan(a->f), nb = isnan(b->f);
    if (na != nb) return na ? -1 : 1;
    if (!na && a->f != b->f) return a->f > b->f ? -1 : 1;
    return cmp_idx(a, b);
}
static int cmp_f_asc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    bool na = isnan(a->f), nb = isnan(b->f);
    if (na != nb) return na ? 1 : -1;
    if (!na && a->f != b->f) return a->f < b->f ? -1 : 1;
    return cmp_idx(a, b);
}
static int cmp_i_desc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    if (a->i != b->i) return a->i > b->i ? -1 : 1;
    return cmp_idx(a, b);
}
static int cmp_i_asc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    return cmp_idx(a, b);
}
static int cmp_u_desc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    if (a->i != b->i) return (uint64_t)a->i > (uint64_t)b->i ? -1 : 1;
    return cmp_idx(a, b);
}
static int cmp_u_asc(const void *pa, const void *pb)
{
    const struct topk_item *a = pa, *b = pb;
    if (a->i != b->i) return (uint64_t)a->i < (uint64_t)b->i ? -1 : 1;
    return cmp_idx(a, b);
}

struct topk_state {
    bool has_k;      /* opset < 10: attribute k is present */
    int64_t k;       /* opset < 10 */
    int64_t axis;
    bool largest;    /* true before opset 11 */
};

static kiln_status topk_prepare(struct kiln_kprep *p)
{
    struct topk_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->has_k = kiln_attr_has(k, "k");
    s->k = kiln_attr_i(k, "k", 0);
    s->axis = kiln_attr_i(k, "axis", -1);
    s->largest = k->opset < 11 || kiln_attr_i(k, "largest", 1) != 0;
    p->state = s;
    return KILN_OK;
}

static kiln_status topk_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, topk_prepare, topk_run);
    const struct topk_state *ts = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t kk = 0;
    if (k->opset < 10) {
        if (!ts->has_k)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'k' is missing");
        kk = ts->k;
    } else {
        bool present;
        KILN_TRY(in_scalar_i64(k, 1, "K", &kk, &present));
        if (!present) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'K' is missing");
    }
    if (x->rank == 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'X' is a scalar; expected rank >= 1");
    int axis;
    KILN_TRY(kiln_norm_axis(k, ts->axis, x->rank, "attribute 'axis'", &axis));
    const bool largest = ts->largest;
    const int64_t len = x->dims[axis];
    if (kk < 0 || kk > len)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "k is %lld; expected [0, %lld] (the size of "
                          "axis %lld)", (long long)kk, (long long)len, (long long)axis);
    const bool is_f = kiln_dtype_is_float(x->dtype);
    if (!is_f && !kiln_dtype_is_int(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'X' is %s; expected a numeric type",
                          kiln_dtype_name(x->dtype));
    int64_t odims[KILN_MAX_RANK];
    memcpy(odims, x->dims, sizeof odims);
    odims[axis] = kk;
    struct kiln_tensor *vals = NULL, *idxs = NULL;
    if (kiln_out_wanted(k, 0)) KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, odims, &vals));
    if (kiln_out_wanted(k, 1))
        KILN_TRY(kiln_out_tensor(k, 1, KILN_DTYPE_I64, x->rank, odims, &idxs));
    size_t outer = 1, inner = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis) outer *= (size_t)x->dims[d];
        if (d > axis) inner *= (size_t)x->dims[d];
    }
    if (kk == 0 || outer * inner == 0) return KILN_OK;

    double *xf = NULL;
    int64_t *xi = NULL;
    struct topk_item *items = kiln_malloc((size_t)len * sizeof *items);
    kiln_status st = KILN_OK;
    if (!items) return kiln_kfail(k, KILN_E_NOMEM, "out of memory sorting %lld elements",
                                  (long long)len);
    st = is_f ? kiln_load_f64(k, x, "X", &xf) : kiln_load_i64(k, x, "X", &xi);
    if (st) goto done;
    int (*cmp)(const void *, const void *);
    if (is_f) cmp = largest ? cmp_f_desc : cmp_f_asc;
    else if (x->dtype == KILN_DTYPE_U64) cmp = largest ? cmp_u_desc : cmp_u_asc;
    else cmp = largest ? cmp_i_desc : cmp_i_asc;
    const size_t es = kiln_dtype_size(x->dtype);
    const uint8_t *src = x->data;
    uint8_t *dst = vals ? vals->data : NULL;
    int64_t *di = idxs ? idxs->data : NULL;
    for (size_t a = 0; a < outer; a++) {
        for (size_t b = 0; b < inner; b++) {
            for (int64_t j = 0; j < len; j++) {
                size_t e = (a * (size_t)len + (size_t)j) * inner + b;
                items[j].f = xf ? xf[e] : 0;
                items[j].i = xi ? xi[e] : 0;
                items[j].idx = j;
            }
            qsort(items, (size_t)len, sizeof *items, cmp);
            for (int64_t j = 0; j < kk; j++) {
                size_t o = (a * (size_t)kk + (size_t)j) * inner + b;
                size_t e = (a * (size_t)len + (size_t)items[j].idx) * inner + b;
                if (dst) memcpy(dst + o * es, src + e * es, es);
                if (di) di[o] = items[j].idx;
            }
        }
    }
done:
    kiln_free(items);
    kiln_free(xf);
    kiln_free(xi);
    return st;
}

/* ------------------------------------------------------------------ Einsum */

#define EIN_LETTERS 52 /* A-Z then a-z; ellipsis dims get labels 52.. */
#define EIN_MAXL (EIN_LETTERS + KILN_MAX_RANK)
#define EIN_MAXIN 32

static int ein_label(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return 26 + (c - 'a');
    return -1;
}

/* One operand or the output as written: labels in order, ell_pos = where "..." stands
 * (-1 if absent). */
struct ein_term {
    int labels[KILN_MAX_RANK + 1];
    int n;
    int ell_pos;
};

/* Parses one term from s[0..len). */
static kiln_status ein_parse_term(struct kiln_kctx *k, const char *s, size_t len,
                                  struct ein_term *t)
{
    t->n = 0;
    t->ell_pos = -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ' ') continue;
        if (c == '.') {
            if (i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.' || t->ell_pos >= 0)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'equation' has a stray '.' "
                                  "or two ellipses in one term");
            t->ell_pos = t->n;
            i += 2;
            continue;
        }
        int l = ein_label(c);
        if (l < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'equation' has character '%c'; "
                              "expected letters, ',', '->' and '...'", c);
        if (t->n >= KILN_MAX_RANK)
            return kiln_kfail(k, KILN_E_LIMIT, "attribute 'equation' has a term with more than "
                              "%d labels", KILN_MAX_RANK);
        t->labels[t->n++] = l;
    }
    return KILN_OK;
}

/* The equation, parsed in prepare: the input terms (lhs) and, with "->", the output term.
 * A parse failure is kept (status and message) for run, which reports it where it would
 * have found it: the lhs after the checks of the inputs, the output term after the label
 * sizes. */
struct einsum_state {
    const char *eq;                 /* NULL: attribute 'equation' is missing */
    bool arrow;                     /* the equation has "->" */
    struct ein_term in_t[EIN_MAXIN];
    struct ein_term out_t;
    kiln_status lhs_st, rhs_st;
    const char *lhs_msg, *rhs_msg;
};

/* Splits the lhs of eq at commas into nin terms. */
static kiln_status ein_parse_lhs(struct kiln_kctx *k, const char *eq, size_t nin, struct ein_term *in_t)
{
    const char *arrow = strstr(eq, "->");
    const size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    size_t nt = 0, start = 0;
    for (size_t i = 0; i <= lhs_len; i++) {
        if (i == lhs_len || eq[i] == ',') {
            if (nt == nin)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'equation' \"%s\" has more "
                                  "terms than the %zu inputs", eq, nin);
            KILN_TRY(ein_parse_term(k, eq + start, i - start, &in_t[nt++]));
            start = i + 1;
        }
    }
    if (nt != nin)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'equation' \"%s\" has %zu terms; "
                          "expected %zu (one per input)", eq, nt, nin);
    return KILN_OK;
}

static kiln_status einsum_prepare(struct kiln_kprep *p)
{
    struct einsum_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    p->state = s;
    s->eq = kiln_attr_s(&p->kc, "equation", NULL);
    const size_t nin = p->kc.n_in;
    if (!s->eq || nin == 0 || nin > EIN_MAXIN) return KILN_OK; /* run fails before parsing */
    const char *arrow = strstr(s->eq, "->");
    s->arrow = arrow != NULL;
    kiln_err e = {0};
    struct kiln_kctx kc = p->kc;
    kc.err = &e;
    s->lhs_st = ein_parse_lhs(&kc, s->eq, nin, s->in_t);
    KILN_TRY(kiln_cpu_prep_keep(p, s->lhs_st, &e, &s->lhs_msg));
    if (s->lhs_st || !arrow) return KILN_OK;
    s->rhs_st = ein_parse_term(&kc, arrow + 2, strlen(arrow + 2), &s->out_t);
    return kiln_cpu_prep_keep(p, s->rhs_st, &e, &s->rhs_msg);
}

/* Sum of products in double (floats) or wrapping uint64 (integers). */
static kiln_status einsum_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, einsum_prepare, einsum_run);
    const struct einsum_state *es = k->state;
    const char *eq = es->eq;
    if (!eq) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'equation' is missing");
    const size_t nin = k->n_in;
    if (nin == 0 || nin > EIN_MAXIN)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "has %zu inputs; expected 1..%d", nin, EIN_MAXIN);
    const struct kiln_tensor *x[EIN_MAXIN];
    for (size_t i = 0; i < nin; i++) KILN_TRY(kiln_in_req(k, i, &x[i]));
    const kiln_dtype dt = x[0]->dtype;
    for (size_t i = 1; i < nin; i++)
        if (x[i]->dtype != dt)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu is %s; expected %s like input 0",
                              i, kiln_dtype_name(x[i]->dtype), kiln_dtype_name(dt));
    const bool as_int = kiln_dtype_is_int(dt);
    if (!as_int && !kiln_dtype_is_real_float(dt))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs are %s; expected a numeric type",
                          kiln_dtype_name(dt));

    /* The terms of "lhs->rhs", parsed in prepare. */
    if (es->lhs_st) return kiln_err_set(k->err, es->lhs_st, "%s", es->lhs_msg);
    const struct ein_term *in_t = es->in_t;

    /* Label sizes; ellipsis dims are right-aligned across operands and broadcast. */
    int64_t lsize[EIN_MAXL];
    int lcount[EIN_MAXL] = {0};
    for (int l = 0; l < EIN_MAXL; l++) lsize[l] = -1;
    int ell_rank = 0;
    int full[EIN_MAXIN][KILN_MAX_RANK]; /* label of each dim of each input */
    for (size_t i = 0; i < nin; i++) {
        const struct ein_term *t = &in_t[i];
        int er = x[i]->rank - t->n;
        if ((t->ell_pos < 0 && er != 0) || er < 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu has rank %d; term %zu of the "
                              "equation names %d dims", i, x[i]->rank, i, t->n);
        if (er > ell_rank) ell_rank = er;
    }
    for (size_t i = 0; i < nin; i++) {
        const struct ein_term *t = &in_t[i];
        int er = x[i]->rank - t->n, d = 0;
        for (int j = 0; j <= t->n; j++) {
            if (j == t->ell_pos)
                for (int e = 0; e < er; e++) full[i][d++] = EIN_LETTERS + ell_rank - er + e;
            if (j < t->n) full[i][d++] = t->labels[j];
        }
        for (d = 0; d < x[i]->rank; d++) {
            int l = full[i][d];
            int64_t s = x[i]->dims[d];
            if (l < EIN_LETTERS) lcount[l]++;
            if (lsize[l] < 0 || lsize[l] == 1) lsize[l] = s;
            else if (s != lsize[l] && s != 1)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "label of dim %d of input %zu has size "
                                  "%lld here and %lld elsewhere", d, i, (long long)s,
                                  (long long)lsize[l]);
        }
    }
    for (int e = 0; e < ell_rank; e++)
        if (lsize[EIN_LETTERS + e] < 0) lsize[EIN_LETTERS + e] = 1;

    /* Output labels. */
    int olab[KILN_MAX_RANK];
    int on = 0;
    if (es->arrow) {
        if (es->rhs_st) return kiln_err_set(k->err, es->rhs_st, "%s", es->rhs_msg);
        const struct ein_term out_t = es->out_t;
        bool seen[EIN_MAXL] = {false};
        for (int j = 0; j <= out_t.n; j++) {
            if (j == out_t.ell_pos)
                for (int e = 0; e < ell_rank; e++) olab[on++] = EIN_LETTERS + e;
            if (j < out_t.n) {
                int l = out_t.labels[j];
                if (lsize[l] < 0 || seen[l])
                    return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'equation' output label "
                                      "'%c' is %s", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[l],
                                      seen[l] ? "repeated" : "not in any input");
                seen[l] = true;
                if (on >= KILN_MAX_RANK)
                    return kiln_kfail(k, KILN_E_LIMIT, "output rank exceeds %d", KILN_MAX_RANK);
                olab[on++] = l;
            }
        }
    } else {
        for (int e = 0; e < ell_rank; e++) olab[on++] = EIN_LETTERS + e;
        for (int l = 0; l < EIN_LETTERS; l++) {
            if (lcount[l] == 1) {
                if (on >= KILN_MAX_RANK)
                    return kiln_kfail(k, KILN_E_LIMIT, "output rank exceeds %d", KILN_MAX_RANK);
                olab[on++] = l;
            }
        }
    }

    /* All labels: output ones first (so the output offset walks in order), then the
     * contracted ones. */
    int all[EIN_MAXL], na = 0;
    bool in_out[EIN_MAXL] = {false};
    for (int j = 0; j < on; j++) {
        all[na++] = olab[j];
        in_out[olab[j]] = true;
    }
    for (int l = 0; l < EIN_MAXL; l++)
        if (lsize[l] >= 0 && !in_out[l]) all[na++] = l;

    int64_t odims[KILN_MAX_RANK];
    for (int j = 0; j < on; j++) odims[j] = lsize[olab[j]];
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, on, odims, &y));
    const size_t ynum = kiln_tensor_numel(y);
    if (ynum == 0) return KILN_OK;

    /* Per-label strides: for each input (sum over repeated labels = diagonal, 0 where the
     * dim is a broadcast 1) and for the output. */
    size_t (*istr)[EIN_MAXL] = kiln_calloc(nin, sizeof *istr);
    size_t ostr[EIN_MAXL] = {0}, s = 1;
    double *acc = NULL, *xd[EIN_MAXIN] = {NULL};
    int64_t *xi[EIN_MAXIN] = {NULL};
    uint64_t *acci = NULL;
    kiln_status st = KILN_OK;
    if (!istr) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for einsum strides");
    for (int j = on - 1; j >= 0; j--) {
        ostr[olab[j]] = s;
        s *= (size_t)lsize[olab[j]];
    }
    for (size_t i = 0; i < nin; i++) {
        size_t st_i = 1;
        for (int d = x[i]->rank - 1; d >= 0; d--) {
            if (x[i]->dims[d] != 1) istr[i][full[i][d]] += st_i;
            st_i *= (size_t)x[i]->dims[d];
        }
    }
    for (int j = 0; j < na; j++)
        if (lsize[all[j]] == 0) goto write; /* an empty contraction: all zeros */
    if (as_int) {
        acci = kiln_calloc(ynum, sizeof *acci);
        if (!acci) {
            st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for the einsum output");
            goto done;
        }
        for (size_t i = 0; i < nin; i++)
            if ((st = kiln_load_i64(k, x[i], "Inputs", &xi[i]))) goto done;
    } else {
        acc = kiln_calloc(ynum, sizeof *acc);
        if (!acc) {
            st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for the einsum output");
            goto done;
        }
        for (size_t i = 0; i < nin; i++)
            if ((st = kiln_load_f64(k, x[i], "Inputs", &xd[i]))) goto done;
    }
    {
        size_t idx[EIN_MAXL] = {0}, off[EIN_MAXIN] = {0}, o = 0;
        for (;;) {
            if (as_int) {
                uint64_t p = 1;
                for (size_t i = 0; i < nin; i++) p *= (uint64_t)xi[i][off[i]];
                acci[o] += p;
            } else {
                double p = 1;
                for (size_t i = 0; i < nin; i++) p *= xd[i][off[i]];
                acc[o] += p;
            }
            int j = na - 1;
            for (; j >= 0; j--) {
                int l = all[j];
                for (size_t i = 0; i < nin; i++) off[i] += istr[i][l];
                o += ostr[l];
                if (++idx[j] < (size_t)lsize[l]) break;
                for (size_t i = 0; i < nin; i++) off[i] -= istr[i][l] * (size_t)lsize[l];
                o -= ostr[l] * (size_t)lsize[l];
                idx[j] = 0;
            }
            if (j < 0) break;
        }
    }
write:
    if (acc) kiln_store_f64(y, acc, ynum);
    if (acci) kiln_store_i64(y, (const int64_t *)acci, ynum);
done:
    for (size_t i = 0; i < nin; i++) {
        kiln_free(xd[i]);
        kiln_free(xi[i]);
    }
    kiln_free(acc);
    kiln_free(acci);
    kiln_free(istr);
    return st;
}

/* ------------------------------------------------------------------ Det */

/* Determinant of the m x m matrix a (destroyed) by LU with partial pivoting. */
static double det_lu(double *a, size_t m)
{
    double det = 1;
    for (size_t c = 0; c < m; c++) {
        size_t p = c;
        for (size_t r = c + 1; r < m; r++)
            if (fabs(a[r * m + c]) > fabs(a[p * m + c])) p = r;
        if (a[p * m + c] == 0) return 0;
        if (p != c) {
            for (size_t j = 0; j < m; j++) {
                double t = a[c * m + j];
                a[c * m + j] = a[p * m + j];
                a[p * m + j] = t;
            }
            det = -det;
        }
        double piv = a[c * m + c];
        det *= piv;
        for (size_t r = c + 1; r < m; r++) {
            double f = a[r * m + c] / piv;
            if (f == 0) continue;
            for (size_t j = c + 1; j < m; j++) a[r * m + j] -= f * a[c * m + j];
        }
    }
    return det;
}

static kiln_status det_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    char b[128];
    if (x->rank < 2 || x->dims[x->rank - 1] != x->dims[x->rank - 2])
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'X' has shape %s; expected [*, M, M]",
                          kiln_shape_str(x->rank, x->dims, b, sizeof b));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'X' is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank - 2, x->dims, &y));
    const size_t nb = kiln_tensor_numel(y), m = (size_t)x->dims[x->rank - 1];
    if (nb == 0) return KILN_OK;
    double *a;
    KILN_TRY(kiln_load_f64(k, x, "X", &a));
    double *out = kiln_malloc(nb * sizeof *out);
    if (!out) {
        kiln_free(a);
        return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu determinants", nb);
    }
    for (size_t i = 0; i < nb; i++) out[i] = det_lu(a + i * m * m, m);
    kiln_store_f64(y, out, nb);
    kiln_free(out);
    kiln_free(a);
    return KILN_OK;
}

/* ------------------------------------------------------------------ DFT / STFT */

/* cos/sin of -2*pi*j/n for j in [0, n): tw[2j], tw[2j+1]. */
static kiln_status twiddles(struct kiln_kctx *k, size_t n, double **out)
{
    size_t bytes;
    *out = NULL;
    if (!kiln_mul_size(n ? n : 1, 2 * sizeof(double), &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "DFT length %zu is too large", n);
    double *tw = kiln_malloc(bytes);
    if (!tw) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu twiddles", n);
    for (size_t j = 0; j < n; j++) {
        double a = -2.0 * M_PI * (double)j / (double)n;
        tw[2 * j] = cos(a);
        tw[2 * j + 1] = sin(a);
    }
    *out = tw;
    return KILN_OK;
}

/* One 1-D transform. in: nin complex values (re, im pairs) at stride `is` (in complex
 * elements), zero beyond nin; out: nout values (complex pairs, or reals when real_out) at
 * stride `os`. X[k] = scale * sum_n in[n] * w^(sign*k*n) with w = exp(-2*pi*i/N). */
static void dft_line(const double *in, size_t nin, size_t is, double *out, size_t nout, size_t os,
                     size_t N, const double *tw, bool inverse, bool real_out)
{
    const double scale = inverse ? 1.0 / (double)N : 1.0;
    const size_t m = nin < N ? nin : N;
    for (size_t kk = 0; kk < nout; kk++) {
        double re = 0, im = 0;
        size_t step = kk % N, ph = 0; /* ph = k*n mod N */
        for (size_t n = 0; n < m; n++) {
            double c = tw[2 * ph], s = tw[2 * ph + 1];
            if (inverse) s = -s;
            double xr = in[2 * n * is], xi = in[2 * n * is + 1];
            re += xr * c - xi * s;
            im += xr * s + xi * c;
            ph += step;
            if (ph >= N) ph -= N;
        }
        if (real_out) {
            out[kk * os] = re * scale;
        } else {
            out[2 * kk * os] = re * scale;
            out[2 * kk * os + 1] = im * scale;
        }
    }
}

/* Loads a [..., 1|2] real/complex signal as complex pairs. */
static kiln_status load_complex(struct kiln_kctx *k, const struct kiln_tensor *x, const char *what,
                                double **out)
{
    double *d;
    KILN_TRY(kiln_load_f64(k, x, what, &d));
    if (x->dims[x->rank - 1] == 2) {
        *out = d;
        return KILN_OK;
    }
    size_t n = kiln_tensor_numel(x);
    double *c = kiln_calloc(n ? 2 * n : 1, sizeof *c);
    if (!c) {
        kiln_free(d);
        return kiln_kfail(k, KILN_E_NOMEM, "out of memory converting input '%s'", what);
    }
    for (size_t i = 0; i < n; i++) c[2 * i] = d[i];
    kiln_free(d);
    *out = c;
    return KILN_OK;
}

/* DFT and STFT: inverse, onesided (default 0 for DFT, 1 for STFT) and, before DFT-20, axis. */
struct dft_state {
    bool inverse, onesided;
    int64_t axis;
};

static kiln_status dft_prepare_with(struct kiln_kprep *p, int64_t onesided_default)
{
    struct dft_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->inverse = kiln_attr_i(&p->kc, "inverse", 0) != 0;
    s->onesided = kiln_attr_i(&p->kc, "onesided", onesided_default) != 0;
    s->axis = kiln_attr_i(&p->kc, "axis", 1);
    p->state = s;
    return KILN_OK;
}

static kiln_status dft_prepare(struct kiln_kprep *p) { return dft_prepare_with(p, 0); }
static kiln_status stft_prepare(struct kiln_kprep *p) { return dft_prepare_with(p, 1); }

static kiln_status dft_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, dft_prepare, dft_run);
    const struct dft_state *ds = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    char b[128];
    if (x->rank < 2 || (x->dims[x->rank - 1] != 1 && x->dims[x->rank - 1] != 2))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' has shape %s; expected "
                          "[..., 1] (real) or [..., 2] (complex)",
                          kiln_shape_str(x->rank, x->dims, b, sizeof b));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'input' is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    const bool inverse = ds->inverse;
    const bool onesided = ds->onesided;
    int64_t axis;
    bool present;
    if (k->opset < 20) {
        axis = ds->axis;
    } else {
        axis = -2;
        KILN_TRY(in_scalar_i64(k, 2, "axis", &axis, &present));
    }
    const int sr = x->rank - 1; /* signal rank, without the complex dim */
    if (axis < -x->rank || axis >= x->rank || (axis >= 0 ? axis : axis + x->rank) >= sr)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "axis is %lld; expected [%d, %d] or [0, %d]",
                          (long long)axis, -x->rank, -2, sr - 1);
    if (axis < 0) axis += x->rank;
    const size_t len = (size_t)x->dims[axis];
    const bool irfft = inverse && onesided;
    int64_t dl = irfft ? 2 * ((int64_t)len - 1) : (int64_t)len;
    KILN_TRY(in_scalar_i64(k, 1, "dft_length", &dl, &present));
    if (dl < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "dft_length is %lld; expected >= 1",
                          (long long)dl);
    const size_t N = (size_t)dl;
    const size_t nout = irfft ? N : onesided ? N / 2 + 1 : N;
    int64_t odims[KILN_MAX_RANK];
    memcpy(odims, x->dims, sizeof odims);
    odims[axis] = (int64_t)nout;
    odims[x->rank - 1] = irfft ? 1 : 2;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, odims, &y));
    const size_t ynum = kiln_tensor_numel(y);
    if (ynum == 0) return KILN_OK;

    size_t outer = 1, inner = 1;
    for (int d = 0; d < sr; d++) {
        if (d < axis) outer *= (size_t)x->dims[d];
        if (d > axis) inner *= (size_t)x->dims[d];
    }
    double *in = NULL, *tw = NULL, *out = NULL, *line = NULL;
    kiln_status st = load_complex(k, x, "input", &in);
    if (st) return st;
    if ((st = twiddles(k, N, &tw))) goto done;
    out = kiln_malloc(ynum * sizeof *out);
    if (irfft) line = kiln_malloc(2 * N * sizeof *line);
    if (!out || (irfft && !line)) {
        st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for the DFT output");
        goto done;
    }
    const size_t oc = irfft ? 1 : 2; /* output values per element */
    for (size_t a = 0; a < outer; a++) {
        for (size_t bb = 0; bb < inner; bb++) {
            const double *src = in + 2 * (a * len * inner + bb);
            double *dst = out + oc * (a * nout * inner + bb);
            if (irfft) {
                /* Rebuild the full Hermitian spectrum from the half given. */
                for (size_t j = 0; j < N; j++) {
                    double re = 0, im = 0;
                    if (j < len) {
                        re = src[2 * j * inner];
                        im = src[2 * j * inner + 1];
                    } else if (N - j < len) {
                        re = src[2 * (N - j) * inner];
                        im = -src[2 * (N - j) * inner + 1];
                    }
                    line[2 * j] = re;
                    line[2 * j + 1] = im;
                }
                dft_line(line, N, 1, dst, N, inner, N, tw, true, true);
            } else {
                dft_line(src, len, inner, dst, nout, inner, N, tw, inverse, false);
            }
        }
    }
    kiln_store_f64(y, out, ynum);
done:
    kiln_free(in);
    kiln_free(tw);
    kiln_free(out);
    kiln_free(line);
    return st;
}

static kiln_status stft_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, stft_prepare, stft_run);
    const struct dft_state *ds = k->state;
    const struct kiln_tensor *x, *win = kiln_in(k, 2);
    KILN_TRY(kiln_in_req(k, 0, &x));
    char b[128];
    if (x->rank != 3 || (x->dims[2] != 1 && x->dims[2] != 2))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'signal' has shape %s; expected "
                          "[batch, length, 1|2]", kiln_shape_str(x->rank, x->dims, b, sizeof b));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'signal' is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    int64_t step = 0, fl = -1;
    bool present;
    KILN_TRY(in_scalar_i64(k, 1, "frame_step", &step, &present));
    if (!present || step < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'frame_step' is %s; expected >= 1",
                          present ? "< 1" : "missing");
    KILN_TRY(in_scalar_i64(k, 3, "frame_length", &fl, &present));
    if (win && (win->rank != 1 || (present && win->dims[0] != fl)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'window' has shape %s; expected "
                          "[frame_length]", kiln_shape_str(win->rank, win->dims, b, sizeof b));
    if (!present) {
        if (!win)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "neither 'window' nor 'frame_length' is "
                              "given");
        fl = win->dims[0];
    }
    const int64_t L = x->dims[1];
    if (fl < 1 || fl > L)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "frame_length is %lld; expected [1, %lld] (the "
                          "signal length)", (long long)fl, (long long)L);
    const bool onesided = ds->onesided;
    const size_t N = (size_t)fl, frames = (size_t)(1 + (L - fl) / step);
    const size_t bins = onesided ? N / 2 + 1 : N, batch = (size_t)x->dims[0];
    int64_t odims[4] = {(int64_t)batch, (int64_t)frames, (int64_t)bins, 2};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 4, odims, &y));
    const size_t ynum = kiln_tensor_numel(y);
    if (ynum == 0) return KILN_OK;
    double *in = NULL, *w = NULL, *tw = NULL, *out = NULL, *frame = NULL;
    kiln_status st = load_complex(k, x, "signal", &in);
    if (st) return st;
    if (win && (st = kiln_load_f64(k, win, "window", &w))) goto done;
    if ((st = twiddles(k, N, &tw))) goto done;
    out = kiln_malloc(ynum * sizeof *out);
    frame = kiln_malloc(2 * N * sizeof *frame);
    if (!out || !frame) {
        st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for the STFT output");
        goto done;
    }
    for (size_t bt = 0; bt < batch; bt++) {
        for (size_t f = 0; f < frames; f++) {
            const double *src = in + 2 * (bt * (size_t)L + f * (size_t)step);
            for (size_t j = 0; j < N; j++) {
                double wj = w ? w[j] : 1.0;
                frame[2 * j] = src[2 * j] * wj;
                frame[2 * j + 1] = src[2 * j + 1] * wj;
            }
            dft_line(frame, N, 1, out + 2 * (bt * frames + f) * bins, bins, 1, N, tw, false, false);
        }
    }
    kiln_store_f64(y, out, ynum);
done:
    kiln_free(in);
    kiln_free(w);
    kiln_free(tw);
    kiln_free(out);
    kiln_free(frame);
    return st;
}

/* ------------------------------------------------------------------ windows */

/* The windows and MelWeightMatrix: output_datatype (checked at run) and periodic. */
struct window_state {
    int64_t output_datatype;
    bool periodic;
};

static kiln_status window_prepare(struct kiln_kprep *p)
{
    struct window_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->output_datatype = kiln_attr_i(&p->kc, "output_datatype", KILN_DTYPE_F32);
    s->periodic = kiln_attr_i(&p->kc, "periodic", 1) != 0;
    p->state = s;
    return KILN_OK;
}

/* a0 - a1*cos(2*pi*n/D) + a2*cos(4*pi*n/D), D = size (periodic) or size-1 (symmetric). */
static kiln_status window_run(struct kiln_kctx *k, double a0, double a1, double a2)
{
    const struct window_state *ws = k->state;
    int64_t size = 0;
    bool present;
    KILN_TRY(in_scalar_i64(k, 0, "size", &size, &present));
    if (!present) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'size' is missing");
    if (size < 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'size' is %lld; expected >= 0",
                          (long long)size);
    const int64_t odt = ws->output_datatype;
    if (!kiln_dtype_valid((int)odt) || odt != (int)odt ||
        (!kiln_dtype_is_real_float((kiln_dtype)odt) && !kiln_dtype_is_int((kiln_dtype)odt)))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "attribute 'output_datatype' is %lld; expected "
                          "a numeric type", (long long)odt);
    const bool periodic = ws->periodic;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, (kiln_dtype)odt, 1, &size, &y));
    if (size == 0) return KILN_OK;
    double *v = kiln_malloc((size_t)size * sizeof *v);
    if (!v) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for a window of %lld",
                              (long long)size);
    const double den = (double)(periodic ? size : size - 1);
    for (int64_t n = 0; n < size; n++) {
        double t = 2.0 * M_PI * (double)n / den;
        v[n] = a0 - a1 * cos(t) + a2 * cos(2.0 * t);
    }
    if (size == 1 && !periodic) v[0] = 1.0; /* 0/0 above; a one-point window is 1 */
    kiln_store_f64(y, v, (size_t)size);
    kiln_free(v);
    return KILN_OK;
}

static kiln_status hann_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, window_prepare, hann_run);
    return window_run(k, 0.5, 0.5, 0.0);
}
static kiln_status hamming_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, window_prepare, hamming_run);
    return window_run(k, 25.0 / 46.0, 21.0 / 46.0, 0.0);
}
static kiln_status blackman_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, window_prepare, blackman_run);
    return window_run(k, 0.42, 0.5, 0.08);
}

/* ------------------------------------------------------------------ MelWeightMatrix */

static kiln_status mel_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, window_prepare, mel_run);
    const struct window_state *ws = k->state;
    int64_t nmel = 0, dl = 0;
    double sr, lo, hi;
    bool p1, p2;
    KILN_TRY(in_scalar_i64(k, 0, "num_mel_bins", &nmel, &p1));
    KILN_TRY(in_scalar_i64(k, 1, "dft_length", &dl, &p2));
    if (!p1 || !p2 || nmel < 1 || dl < 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "inputs 'num_mel_bins' and 'dft_length' must "
                          "be given and >= 1");
    KILN_TRY(in_scalar_f64(k, 2, "sample_rate", &sr));
    KILN_TRY(in_scalar_f64(k, 3, "lower_edge_hertz", &lo));
    KILN_TRY(in_scalar_f64(k, 4, "upper_edge_hertz", &hi));
    if (sr <= 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'sample_rate' is %g; expected > 0", sr);
    const int64_t odt = ws->output_datatype;
    if (!kiln_dtype_valid((int)odt) || odt != (int)odt ||
        (!kiln_dtype_is_real_float((kiln_dtype)odt) && !kiln_dtype_is_int((kiln_dtype)odt)))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "attribute 'output_datatype' is %lld; expected "
                          "a numeric type", (long long)odt);
    const int64_t nspec = dl / 2 + 1;
    int64_t odims[2] = {nspec, nmel};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, (kiln_dtype)odt, 2, odims, &y));
    size_t n = (size_t)nspec * (size_t)nmel;
    double *w = kiln_calloc(n, sizeof *w);
    int64_t *edge = kiln_malloc((size_t)(nmel + 2) * sizeof *edge);
    if (!w || !edge) {
        kiln_free(w);
        kiln_free(edge);
        return kiln_kfail(k, KILN_E_NOMEM, "out of memory for a %lld x %lld matrix",
                          (long long)nspec, (long long)nmel);
    }
    /* Band edges evenly spaced in mel, mapped back to Hz and floored to DFT bins; note the
     * reference divides the mel range by num_mel_bins + 2, not + 1. */
    const double lo_mel = 2595.0 * log10(1.0 + lo / 700.0);
    const double hi_mel = 2595.0 * log10(1.0 + hi / 700.0);
    const double step = (hi_mel - lo_mel) / (double)(nmel + 2);
    for (int64_t i = 0; i < nmel + 2; i++) {
        double hz = 700.0 * (pow(10.0, ((double)i * step + lo_mel) / 2595.0) - 1.0);
        edge[i] = (int64_t)floor((double)(dl + 1) * hz / sr);
    }
#define MEL_SET(j, i, v)                                                                       \
    do {                                                                                       \
        if ((j) >= 0 && (j) < nspec) w[(size_t)(j) * (size_t)nmel + (size_t)(i)] = (v);        \
    } while (0)
    for (int64_t i = 0; i < nmel; i++) {
        int64_t l = edge[i], c = edge[i + 1], h = edge[i + 2];
        if (c == l) {
            MEL_SET(c, i, 1.0);
        } else {
            for (int64_t j = l; j <= c; j++) MEL_SET(j, i, (double)(j - l) / (double)(c - l));
        }
        if (h > c)
            for (int64_t j = c; j < h; j++) MEL_SET(j, i, (double)(h - j) / (double)(h - c));
    }
#undef MEL_SET
    kiln_store_f64(y, w, n);
    kiln_free(w);
    kiln_free(edge);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_scan[] = {
    {"CumSum", "", 11, KILN_OPSET_ANY, cumsum_run, cum_prepare, 0},
    {"CumProd", "", 26, KILN_OPSET_ANY, cumprod_run, cum_prepare, 0},
    {"TopK", "", 1, KILN_OPSET_ANY, topk_run, topk_prepare, 0},
    {"Einsum", "", 12, KILN_OPSET_ANY, einsum_run, einsum_prepare, 0},
    {"Det", "", 11, KILN_OPSET_ANY, det_run, NULL, 0},
    {"DFT", "", 17, KILN_OPSET_ANY, dft_run, dft_prepare, 0},
    {"STFT", "", 17, KILN_OPSET_ANY, stft_run, stft_prepare, 0},
    {"HannWindow", "", 17, KILN_OPSET_ANY, hann_run, window_prepare, 0},
    {"HammingWindow", "", 17, KILN_OPSET_ANY, hamming_run, window_prepare, 0},
    {"BlackmanWindow", "", 17, KILN_OPSET_ANY, blackman_run, window_prepare, 0},
    {"MelWeightMatrix", "", 17, KILN_OPSET_ANY, mel_run, window_prepare, 0},
    {0},
};
