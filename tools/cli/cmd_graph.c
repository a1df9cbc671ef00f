/* cmd_graph.c: `kiln graph MODEL -o OUT.svg|OUT.html|OUT.dot [--format svg|html|dot]
 * [--optimized] [--level basic|extended]`: draw a model's graph with kiln_model_draw.
 *
 * The format comes from --format, else from OUT's extension (.svg, .html/.htm, .dot/.gv).
 * Shapes are inferred first so that edges carry them. --optimized (or --level, which implies
 * it) draws the graph after kiln_model_optimize at that level (default extended, kiln's
 * fused ops kept so that fused groups show). Prints "wrote OUT (N nodes)" on success.
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
    bool optimized = false;
    kiln_opt_level level = KILN_OPT_EXTENDED;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if ((v = cli_opt_value(argc, argv, &i, "-o", &missing)) ||
            (!missing && (v = cli_opt_value(argc, argv, &i, "--output", &missing)))) {
            out = v;
        } else if (!missing && (v = cli_opt_value(argc, argv, &i, "--format", &missing))) {
            format = v;
        } else if (!missing && (v = cli_opt_value(argc, argv, &i, "--level", &missing))) {
            if (strcmp(v, "basic") == 0) level = KILN_OPT_BASIC;
            else if (strcmp(v, "extended") == 0) level = KILN_OPT_EXTENDED;
            else if (strcmp(v, "layout") == 0) level = KILN_OPT_LAYOUT;
            else return cli_usage("graph", "unknown level '%s'; expected basic, extended or layout", v);
            optimized = true;
        } else if (missing) {
            return cli_usage("graph", "%s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--optimized") == 0) {
            optimized = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
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
    kiln_status st = KILN_OK;
    if (optimized) {
        kiln_optimize_options o = {.level = level, .keep_fused = 1};
        st = kiln_model_optimize(m, &o, &err);
    }
    if (!st) st = kiln_model_infer_shapes(m, &err);
    if (!st) st = kiln_model_draw(m, out, fmt, &err);
    size_t nodes = kiln_model_node_count(m);
    kiln_model_free(m);
    if (st != KILN_OK) return cli_error("%s", err.msg);
    printf("wrote %s (%zu node%s)\n", out, nodes, nodes == 1 ? "" : "s");
    return CLI_OK;
}
