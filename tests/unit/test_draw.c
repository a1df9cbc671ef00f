/* test_draw.c: kiln_model_draw (src/viz/draw.c), mostly through its DOT output.
 *
 * 1. The demo CNN: one box per node, graph inputs and outputs as their own shapes, the
 *    initializers folded into their consumers ("W [32,1,3,3]"), never nodes of their own.
 * 2. tests/data/draw_fused_if.onnx: an If with two subgraphs drawn as two clusters, the
 *    subgraph nodes boxed too, the outer-scope reads drawn as dotted edges, the kiln-domain
 *    node in its own color with the ops it fused named.
 * 3. The ONNX test models with subgraphs (If, Loop, Scan): node boxes = nodes of every
 *    graph, counted from the IR; clusters = graph attributes.
 * 4. SVG and HTML: with Graphviz, the op boxes carry class "node kiln-op", one per node, and
 *    the HTML page holds the SVG inline; without it, KILN_E_UNSUPPORTED naming Graphviz.
 * 5. Errors: an unwritable path (a file as the folder, a folder as the file) gives
 *    KILN_E_IO with a one-line message naming the path and leaves nothing behind (no
 *    temporary file, an existing file untouched); a bad format or NULL arguments give
 *    KILN_E_INVALID_ARG.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/ir.h"
#include "test_support.h"

static char tmpdir[256];

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

static kiln_model *load(const char *path)
{
    kiln_model *m = NULL;
    kiln_err err = {0};
    if (kiln_model_load_file(path, &m, &err) != KILN_OK) {
        CHECK(false, "cannot load %s: %s", path, err.msg);
        return NULL;
    }
    return m;
}

/* Draws m as DOT into tmpdir/name and returns the text (free it), or NULL. */
static char *draw_dot(const kiln_model *m, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    kiln_err err = {0};
    kiln_status st = kiln_model_draw(m, path, KILN_DRAW_DOT, &err);
    CHECK(st == KILN_OK, "draw %s: %s", name, err.msg);
    return st == KILN_OK ? read_all(path) : NULL;
}

/* Nodes and graph attributes of g and its subgraphs, counted from the IR. */
static void count_ir(const struct kiln_graph *g, size_t *nodes, size_t *graphs)
{
    *nodes += g->n_nodes;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_attr; k++) {
            const struct kiln_attr *a = &g->nodes[i].attrs[k];
            if (a->type == KILN_ATTR_GRAPH) {
                ++*graphs;
                count_ir(a->g, nodes, graphs);
            } else if (a->type == KILN_ATTR_GRAPHS) {
                for (size_t j = 0; j < a->n; j++) {
                    ++*graphs;
                    count_ir(a->graphs[j], nodes, graphs);
                }
            }
        }
}

/* ------------------------------------------------------------------ 1. demo CNN */

