/* draw.c: kiln_model_draw, a model's graph as Graphviz DOT, SVG or a standalone HTML page.
 *
 * The DOT text is built here (always available); SVG and HTML lay it out with Graphviz's
 * libraries (libgvc + libcgraph, dot layout, SVG renderer; docs/DEPENDENCIES.md), compiled
 * in when CMake finds them (KILN_HAVE_GRAPHVIZ), else KILN_E_UNSUPPORTED.
 *
 * The drawing, top to bottom:
 *   - one box per node (DOT id "op_G_N": graph G, node N; SVG <g id="op_G_N" class="node
 *     kiln-op">): the op type in bold, the main attributes (kernel_shape, strides, pads,
 *     group, axis, perm, ... long lists cut), then the node's initializer inputs folded
 *     in as "W [64,3,7,7]" lines (small integer ones with their values: "shape = 1,128,768");
 *   - graph inputs as ellipses ("in_G_K"), graph outputs as double octagons ("out_G_K");
 *   - one edge per (producer, consumer) pair with the tensor's shape: the inferred type
 *     (g->vtypes) when shape inference has run, else the declared one (input, output,
 *     value_info), else none;
 *   - subgraphs (If/Loop/Scan bodies, any graph attribute) as clusters next to their node,
 *     joined to it by a dashed edge; values a subgraph reads from an enclosing graph get a
 *     dotted edge from their producer;
 *   - nodes of the "kiln" domain (fused ops from the optimizer) filled in orange, with the
 *     ops they replace when the node says so (a "fused_ops" string(s) attribute, else its
 *     doc string).
 * Nothing is written unless the whole drawing succeeded (temporary file, then rename).
 */
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "infer/infer.h"
#include "ir/ir.h"

#ifdef KILN_HAVE_GRAPHVIZ
#include <pthread.h>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#endif

/* Bigger DOT text than this is refused (KILN_E_LIMIT): about 100 000 nodes. */
#define DRAW_MAX_DOT ((size_t)256 << 20)
#define DRAW_MAX_ATTR_LINES 6
/* Above this many boxes, dot's layout is told to work less: fewer network-simplex and
 * crossing-minimization rounds, straight edges. DenseNet-121 (440 nodes, 976 edges, the
 * concatenations reaching far back) takes minutes of CPU with the defaults and ~8 s so. */
#define DRAW_BIG_GRAPH 150
/* Above this many, network simplex (ranks and x positions) gets a tenth of that again: a
 * 3000-node residual chain takes 40 s of CPU at nslimit 0.5 and 18 s at 0.05. */
#define DRAW_HUGE_GRAPH 1000
#define DRAW_MAX_LIST 8 /* list attributes and small initializers show this many entries */

#define DRAW_MAX_DEPTH 64 /* subgraph nesting drawn; deeper ones are left out */

struct draw {
    struct kiln_buf out;
    /* Outer-scope edges, written at the root's end: an edge statement inside a cluster
     * would pull both of its nodes into that cluster. */
    struct kiln_buf tail;
    int n_graphs;                 /* graphs numbered so far (the DOT ids' G) */
    size_t n_boxes;               /* node boxes drawn, all graphs */
    int depth;                    /* enclosing graphs of the one being drawn */
    int stack[DRAW_MAX_DEPTH];    /* their ids, outermost first */
};

static void put(struct draw *d, const char *s) { kiln_buf_append(&d->out, s, strlen(s)); }

static void putf(struct draw *d, const char *fmt, ...) KILN_PRINTF(2, 3);
static void putf(struct draw *d, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        kiln_buf_append(&d->out, small, (size_t)n);
        return;
    }
    char *big = kiln_malloc((size_t)n + 1);
    if (!big) {
        d->out.failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kiln_buf_append(&d->out, big, (size_t)n);
    kiln_free(big);
}

/* Text inside an HTML-like label (<...>): escapes &, <, >, " and drops control bytes.
 * At most `max` bytes of s are shown ("..." marks a cut). */
static void put_html(struct draw *d, const char *s, size_t max)
{
    size_t n = strlen(s);
    bool cut = n > max;
    if (cut) n = max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&': put(d, "&amp;"); break;
        case '<': put(d, "&lt;"); break;
        case '>': put(d, "&gt;"); break;
        case '"': put(d, "&quot;"); break;
        default:
            if (c >= 0x20) kiln_buf_append(&d->out, &s[i], 1);
        }
    }
    if (cut) put(d, "...");
}

/* Text inside a quoted DOT string: escapes " and \ and drops control bytes. */
static void put_quoted(struct draw *d, const char *s, size_t max)
{
    size_t n = strlen(s);
    bool cut = n > max;
    if (cut) n = max;
    put(d, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') kiln_buf_append(&d->out, "\\", 1);
        if (c >= 0x20) kiln_buf_append(&d->out, &s[i], 1);
    }
    if (cut) put(d, "...");
    put(d, "\"");
}

