/* src/cpu/ops/cast.c: ONNX Cast (opsets 1..25) and CastLike (opsets 15..25).
 *
 * Every pair of the types Cast allows: bool, the 2/4/8/16/32/64-bit integers, float16,
 * bfloat16, float, double, the float8 family, float4e2m1, float8e8m0 and string.
 * Rules, following the spec's text and its reference data:
 * - float -> float rounds to nearest even, once (double -> float16 does not go through
 *   float32). Out of range gives +-Inf, except the float8 types, which follow the spec's
 *   `saturate` tables, float4e2m1, which always clamps to +-6, and float8e8m0, which rounds
 *   by `round_mode` (up/down/nearest). See cpu/float8.h.
 * - float -> integer truncates toward zero, then keeps the low bits of the 64-bit result
 *   like any integer narrowing (the spec leaves out-of-range values undefined; the ONNX
 *   data for int4/int2 shows wrapping, e.g. -9.0 -> int4 7). NaN gives 0.
 * - integer -> integer keeps the low bits (two's complement), int4/int2 sign-extended.
 * - anything -> bool is `!= 0` (NaN is true); bool -> number is 0 or 1.
 * - number -> string: integers in decimal; floats as the shortest decimal that reads back
 *   to the same value of the source type, positional for 1e-4 <= |x| < 1e16 (with ".0" for
 *   whole numbers), else scientific ("1e+20", "2.5e-07"), as numpy's str() writes them;
 *   specials as "NaN", "INF", "-INF" (the spellings the spec reserves); bool as
 *   "True"/"False".
 * - string -> number: decimal or scientific text, "INF"/"+INF"/"-INF"/"NaN" in any case;
 *   "2.5" to an integer truncates to 2; "true"/"false" are accepted for bool. Text that is
 *   not a number fails the node with KILN_E_INVALID_ARG naming the element.
 * Opset 1's `to` is a type name string ("FLOAT"); later opsets use the enum value.
 *
 * Prepared kernels (cpu/kernel.h): prepare decodes `to` (Cast), `saturate` and `round_mode`
 * into a struct cast_state and refuses a missing or unknown `to`, a type Cast cannot produce
 * and an unknown round_mode there. A kernel run without prepare (k->state NULL: the unit
 * tests call run directly) decodes through the same function at run time.
 *
 * In place (KILN_OP_INPLACE): output 0 has input 0's shape, so the planner's equal-size rule
 * lets it share input 0's memory only when both element types have the same size (int32 ->
 * float32, float16 <-> bfloat16, bool -> uint8, same type). The numeric cast converts chunk
 * by chunk through a double or int64 buffer, reading a whole chunk before storing it, and a
 * same-type cast has nothing left to copy; strings are never planned.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpu/float8.h"
#include "cpu/tensor_util.h"

struct cast_opts {
    bool saturate;
    enum kiln_e8m0_round rm;
};

/* ------------------------------------------------------------------ classes of types */

static bool is_floaty(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F64 || dt == KILN_DTYPE_F16 ||
           dt == KILN_DTYPE_BF16 || kiln_f8_is_narrow(dt);
}

static bool castable(kiln_dtype dt)
{
    return is_floaty(dt) || kiln_dtype_is_int(dt) || dt == KILN_DTYPE_BOOL ||
           dt == KILN_DTYPE_STRING;
}

/* ------------------------------------------------------------------ storing a chunk */

/* Truncates toward zero into int64, saturating at its range; NaN gives 0. */
static int64_t f64_to_i64(double v)
{
    if (isnan(v)) return 0;
    if (v >= 0x1p63) return INT64_MAX;
    if (v <= -0x1p63) return INT64_MIN;
    return (int64_t)v;
}

static uint64_t f64_to_u64(double v)
{
    if (v >= 0x1p63) return v >= 0x1p64 ? UINT64_MAX : (uint64_t)v;
    return (uint64_t)f64_to_i64(v); /* negatives wrap, as integer narrowing does */
}

