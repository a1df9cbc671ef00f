/* rule_util.h: small helpers shared by the rule families of the elementwise, reduce, norm,
 * quant and misc files (shape_elementwise.c, shape_reduce.c, shape_norm.c, shape_quant.c,
 * shape_misc.c). Private to src/infer; static inline so each file stays self-contained.
 */
#ifndef KILN_INFER_RULE_UTIL_H
#define KILN_INFER_RULE_UTIL_H

#include <string.h>

#include "infer/infer.h"

/* Data dependence: the core marks an output data-dependent when an input is and the output
 * has dims that are not known; rules mark only the outputs whose fresh symbols they make. */

/* Output o: a tensor of element type dt (UNDEFINED: input i's) with input i's shape, or of
 * unknown rank when input i's shape is not known. Nothing is set when neither the element
 * type nor the shape is known. */
static inline kiln_status ru_like(struct kiln_ictx *c, size_t o, size_t i, kiln_dtype dt)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    if (dt == KILN_DTYPE_UNDEFINED) dt = kiln_ic_in_dtype(c, i);
    if (!v || v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0) {
        if (dt == KILN_DTYPE_UNDEFINED) return KILN_OK;
        KILN_TRY(kiln_ic_set_tensor(c, o, dt, -1, NULL));
    } else {
        KILN_TRY(kiln_ic_set_tensor(c, o, dt, v->type.rank, v->type.dims));
    }
    return KILN_OK;
}

/* Output o: a tensor of dt with rank dims (rank -1: unknown rank); dd: data-dependent. */
static inline kiln_status ru_set(struct kiln_ictx *c, size_t o, kiln_dtype dt, int rank,
                                 const struct kiln_dim *dims, bool dd)
{
    KILN_TRY(kiln_ic_set_tensor(c, o, dt, rank, rank < 0 ? NULL : dims));
    if (dd) kiln_ic_data_dependent(c, o);
    return KILN_OK;
}

/* Input i's shape when its rank is known (element type may be unknown): rank and dims;
 * false otherwise (rank -1, dims NULL). */
static inline bool ru_shape(const struct kiln_ictx *c, size_t i, int *rank, const struct kiln_dim **dims)
{
    const struct kiln_vtype *v = kiln_ic_in(c, i);
    *rank = -1;
    *dims = NULL;
    if (!v || v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0) return false;
    *rank = v->type.rank;
    *dims = v->type.dims;
    return true;
}

/* Output o: input i's shape with element type dt, as ru_like; but when dt is not known
 * (UNDEFINED) the output gets input i's shape only, element type left unknown (nothing when
 * that shape is not known either), instead of input i's element type. */
static inline kiln_status ru_like_dt(struct kiln_ictx *c, size_t o, size_t i, kiln_dtype dt)
{
    if (dt != KILN_DTYPE_UNDEFINED) return ru_like(c, o, i, dt);
    int r;
    const struct kiln_dim *d;
    if (ru_shape(c, i, &r, &d)) return ru_set(c, o, KILN_DTYPE_UNDEFINED, r, d, false);
    return KILN_OK;
}

/* A dim as a plain integer (possibly negative: small integer tensors' elements). */
static inline bool ru_dim_int(struct kiln_dim d, int64_t *v)
{
    return kiln_dim_int_value(d, v);
}

/* The integer v (possibly negative) as a dim. */
static inline struct kiln_dim ru_int_dim(struct kiln_ictx *c, int64_t v)
{
    return kiln_sym_int(c->inf, v);
}

/* Element type named by a Cast-style `to` attribute: the enum value, or (opset 1) the
 * TensorProto.DataType spelling. UNDEFINED when absent or not a type. */
