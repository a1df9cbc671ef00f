/* shape_elementwise.c: shape-inference rules for the elementwise ops (family `elementwise`):
 * the ops of src/cpu/ops/unary.c, binary.c (Where is in shape_shape.c) and cast.c, plus
 * BitCast from misc.c.
 *
 * Unary ops keep their input's type; IsNaN and IsInf give bool. Binary ops broadcast
 * multidirectionally from opset 7 on (the variadic Sum/Mean/Max/Min from 8); before that
 * the `broadcast` attribute made B follow A, so the output has A's shape. Comparisons and
 * And/Or/Xor give bool; Pow keeps its base's type (the exponent's may differ); every other
 * binary op needs both inputs of one type and reports when they differ. Cast takes the type
 * of `to` (a type name in opset 1), CastLike input 1's. PRelu and Clip keep X's type.
 *
 * Small integer tensors carry their elements as dims (shape arithmetic): Identity, Cast
 * between integer types, CastLike, Neg, Abs, Add/Sub/Mul/Div/Mod, Max/Min and Sum compute
 * them elementwise (Div truncates toward zero as ONNX's integer Div does; symbolic operands
 * go through kiln_sym_*).
 */
#include "infer/rule_util.h"

/* ------------------------------------------------------------------ element values */

enum vop { V_ADD, V_SUB, V_MUL, V_DIV, V_MOD, V_MAX, V_MIN };

static bool int_dtype(kiln_dtype dt)
{
    return dt == KILN_DTYPE_I64 || dt == KILN_DTYPE_I32 || dt == KILN_DTYPE_I16 || dt == KILN_DTYPE_I8 ||
           dt == KILN_DTYPE_U64 || dt == KILN_DTYPE_U32 || dt == KILN_DTYPE_U16 || dt == KILN_DTYPE_U8;
}

/* Whether integer type dt holds x. */
static bool fits(kiln_dtype dt, int64_t x)
{
    switch (dt) {
    case KILN_DTYPE_I8:
        return x >= INT8_MIN && x <= INT8_MAX;
    case KILN_DTYPE_U8:
        return x >= 0 && x <= UINT8_MAX;
    case KILN_DTYPE_I16:
        return x >= INT16_MIN && x <= INT16_MAX;
    case KILN_DTYPE_U16:
        return x >= 0 && x <= UINT16_MAX;
    case KILN_DTYPE_I32:
        return x >= INT32_MIN && x <= INT32_MAX;
    case KILN_DTYPE_U32:
        return x >= 0 && x <= (int64_t)UINT32_MAX;
    case KILN_DTYPE_U64:
        return x >= 0;
    default:
        return true;
    }
}

