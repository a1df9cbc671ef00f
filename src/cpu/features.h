/* features.h: the CPU's instruction-set extensions, read once at run time (CPUID), so that
 * kernels choose their variant by the CPU they run on, and engine files record what their
 * chosen kernels need (src/engine/file.c refuses to load an engine on a CPU that lacks it). */
#ifndef KILN_CPU_FEATURES_H
#define KILN_CPU_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    KILN_CPU_SSE42 = 1u << 0,
    KILN_CPU_AVX = 1u << 1,
    KILN_CPU_AVX2 = 1u << 2,
    KILN_CPU_FMA = 1u << 3,
    KILN_CPU_F16C = 1u << 4,
    KILN_CPU_AVX512F = 1u << 5,
    KILN_CPU_AVX512BW = 1u << 6,
    KILN_CPU_AVX512VL = 1u << 7,
    KILN_CPU_AVX512DQ = 1u << 8,
    KILN_CPU_AVX512VNNI = 1u << 9,
    KILN_CPU_AVX512BF16 = 1u << 10,
};

/* This CPU's features (KILN_CPU_* bits). */
uint64_t kiln_cpu_features(void);
/* Whether the CPU is AMD's (kernels whose relative speed was measured to differ by vendor). */
bool kiln_cpu_is_amd(void);
/* Whether the CPU runs AVX-512 on 256-bit halves next to a memory system that keeps up with
 * it: AMD's family 25 (Zen 4). Several kernel choices measured differently there than on
 * Intel's Xeons and on AMD's family 26 (Zen 5, full 512-bit units), which follow the Xeons. */
bool kiln_cpu_avx512_halves(void);
/* "avx2,fma,avx512f" ("baseline" for none) into buf; returns the length. */
size_t kiln_cpu_features_str(uint64_t features, char *buf, size_t size);

#endif
