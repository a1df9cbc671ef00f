/* fuzz_serve.h: what the `kiln serve` fuzz targets (fuzz_serve_pbtxt.c, fuzz_serve_infer.c)
 * share: the digits demo model (demo/digits_cnn.onnx, input "image" [N,1,8,8] FP32, output
 * "logits" [N,10]), built once per process and kept (reachable, not a leak), and a model
 * description made from a config.pbtxt text the way tools/serve/repo.c makes one. */
#ifndef KILN_FUZZ_SERVE_H
#define KILN_FUZZ_SERVE_H

#include "fuzz_common.h"
#include "kiln.h"
#include "pbtxt.h"
#include "serve.h"

#ifndef KILN_SOURCE_DIR
#error "KILN_SOURCE_DIR (the source tree, for demo/digits_cnn.onnx) is set by tests/fuzz/fuzz.cmake"
#endif

static inline kiln_engine *fuzz_digits_engine(void)
{
    static kiln_engine *engine;
    if (!engine) {
        kiln_err err = {0};
        kiln_builder *b = NULL;
        FUZZ_CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
        FUZZ_CHECK(kiln_builder_set_threads(b, 1, &err) == KILN_OK, "%s", err.msg);
        FUZZ_CHECK(kiln_builder_build_file(b, KILN_SOURCE_DIR "/demo/digits_cnn.onnx", &engine, &err) == KILN_OK,
                   "%s", err.msg);
        kiln_builder_free(b);
    }
    return engine;
}

/* True when msg is a non-empty single line that fit its buffer. */
static inline bool fuzz_line_ok(const char *msg, size_t size)
{
    size_t n = strnlen(msg, size);
    return n > 0 && n < size && !memchr(msg, '\n', n);
}

#endif /* KILN_FUZZ_SERVE_H */
