/* shape_nn.h: helpers shared by the nn shape rules (shape_conv.c, shape_pool.c): the output
 * size of one sliding-window dim and the reading of the window attributes.
 *
 * Everything here works on kiln_dim, so a symbolic input size gives a symbolic output
 * size (floor((H + pb + pe - dk) / s) + 1 written through kiln_sym_*) and a known one gives
 * the number. Also the small input readers the nn/ml/sequence/control rules share.
 * Private to src/infer.
 */
#ifndef KILN_INFER_SHAPE_NN_H
#define KILN_INFER_SHAPE_NN_H

#include <string.h>

#include "infer/infer.h"

/* Input i's shape whatever its element type: true with *rank >= 0 and *dims (rank entries)
 * when input i is a tensor of known rank. */
static inline bool kiln_infer_shape_of(const struct kiln_ictx *c, size_t i, int *rank,
                                       const struct kiln_dim **dims)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    if (!v || v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0) return false;
    *rank = v->type.rank;
    *dims = v->type.dims;
    return true;
}

/* The first known element type among inputs in[0..n) (UNDEFINED when none). */
static inline kiln_dtype kiln_infer_dtype_of(const struct kiln_ictx *c, size_t n, const size_t *in)
{
    for (size_t k = 0; k < n; k++) {
        kiln_dtype dt = kiln_ic_in_dtype(c, in[k]);
        if (dt != KILN_DTYPE_UNDEFINED) return dt;
    }
    return KILN_DTYPE_UNDEFINED;
}

/* Storage for a merged type (kiln_infer_merge): up to 4 levels of nesting. */
struct kiln_merge_buf {
    struct kiln_type t[4];
    struct kiln_dim d[4][KILN_MAX_RANK];
    int used;
};

/* The type both a and b satisfy (either may be NULL or of kind NONE: the other wins):
 * equal element types kept, else UNDEFINED; equal ranks kept, else unknown rank; equal dims
 * kept, different ones unknown; sequences and optionals merged element-wise. The result
 * points into buf (and into a/b for what is not merged); NULL when nothing is known. */
static inline const struct kiln_type *kiln_infer_merge(const struct kiln_type *a, const struct kiln_type *b,
                                                       struct kiln_merge_buf *buf)
{
    if (!a || a->kind == KILN_TYPE_NONE) return b && b->kind != KILN_TYPE_NONE ? b : NULL;
    if (!b || b->kind == KILN_TYPE_NONE) return a;
    if (buf->used >= 4) return NULL;
    struct kiln_type *t = &buf->t[buf->used];
    struct kiln_dim *d = buf->d[buf->used++];
    memset(t, 0, sizeof *t);
    if (a->kind != b->kind) return NULL;
    t->kind = a->kind;
    t->elem = a->elem == b->elem ? a->elem : KILN_DTYPE_UNDEFINED;
    if (a->kind == KILN_TYPE_SEQUENCE || a->kind == KILN_TYPE_OPTIONAL) {
        const struct kiln_type *in = kiln_infer_merge(a->inner, b->inner, buf);
        if (!in) return NULL;
        t->inner = (struct kiln_type *)in;
        return t;
    }
    if (a->kind != KILN_TYPE_TENSOR && a->kind != KILN_TYPE_SPARSE_TENSOR) return a;
    t->rank = a->rank == b->rank ? a->rank : -1;
    if (t->rank > KILN_MAX_RANK) t->rank = -1;
    for (int i = 0; i < t->rank; i++)
        d[i] = kiln_dim_eq(a->dims[i], b->dims[i]) ? a->dims[i] : kiln_dim_unknown();
    t->dims = t->rank >= 0 ? d : NULL;
    return t;
}

/* Deep copy of src (not inside buf) into buf, from buf->used on; NULL when src is NULL or
 * nests deeper than buf holds. */
static inline const struct kiln_type *kiln_infer_type_copy(const struct kiln_type *src,
                                                           struct kiln_merge_buf *buf)
{
    if (!src || buf->used >= 4) return NULL;
    struct kiln_type *t = &buf->t[buf->used];
    struct kiln_dim *d = buf->d[buf->used++];
    *t = *src;
    if (src->kind == KILN_TYPE_SEQUENCE || src->kind == KILN_TYPE_OPTIONAL) {
        t->inner = src->inner ? (struct kiln_type *)kiln_infer_type_copy(src->inner, buf) : NULL;
        return t;
    }
    if (src->rank > KILN_MAX_RANK) t->rank = -1;
    if (t->rank > 0) memcpy(d, src->dims, (size_t)t->rank * sizeof *d);
    t->dims = t->rank >= 0 ? d : NULL;
    return t;
}

