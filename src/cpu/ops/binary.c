/* src/cpu/ops/binary.c: ONNX broadcasting element-wise ops of two or more inputs, every opset:
 * Add Sub Mul Div Pow Mod, Min Max Sum Mean (variadic), Equal Less Greater LessOrEqual
 * GreaterOrEqual, And Or Xor, BitwiseAnd BitwiseOr BitwiseXor, BitShift, Where, PRelu.
 *
 * Broadcasting is multidirectional (cpu/broadcast.h) from opset 7; before that Add, Sub, Mul,
 * Div, Pow, And, Or, Xor, Equal, Less and Greater used the legacy `broadcast`/`axis`
 * attributes: with broadcast=0 the shapes must match, with broadcast=1 B's shape matches a
 * contiguous run of A's dims starting at `axis` (or A's trailing dims when axis is absent).
 *
 * Semantics we promise, following numpy as the ONNX reference implementation does:
 * - float16/bfloat16 compute in float32 and round once per element on store.
 * - Integer Add/Sub/Mul wrap around (two's complement), as numpy does; never C UB.
 * - Integer Div truncates toward zero (as C and the test_div_int32_trunc case); x/0 gives 0
 *   and INT_MIN/-1 wraps to INT_MIN (numpy gives 0 and a warning; the spec is silent).
 * - Mod: fmod=1 gives C fmod/% (sign of the dividend); fmod=0 gives the sign of the divisor
 *   (Python/numpy mod), for integers and, leniently, also for floats; x mod 0 gives 0 for
 *   integers and NaN for floats.
 * - Pow: the output has the base's type. Same-type float uses pow; same-type integers use
 *   exact wrapping exponentiation by squaring (negative exponents give 1/x^n truncated: 1,
 *   -1 or 0, and 0^negative gives 0); mixed types compute in double and convert like a cast.
 * - Min/Max propagate NaN (numpy minimum/maximum). Sum/Mean fold pairwise left to right.
 * - BitShift by >= the bit width gives 0.
 * - Equal also takes bool (opset 11+) and string (opset 19+) inputs.
 * - PRelu broadcasts slope to X unidirectionally; before opset 7 a 1-D slope of X's channel
 *   count applies per channel (dim 1).
 *
 * Prepared kernels (cpu/kernel.h): prepare decodes the attributes (the legacy broadcast/axis
 * pair, Mod's fmod, BitShift's direction, refused there when unknown) into a struct
 * bin_state. A kernel run without prepare (k->state NULL: the unit tests call run directly)
 * decodes through the same function at run time.
 *
 * In place (KILN_OP_INPLACE): output 0 may occupy input 0's memory when both have the same
 * size. When the element types agree, input 0 then has the output's shape (broadcasting only
 * adds leading 1s), so the walk reads A at the output's own index, and every row function
 * reads a[i] and b[i] before it writes y[i] and never reads a lower index again. A comparison
 * has a bool output: there equal sizes may also mean a wider input 0 broadcast to more
 * elements (float32 [8] against [4, 8]), and binary() then reads input 0 from a scratch
 * copy. Sum/Mean/Max/Min fold into the output, which starts as a copy of input 0 (none
 * needed in place). Where's input 0 is the bool condition: its output has as many bytes
 * only for one-byte X/Y of the condition's shape, read at the output's index before the
 * write.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/broadcast.h"
#include "cpu/eltwise.h"
#include "cpu/tensor_util.h"

/* One row of a broadcast walk: y[i] = f(a[i*sa], b[i*sb]) for i < n; sa, sb are 0 or 1.
 * y may alias a or b when their step is 1 (each element is read before it is written). */
typedef void row_fn(size_t n, const void *a, size_t sa, const void *b, size_t sb, void *y);

#define LD_ID(v) (v)
#define ST_ID(v) (v)
#define LD_H(v) kiln_half_f16_to_f32(v)
#define ST_H(v) kiln_half_f32_to_f16(v)
#define LD_B(v) kiln_half_bf16_to_f32(v)
#define ST_B(v) kiln_half_f32_to_bf16(v)
#define ST_BOOL(v) ((uint8_t)((v) ? 1 : 0))

/* Type lists: X(P, suffix, dtype, storage T, compute CT, wrapping UT, load, store). UT is an
 * unsigned type at least as wide as int, so integer + - * never overflow a signed type. */
#define FLOAT_TYPES(X, P)                                                                       \
    X(P, f32, KILN_DTYPE_F32, float, float, float, LD_ID, ST_ID)                                \
    X(P, f64, KILN_DTYPE_F64, double, double, double, LD_ID, ST_ID)                             \
    X(P, f16, KILN_DTYPE_F16, uint16_t, float, float, LD_H, ST_H)                               \
    X(P, bf16, KILN_DTYPE_BF16, uint16_t, float, float, LD_B, ST_B)
#define SINT_TYPES(X, P)                                                                        \
    X(P, i8, KILN_DTYPE_I8, int8_t, int8_t, uint32_t, LD_ID, ST_ID)                             \
    X(P, i16, KILN_DTYPE_I16, int16_t, int16_t, uint32_t, LD_ID, ST_ID)                         \
    X(P, i32, KILN_DTYPE_I32, int32_t, int32_t, uint32_t, LD_ID, ST_ID)                         \
    X(P, i64, KILN_DTYPE_I64, int64_t, int64_t, uint64_t, LD_ID, ST_ID)
#define UINT_TYPES(X, P)                                                                        \
    X(P, u8, KILN_DTYPE_U8, uint8_t, uint8_t, uint32_t, LD_ID, ST_ID)                           \
    X(P, u16, KILN_DTYPE_U16, uint16_t, uint16_t, uint32_t, LD_ID, ST_ID)                       \
    X(P, u32, KILN_DTYPE_U32, uint32_t, uint32_t, uint32_t, LD_ID, ST_ID)                       \
    X(P, u64, KILN_DTYPE_U64, uint64_t, uint64_t, uint64_t, LD_ID, ST_ID)
#define BOOL_TYPE(X, P) X(P, b8, KILN_DTYPE_BOOL, uint8_t, uint8_t, uint32_t, LD_ID, ST_ID)

/* A row function with the four step cases hoisted out of the loop, so the common same-shape
 * and scalar cases are plain loops the compiler vectorizes. */