/* ------------------------------------------------------------------ types and shapes */

/* The type to show for value `id` of g: inferred when shape inference has run, else the
 * declared one; NULL when neither is known. */
static const struct kiln_type *value_type(const struct kiln_graph *g, int id)
{
    if (id < 0 || (size_t)id >= g->n_values) return NULL;
    if (g->vtypes && g->vtypes[id].type.kind != KILN_TYPE_NONE) return &g->vtypes[id].type;
    const struct kiln_value_info *vi = g->values[id].info;
    if (vi && vi->type.kind != KILN_TYPE_NONE) return &vi->type;
    return NULL;
}

/* "[1,3,224,224]" for float32 tensors, "int64[1,128]" for others, the full type text for
 * sequences and the like; "" when unknown. */
static void type_text(const struct kiln_type *t, char *buf, size_t size)
{
    buf[0] = 0;
    if (!t) return;
    kiln_type_str(t, buf, size);
    if (t->kind == KILN_TYPE_TENSOR && t->elem == KILN_DTYPE_F32 && strncmp(buf, "float32", 7) == 0)
        memmove(buf, buf + 7, strlen(buf + 7) + 1);
}

/* ------------------------------------------------------------------ node labels */

/* Input names of the common ops with weights, for the folded initializer lines. */
static const char *input_name(const char *op, size_t k)
{
    static const struct {
        const char *op;
        const char *names[8];
    } tab[] = {
        {"Conv", {"W", "B"}},
        {"ConvTranspose", {"W", "B"}},
        {"ConvInteger", {"w", "x_zero_point", "w_zero_point"}},
        {"QLinearConv", {"x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale",
                         "y_zero_point", "B"}},
        {"Gemm", {"B", "C"}},
        {"MatMul", {"B"}},
        {"BatchNormalization", {"scale", "B", "mean", "var"}},
        {"InstanceNormalization", {"scale", "B"}},
        {"LayerNormalization", {"Scale", "B"}},
        {"GroupNormalization", {"scale", "bias"}},
        {"PRelu", {"slope"}},
        {"LSTM", {"W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"}},
        {"GRU", {"W", "R", "B", "sequence_lens", "initial_h"}},
        {"RNN", {"W", "R", "B", "sequence_lens", "initial_h"}},
        {"Reshape", {"shape"}},
        {"Expand", {"shape"}},
        {"Tile", {"repeats"}},
        {"Gather", {"indices"}},
        {"Slice", {"starts", "ends", "axes", "steps"}},
        {"Pad", {"pads", "value", "axes"}},
        {"Resize", {"roi", "scales", "sizes"}},
        {"Unsqueeze", {"axes"}},
        {"Squeeze", {"axes"}},
        {"Clip", {"min", "max"}},
        {"ReduceMean", {"axes"}},
        {"ReduceSum", {"axes"}},
        {"Split", {"split"}},
        {"TopK", {"K"}},
    };
    /* Input 0 is the data in all of them except Gather (the table) */
    if (strcmp(op, "Gather") == 0) return k == 0 ? "data" : k == 1 ? "indices" : NULL;
    if (k == 0) return NULL;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(tab[i].op, op) == 0) return k - 1 < 8 ? tab[i].names[k - 1] : NULL;
    return NULL;
}

/* Short attribute names for the convolution family's lists. */
static const char *attr_short(const char *name)
{
    if (strcmp(name, "kernel_shape") == 0) return "k";
    if (strcmp(name, "strides") == 0) return "s";
    if (strcmp(name, "pads") == 0) return "p";
    if (strcmp(name, "dilations") == 0) return "d";
    if (strcmp(name, "output_padding") == 0) return "op";
    return name;
}

static bool all_same_i64(const int64_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[0]) return false;
    return true;
}

static bool small_values(const struct kiln_tensor *t, char *buf, size_t size);

/* Attributes left out because they have their default (or no-op) value. */
static bool is_default(const char *op, const struct kiln_attr *a)
{
    static const struct {
        const char *name;
        int64_t value;
    } int_defaults[] = {
        {"group", 1},       {"ceil_mode", 0},  {"count_include_pad", 0}, {"storage_order", 0},
        {"select_last_index", 0}, {"keepdims", 1}, {"transA", 0}, {"transB", 0},
        {"noop_with_empty_axes", 0}, {"exclusive", 0}, {"reverse", 0}, {"layout", 0},
    };
    if (a->type == KILN_ATTR_INT) {
        for (size_t i = 0; i < sizeof int_defaults / sizeof int_defaults[0]; i++)
            if (strcmp(a->name, int_defaults[i].name) == 0) return a->i == int_defaults[i].value;
        return false;
    }
    if (a->type == KILN_ATTR_FLOAT && strcmp(op, "Gemm") == 0)
        return (strcmp(a->name, "alpha") == 0 || strcmp(a->name, "beta") == 0) && a->f == 1.0f;
    if (a->type == KILN_ATTR_STRING) return a->s && strcmp(a->name, "auto_pad") == 0 && strcmp(a->s, "NOTSET") == 0;
    if (a->type == KILN_ATTR_INTS && a->n > 0 && all_same_i64(a->ints, a->n)) {
        if (strcmp(a->name, "dilations") == 0 || strcmp(a->name, "strides") == 0) return a->ints[0] == 1;
        if (strcmp(a->name, "pads") == 0 || strcmp(a->name, "output_padding") == 0) return a->ints[0] == 0;
    }
    return false;
}

