/* cmd_convert.c: `kiln convert MODEL -o OUT.onnx [--opset N] [--external-data BYTES]
 * [--external-data-name NAME]`: loads a model, converts its default-domain opset upward
 * (kiln_model_convert_opset) when --opset is given, and writes it back as ONNX
 * (kiln_model_save). Without --opset the model is re-written unchanged (normalised
 * encoding, optionally with its large tensors moved to an external data file).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_convert(int argc, char **argv)
{
    struct cli_out_args a = {0};
    const char *opset_s = NULL, *ext_name = NULL;
    int rc;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (cli_out_option(argc, argv, &i, &a, &missing)) continue;
        if ((v = cli_opt_value(argc, argv, &i, "--opset", &missing)))
            opset_s = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--external-data-name", &missing)))
            ext_name = v;
        else if ((rc = cli_out_positional("convert", argv[i], missing, &a)) != CLI_OK)
            return rc;
    }
    if ((rc = cli_out_done("convert", &a)) != CLI_OK) return rc;
    long opset = 0;
    if (opset_s && !cli_parse_int(opset_s, 1, 1000, &opset))
        return cli_usage("convert", "--opset '%s' is not an opset number", opset_s);
    if ((rc = cli_out_external("convert", &a)) != CLI_OK) return rc;
    if (ext_name && !a.ext_s) return cli_usage("convert", "--external-data-name needs --external-data BYTES");

    const char *model = a.model;
    kiln_model *m = cli_load_model(model);
    if (!m) return CLI_FAIL;
    kiln_err err = {0};
    if (opset && kiln_model_convert_opset(m, opset, &err) != KILN_OK) {
        rc = cli_error("%s: %s", model, err.msg);
        goto done;
    }
    kiln_save_options so = {.external_data_threshold = (size_t)a.ext, .external_data_name = ext_name};
    if (kiln_model_save(m, a.out, &so, &err) != KILN_OK) {
        rc = cli_error("%s", err.msg);
        goto done;
    }
done:
    kiln_model_free(m);
    return rc;
}