#define ROW(NAME, T, TY, CT, LD, ST, EXPR)                                                      \
    static void NAME(size_t n, const void *a_, size_t sa, const void *b_, size_t sb, void *y_) \
    {                                                                                           \
        const T *a = a_, *b = b_;                                                               \
        TY *y = y_;                                                                             \
        if (sa && sb) {                                                                         \
            for (size_t i = 0; i < n; i++) {                                                    \
                CT x = LD(a[i]), z = LD(b[i]);                                                  \
                y[i] = ST(EXPR);                                                                \
            }                                                                                   \
        } else if (sb) {                                                                        \
            CT x = LD(a[0]);                                                                    \
            for (size_t i = 0; i < n; i++) {                                                    \
                CT z = LD(b[i]);                                                                \
                y[i] = ST(EXPR);                                                                \
            }                                                                                   \
        } else if (sa) {                                                                        \
            CT z = LD(b[0]);                                                                    \
            for (size_t i = 0; i < n; i++) {                                                    \
                CT x = LD(a[i]);                                                                \
                y[i] = ST(EXPR);                                                                \
            }                                                                                   \
        } else {                                                                                \
            CT x = LD(a[0]), z = LD(b[0]);                                                      \
            TY v = ST(EXPR);                                                                    \
            for (size_t i = 0; i < n; i++) y[i] = v;                                            \
        }                                                                                       \
    }