/* Whether types a and b say the same (kind, element type, rank, dims; nested too). */
static inline bool kiln_infer_type_same(const struct kiln_type *a, const struct kiln_type *b)
{
    if (!a || !b) return a == b;
    if (a->kind != b->kind || a->elem != b->elem) return false;
    if (a->kind == KILN_TYPE_SEQUENCE || a->kind == KILN_TYPE_OPTIONAL)
        return kiln_infer_type_same(a->inner, b->inner);
    if (a->kind != KILN_TYPE_TENSOR) return true;
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (!kiln_dim_eq(a->dims[i], b->dims[i]) &&
            (kiln_dim_defined(a->dims[i]) || kiln_dim_defined(b->dims[i])))
            return false;
    return true;
}

enum kiln_autopad {
    KILN_AUTOPAD_NOTSET,
    KILN_AUTOPAD_VALID,
    KILN_AUTOPAD_SAME_UPPER,
    KILN_AUTOPAD_SAME_LOWER,
    KILN_AUTOPAD_BAD
};

/* The window attributes of a node with nd spatial dims, defaults filled in. */
struct kiln_window {
    int nd;
    int64_t k[KILN_MAX_RANK], s[KILN_MAX_RANK], d[KILN_MAX_RANK];
    int64_t pb[KILN_MAX_RANK], pe[KILN_MAX_RANK];
    enum kiln_autopad ap;
    bool ceil_mode;
};

static inline enum kiln_autopad kiln_infer_autopad(const struct kiln_ictx *c)
{
    const char *s = kiln_ic_attr_s(c, "auto_pad", "NOTSET");
    if (!strcmp(s, "NOTSET") || !*s) return KILN_AUTOPAD_NOTSET;
    if (!strcmp(s, "VALID")) return KILN_AUTOPAD_VALID;
    if (!strcmp(s, "SAME_UPPER")) return KILN_AUTOPAD_SAME_UPPER;
    if (!strcmp(s, "SAME_LOWER")) return KILN_AUTOPAD_SAME_LOWER;
    return KILN_AUTOPAD_BAD;
}

/* Reads strides, dilations, pads, auto_pad and ceil_mode for nd spatial dims; kernel sizes
 * from the kernel_shape attribute, else from ks (may be NULL: then kernel_shape is
 * required). False (with a problem reported) when an attribute has the wrong length or a
 * value out of range; an unknown kernel size (ks entry < 0) is kept as -1. */
static inline bool kiln_infer_window(struct kiln_ictx *c, int nd, const int64_t *ks, struct kiln_window *w)
{
    const int64_t *v;
    size_t n;
    memset(w, 0, sizeof *w);
    w->nd = nd;
    n = kiln_ic_attr_ints(c, "kernel_shape", &v);
    if (n && n != (size_t)nd) {
        kiln_ic_problem(c, "kernel_shape has %zu values; expected %d", n, nd);
        return false;
    }
    if (!n && !ks) {
        kiln_ic_problem(c, "attribute kernel_shape is required");
        return false;
    }
    for (int i = 0; i < nd; i++) w->k[i] = n ? v[i] : ks[i];
    const char *const names[2] = {"strides", "dilations"};
    int64_t *dst[2] = {w->s, w->d};
    for (int a = 0; a < 2; a++) {
        n = kiln_ic_attr_ints(c, names[a], &v);
        if (n && n != (size_t)nd) {
            kiln_ic_problem(c, "%s has %zu values; expected %d", names[a], n, nd);
            return false;
        }
        for (int i = 0; i < nd; i++) {
            dst[a][i] = n ? v[i] : 1;
            if (dst[a][i] < 1) {
                kiln_ic_problem(c, "%s[%d] is %lld; expected >= 1", names[a], i, (long long)dst[a][i]);
                return false;
            }
        }
    }
    n = kiln_ic_attr_ints(c, "pads", &v);
    if (n && n != 2 * (size_t)nd) {
        kiln_ic_problem(c, "pads has %zu values; expected %d", n, 2 * nd);
        return false;
    }
    for (int i = 0; i < nd; i++) {
        w->pb[i] = n ? v[i] : 0;
        w->pe[i] = n ? v[nd + i] : 0;
    }
    /* Bounds keep the arithmetic below (dk = (k - 1) * d + 1, in + pb + pe) far from
     * overflow; real models are many orders of magnitude inside them. */
    for (int i = 0; i < nd; i++) {
        const int64_t lim = INT64_C(1) << 31;
        if (w->k[i] > lim || w->s[i] > lim || w->d[i] > lim || w->pb[i] > lim || w->pb[i] < -lim ||
            w->pe[i] > lim || w->pe[i] < -lim || (w->k[i] < 0 && w->k[i] != -1)) {
            kiln_ic_problem(c,
                            "spatial dim %d: kernel %lld, stride %lld, dilation %lld or pads %lld, %lld "
                            "out of range",
                            i, (long long)w->k[i], (long long)w->s[i], (long long)w->d[i],
                            (long long)w->pb[i], (long long)w->pe[i]);
            return false;
        }
    }
    w->ap = kiln_infer_autopad(c);
    if (w->ap == KILN_AUTOPAD_BAD) {
        kiln_ic_problem(c, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID",
                        kiln_ic_attr_s(c, "auto_pad", ""));
        return false;
    }
    if (w->ap == KILN_AUTOPAD_VALID)
        for (int i = 0; i < nd; i++) w->pb[i] = w->pe[i] = 0;
    w->ceil_mode = kiln_ic_attr_i(c, "ceil_mode", 0) != 0;
    return true;
}

