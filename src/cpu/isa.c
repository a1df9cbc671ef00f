/* isa.c: the instruction-set level kernels run with (cpu/isa.h). */
#include "cpu/isa.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/features.h"
#include "kiln.h"

static const char *const isa_names[KILN_ISA_COUNT] = {"portable", "avx2", "avx512"};

const char *kiln_isa_name(enum kiln_isa isa)
{
    return (unsigned)isa < KILN_ISA_COUNT ? isa_names[isa] : "?";
}

int kiln_isa_parse(const char *name, enum kiln_isa *out)
{
    for (int i = 0; i < KILN_ISA_COUNT; i++)
        if (name && !strcmp(name, isa_names[i])) {
            *out = (enum kiln_isa)i;
            return 1;
        }
    return 0;
}

enum kiln_isa kiln_isa_best(void)
{
    uint64_t f = kiln_cpu_features();
    const uint64_t avx2 = KILN_CPU_AVX | KILN_CPU_AVX2 | KILN_CPU_FMA | KILN_CPU_F16C;
    const uint64_t avx512 =
        avx2 | KILN_CPU_AVX512F | KILN_CPU_AVX512BW | KILN_CPU_AVX512DQ | KILN_CPU_AVX512VL;
#if defined(__x86_64__)
    if ((f & avx512) == avx512) return KILN_ISA_AVX512;
    if ((f & avx2) == avx2) return KILN_ISA_AVX2;
#else
    (void)f;
    (void)avx512;
#endif
    return KILN_ISA_PORTABLE;
}

/* -1 until the first call; then the level (racing first calls compute the same value). */
static _Atomic int active = -1;

enum kiln_isa kiln_isa_active(void)
{
    int a = atomic_load_explicit(&active, memory_order_relaxed);
    if (a >= 0) return (enum kiln_isa)a;
    enum kiln_isa best = kiln_isa_best(), want;
    const char *env = getenv("KILN_CPU_ISA");
    a = (int)best;
    if (env && *env && kiln_isa_parse(env, &want) && want < best) a = (int)want;
    atomic_store_explicit(&active, a, memory_order_relaxed);
    return (enum kiln_isa)a;
}

const char *kiln_cpu_isa(void)
{
    return kiln_isa_name(kiln_isa_active());
}
