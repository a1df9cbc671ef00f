/* float8.c: conversions for ONNX's narrow float types; see float8.h for the contracts.
 *
 * Spec: ONNX Cast (opsets 19..25) and the OCP 8-bit float / MX formats. One generic
 * encoder rounds a double to a format described by (exponent bits, mantissa bits, bias,
 * special-value style) with integer arithmetic on the double's bits; it also serves
 * double -> float16/bfloat16 so those round once.
 */
#include "cpu/float8.h"

#include <math.h>
#include <string.h>

enum mf_style {
    MF_IEEE,   /* all-ones exponent holds Inf (mantissa 0) and NaN: e5m2, f16, bf16 */
    MF_FN,     /* no Inf; only all-ones exponent + all-ones mantissa is NaN: e4m3fn */
    MF_FNUZ,   /* no Inf, no -0; 0x80 (sign bit alone) is the one NaN */
    MF_FINITE, /* no Inf, no NaN: float4e2m1 */
};

struct mf_format {
    int ebits, mbits, bias;
    enum mf_style style;
};

static const struct mf_format fmt_e4m3fn = {4, 3, 7, MF_FN};
static const struct mf_format fmt_e4m3fnuz = {4, 3, 8, MF_FNUZ};
static const struct mf_format fmt_e5m2 = {5, 2, 15, MF_IEEE};
static const struct mf_format fmt_e5m2fnuz = {5, 2, 16, MF_FNUZ};
static const struct mf_format fmt_e2m1 = {2, 1, 1, MF_FINITE};
static const struct mf_format fmt_f16 = {5, 10, 15, MF_IEEE};
static const struct mf_format fmt_bf16 = {8, 7, 127, MF_IEEE};

static const struct mf_format *format_of(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F8E4M3FN: return &fmt_e4m3fn;
    case KILN_DTYPE_F8E4M3FNUZ: return &fmt_e4m3fnuz;
    case KILN_DTYPE_F8E5M2: return &fmt_e5m2;
    case KILN_DTYPE_F8E5M2FNUZ: return &fmt_e5m2fnuz;
    case KILN_DTYPE_F4E2M1: return &fmt_e2m1;
    default: return NULL;
    }
}