/* Same-type op: output has the input type. P##_E(x, z, CT, UT) is the expression. */
#define DEF_SAME(P, sfx, DT, T, CT, UT, LD, ST) ROW(P##_##sfx, T, T, CT, LD, ST, P##_E(x, z, CT, UT))
/* Comparison: bool output. */
#define DEF_CMP(P, sfx, DT, T, CT, UT, LD, ST)                                                  \
    ROW(P##_##sfx, T, uint8_t, CT, LD, ST_BOOL, P##_E(x, z, CT, UT))
#define TAB(P, sfx, DT, T, CT, UT, LD, ST) [DT] = P##_##sfx,

/* ------------------------------------------------------------------ expressions */

#define add_E(x, z, CT, UT) ((CT)((UT)(x) + (UT)(z)))
#define sub_E(x, z, CT, UT) ((CT)((UT)(x) - (UT)(z)))
#define mul_E(x, z, CT, UT) ((CT)((UT)(x) * (UT)(z)))
#define divf_E(x, z, CT, UT) ((x) / (z))
#define divs_E(x, z, CT, UT) ((z) == 0 ? (CT)0 : (z) == -1 ? (CT)(0u - (UT)(x)) : (CT)((x) / (z)))
#define divu_E(x, z, CT, UT) ((z) == 0 ? (CT)0 : (CT)((x) / (z)))
#define fmodf_E(x, z, CT, UT) ((CT)fmod((x), (z)))
#define pmodf_E(x, z, CT, UT) ((CT)py_fmod((x), (z)))
#define fmods_E(x, z, CT, UT) ((z) == 0 || (z) == -1 ? (CT)0 : (CT)((x) % (z)))
#define pmods_E(x, z, CT, UT) ((CT)py_imod((int64_t)(x), (int64_t)(z)))
#define modu_E(x, z, CT, UT) ((z) == 0 ? (CT)0 : (CT)((x) % (z)))
#define minf_E(x, z, CT, UT) (isnan(x) || isnan(z) ? (x) + (z) : (x) < (z) ? (x) : (z))
#define maxf_E(x, z, CT, UT) (isnan(x) || isnan(z) ? (x) + (z) : (x) > (z) ? (x) : (z))
#define mini_E(x, z, CT, UT) ((x) < (z) ? (x) : (z))
#define maxi_E(x, z, CT, UT) ((x) > (z) ? (x) : (z))
#define eq_E(x, z, CT, UT) ((x) == (z))
#define lt_E(x, z, CT, UT) ((x) < (z))
#define gt_E(x, z, CT, UT) ((x) > (z))
#define le_E(x, z, CT, UT) ((x) <= (z))
#define ge_E(x, z, CT, UT) ((x) >= (z))
#define and_E(x, z, CT, UT) (((x) != 0) & ((z) != 0))
#define or_E(x, z, CT, UT) (((x) != 0) | ((z) != 0))
#define xor_E(x, z, CT, UT) (((x) != 0) ^ ((z) != 0))
#define band_E(x, z, CT, UT) ((CT)((x) & (z)))
#define bor_E(x, z, CT, UT) ((CT)((x) | (z)))
#define bxor_E(x, z, CT, UT) ((CT)((x) ^ (z)))
#define shl_E(x, z, CT, UT) ((z) >= sizeof(CT) * 8 ? (CT)0 : (CT)((UT)(x) << (z)))
#define shr_E(x, z, CT, UT) ((z) >= sizeof(CT) * 8 ? (CT)0 : (CT)((UT)(x) >> (z)))
#define powf_E(x, z, CT, UT) ((CT)pow((x), (z)))
#define pows_E(x, z, CT, UT) ((CT)ipow_s((int64_t)(x), (int64_t)(z)))
#define powu_E(x, z, CT, UT) ((CT)ipow_u((uint64_t)(x), (uint64_t)(z)))
#define prelus_E(x, z, CT, UT) ((x) < 0 ? (CT)((UT)(x) * (UT)(z)) : (x))
#define preluu_E(x, z, CT, UT) ((void)(z), (x))

/* Python-style float mod: the result takes the divisor's sign. */
static inline double py_fmod(double x, double z)
{
    double r = fmod(x, z);
    if (r != 0 && ((r < 0) != (z < 0))) r += z;
    return r;
}

/* Python-style integer mod on int64 (every signed input type fits). */
static inline int64_t py_imod(int64_t x, int64_t z)
{
    if (z == 0 || z == -1) return 0;
    int64_t r = x % z;
    if (r != 0 && ((r < 0) != (z < 0))) r += z;
    return r;
}

/* Wrapping integer power; truncated 1/x^n for negative n. */
static inline uint64_t ipow_u(uint64_t x, uint64_t n)
{
    uint64_t r = 1;
    while (n) {
        if (n & 1) r *= x;
        x *= x;
        n >>= 1;
    }
    return r;
}

static inline int64_t ipow_s(int64_t x, int64_t n)
{
    if (n < 0) return x == 1 ? 1 : x == -1 ? ((n & 1) ? -1 : 1) : 0;
    return (int64_t)ipow_u((uint64_t)x, (uint64_t)n);
}

/* ------------------------------------------------------------------ row functions */

FLOAT_TYPES(DEF_SAME, add) SINT_TYPES(DEF_SAME, add) UINT_TYPES(DEF_SAME, add)
FLOAT_TYPES(DEF_SAME, sub) SINT_TYPES(DEF_SAME, sub) UINT_TYPES(DEF_SAME, sub)
FLOAT_TYPES(DEF_SAME, mul) SINT_TYPES(DEF_SAME, mul) UINT_TYPES(DEF_SAME, mul)
FLOAT_TYPES(DEF_SAME, divf) SINT_TYPES(DEF_SAME, divs) UINT_TYPES(DEF_SAME, divu)
FLOAT_TYPES(DEF_SAME, fmodf) SINT_TYPES(DEF_SAME, fmods) UINT_TYPES(DEF_SAME, modu)
FLOAT_TYPES(DEF_SAME, pmodf) SINT_TYPES(DEF_SAME, pmods)
FLOAT_TYPES(DEF_SAME, minf) SINT_TYPES(DEF_SAME, mini) UINT_TYPES(DEF_SAME, mini)
FLOAT_TYPES(DEF_SAME, maxf) SINT_TYPES(DEF_SAME, maxi) UINT_TYPES(DEF_SAME, maxi)
FLOAT_TYPES(DEF_SAME, powf) SINT_TYPES(DEF_SAME, pows) UINT_TYPES(DEF_SAME, powu)
FLOAT_TYPES(DEF_SAME, prelus) SINT_TYPES(DEF_SAME, prelus) UINT_TYPES(DEF_SAME, preluu)
UINT_TYPES(DEF_SAME, band) UINT_TYPES(DEF_SAME, bor) UINT_TYPES(DEF_SAME, bxor)
UINT_TYPES(DEF_SAME, shl) UINT_TYPES(DEF_SAME, shr)
FLOAT_TYPES(DEF_CMP, eq) SINT_TYPES(DEF_CMP, eq) UINT_TYPES(DEF_CMP, eq) BOOL_TYPE(DEF_CMP, eq)
FLOAT_TYPES(DEF_CMP, lt) SINT_TYPES(DEF_CMP, lt) UINT_TYPES(DEF_CMP, lt) BOOL_TYPE(DEF_CMP, lt)
FLOAT_TYPES(DEF_CMP, gt) SINT_TYPES(DEF_CMP, gt) UINT_TYPES(DEF_CMP, gt) BOOL_TYPE(DEF_CMP, gt)
FLOAT_TYPES(DEF_CMP, le) SINT_TYPES(DEF_CMP, le) UINT_TYPES(DEF_CMP, le) BOOL_TYPE(DEF_CMP, le)
FLOAT_TYPES(DEF_CMP, ge) SINT_TYPES(DEF_CMP, ge) UINT_TYPES(DEF_CMP, ge) BOOL_TYPE(DEF_CMP, ge)
BOOL_TYPE(DEF_CMP, and) BOOL_TYPE(DEF_CMP, or) BOOL_TYPE(DEF_CMP, xor)

/* String equality (Equal, opset 19+). Entries are never NULL in kiln string tensors, but a
 * NULL is treated as "" to be safe. */
#define streq_E(x, z, CT, UT) (strcmp((x) ? (x) : "", (z) ? (z) : "") == 0)
typedef char *kstr;
typedef const char *kcstr;
ROW(eq_str, kstr, uint8_t, kcstr, LD_ID, ST_BOOL, streq_E(x, z, CT, UT))

/* ------------------------------------------------------------------ op descriptors */

typedef row_fn *row_table[KILN_DTYPE_COUNT_];

static const row_table t_add = {FLOAT_TYPES(TAB, add) SINT_TYPES(TAB, add) UINT_TYPES(TAB, add)};
static const row_table t_sub = {FLOAT_TYPES(TAB, sub) SINT_TYPES(TAB, sub) UINT_TYPES(TAB, sub)};
static const row_table t_mul = {FLOAT_TYPES(TAB, mul) SINT_TYPES(TAB, mul) UINT_TYPES(TAB, mul)};
static const row_table t_div = {FLOAT_TYPES(TAB, divf) SINT_TYPES(TAB, divs)
                                    UINT_TYPES(TAB, divu)};
static const row_table t_fmod = {FLOAT_TYPES(TAB, fmodf) SINT_TYPES(TAB, fmods)
                                     UINT_TYPES(TAB, modu)};
static const row_table t_pmod = {FLOAT_TYPES(TAB, pmodf) SINT_TYPES(TAB, pmods)
                                     UINT_TYPES(TAB, modu)};
static const row_table t_min = {FLOAT_TYPES(TAB, minf) SINT_TYPES(TAB, mini)
                                    UINT_TYPES(TAB, mini)};
static const row_table t_max = {FLOAT_TYPES(TAB, maxf) SINT_TYPES(TAB, maxi)
                                    UINT_TYPES(TAB, maxi)};
static const row_table t_pow = {FLOAT_TYPES(TAB, powf) SINT_TYPES(TAB, pows)
                                    UINT_TYPES(TAB, powu)};
static const row_table t_prelu = {FLOAT_TYPES(TAB, prelus) SINT_TYPES(TAB, prelus)
                                      UINT_TYPES(TAB, preluu)};
static const row_table t_eq = {FLOAT_TYPES(TAB, eq) SINT_TYPES(TAB, eq) UINT_TYPES(TAB, eq)
                                   BOOL_TYPE(TAB, eq)[KILN_DTYPE_STRING] = eq_str};
static const row_table t_lt = {FLOAT_TYPES(TAB, lt) SINT_TYPES(TAB, lt) UINT_TYPES(TAB, lt)
                                   BOOL_TYPE(TAB, lt)};
static const row_table t_gt = {FLOAT_TYPES(TAB, gt) SINT_TYPES(TAB, gt) UINT_TYPES(TAB, gt)
                                   BOOL_TYPE(TAB, gt)};
static const row_table t_le = {FLOAT_TYPES(TAB, le) SINT_TYPES(TAB, le) UINT_TYPES(TAB, le)
                                   BOOL_TYPE(TAB, le)};
static const row_table t_ge = {FLOAT_TYPES(TAB, ge) SINT_TYPES(TAB, ge) UINT_TYPES(TAB, ge)
                                   BOOL_TYPE(TAB, ge)};
static const row_table t_and = {BOOL_TYPE(TAB, and)};
static const row_table t_or = {BOOL_TYPE(TAB, or)};
static const row_table t_xor = {BOOL_TYPE(TAB, xor)};
/* Bitwise ops depend only on the width, so signed types share the unsigned rows. */
static const row_table t_band = {UINT_TYPES(TAB, band)[KILN_DTYPE_I8] = band_u8,
                                 [KILN_DTYPE_I16] = band_u16, [KILN_DTYPE_I32] = band_u32,
                                 [KILN_DTYPE_I64] = band_u64};
static const row_table t_bor = {UINT_TYPES(TAB, bor)[KILN_DTYPE_I8] = bor_u8,
                                [KILN_DTYPE_I16] = bor_u16, [KILN_DTYPE_I32] = bor_u32,
                                [KILN_DTYPE_I64] = bor_u64};
static const row_table t_bxor = {UINT_TYPES(TAB, bxor)[KILN_DTYPE_I8] = bxor_u8,
                                 [KILN_DTYPE_I16] = bxor_u16, [KILN_DTYPE_I32] = bxor_u32,
                                 [KILN_DTYPE_I64] = bxor_u64};
static const row_table t_shl = {UINT_TYPES(TAB, shl)};
static const row_table t_shr = {UINT_TYPES(TAB, shr)};

/* ------------------------------------------------------------------ prepared state */

/* What a two-input op runs: its rows, whether the output is bool, whether opset < 7 reads
 * the legacy attributes, and those attributes (broadcast, axis; axis absent: B aligns with
 * A's trailing dims). */
struct bin_state {
    const row_table *tab;
    bool bool_out, legacy;
    int64_t broadcast;
    bool has_axis;
    int64_t axis;
};

/* Fills s for rows tab; the legacy attributes are read whatever the opset (only opset < 7
 * uses them). */
static void bin_decode(struct kiln_kctx *k, struct bin_state *s, const row_table *tab,
                       bool bool_out, bool legacy)
{
    *s = (struct bin_state){.tab = tab, .bool_out = bool_out, .legacy = legacy};
    if (legacy) {
        s->broadcast = kiln_attr_i(k, "broadcast", 0);
        s->has_axis = kiln_attr_has(k, "axis");
        s->axis = kiln_attr_i(k, "axis", 0);
    }
}

/* ------------------------------------------------------------------ shared drivers */

/* Input names for messages: the node's own name for input i, else its position. */
static const char *in_name(const struct kiln_kctx *k, size_t i)
{
    return i < k->node->n_in && k->node->inputs[i][0] ? k->node->inputs[i] : "?";
}

/* Output shape of the node's inputs [0, n) under multidirectional broadcasting. */
static kiln_status bcast_inputs(struct kiln_kctx *k, size_t n, const struct kiln_tensor *const *t,
                                int *rank, int64_t *dims)
{
    int ranks[KILN_BCAST_MAX_IN];
    const int64_t *d[KILN_BCAST_MAX_IN];
    for (size_t i = 0; i < n; i++) {
        ranks[i] = t[i]->rank;
        d[i] = t[i]->dims;
    }
    kiln_err e;
    kiln_status st = kiln_bcast_shape(n, ranks, d, rank, dims, &e);
    return st ? kiln_kfail(k, st, "%s", e.msg) : KILN_OK;
}

/* Legacy (opset < 7) broadcasting: rewrites B's shape to A's rank per the `broadcast` and
 * `axis` attributes, so the ordinary walk then applies. */
static kiln_status legacy_shape(struct kiln_kctx *k, const struct bin_state *bs,
                                const struct kiln_tensor *a, const struct kiln_tensor *b, int *rank,
                                int64_t *dims)
{
    char sa[200], sb[200];
    if (bs->broadcast == 0) {
        bool same = a->rank == b->rank;
        for (int d = 0; same && d < a->rank; d++) same = a->dims[d] == b->dims[d];
        if (!same)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "inputs have shapes %s and %s; with broadcast=0 they must match",
                              kiln_shape_str(a->rank, a->dims, sa, sizeof sa),
                              kiln_shape_str(b->rank, b->dims, sb, sizeof sb));
        *rank = b->rank;
        memcpy(dims, b->dims, sizeof(int64_t) * (size_t)b->rank);
        return KILN_OK;
    }
    size_t nb = kiln_tensor_numel(b);
    int64_t axis = bs->has_axis ? bs->axis : a->rank - b->rank;
    if (axis < 0) axis += a->rank;
    bool ok = nb == 1 || (axis >= 0 && axis + b->rank <= a->rank);
    /* Exporters (PyTorch, Caffe2) also rely on size-1 dims of B repeating, as numpy does. */
    for (int d = 0; ok && nb != 1 && d < b->rank; d++)
        ok = b->dims[d] == a->dims[axis + d] || b->dims[d] == 1;
    if (!ok)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "B shape %s does not match A shape %s at axis %lld (legacy broadcast)",
                          kiln_shape_str(b->rank, b->dims, sb, sizeof sb),
                          kiln_shape_str(a->rank, a->dims, sa, sizeof sa), (long long)axis);
    *rank = a->rank;
    for (int d = 0; d < a->rank; d++) dims[d] = 1;
    if (nb != 1)
        for (int d = 0; d < b->rank; d++) dims[axis + d] = b->dims[d];
    return KILN_OK;
}

