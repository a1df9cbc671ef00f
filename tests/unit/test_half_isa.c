/* test_half_isa.c: the bulk float16 <-> float32 conversions (cpu/half_isa.h), every
 * instruction-set variant up to kiln_isa_best(), against ir/half.h's scalar conversions.
 *
 * Exact: widening every one of the 65536 float16 patterns gives the scalar result bit for
 * bit (a signalling NaN may come out quieted: then a NaN of the same sign); narrowing gives
 * the scalar bits for float32 patterns around every float16 rounding point (ties, the
 * overflow edge 65504..65520, subnormals, Inf, NaN) and random ones. Lengths 0..40 and
 * unaligned starts cover the vector bodies and tails.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/half_isa.h"
#include "cpu/tensor_util.h"
#include "ir/half.h"
#include "test_support.h"

typedef void (*load_fn)(const uint16_t *, size_t, float *);
typedef void (*store_fn)(const float *, size_t, uint16_t *);

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_load(enum kiln_isa isa)
{
    load_fn fn = KILN_ISA_VARIANT(kiln_f16_load_f32_isa, isa);
    uint16_t *x = malloc(65536 * sizeof *x);
    float *y = malloc((65536 + 1) * sizeof *y);
    if (!x || !y) exit(1);
    for (uint32_t i = 0; i < 65536; i++) x[i] = (uint16_t)i;
    fn(x, 65536, y);
    size_t bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float r = kiln_half_f16_to_f32(x[i]);
        bool ok = isnan(r) ? isnan(y[i]) && signbit(y[i]) == signbit(r) : bits(y[i]) == bits(r);
        if (!ok && bad++ < 3) CHECK(false, "%s: load 0x%04x gave 0x%08x, expected 0x%08x", kiln_isa_name(isa), i, bits(y[i]), bits(r));
    }
    CHECK(bad == 0, "%s: load: %zu of 65536 differ", kiln_isa_name(isa), bad);
    /* lengths and offsets: elements past n stay untouched */
    for (size_t n = 0; n <= 40; n++)
        for (size_t off = 0; off < 3; off++) {
            for (size_t i = 0; i <= n; i++) y[i] = -7.0f;
            fn(x + 15360 + off, n, y); /* 15360 = 0x3c00, 1.0 */
            bool ok = y[n] == -7.0f;
            for (size_t i = 0; i < n; i++) ok &= y[i] == kiln_half_f16_to_f32(x[15360 + off + i]);
            CHECK(ok, "%s: load n=%zu off=%zu wrong", kiln_isa_name(isa), n, off);
        }
    free(x);
    free(y);
}

static void test_store(enum kiln_isa isa)
{
    store_fn fn = KILN_ISA_VARIANT(kiln_f16_store_f32_isa, isa);
    size_t n = 0, cap = 65536 * 8 + 4096;
    float *x = malloc(cap * sizeof *x);
    uint16_t *y = malloc((cap + 1) * sizeof *y);
    if (!x || !y) exit(1);
    /* around every float16 value (positive and negative): the value, the ties between it
     * and its neighbours, one float32 ulp either side of each */
    for (uint32_t h = 0; h < 0x7c00; h++)
        for (int s = 0; s < 2; s++) {
            uint32_t sign = s ? 0x80000000u : 0;
            float v = kiln_half_f16_to_f32((uint16_t)h), up = kiln_half_f16_to_f32((uint16_t)(h + 1));
            float tie = h + 1 < 0x7c00 ? (float)(((double)v + up) / 2) : 65520.0f;
            uint32_t tb = bits(tie) | sign;
            x[n++] = from_bits(bits(v) | sign);
            x[n++] = from_bits(tb);
            x[n++] = from_bits(tb + 1);
            x[n++] = from_bits(tb - 1);
        }
    static const float special[] = {INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.0f, 65520.0f, 1e30f,
                                    -1e30f, 1e-40f, -1e-40f, 0x1p-25f, 0x1p-24f, 0x1.8p-25f, 0x1p-126f, 0.0f, -0.0f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) x[n++] = special[i];
    x[n++] = from_bits(0x7f800001u); /* signalling NaN */
    x[n++] = from_bits(0xffc01234u);
    rng_seed(11);
    while (n < cap) x[n++] = from_bits((uint32_t)rng_u64());
    fn(x, n, y);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t r = kiln_half_f32_to_f16(x[i]);
        if (y[i] != r && bad++ < 3)
            CHECK(false, "%s: store 0x%08x gave 0x%04x, expected 0x%04x", kiln_isa_name(isa), bits(x[i]), y[i], r);
    }
    CHECK(bad == 0, "%s: store: %zu of %zu differ", kiln_isa_name(isa), bad, n);
    for (size_t m = 0; m <= 40; m++)
        for (size_t off = 0; off < 3; off++) {
            for (size_t i = 0; i <= m; i++) y[i] = 0xabcd;
            fn(x + off, m, y);
            bool ok = y[m] == 0xabcd;
            for (size_t i = 0; i < m; i++) ok &= y[i] == kiln_half_f32_to_f16(x[off + i]);
            CHECK(ok, "%s: store n=%zu off=%zu wrong", kiln_isa_name(isa), m, off);
        }
    free(x);
    free(y);
}

/* The dispatching entry points of cpu/tensor_util.h agree too. */
static void test_entry(void)
{
    uint16_t h[37];
    float f[37], g[37];
    for (int i = 0; i < 37; i++) f[i] = (float)(i - 18) * 0.37f;
    kiln_half_store_f32(KILN_DTYPE_F16, f, 37, h);
    kiln_half_load_f32(KILN_DTYPE_F16, h, 37, g);
    bool ok = true;
    for (int i = 0; i < 37; i++) ok &= h[i] == kiln_half_f32_to_f16(f[i]) && g[i] == kiln_half_f16_to_f32(h[i]);
    CHECK(ok, "kiln_half_load_f32/store_f32 disagree with ir/half.h");
}

int main(void)
{
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        test_load((enum kiln_isa)isa);
        test_store((enum kiln_isa)isa);
    }
    test_entry();
    return test_summary("test_half_isa");
}
