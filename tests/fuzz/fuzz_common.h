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

/* ------------------------------------------------ one run on zero-filled inputs (load, engine) */

/* The most input elements a run gets in all. */
#define FUZZ_MAX_INPUT_ELEMS 100000
/* kiln.h's per-index input queries are linear in the graph's inputs (info.c: no index is
 * kept), so listing n inputs is O(n^2) by design; the harnesses ask about the first
 * FUZZ_MAX_LISTED of each list (and one past the end), and run models with at most that
 * many inputs. */
#define FUZZ_MAX_LISTED 512

/* The declaration of the i-th caller-bound input (by name, as kiln.h lists them). */
static inline const struct kiln_value_info *fuzz_input_decl(const kiln_model *m, size_t i)
{
    const char *name = kiln_model_input_name(m, i);
    const struct kiln_graph *g = m->graph;
    for (size_t k = 0; g && name && k < g->n_inputs; k++)
        if (!strcmp(g->inputs[k].name, name)) return &g->inputs[k];
    return NULL;
}

/* A zero-filled value matching the declared type t, or NULL when none can be made (unknown
 * dims, maps, missing types) or the elements would exceed *budget. */
static inline kiln_value *fuzz_make_input(const struct kiln_type *t, size_t *budget)
{
    kiln_err err;
    switch (t->kind) {
    case KILN_TYPE_TENSOR: {
        if (t->rank < 0 || !t->elem) return NULL;
        int64_t dims[KILN_MAX_RANK];
        size_t numel = 1;
        for (int d = 0; d < t->rank; d++) {
            if (t->dims[d].value < 0 || (uint64_t)t->dims[d].value > FUZZ_MAX_INPUT_ELEMS)
                return NULL;
            dims[d] = t->dims[d].value;
            numel *= (size_t)dims[d];
            if (numel > *budget) return NULL;
        }
        *budget -= numel;
        kiln_value *v = NULL;
        if (kiln_value_create_tensor(t->elem, t->rank, dims, &v, &err) != KILN_OK) return NULL;
        return v;
    }
    case KILN_TYPE_SEQUENCE: {
        struct kiln_value *v = kiln_value_new(KILN_VALUE_SEQUENCE);
        if (v && t->inner && t->inner->kind == KILN_TYPE_TENSOR) v->elem_dtype = t->inner->elem;
        return v;
    }
    case KILN_TYPE_OPTIONAL: {
        struct kiln_value *v = kiln_value_new(KILN_VALUE_OPTIONAL);
        if (v && t->inner) {
            v->elem_kind = t->inner->kind == KILN_TYPE_SEQUENCE ? KILN_VALUE_SEQUENCE
                                                                : KILN_VALUE_TENSOR;
            if (t->inner->kind == KILN_TYPE_TENSOR) v->elem_dtype = t->inner->elem;
        }
        return v;
    }
    default: return NULL;
    }
}

/* Runs session s (over model m) once on zero-filled inputs of m's declared types when every
 * input can be made within FUZZ_MAX_INPUT_ELEMS elements: a failed run carries a message
 * and leaves no output; a successful one fills every output. */
static inline void fuzz_run_session(kiln_session *s, const kiln_model *m)
{
    kiln_err err;
    size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);
    if (n_in > FUZZ_MAX_LISTED) return;
    kiln_value **in = calloc(n_in + 1, sizeof *in), **out = calloc(n_out + 1, sizeof *out);
    FUZZ_CHECK(in && out, "calloc");
    size_t budget = FUZZ_MAX_INPUT_ELEMS;
    bool ok = true;
    for (size_t i = 0; i < n_in && ok; i++) {
        const struct kiln_value_info *vi = fuzz_input_decl(m, i);
        in[i] = vi ? fuzz_make_input(&vi->type, &budget) : NULL;
        ok = in[i] != NULL;
    }
    if (ok) {
        memset(&err, 0, sizeof err);
        kiln_status st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, n_out,
                                          out, &err);
        if (st) {
            FUZZ_CHECK(fuzz_msg_ok(&err), "session_run failed (%d) without a message", (int)st);
            for (size_t i = 0; i < n_out; i++) FUZZ_CHECK(!out[i], "failed run left output %zu", i);
        } else {
            for (size_t i = 0; i < n_out; i++) FUZZ_CHECK(out[i], "run left output %zu NULL", i);
        }
        for (size_t i = 0; i < n_out; i++) kiln_value_free(out[i]);
    }
    for (size_t i = 0; i < n_in; i++) kiln_value_free(in[i]);
    free(in);
    free(out);
}

#endif /* KILN_FUZZ_COMMON_H */
