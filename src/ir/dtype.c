/* dtype.c: element types: names, sizes, classes, and float16/bfloat16 conversion
 * (IEEE 754 binary16 and the bfloat16 truncated binary32, round to nearest even). */
#include <math.h>
#include <string.h>

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

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float kiln_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kiln_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((abs >> 13) & 0x3ff); /* nan */
    if (abs >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {
        /* subnormal or zero in f16: round abs * 2^24 to an integer, ties to even */
        float v = bits_f32(abs) * 0x1p24f;
        return sign | (uint16_t)nearbyintf(v);
    }
    uint32_t exp = (abs >> 23) - 112, man = abs & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into exp correctly */
    return sign | (uint16_t)h;
}

float kiln_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kiln_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    uint32_t round = 0x7fff + ((u >> 16) & 1);
    return (uint16_t)((u + round) >> 16);
}