/* One attribute as "name value" into buf (plain text); false to leave it out. */
static bool attr_text(const struct kiln_attr *a, char *buf, size_t size)
{
    const char *name = attr_short(a->name);
    int n = 0;
    buf[0] = 0;
    switch (a->type) {
    case KILN_ATTR_INT:
        if (strcmp(a->name, "to") == 0) {
            kiln_type_str(&(struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = (kiln_dtype)a->i,
                                              .rank = -1},
                          buf, size);
            char t[64];
            snprintf(t, sizeof t, "to %s", buf);
            snprintf(buf, size, "%s", t);
            return true;
        }
        n = snprintf(buf, size, "%s %lld", name, (long long)a->i);
        break;
    case KILN_ATTR_FLOAT: n = snprintf(buf, size, "%s %g", name, (double)a->f); break;
    case KILN_ATTR_STRING: n = snprintf(buf, size, "%s %.24s", name, a->s ? a->s : ""); break;
    case KILN_ATTR_INTS:
        n = snprintf(buf, size, "%s ", name);
        /* kernel 3x3, strides 2x2: one number when they are all equal (as torch prints) */
        if (a->n > 1 && all_same_i64(a->ints, a->n) && name != a->name) {
            n += snprintf(buf + n, size - (size_t)n, "%lld", (long long)a->ints[0]);
            break;
        }
        for (size_t i = 0; i < a->n && i < DRAW_MAX_LIST && (size_t)n < size; i++)
            n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? "," : "", (long long)a->ints[i]);
        if (a->n > DRAW_MAX_LIST && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",...");
        break;
    case KILN_ATTR_FLOATS:
        n = snprintf(buf, size, "%s ", name);
        for (size_t i = 0; i < a->n && i < DRAW_MAX_LIST && (size_t)n < size; i++)
            n += snprintf(buf + n, size - (size_t)n, "%s%g", i ? "," : "", (double)a->floats[i]);
        if (a->n > DRAW_MAX_LIST && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",...");
        break;
    case KILN_ATTR_STRINGS:
        n = snprintf(buf, size, "%s ", name);
        for (size_t i = 0; i < a->n && i < 4 && (size_t)n < size; i++)
            n += snprintf(buf + n, size - (size_t)n, "%s%.16s", i ? "," : "", a->strings[i]);
        if (a->n > 4 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",...");
        break;
    case KILN_ATTR_TENSOR: {
        char shape[128];
        const struct kiln_tensor *t = a->t;
        if (!t) return false;
        char vals[128];
        if (small_values(t, vals, sizeof vals)) {
            n = snprintf(buf, size, "%s = %s", name, vals);
            break;
        }
        kiln_shape_str(t->rank, t->dims, shape, sizeof shape);
        struct kiln_type ty = {.kind = KILN_TYPE_TENSOR, .elem = t->dtype, .rank = -1};
        char dt[32];
        kiln_type_str(&ty, dt, sizeof dt);
        n = snprintf(buf, size, "%s %s%s", name, dt, shape);
        break;
    }
    default: return false; /* graphs are drawn as clusters; the rest is rare */
    }
    (void)n;
    return true;
}

/* Integer values of a small 1-D (or scalar) initializer as "1,128,768"; false when it is
 * not a small integer tensor. */
static bool small_values(const struct kiln_tensor *t, char *buf, size_t size)
{
    size_t numel = kiln_tensor_numel(t);
    if (t->rank > 1 || numel > DRAW_MAX_LIST || !t->data) return false;
    if (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32) return false;
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < numel && n < size; i++) {
        long long v = t->dtype == KILN_DTYPE_I64 ? (long long)((const int64_t *)t->data)[i]
                                                   : (long long)((const int32_t *)t->data)[i];
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", v);
    }
    return true;
}

