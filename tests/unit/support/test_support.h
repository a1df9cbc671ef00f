/* tests/unit/support/test_support.h: the scaffolding every unit test shares, written once.
 *
 * Each tests/unit/test_*.c is its own executable linked with this module (the static
 * library kiln_test_support, see tests/tests.cmake); the files here are not tests.
 *
 * Checks.   CHECK(cond, fmt, ...) counts a check; when cond is false it prints one line
 *           "FAIL file:line: CHECK(cond) failed: <message>" on stdout and counts a failure.
 *           The message arguments are evaluated only on failure. main ends with
 *           `return test_summary("test_x");`, which prints the totals and gives the exit code.
 * Random.   One xorshift64 generator (shifts 13, 7, 17). Every test seeds it once with its
 *           own constant, so the cases it draws are the same on every run and machine.
 * Tensors.  Constructors for test inputs; they print and exit(1) when memory runs out (a test
 *           cannot go on without its input). Tests of KILN_E_NOMEM allocate through the
 *           library themselves.
 * Ops.      run_node() runs one node straight through the CPU kernel registry, as the
 *           executor would, without a graph; attribute lists are plain arrays (attr_*
 *           values) or a `struct attrs` filled by add_*.
 * Data.     Where the ONNX backend test data is, and which cases a folder of it holds.
 */
#ifndef KILN_TEST_SUPPORT_H
#define KILN_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cpu/kernel.h"

/* ------------------------------------------------------------------ checks */

/* Plain counters: call CHECK and test_fail from the main thread only. */
extern int test_checks;   /* CHECKs evaluated so far */
extern int test_failures; /* failures reported so far (by CHECK or test_fail) */

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        test_checks++;                                                                         \
        if (!(cond)) test_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                        \
    } while (0)

/* Counts a failure and prints "FAIL file:line: [CHECK(cond) failed: ]message". cond may be
 * NULL (a failure found by other means than one condition). */
void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    KILN_PRINTF(4, 5);

/* Prints "<name>: N checks, M failures" and returns main's exit status (0: no failure). */
int test_summary(const char *name);

/* ------------------------------------------------------------------ random numbers */

void rng_seed(uint64_t seed);
uint64_t rng_u64(void);
/* Uniform in [0, n), n > 0, from the high bits: (u >> 33) % n. */
int rng_int(int n);
/* In [0, n), n > 0, as u % n (the draw test_reduce and test_tensor_ops were written with). */
int rng_int_low(int n);
/* Uniform in [0, 1) with 53 random bits. */
double rng_unit(void);
/* lo + (hi - lo) * rng_unit(). */
double rng_range(double lo, double hi);
/* (float)rng_range(-1, 1). */
float rng_f32(void);

/* ------------------------------------------------------------------ tensors */

/* A new tensor value of dtype dt and shape dims[0..rank), as kiln_value_new_tensor makes it. */
struct kiln_value *new_tensor(kiln_dtype dt, int rank, const int64_t *dims);
/* A new 1-D tensor of n elements. */
struct kiln_value *new_vec(kiln_dtype dt, size_t n);
/* A new tensor holding a copy of data: numel elements of dt's in-memory layout, or for
 * KILN_DTYPE_STRING numel C strings (copied). data may be NULL (left as allocated). */
struct kiln_value *tensor_of(kiln_dtype dt, int rank, const int64_t *dims, const void *data);
/* tensor_of, 1-D with n elements. */
struct kiln_value *vec_of(kiln_dtype dt, size_t n, const void *data);
/* A new tensor of any numeric dtype from doubles, converted like kiln_tensor_set_f64. */
struct kiln_value *tensor_f64(kiln_dtype dt, int rank, const int64_t *dims, const double *x);
/* tensor_f64, 1-D with n elements. */
struct kiln_value *vec_f64(kiln_dtype dt, size_t n, const double *x);
/* A rank-0 tensor holding x (converted like kiln_tensor_set_f64). */
struct kiln_value *scalar(kiln_dtype dt, double x);
/* A float32 tensor of values drawn with rng_f32. */
struct kiln_value *rand_tensor(int rank, const int64_t *dims);
/* kiln_value_free of v[0..n) (NULL entries allowed). */
void free_all(struct kiln_value **v, size_t n);