static struct kiln_dim vop_apply(struct kiln_ictx *c, enum vop op, struct kiln_dim a, struct kiln_dim b)
{
    int64_t x = 0, y = 0;
    bool ix = ru_dim_int(a, &x), iy = ru_dim_int(b, &y);
    if (ix && iy) {
        /* plain integers: exact, with ONNX's integer semantics (no overflow checks needed for
         * dims; refuse the cases that would overflow int64) */
        switch (op) {
        case V_ADD:
            if ((y > 0 && x > INT64_MAX - y) || (y < 0 && x < INT64_MIN - y)) break;
            return ru_int_dim(c, x + y);
        case V_SUB:
            if ((y < 0 && x > INT64_MAX + y) || (y > 0 && x < INT64_MIN + y)) break;
            return ru_int_dim(c, x - y);
        case V_MUL:
            if (x != 0 && y != 0 && (x > INT32_MAX || x < INT32_MIN || y > INT32_MAX || y < INT32_MIN)) break;
            return ru_int_dim(c, x * y);
        case V_DIV:
            if (y == 0 || (x == INT64_MIN && y == -1)) break;
            return ru_int_dim(c, x / y); /* truncation, as integer Div */
        case V_MOD: {
            if (y == 0 || (x == INT64_MIN && y == -1)) break;
            int64_t r = x % y; /* fmod=0: the result takes the divisor's sign */
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            return ru_int_dim(c, r);
        }
        case V_MAX:
            return ru_int_dim(c, x > y ? x : y);
        case V_MIN:
            return ru_int_dim(c, x < y ? x : y);
        }
        return kiln_dim_unknown();
    }
    /* symbolic dims stand for sizes (>= 0) */
    switch (op) {
    case V_ADD:
        return kiln_sym_add(c->inf, a, b);
    case V_SUB:
        return kiln_sym_sub(c->inf, a, b);
    case V_MUL:
        return kiln_sym_mul(c->inf, a, b);
    case V_DIV:
        if (iy && y <= 0) return kiln_dim_unknown();
        if (ix && x < 0) return kiln_dim_unknown();
        return kiln_sym_floordiv(c->inf, a, b);
    case V_MOD:
        return kiln_dim_unknown();
    case V_MAX:
        if ((ix && x < 0) || (iy && y < 0)) return ix && x < 0 ? b : a;
        return kiln_sym_max(c->inf, a, b);
    case V_MIN:
        if ((ix && x < 0) || (iy && y < 0)) return ix && x < 0 ? a : b;
        return kiln_sym_min(c->inf, a, b);
    }
    return kiln_dim_unknown();
}

/* Output 0's elements from inputs in[0..n) combined with op, when output 0 is a small
 * integer tensor and every input's elements are known. */
static kiln_status vals_fold(struct kiln_ictx *c, enum vop op, size_t n, kiln_dtype out_dt, int rank,
                             const struct kiln_dim *dims)
{
    if (!int_dtype(out_dt) || rank > 1 || n == 0) return KILN_OK;
    int64_t count = 1;
    if (rank == 1) {
        if (!kiln_dim_known(dims[0]) || dims[0].value > KILN_INFER_MAX_VALS) return KILN_OK;
        count = dims[0].value;
    }
    struct kiln_dim acc[KILN_INFER_MAX_VALS];
    for (size_t j = 0; j < n; j++) {
        int nv;
        const struct kiln_dim *v;
        if (!kiln_ic_vals(c, j, &nv, &v)) return KILN_OK;
        if (nv != 1 && nv != count) return KILN_OK;
        for (int64_t k = 0; k < count; k++) {
            struct kiln_dim e = v[nv == 1 ? 0 : k];
            acc[k] = j == 0 ? e : vop_apply(c, op, acc[k], e);
        }
    }
    for (int64_t k = 0; k < count; k++) {
        int64_t x;
        if (ru_dim_int(acc[k], &x) && !fits(out_dt, x)) acc[k] = kiln_dim_unknown();
    }
    return kiln_ic_set_vals(c, 0, (int)count, acc);
}

/* Output 0's elements as input 0's (Identity, integer Cast), mapped by neg/abs when asked. */
static kiln_status vals_copy(struct kiln_ictx *c, kiln_dtype out_dt, int map)
{
    int nv;
    const struct kiln_dim *v;
    if (!int_dtype(out_dt) || !int_dtype(kiln_ic_in_dtype(c, 0)) || !kiln_ic_vals(c, 0, &nv, &v))
        return KILN_OK;
    struct kiln_dim out[KILN_INFER_MAX_VALS];
    if (nv > KILN_INFER_MAX_VALS) return KILN_OK;
    for (int k = 0; k < nv; k++) {
        int64_t x;
        if (!ru_dim_int(v[k], &x) || x == INT64_MIN) {
            /* a symbolic size is >= 0: Abs keeps it; Neg gives 0 - it */
            out[k] = map != 1 ? v[k] : kiln_sym_sub(c->inf, kiln_dim_int(0), v[k]);
            continue;
        }
        if (map == 1) x = -x;
        if (map == 2 && x < 0) x = -x;
        /* a value the output type cannot hold would wrap: not a size any more */
        out[k] = fits(out_dt, x) ? ru_int_dim(c, x) : kiln_dim_unknown();
    }
    return kiln_ic_set_vals(c, 0, nv, out);
}