/* Stores m integers (int64 bit patterns) into y[i0..) of integer/bool dtype dt, keeping
 * the low bits; int4/int2 sign-extend, uint4/uint2 mask. */
static void store_int_bits(kiln_dtype dt, const int64_t *v, size_t m, void *y, size_t i0)
{
#define STORE(T, EXPR)                                                                         \
    do {                                                                                       \
        T *o = (T *)y + i0;                                                                    \
        for (size_t j = 0; j < m; j++) {                                                       \
            uint64_t u = (uint64_t)v[j];                                                       \
            o[j] = (T)(EXPR);                                                                  \
        }                                                                                      \
    } while (0)
    switch (dt) {
    case KILN_DTYPE_I8: STORE(int8_t, u); break;
    case KILN_DTYPE_I16: STORE(int16_t, u); break;
    case KILN_DTYPE_I32: STORE(int32_t, u); break;
    case KILN_DTYPE_I64: STORE(int64_t, u); break;
    case KILN_DTYPE_U8: STORE(uint8_t, u); break;
    case KILN_DTYPE_U16: STORE(uint16_t, u); break;
    case KILN_DTYPE_U32: STORE(uint32_t, u); break;
    case KILN_DTYPE_U64: STORE(uint64_t, u); break;
    case KILN_DTYPE_I4: STORE(int8_t, (int)((u & 0xF) ^ 0x8) - 0x8); break;
    case KILN_DTYPE_U4: STORE(uint8_t, u & 0xF); break;
    case KILN_DTYPE_I2: STORE(int8_t, (int)((u & 0x3) ^ 0x2) - 0x2); break;
    case KILN_DTYPE_U2: STORE(uint8_t, u & 0x3); break;
    case KILN_DTYPE_BOOL: STORE(uint8_t, u != 0); break;
    default: break;
    }
#undef STORE
}

/* Stores m doubles into y[i0..) of float-class dtype dt. */
static void store_f64_float(kiln_dtype dt, const double *v, size_t m, void *y, size_t i0,
                            const struct cast_opts *o)
{
    switch (dt) {
    case KILN_DTYPE_F32: {
        float *d = (float *)y + i0;
        for (size_t j = 0; j < m; j++) d[j] = (float)v[j];
        break;
    }
    case KILN_DTYPE_F64: memcpy((double *)y + i0, v, m * sizeof *v); break;
    case KILN_DTYPE_F16: {
        uint16_t *d = (uint16_t *)y + i0;
        for (size_t j = 0; j < m; j++) d[j] = kiln_f64_to_f16(v[j]);
        break;
    }
    case KILN_DTYPE_BF16: {
        uint16_t *d = (uint16_t *)y + i0;
        for (size_t j = 0; j < m; j++) d[j] = kiln_f64_to_bf16(v[j]);
        break;
    }
    default: {
        uint8_t *d = (uint8_t *)y + i0;
        for (size_t j = 0; j < m; j++) d[j] = kiln_f8_from_f64(dt, v[j], o->saturate, o->rm);
        break;
    }
    }
}

/* ------------------------------------------------------------------ numbers <-> text */

/* Writes finite v in numpy's str() layout given its shortest significant digits `dig`
 * (no dot) and decimal exponent `e` (v = d.ddd * 10^e). */