/* The output is split over the session's threads as a flat element range, in blocks of
 * PAR_BLOCK elements, PAR_GRAIN blocks to a chunk (>= 16K elements; smaller outputs run
 * inline). A chunk runs the rows of the broadcast walk that it covers, the first and last
 * possibly in part; the row functions compute each element alone, so results do not depend
 * on the thread count. */
#define PAR_BLOCK 4096
#define PAR_GRAIN 4

struct walk_job {
    row_fn *fn;
    const char *a, *b;
    char *y;
    size_t ea, eb, ey, n;
    const struct kiln_bcast_iter *it; /* at row 0 */
};

/* Moves a fresh iterator (at row 0) to row r. */
static void iter_seek(struct kiln_bcast_iter *it, size_t r)
{
    it->out_off = r * it->inner;
    for (int d = it->rank - 1; d >= 0; d--) {
        size_t dim = (size_t)it->dims[d], q = r % dim;
        it->idx[d] = (int64_t)q;
        for (size_t i = 0; i < it->n_in; i++) it->off[i] += q * it->strides[i][d];
        r /= dim;
    }
}

static void walk_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct walk_job *j = ctx;
    (void)worker;
    size_t lo = begin * PAR_BLOCK, hi = end * PAR_BLOCK < j->n ? end * PAR_BLOCK : j->n;
    struct kiln_bcast_iter it = *j->it;
    const size_t inner = it.inner;
    iter_seek(&it, lo / inner);
    size_t c = lo % inner; /* first element of the first row */
    while (lo < hi) {
        size_t m = inner - c < hi - lo ? inner - c : hi - lo;
        j->fn(m, j->a + (it.off[0] + c * it.step[0]) * j->ea, it.step[0],
              j->b + (it.off[1] + c * it.step[1]) * j->eb, it.step[1],
              j->y + (it.out_off + c) * j->ey);
        lo += m;
        c = 0;
        kiln_bcast_iter_next(&it);
    }
}

/* Walks out (shape orank/odims) with inputs a and b (shapes ra/da and rb/db, broadcastable to
 * it), calling fn per row (or part of one), split over pool. Element sizes: ea, eb, ey bytes. */
static void walk2(struct kiln_pool *pool, row_fn *fn, const void *a, size_t ea, int ra,
                  const int64_t *da, const void *b, size_t eb, int rb, const int64_t *db, void *y,
                  size_t ey, int orank, const int64_t *odims)
{
    struct kiln_bcast_iter it;
    int ranks[2] = {ra, rb};
    const int64_t *dims[2] = {da, db};
    kiln_bcast_iter_init(&it, 2, ranks, dims, orank, odims);
    size_t n = it.rows * it.inner;
    struct walk_job j = {fn, a, b, y, ea, eb, ey, n, &it};
    kiln_pool_for(pool, (n + PAR_BLOCK - 1) / PAR_BLOCK, PAR_GRAIN, walk_chunk, &j);
}