static inline kiln_dtype ru_attr_dtype(const struct kiln_ictx *c, const char *name)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    static const struct {
        const char *name;
        kiln_dtype dt;
    } names[] = {
        {"FLOAT", KILN_DTYPE_F32},   {"UINT8", KILN_DTYPE_U8},      {"INT8", KILN_DTYPE_I8},
        {"UINT16", KILN_DTYPE_U16},  {"INT16", KILN_DTYPE_I16},     {"INT32", KILN_DTYPE_I32},
        {"INT64", KILN_DTYPE_I64},   {"STRING", KILN_DTYPE_STRING}, {"BOOL", KILN_DTYPE_BOOL},
        {"FLOAT16", KILN_DTYPE_F16}, {"DOUBLE", KILN_DTYPE_F64},    {"UINT32", KILN_DTYPE_U32},
        {"UINT64", KILN_DTYPE_U64},  {"BFLOAT16", KILN_DTYPE_BF16},
    };
    if (!a) return KILN_DTYPE_UNDEFINED;
    if (a->type == KILN_ATTR_STRING && a->s) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(a->s, names[i].name) == 0) return names[i].dt;
        return KILN_DTYPE_UNDEFINED;
    }
    if (a->type != KILN_ATTR_INT || a->i != (int)a->i || !kiln_dtype_valid((int)a->i))
        return KILN_DTYPE_UNDEFINED;
    return (kiln_dtype)a->i;
}

/* Multidirectional broadcast of two dims: a definite result or unknown; *bad when both are
 * known, different and neither is 1. */
static inline struct kiln_dim ru_bcast_dim(struct kiln_dim a, struct kiln_dim b, bool *bad)
{
    if (a.value == 1) return b;
    if (b.value == 1) return a;
    if (kiln_dim_eq(a, b)) return a;
    if (kiln_dim_known(a) && kiln_dim_known(b)) {
        *bad = true;
        return kiln_dim_unknown();
    }
    /* a symbol against a known size > 1: the known size (the symbol is that size or 1) */
    if (kiln_dim_known(a) && a.value > 1) return a;
    if (kiln_dim_known(b) && b.value > 1) return b;
    return kiln_dim_unknown();
}

/* Broadcasts dim lists a[0..ra) and b[0..rb) into out (rank max(ra, rb)); false (with a
 * problem naming `what`) when they cannot broadcast. */
static inline bool ru_bcast(struct kiln_ictx *c, const char *what, int ra, const struct kiln_dim *a, int rb,
                            const struct kiln_dim *b, int *rank, struct kiln_dim *out)
{
    int r = ra > rb ? ra : rb;
    bool bad = false;
    for (int k = 0; k < r; k++) {
        int ia = k - (r - ra), ib = k - (r - rb);
        struct kiln_dim da = ia >= 0 ? a[ia] : kiln_dim_int(1);
        struct kiln_dim db = ib >= 0 ? b[ib] : kiln_dim_int(1);
        out[k] = ru_bcast_dim(da, db, &bad);
        if (bad) {
            kiln_ic_problem(c, "%s: dims %lld and %lld (at %d from the end) cannot broadcast", what,
                            (long long)da.value, (long long)db.value, r - k);
            return false;
        }
    }
    *rank = r;
    return true;
}

/* Output shape of numpy matmul for a[0..ra) x b[0..rb) into out; false (with a problem)
 * when the inner dims differ or the batch dims cannot broadcast. */
static inline bool ru_matmul_shape(struct kiln_ictx *c, int ra, const struct kiln_dim *a, int rb,
                                   const struct kiln_dim *b, int *rank, struct kiln_dim *out)
{
    if (ra < 1 || rb < 1) {
        kiln_ic_problem(c, "matmul operands need rank >= 1 (got %d and %d)", ra, rb);
        return false;
    }
    struct kiln_dim ka = a[ra - 1], kb = rb == 1 ? b[0] : b[rb - 2];
    if (kiln_dim_ne(ka, kb)) {
        kiln_ic_problem(c, "inner dims differ: %lld and %lld", (long long)ka.value, (long long)kb.value);
        return false;
    }
    int r = 0;
    int ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    if (!ru_bcast(c, "batch dims", ba, a, bb, b, &r, out)) return false;
    if (ra >= 2) out[r++] = a[ra - 2];
    if (rb >= 2) out[r++] = b[rb - 1];
    *rank = r;
    return true;
}

#endif /* KILN_INFER_RULE_UTIL_H */