bool kiln_f8_is_narrow(kiln_dtype dt)
{
    return format_of(dt) != NULL || dt == KILN_DTYPE_F8E8M0;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Bit pattern of the largest finite value. */
static uint32_t mf_max_bits(const struct mf_format *f)
{
    uint32_t emask = (1u << f->ebits) - 1, mmask = (1u << f->mbits) - 1;
    switch (f->style) {
    case MF_IEEE: return ((emask - 1) << f->mbits) | mmask;
    case MF_FN: return (emask << f->mbits) | (mmask - 1);
    default: return (emask << f->mbits) | mmask;
    }
}

/* Decodes v (a narrow format: every value is a normal or subnormal float32). */
static float mf_decode(const struct mf_format *f, uint32_t v)
{
    uint32_t sbit = 1u << (f->ebits + f->mbits);
    uint32_t emask = (1u << f->ebits) - 1, mmask = (1u << f->mbits) - 1;
    uint32_t e = (v >> f->mbits) & emask, m = v & mmask;
    uint32_t sign = (v & sbit) ? 0x80000000u : 0;
    if (f->style == MF_FNUZ && (v & (2 * sbit - 1)) == sbit) return NAN;
    if ((f->style == MF_FN && e == emask && m == mmask) || (f->style == MF_IEEE && e == emask))
        return bits_f32(sign | 0x7f800000u | (m << (23 - f->mbits))); /* Inf or NaN */
    if (e == 0) {
        /* subnormal: m * 2^(1 - bias - mbits), the scale a normal float32 power of two */
        float r = (float)m * bits_f32((uint32_t)(127 + 1 - f->bias - f->mbits) << 23);
        return sign ? -r : r;
    }
    return bits_f32(sign | ((e + 127 - (uint32_t)f->bias) << 23) | (m << (23 - f->mbits)));
}

/* What an out-of-range value (after rounding) or an Inf becomes. float16/bfloat16 use
 * this with saturate = false (their Cast rule: Inf when out of range). */
static uint32_t mf_overflow(const struct mf_format *f, uint32_t sign, bool saturate)
{
    uint32_t emask = (1u << f->ebits) - 1, mmask = (1u << f->mbits) - 1;
    if (saturate || f->style == MF_FINITE) return sign | mf_max_bits(f);
    switch (f->style) {
    case MF_IEEE: return sign | (emask << f->mbits);
    case MF_FN: return sign | (emask << f->mbits) | mmask;
    default: return 1u << (f->ebits + f->mbits); /* the fnuz NaN */
    }
}

/* Rounds x to format f (nearest even) and returns its bit pattern. */
static uint32_t mf_encode(const struct mf_format *f, double x, bool saturate)
{
    uint32_t sbit = 1u << (f->ebits + f->mbits);
    uint32_t emask = (1u << f->ebits) - 1, mmask = (1u << f->mbits) - 1;
    uint32_t sign = signbit(x) ? sbit : 0;
    if (isnan(x)) {
        switch (f->style) {
        case MF_IEEE: return sign | (emask << f->mbits) | (1u << (f->mbits - 1)); /* quiet */
        case MF_FN: return sign | (emask << f->mbits) | mmask;
        case MF_FNUZ: return sbit;
        default: return sbit; /* float4e2m1 has no NaN; the ONNX reference data gives 0x8 */
        }
    }
    if (isinf(x)) return mf_overflow(f, sign, saturate);

    /* Work on the double's bits: a = m * 2^(e - 52) with m the 53-bit significand. */
    uint64_t u;
    memcpy(&u, &x, 8);
    int be = (int)((u >> 52) & 0x7ff);
    if (be == 0) return f->style == MF_FNUZ ? 0 : sign; /* zero or double subnormal: far
                                                          below every format's subnormals */
    uint64_t m = (u & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
    int e = be - 1023, emin = 1 - f->bias;
    /* Keep mbits fraction bits at the value's binade, or at emin's for subnormals; the
     * shifted-out part decides the rounding (nearest, ties to even). */
    int shift = 52 - f->mbits + (e < emin ? emin - e : 0);
    uint64_t r;
    if (shift > 54) {
        r = 0; /* below half the smallest subnormal */
    } else {
        uint64_t rest = m & ((UINT64_C(1) << shift) - 1), half = UINT64_C(1) << (shift - 1);
        r = m >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
    }
    if (r == 0) return f->style == MF_FNUZ ? 0 : sign;
    uint32_t bits;
    if (e < emin) {
        bits = (uint32_t)r; /* subnormal; r == 2^mbits is the smallest normal, same bits */
    } else {
        if (r >> (f->mbits + 1)) { /* rounding carried into the next binade */
            r >>= 1;
            e++;
        }
        int64_t field = (int64_t)e + f->bias;
        if (field > (int64_t)emask) return mf_overflow(f, sign, saturate);
        bits = ((uint32_t)field << f->mbits) | ((uint32_t)r & mmask);
    }
    if (bits > mf_max_bits(f)) return mf_overflow(f, sign, saturate);
    return sign | bits;
}

float kiln_f8_to_f32(kiln_dtype dt, uint8_t v)
{
    if (dt == KILN_DTYPE_F8E8M0) {
        if (v == 0xFF) return NAN;
        /* code 0 is 2^-127, a float32 subnormal; the rest map onto float32's exponent */
        return v == 0 ? bits_f32(0x00400000u) : bits_f32((uint32_t)v << 23);
    }
    const struct mf_format *f = format_of(dt);
    if (!f) return NAN;
    return mf_decode(f, v);
}

static uint8_t e8m0_encode(double x, bool saturate, enum kiln_e8m0_round rm)
{
    /* Negative input is unspecified by the spec; kiln uses the magnitude. */
    double a = fabs(x);
    if (isnan(a)) return 0xFF;
    if (isinf(a)) return saturate ? 0xFE : 0xFF;
    if (a == 0) return saturate ? 0x00 : 0xFF;
    int e;
    double frac = frexp(a, &e); /* a = frac * 2^e, frac in [0.5, 1) */
    int exp = e - 1;            /* a = (2 frac) * 2^exp, 2 frac in [1, 2) */
    double m = 2 * frac;
    if ((rm == KILN_E8M0_UP && m > 1) || (rm == KILN_E8M0_NEAREST && m >= 1.5)) exp++;
    int code = exp + 127;
    if (code < 0) return saturate ? 0x00 : 0xFF;
    if (code > 254) return saturate ? 0xFE : 0xFF;
    return (uint8_t)code;
}

uint8_t kiln_f8_from_f64(kiln_dtype dt, double x, bool saturate, enum kiln_e8m0_round rm)
{
    if (dt == KILN_DTYPE_F8E8M0) return e8m0_encode(x, saturate, rm);
    const struct mf_format *f = format_of(dt);
    if (!f) return 0;
    return (uint8_t)mf_encode(f, x, saturate);
}

uint16_t kiln_f64_to_f16(double x) { return (uint16_t)mf_encode(&fmt_f16, x, false); }

uint16_t kiln_f64_to_bf16(double x) { return (uint16_t)mf_encode(&fmt_bf16, x, false); }