/* The fused ops a kiln-domain node stands for: its "fused_ops" attribute, else its doc. */
static void fused_parts(const struct kiln_node *nd, char *buf, size_t size)
{
    buf[0] = 0;
    const struct kiln_attr *a = kiln_node_attr(nd, "fused_ops");
    if (a && a->type == KILN_ATTR_STRING && a->s) {
        snprintf(buf, size, "%s", a->s);
    } else if (a && a->type == KILN_ATTR_STRINGS) {
        size_t n = 0;
        for (size_t i = 0; i < a->n && n < size; i++)
            n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? " + " : "", a->strings[i]);
    } else if (nd->doc && nd->doc[0]) {
        /* the optimizer's fused nodes say "fused: Conv + BatchNormalization + Relu" */
        const char *d = nd->doc;
        if (strncmp(d, "fused: ", 7) == 0) d += 7;
        snprintf(buf, size, "%s", d);
    }
}

static const struct kiln_graph *attr_graph(const struct kiln_attr *a, size_t k)
{
    if (a->type == KILN_ATTR_GRAPH) return k == 0 ? a->g : NULL;
    if (a->type == KILN_ATTR_GRAPHS) return k < a->n ? a->graphs[k] : NULL;
    return NULL;
}

static void draw_graph(struct draw *d, const struct kiln_graph *g, int gi, const char *indent);

static bool is_init(const struct kiln_graph *g, int id)
{
    return id >= 0 && (size_t)id < g->n_values && g->values[id].def == KILN_DEF_INIT;
}

static void draw_node(struct draw *d, const struct kiln_graph *g, int gi, size_t ni, const char *ind)
{
    const struct kiln_node *nd = &g->nodes[ni];
    bool fused = strcmp(nd->domain, "kiln") == 0;
    char buf[256];
    d->n_boxes++;

    putf(d, "%sop_%d_%zu [id=\"op_%d_%zu\"%s", ind, gi, ni, gi, ni,
         fused ? " fillcolor=\"#ffd8a8\" color=\"#e8590c\"" : "");
    if (nd->name[0]) { /* the node's name shows on hover (SVG <title>), not in the box */
        put(d, " tooltip=");
        put_quoted(d, nd->name, 200);
    }
    put(d, " label=<<B>");
    put_html(d, nd->op_type, 48);
    put(d, "</B>");
    if (nd->domain[0] && !fused) {
        put(d, " <FONT POINT-SIZE=\"9\">(");
        put_html(d, nd->domain, 32);
        put(d, ")</FONT>");
    }
    if (fused) {
        fused_parts(nd, buf, sizeof buf);
        if (buf[0]) {
            put(d, "<BR/><I>= ");
            put_html(d, buf, 80);
            put(d, "</I>");
        }
    }
    /* The convolution family's lists on one line ("k 3 s 2 p 1"), then one line each. */
    char conv[256];
    size_t cl = 0;
    conv[0] = 0;
    int lines = 0;
    for (size_t k = 0; k < nd->n_attr; k++) {
        const struct kiln_attr *a = &nd->attrs[k];
        if (fused && strcmp(a->name, "fused_ops") == 0) continue;
        if (is_default(nd->op_type, a) || !attr_text(a, buf, sizeof buf)) continue;
        if (a->type == KILN_ATTR_INTS && attr_short(a->name) != a->name) {
            if (cl < sizeof conv) cl += (size_t)snprintf(conv + cl, sizeof conv - cl, "%s%s", cl ? "  " : "", buf);
            continue;
        }
        if (lines++ == DRAW_MAX_ATTR_LINES) {
            put(d, "<BR/>...");
            break;
        }
        put(d, "<BR/>");
        put_html(d, buf, 60);
    }
    if (conv[0]) {
        put(d, "<BR/>");
        put_html(d, conv, 80);
    }
    /* Initializers, folded in. */
    for (size_t k = 0; k < nd->n_in; k++) {
        int id = nd->in_ids ? nd->in_ids[k] : -1;
        if (!is_init(g, id)) continue;
        const struct kiln_tensor *t = &g->inits[g->values[id].producer].t;
        const char *nm = input_name(nd->op_type, k);
        char vals[160], shape[128];
        put(d, "<BR/><FONT POINT-SIZE=\"10\">");
        if (!nm) {
            size_t len = strlen(nd->inputs[k]);
            nm = len > 20 ? nd->inputs[k] + len - 20 : nd->inputs[k];
        }
        put_html(d, nm, 24);
        if (small_values(t, vals, sizeof vals)) {
            put(d, " = ");
            put_html(d, vals, 60);
        } else {
            kiln_shape_str(t->rank, t->dims, shape, sizeof shape);
            put(d, " ");
            if (t->dtype != KILN_DTYPE_F32) {
                struct kiln_type ty = {.kind = KILN_TYPE_TENSOR, .elem = t->dtype, .rank = -1};
                kiln_type_str(&ty, vals, sizeof vals);
                put_html(d, vals, 16);
            }
            put_html(d, shape, 60);
        }
        put(d, "</FONT>");
    }
    put(d, ">];\n");

    /* Subgraphs: one cluster each, hung under the node by a dashed edge. */
    for (size_t k = 0; k < nd->n_attr; k++) {
        const struct kiln_attr *a = &nd->attrs[k];
        const struct kiln_graph *sub;
        for (size_t j = 0; (sub = attr_graph(a, j)) != NULL; j++) {
            if (d->depth == DRAW_MAX_DEPTH) break;
            int si = d->n_graphs++;
            char ind2[64];
            snprintf(ind2, sizeof ind2, "%s  ", ind);
            putf(d, "%ssubgraph cluster_%d {\n%s  label=<<I>", ind, si, ind);
            put_html(d, nd->op_type, 32);
            if (nd->name[0]) {
                put(d, " '");
                put_html(d, nd->name, 40);
                put(d, "'");
            }
            put(d, ": ");
            put_html(d, a->name, 32);
            putf(d, "</I>>; style=\"rounded,dashed\"; color=\"#868e96\";\n");
            d->stack[d->depth++] = gi;
            draw_graph(d, sub, si, ind2);
            d->depth--;
            putf(d, "%s}\n", ind);
            putf(d, "%sop_%d_%zu -> anchor_%d [style=dashed color=\"#868e96\" arrowhead=none lhead=cluster_%d];\n",
                 ind, gi, ni, si, si);
        }
    }
}

