/* cmd_optimize.c: `kiln optimize MODEL -o OUT.onnx [--level basic|extended|layout]
 * [--passes a,b,...] [--keep-fused] [--shapes NAME=D0xD1x...,...] [--report]
 * [--external-data BYTES]`.
 *
 * Loads the model, fixes the --shapes inputs to concrete shapes (kiln_model_set_input_shape;
 * the shape arithmetic that depends on them then folds), optimizes it (kiln_model_optimize,
 * docs/optimizer.md) and writes it (kiln_model_save, atomically). --report prints the
 * optimizer's report lines on stdout. Without --keep-fused the result uses standard ONNX
 * operators only, so any ONNX runtime can load it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_line(void *user, const char *msg)
{
    (void)user;
    printf("%s\n", msg);
}

int cli_optimize(int argc, char **argv)
{
    struct cli_out_args a = {0};
    const char *level_s = NULL, *passes = NULL, *shapes = NULL;
    bool keep_fused = false, report = false;
    int rc;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (cli_out_option(argc, argv, &i, &a, &missing)) continue;
        if ((v = cli_opt_value(argc, argv, &i, "--level", &missing)))
            level_s = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--passes", &missing)))
            passes = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--shapes", &missing)))
            shapes = v;
        else if (strcmp(argv[i], "--keep-fused") == 0)
            keep_fused = true;
        else if (strcmp(argv[i], "--report") == 0)
            report = true;
        else if ((rc = cli_out_positional("optimize", argv[i], missing, &a)) != CLI_OK)
            return rc;
    }
    if ((rc = cli_out_done("optimize", &a)) != CLI_OK) return rc;
    kiln_opt_level level = KILN_OPT_EXTENDED;
    if (level_s) {
        if (!strcmp(level_s, "basic"))
            level = KILN_OPT_BASIC;
        else if (!strcmp(level_s, "extended"))
            level = KILN_OPT_EXTENDED;
        else if (!strcmp(level_s, "layout"))
            level = KILN_OPT_LAYOUT;
        else
            return cli_usage("optimize", "--level takes basic, extended or layout; got '%s'", level_s);
    }
    if ((rc = cli_out_external("optimize", &a)) != CLI_OK) return rc;

    const char *model = a.model;
    kiln_model *m = cli_load_model(model);
    if (!m) return CLI_FAIL;
    kiln_err err = {0};
    if (shapes && (rc = cli_apply_shapes("optimize", m, shapes)) != CLI_OK) goto done;
    kiln_optimize_options oo = {
        .level = level, .passes = passes, .keep_fused = keep_fused, .report = report ? print_line : NULL};
    if (kiln_model_optimize(m, &oo, &err) != KILN_OK) {
        rc = cli_error("%s: %s", model, err.msg);
        goto done;
    }
    kiln_save_options so = {.external_data_threshold = (size_t)a.ext};
    if (kiln_model_save(m, a.out, &so, &err) != KILN_OK) {
        rc = cli_error("%s", err.msg);
        goto done;
    }
done:
    kiln_model_free(m);
    return rc;
}
