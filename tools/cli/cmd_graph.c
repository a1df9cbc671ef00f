/* cmd_graph.c: `kiln graph MODEL -o OUT.svg|OUT.html|OUT.dot [--format svg|html|dot]`:
 * draw a model's graph with kiln_model_draw.
 *
 * The format comes from --format, else from OUT's extension (.svg, .html/.htm, .dot/.gv).
 * Prints "wrote OUT (N nodes)" on success. --optimized/--level (draw after
 * kiln_model_optimize) are not offered yet: the optimizer is not part of this build.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static bool parse_format(const char *s, kiln_draw_format *fmt)
{
    if (strcmp(s, "svg") == 0) *fmt = KILN_DRAW_SVG;
    else if (strcmp(s, "html") == 0) *fmt = KILN_DRAW_HTML;
    else if (strcmp(s, "dot") == 0) *fmt = KILN_DRAW_DOT;
    else return false;
    return true;
}

int cli_graph(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *format = NULL;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if ((v = cli_opt_value(argc, argv, &i, "-o", &missing)) ||
            (!missing && (v = cli_opt_value(argc, argv, &i, "--output", &missing)))) {
            out = v;
        } else if (!missing && (v = cli_opt_value(argc, argv, &i, "--format", &missing))) {
            format = v;
        } else if (missing) {
            return cli_usage("graph", "%s needs a value", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            if (strcmp(argv[i], "--optimized") == 0 || strcmp(argv[i], "--level") == 0)
                return cli_usage("graph", "%s is not available: this kiln has no graph optimizer yet",
                                 argv[i]);
            return cli_usage("graph", "unknown option '%s'", argv[i]);
        } else if (model) {
            return cli_usage("graph", "unexpected argument '%s' (one MODEL only)", argv[i]);
        } else {
            model = argv[i];
        }
    }
    if (!model) return cli_usage("graph", "graph needs a MODEL file");
    if (!out) return cli_usage("graph", "graph needs -o OUT.svg, OUT.html or OUT.dot");
    kiln_draw_format fmt;
    if (format) {
        if (!parse_format(format, &fmt))
            return cli_usage("graph", "unknown format '%s'; expected svg, html or dot", format);
    } else if (ends_with(out, ".svg")) {
        fmt = KILN_DRAW_SVG;
    } else if (ends_with(out, ".html") || ends_with(out, ".htm")) {
        fmt = KILN_DRAW_HTML;
    } else if (ends_with(out, ".dot") || ends_with(out, ".gv")) {
        fmt = KILN_DRAW_DOT;
    } else {
        return cli_usage("graph", "cannot tell the format of '%s' from its extension; use .svg, .html "
                                  "or .dot, or --format", out);
    }

    kiln_model *m = cli_load_model(model);
    if (!m) return CLI_FAIL;
    kiln_err err = {0};
    kiln_status st = kiln_model_draw(m, out, fmt, &err);
    size_t nodes = kiln_model_node_count(m);
    kiln_model_free(m);
    if (st != KILN_OK) return cli_error("%s", err.msg);
    printf("wrote %s (%zu node%s)\n", out, nodes, nodes == 1 ? "" : "s");
    return CLI_OK;
}
