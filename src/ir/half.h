/* half.h: inline float16 / bfloat16 <-> float32 scalar conversions, for hot loops.
 *
 * float16 is IEEE 754 binary16; bfloat16 is the top half of a binary32. Conversions to the
 * narrow types round to nearest, ties to even (once, from float32); overflow gives Inf and
 * NaN stays NaN (quiet, sign kept, payload truncated). Widening is exact.
 *
 * These are the one implementation: the out-of-line kiln_f16_to_f32 & co. in ir.h
 * (src/ir/dtype.c) call them, so both always agree bit for bit. Kernels that convert
 * element by element include this header so the calls inline into their loops.
 */
#ifndef KILN_IR_HALF_H
#define KILN_IR_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t kiln_half_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float kiln_half_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* float16 bits -> float (exact). */
static inline float kiln_half_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return kiln_half_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf/nan */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return kiln_half_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* float -> float16 bits, nearest even; >= 65520 in magnitude gives Inf. */
static inline uint16_t kiln_half_f32_to_f16(float f)
{
    uint32_t u = kiln_half_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((abs >> 13) & 0x3ff); /* nan */
    if (abs >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {
        /* subnormal or zero in f16: round abs * 2^24 to an integer; nearbyintf in the
         * default rounding mode rounds ties to even */
        float v = kiln_half_bits_f32(abs) * 0x1p24f;
        return sign | (uint16_t)nearbyintf(v);
    }
    uint32_t exp = (abs >> 23) - 112, man = abs & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into exp correctly */
    return sign | (uint16_t)h;
}

/* bfloat16 bits -> float (exact). */
static inline float kiln_half_bf16_to_f32(uint16_t h)
{
    return kiln_half_bits_f32((uint32_t)h << 16);
}

/* float -> bfloat16 bits, nearest even (overflow carries into Inf); NaN stays a quiet NaN. */
static inline uint16_t kiln_half_f32_to_bf16(float f)
{
    uint32_t u = kiln_half_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    uint32_t round = 0x7fff + ((u >> 16) & 1);
    return (uint16_t)((u + round) >> 16);
}

#endif
