/* shape_scan.c: shape and type rules for the ops of src/cpu/ops/scan.c: CumSum (11, 14),
 * CumProd (26), TopK (1, 10, 11, 24), Einsum (12), Det (11, 22), DFT (17, 20), STFT (17),
 * HannWindow, HammingWindow, BlackmanWindow and MelWeightMatrix (17).
 *
 * CumSum/CumProd: like the input. TopK: X's shape with the axis dim replaced by k (the
 * attribute, or input 1's value when known: symbolic k flows through), Values of X's type,
 * Indices int64. Einsum: every label's size from the operands (a 1 gives way to another
 * size, as the ellipsis dims broadcast), the output in the explicit order or, implicitly,
 * the ellipsis dims then the labels used once in ASCII order. Det: [..., M, M] -> [...].
 * DFT: the axis dim becomes dft_length (default: the input's; irfft: 2 * (len - 1)), or
 * dft_length / 2 + 1 when onesided (and not inverse); the last dim 2 (irfft: 1). STFT:
 * [batch, 1 + (L - frame_length) / frame_step, bins, 2], frame_length from input 3 or the
 * window's size. Windows: [size] of output_datatype (default float). MelWeightMatrix:
 * [dft_length / 2 + 1, num_mel_bins] of output_datatype.
 */
#include "infer/rule_util.h"
#include "infer/shape_nn.h"

/* Input i as one dim (a scalar or one-element integer tensor whose value is known or
 * symbolic); unknown otherwise. */
static struct kiln_dim scalar_dim(const struct kiln_ictx *c, size_t i)
{
    int n;
    const struct kiln_dim *v;
    if (i < c->n_in && kiln_ic_in(c, i) && kiln_ic_vals(c, i, &n, &v) && n == 1) return v[0];
    return kiln_dim_unknown();
}

static kiln_status like0(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!kiln_infer_shape_of(c, 0, &r, &d)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    return kiln_ic_set_tensor(c, 0, dt, r, d);
}

static kiln_status topk_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r, axis;
    const struct kiln_dim *x;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) {
        KILN_TRY(kiln_ic_set_tensor(c, 0, dt, -1, NULL));
        return c->n_out > 1 ? kiln_ic_set_tensor(c, 1, KILN_DTYPE_I64, -1, NULL) : KILN_OK;
    }
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", -1), r, &axis)) return KILN_OK;
    struct kiln_dim k = c->opset < 10 ? kiln_dim_int(kiln_ic_attr_i(c, "k", 0)) : scalar_dim(c, 1);
    if (kiln_dim_known(k) && kiln_dim_known(x[axis]) && k.value > x[axis].value) {
        kiln_ic_problem(c, "k = %lld is larger than the axis dim %lld", (long long)k.value,
                        (long long)x[axis].value);
        return KILN_OK;
    }
    struct kiln_dim y[KILN_MAX_RANK];
    memcpy(y, x, (size_t)r * sizeof *y);
    y[axis] = k;
    KILN_TRY(kiln_ic_set_tensor(c, 0, dt, r, y));
    return c->n_out > 1 ? kiln_ic_set_tensor(c, 1, KILN_DTYPE_I64, r, y) : KILN_OK;
}

/* ------------------------------------------------------------------ Einsum */

/* One operand's term: labels (letters; '.' stands for the whole ellipsis). */
struct term {
    char lab[64];
    int n;
    bool ell;
};

/* Parses s[0..len) into t; false when malformed. */
static bool parse_term(const char *s, size_t len, struct term *t)
{
    t->n = 0;
    t->ell = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == ' ') continue;
        if (ch == '.') {
            if (t->ell || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.') return false;
            t->ell = true;
            i += 2;
            ch = '.';
        } else if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
            return false;
        }
        if (t->n >= (int)sizeof t->lab) return false;
        t->lab[t->n++] = ch;
    }
    return true;
}