/* ------------------------------------------------------------------ float32 fast path */

/* The float32 vector op (cpu/eltwise.h) of a row table, or -1 when it has none (Mod, Pow). */
static int ew_op_of(const row_table *tab)
{
    static const struct {
        const row_table *tab;
        enum kiln_ew_binary op;
    } map[] = {
        {&t_add, KILN_EW_ADD}, {&t_sub, KILN_EW_SUB}, {&t_mul, KILN_EW_MUL},
        {&t_div, KILN_EW_DIV}, {&t_max, KILN_EW_MAX}, {&t_min, KILN_EW_MIN},
        {&t_prelu, KILN_EW_PRELU}, {&t_eq, KILN_EW_EQ}, {&t_lt, KILN_EW_LT},
        {&t_gt, KILN_EW_GT}, {&t_le, KILN_EW_LE}, {&t_ge, KILN_EW_GE},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].tab == tab) return (int)map[i].op;
    return -1;
}

/* Fast walks split the output into blocks of PAR_BLOCK elements, EW_GRAIN blocks to a
 * chunk (32K elements: less is not worth a hand-off for ops this cheap). */
#define EW_GRAIN 8

struct ew_job {
    enum kiln_ew_binary op;
    const float *a, *b;
    char *y;
    size_t ey, n;
    const struct kiln_bcast_iter *it; /* at row 0 */
};

/* Elements [lo, hi) of the walk as few calls as possible: a partial row alone, then tiles of
 * whole rows along the innermost collapsed outer dim (that dim's strides are the tile's row
 * strides), then a partial last row. */
static void ew_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct ew_job *j = ctx;
    (void)worker;
    size_t lo = begin * PAR_BLOCK, hi = end * PAR_BLOCK < j->n ? end * PAR_BLOCK : j->n;
    struct kiln_bcast_iter it = *j->it;
    const size_t inner = it.inner, sa = it.step[0], sb = it.step[1];
    const int last = it.rank - 1; /* -1: a single row */
    const size_t tile = last >= 0 ? (size_t)it.dims[last] : 1;
    const size_t ra = last >= 0 ? it.strides[0][last] : 0;
    const size_t rb = last >= 0 ? it.strides[1][last] : 0;
    iter_seek(&it, lo / inner);
    size_t c = lo % inner;
    while (lo < hi) {
        if (c != 0 || hi - lo < inner) { /* part of one row */
            size_t m = inner - c < hi - lo ? inner - c : hi - lo;
            kiln_ew_binary_f32(j->op, 1, m, j->a + it.off[0] + c * sa, 0, sa,
                               j->b + it.off[1] + c * sb, 0, sb, j->y + (it.out_off + c) * j->ey);
            lo += m;
            c = 0;
            kiln_bcast_iter_next(&it);
            continue;
        }
        size_t q = last >= 0 ? (size_t)it.idx[last] : 0;
        size_t k = tile - q < (hi - lo) / inner ? tile - q : (hi - lo) / inner;
        kiln_ew_binary_f32(j->op, k, inner, j->a + it.off[0], ra, sa, j->b + it.off[1], rb, sb,
                           j->y + it.out_off * j->ey);
        lo += k * inner;
        /* Advance k rows: the first k - 1 stay inside the tile, the last goes through next()
         * so a finished tile carries into the outer dims. */
        if (last >= 0 && k > 1) {
            it.idx[last] += (int64_t)(k - 1);
            it.off[0] += (k - 1) * ra;
            it.off[1] += (k - 1) * rb;
            it.out_off += (k - 1) * inner;
        }
        kiln_bcast_iter_next(&it);
    }
}

/* walk2 for a float32 op with a vector loop (ew_op_of(tab) >= 0); y is float or bool. */
static void walk2_f32(struct kiln_pool *pool, enum kiln_ew_binary op, const float *a, int ra,
                      const int64_t *da, const float *b, int rb, const int64_t *db, void *y,
                      int orank, const int64_t *odims)
{
    struct kiln_bcast_iter it;
    int ranks[2] = {ra, rb};
    const int64_t *dims[2] = {da, db};
    kiln_bcast_iter_init(&it, 2, ranks, dims, orank, odims);
    size_t n = it.rows * it.inner;
    struct ew_job j = {op, a, b, y, kiln_ew_is_compare(op) ? 1 : sizeof(float), n, &it};
    kiln_pool_for(pool, (n + PAR_BLOCK - 1) / PAR_BLOCK, EW_GRAIN, ew_chunk, &j);
}

struct pow_job {
    enum kiln_ew_unary op;
    const float *x;
    float *y;
    size_t n;
};

static void pow_chunk(void *ctx, size_t begin, size_t end, int worker)
{
    const struct pow_job *j = ctx;
    (void)worker;
    size_t lo = begin * PAR_BLOCK, hi = end * PAR_BLOCK < j->n ? end * PAR_BLOCK : j->n;
    kiln_ew_unary_f32(j->op, j->x + lo, j->y + lo, hi - lo, 0, 0);
}

/* Shared kernel of the two-input ops: A and B of one dtype (checked against bs->tab), output
 * of that dtype or bool; opset < 7 of a legacy op broadcasts by bs's attributes. */