/* Whether t has shape dims[0..rank). */
bool same_shape(const struct kiln_tensor *t, int rank, const int64_t *dims);
/* Whether float32 tensor got holds want[0..n), each within tol * (1 + |want|). A mismatch
 * (or a missing got, or another element count) is a failure naming `what` and the first
 * element that differs. */
bool close_to(const struct kiln_value *got, const double *want, size_t n, double tol,
              const char *what);

/* ------------------------------------------------------------------ attributes */

/* Attribute values, for arrays passed to run_node. They borrow name and the data they point
 * to (the strings of attr_s/attr_strs, the arrays of attr_ints/attr_floats). */
struct kiln_attr attr_i(const char *name, int64_t v);
struct kiln_attr attr_f(const char *name, float v);
struct kiln_attr attr_s(const char *name, const char *v);
struct kiln_attr attr_ints(const char *name, const int64_t *v, size_t n);
struct kiln_attr attr_floats(const char *name, const float *v, size_t n);
struct kiln_attr attr_strs(const char *name, const char *const *v, size_t n);
/* A 1-D tensor attribute of n elements of dt at data, described by *t (caller-owned). */
struct kiln_attr attr_t(const char *name, struct kiln_tensor *t, kiln_dtype dt, const void *data,
                        size_t n);

#define TEST_MAX_ATTRS 16
#define TEST_MAX_INTS 32

/* An attribute list built one add_* at a time; start it zeroed (`struct attrs at = {0};`).
 * Pass it on as `at.a, at.n`. add_ints copies the integers, so v may go out of scope. */
struct attrs {
    struct kiln_attr a[TEST_MAX_ATTRS];
    int64_t ints[TEST_MAX_ATTRS][TEST_MAX_INTS];
    size_t n;
};
void add_i(struct attrs *s, const char *name, int64_t v);
void add_f(struct attrs *s, const char *name, float v);
void add_s(struct attrs *s, const char *name, const char *v);
void add_ints(struct attrs *s, const char *name, const int64_t *v, size_t n);

/* ------------------------------------------------------------------ running one op */

#define TEST_MAX_IO 16

/* Runs the CPU kernel of domain:op at version `opset` (a schema since_version) on a node
 * named "t" with inputs in[0..n_in) (a NULL entry is an absent optional input) and n_out
 * outputs, then frees the kernel's scratch. On KILN_OK out[0..n_out) are new values owned by
 * the caller; otherwise they are NULL and *err holds the message. No kernel for the op is a
 * test failure (and KILN_E_UNSUPPORTED). */
kiln_status run_node(const char *domain, const char *op, int opset, const struct kiln_attr *attrs,
                     size_t n_attr, struct kiln_value **in, size_t n_in, struct kiln_value **out,
                     size_t n_out, kiln_err *err);
/* run_node with the session thread pool `pool` handed to the kernel as the executor does
 * (base/pool.h; NULL: none, the kernel runs inline). */
struct kiln_pool;
kiln_status run_node_pool(struct kiln_pool *pool, const char *domain, const char *op, int opset,
                          const struct kiln_attr *attrs, size_t n_attr, struct kiln_value **in,
                          size_t n_in, struct kiln_value **out, size_t n_out, kiln_err *err);
/* run_node_pool for an ai.onnx op. */
kiln_status run_op_pool(struct kiln_pool *pool, const char *op, int opset, const struct kiln_attr *attrs,
                        size_t n_attr, struct kiln_value **in, size_t n_in, struct kiln_value **out,
                        size_t n_out, kiln_err *err);
/* run_node for an ai.onnx op with one output. */
kiln_status run_op(const char *op, int opset, const struct kiln_attr *attrs, size_t n_attr,
                   struct kiln_value **in, size_t n_in, struct kiln_value **out, kiln_err *err);

/* ------------------------------------------------------------------ ONNX backend test data */

/* $KILN_ONNX_TESTS, else the folder the build was configured with. */
const char *onnx_tests_dir(void);
/* "<onnx_tests_dir>/<sub>/<cas>/<file>" into buf[0..size). */
void case_path(char *buf, size_t size, const char *sub, const char *cas, const char *file);
/* The sorted names of the test_* folders in <onnx_tests_dir>/<sub> (e.g. "node"); *n of them.
 * NULL (and *n == 0) when that folder cannot be read. Free with free_cases. */
char **list_cases(const char *sub, size_t *n);
void free_cases(char **names, size_t n);

#endif
