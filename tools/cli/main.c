/* main.c: entry point of the `kiln` command-line tool: subcommand dispatch, help, version.
 *
 * Exit codes (docs/cli.md): 0 success, 1 failure (bad model, bad data, failed run, values
 * that differ), 2 usage error or a subcommand that is not implemented yet.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv); /* NULL: planned, not implemented yet */
    const char *summary;
    const char *usage; /* full help text */
};

#ifdef KILN_HAVE_SERVE
#define SERVE_FN cli_serve
#else
#define SERVE_FN NULL /* built without libmicrohttpd / jansson (cmake/serve.cmake) */
#endif

static const struct command commands[] = {
    {"info", cli_info, "show a model's inputs, outputs, opsets, metadata, ops and size",
     "usage: kiln info [--shapes] [--shape NAME=DIMS]... MODEL\n"
     "\n"
     "Prints the model's inputs and outputs (name and declared type, symbolic dims kept),\n"
     "opset imports, producer, IR and model version, graph name, metadata, the number of\n"
     "nodes per op type and the parameter count and bytes.\n"
     "\n"
     "  --shapes   also infer shapes and print every value of the main graph with its\n"
     "             inferred type (\"float32[N,seq+1,768]\", \"?\" for unknown dims,\n"
     "             \"(data-dependent)\" when the size depends on the data)\n"
     "  --shape NAME=DIMS  fix input NAME to a shape first, e.g. x=1x3x224x224\n"
     "             (repeatable; implies --shapes)\n"},
    {"check", cli_check, "validate a model against the ONNX spec",
     "usage: kiln check MODEL...\n"
     "\n"
     "Loads and validates each model (graph structure, ops against the imported opsets,\n"
     "attributes, declarations) and then infers shapes, reporting contradictions between\n"
     "declared and inferred types. Prints 'ok' for a valid model, else every problem one per\n"
     "line. Exit status 0 when every model is valid, 1 otherwise.\n"},
    {"run", cli_run, "run a model on input files",
     "usage: kiln run MODEL [options]\n"
     "\n"
     "  --input NAME=FILE   bind graph input NAME to FILE (.npy or ONNX TensorProto /\n"
     "                      SequenceProto / OptionalProto .pb); repeatable\n"
     "  --input-dir DIR     bind DIR/input_0.pb, DIR/input_1.pb, ... to the graph inputs\n"
     "                      in order (the layout of ONNX test data sets)\n"
     "  --output-dir DIR    write outputs as DIR/output_0.pb, ... in graph output order\n"
     "                      instead of printing them\n"
     "  --format pb|npy     file format for --output-dir (default pb)\n"
     "  --threads N         threads for the run (0 = one per CPU, the default)\n"
     "  --print-all         print every element of each output (default: a summary)\n"
     "  --level L           optimize the graph first: basic or extended (kiln's fused ops\n"
     "                      allowed); default: run it as it is\n"
     "\n"
     "Inputs are checked against the model's declared types before anything runs.\n"},
    {"compare", cli_compare, "compare two value files within a tolerance",
     "usage: kiln compare ACTUAL EXPECTED [--rtol R] [--atol A] [--kind tensor|seq|optional]\n"
     "\n"
     "Compares two values (.pb or .npy): kind, element type, shape, then elements.\n"
     "Floats match when |actual - expected| <= atol + rtol * |expected| (defaults: rtol 1e-3,\n"
     "atol 1e-7, as ONNX's backend tests); NaN matches NaN; integers, bools and strings must\n"
     "be equal. Exit status 0 when equal, 1 when they differ, 2 on error.\n"},
    {"bench", cli_bench, "measure a model's run time",
     "usage: kiln bench MODEL [options]\n"
     "\n"
     "  --input NAME=FILE   bind graph input NAME to FILE (.npy or ONNX .pb); repeatable\n"
     "  --input-dir DIR     bind DIR/input_0.pb, DIR/input_1.pb, ... to the graph inputs\n"
     "  --shape NAME=DIMS   shape of a generated input, e.g. x=1x3x224x224; needed for\n"
     "                      inputs with symbolic or unknown dims; repeatable\n"
     "  --threads N         threads for each run (0 = one per CPU, the default)\n"
     "  --warmup N          untimed runs first (default 3)\n"
     "  --iterations N      exactly N timed runs (default: run for --min-time)\n"
     "  --min-time S        without --iterations, time runs until at least 10 runs and\n"
     "                      S seconds have passed (default 1.0; at most 100000 runs)\n"
     "  --duration S        the same as --min-time S\n"
     "  --json              print the result as one JSON object on one line\n"
     "  --profile           time every node; print them sorted by cost, then per op type\n"
     "  --export-profile F  write the timed runs' node times to F as a Chrome trace\n"
     "                      (open it in Perfetto or chrome://tracing)\n"
     "  --level L           none: run an ONNX model as it is; basic|extended|layout:\n"
     "                      build its engine at that level (default: as `kiln build`)\n"
     "\n"
     "An ONNX model is built into an engine first, as `kiln build` builds it, with the\n"
     "shapes it is run with; the load time includes that build.\n"
     "Inputs not given by file are generated from the declared type: fixed-seed\n"
     "pseudo-random floats in [-1,1), integers in [0,10), bools alternating. Prints the\n"
     "latency per run in ms (min, median, p90, p95, p99, mean, max), the throughput, the\n"
     "load time (model load and session creation) and the peak resident memory.\n"},
    {"build", cli_build, "build an engine file from a model",
     "usage: kiln build MODEL -o OUT.kiln [--shapes NAME=DIMS,...] [--threads N]\n"
     "                  [--profile [PROFILE/]INPUT=min:DIMS,opt:DIMS,max:DIMS]...\n"
     "                  [--level none|basic|extended|layout] [--memory-limit BYTES]\n"
     "                  [--tune] [--verbose]\n"
     "\n"
     "  -o, --output FILE       the engine file (written atomically; docs/engine-format.md)\n"
     "  --shapes NAME=DIMS,...  fix inputs to one shape (e.g. x=1x3x224x224)\n"
     "  --profile P/IN=min:D,opt:D,max:D\n"
     "                          bound input IN of optimization profile P (default\n"
     "                          \"default\"); repeat per input and per profile. Runs whose\n"
     "                          shapes lie within a profile need no rebuild; others fail\n"
     "  --threads N             threads per run of the engine (default: one per CPU)\n"
     "  --level L               optimization level (default extended, with kiln's fused ops)\n"
     "  --memory-limit BYTES    fail when a profile's planned intermediates need more\n"
     "  --tune                  time kernel variants and keep the fastest per node\n"
     "  --verbose               log each node's kernel, besides fallbacks and memory\n"
     "\n"
     "`kiln run`, `kiln info` and `kiln bench` take the engine file wherever they take a\n"
     "model. An engine loads in milliseconds (its weights are mapped, not read).\n"},
    {"optimize", cli_optimize, "optimize a model's graph",
     "usage: kiln optimize MODEL -o OUT.onnx [--level basic|extended|layout]\n"
     "                     [--passes a,b,...] [--keep-fused] [--shapes NAME=DIMS,...]\n"
     "                     [--report] [--external-data BYTES]\n"
     "\n"
     "  -o, --output FILE       where to write the optimized model (written atomically)\n"
     "  --level L               basic: constant folding, dead code, duplicates, no-ops;\n"
     "                          extended (default): + fusions; layout: + layout marks\n"
     "  --passes a,b,...        run these passes instead of the level's (docs/optimizer.md)\n"
     "  --keep-fused            fusions may use kiln's own ops (domain \"kiln\"); without\n"
     "                          it the result is standard ONNX any runtime can load\n"
     "  --shapes NAME=DIMS,...  fix inputs to concrete shapes (e.g. x=1x3x224x224) first,\n"
     "                          so the shape arithmetic that depends on them folds\n"
     "  --report                print what each pass changed (docs/optimizer.md)\n"
     "  --external-data BYTES   tensors of at least BYTES bytes go to an external data\n"
     "                          file next to OUT (default: everything inline)\n"
     "\n"
     "Outputs of the optimized model equal the original's within float rounding.\n"},
    {"convert", cli_convert, "convert a model to a newer opset, or re-write it",
     "usage: kiln convert MODEL -o OUT.onnx [--opset N] [--external-data BYTES]\n"
     "                    [--external-data-name NAME]\n"
     "\n"
     "  -o, --output FILE       where to write the model (written atomically)\n"
     "  --opset N               convert the default domain to opset N (newer than the\n"
     "                          model's; docs/convert.md lists what is converted)\n"
     "  --external-data BYTES   tensors of at least BYTES bytes go to an external data\n"
     "                          file next to OUT (default: everything inline, 2 GB limit)\n"
     "  --external-data-name F  that file's name (default: OUT's name + \".data\")\n"
     "\n"
     "Without --opset the model is written back unchanged. A node that has no faithful\n"
     "conversion is named in the error, and nothing is written.\n"},
    {"quantize", NULL, "quantize a model's weights", NULL},
    {"graph", cli_graph, "draw a model's graph as SVG, HTML or Graphviz DOT",
     "usage: kiln graph MODEL -o OUT.svg|OUT.html|OUT.dot [--format svg|html|dot]\n"
     "                  [--optimized] [--level basic|extended|layout]\n"
     "\n"
     "Draws the main graph top to bottom: one box per node with its op type and main\n"
     "attributes, initializers folded into their consumers ('W [64,3,7,7]'), tensor shapes\n"
     "on the edges (inferred), graph inputs and outputs as ellipses and octagons,\n"
     "subgraphs (If, Loop, Scan) as clusters. The format follows OUT's extension unless\n"
     "--format says otherwise. HTML is a standalone page with the SVG inline (drag to pan,\n"
     "wheel to zoom). SVG and HTML need kiln built with Graphviz; DOT always works.\n"
     "  --optimized   draw the graph after optimizing it (extended level, kiln's fused ops\n"
     "                kept: fused groups show in orange with the ops they stand for)\n"
     "  --level L     optimize at level L first (implies --optimized)\n"},
    {"serve", SERVE_FN, "serve a model repository over HTTP and gRPC (KServe v2, Triton-compatible)",
     "usage: kiln serve --model-repository DIR [options]\n"
     "\n"
     "Serves the models of a Triton model repository (DIR/NAME/config.pbtxt,\n"
     "DIR/NAME/VERSION/model.onnx or model.kiln) over the KServe v2 HTTP/REST protocol with\n"
     "Triton's extensions (binary tensor data, classification, model repository, statistics,\n"
     "configuration), the same over gRPC, dynamic batching per model, and Prometheus\n"
     "metrics. SIGTERM or SIGINT stops accepting connections, finishes the requests in\n"
     "flight and exits 0. See docs/serve.md.\n"
     "  --model-repository DIR     the repository (required)\n"
     "  --http-port N              HTTP port (default 8000; 0 picks a free one, printed)\n"
     "  --http-address A           IPv4 address to bind (default 0.0.0.0)\n"
     "  --metrics-port N           Prometheus /metrics port (default 8002; 0 picks one)\n"
     "  --allow-metrics false      no metrics port\n"
     "  --grpc-port N              KServe v2 gRPC port (default 8001; 0 picks one, printed)\n"
     "  --allow-grpc false         no gRPC port\n"
     "  --model-control-mode M     none (load every model at start; the default),\n"
     "                             explicit (load/unload through the repository API) or\n"
     "                             poll (reload what changes in the repository)\n"
     "  --repository-poll-secs N   with poll: seconds between repository scans (15)\n"
     "  --load-model NAME          with explicit: load NAME at start ('*': all); repeatable\n"
     "  --threads N                threads per model instance (default 0: one per CPU)\n"
     "  --max-request-bytes N      largest request body (default 67108864; else 413)\n"
     "  --max-json-bytes N         largest JSON part of a request (default 16777216)\n"
     "  --max-header-bytes N       memory for one connection's headers (default 16384)\n"
     "  --max-tensor-elements N    most elements of one input tensor (default 67108864)\n"
     "  --max-connections N        concurrent connections (default 256)\n"
     "  --exit-timeout-secs N      how long shutdown waits for in-flight requests (30)\n"
     "  --default-max-batch-size N max_batch_size auto-completed for batchable models (4)\n"
     "  --verbose                  one log line per request\n"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void print_version(void)
{
    printf("kiln %d.%d.%d (CPU kernels: %s)\n", KILN_VERSION_MAJOR, KILN_VERSION_MINOR,
           KILN_VERSION_PATCH, kiln_cpu_isa());
}

static void print_help(FILE *f)
{
    fputs("usage: kiln COMMAND [ARGS...]\n"
          "       kiln --plugin LIB.so [--plugin LIB2.so ...] COMMAND [ARGS...]\n"
          "\n"
          "kiln runs ONNX models on the CPU.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn ? "" : " (not implemented yet)");
    fputs("\n"
          "  help [COMMAND]   show help for kiln or one command\n"
          "  --version        show the version\n"
          "\n"
          "options (before COMMAND):\n"
          "  --plugin LIB.so  load a plugin of custom operators first (repeatable; see\n"
          "                   docs/plugins.md); a model using ops of a domain kiln does not\n"
          "                   know needs the plugin that declares them\n"
          "\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n",
          f);
}

/* Help for one command, or the overview; returns the exit status. */
static int help(const char *name)
{
    if (!name) {
        print_help(stdout);
        return CLI_OK;
    }
    const struct command *c = find_command(name);
    if (!c) return cli_usage(NULL, "unknown command '%s'", name);
    if (!c->usage) {
        printf("kiln %s: %s (not implemented yet)\n", c->name, c->summary);
        return CLI_OK;
    }
    fputs(c->usage, stdout);
    return CLI_OK;
}

static bool is_help_flag(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

/* Loads the plugins of the leading --plugin LIB.so / --plugin=LIB.so options and removes
 * them from argv (argv[0] stays). Returns CLI_OK or the exit status of a failure. */
static int load_plugins(int *argc, char **argv)
{
    int i = 1;
    while (i < *argc) {
        bool missing = false;
        const char *lib = cli_opt_value(*argc, argv, &i, "--plugin", &missing);
        if (!lib && !missing) break;
        if (missing) return cli_usage(NULL, "--plugin needs a library: kiln --plugin LIB.so COMMAND ...");
        kiln_err err = {0};
        if (kiln_plugin_load(lib, &err) != KILN_OK) return cli_error("%s", err.msg);
        i++;
    }
    int taken = i - 1;
    for (int k = 1; k + taken <= *argc; k++) argv[k] = argv[k + taken]; /* argv[argc] too */
    *argc -= taken;
    return CLI_OK;
}

int main(int argc, char **argv)
{
    int rc = load_plugins(&argc, argv);
    if (rc != CLI_OK) return rc;
    if (argc < 2) {
        print_help(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help_flag(cmd)) return help(NULL);
    if (strcmp(cmd, "help") == 0) return help(argc > 2 ? argv[2] : NULL);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return CLI_OK;
    }
    const struct command *c = find_command(cmd);
    if (!c) {
        if (cmd[0] == '-') return cli_usage(NULL, "unknown option '%s'", cmd);
        return cli_usage(NULL, "unknown command '%s'", cmd);
    }
    if (!c->fn) {
        cli_error("'%s' is not implemented yet", c->name);
        return CLI_USAGE;
    }
    /* `kiln CMD --help` anywhere before a `--` shows the command's help. */
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (is_help_flag(argv[i])) return help(cmd);
    return c->fn(argc - 2, argv + 2);
}