static kiln_status binary(struct kiln_kctx *k, const struct bin_state *bs)
{
    const row_table *tab = bs->tab;
    const bool bool_out = bs->bool_out, legacy = bs->legacy;
    const struct kiln_tensor *t[2];
    KILN_TRY(kiln_in_req(k, 0, &t[0]));
    KILN_TRY(kiln_in_req(k, 1, &t[1]));
    kiln_dtype dt = t[0]->dtype;
    if (t[1]->dtype != dt)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input '%s' is %s but input '%s' is %s; "
                          "they must have the same type", in_name(k, 0), kiln_dtype_name(dt),
                          in_name(k, 1), kiln_dtype_name(t[1]->dtype));
    row_fn *fn = kiln_dtype_valid((int)dt) ? (*tab)[dt] : NULL;
    if (!fn)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input '%s' has type %s, which this op does "
                          "not take", in_name(k, 0), kiln_dtype_name(dt));
    int orank, brank;
    int64_t odims[KILN_MAX_RANK], bdims[KILN_MAX_RANK];
    const int64_t *bd = t[1]->dims;
    brank = t[1]->rank;
    if (legacy && k->opset < 7) {
        KILN_TRY(legacy_shape(k, bs, t[0], t[1], &brank, bdims));
        bd = bdims;
        orank = t[0]->rank;
        memcpy(odims, t[0]->dims, sizeof(int64_t) * (size_t)orank);
    } else {
        KILN_TRY(bcast_inputs(k, 2, t, &orank, odims));
    }
    kiln_dtype odt = bool_out ? KILN_DTYPE_BOOL : dt;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, odt, orank, odims, &y)); /* walk2 writes every element */
    size_t es = kiln_dtype_size(dt);
    const void *a = t[0]->data;
    if (y->data == a && kiln_tensor_numel(y) != kiln_tensor_numel(t[0])) {
        /* In place with another element count: a comparison whose wider input 0 broadcasts
         * to as many bytes of bool (float32 [8] against [4, 8]). The walk would read input
         * 0 again after writing over it, so it reads a copy. */
        void *copy;
        size_t bytes = kiln_tensor_nbytes(t[0]);
        KILN_TRY(kiln_scratch(k, bytes, &copy));
        memcpy(copy, a, bytes);
        a = copy;
    }
    if (dt == KILN_DTYPE_F32 && tab == &t_pow && kiln_tensor_numel(t[1]) == 1) {
        /* Pow by a scalar 2 or 0.5 (x^2 in norms, sqrt): the output has A's elements in
         * A's order (B only adds leading 1s), so it is a unary loop; pow(x, 2) is x*x
         * exactly and pow(x, 0.5) the correctly rounded sqrt, but for -0 and -inf. */
        float e = *(const float *)t[1]->data;
        if (e == 2.0f || e == 0.5f) {
            struct pow_job pj = {e == 2.0f ? KILN_EW_SQUARE : KILN_EW_POW_HALF, a, y->data,
                                 kiln_tensor_numel(y)};
            kiln_pool_for(k->pool, (pj.n + PAR_BLOCK - 1) / PAR_BLOCK, EW_GRAIN, pow_chunk, &pj);
            return KILN_OK;
        }
    }
    int ew = dt == KILN_DTYPE_F32 ? ew_op_of(tab) : -1;
    if (ew >= 0) {
        walk2_f32(k->pool, (enum kiln_ew_binary)ew, a, t[0]->rank, t[0]->dims, t[1]->data,
                  brank, bd, y->data, orank, odims);
        return KILN_OK;
    }
    walk2(k->pool, fn, a, es, t[0]->rank, t[0]->dims, t[1]->data, es, brank, bd, y->data,
          kiln_dtype_size(odt), orank, odims);
    return KILN_OK;
}

/* ------------------------------------------------------------------ two-input ops */

/* decode_<name>: the bin_state of op <name>; BINARY_OP makes its run and prepare. */
#define DECODE_FIXED(name, tab, bool_out, legacy)                                              \
    static kiln_status decode_##name(struct kiln_kctx *k, struct bin_state *s)                 \
    {                                                                                          \
        bin_decode(k, s, tab, bool_out, legacy);                                               \
        return KILN_OK;                                                                        \
    }
#define BINARY_OP(name)                                                                        \
    static kiln_status run_##name(struct kiln_kctx *k)                                         \
    {                                                                                          \
        struct bin_state dec;                                                                  \
        const struct bin_state *bs;                                                            \
        KILN_STATE_OR_DECODE(k, decode_##name, dec, bs);                                            \
        return binary(k, bs);                                                                  \
    }                                                                                          \
    KILN_PREPARE_WITH(prep_##name, struct bin_state, decode_##name)

DECODE_FIXED(add, &t_add, false, true)
DECODE_FIXED(sub, &t_sub, false, true)
DECODE_FIXED(mul, &t_mul, false, true)
DECODE_FIXED(div, &t_div, false, true)
DECODE_FIXED(pow, &t_pow, false, true)
DECODE_FIXED(equal, &t_eq, true, true)
DECODE_FIXED(less, &t_lt, true, true)
DECODE_FIXED(greater, &t_gt, true, true)
DECODE_FIXED(and, &t_and, true, true)
DECODE_FIXED(or, &t_or, true, true)
DECODE_FIXED(xor, &t_xor, true, true)

static kiln_status decode_mod(struct kiln_kctx *k, struct bin_state *s)
{
    bin_decode(k, s, kiln_attr_i(k, "fmod", 0) ? &t_fmod : &t_pmod, false, false);
    return KILN_OK;
}

static kiln_status decode_bitshift(struct kiln_kctx *k, struct bin_state *s)
{
    const char *dir = kiln_attr_s(k, "direction", "");
    bin_decode(k, s, &t_shl, false, false);
    if (strcmp(dir, "RIGHT") == 0) s->tab = &t_shr;
    else if (strcmp(dir, "LEFT") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'direction' is '%s'; expected 'LEFT' "
                          "or 'RIGHT'", dir);
    return KILN_OK;
}

BINARY_OP(add)
BINARY_OP(sub)
BINARY_OP(mul)
BINARY_OP(div)
BINARY_OP(equal)
BINARY_OP(less)
BINARY_OP(greater)
BINARY_OP(and)
BINARY_OP(or)
BINARY_OP(xor)
BINARY_OP(mod)
BINARY_OP(bitshift)
KILN_PREPARE_WITH(prep_pow, struct bin_state, decode_pow)

/* Ops without attributes (opset 12 and 18 on). */
static const struct bin_state bs_less_eq = {&t_le, true, false, 0, false, 0};
static const struct bin_state bs_greater_eq = {&t_ge, true, false, 0, false, 0};
static const struct bin_state bs_band = {&t_band, false, false, 0, false, 0};
static const struct bin_state bs_bor = {&t_bor, false, false, 0, false, 0};
static const struct bin_state bs_bxor = {&t_bxor, false, false, 0, false, 0};
static kiln_status run_less_eq(struct kiln_kctx *k) { return binary(k, &bs_less_eq); }
static kiln_status run_greater_eq(struct kiln_kctx *k) { return binary(k, &bs_greater_eq); }
static kiln_status run_band(struct kiln_kctx *k) { return binary(k, &bs_band); }
static kiln_status run_bor(struct kiln_kctx *k) { return binary(k, &bs_bor); }
static kiln_status run_bxor(struct kiln_kctx *k) { return binary(k, &bs_bxor); }

/* Pow: same types take the typed rows; mixed types (opset 12+) go through double per
 * element, converting to the base's type as Cast does. */
static kiln_status run_pow(struct kiln_kctx *k)
{
    const struct kiln_tensor *t[2];
    struct bin_state dec;
    const struct bin_state *bs;
    KILN_STATE_OR_DECODE(k, decode_pow, dec, bs);
    KILN_TRY(kiln_in_req(k, 0, &t[0]));
    KILN_TRY(kiln_in_req(k, 1, &t[1]));
    if (t[0]->dtype == t[1]->dtype) return binary(k, bs);
    kiln_dtype bt = t[0]->dtype, et = t[1]->dtype;
    bool bnum = kiln_dtype_valid((int)bt) && t_pow[bt], enum_ = kiln_dtype_valid((int)et) && t_pow[et];
    if (!bnum || !enum_)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "Pow of %s by %s is not supported",
                          kiln_dtype_name(bt), kiln_dtype_name(et));
    int orank;
    int64_t odims[KILN_MAX_RANK];
    KILN_TRY(bcast_inputs(k, 2, t, &orank, odims));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, bt, orank, odims, &y));
    struct kiln_bcast_iter it;
    int ranks[2] = {t[0]->rank, t[1]->rank};
    const int64_t *dims[2] = {t[0]->dims, t[1]->dims};
    kiln_bcast_iter_init(&it, 2, ranks, dims, orank, odims);
    bool bint = kiln_dtype_is_int(bt), eint = kiln_dtype_is_int(et);
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it))
        for (size_t i = 0; i < it.inner; i++) {
            size_t ia = it.off[0] + i * it.step[0], ib = it.off[1] + i * it.step[1];
            size_t iy = it.out_off + i;
            if (bint && eint) {
                int64_t v = ipow_s(kiln_tensor_get_i64(t[0], ia), kiln_tensor_get_i64(t[1], ib));
                if (bt == KILN_DTYPE_I32) ((int32_t *)y->data)[iy] = (int32_t)v;
                else if (bt == KILN_DTYPE_I64) ((int64_t *)y->data)[iy] = v;
                else kiln_tensor_set_f64(y, iy, (double)v);
            } else {
                double v = pow(kiln_tensor_get_f64(t[0], ia), kiln_tensor_get_f64(t[1], ib));
                kiln_tensor_set_f64(y, iy, v);
            }
        }
    return KILN_OK;
}

