/* cmd_info.c: `kiln info [--shapes] [--shape NAME=DIMS]... MODEL`: what a model declares,
 * from kiln.h's query functions.
 *
 * Prints: model header fields, opset imports, metadata_props, inputs and outputs with their
 * declared types (symbolic dims kept, initializer-backed inputs excluded), node counts per
 * op type sorted by name, and the parameter count and bytes. --shapes adds every value of
 * the main graph with its inferred type (kiln_model_infer_shapes), inputs and initializers
 * first, then node outputs in topological order; --shape NAME=D0xD1x... fixes an input's
 * shape first (kiln_model_set_input_shape) and implies --shapes.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct op_count {
    char *name; /* "domain.OpType", or "OpType" in the default domain */
    size_t count;
};

static int cmp_op(const void *a, const void *b)
{
    return strcmp(((const struct op_count *)a)->name, ((const struct op_count *)b)->name);
}

/* "1.5 MiB"-style size. */
static void human_bytes(uint64_t b, char *buf, size_t size)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0) snprintf(buf, size, "%llu B", (unsigned long long)b);
    else snprintf(buf, size, "%.1f %s", v, units[u]);
}

/* Prints the first line of a doc string, shortened; docs can be long licence texts. */
static void print_doc_line(const char *label, const char *doc)
{
    size_t n = strcspn(doc, "\r\n");
    if (n == 0) return;
    bool cut = n > 100 || doc[n];
    printf("%-15s %.*s%s\n", label, (int)(n > 100 ? 100 : n), doc, cut ? " ..." : "");
}

/* Sorted op-type histogram. Returns false on out-of-memory. */
static bool print_ops(const kiln_model *m)
{
    size_t n = kiln_model_node_count(m), k = 0;
    struct op_count *ops = calloc(n ? n : 1, sizeof *ops);
    bool ok = ops != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const char *op, *dom;
        kiln_model_node(m, i, NULL, &op, &dom);
        size_t len = strlen(dom) + strlen(op) + 2;
        char *name = malloc(len);
        if (!name) {
            ok = false;
            break;
        }
        snprintf(name, len, "%s%s%s", dom, dom[0] ? "." : "", op);
        size_t j = 0;
        while (j < k && strcmp(ops[j].name, name) != 0) j++; /* op types are few */
        if (j < k) {
            ops[j].count++;
            free(name);
        } else {
            ops[k].name = name;
            ops[k++].count = 1;
        }
    }
    if (ok) {
        qsort(ops, k, sizeof *ops, cmp_op);
        printf("nodes (%zu):\n", n);
        for (size_t j = 0; j < k; j++) printf("  %-28s %zu\n", ops[j].name, ops[j].count);
    }
    for (size_t j = 0; ops && j < k; j++) free(ops[j].name);
    free(ops);
    return ok;
}

/* Prints inputs or outputs as an aligned name/type table. */
static void print_values(const kiln_model *m, bool inputs)
{
    size_t n = inputs ? kiln_model_input_count(m) : kiln_model_output_count(m);
    size_t w = 4;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(inputs ? kiln_model_input_name(m, i) : kiln_model_output_name(m, i));
        if (l > w) w = l;
    }
    if (w > 40) w = 40;
    printf("%s (%zu):\n", inputs ? "inputs" : "outputs", n);
    for (size_t i = 0; i < n; i++) {
        char small[256], *type = small;
        size_t need = inputs ? kiln_model_input_type(m, i, small, sizeof small)
                             : kiln_model_output_type(m, i, small, sizeof small);
        char *big = NULL;
        if (need >= sizeof small && (big = malloc(need + 1)) != NULL) {
            if (inputs) kiln_model_input_type(m, i, big, need + 1);
            else kiln_model_output_type(m, i, big, need + 1);
            type = big;
        }
        printf("  %-*s %s\n", (int)w, inputs ? kiln_model_input_name(m, i) : kiln_model_output_name(m, i),
               type);
        free(big);
    }
}