static kiln_status einsum_infer(struct kiln_ictx *c)
{
    static const size_t ins[] = {0};
    kiln_dtype dt = kiln_infer_dtype_of(c, 1, ins);
    const char *eq = kiln_ic_attr_s(c, "equation", "");
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
    struct term in[KILN_MAX_RANK], out;
    size_t n_terms = 0;
    for (size_t b = 0; b <= lhs_len;) {
        size_t e = b;
        while (e < lhs_len && eq[e] != ',') e++;
        if (n_terms >= KILN_MAX_RANK || !parse_term(eq + b, e - b, &in[n_terms])) goto bad;
        n_terms++;
        b = e + 1;
    }
    if (n_terms != c->n_in) {
        kiln_ic_problem(c, "equation '%s' has %zu operands; the node has %zu inputs", eq, n_terms, c->n_in);
        return KILN_OK;
    }
    if (arrow && !parse_term(arrow + 2, strlen(arrow + 2), &out)) goto bad;

    /* Label sizes, and the broadcast ellipsis dims. */
    struct kiln_dim size[128];
    bool seen[128] = {false};
    int used[128] = {0};
    struct kiln_dim ell[KILN_MAX_RANK];
    int n_ell = 0;
    bool bad_b = false;
    for (size_t i = 0; i < n_terms; i++) {
        int r;
        const struct kiln_dim *d;
        for (int j = 0; j < in[i].n; j++)
            if (in[i].lab[j] != '.') used[(int)in[i].lab[j]]++;
        if (!kiln_infer_shape_of(c, i, &r, &d)) {
            if (in[i].ell) return kiln_ic_set_tensor(c, 0, dt, -1, NULL); /* ellipsis rank unknown */
            continue;
        }
        int ne = r - (in[i].n - (in[i].ell ? 1 : 0));
        if (ne < 0 || (!in[i].ell && ne != 0)) {
            kiln_ic_problem(c, "operand %zu has %d dims; term %zu of '%s' needs %s%d", i, r, i, eq,
                            in[i].ell ? "at least " : "", in[i].n - (in[i].ell ? 1 : 0));
            return KILN_OK;
        }
        int k = 0;
        for (int j = 0; j < in[i].n; j++) {
            if (in[i].lab[j] == '.') {
                /* right-aligned broadcast of this operand's ellipsis dims */
                if (ne > n_ell) {
                    memmove(ell + (ne - n_ell), ell, (size_t)n_ell * sizeof *ell);
                    for (int f = 0; f < ne - n_ell; f++) ell[f] = kiln_dim_int(1);
                    n_ell = ne;
                }
                for (int e = 0; e < ne; e++)
                    ell[n_ell - ne + e] = ru_bcast_dim(ell[n_ell - ne + e], d[k + e], &bad_b);
                k += ne;
                continue;
            }
            int L = in[i].lab[j];
            struct kiln_dim dd = d[k++];
            if (!seen[L]) {
                size[L] = dd;
                seen[L] = true;
            } else {
                size[L] = ru_bcast_dim(size[L], dd, &bad_b);
            }
            if (bad_b) {
                kiln_ic_problem(c, "label '%c' has sizes that differ", L);
                return KILN_OK;
            }
        }
        if (bad_b) {
            kiln_ic_problem(c, "the ellipsis dims of the operands do not broadcast");
            return KILN_OK;
        }
    }
    for (int L = 0; L < 128; L++)
        if (used[L] && !seen[L]) size[L] = kiln_dim_unknown();

    if (!arrow) { /* implicit: ellipsis, then labels used once in ASCII order */
        out.n = 0;
        out.ell = false;
        for (size_t i = 0; i < n_terms; i++) out.ell |= in[i].ell;
        if (out.ell) out.lab[out.n++] = '.';
        for (int L = 0; L < 128; L++)
            if (used[L] == 1) out.lab[out.n++] = (char)L;
    }
    struct kiln_dim y[KILN_MAX_RANK];
    int r = 0;
    for (int j = 0; j < out.n; j++) {
        if (out.lab[j] == '.') {
            if (r + n_ell > KILN_MAX_RANK) goto bad;
            for (int e = 0; e < n_ell; e++) y[r++] = ell[e];
            continue;
        }
        int L = out.lab[j];
        if (!used[L]) {
            kiln_ic_problem(c, "output label '%c' of '%s' is in no operand", L, eq);
            return KILN_OK;
        }
        if (r >= KILN_MAX_RANK) goto bad;
        y[r++] = size[L];
    }
    return kiln_ic_set_tensor(c, 0, dt, r, y);
bad:
    kiln_ic_problem(c, "equation '%s' is malformed", eq);
    return KILN_OK;
}

/* ------------------------------------------------------------------ linear algebra, signal */

static kiln_status det_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r;
    const struct kiln_dim *x;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (r < 2 || kiln_dim_ne(x[r - 1], x[r - 2])) {
        kiln_ic_problem(c, "input X must be [..., M, M]");
        return KILN_OK;
    }
    return kiln_ic_set_tensor(c, 0, dt, r - 2, x);
}

/* DFT's output dims along axis ax into y (x's dims otherwise). */
static void dft_dims(struct kiln_ictx *c, int r, const struct kiln_dim *x, int ax, bool inverse,
                     bool onesided, struct kiln_dim *y)
{
    bool irfft = inverse && onesided;
    struct kiln_dim N = scalar_dim(c, 1);
    if (c->n_in < 2 || !kiln_ic_in(c, 1))
        N = irfft ? kiln_infer_dim_plus(c->inf, kiln_sym_mul(c->inf, x[ax], kiln_dim_int(2)), -2) : x[ax];
    memcpy(y, x, (size_t)r * sizeof *y);
    y[ax] = irfft || !onesided
                ? N
                : kiln_sym_add(c->inf, kiln_sym_floordiv(c->inf, N, kiln_dim_int(2)), kiln_dim_int(1));
    y[r - 1] = kiln_dim_int(irfft ? 1 : 2);
}