/* PRelu: slope broadcasts unidirectionally to X (opset 7+); before, a 1-D slope of X's
 * channel count applies along dim 1. */
static kiln_status run_prelu(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *s;
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &s));
    if (s->dtype != x->dtype)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input 'slope' is %s; expected %s like 'X'",
                          kiln_dtype_name(s->dtype), kiln_dtype_name(x->dtype));
    row_fn *fn = kiln_dtype_valid((int)x->dtype) ? t_prelu[x->dtype] : NULL;
    if (!fn)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 'X' has type %s, which PRelu does not "
                          "take", kiln_dtype_name(x->dtype));
    int srank = s->rank;
    int64_t sdims[KILN_MAX_RANK];
    memcpy(sdims, s->dims, sizeof(int64_t) * (size_t)srank);
    if (k->opset < 7 && s->rank == 1 && x->rank >= 2 && s->dims[0] == x->dims[1] &&
        s->dims[0] != 1) {
        srank = x->rank - 1; /* [C] -> [C,1,...,1], aligned to dim 1 */
        sdims[0] = s->dims[0];
        for (int d = 1; d < srank; d++) sdims[d] = 1;
    }
    kiln_err e;
    if (kiln_bcast_unidir(x->rank, x->dims, srank, sdims, &e))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "slope: %s", e.msg);
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    size_t es = kiln_dtype_size(x->dtype);
    if (x->dtype == KILN_DTYPE_F32)
        walk2_f32(k->pool, KILN_EW_PRELU, x->data, x->rank, x->dims, s->data, srank, sdims,
                  y->data, x->rank, x->dims);
    else
        walk2(k->pool, fn, x->data, es, x->rank, x->dims, s->data, es, srank, sdims, y->data,
              es, x->rank, x->dims);
    return KILN_OK;
}

/* ------------------------------------------------------------------ variadic ops */

/* Copies src broadcast into dst (dst's shape; same dtype, not string). */
static void bcast_copy(struct kiln_tensor *dst, const struct kiln_tensor *src)
{
    size_t es = kiln_dtype_size(src->dtype);
    struct kiln_bcast_iter it;
    kiln_bcast_iter_init(&it, 1, &src->rank, (const int64_t *const[]){src->dims}, dst->rank,
                         dst->dims);
    const char *s = src->data;
    char *d = dst->data;
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it)) {
        char *o = d + it.out_off * es;
        const char *p = s + it.off[0] * es;
        if (it.step[0]) {
            memcpy(o, p, it.inner * es);
        } else {
            for (size_t i = 0; i < it.inner; i++) memcpy(o + i * es, p, es);
        }
    }
}

/* Sum/Mean/Max/Min: fold the inputs pairwise into the output (in place), each broadcast to
 * the common shape. Mean divides by the count at the end. */
static kiln_status variadic(struct kiln_kctx *k, const row_table *tab, bool mean)
{
    size_t n = k->n_in;
    if (n == 0) return kiln_kfail(k, KILN_E_INVALID_MODEL, "needs at least one input");
    const struct kiln_tensor *t0;
    KILN_TRY(kiln_in_req(k, 0, &t0));
    kiln_dtype dt = t0->dtype;
    row_fn *fn = kiln_dtype_valid((int)dt) ? (*tab)[dt] : NULL;
    if (!fn)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input '%s' has type %s, which this op does "
                          "not take", in_name(k, 0), kiln_dtype_name(dt));
    /* Output shape: fold the broadcast over all inputs two at a time (any count). */
    int orank = t0->rank;
    int64_t odims[KILN_MAX_RANK];
    memcpy(odims, t0->dims, sizeof(int64_t) * (size_t)orank);
    for (size_t i = 1; i < n; i++) {
        const struct kiln_tensor *ti;
        KILN_TRY(kiln_in_req(k, i, &ti));
        if (ti->dtype != dt)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "input '%s' is %s but input '%s' is %s; "
                              "they must have the same type", in_name(k, i),
                              kiln_dtype_name(ti->dtype), in_name(k, 0), kiln_dtype_name(dt));
        int ranks[2] = {orank, ti->rank};
        const int64_t *dims[2] = {odims, ti->dims};
        int64_t nd[KILN_MAX_RANK];
        kiln_err e;
        if (kiln_bcast_shape(2, ranks, dims, &orank, nd, &e)) {
            char sb[200];
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu ('%s') shape %s does not "
                              "broadcast with the other inputs: %s", i, in_name(k, i),
                              kiln_shape_str(ti->rank, ti->dims, sb, sizeof sb), e.msg);
        }
        memcpy(odims, nd, sizeof nd);
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, orank, odims, &y));
    if (y->data != t0->data) bcast_copy(y, t0); /* in place: y already holds input 0 */
    size_t es = kiln_dtype_size(dt);
    for (size_t i = 1; i < n; i++) {
        const struct kiln_tensor *ti = kiln_in(k, i);
        int ew = dt == KILN_DTYPE_F32 ? ew_op_of(tab) : -1;
        if (ew >= 0)
            walk2_f32(k->pool, (enum kiln_ew_binary)ew, y->data, orank, odims, ti->data,
                      ti->rank, ti->dims, y->data, orank, odims);
        else
            walk2(k->pool, fn, y->data, es, orank, odims, ti->data, es, ti->rank, ti->dims,
                  y->data, es, orank, odims);
    }
    if (mean && n > 1) {
        size_t m = kiln_tensor_numel(y);
        if (dt == KILN_DTYPE_F32) {
            float *d = y->data, inv = (float)n;
            for (size_t j = 0; j < m; j++) d[j] /= inv;
            return KILN_OK;
        }
        for (size_t j = 0; j < m; j++)
            kiln_tensor_set_f64(y, j, kiln_tensor_get_f64(y, j) / (double)n);
    }
    return KILN_OK;
}