/* ------------------------------------------------------------------ unary */

static kiln_status rule_unary(struct kiln_ictx *c)
{
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

static kiln_status rule_unary_bool(struct kiln_ictx *c)
{
    return ru_like(c, 0, 0, KILN_DTYPE_BOOL);
}

static kiln_status rule_neg(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    return vals_copy(c, kiln_ic_in_dtype(c, 0), 1);
}

static kiln_status rule_abs(struct kiln_ictx *c)
{
    KILN_TRY(ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED));
    return vals_copy(c, kiln_ic_in_dtype(c, 0), 2);
}

/* Identity takes any type (tensor, sequence, optional) and keeps the elements it carries. */
static kiln_status rule_identity(struct kiln_ictx *c)
{
    const struct kiln_vtype *v = kiln_ic_in(c, 0);
    if (!v || v->type.kind == KILN_TYPE_NONE) return KILN_OK;
    KILN_TRY(kiln_ic_set_like(c, 0, 0));
    if (v->type.kind == KILN_TYPE_TENSOR) return vals_copy(c, v->type.elem, 0);
    return KILN_OK;
}

static kiln_status rule_cast(struct kiln_ictx *c)
{
    kiln_dtype to = ru_attr_dtype(c, "to");
    if (to == KILN_DTYPE_UNDEFINED) {
        kiln_ic_problem(c, "attribute 'to' is missing or not a data type");
        return KILN_OK;
    }
    KILN_TRY(ru_like(c, 0, 0, to));
    return vals_copy(c, to, 0);
}

static kiln_status rule_castlike(struct kiln_ictx *c)
{
    kiln_dtype to = kiln_ic_in_dtype(c, 1);
    KILN_TRY(ru_like_dt(c, 0, 0, to));
    if (to == KILN_DTYPE_UNDEFINED) return KILN_OK; /* the type is not known: only the shape */
    return vals_copy(c, to, 0);
}

/* BitCast (26): equal widths keep the shape; a narrower `to` appends a dim of the width
 * ratio; a wider one needs the last dim to be the ratio and drops it. */
static kiln_status rule_bitcast(struct kiln_ictx *c)
{
    kiln_dtype to = ru_attr_dtype(c, "to"), from = kiln_ic_in_dtype(c, 0);
    if (to == KILN_DTYPE_UNDEFINED) {
        kiln_ic_problem(c, "attribute 'to' is missing or not a data type");
        return KILN_OK;
    }
    int r;
    const struct kiln_dim *d;
    bool dd = false;
    if (from == KILN_DTYPE_UNDEFINED || !ru_shape(c, 0, &r, &d)) return ru_set(c, 0, to, -1, NULL, dd);
    size_t sf = kiln_dtype_size(from), st = kiln_dtype_size(to);
    static const kiln_dtype sub_byte[] = {KILN_DTYPE_U4, KILN_DTYPE_I4, KILN_DTYPE_F4E2M1,
                                          KILN_DTYPE_U2, KILN_DTYPE_I2, KILN_DTYPE_STRING};
    for (size_t i = 0; i < sizeof sub_byte / sizeof sub_byte[0]; i++)
        if (from == sub_byte[i] || to == sub_byte[i]) {
            kiln_ic_problem(c, "BitCast of %s to %s: string and sub-byte types are not allowed",
                            kiln_dtype_name(from), kiln_dtype_name(to));
            return KILN_OK;
        }
    struct kiln_dim out[KILN_MAX_RANK];
    if (sf == st) return ru_set(c, 0, to, r, d, dd);
    if (sf > st) {
        if (r >= KILN_MAX_RANK) return ru_set(c, 0, to, -1, NULL, dd);
        if (r > 0) memcpy(out, d, (size_t)r * sizeof *out);
        out[r] = kiln_dim_int((int64_t)(sf / st));
        return ru_set(c, 0, to, r + 1, out, dd);
    }
    if (r < 1 || (kiln_dim_known(d[r - 1]) && d[r - 1].value != (int64_t)(st / sf))) {
        kiln_ic_problem(c, "BitCast of %s to %s needs a last dim of %zu", kiln_dtype_name(from),
                        kiln_dtype_name(to), st / sf);
        return KILN_OK;
    }
    return ru_set(c, 0, to, r - 1, d, dd);
}