/* The DOT id of where value `id` of g comes from into buf: a node, a graph input, or (for
 * outer-scope values) the producer in an enclosing graph; false when there is none to
 * draw (initializers, undefined). *outer is set for outer-scope sources. */
static bool source_of(const struct draw *d, const struct kiln_graph *g, int gi, int id, char *buf,
                      size_t size, bool *outer)
{
    *outer = false;
    if (id < 0 || (size_t)id >= g->n_values) return false;
    const struct kiln_graph_value *v = &g->values[id];
    if (v->def == KILN_DEF_NODE) {
        snprintf(buf, size, "op_%d_%d", gi, v->producer);
        return true;
    }
    if (v->def == KILN_DEF_INPUT) {
        snprintf(buf, size, "in_%d_%d", gi, v->producer);
        return true;
    }
    if (v->def != KILN_DEF_OUTER) return false;
    /* Walk up the enclosing graphs; d->stack[d->depth - 1] is g->parent's id. */
    const struct kiln_graph *p = g->parent;
    for (int lvl = d->depth - 1; p && lvl >= 0; lvl--, p = p->parent) {
        int pid = kiln_graph_find(p, v->name);
        if (pid < 0) continue;
        const struct kiln_graph_value *pv = &p->values[pid];
        if (pv->def == KILN_DEF_OUTER) continue;
        *outer = true;
        if (pv->def == KILN_DEF_NODE) {
            snprintf(buf, size, "op_%d_%d", d->stack[lvl], pv->producer);
            return true;
        }
        if (pv->def == KILN_DEF_INPUT) {
            snprintf(buf, size, "in_%d_%d", d->stack[lvl], pv->producer);
            return true;
        }
        return false; /* an initializer of an enclosing graph */
    }
    return false;
}

static void edge(struct draw *d, const char *ind, const char *from, const char *to,
                 const struct kiln_type *t, const char *extra)
{
    char shape[160];
    type_text(t, shape, sizeof shape);
    putf(d, "%s%s -> %s [", ind, from, to);
    if (shape[0]) {
        put(d, "label=");
        put_quoted(d, shape, 60);
    }
    if (extra) putf(d, "%s%s", shape[0] ? " " : "", extra);
    put(d, "];\n");
}

