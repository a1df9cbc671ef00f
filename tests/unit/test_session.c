/* test_session.c: the session API: running a model, input validation errors (missing input,
 * unknown name, wrong type, wrong shape, wrong output count), refusing graphs the linker
 * found broken, and out-of-memory at every allocation of load + create + run.
 *
 * Uses ONNX node test models from KILN_ONNX_TESTS. Expected outputs are compared with the
 * ONNX default tolerance (rtol 1e-3, atol 1e-7).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kiln.h"
#include "test_support.h"

static kiln_model *load(const char *cas)
{
    char p[1024];
    kiln_err err = {0};
    kiln_model *m = NULL;
    case_path(p, sizeof p, "node", cas, "model.onnx");
    if (kiln_model_load_file(p, &m, &err)) {
        fprintf(stderr, "cannot load %s: %s\n", p, err.msg);
        exit(1);
    }
    return m;
}

static kiln_value *read_value(const char *cas, const char *file)
{
    char p[1024];
    kiln_err err = {0};
    kiln_value *v = NULL;
    case_path(p, sizeof p, "node", cas, file);
    if (kiln_value_read_file(p, KILN_VALUE_TENSOR, &v, &err)) {
        fprintf(stderr, "cannot read %s: %s\n", p, err.msg);
        exit(1);
    }
    return v;
}

static int close_f32(const kiln_value *a, const kiln_value *b)
{
    if (kiln_value_numel(a) != kiln_value_numel(b) || kiln_value_dtype(a) != KILN_DTYPE_F32) return 0;
    const float *x = kiln_value_data((kiln_value *)a), *y = kiln_value_data((kiln_value *)b);
    for (size_t i = 0; i < kiln_value_numel(a); i++)
        if (fabs((double)x[i] - y[i]) > 1e-7 + 1e-3 * fabs((double)y[i])) return 0;
    return 1;
}

static void test_run_and_errors(void)
{
    kiln_model *m = load("test_add");
    kiln_session *s = NULL;
    kiln_err err = {0};
    CHECK(kiln_session_create(m, NULL, &s, &err) == KILN_OK, "%s", err.msg);
    kiln_value *x = read_value("test_add", "test_data_set_0/input_0.pb");
    kiln_value *y = read_value("test_add", "test_data_set_0/input_1.pb");
    kiln_value *want = read_value("test_add", "test_data_set_0/output_0.pb");
    kiln_value *out[1] = {NULL};

    /* By position. */
    const kiln_value *ins[2] = {x, y};
    CHECK(kiln_session_run(s, 2, NULL, ins, 1, out, &err) == KILN_OK, "%s", err.msg);
    CHECK(out[0] && close_f32(out[0], want), "x + y differs from the expected output");
    kiln_value_free(out[0]);
    out[0] = NULL;

    /* By name, reversed order. */
    const char *names[2] = {"y", "x"};
    const kiln_value *ins_r[2] = {y, x};
    CHECK(kiln_session_run(s, 2, names, ins_r, 1, out, &err) == KILN_OK, "%s", err.msg);
    CHECK(out[0] && close_f32(out[0], want), "binding by name gave a different result");
    kiln_value_free(out[0]);
    out[0] = NULL;

    /* Missing input. */
    CHECK(kiln_session_run(s, 1, NULL, ins, 1, out, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "input 'y' is missing") != NULL, "message: %s", err.msg);
    CHECK(out[0] == NULL, "an output was produced on error");

    /* Unknown name. */
    const char *bad_names[2] = {"x", "zz"};
    CHECK(kiln_session_run(s, 2, bad_names, ins, 1, out, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "no input named 'zz'") != NULL, "message: %s", err.msg);

    /* Wrong element type. */
    int64_t dims[3] = {3, 4, 5};
    kiln_value *xi = NULL;
    CHECK(kiln_value_create_tensor(KILN_DTYPE_I64, 3, dims, &xi, &err) == KILN_OK, "%s", err.msg);
    const kiln_value *ins_t[2] = {xi, y};
    CHECK(kiln_session_run(s, 2, NULL, ins_t, 1, out, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "input 'x'") && strstr(err.msg, "expected element type float32, got int64"),
          "message: %s", err.msg);

    /* Wrong shape. */
    int64_t dims_bad[3] = {3, 4, 6};
    kiln_value *xs = NULL;
    CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 3, dims_bad, &xs, &err) == KILN_OK, "%s", err.msg);
    const kiln_value *ins_s[2] = {xs, y};
    CHECK(kiln_session_run(s, 2, NULL, ins_s, 1, out, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "input 'x'") && strstr(err.msg, "got [3,4,6]") && strstr(err.msg, "dim 2 is 6, expected 5"),
          "message: %s", err.msg);

    /* Wrong rank. */
    kiln_value *xr = NULL;
    CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, dims, &xr, &err) == KILN_OK, "%s", err.msg);
    const kiln_value *ins_rk[2] = {xr, y};
    CHECK(kiln_session_run(s, 2, NULL, ins_rk, 1, out, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "rank 3") && strstr(err.msg, "rank 2"), "message: %s", err.msg);

    /* Output count. */
    kiln_value *two[2] = {NULL, NULL};
    CHECK(kiln_session_run(s, 2, NULL, ins, 2, two, &err) == KILN_E_INVALID_ARG, "status %d", err.status);
    CHECK(strstr(err.msg, "1 outputs") != NULL, "message: %s", err.msg);

    /* NULL err is allowed. */
    CHECK(kiln_session_run(s, 1, NULL, ins, 1, out, NULL) == KILN_E_INVALID_ARG, "NULL err");

    kiln_value_free(xi);
    kiln_value_free(xs);
    kiln_value_free(xr);
    kiln_value_free(x);
    kiln_value_free(y);
    kiln_value_free(want);
    kiln_session_free(s);
    kiln_model_free(m);
}