/* `--shapes`: every value of the main graph with its inferred type. Returns false when
 * inference fails (the message is printed). */
static bool print_shapes(kiln_model *m)
{
    kiln_err err = {0};
    if (kiln_model_infer_shapes(m, &err)) {
        cli_error("shape inference failed: %s", err.msg);
        return false;
    }
    size_t n = kiln_model_value_count(m), w = 4;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(kiln_model_value_name(m, i));
        if (l > w) w = l;
    }
    if (w > 40) w = 40;
    printf("values (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        char small[256], *type = small, *big = NULL;
        size_t need = kiln_model_value_type(m, i, small, sizeof small);
        if (need >= sizeof small && (big = malloc(need + 1)) != NULL) {
            kiln_model_value_type(m, i, big, need + 1);
            type = big;
        }
        printf("  %-*s %s\n", (int)w, kiln_model_value_name(m, i), type);
        free(big);
    }
    return true;
}

/* "NAME=D0xD1x..." into name (cut at '=') and dims; false when malformed. */
static bool parse_shape(char *s, int *rank, int64_t *dims)
{
    char *eq = strrchr(s, '=');
    if (!eq || eq == s || !eq[1]) return false;
    int n = 0;
    for (char *p = eq + 1;; p++) {
        char *end = p;
        while (*end >= '0' && *end <= '9') end++;
        if (end == p || end - p > 18 || n == 16 || (*end && *end != 'x')) return false;
        long v;
        char part[20];
        memcpy(part, p, (size_t)(end - p));
        part[end - p] = 0;
        if (!cli_parse_int(part, 0, LONG_MAX, &v)) return false;
        dims[n++] = v;
        if (!*end) break;
        p = end;
    }
    *rank = n;
    *eq = 0; /* the name */
    return true;
}

/* The engine's own part of `kiln info ENGINE`: build settings, profiles and their planned
 * memory, kernel variants. */
static void print_engine(const kiln_engine *e, const char *path)
{
    const kiln_model *m = kiln_engine_model(e);
    printf("%-15s %s (kiln %s)\n", "engine:", path, kiln_version());
    printf("%-15s %d\n", "threads:", kiln_engine_threads(e));
    size_t np = kiln_engine_profile_count(e);
    if (!np) printf("%-15s none (dynamic shapes: memory is planned at the first run of each shape)\n", "memory plan:");
    for (size_t i = 0; i < np; i++) {
        uint64_t arena, sum;
        kiln_engine_profile_memory(e, i, &arena, &sum);
        const char *name = kiln_engine_profile_name(e, i);
        char a[32], s[32];
        human_bytes(arena, a, sizeof a);
        human_bytes(sum, s, sizeof s);
        printf("%-15s %s%s%splanned arena %s for intermediates summing to %s (%.0f%%)\n", "memory plan:",
               name && name[0] ? "profile '" : "", name && name[0] ? name : "", name && name[0] ? "': " : "", a, s,
               sum ? 100.0 * (double)arena / (double)sum : 0.0);
    }
    size_t nn = kiln_model_node_count(m), prepared = 0;
    for (size_t i = 0; i < nn; i++) {
        const char *be, *k, *var;
        kiln_engine_node_kernel(e, i, &be, &k, &var);
        if (var) prepared++;
    }
    printf("%-15s %zu nodes, %zu with a chosen kernel variant\n", "kernels:", nn, prepared);
}