static void draw_graph(struct draw *d, const struct kiln_graph *g, int gi, const char *ind)
{
    char from[64], to[64];
    /* An invisible point that cluster edges attach to (lhead clips them at the border). */
    if (g->parent) putf(d, "%sanchor_%d [shape=point style=invis width=0 height=0];\n", ind, gi);

    for (size_t k = 0; k < g->n_inputs; k++) {
        if (kiln_graph_is_initializer(g, g->inputs[k].name)) continue; /* drawn folded */
        putf(d, "%sin_%d_%zu [id=\"in_%d_%zu\" shape=ellipse style=filled fillcolor=\"#d3f9d8\" label=<<B>",
             ind, gi, k, gi, k);
        put_html(d, g->inputs[k].name, 48);
        put(d, "</B>");
        char tt[160];
        int id = kiln_graph_find(g, g->inputs[k].name);
        type_text(id >= 0 ? value_type(g, id) : &g->inputs[k].type, tt, sizeof tt);
        if (!tt[0] && g->inputs[k].type.kind) type_text(&g->inputs[k].type, tt, sizeof tt);
        if (tt[0]) {
            put(d, "<BR/>");
            put_html(d, tt, 60);
        }
        put(d, ">];\n");
        if (g->parent) putf(d, "%sanchor_%d -> in_%d_%zu [style=invis];\n", ind, gi, gi, k);
    }
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        if (d->out.failed) return;
        draw_node(d, g, gi, ni, ind);
        /* A subgraph node fed only from outside (outer scope, initializers, nothing) hangs
         * from the anchor, so the cluster stays under its If/Loop/Scan node. */
        bool local = false;
        for (size_t k = 0; k < g->nodes[ni].n_in && !local; k++) {
            int id = g->nodes[ni].in_ids ? g->nodes[ni].in_ids[k] : -1;
            local = id >= 0 && (g->values[id].def == KILN_DEF_NODE || g->values[id].def == KILN_DEF_INPUT);
        }
        if (g->parent && !local) putf(d, "%sanchor_%d -> op_%d_%zu [style=invis];\n", ind, gi, gi, ni);
    }
    for (size_t k = 0; k < g->n_outputs; k++) {
        putf(d, "%sout_%d_%zu [id=\"out_%d_%zu\" shape=doubleoctagon style=filled fillcolor=\"#d0ebff\" label=<<B>",
             ind, gi, k, gi, k);
        put_html(d, g->outputs[k].name, 48);
        put(d, "</B>>];\n");
    }

    /* Edges: node inputs (one per distinct value and node), then graph outputs. */
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *nd = &g->nodes[ni];
        snprintf(to, sizeof to, "op_%d_%zu", gi, ni);
        for (size_t k = 0; k < nd->n_in; k++) {
            int id = nd->in_ids ? nd->in_ids[k] : -1;
            bool outer;
            /* the same value twice into one node (x * x) is one edge */
            bool dup = false;
            for (size_t j = 0; j < k && !dup; j++) dup = nd->in_ids[j] == id;
            if (dup || !source_of(d, g, gi, id, from, sizeof from, &outer)) continue;
            if (outer) {
                struct kiln_buf main = d->out;
                d->out = d->tail;
                edge(d, "  ", from, to, value_type(g, id), "style=dotted constraint=false");
                d->tail = d->out;
                d->out = main;
                continue;
            }
            edge(d, ind, from, to, value_type(g, id), NULL);
        }
        /* values the node's subgraphs read from this graph come in through the node */
    }
    for (size_t k = 0; k < g->n_outputs; k++) {
        int id = kiln_graph_find(g, g->outputs[k].name);
        bool outer;
        snprintf(to, sizeof to, "out_%d_%zu", gi, k);
        if (!source_of(d, g, gi, id, from, sizeof from, &outer)) continue;
        if (outer) {
            struct kiln_buf main = d->out;
            d->out = d->tail;
            edge(d, "  ", from, to, id >= 0 ? value_type(g, id) : &g->outputs[k].type, "style=dotted");
            d->tail = d->out;
            d->out = main;
            continue;
        }
        edge(d, ind, from, to, id >= 0 ? value_type(g, id) : &g->outputs[k].type, NULL);
    }
}

/* ------------------------------------------------------------------ SVG and HTML */

#ifdef KILN_HAVE_GRAPHVIZ
/* One Graphviz context for the process, made on first use and never freed, and a lock
 * around every use: Graphviz is not thread-safe, and 2.42's pango text-layout plugin keeps
 * a static pointer to the last font name, which lives in the context's font dictionary,
 * so freeing the context after each drawing made the next one read freed memory
 * (valgrind: invalid read in pango_textlayout). The context holds the loaded plugins and
 * their configuration, about 100 kB. */
static pthread_mutex_t gv_lock = PTHREAD_MUTEX_INITIALIZER;
static GVC_t *gv_ctx;
static char gv_errbuf[512];
static int gv_error(char *msg)
{
    size_t n = strlen(gv_errbuf);
    if (n + 2 < sizeof gv_errbuf) snprintf(gv_errbuf + n, sizeof gv_errbuf - n, "%s", msg);
    return 0;
}