/* ------------------------------------------------------------------ binary and variadic */

enum bkind {
    B_SAME,  /* output type = inputs' type, which must agree */
    B_BOOL,  /* comparison: inputs agree, output bool */
    B_FIRST, /* output type = input 0's (Pow: the exponent may differ) */
};

/* Broadcasts every present input into output 0 with the element type `kind` says. Before
 * `bcast_since` the output has input 0's shape (the old `broadcast` attribute). */
static kiln_status binary(struct kiln_ictx *c, enum bkind kind, int bcast_since, int *rank_out,
                          struct kiln_dim *dims_out, kiln_dtype *dt_out)
{
    size_t idx[64];
    size_t n = 0;
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    bool dd = false, all_ranks = true;
    *rank_out = -1;
    if (c->n_in > sizeof idx / sizeof idx[0]) {
        /* more operands than this rule broadcasts: the element type only */
        dt = kind == B_BOOL ? KILN_DTYPE_BOOL : kiln_ic_in_dtype(c, 0);
        return dt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, dt, -1, NULL, false);
    }
    for (size_t i = 0; i < c->n_in; i++) {
        const struct kiln_vtype *v = kiln_ic_in(c, i);
        if (!v) continue;
        idx[n++] = i;
        if (v->type.kind != KILN_TYPE_TENSOR || v->type.rank < 0) all_ranks = false;
        kiln_dtype t = kiln_ic_in_dtype(c, i);
        if (kind == B_FIRST && i > 0) continue;
        if (t == KILN_DTYPE_UNDEFINED) continue;
        if (dt == KILN_DTYPE_UNDEFINED)
            dt = t;
        else if (t != dt) {
            kiln_ic_problem(c, "inputs have different element types (%s and %s)", kiln_dtype_name(dt),
                            kiln_dtype_name(t));
            return KILN_OK;
        }
    }
    if (n == 0) return KILN_OK;
    *dt_out = dt;
    kiln_dtype odt = kind == B_BOOL ? KILN_DTYPE_BOOL : dt;
    if (c->opset < bcast_since) {
        int r;
        const struct kiln_dim *d;
        if (!ru_shape(c, idx[0], &r, &d)) return ru_set(c, 0, odt, -1, NULL, dd);
        if (r > 0) memcpy(dims_out, d, (size_t)r * sizeof *d);
        *rank_out = r;
        return ru_set(c, 0, odt, r, d, dd);
    }
    if (!all_ranks) return odt == KILN_DTYPE_UNDEFINED ? KILN_OK : ru_set(c, 0, odt, -1, NULL, dd);
    if (!kiln_ic_broadcast(c, n, idx, rank_out, dims_out)) {
        *rank_out = -1;
        return KILN_OK; /* a problem was reported */
    }
    return ru_set(c, 0, odt, *rank_out, dims_out, dd);
}

