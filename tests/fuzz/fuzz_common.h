/* fuzz_common.h: helpers shared by kiln's fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput (the libFuzzer entry point). The same file is
 * linked either with libFuzzer (option KILN_FUZZ, clang -fsanitize=fuzzer) or with
 * tests/fuzz/replay.c, whose main() feeds it every file of tests/fuzz/corpus/<target>/ in
 * the normal test run. A target reports a broken invariant with FUZZ_CHECK, which prints
 * the condition and aborts: under libFuzzer that is a crash to minimize, under replay a
 * failed test.
 */
#ifndef KILN_FUZZ_COMMON_H
#define KILN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* Sanitizer defaults for every fuzz executable (libFuzzer and replay, ASan builds only; a
 * plain build never calls it). A hostile model may legitimately ask for a multi-gigabyte
 * tensor at run time (ConstantOfShape [100000, 100000] is valid ONNX under KILN_MAX_NUMEL):
 * kiln must then fail with KILN_E_NOMEM, so ASan returns NULL above 256 MiB instead of
 * reporting the request. Allocations kiln makes from *declared* sizes before checking that
 * the bytes exist are still caught: the decoders must refuse those long before 256 MiB,
 * since a fuzz input is at most 64 KiB. */
#ifndef FUZZ_REPLAY_MAIN /* defined once per executable: in the target, not in replay.c */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1";
}
#endif

/* True when the NUL-terminated message of a failed call is present and one line. */
static inline int fuzz_msg_ok(const kiln_err *err)
{
    size_t n = strnlen(err->msg, sizeof err->msg);
    return n > 0 && n < sizeof err->msg && !memchr(err->msg, '\n', n);
}

#endif /* KILN_FUZZ_COMMON_H */
