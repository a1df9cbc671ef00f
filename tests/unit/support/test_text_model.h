/* tests/unit/support/test_text_model.h: models of the optimizer tests in a small text form,
 * encoded as ModelProto bytes (test_opt_extended.c and test_opt_layout.c use it).
 *
 * One statement per line; '#' starts a comment.
 *   opset N [kiln]                   ai.onnx opset (and the kiln domain at version 1)
 *   (TYPE: f32, f16, i64, u8, i8 or i32)
 *   input NAME TYPE D0,D1,...        a graph input (dims "-" for a scalar); a dim is
 *                                    digits (known), "?" (unknown) or a name (symbolic)
 *   output NAME [TYPE]               a graph output (default float32, shape left open)
 *   value NAME TYPE                  a value_info entry (shape left open)
 *   init NAME TYPE DIMS rand|pos|= v,v,...
 *                                    an initializer: random in [-1, 1], random in
 *                                    [0.5, 1.5] (pos), or the values listed
 *   node OP IN,IN,... -> OUT,... [attr=type:value ...]
 *                                    OP may be "kiln.Op"; "" inputs as "_"; types int,
 *                                    float, ints, floats, string
 *
 * Random initializers draw from the test generator (rng_range of test_support.h), so seed it
 * first for the same weights every run. A malformed line is a failed CHECK.
 */
#ifndef KILN_TEST_TEXT_MODEL_H
#define KILN_TEST_TEXT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

/* A growing byte buffer; out of memory prints and exits. */
struct buf {
    uint8_t *p;
    size_t len, cap;
};

/* Splits s at any of `sep` into at most cap pieces (s is modified); returns the count. */
size_t split(char *s, const char *sep, char **out, size_t cap);

/* ModelProto bytes of the text model into *out (the caller frees out->p): ir_version 8, the
 * opset imports of the "opset" line (ai.onnx 17 when there is none), nodes named n0, n1, ... */
void parse_model(const char *text, struct buf *out);

/* The text of a model built by appending (the kernel tests' generators): model_text_add
 * appends printf-style, model_text_reset empties it; model_text() is the text so far. Out of
 * memory prints and exits. */
void model_text_reset(void);
void model_text_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *model_text(void);
/* Runs model_text() on x [d0, d1, d2, d3] as the float32 input X with `threads` (a session,
 * the model as written); out[0..2) receive its first two outputs. False (with a failed CHECK
 * unless expect_fail) when it does not run; msg (when not NULL) gets the error. */
/* r [N, C, H, W] against y [N, H, W, C] (the same tensor channels-last), element by element:
 * bitwise when tol < 0, else within tol * (1 + |r|) (NaN where r has NaN); a failed CHECK
 * naming the first difference. */
void nhwc_equal(kiln_value *r, kiln_value *y, double tol, const char *what);
bool model_text_run_x(const float *x, const int64_t *d, int threads, kiln_value **out, bool expect_fail,
                      char *msg, size_t msg_size, const char *what);
/* Loads model_text() twice, optimizes one copy at the extended level with kiln ops, and
 * runs both on x [d0, d1, d2, d3] as the float32 input X with 1 and 2 threads: each run's
 * outputs 0..n_out-1 must have want_numel[o] elements and agree within atol + rtol |ref|
 * (failed CHECKs naming `what` otherwise). Returns the optimized model for the caller's
 * checks of its nodes (free it with kiln_model_free), NULL when loading or optimizing failed
 * (a failed CHECK). optimized_matches: one output. */
kiln_model *optimized_matches_n(const float *x, const int64_t *d, size_t n_out, const size_t *want_numel,
                                double atol, double rtol, const char *what);
kiln_model *optimized_matches(const float *x, const int64_t *d, size_t want_numel, double atol, double rtol,
                              const char *what);
/* The text model loaded (ModelProto bytes through kiln_model_load_buffer); NULL after a
 * failed CHECK naming `what`. */
kiln_model *load_text_model(const char *text, const char *what);
/* How many live nodes of m's main graph are op in domain dom ("" for ai.onnx). */
size_t model_count_op(const kiln_model *m, const char *dom, const char *op);

/* Append an initializer's listed values, " = v,v,...": integers, and floats to 9 digits (the
 * float32 value exactly). */
void model_text_ints(const int32_t *v, size_t n);
void model_text_floats(const float *v, size_t n);

/* Loads the text model and runs it once on a session with `threads` (feeding in[0..n_in)
 * as names[0..n_in)); returns output 0, or NULL after a failed CHECK naming `what`. */
kiln_value *run_text_model(const char *text, size_t n_in, const char *const *names, kiln_value *const *in,
                           int threads, const char *what);

/* Loads the text model and builds an engine for `threads`; NULL after a failed CHECK. The
 * model is freed (the engine keeps its own copy). */
kiln_engine *build_text_model(const char *text, int threads, const char *what);

#endif