int cli_info(int argc, char **argv)
{
    bool shapes = false;
    const char *path = NULL;
    char *fix[64];
    int n_fix = 0;
    for (int i = 0; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "--shapes") == 0) {
            shapes = true;
        } else if ((v = cli_opt_value(argc, argv, &i, "--shape", &missing))) {
            if (n_fix == 64) return cli_usage("info", "at most 64 --shape options");
            fix[n_fix++] = (char *)v;
            shapes = true;
        } else if (missing) {
            return cli_usage("info", "--shape needs NAME=D0xD1x... (e.g. x=1x3x224x224)");
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("info", "unknown option '%s'", argv[i]);
        } else if (path) {
            return cli_usage("info", "info takes one MODEL file; got an extra '%s'", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage("info", "info needs a MODEL file");
    int ranks[64];
    int64_t dims[64][16];
    for (int k = 0; k < n_fix; k++) {
        char *copy = fix[k];
        if (!parse_shape(copy, &ranks[k], dims[k]))
            return cli_usage("info", "--shape takes NAME=D0xD1x... (e.g. x=1x3x224x224); got '%s'", fix[k]);
    }
    kiln_engine *e = NULL;
    kiln_model *m = NULL;
    if (kiln_file_is_engine(path)) {
        kiln_err err = {0};
        if (n_fix) return cli_usage("info", "--shape applies to models; an engine's shapes are fixed by its profiles");
        if (kiln_engine_load(path, &e, &err) != KILN_OK) return cli_error("%s", err.msg);
        print_engine(e, path);
        m = (kiln_model *)kiln_engine_model(e); /* read-only below: only queries */
    } else if (!(m = cli_load_model(path))) {
        return CLI_FAIL;
    }
    for (int k = 0; k < n_fix; k++) {
        kiln_err err = {0};
        if (kiln_model_set_input_shape(m, fix[k], ranks[k], dims[k], &err)) {
            kiln_model_free(m);
            return cli_error("%s: %s", path, err.msg);
        }
    }

    printf("%-15s %s\n", "model:", path);
    printf("%-15s %lld\n", "ir version:", (long long)kiln_model_ir_version(m));
    const char *prod = kiln_model_producer(m), *pver = kiln_model_producer_version(m);
    printf("%-15s %s%s%s\n", "producer:", prod[0] ? prod : "(none)", pver[0] ? " " : "", pver);
    printf("%-15s %lld\n", "model version:", (long long)kiln_model_version(m));
    if (kiln_model_domain(m)[0]) printf("%-15s %s\n", "domain:", kiln_model_domain(m));
    printf("%-15s %s\n", "graph:", kiln_model_graph_name(m)[0] ? kiln_model_graph_name(m) : "(unnamed)");
    print_doc_line("doc:", kiln_model_doc(m));

    printf("%-15s", "opsets:");
    size_t no = kiln_model_opset_count(m);
    for (size_t i = 0; i < no; i++) {
        const char *dom;
        int64_t ver;
        kiln_model_opset(m, i, &dom, &ver);
        printf("%s %s %lld", i ? "," : "", dom[0] ? dom : "ai.onnx", (long long)ver);
    }
    printf("%s\n", no ? "" : " (none)");

    size_t nm = kiln_model_metadata_count(m);
    if (nm == 0) printf("%-15s (none)\n", "metadata:");
    else printf("metadata (%zu):\n", nm);
    for (size_t i = 0; i < nm; i++) {
        const char *k, *v;
        kiln_model_metadata(m, i, &k, &v);
        size_t vl = strcspn(v, "\r\n");
        printf("  %s = %.*s%s\n", k, (int)(vl > 200 ? 200 : vl), v, vl > 200 || v[vl] ? " ..." : "");
    }

    print_values(m, true);
    print_values(m, false);
    int rc = CLI_OK;
    if (!print_ops(m)) rc = cli_error("out of memory counting op types");

    uint64_t count, bytes;
    char hb[32];
    kiln_model_params(m, &count, &bytes);
    human_bytes(bytes, hb, sizeof hb);
    printf("%-15s %llu (%s)\n", "parameters:", (unsigned long long)count, hb);
    if (shapes && !e && !print_shapes(m)) rc = CLI_FAIL;
    if (e) kiln_engine_free(e);
    else kiln_model_free(m);
    return rc;
}
