/* tensor_util.c: dtype conversion, axis and string helpers shared by the CPU kernels; see
 * tensor_util.h for the contracts. The loops convert with the inline scalar conversions of
 * ir/half.h and one switch per call, never a per-element dtype dispatch.
 */
#include "cpu/tensor_util.h"

#include <math.h>
#include <string.h>

#include "cpu/float8.h"
#include "cpu/half_isa.h"

/* ------------------------------------------------------------------ float32 staging */

kiln_status kiln_stage_f32(struct kiln_kctx *k, const struct kiln_tensor *t, const float **out)
{
    if (t->dtype == KILN_DTYPE_F32) {
        *out = t->data;
        return KILN_OK;
    }
    size_t n = kiln_tensor_numel(t);
    float *f;
    KILN_TRY(kiln_scratch(k, n * sizeof *f + 1, (void **)&f));
    switch (t->dtype) {
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: kiln_half_load_f32(t->dtype, t->data, n, f); break;
    case KILN_DTYPE_F64: {
        const double *d = t->data;
        for (size_t i = 0; i < n; i++) f[i] = (float)d[i];
        break;
    }
    default:
        for (size_t i = 0; i < n; i++) f[i] = (float)kiln_tensor_get_f64(t, i);
        break;
    }
    *out = f;
    return KILN_OK;
}

kiln_status kiln_stage_out_f32(struct kiln_kctx *k, struct kiln_tensor *t, float **out)
{
    if (t->dtype == KILN_DTYPE_F32) {
        *out = t->data;
        return KILN_OK;
    }
    return kiln_scratch(k, kiln_tensor_numel(t) * sizeof(float) + 1, (void **)out);
}

void kiln_unstage_f32(struct kiln_tensor *t, const float *src)
{
    if ((const void *)src == t->data) return;
    size_t n = kiln_tensor_numel(t);
    switch (t->dtype) {
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: kiln_half_store_f32(t->dtype, src, n, t->data); break;
    case KILN_DTYPE_F64: {
        double *d = t->data;
        for (size_t i = 0; i < n; i++) d[i] = src[i];
        break;
    }
    default:
        for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(t, i, src[i]);
        break;
    }
}

void kiln_half_load_f32(kiln_dtype dt, const uint16_t *x, size_t n, float *y)
{
    if (dt == KILN_DTYPE_F16)
        KILN_ISA_DISPATCH(kiln_f16_load_f32_isa, (x, n, y)); /* cpu/half_isa.h: F16C */
    else
        for (size_t i = 0; i < n; i++) y[i] = kiln_half_bf16_to_f32(x[i]);
}

void kiln_half_store_f32(kiln_dtype dt, const float *x, size_t n, uint16_t *y)
{
    if (dt == KILN_DTYPE_F16)
        KILN_ISA_DISPATCH(kiln_f16_store_f32_isa, (x, n, y));
    else
        for (size_t i = 0; i < n; i++) y[i] = kiln_half_f32_to_bf16(x[i]);
}

/* ------------------------------------------------------------------ double / int64 copies */

void kiln_to_f64_n(kiln_dtype dt, const void *x, size_t i0, size_t n, double *d)
{
#define CONV(T, EXPR)                                                                          \
    do {                                                                                       \
        const T *s = (const T *)x + i0;                                                        \
        for (size_t j = 0; j < n; j++) d[j] = (EXPR);                                          \
    } while (0)
    switch (dt) {
    case KILN_DTYPE_F32: CONV(float, s[j]); break;
    case KILN_DTYPE_F64: if (n) memcpy(d, (const double *)x + i0, n * sizeof *d); break;
    case KILN_DTYPE_F16: CONV(uint16_t, kiln_half_f16_to_f32(s[j])); break;
    case KILN_DTYPE_BF16: CONV(uint16_t, kiln_half_bf16_to_f32(s[j])); break;
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: CONV(int8_t, s[j]); break;
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2:
    case KILN_DTYPE_BOOL: CONV(uint8_t, s[j]); break;
    case KILN_DTYPE_I16: CONV(int16_t, s[j]); break;
    case KILN_DTYPE_U16: CONV(uint16_t, s[j]); break;
    case KILN_DTYPE_I32: CONV(int32_t, s[j]); break;
    case KILN_DTYPE_U32: CONV(uint32_t, s[j]); break;
    case KILN_DTYPE_I64: CONV(int64_t, (double)s[j]); break;
    case KILN_DTYPE_U64: CONV(uint64_t, (double)s[j]); break;
    default:
        if (kiln_f8_is_narrow(dt)) CONV(uint8_t, kiln_f8_to_f32(dt, s[j]));
        else for (size_t j = 0; j < n; j++) d[j] = NAN;
        break;
    }
#undef CONV
}

void kiln_to_i64_n(kiln_dtype dt, const void *x, size_t i0, size_t n, int64_t *d)
{
#define CONV(T)                                                                                \
    do {                                                                                       \
        const T *s = (const T *)x + i0;                                                        \
        for (size_t j = 0; j < n; j++) d[j] = (int64_t)s[j];                                   \
    } while (0)
    switch (dt) {
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: CONV(int8_t); break;
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2: case KILN_DTYPE_BOOL:
        CONV(uint8_t);
        break;
    case KILN_DTYPE_I16: CONV(int16_t); break;
    case KILN_DTYPE_U16: CONV(uint16_t); break;
    case KILN_DTYPE_I32: CONV(int32_t); break;
    case KILN_DTYPE_U32: CONV(uint32_t); break;
    case KILN_DTYPE_I64:
    case KILN_DTYPE_U64: if (n) memcpy(d, (const int64_t *)x + i0, n * sizeof *d); break;
    default: if (n) memset(d, 0, n * sizeof *d); break;
    }
#undef CONV
}