static kiln_status run_sum(struct kiln_kctx *k) { return variadic(k, &t_add, false); }
static kiln_status run_mean(struct kiln_kctx *k) { return variadic(k, &t_add, true); }
static kiln_status run_max(struct kiln_kctx *k) { return variadic(k, &t_max, false); }
static kiln_status run_min(struct kiln_kctx *k) { return variadic(k, &t_min, false); }

/* ------------------------------------------------------------------ Where */

#define WHERE_ROW(T)                                                                            \
    for (size_t i = 0; i < n; i++) {                                                            \
        ((T *)y)[i] = c[i * sc] ? ((const T *)x)[i * sx] : ((const T *)z)[i * sz];              \
    }

static void where_row(size_t es, size_t n, const uint8_t *c, size_t sc, const void *x, size_t sx,
                      const void *z, size_t sz, void *y)
{
    switch (es) {
    case 1: WHERE_ROW(uint8_t) break;
    case 2: WHERE_ROW(uint16_t) break;
    case 4: WHERE_ROW(uint32_t) break;
    case 8: WHERE_ROW(uint64_t) break;
    default:
        for (size_t i = 0; i < n; i++)
            memcpy((char *)y + i * es,
                   c[i * sc] ? (const char *)x + i * sx * es : (const char *)z + i * sz * es, es);
    }
}

static kiln_status run_where(struct kiln_kctx *k)
{
    const struct kiln_tensor *t[3];
    for (size_t i = 0; i < 3; i++) KILN_TRY(kiln_in_req(k, i, &t[i]));
    if (t[0]->dtype != KILN_DTYPE_BOOL)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input 'condition' is %s; expected bool",
                          kiln_dtype_name(t[0]->dtype));
    kiln_dtype dt = t[1]->dtype;
    if (t[2]->dtype != dt)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "input 'X' is %s but 'Y' is %s; they must "
                          "have the same type", kiln_dtype_name(dt), kiln_dtype_name(t[2]->dtype));
    int orank;
    int64_t odims[KILN_MAX_RANK];
    KILN_TRY(bcast_inputs(k, 3, t, &orank, odims));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, orank, odims, &y));
    struct kiln_bcast_iter it;
    int ranks[3] = {t[0]->rank, t[1]->rank, t[2]->rank};
    const int64_t *dims[3] = {t[0]->dims, t[1]->dims, t[2]->dims};
    kiln_bcast_iter_init(&it, 3, ranks, dims, orank, odims);
    const uint8_t *c = t[0]->data;
    size_t es = kiln_dtype_size(dt);
    for (size_t r = 0; r < it.rows; r++, kiln_bcast_iter_next(&it)) {
        if (dt != KILN_DTYPE_STRING) {
            where_row(es, it.inner, c + it.off[0], it.step[0],
                      (const char *)t[1]->data + it.off[1] * es, it.step[1],
                      (const char *)t[2]->data + it.off[2] * es, it.step[2],
                      (char *)y->data + it.out_off * es);
            continue;
        }
        /* Strings: the output owns a copy of each picked entry. */
        char *const *xs = t[1]->data, *const *zs = t[2]->data;
        char **ys = y->data;
        for (size_t i = 0; i < it.inner; i++) {
            const char *src = c[it.off[0] + i * it.step[0]] ? xs[it.off[1] + i * it.step[1]]
                                                            : zs[it.off[2] + i * it.step[2]];
            char *dup = kiln_strdup(src ? src : "");
            if (!dup) return kiln_kfail(k, KILN_E_NOMEM, "out of memory copying a string");
            ys[it.out_off + i] = dup;
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ table */

const struct kiln_cpu_op kiln_cpu_ops_binary[] = {
    {"Add", "", 1, 0, run_add, prep_add, KILN_OP_INPLACE},
    {"Sub", "", 1, 0, run_sub, prep_sub, KILN_OP_INPLACE},
    {"Mul", "", 1, 0, run_mul, prep_mul, KILN_OP_INPLACE},
    {"Div", "", 1, 0, run_div, prep_div, KILN_OP_INPLACE},
    {"Pow", "", 1, 0, run_pow, prep_pow, KILN_OP_INPLACE},
    {"Mod", "", 10, 0, run_mod, prep_mod, KILN_OP_INPLACE},
    {"Min", "", 1, 0, run_min, NULL, KILN_OP_INPLACE},
    {"Max", "", 1, 0, run_max, NULL, KILN_OP_INPLACE},
    {"Sum", "", 1, 0, run_sum, NULL, KILN_OP_INPLACE},
    {"Mean", "", 1, 0, run_mean, NULL, KILN_OP_INPLACE},
    {"Equal", "", 1, 0, run_equal, prep_equal, KILN_OP_INPLACE},
    {"Less", "", 1, 0, run_less, prep_less, KILN_OP_INPLACE},
    {"Greater", "", 1, 0, run_greater, prep_greater, KILN_OP_INPLACE},
    {"LessOrEqual", "", 12, 0, run_less_eq, NULL, KILN_OP_INPLACE},
    {"GreaterOrEqual", "", 12, 0, run_greater_eq, NULL, KILN_OP_INPLACE},
    {"And", "", 1, 0, run_and, prep_and, KILN_OP_INPLACE},
    {"Or", "", 1, 0, run_or, prep_or, KILN_OP_INPLACE},
    {"Xor", "", 1, 0, run_xor, prep_xor, KILN_OP_INPLACE},
    {"BitwiseAnd", "", 18, 0, run_band, NULL, KILN_OP_INPLACE},
    {"BitwiseOr", "", 18, 0, run_bor, NULL, KILN_OP_INPLACE},
    {"BitwiseXor", "", 18, 0, run_bxor, NULL, KILN_OP_INPLACE},
    {"BitShift", "", 11, 0, run_bitshift, prep_bitshift, KILN_OP_INPLACE},
    {"Where", "", 9, 0, run_where, NULL, KILN_OP_INPLACE},
    {"PRelu", "", 1, 0, run_prelu, NULL, KILN_OP_INPLACE},
    {0},
};