static void test_demo(void)
{
    kiln_model *m = load(KILN_SOURCE_DIR "/demo/digits_cnn.onnx");
    if (!m) return;
    char *dot = draw_dot(m, "demo.dot");
    if (dot) {
        CHECK(strncmp(dot, "digraph ", 8) == 0, "DOT starts with '%.20s'", dot);
        size_t nodes = kiln_model_node_count(m);
        CHECK(nodes == 11, "demo has %zu nodes", nodes);
        CHECK(count(dot, "[id=\"op_0_") == nodes, "%zu op boxes for %zu nodes", count(dot, "[id=\"op_0_"), nodes);
        CHECK(count(dot, "[id=\"in_0_") == 1, "%zu input shapes", count(dot, "[id=\"in_0_"));
        CHECK(count(dot, "[id=\"out_0_") == 2, "%zu output shapes", count(dot, "[id=\"out_0_"));
        CHECK(count(dot, "[id=\"") == nodes + 3, "%zu drawn nodes in all; initializers must not be nodes",
              count(dot, "[id=\""));
        /* The first Conv: op type bold, kernel and pads on one line, W and B folded in. */
        CHECK(strstr(dot, "<B>Conv</B><BR/>k 3  p 1<BR/><FONT POINT-SIZE=\"10\">W [32,1,3,3]</FONT>"
                          "<BR/><FONT POINT-SIZE=\"10\">B [32]</FONT>"),
              "first Conv box not as expected");
        CHECK(strstr(dot, "Gemm</B><BR/>transB 1<BR/><FONT POINT-SIZE=\"10\">B [10,256]</FONT>"),
              "Gemm box: transB shown, defaults hidden, B folded");
        CHECK(!strstr(dot, "group 1") && !strstr(dot, "ceil_mode"), "default attributes are left out");
        /* The declared input shape labels the input's edge. */
        CHECK(strstr(dot, "in_0_0 -> op_0_0 [label=\"[N,1,8,8]\"]"), "input edge without its shape");
        /* one edge per producer/consumer pair: 10 chain edges + input + 2 outputs */
        CHECK(count(dot, " -> ") == 13, "%zu edges, expected 13", count(dot, " -> "));
        free(dot);
    }
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ 2. fused op and If */

static void test_fused_if(void)
{
    kiln_model *m = load(KILN_SOURCE_DIR "/tests/data/draw_fused_if.onnx");
    if (!m) return;
    char *dot = draw_dot(m, "fused_if.dot");
    if (dot) {
        CHECK(count(dot, "[id=\"op_") == 5, "%zu op boxes, expected 5 (3 main + 2 in branches)",
              count(dot, "[id=\"op_"));
        CHECK(count(dot, "subgraph cluster_") == 2, "%zu clusters, expected 2", count(dot, "subgraph cluster_"));
        CHECK(strstr(dot, "label=<<I>If 'branch': then_branch</I>>"), "then cluster label");
        CHECK(strstr(dot, "label=<<I>If 'branch': else_branch</I>>"), "else cluster label");
        /* the fused node: its color, its parts, its folded initializer */
        CHECK(strstr(dot, "fillcolor=\"#ffd8a8\" color=\"#e8590c\" tooltip=\"fused\" label=<<B>FusedConvRelu</B>"
                          "<BR/><I>= Conv + Relu</I><BR/><FONT POINT-SIZE=\"10\">W2 [4,4,1,1]</FONT>>"),
              "fused node box");
        CHECK(count(dot, "#ffd8a8") == 1, "only the kiln-domain node is orange");
        /* Add(f, f) is one dotted edge from the fused node; Relu(f) another */
        CHECK(count(dot, "op_0_1 -> op_") == 2, "fused node: %zu edges, expected one into each branch",
              count(dot, "op_0_1 -> op_"));
        CHECK(count(dot, "style=dotted") == 2, "%zu dotted outer-scope edges, expected 2",
              count(dot, "style=dotted"));
        /* outer-scope edges come after every cluster: inside one they would pull the fused
         * node into it */
        const char *last_close = NULL;
        for (const char *p = dot; (p = strstr(p, "\n  }\n")) != NULL; p++) last_close = p;
        const char *dotted = strstr(dot, "style=dotted");
        CHECK(last_close && dotted && dotted > last_close, "dotted edges inside a cluster block");
        CHECK(count(dot, "-> anchor_") == 2 && count(dot, "lhead=cluster_") == 2,
              "If joined to each cluster once");
        CHECK(strstr(dot, "op_0_0 -> op_0_1 [label=\"[1,4,8,8]\"]"), "value_info shape on the edge");
        free(dot);
    }
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ 3. ONNX subgraph tests */

static void test_subgraph_models(void)
{
    static const char *cases[] = {"test_if", "test_if_seq", "test_loop11", "test_loop13_seq",
                                  "test_scan9_sum", "test_scan_sum"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024];
        case_path(path, sizeof path, "node", cases[i], "model.onnx");
        if (access(path, R_OK) != 0) {
            CHECK(false, "missing ONNX test model %s", path);
            continue;
        }
        kiln_model *m = load(path);
        if (!m) continue;
        size_t nodes = 0, graphs = 0;
        count_ir(m->graph, &nodes, &graphs);
        char *dot = draw_dot(m, "sub.dot");
        if (dot) {
            CHECK(graphs > 0, "%s: no subgraph in the IR", cases[i]);
            CHECK(count(dot, "[id=\"op_") == nodes, "%s: %zu op boxes, %zu nodes in all graphs", cases[i],
                  count(dot, "[id=\"op_"), nodes);
            CHECK(count(dot, "subgraph cluster_") == graphs, "%s: %zu clusters, %zu subgraphs", cases[i],
                  count(dot, "subgraph cluster_"), graphs);
            free(dot);
        }
        kiln_model_free(m);
    }
}

/* ------------------------------------------------------------------ 4. SVG and HTML */

static void test_svg_html(void)
{
    kiln_model *m = load(KILN_SOURCE_DIR "/tests/data/draw_fused_if.onnx");
    if (!m) return;
    char svg[512], html[512];
    snprintf(svg, sizeof svg, "%s/g.svg", tmpdir);
    snprintf(html, sizeof html, "%s/g.html", tmpdir);
    kiln_err err = {0};
    kiln_status st = kiln_model_draw(m, svg, KILN_DRAW_SVG, &err);
    if (st == KILN_E_UNSUPPORTED) {
        /* kiln built without Graphviz: both refuse, saying why, and write nothing */
        CHECK(strstr(err.msg, "Graphviz") != NULL, "message: %s", err.msg);
        CHECK(access(svg, F_OK) != 0, "nothing written");
        st = kiln_model_draw(m, html, KILN_DRAW_HTML, &err);
        CHECK(st == KILN_E_UNSUPPORTED, "HTML without Graphviz: %s", kiln_status_name(st));
        printf("test_draw: kiln built without Graphviz; SVG/HTML checked as unsupported\n");
        kiln_model_free(m);
        return;
    }
    CHECK(st == KILN_OK, "svg: %s", err.msg);
    char *text = read_all(svg);
    CHECK(text && strstr(text, "<svg"), "SVG file has an <svg> element");
    if (text) {
        CHECK(count(text, "class=\"node kiln-op\"") == 5, "%zu op boxes in the SVG, expected 5",
              count(text, "class=\"node kiln-op\""));
        CHECK(count(text, "class=\"cluster\"") == 2, "%zu clusters in the SVG", count(text, "class=\"cluster\""));
        CHECK(strstr(text, "FusedConvRelu") != NULL, "fused op named in the SVG");
        free(text);
    }
    st = kiln_model_draw(m, html, KILN_DRAW_HTML, &err);
    CHECK(st == KILN_OK, "html: %s", err.msg);
    text = read_all(html);
    if (text) {
        CHECK(strncmp(text, "<!DOCTYPE html>", 15) == 0, "HTML page starts with its doctype");
        CHECK(count(text, "<svg") == 1 && !strstr(text, "<?xml"), "one inline SVG, no XML prolog");
        CHECK(count(text, "class=\"node kiln-op\"") == 5, "5 op boxes in the page");
        CHECK(strstr(text, "addEventListener('wheel'") != NULL, "pan/zoom script present");
        free(text);
    }
    kiln_model_free(m);
}

/* ------------------------------------------------------------------ 5. errors */

static bool has_leftovers(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp.")) found = true;
    closedir(d);
    return found;
}

static void test_errors(void)
{
    kiln_model *m = load(KILN_SOURCE_DIR "/demo/digits_cnn.onnx");
    if (!m) return;
    kiln_err err = {0};
    char path[512], file[512];

    /* a regular file used as a folder */
    snprintf(file, sizeof file, "%s/plain", tmpdir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL, "create %s", file);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/plain/out.dot", tmpdir);
    kiln_status st = kiln_model_draw(m, path, KILN_DRAW_DOT, &err);
    CHECK(st == KILN_E_IO, "file as folder: %s", kiln_status_name(st));
    CHECK(strstr(err.msg, path) && !strchr(err.msg, '\n'), "one-line message naming the path: %s", err.msg);

    /* an existing folder as the output: the temporary file is written, the rename fails,
     * and nothing is left behind */
    snprintf(path, sizeof path, "%s/adir", tmpdir);
    CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
    st = kiln_model_draw(m, path, KILN_DRAW_DOT, &err);
    CHECK(st == KILN_E_IO, "folder as output: %s", kiln_status_name(st));
    CHECK(strstr(err.msg, "adir") && !strchr(err.msg, '\n'), "message: %s", err.msg);
    CHECK(!has_leftovers(tmpdir, "adir"), "a temporary file was left behind");
    rmdir(path);

    /* an existing file is untouched when drawing fails before writing */
    snprintf(path, sizeof path, "%s/keep.svg", tmpdir);
    f = fopen(path, "w");
    if (f) {
        fputs("old", f);
        fclose(f);
    }
    st = kiln_model_draw(m, path, (kiln_draw_format)42, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "42"), "bad format: %s", err.msg);
    char *text = read_all(path);
    CHECK(text && strcmp(text, "old") == 0, "existing file changed by a failed draw");
    free(text);

    CHECK(kiln_model_draw(NULL, path, KILN_DRAW_DOT, &err) == KILN_E_INVALID_ARG, "NULL model");
    CHECK(kiln_model_draw(m, NULL, KILN_DRAW_DOT, &err) == KILN_E_INVALID_ARG, "NULL path");
    CHECK(kiln_model_draw(m, "", KILN_DRAW_DOT, NULL) == KILN_E_INVALID_ARG, "empty path, no err");
    unlink(path);
    unlink(file);
    kiln_model_free(m);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln-test-draw.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_demo();
    test_fused_if();
    test_subgraph_models();
    test_svg_html();
    test_errors();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "test_draw: could not remove %s\n", tmpdir);
    return test_summary("test_draw");
}