/* Lays out the DOT text and renders SVG into a new buffer (free with kiln_free). */
static kiln_status render_svg(const char *dot, char **svg, size_t *len, kiln_err *err)
{
    *svg = NULL;
    pthread_mutex_lock(&gv_lock);
    gv_errbuf[0] = 0;
    agseterr(AGERR);
    agseterrf(gv_error);
    if (!gv_ctx) gv_ctx = gvContext();
    GVC_t *gvc = gv_ctx;
    if (!gvc) {
        pthread_mutex_unlock(&gv_lock);
        return kiln_err_set(err, KILN_E_NOMEM, "draw: cannot create a Graphviz context");
    }
    kiln_status st = KILN_OK;
    Agraph_t *gr = agmemread(dot);
    char *data = NULL;
    unsigned int n = 0;
    if (!gr) {
        st = kiln_err_set(err, KILN_E_INTERNAL, "draw: Graphviz rejected the DOT text: %.200s",
                          gv_errbuf);
        goto done;
    }
    if (gvLayout(gvc, gr, "dot") != 0) {
        st = kiln_err_set(err, KILN_E_INTERNAL, "draw: Graphviz dot layout failed: %.200s", gv_errbuf);
        goto done;
    }
    if (gvRenderData(gvc, gr, "svg", &data, &n) != 0 || !data) {
        st = kiln_err_set(err, KILN_E_INTERNAL, "draw: Graphviz SVG rendering failed: %.200s",
                          gv_errbuf);
        gvFreeLayout(gvc, gr);
        goto done;
    }
    *svg = kiln_malloc((size_t)n + 1);
    if (!*svg) {
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    } else {
        memcpy(*svg, data, n);
        (*svg)[n] = 0;
        *len = n;
    }
    gvFreeRenderData(data);
    gvFreeLayout(gvc, gr);
done:
    if (gr) agclose(gr);
    agseterrf(NULL);
    pthread_mutex_unlock(&gv_lock);
    return st;
}

/* Copies svg into b, marking the op boxes: <g id="op_..." class="node"> gets class
 * "node kiln-op" (Graphviz 2.42 has no class attribute of its own). With `bare`, the XML
 * prolog, doctype and comments before <svg are dropped (for inlining into HTML). */
static void mark_svg(struct kiln_buf *b, const char *svg, bool bare)
{
    const char *p = svg;
    if (bare) {
        const char *s = strstr(svg, "<svg");
        if (s) p = s;
    }
    static const char key[] = "<g id=\"op_";
    for (;;) {
        const char *q = strstr(p, key);
        if (!q) break;
        const char *cls = strstr(q, " class=\"node\"");
        const char *gt = strchr(q, '>');
        if (!cls || !gt || cls > gt) {
            kiln_buf_append(b, p, (size_t)(q - p) + sizeof key - 1);
            p = q + sizeof key - 1;
            continue;
        }
        kiln_buf_append(b, p, (size_t)(cls - p));
        static const char repl[] = " class=\"node kiln-op\"";
        kiln_buf_append(b, repl, sizeof repl - 1);
        p = cls + strlen(" class=\"node\"");
    }
    kiln_buf_append(b, p, strlen(p));
}

static const char html_head[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>";
static const char html_mid[] =
    "</title>\n<style>\n"
    "html,body{margin:0;height:100%;overflow:hidden;background:#fff;font-family:sans-serif}\n"
    "#view{width:100%;height:100%;cursor:grab}#view svg{width:100%;height:100%}\n"
    "#help{position:fixed;top:6px;left:8px;font-size:12px;color:#666;background:#fffc;padding:2px 4px}\n"
    "g.kiln-op:hover polygon,g.kiln-op:hover path{stroke-width:2.5}\n"
    "</style></head><body>\n"
    "<div id=\"help\">drag: pan &middot; wheel: zoom &middot; double click: fit</div>\n"
    "<div id=\"view\">\n";
/* Pan and zoom by rewriting the SVG's viewBox: wheel zooms around the pointer, a drag
 * pans, a double click fits the whole graph. */
static const char html_tail[] =
    "</div>\n<script>\n"
    "(function(){\n"
    "var svg=document.querySelector('#view svg');if(!svg)return;\n"
    "svg.removeAttribute('width');svg.removeAttribute('height');\n"
    "var vb0=svg.viewBox.baseVal,full=[vb0.x,vb0.y,vb0.width,vb0.height],vb=full.slice();\n"
    "function set(){svg.setAttribute('viewBox',vb.join(' '));}\n"
    "function pt(e){var r=svg.getBoundingClientRect(),s=Math.max(vb[2]/r.width,vb[3]/r.height);\n"
    " var ox=(r.width*s-vb[2])/2,oy=(r.height*s-vb[3])/2;\n"
    " return [vb[0]-ox+(e.clientX-r.left)*s,vb[1]-oy+(e.clientY-r.top)*s,s];}\n"
    "svg.addEventListener('wheel',function(e){e.preventDefault();var p=pt(e),f=e.deltaY<0?1/1.2:1.2;\n"
    " vb=[p[0]-(p[0]-vb[0])*f,p[1]-(p[1]-vb[1])*f,vb[2]*f,vb[3]*f];set();},{passive:false});\n"
    "var drag=null;\n"
    "svg.addEventListener('mousedown',function(e){drag=[e.clientX,e.clientY,pt(e)[2]];});\n"
    "window.addEventListener('mousemove',function(e){if(!drag)return;\n"
    " vb[0]-=(e.clientX-drag[0])*drag[2];vb[1]-=(e.clientY-drag[1])*drag[2];\n"
    " drag[0]=e.clientX;drag[1]=e.clientY;set();});\n"
    "window.addEventListener('mouseup',function(){drag=null;});\n"
    "svg.addEventListener('dblclick',function(){vb=full.slice();set();});\n"
    "set();\n"
    "})();\n"
    "</script>\n</body></html>\n";
#endif /* KILN_HAVE_GRAPHVIZ */

/* ------------------------------------------------------------------ entry point */

kiln_status kiln_model_draw(const kiln_model *m, const char *path, kiln_draw_format fmt, kiln_err *err)
{
    if (!m || !path || !path[0])
        return kiln_err_set(err, KILN_E_INVALID_ARG, "draw: %s is missing", !m ? "the model" : "the output path");
    if (fmt != KILN_DRAW_SVG && fmt != KILN_DRAW_HTML && fmt != KILN_DRAW_DOT)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "draw: unknown format %d; expected svg (1), html (2) or dot (3)",
                            (int)fmt);
#ifndef KILN_HAVE_GRAPHVIZ
    if (fmt != KILN_DRAW_DOT)
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            "draw: this kiln was built without Graphviz (libgraphviz-dev); only DOT output "
                            "is available");