static void layout_decimal(char *buf, size_t size, bool neg, const char *dig, int e)
{
    size_t nd = strlen(dig), o = 0;
    char tmp[64];
#define PUT(c)                                                                                 \
    do {                                                                                       \
        if (o + 1 < sizeof tmp) tmp[o++] = (c);                                                \
    } while (0)
    if (neg) PUT('-');
    if (e >= 16 || e < -4) {
        PUT(dig[0]);
        if (nd > 1) {
            PUT('.');
            for (size_t i = 1; i < nd; i++) PUT(dig[i]);
        }
        tmp[o] = 0;
        snprintf(buf, size, "%se%c%02d", tmp, e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (e < 0) {
        PUT('0');
        PUT('.');
        for (int i = 0; i < -e - 1; i++) PUT('0');
        for (size_t i = 0; i < nd; i++) PUT(dig[i]);
    } else {
        for (int i = 0; i <= e; i++) PUT((size_t)i < nd ? dig[i] : '0');
        PUT('.');
        if ((size_t)e + 1 < nd)
            for (size_t i = (size_t)e + 1; i < nd; i++) PUT(dig[i]);
        else
            PUT('0');
    }
    tmp[o] = 0;
#undef PUT
    snprintf(buf, size, "%s", tmp);
}

/* Whether text s reads back as exactly value v of float type dt. */
static bool reads_back(kiln_dtype dt, const char *s, double v)
{
    switch (dt) {
    case KILN_DTYPE_F32: return strtof(s, NULL) == (float)v;
    case KILN_DTYPE_F64: return strtod(s, NULL) == v;
    case KILN_DTYPE_F16: return kiln_f64_to_f16(strtod(s, NULL)) == kiln_f64_to_f16(v);
    case KILN_DTYPE_BF16: return kiln_f64_to_bf16(strtod(s, NULL)) == kiln_f64_to_bf16(v);
    default:
        return kiln_f8_to_f32(dt, kiln_f8_from_f64(dt, strtod(s, NULL), true, KILN_E8M0_NEAREST)) ==
               (float)v;
    }
}

/* Formats value v of float type dt as described in the file comment. */
static void format_float(kiln_dtype dt, double v, char *buf, size_t size)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-INF" : "INF");
        return;
    }
    if (v == 0) {
        snprintf(buf, size, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char sci[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, v);
        if (p == 17 || reads_back(dt, sci, v)) break;
    }
    /* sci is "-d.ddde+XX": split into digits and exponent */
    const char *s = sci;
    bool neg = *s == '-';
    if (neg) s++;
    char dig[40];
    size_t nd = 0;
    for (; *s && *s != 'e'; s++)
        if (isdigit((unsigned char)*s) && nd + 1 < sizeof dig) dig[nd++] = *s;
    while (nd > 1 && dig[nd - 1] == '0') nd--; /* trailing zeros carry no information */
    dig[nd] = 0;
    int e = *s == 'e' ? (int)strtol(s + 1, NULL, 10) : 0;
    layout_decimal(buf, size, neg, dig, e);
}

/* Parses s as a number for the cast: *isint says whether it was an exact integer (then
 * *iv holds it, as int64 bits; *uns tells uint64 values above INT64_MAX), else *dv. */
static bool parse_number(const char *s, double *dv, int64_t *iv, bool *isint, bool *uns)
{
    char *end;
    while (isspace((unsigned char)*s)) s++;
    *isint = false;
    *uns = false;
    if (!*s) return false;
    errno = 0;
    long long ll = strtoll(s, &end, 10);
    if (end != s && errno == 0) {
        const char *t = end;
        while (isspace((unsigned char)*t)) t++;
        if (!*t) {
            *isint = true;
            *iv = ll;
            *dv = (double)ll;
            return true;
        }
    }
    if (*s != '-') {
        errno = 0;
        unsigned long long ull = strtoull(s, &end, 10);
        const char *t = end;
        while (isspace((unsigned char)*t)) t++;
        if (end != s && errno == 0 && !*t) {
            *isint = true;
            *uns = true;
            *iv = (int64_t)ull;
            *dv = (double)ull;
            return true;
        }
    }
    /* strtod reads "inf", "+INF", "-Infinity" and "nan" in any case, as the spec asks */
    *dv = strtod(s, &end);
    if (end == s) return false;
    while (isspace((unsigned char)*end)) end++;
    return *end == 0;
}

/* Casts string tensor x into y (dtype to, already allocated). */
static kiln_status cast_from_string(struct kiln_kctx *k, const struct kiln_tensor *x,
                                    struct kiln_tensor *y, const struct cast_opts *o)
{
    size_t n = kiln_tensor_numel(x);
    char *const *s = x->data;
    kiln_dtype to = y->dtype;
    for (size_t i = 0; i < n; i++) {
        const char *str = s[i] ? s[i] : "";
        double dv = 0;
        int64_t iv = 0;
        bool isint = false, uns = false;
        if (to == KILN_DTYPE_BOOL &&
            (strcasecmp(str, "true") == 0 || strcasecmp(str, "false") == 0)) {
            ((uint8_t *)y->data)[i] = strcasecmp(str, "true") == 0;
            continue;
        }
        if (!parse_number(str, &dv, &iv, &isint, &uns))
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "input 0 element %zu is \"%.40s\"; expected a number to cast to %s",
                              i, str, kiln_dtype_name(to));
        if (to == KILN_DTYPE_F32 && !isint) {
            ((float *)y->data)[i] = strtof(str, NULL); /* one rounding, straight to float */
        } else if (is_floaty(to)) {
            if (isint) dv = uns ? (double)(uint64_t)iv : (double)iv;
            store_f64_float(to, &dv, 1, y->data, i, o);
        } else {
            if (!isint) iv = to == KILN_DTYPE_U64 ? (int64_t)f64_to_u64(dv) : f64_to_i64(dv);
            if (to == KILN_DTYPE_BOOL && !isint) iv = dv != 0;
            store_int_bits(to, &iv, 1, y->data, i);
        }
    }
    return KILN_OK;
}

