/* features.c: what this CPU offers (cpu/features.h). */
#include <stdio.h>
#include <string.h>

#include "cpu/features.h"

static const struct {
    uint64_t bit;
    const char *name;
} names[] = {
    {KILN_CPU_SSE42, "sse4.2"},       {KILN_CPU_AVX, "avx"},           {KILN_CPU_AVX2, "avx2"},
    {KILN_CPU_FMA, "fma"},            {KILN_CPU_F16C, "f16c"},         {KILN_CPU_AVX512F, "avx512f"},
    {KILN_CPU_AVX512BW, "avx512bw"},  {KILN_CPU_AVX512VL, "avx512vl"}, {KILN_CPU_AVX512DQ, "avx512dq"},
    {KILN_CPU_AVX512VNNI, "avx512_vnni"}, {KILN_CPU_AVX512BF16, "avx512_bf16"},
};

uint64_t kiln_cpu_features(void)
{
    uint64_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= KILN_CPU_SSE42;
    if (__builtin_cpu_supports("avx")) f |= KILN_CPU_AVX;
    if (__builtin_cpu_supports("avx2")) f |= KILN_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= KILN_CPU_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= KILN_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= KILN_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= KILN_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512dq")) f |= KILN_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vnni")) f |= KILN_CPU_AVX512VNNI;
#if defined(__clang__) || __GNUC__ >= 11
    if (__builtin_cpu_supports("avx512bf16")) f |= KILN_CPU_AVX512BF16;
#endif
    /* F16C has no __builtin_cpu_supports name in older compilers: CPUID.1:ECX bit 29. */
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (c & (1u << 29)) f |= KILN_CPU_F16C;
#endif
    return f;
}

bool kiln_cpu_is_amd(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
#else
    return false;
#endif
}

bool kiln_cpu_avx512_halves(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (!kiln_cpu_is_amd() || !(kiln_cpu_features() & KILN_CPU_AVX512F)) return false;
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff; /* the extended family */
    return family == 0x19;
#else
    return false;
#endif
}

size_t kiln_cpu_features_str(uint64_t f, char *buf, size_t size)
{
    size_t o = 0;
    if (size) buf[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((f & names[i].bit) && o < size)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? "," : "", names[i].name);
    if (!o && size) o = (size_t)snprintf(buf, size, "baseline");
    return o;
}