/* A new array of numel(t) (at least 1) elements of `size` bytes for load_*; fails naming
 * `what`. */
static kiln_status load_alloc(struct kiln_kctx *k, const struct kiln_tensor *t, const char *what,
                              size_t size, void **out)
{
    size_t n = kiln_tensor_numel(t), bytes;
    *out = NULL;
    if (!kiln_mul_size(n ? n : 1, size, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "input '%s' is too large", what);
    *out = kiln_malloc(bytes);
    if (!*out) return kiln_kfail(k, KILN_E_NOMEM, "out of memory converting input '%s'", what);
    return KILN_OK;
}

kiln_status kiln_load_f64(struct kiln_kctx *k, const struct kiln_tensor *t, const char *what,
                          double **out)
{
    *out = NULL;
    if (!kiln_dtype_is_real_float(t->dtype) && !kiln_dtype_is_int(t->dtype) &&
        t->dtype != KILN_DTYPE_BOOL)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input '%s' is %s; expected a numeric type", what,
                          kiln_dtype_name(t->dtype));
    KILN_TRY(load_alloc(k, t, what, sizeof **out, (void **)out));
    kiln_to_f64_n(t->dtype, t->data, 0, kiln_tensor_numel(t), *out);
    return KILN_OK;
}

kiln_status kiln_load_i64(struct kiln_kctx *k, const struct kiln_tensor *t, const char *what,
                          int64_t **out)
{
    *out = NULL;
    if (!kiln_dtype_is_int(t->dtype) && t->dtype != KILN_DTYPE_BOOL)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input '%s' is %s; expected an integer type",
                          what, kiln_dtype_name(t->dtype));
    KILN_TRY(load_alloc(k, t, what, sizeof **out, (void **)out));
    kiln_to_i64_n(t->dtype, t->data, 0, kiln_tensor_numel(t), *out);
    return KILN_OK;
}

void kiln_store_f64(struct kiln_tensor *t, const double *d, size_t n)
{
    void *p = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: for (size_t i = 0; i < n; i++) ((float *)p)[i] = (float)d[i]; break;
    case KILN_DTYPE_F64: if (n) memcpy(p, d, n * sizeof *d); break;
    case KILN_DTYPE_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)p)[i] = kiln_half_f32_to_f16((float)d[i]);
        break;
    case KILN_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)p)[i] = kiln_half_f32_to_bf16((float)d[i]);
        break;
    default: for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(t, i, d[i]); break;
    }
}

void kiln_store_i64(struct kiln_tensor *t, const int64_t *d, size_t n)
{
    void *p = t->data;
    if (t->dtype == KILN_DTYPE_BOOL) {
        for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = d[i] != 0;
        return;
    }
    if (!kiln_dtype_is_int(t->dtype)) return;
    switch (kiln_dtype_size(t->dtype)) {
    case 1: for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)d[i]; break;
    case 2: for (size_t i = 0; i < n; i++) ((uint16_t *)p)[i] = (uint16_t)d[i]; break;
    case 4: for (size_t i = 0; i < n; i++) ((uint32_t *)p)[i] = (uint32_t)d[i]; break;
    case 8: if (n) memcpy(p, d, n * sizeof *d); break;
    default: break;
    }
}

/* ------------------------------------------------------------------ axes */

kiln_status kiln_norm_axis(struct kiln_kctx *k, int64_t axis, int rank, const char *what, int *out)
{
    if (axis < -(int64_t)rank || axis >= (int64_t)rank)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "%s is %lld, out of range [%d, %d] for rank %d",
                          what, (long long)axis, -rank, rank - 1, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return KILN_OK;
}

/* ------------------------------------------------------------------ slices */

kiln_status kiln_take_slices(struct kiln_kctx *k, struct kiln_tensor *o,
                             const struct kiln_tensor *x, size_t outer, size_t dim, size_t inner,
                             const int64_t *sel, size_t n)
{
    if (kiln_tensor_numel(o) == 0) return KILN_OK;
    if (x->dtype == KILN_DTYPE_STRING) {
        char **d = o->data;
        const char *const *s = (const char *const *)x->data;
        for (size_t a = 0; a < outer; a++)
            for (size_t j = 0; j < n; j++, d += inner)
                KILN_TRY(kiln_copy_strings(k, d, s + (a * dim + (size_t)sel[j]) * inner, inner));
        return KILN_OK;
    }
    size_t esz = kiln_dtype_size(x->dtype), bytes = inner * esz;
    unsigned char *d = o->data;
    const unsigned char *s = x->data;
    for (size_t a = 0; a < outer; a++)
        for (size_t j = 0; j < n; j++, d += bytes)
            memcpy(d, s + (a * dim + (size_t)sel[j]) * bytes, bytes);
    return KILN_OK;
}

/* ------------------------------------------------------------------ strings */

kiln_status kiln_copy_strings(struct kiln_kctx *k, char **dst, const char *const *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!src[i] || !src[i][0]) continue;
        char *c = kiln_strdup(src[i]);
        if (!c) return kiln_kfail(k, KILN_E_NOMEM, "out of memory copying %zu strings", n);
        dst[i] = c;
    }
    return KILN_OK;
}