/* Casts numeric tensor x into string tensor y. */
static kiln_status cast_to_string(struct kiln_kctx *k, const struct kiln_tensor *x,
                                  struct kiln_tensor *y)
{
    size_t n = kiln_tensor_numel(x);
    char **out = y->data;
    kiln_dtype dt = x->dtype;
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        if (dt == KILN_DTYPE_BOOL) {
            snprintf(buf, sizeof buf, "%s", ((const uint8_t *)x->data)[i] ? "True" : "False");
        } else if (is_floaty(dt)) {
            double v;
            kiln_to_f64_n(dt, x->data, i, 1, &v);
            format_float(dt, v, buf, sizeof buf);
        } else {
            int64_t v;
            kiln_to_i64_n(dt, x->data, i, 1, &v);
            if (dt == KILN_DTYPE_U64)
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)(uint64_t)v);
            else
                snprintf(buf, sizeof buf, "%lld", (long long)v);
        }
        char *dup = kiln_strdup(buf);
        if (!dup) return kiln_kfail(k, KILN_E_NOMEM, "out of memory writing string element %zu", i);
        out[i] = dup; /* the tensor owns its strings; the initial "" is static */
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ the cast */

#define CHUNK 512

/* Converts numeric x into numeric y (allocated, same shape), chunk by chunk through a
 * double or int64 buffer, each stage a plain loop over one type. */
