/* isa.h: which instruction set kiln's CPU kernels run with, chosen when kiln runs.
 *
 * kiln is built for baseline x86-64 (SSE2), so that one binary runs on any x86-64 CPU. The
 * hot loops live in src/cpu/isa/ and are compiled three times (CMakeLists.txt), once per
 * level below, each copy with its own symbol suffix (_portable, _avx2, _avx512):
 *
 *   KILN_ISA_PORTABLE  plain C as the baseline compiler flags allow (SSE2 on x86-64; any
 *                      other CPU); the reference path
 *   KILN_ISA_AVX2      -mavx2 -mfma -mf16c: Haswell, Zen 1 and later
 *   KILN_ISA_AVX512    AVX2's plus -mavx512f/bw/dq/vl, 512-bit vectors preferred: Skylake-SP,
 *                      Ice Lake, Zen 4, Zen 5
 *
 * kiln_isa_active() is the best level this CPU supports (CPUID, cpu/features.h), lowered by
 * the environment variable KILN_CPU_ISA=portable|avx2|avx512 when it names a lower one (a
 * higher one than the CPU has is capped, never trusted). It is read once, at the first call.
 * The tests run the suite with KILN_CPU_ISA=avx2 and =portable too; kernel tests call each
 * compiled variant directly, up to kiln_isa_best().
 *
 * A dispatching function is written with KILN_ISA_DECLARE and KILN_ISA_DISPATCH:
 *
 *   KILN_ISA_DECLARE(void, kiln_vexp_f32_isa, (const float *x, float *y, size_t n));
 *   void kiln_vexp_f32(const float *x, float *y, size_t n)
 *   { KILN_ISA_DISPATCH(kiln_vexp_f32_isa, (x, y, n)); }
 *
 * and its body in src/cpu/isa/FILE.c as  void KILN_ISA_FN(kiln_vexp_f32_isa)(...) { ... }.
 */
#ifndef KILN_CPU_ISA_H
#define KILN_CPU_ISA_H

enum kiln_isa {
    KILN_ISA_PORTABLE = 0,
    KILN_ISA_AVX2 = 1,
    KILN_ISA_AVX512 = 2,
    KILN_ISA_COUNT
};

/* The level kernels use: kiln_isa_best(), lowered by KILN_CPU_ISA. */
enum kiln_isa kiln_isa_active(void);
/* The best level this CPU supports. */
enum kiln_isa kiln_isa_best(void);
/* "portable", "avx2", "avx512". */
const char *kiln_isa_name(enum kiln_isa isa);
/* Parses one of those names; false for anything else. */
int kiln_isa_parse(const char *name, enum kiln_isa *out);

#define KILN_ISA_CAT_(a, b) a##b
#define KILN_ISA_CAT(a, b) KILN_ISA_CAT_(a, b)
/* In src/cpu/isa/: the name of this copy's variant of fn (KILN_ISA_SUFFIX is set by CMake). */
#define KILN_ISA_FN(fn) KILN_ISA_CAT(fn, KILN_ISA_SUFFIX)

/* Declares fn_portable, fn_avx2 and fn_avx512 with return type `ret` and parameter list `args`
 * (parenthesized). */
#define KILN_ISA_DECLARE(ret, fn, args)                                                        \
    ret fn##_portable args;                                                                    \
    ret fn##_avx2 args;                                                                        \
    ret fn##_avx512 args

/* Calls the active variant of fn with the parenthesized `call_args` (a statement; for a
 * function with a result use KILN_ISA_SELECT). */
#define KILN_ISA_DISPATCH(fn, call_args)                                                       \
    do {                                                                                       \
        switch (kiln_isa_active()) {                                                           \
        case KILN_ISA_AVX512: fn##_avx512 call_args; break;                                   \
        case KILN_ISA_AVX2: fn##_avx2 call_args; break;                                       \
        default: fn##_portable call_args; break;                                              \
        }                                                                                      \
    } while (0)

/* The active variant of fn as a function pointer, e.g. to store in a prepared kernel. */
#define KILN_ISA_SELECT(fn)                                                                    \
    (kiln_isa_active() == KILN_ISA_AVX512 ? fn##_avx512                                        \
     : kiln_isa_active() == KILN_ISA_AVX2 ? fn##_avx2                                          \
                                          : fn##_portable)

/* Variant `isa` of fn as a function pointer (tests: every variant up to kiln_isa_best()). */
#define KILN_ISA_VARIANT(fn, isa)                                                              \
    ((isa) == KILN_ISA_AVX512 ? fn##_avx512 : (isa) == KILN_ISA_AVX2 ? fn##_avx2 : fn##_portable)

#endif