static kiln_status rule_same(struct kiln_ictx *c)
{
    int r;
    struct kiln_dim d[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    return binary(c, B_SAME, 7, &r, d, &dt);
}

static kiln_status rule_compare(struct kiln_ictx *c)
{
    int r;
    struct kiln_dim d[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    return binary(c, B_BOOL, 7, &r, d, &dt);
}

static kiln_status rule_pow(struct kiln_ictx *c)
{
    int r;
    struct kiln_dim d[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    return binary(c, B_FIRST, 7, &r, d, &dt);
}

/* Arithmetic that also folds small integer elements. */
static kiln_status arith(struct kiln_ictx *c, enum vop op, int bcast_since)
{
    int r;
    struct kiln_dim d[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    KILN_TRY(binary(c, B_SAME, bcast_since, &r, d, &dt));
    if (r < 0) return KILN_OK;
    size_t n = 0;
    for (size_t i = 0; i < c->n_in; i++)
        if (!kiln_ic_in(c, i))
            return KILN_OK; /* absent inputs in the middle: no folding */
        else
            n++;
    return vals_fold(c, op, n, dt, r, d);
}

static kiln_status rule_add(struct kiln_ictx *c)
{
    return arith(c, V_ADD, 7);
}
static kiln_status rule_sub(struct kiln_ictx *c)
{
    return arith(c, V_SUB, 7);
}
static kiln_status rule_mul(struct kiln_ictx *c)
{
    return arith(c, V_MUL, 7);
}
static kiln_status rule_div(struct kiln_ictx *c)
{
    return arith(c, V_DIV, 7);
}
static kiln_status rule_mod(struct kiln_ictx *c)
{
    return arith(c, V_MOD, 7);
}
static kiln_status rule_max(struct kiln_ictx *c)
{
    return arith(c, V_MAX, 8);
}
static kiln_status rule_min(struct kiln_ictx *c)
{
    return arith(c, V_MIN, 8);
}
static kiln_status rule_sum(struct kiln_ictx *c)
{
    return arith(c, V_ADD, 8);
}

static kiln_status rule_mean(struct kiln_ictx *c)
{
    int r;
    struct kiln_dim d[KILN_MAX_RANK];
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    return binary(c, B_SAME, 8, &r, d, &dt);
}

/* PRelu: slope broadcasts to X (unidirectionally from opset 7); the output is X's. */
static kiln_status rule_prelu(struct kiln_ictx *c)
{
    kiln_dtype a = kiln_ic_in_dtype(c, 0), b = kiln_ic_in_dtype(c, 1);
    if (a != KILN_DTYPE_UNDEFINED && b != KILN_DTYPE_UNDEFINED && a != b) {
        kiln_ic_problem(c, "X is %s but slope is %s", kiln_dtype_name(a), kiln_dtype_name(b));
        return KILN_OK;
    }
    int rx, rs;
    const struct kiln_dim *dx, *ds;
    if (c->opset >= 7 && ru_shape(c, 0, &rx, &dx) && ru_shape(c, 1, &rs, &ds)) {
        bool bad = rs > rx;
        for (int k = 0; k < rs && !bad; k++) {
            struct kiln_dim s = ds[rs - 1 - k], x = dx[rx - 1 - k];
            if (kiln_dim_known(s) && s.value != 1 && kiln_dim_ne(s, x)) bad = true;
        }
        if (bad) {
            kiln_ic_problem(c, "slope (rank %d) does not broadcast to X (rank %d)", rs, rx);
            return KILN_OK;
        }
    }
    return ru_like(c, 0, 0, a != KILN_DTYPE_UNDEFINED ? a : b);
}

/* Clip: X's type; the bounds (inputs 1, 2 from opset 11) must be of X's type. */
static kiln_status rule_clip(struct kiln_ictx *c)
{
    kiln_dtype x = kiln_ic_in_dtype(c, 0);
    for (size_t i = 1; i < c->n_in && i < 3; i++) {
        kiln_dtype t = kiln_ic_in_dtype(c, i);
        if (x != KILN_DTYPE_UNDEFINED && t != KILN_DTYPE_UNDEFINED && t != x) {
            kiln_ic_problem(c, "input %zu is %s; X is %s", i, kiln_dtype_name(t), kiln_dtype_name(x));
            return KILN_OK;
        }
        int r = kiln_ic_in_rank(c, i);
        if (r > 1 || (r == 1 && kiln_ic_in(c, i)->type.dims[0].value > 1)) {
            kiln_ic_problem(c, "bound input %zu is not a scalar", i);
            return KILN_OK;
        }
    }
    return ru_like(c, 0, 0, KILN_DTYPE_UNDEFINED);
}

#define UN(name, since)                                                                                      \
    {                                                                                                        \
#name, "", since, 0, rule_unary                                                                      \
    }

const struct kiln_infer_op kiln_infer_ops_elementwise[] = {
    /* unary.c */
    {"Abs", "", 1, 0, rule_abs},
    {"Neg", "", 1, 0, rule_neg},
    UN(Floor, 1),
    UN(Ceil, 1),
    UN(Round, 11),
    UN(Sqrt, 1),
    UN(Reciprocal, 1),
    UN(Exp, 1),
    UN(Log, 1),
    UN(Sin, 7),
    UN(Cos, 7),
    UN(Tan, 7),
    UN(Asin, 7),
    UN(Acos, 7),
    UN(Atan, 7),
    UN(Sinh, 9),
    UN(Cosh, 9),
    UN(Tanh, 1),
    UN(Asinh, 9),
    UN(Acosh, 9),
    UN(Atanh, 9),
    UN(Sigmoid, 1),
    UN(HardSigmoid, 1),
    UN(HardSwish, 14),
    UN(Relu, 1),
    UN(LeakyRelu, 1),
    UN(Elu, 1),
    UN(Selu, 1),
    UN(Celu, 12),
    UN(ThresholdedRelu, 10),
    UN(Softplus, 1),
    UN(Softsign, 1),
    UN(Erf, 9),
    UN(Gelu, 20),
    UN(Mish, 18),
    UN(Swish, 24),
    UN(Sign, 9),
    UN(Not, 1),
    UN(BitwiseNot, 18),
    UN(Shrink, 9),
    {"IsNaN", "", 9, 0, rule_unary_bool},
    {"IsInf", "", 10, 0, rule_unary_bool},
    {"Clip", "", 1, 0, rule_clip},
    {"Identity", "", 1, 0, rule_identity},
    /* binary.c */
    {"Add", "", 1, 0, rule_add},
    {"Sub", "", 1, 0, rule_sub},
    {"Mul", "", 1, 0, rule_mul},
    {"Div", "", 1, 0, rule_div},
    {"Mod", "", 10, 0, rule_mod},
    {"Pow", "", 1, 0, rule_pow},
    {"Min", "", 1, 0, rule_min},
    {"Max", "", 1, 0, rule_max},
    {"Sum", "", 1, 0, rule_sum},
    {"Mean", "", 1, 0, rule_mean},
    {"Equal", "", 1, 0, rule_compare},
    {"Less", "", 1, 0, rule_compare},
    {"Greater", "", 1, 0, rule_compare},
    {"LessOrEqual", "", 12, 0, rule_compare},
    {"GreaterOrEqual", "", 12, 0, rule_compare},
    {"And", "", 1, 0, rule_compare},
    {"Or", "", 1, 0, rule_compare},
    {"Xor", "", 1, 0, rule_compare},
    {"BitwiseAnd", "", 18, 0, rule_same},
    {"BitwiseOr", "", 18, 0, rule_same},
    {"BitwiseXor", "", 18, 0, rule_same},
    {"BitShift", "", 11, 0, rule_same},
    {"PRelu", "", 1, 0, rule_prelu},
    /* cast.c */
    {"Cast", "", 1, 0, rule_cast},
    {"CastLike", "", 15, 0, rule_castlike},
    /* misc.c */
    {"BitCast", "", 26, 0, rule_bitcast},
    {NULL, NULL, 0, 0, NULL},
};
