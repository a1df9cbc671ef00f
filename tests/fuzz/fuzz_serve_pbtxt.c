/* fuzz_serve_pbtxt.c: fuzz target for `kiln serve`'s model configuration reader.
 *
 * Input: the text of a config.pbtxt (Triton's ModelConfig in protobuf text format). The
 * target parses it (tools/serve/pbtxt.c), reads the tree as a configuration
 * (sv_config_from_pbtxt, tools/serve/config.c) and, when that succeeds, completes and checks
 * it against the digits demo model (sv_config_complete), as a model load does.
 *
 * Invariants checked: every failure carries a one-line message; every warning about an
 * unknown field is non-empty; a completed configuration has an input and an output per model
 * input, one to all of its outputs, max_batch_size >= 0 and an instance count >= 1. Everything is freed (LeakSanitizer).
 */
#include "fuzz_serve.h"

static void on_warn(void *user, const char *message)
{
    size_t *n = user;
    FUZZ_CHECK(message && message[0], "empty warning");
    (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const kiln_model *model = kiln_engine_model(fuzz_digits_engine());
    struct pbtxt_msg *tree = NULL;
    char err[768];
    if (pbtxt_parse((const char *)data, size, &tree, err, sizeof err) != 0) {
        FUZZ_CHECK(!tree, "a failed parse returned a tree");
        FUZZ_CHECK(fuzz_line_ok(err, sizeof err), "parse error message '%s'", err);
        return 0;
    }
    FUZZ_CHECK(tree, "a successful parse returned no tree");
    struct sv_config cfg;
    size_t warnings = 0;
    if (!sv_config_from_pbtxt(tree, &cfg, on_warn, &warnings, err, sizeof err)) {
        FUZZ_CHECK(fuzz_line_ok(err, sizeof err), "config error message '%s'", err);
    } else if (!sv_config_complete(&cfg, model, "fuzz", 4, err, sizeof err)) {
        FUZZ_CHECK(fuzz_line_ok(err, sizeof err), "config check message '%s'", err);
    } else {
        FUZZ_CHECK(cfg.n_inputs == kiln_model_input_count(model) && cfg.n_outputs >= 1 &&
                       cfg.n_outputs <= kiln_model_output_count(model),
                   "completed config has %zu inputs, %zu outputs", cfg.n_inputs, cfg.n_outputs);
        FUZZ_CHECK(cfg.max_batch_size >= 0 && cfg.instance_count >= 1, "max_batch_size %lld, instance count %lld",
                   (long long)cfg.max_batch_size, (long long)cfg.instance_count);
    }
    sv_config_fini(&cfg);
    pbtxt_free(tree);
    return 0;
}