#endif
    const struct kiln_graph *g = m->graph;
    if (!g || !g->linked)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "draw: the model's graph is not linked");

    struct draw d = {.out = {.limit = DRAW_MAX_DOT}, .tail = {.limit = DRAW_MAX_DOT}, .n_graphs = 1};
    put(&d, "digraph kiln {\n"
            "  graph [rankdir=TB compound=true nodesep=0.25 ranksep=0.35 fontname=\"Helvetica\"");
    put(&d, " label=");
    put_quoted(&d, g->name && g->name[0] ? g->name : "graph", 80);
    put(&d, " labelloc=t];\n"
            "  node [shape=box style=\"rounded,filled\" fillcolor=\"#f1f3f5\" color=\"#495057\" "
            "fontname=\"Helvetica\" fontsize=11 margin=\"0.12,0.04\"];\n"
            "  edge [fontname=\"Helvetica\" fontsize=9 color=\"#495057\" fontcolor=\"#495057\" arrowsize=0.6];\n");
    draw_graph(&d, g, 0, "  ");
    if (d.tail.failed) d.out.failed = true;
    if (d.tail.len) kiln_buf_append(&d.out, d.tail.data, d.tail.len);
    kiln_buf_free(&d.tail);
    if (d.n_boxes > DRAW_BIG_GRAPH)
        putf(&d, "  graph [nslimit=%s nslimit1=%s mclimit=0.05 searchsize=10 remincross=false splines=line];\n",
             d.n_boxes > DRAW_HUGE_GRAPH ? "0.05" : "0.5", d.n_boxes > DRAW_HUGE_GRAPH ? "0.05" : "0.5");
    put(&d, "}\n");
    kiln_buf_append(&d.out, "", 1); /* NUL for Graphviz; not written to .dot */
    if (d.out.failed) {
        kiln_buf_free(&d.out);
        return d.out.len >= DRAW_MAX_DOT
                   ? kiln_err_set(err, KILN_E_LIMIT, "draw: the drawing exceeds %zu MiB of DOT text",
                                  DRAW_MAX_DOT >> 20)
                   : kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    }

    kiln_status st;
    if (fmt == KILN_DRAW_DOT) {
        st = kiln_write_file_atomic(path, d.out.data, d.out.len - 1, err);
        kiln_buf_free(&d.out);
        return st;
    }
#ifdef KILN_HAVE_GRAPHVIZ
    char *svg = NULL;
    size_t svg_len = 0;
    st = render_svg((const char *)d.out.data, &svg, &svg_len, err);
    kiln_buf_free(&d.out);
    if (st) return st;
    struct kiln_buf page = {0};
    if (fmt == KILN_DRAW_HTML) {
        kiln_buf_append(&page, html_head, sizeof html_head - 1);
        const char *title = g->name && g->name[0] ? g->name : "kiln graph";
        for (const char *c = title; *c && c - title < 200; c++) {
            if (*c == '<') kiln_buf_append(&page, "&lt;", 4);
            else if (*c == '&') kiln_buf_append(&page, "&amp;", 5);
            else kiln_buf_append(&page, c, 1);
        }
        kiln_buf_append(&page, html_mid, sizeof html_mid - 1);
        mark_svg(&page, svg, true);
        kiln_buf_append(&page, html_tail, sizeof html_tail - 1);
    } else {
        mark_svg(&page, svg, false);
    }
    kiln_free(svg);
    if (page.failed) {
        kiln_buf_free(&page);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    }
    st = kiln_write_file_atomic(path, page.data, page.len, err);
    kiln_buf_free(&page);
    return st;
#else
    return KILN_E_INTERNAL; /* not reached: checked above */
#endif
}