/* A convolution's group attribute and window (kiln_infer_window) for nd spatial dims, the
 * kernel sizes read from weight dims w[2..2+nd) (w NULL: not known). False (with a problem
 * reported) when group < 1 or a window attribute is malformed. */
static inline bool kiln_infer_conv_window(struct kiln_ictx *c, int nd, const struct kiln_dim *w,
                                          int64_t *group, struct kiln_window *win)
{
    *group = kiln_ic_attr_i(c, "group", 1);
    if (*group < 1) {
        kiln_ic_problem(c, "group is %lld; expected >= 1", (long long)*group);
        return false;
    }
    int64_t ks[KILN_MAX_RANK];
    for (int i = 0; i < nd; i++) ks[i] = w && kiln_dim_known(w[2 + i]) ? w[2 + i].value : -1;
    return kiln_infer_window(c, nd, ks, win);
}

/* d + k for a constant k of either sign (kiln_dim_int takes only sizes >= 0). */
static inline struct kiln_dim kiln_infer_dim_plus(struct kiln_infer *inf, struct kiln_dim d, int64_t k)
{
    if (kiln_dim_known(d)) return d.value + k >= 0 ? kiln_dim_int(d.value + k) : kiln_dim_unknown();
    if (k == 0) return d;
    return k > 0 ? kiln_sym_add(inf, d, kiln_dim_int(k)) : kiln_sym_sub(inf, d, kiln_dim_int(-k));
}

/* Output size of spatial dim i for input size in (Conv and the pools):
 *   SAME_*: ceil(in / s);
 *   else:   floor-or-ceil((in + pb + pe - dk) / s) + 1, dk = (k - 1) * d + 1, where in ceil
 *           mode a last window starting past in + pb is dropped (PyTorch and the opset 19+
 *           reference; src/cpu/ops/pool.c does the same). For a symbolic in that drop is
 *           decidable only when it can never happen (s <= dk - pe); otherwise unknown.
 * A known result below 1 is reported and gives unknown. */
static inline struct kiln_dim kiln_infer_window_out(struct kiln_ictx *c, const struct kiln_window *w, int i,
                                                    struct kiln_dim in)
{
    struct kiln_infer *inf = c->inf;
    struct kiln_dim s = kiln_dim_int(w->s[i]);
    if (w->ap == KILN_AUTOPAD_SAME_UPPER || w->ap == KILN_AUTOPAD_SAME_LOWER)
        return kiln_sym_ceildiv(inf, in, s);
    if (w->k[i] < 0) return kiln_dim_unknown();
    int64_t dk = (w->k[i] - 1) * w->d[i] + 1;
    if (kiln_dim_known(in)) {
        int64_t span = in.value + w->pb[i] + w->pe[i] - dk;
        if (span < 0) {
            kiln_ic_problem(c, "spatial dim %d: window %lld is larger than the padded input %lld", i,
                            (long long)dk, (long long)(in.value + w->pb[i] + w->pe[i]));
            return kiln_dim_unknown();
        }
        int64_t o = (w->ceil_mode ? (span + w->s[i] - 1) / w->s[i] : span / w->s[i]) + 1;
        if (w->ceil_mode && (o - 1) * w->s[i] >= in.value + w->pb[i]) o--;
        return kiln_dim_int(o);
    }
    if (!kiln_dim_defined(in)) return in;
    struct kiln_dim span = kiln_infer_dim_plus(inf, in, w->pb[i] + w->pe[i] - dk);
    if (w->ceil_mode) {
        if (w->s[i] > dk - w->pe[i]) return kiln_dim_unknown();
        return kiln_sym_add(inf, kiln_sym_ceildiv(inf, span, s), kiln_dim_int(1));
    }
    return kiln_sym_add(inf, kiln_sym_floordiv(inf, span, s), kiln_dim_int(1));
}

/* kiln.ConvNhwc: Conv-11 with X and Y channels-last (shape_conv.c). */
kiln_status kiln_infer_conv_nhwc(struct kiln_ictx *c);
/* kiln.MaxPoolNhwc / AveragePoolNhwc: the 2-D pool rule with X and Y channels-last
 * (shape_pool.c). */
kiln_status kiln_infer_pool_nhwc(struct kiln_ictx *c);

#endif /* KILN_INFER_SHAPE_NN_H */