static void cast_numeric(const struct kiln_tensor *x, struct kiln_tensor *y,
                         const struct cast_opts *o)
{
    size_t n = kiln_tensor_numel(x);
    kiln_dtype from = x->dtype, to = y->dtype;

    /* The hot float32 pairs go straight through. */
    if (from == KILN_DTYPE_F32 && (to == KILN_DTYPE_F16 || to == KILN_DTYPE_BF16)) {
        kiln_half_store_f32(to, x->data, n, y->data);
        return;
    }
    if (to == KILN_DTYPE_F32 && (from == KILN_DTYPE_F16 || from == KILN_DTYPE_BF16)) {
        kiln_half_load_f32(from, x->data, n, y->data);
        return;
    }

    double dbuf[CHUNK];
    int64_t ibuf[CHUNK];
    bool src_float = is_floaty(from), dst_float = is_floaty(to);
    bool src_uns = from == KILN_DTYPE_U64; /* the only one whose bits exceed int64 */
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        if (src_float) {
            kiln_to_f64_n(from, x->data, i0, m, dbuf);
            if (dst_float) {
                store_f64_float(to, dbuf, m, y->data, i0, o);
            } else if (to == KILN_DTYPE_BOOL) {
                uint8_t *d = (uint8_t *)y->data + i0;
                for (size_t j = 0; j < m; j++) d[j] = dbuf[j] != 0;
            } else {
                if (to == KILN_DTYPE_U64)
                    for (size_t j = 0; j < m; j++) ibuf[j] = (int64_t)f64_to_u64(dbuf[j]);
                else
                    for (size_t j = 0; j < m; j++) ibuf[j] = f64_to_i64(dbuf[j]);
                store_int_bits(to, ibuf, m, y->data, i0);
            }
        } else {
            kiln_to_i64_n(from, x->data, i0, m, ibuf);
            if (!dst_float) {
                store_int_bits(to, ibuf, m, y->data, i0);
            } else if (to == KILN_DTYPE_F32) {
                /* int -> float directly: one rounding even above 2^53 */
                float *d = (float *)y->data + i0;
                if (src_uns)
                    for (size_t j = 0; j < m; j++) d[j] = (float)(uint64_t)ibuf[j];
                else
                    for (size_t j = 0; j < m; j++) d[j] = (float)ibuf[j];
            } else {
                if (src_uns)
                    for (size_t j = 0; j < m; j++) dbuf[j] = (double)(uint64_t)ibuf[j];
                else
                    for (size_t j = 0; j < m; j++) dbuf[j] = (double)ibuf[j];
                store_f64_float(to, dbuf, m, y->data, i0, o);
            }
        }
    }
}

/* ------------------------------------------------------------------ prepared state */

/* Cast's target (KILN_DTYPE_UNDEFINED for CastLike, which takes input 1's type) and the
 * float8/float8e8m0 conversion options. */
struct cast_state {
    kiln_dtype to;
    struct cast_opts o;
};

/* The options every opset may carry (saturate 19+, round_mode 25+; absent: the defaults). */
static kiln_status decode_opts(struct kiln_kctx *k, struct cast_opts *o)
{
    o->saturate = kiln_attr_i(k, "saturate", 1) != 0;
    const char *rm = kiln_attr_s(k, "round_mode", "up");
    if (strcmp(rm, "up") == 0)
        o->rm = KILN_E8M0_UP;
    else if (strcmp(rm, "down") == 0)
        o->rm = KILN_E8M0_DOWN;
    else if (strcmp(rm, "nearest") == 0)
        o->rm = KILN_E8M0_NEAREST;
    else
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "attribute round_mode is '%s'; expected 'up', 'down' or 'nearest'", rm);
    return KILN_OK;
}

/* Refuses a target Cast cannot produce. */
static kiln_status check_target(struct kiln_kctx *k, kiln_dtype to)
{
    if (!castable(to))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "target type is %s (%d); Cast cannot produce it",
                          kiln_dtype_name(to), (int)to);
    return KILN_OK;
}

/* Casts input 0 to dtype `to` into output 0. */
static kiln_status cast_run(struct kiln_kctx *k, kiln_dtype to, const struct cast_opts *o)
{
    const struct kiln_tensor *x;
    struct kiln_tensor *y;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!castable(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input 0 is %s; Cast does not take that type",
                          kiln_dtype_name(x->dtype));
    KILN_TRY(check_target(k, to));

    if (x->dtype == to && to != KILN_DTYPE_STRING) {
        /* A plain copy into the (possibly planned) output; in place, nothing to move. */
        KILN_TRY(kiln_out_tensor_raw(k, 0, to, x->rank, x->dims, &y));
        size_t bytes = kiln_tensor_nbytes(x);
        if (bytes && y->data != x->data) memcpy(y->data, x->data, bytes);
        return KILN_OK;
    }
    if (x->dtype == to) {
        /* Strings: a deep copy. */
        struct kiln_value *v;
        kiln_err e;
        struct kiln_value src = {.kind = KILN_VALUE_TENSOR, .t = *x};
        kiln_status st = kiln_value_clone(&src, &v, &e);
        if (st) return kiln_kfail(k, st, "%s", e.msg);
        return kiln_out_value(k, 0, v);
    }
    KILN_TRY(kiln_out_tensor(k, 0, to, x->rank, x->dims, &y));
    if (x->dtype == KILN_DTYPE_STRING) return cast_from_string(k, x, y, o);
    if (to == KILN_DTYPE_STRING) return cast_to_string(k, x, y);
    cast_numeric(x, y, o);
    return KILN_OK;
}