static kiln_status dft_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r;
    const struct kiln_dim *x;
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    if (r < 2 || (kiln_dim_known(x[r - 1]) && x[r - 1].value != 1 && x[r - 1].value != 2)) {
        kiln_ic_problem(c, "input has %d dims, last %lld; expected [..., 1 or 2]", r,
                        r ? (long long)x[r - 1].value : 0LL);
        return KILN_OK;
    }
    bool inverse = kiln_ic_attr_i(c, "inverse", 0) != 0, onesided = kiln_ic_attr_i(c, "onesided", 0) != 0;
    struct kiln_dim y[KILN_MAX_RANK], t[KILN_MAX_RANK];
    int64_t axis;
    if (c->opset < 20) {
        axis = kiln_ic_attr_i(c, "axis", 1);
    } else if (c->n_in > 2 && kiln_ic_in(c, 2)) {
        if (!ru_dim_int(scalar_dim(c, 2), &axis)) {
            /* axis unknown: what every possible axis (0 .. r-2) agrees on */
            dft_dims(c, r, x, 0, inverse, onesided, y);
            for (int ax = 1; ax < r - 1; ax++) {
                dft_dims(c, r, x, ax, inverse, onesided, t);
                for (int i = 0; i < r; i++)
                    if (!kiln_dim_eq(y[i], t[i])) y[i] = kiln_dim_unknown();
            }
            return kiln_ic_set_tensor(c, 0, dt, r, y);
        }
    } else {
        axis = -2;
    }
    if (axis < -r || axis >= r || (axis >= 0 ? axis : axis + r) >= r - 1) {
        kiln_ic_problem(c, "axis is %lld; expected [%d, -2] or [0, %d]", (long long)axis, -r, r - 2);
        return KILN_OK;
    }
    dft_dims(c, r, x, (int)(axis < 0 ? axis + r : axis), inverse, onesided, y);
    return kiln_ic_set_tensor(c, 0, dt, r, y);
}

static kiln_status stft_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r = -1, rw;
    const struct kiln_dim *x = NULL, *w;
    struct kiln_dim u = kiln_dim_unknown();
    if (kiln_infer_shape_of(c, 0, &r, &x) && r != 3) {
        kiln_ic_problem(c, "input signal has %d dims; expected 3 (batch, length, 1 or 2)", r);
        return KILN_OK;
    }
    struct kiln_dim step = scalar_dim(c, 1), fl = scalar_dim(c, 3);
    if (!kiln_dim_defined(fl) && c->n_in > 2 && kiln_infer_shape_of(c, 2, &rw, &w) && rw == 1) fl = w[0];
    bool onesided = kiln_ic_attr_i(c, "onesided", 1) != 0;
    struct kiln_dim frames = u;
    if (x && kiln_dim_defined(step) && step.value != 0)
        frames = kiln_sym_add(c->inf, kiln_sym_floordiv(c->inf, kiln_sym_sub(c->inf, x[1], fl), step),
                              kiln_dim_int(1));
    struct kiln_dim bins =
        onesided ? kiln_sym_add(c->inf, kiln_sym_floordiv(c->inf, fl, kiln_dim_int(2)), kiln_dim_int(1)) : fl;
    struct kiln_dim y[4] = {x ? x[0] : u, frames, bins, kiln_dim_int(2)};
    return kiln_ic_set_tensor(c, 0, dt, 4, y);
}

static kiln_dtype out_datatype(const struct kiln_ictx *c)
{
    if (!kiln_ic_attr_has(c, "output_datatype")) return KILN_DTYPE_F32;
    return ru_attr_dtype(c, "output_datatype");
}

static kiln_status window_infer(struct kiln_ictx *c)
{
    struct kiln_dim n = scalar_dim(c, 0);
    return kiln_ic_set_tensor(c, 0, out_datatype(c), 1, &n);
}

static kiln_status mel_infer(struct kiln_ictx *c)
{
    struct kiln_dim bins = scalar_dim(c, 0), dl = scalar_dim(c, 1);
    struct kiln_dim y[2] = {
        kiln_sym_add(c->inf, kiln_sym_floordiv(c->inf, dl, kiln_dim_int(2)), kiln_dim_int(1)), bins};
    return kiln_ic_set_tensor(c, 0, out_datatype(c), 2, y);
}

const struct kiln_infer_op kiln_infer_ops_scan[] = {
    {"CumSum", "", 11, 0, like0},
    {"CumProd", "", 26, 0, like0},
    {"TopK", "", 1, 0, topk_infer},
    {"Einsum", "", 12, 0, einsum_infer},
    {"Det", "", 11, 0, det_infer},
    {"DFT", "", 17, 0, dft_infer},
    {"STFT", "", 17, 0, stft_infer},
    {"HannWindow", "", 17, 0, window_infer},
    {"HammingWindow", "", 17, 0, window_infer},
    {"BlackmanWindow", "", 17, 0, window_infer},
    {"MelWeightMatrix", "", 17, 0, mel_infer},
    {0},
};
