/* dtype.c: element types: names, sizes, classes, and float16/bfloat16 conversion
 * (IEEE 754 binary16 and the bfloat16 truncated binary32, round to nearest even). */
#include "ir/half.h"
#include "ir/ir.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[KILN_DTYPE_COUNT_] = {
    [KILN_DTYPE_UNDEFINED] = {"undefined", 0},
    [KILN_DTYPE_F32] = {"float32", 4},
    [KILN_DTYPE_U8] = {"uint8", 1},
    [KILN_DTYPE_I8] = {"int8", 1},
    [KILN_DTYPE_U16] = {"uint16", 2},
    [KILN_DTYPE_I16] = {"int16", 2},
    [KILN_DTYPE_I32] = {"int32", 4},
    [KILN_DTYPE_I64] = {"int64", 8},
    [KILN_DTYPE_STRING] = {"string", sizeof(char *)},
    [KILN_DTYPE_BOOL] = {"bool", 1},
    [KILN_DTYPE_F16] = {"float16", 2},
    [KILN_DTYPE_F64] = {"float64", 8},
    [KILN_DTYPE_U32] = {"uint32", 4},
    [KILN_DTYPE_U64] = {"uint64", 8},
    [KILN_DTYPE_C64] = {"complex64", 8},
    [KILN_DTYPE_C128] = {"complex128", 16},
    [KILN_DTYPE_BF16] = {"bfloat16", 2},
    [KILN_DTYPE_F8E4M3FN] = {"float8e4m3fn", 1},
    [KILN_DTYPE_F8E4M3FNUZ] = {"float8e4m3fnuz", 1},
    [KILN_DTYPE_F8E5M2] = {"float8e5m2", 1},
    [KILN_DTYPE_F8E5M2FNUZ] = {"float8e5m2fnuz", 1},
    [KILN_DTYPE_U4] = {"uint4", 1},
    [KILN_DTYPE_I4] = {"int4", 1},
    [KILN_DTYPE_F4E2M1] = {"float4e2m1", 1},
    [KILN_DTYPE_F8E8M0] = {"float8e8m0", 1},
    [KILN_DTYPE_U2] = {"uint2", 1},
    [KILN_DTYPE_I2] = {"int2", 1},
};

bool kiln_dtype_valid(int dt) { return dt > 0 && dt < KILN_DTYPE_COUNT_; }

const char *kiln_dtype_name(kiln_dtype dt)
{
    return kiln_dtype_valid((int)dt) ? dtypes[dt].name : "undefined";
}

size_t kiln_dtype_size(kiln_dtype dt) { return kiln_dtype_valid((int)dt) ? dtypes[dt].size : 0; }

bool kiln_dtype_is_float(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_BF16:
    case KILN_DTYPE_F8E4M3FN: case KILN_DTYPE_F8E4M3FNUZ: case KILN_DTYPE_F8E5M2:
    case KILN_DTYPE_F8E5M2FNUZ: case KILN_DTYPE_F4E2M1: case KILN_DTYPE_F8E8M0:
        return true;
    default:
        return false;
    }
}

bool kiln_dtype_is_signed(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_I8: case KILN_DTYPE_I16: case KILN_DTYPE_I32: case KILN_DTYPE_I64:
    case KILN_DTYPE_I4: case KILN_DTYPE_I2:
        return true;
    default:
        return false;
    }
}

bool kiln_dtype_is_int(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_U8: case KILN_DTYPE_U16: case KILN_DTYPE_U32: case KILN_DTYPE_U64:
    case KILN_DTYPE_U4: case KILN_DTYPE_U2:
        return true;
    default:
        return kiln_dtype_is_signed(dt);
    }
}

/* The conversions themselves live in ir/half.h as static inline functions, so that kernel
 * loops can inline them; these out-of-line versions are the same code. */
float kiln_f16_to_f32(uint16_t h) { return kiln_half_f16_to_f32(h); }

uint16_t kiln_f32_to_f16(float f) { return kiln_half_f32_to_f16(f); }

float kiln_bf16_to_f32(uint16_t h) { return kiln_half_bf16_to_f32(h); }

uint16_t kiln_f32_to_bf16(float f) { return kiln_half_f32_to_bf16(f); }
