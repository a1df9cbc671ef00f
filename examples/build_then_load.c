/* build_then_load.c: build an engine once, save it, load it back as a deployment would, and
 * run it.
 *
 *   build_then_load ENGINE_OUT [model.onnx [batch]]
 *
 * Builds with a profile for the first input's first dim (1 to 32, opt 8) when that dim is
 * symbolic, so any batch in that range runs without a rebuild; saves ENGINE_OUT; loads it
 * (weights mapped, not read); runs it with `batch` rows (default 2) on one context; prints
 * the outputs. Without a model it uses the tiny model embedded in tiny_model.h. Public API
 * only (kiln.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "example_util.h"
#include "kiln.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: build_then_load ENGINE_OUT [model.onnx [batch]]\n");
        return 2;
    }
    const char *out_path = argv[1], *path = argc > 2 ? argv[2] : NULL;
    int64_t batch = argc > 3 ? strtoll(argv[3], NULL, 10) : 2;
    kiln_err err = {0};
    int rc = 1;
    kiln_builder *b = NULL;
    kiln_engine *built = NULL, *e = NULL;
    kiln_context *c = NULL;
    kiln_value **inputs = NULL, **outputs = NULL;
    size_t n_in = 0, n_out = 0;

    kiln_model *m = example_load(path);
    if (!m) return 1;

    /* 1. Build: optimize, prepare kernels, plan memory; a profile when the batch is dynamic. */
    if (kiln_builder_create(&b, &err)) goto fail;
    if (kiln_model_input_count(m) > 0 && kiln_model_input_rank(m, 0) > 0) {
        const char *param = NULL;
        int rank = kiln_model_input_rank(m, 0);
        if (kiln_model_input_dim(m, 0, 0, &param) < 0 && rank <= 8) {
            int64_t lo[8], opt[8], hi[8];
            for (int d = 0; d < rank; d++) {
                int64_t v = kiln_model_input_dim(m, 0, d, NULL);
                lo[d] = opt[d] = hi[d] = v < 0 ? 1 : v;
            }
            lo[0] = 1, opt[0] = 8, hi[0] = 32;
            if (kiln_builder_add_profile(b, "batch", kiln_model_input_name(m, 0), rank, lo, opt, hi, &err))
                goto fail;
        }
    }
    if (kiln_builder_build(b, m, &built, &err)) goto fail;

    /* 2. Save. The file is written to a temporary name and renamed. */
    if (kiln_engine_save(built, out_path, &err)) goto fail;
    kiln_engine_free(built);
    built = NULL;
    printf("saved %s\n", out_path);

    /* 3. Load, as another process would: checks version, CPU and checksums, maps weights. */
    if (kiln_engine_load(out_path, &e, &err)) goto fail;
    const kiln_model *em = kiln_engine_model(e);
    for (size_t i = 0; i < kiln_engine_profile_count(e); i++) {
        uint64_t arena, sum;
        kiln_engine_profile_memory(e, i, &arena, &sum);
        printf("profile '%s': arena %llu bytes for %llu bytes of intermediates\n", kiln_engine_profile_name(e, i),
               (unsigned long long)arena, (unsigned long long)sum);
    }

    /* 4. One context, one run. */
    if (kiln_context_create(e, &c, &err)) goto fail;
    n_in = kiln_model_input_count(em);
    n_out = kiln_model_output_count(em);
    inputs = calloc(n_in + 1, sizeof *inputs);
    outputs = calloc(n_out + 1, sizeof *outputs);
    if (!inputs || !outputs) goto done;
    for (size_t i = 0; i < n_in; i++)
        if (!(inputs[i] = example_input(em, i, batch))) goto done;
    if (kiln_context_run(c, NULL, n_in, NULL, (const kiln_value *const *)inputs, n_out, outputs, &err)) goto fail;
    for (size_t i = 0; i < n_out; i++) example_print(kiln_model_output_name(em, i), outputs[i]);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "build_then_load: %s\n", err.msg);
done:
    for (size_t i = 0; inputs && i < n_in; i++) kiln_value_free(inputs[i]);
    for (size_t i = 0; outputs && i < n_out; i++) kiln_value_free(outputs[i]);
    free(inputs);
    free(outputs);
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_engine_free(built);
    kiln_builder_free(b);
    kiln_model_free(m);
    return rc;
}