/* Load + create + run of `cas` with the nth allocation failing, for every n until a run
 * succeeds: each must fail cleanly (a status and a message, no crash, no leak). */
static void test_oom(const char *cas, int n_inputs)
{
    long n = 1;
    for (;; n++) {
        kiln_err err = {0};
        kiln_model *m = NULL;
        kiln_session *s = NULL;
        kiln_value *ins[4] = {NULL}, *out[4] = {NULL};
        char p[1024];
        kiln_status st;
        kiln_alloc_fail_after(n);
        case_path(p, sizeof p, "node", cas, "model.onnx");
        st = kiln_model_load_file(p, &m, &err);
        for (int i = 0; !st && i < n_inputs; i++) {
            char f[64];
            snprintf(f, sizeof f, "test_data_set_0/input_%d.pb", i);
            case_path(p, sizeof p, "node", cas, f);
            st = kiln_value_read_file(p, 0, &ins[i], &err);
        }
        if (!st) st = kiln_session_create(m, NULL, &s, &err);
        if (!st)
            st = kiln_session_run(s, (size_t)n_inputs, NULL, (const kiln_value *const *)ins,
                                  kiln_model_output_count(m), out, &err);
        long used = kiln_alloc_fail_after(0);
        for (int i = 0; i < 4; i++) {
            kiln_value_free(ins[i]);
            kiln_value_free(out[i]);
        }
        kiln_session_free(s);
        kiln_model_free(m);
        if (st == KILN_OK) {
            CHECK(used < n, "%s: succeeded although allocation %ld of %ld failed", cas, n, used);
            break;
        }
        CHECK(err.msg[0] != 0, "%s: allocation %ld failed with status %d but no message", cas, n, st);
        if (n > 100000) {
            CHECK(0, "%s: no success after 100000 allocations", cas);
            break;
        }
    }
    printf("oom %s: %ld allocation points all fail cleanly\n", cas, n - 1);
}

int main(void)
{
    test_run_and_errors();
    test_oom("test_add", 2);
    test_oom("test_basic_conv_with_padding", 2);
    test_oom("test_if", 1);
    test_oom("test_loop11", 3);
    return test_summary("test_session");
}