/* Opset 1's `to` names: TensorProto.DataType spellings. */
static const struct {
    const char *name;
    kiln_dtype dt;
} type_names[] = {
    {"FLOAT", KILN_DTYPE_F32},   {"UINT8", KILN_DTYPE_U8},     {"INT8", KILN_DTYPE_I8},
    {"UINT16", KILN_DTYPE_U16},  {"INT16", KILN_DTYPE_I16},    {"INT32", KILN_DTYPE_I32},
    {"INT64", KILN_DTYPE_I64},   {"STRING", KILN_DTYPE_STRING}, {"BOOL", KILN_DTYPE_BOOL},
    {"FLOAT16", KILN_DTYPE_F16}, {"DOUBLE", KILN_DTYPE_F64},   {"UINT32", KILN_DTYPE_U32},
    {"UINT64", KILN_DTYPE_U64},  {"BFLOAT16", KILN_DTYPE_BF16},
};

static kiln_status decode_cast(struct kiln_kctx *k, struct cast_state *s)
{
    const struct kiln_attr *a = kiln_node_attr(k->node, "to");
    s->to = KILN_DTYPE_UNDEFINED;
    if (!a) return kiln_kfail(k, KILN_E_INVALID_MODEL, "required attribute 'to' is missing");
    if (a->type == KILN_ATTR_STRING && a->s) {
        size_t i = 0, n = sizeof type_names / sizeof type_names[0];
        while (i < n && strcasecmp(a->s, type_names[i].name) != 0) i++;
        if (i == n)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'to' is '%.40s'; not a type name",
                              a->s);
        s->to = type_names[i].dt;
    } else if (a->type != KILN_ATTR_INT || !kiln_dtype_valid((int)a->i) || a->i != (int)a->i) {
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'to' is not a valid data type");
    } else {
        s->to = (kiln_dtype)a->i;
    }
    KILN_TRY(check_target(k, s->to));
    return decode_opts(k, &s->o);
}

static kiln_status decode_castlike(struct kiln_kctx *k, struct cast_state *s)
{
    s->to = KILN_DTYPE_UNDEFINED;
    return decode_opts(k, &s->o);
}

KILN_PREPARE_WITH(prep_cast, struct cast_state, decode_cast)
KILN_PREPARE_WITH(prep_castlike, struct cast_state, decode_castlike)

static kiln_status run_cast(struct kiln_kctx *k)
{
    struct cast_state dec;
    const struct cast_state *cs;
    KILN_STATE_OR_DECODE(k, decode_cast, dec, cs);
    return cast_run(k, cs->to, &cs->o);
}

static kiln_status run_castlike(struct kiln_kctx *k)
{
    const struct kiln_tensor *like;
    struct cast_state dec;
    const struct cast_state *cs;
    KILN_STATE_OR_DECODE(k, decode_castlike, dec, cs);
    KILN_TRY(kiln_in_req(k, 1, &like));
    return cast_run(k, like->dtype, &cs->o);
}

const struct kiln_cpu_op kiln_cpu_ops_cast[] = {
    {"Cast", "", 1, 0, run_cast, prep_cast, KILN_OP_INPLACE},
    {"CastLike", "", 15, 0, run_castlike, prep_castlike, KILN_OP_INPLACE},
    {0},
};
