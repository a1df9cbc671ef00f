/* load_and_run.c: the shortest path through kiln: load a model, create a session, run it
 * once, print the outputs.
 *
 *   load_and_run [model.onnx [batch]]
 *
 * Without a model path it runs the tiny model embedded in tiny_model.h (Y = Relu(2 X + 1),
 * X float32[N,4]). Every graph input gets a tensor of its declared type, symbolic dims set
 * to `batch` (default 2), filled with a fixed pattern (example_util.h), so two runs print
 * the same numbers. Only the public API (kiln.h) is used.
 */
#include <stdio.h>
#include <stdlib.h>

#include "example_util.h"
#include "kiln.h"

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : NULL;
    int64_t batch = 2;
    int rc = 1;
    if (argc > 2) {
        char *end;
        batch = strtoll(argv[2], &end, 10);
        if (*end || batch < 0) {
            fprintf(stderr, "usage: load_and_run [model.onnx [batch]]\n");
            return 2;
        }
    }
    kiln_err err = {0};
    kiln_session *s = NULL;
    kiln_value **inputs = NULL, **outputs = NULL;

    /* 1. Load. The model is checked when the session is made; kiln_model_check would list
     *    every problem at once. */
    kiln_model *m = example_load(path);
    if (!m) return 1;
    size_t n_in = kiln_model_input_count(m), n_out = kiln_model_output_count(m);
    printf("model: %s, %zu input(s), %zu output(s)\n", path ? path : "(embedded tiny model)", n_in, n_out);

    /* 2. A session: kernels resolved and prepared, memory planned. NULL options: one thread
     *    per CPU, no profiling, no limits. */
    if (kiln_session_create(m, NULL, &s, &err)) {
        fprintf(stderr, "session: %s\n", err.msg);
        goto done;
    }

    /* 3. Inputs, bound by position (names NULL): kiln_model_input_name order. */
    inputs = calloc(n_in + 1, sizeof *inputs);
    outputs = calloc(n_out + 1, sizeof *outputs);
    if (!inputs || !outputs) goto done;
    for (size_t i = 0; i < n_in; i++) {
        char type[256];
        if (!(inputs[i] = example_input(m, i, batch))) goto done;
        kiln_model_input_type(m, i, type, sizeof type);
        printf("input '%s': %s, running with [", kiln_model_input_name(m, i), type);
        for (int d = 0; d < kiln_value_rank(inputs[i]); d++)
            printf("%s%lld", d ? "," : "", (long long)kiln_value_dims(inputs[i])[d]);
        printf("]\n");
    }

    /* 4. Run. On success each outputs[i] is a new value that we own. */
    if (kiln_session_run(s, n_in, NULL, (const kiln_value *const *)inputs, n_out, outputs, &err)) {
        fprintf(stderr, "run: %s\n", err.msg);
        goto done;
    }
    for (size_t i = 0; i < n_out; i++) example_print(kiln_model_output_name(m, i), outputs[i]);
    rc = 0;

done:
    /* Every _free takes NULL. The session borrows the model: free it first. */
    for (size_t i = 0; inputs && i < n_in; i++) kiln_value_free(inputs[i]);
    for (size_t i = 0; outputs && i < n_out; i++) kiln_value_free(outputs[i]);
    free(inputs);
    free(outputs);
    kiln_session_free(s);
    kiln_model_free(m);
    return rc;
}
