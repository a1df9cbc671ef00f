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
    const char *model = NULL, *out = NULL, *opset_s = NULL, *ext_s = NULL, *ext_name = NULL;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if ((v = cli_opt_value(argc, argv, &i, "-o", &missing)) ||
            (v = cli_opt_value(argc, argv, &i, "--output", &missing)))
            out = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--opset", &missing)))
            opset_s = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--external-data", &missing)))
            ext_s = v;
        else if ((v = cli_opt_value(argc, argv, &i, "--external-data-name", &missing)))
            ext_name = v;
        else if (missing)
            return cli_usage("convert", "option '%s' needs a value", argv[i]);
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage("convert", "unknown option '%s'", argv[i]);
        else if (model)
            return cli_usage("convert", "convert takes one MODEL; '%s' is a second", argv[i]);
        else
            model = argv[i];
    }
    if (!model) return cli_usage("convert", "convert needs a MODEL file");
    if (!out) return cli_usage("convert", "convert needs -o OUT.onnx");
    long opset = 0, ext = 0;
    if (opset_s && !cli_parse_int(opset_s, 1, 1000, &opset))
        return cli_usage("convert", "--opset '%s' is not an opset number", opset_s);
    if (ext_s && !cli_parse_int(ext_s, 1, 0x7fffffffL, &ext))
        return cli_usage("convert", "--external-data '%s' is not a byte count >= 1", ext_s);
    if (ext_name && !ext_s) return cli_usage("convert", "--external-data-name needs --external-data BYTES");

    kiln_model *m = cli_load_model(model);
    if (!m) return CLI_FAIL;
    kiln_err err = {0};
    int rc = CLI_OK;
    if (opset && kiln_model_convert_opset(m, opset, &err) != KILN_OK) {
        rc = cli_error("%s: %s", model, err.msg);
        goto done;
    }
    kiln_save_options so = {.external_data_threshold = (size_t)ext, .external_data_name = ext_name};
    if (kiln_model_save(m, out, &so, &err) != KILN_OK) {
        rc = cli_error("%s", err.msg);
        goto done;
    }
done:
    kiln_model_free(m);
    return rc;
}
