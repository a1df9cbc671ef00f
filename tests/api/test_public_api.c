/* test_public_api.c: a client of the shared library that sees only include/kiln.h: loads a
 * model, checks it, queries it, runs it and compares with the expected output. Proves the
 * shared library exports what the header declares. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln.h"

int main(void)
{
    const char *dir = KILN_ONNX_TESTS "/node/test_add";
    char path[1024];
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value *in[2] = {NULL, NULL}, *want = NULL, *out = NULL;
    int ok = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) goto done;
    if (kiln_model_check(m, NULL, NULL) != 0 || kiln_model_input_count(m) != 2 ||
        strcmp(kiln_model_input_name(m, 0), "x") != 0) {
        snprintf(err.msg, sizeof err.msg, "unexpected model description");
        goto done;
    }
    char type[64];
    kiln_model_input_type(m, 0, type, sizeof type);
    if (strcmp(type, "float32[3,4,5]") != 0) {
        snprintf(err.msg, sizeof err.msg, "input type '%s'", type);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        if (kiln_value_read_file(path, KILN_VALUE_TENSOR, &in[i], &err)) goto done;
    }
    snprintf(path, sizeof path, "%s/test_data_set_0/output_0.pb", dir);
    if (kiln_value_read_file(path, KILN_VALUE_TENSOR, &want, &err)) goto done;
    if (kiln_session_create(m, NULL, &s, &err)) goto done;
    if (kiln_session_run(s, 2, NULL, (const kiln_value *const *)in, 1, &out, &err)) goto done;
    const float *a = kiln_value_data(out), *b = kiln_value_data(want);
    ok = kiln_value_numel(out) == 60;
    for (size_t i = 0; ok && i < 60; i++) ok = fabsf(a[i] - b[i]) <= 1e-6f * (1 + fabsf(b[i]));
    if (!ok) snprintf(err.msg, sizeof err.msg, "output differs from the expected values");
done:
    kiln_value_free(in[0]);
    kiln_value_free(in[1]);
    kiln_value_free(want);
    kiln_value_free(out);
    kiln_session_free(s);
    kiln_model_free(m);
    if (!ok) {
        fprintf(stderr, "test_public_api: %s\n", err.msg);
        return 1;
    }
    printf("test_public_api: ok\n");
    return 0;
}
