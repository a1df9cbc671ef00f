/* check.c: kiln_model_check, the model validator (docs/checker.md).
 *
 * Follows onnx.checker (onnx/checker.cc: check_model, check_graph, check_node,
 * check_value_info, check_sparse_tensor) and the ONNX IR spec (docs/IR.md): it reports
 * the linker's structural problems, then the model header (ir_version, opset_import), the
 * declarations of every graph, and every node of every graph and subgraph against the op
 * schema table (ops/schema_table.def) and the attribute table (ops/attr_table.def). Model-
 * local functions are checked for their ops and attribute types.
 *
 * Every problem is reported, one line each, naming the node or value. Messages are
 * formatted into stack buffers, so the checker cannot fail: the only allocation, the sorted
 * index behind the duplicate-name checks, falls back to a pairwise scan when memory is short.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "ir/ir.h"
#include "ops/schema.h"
#include "plugin/plugin.h"

/* The newest IR version whose fields the decoder knows (IR 13, ONNX 1.20+). */
#define KILN_IR_VERSION_MAX 13

/* ------------------------------------------------------------------ attribute table */

#define KILN_DOM_ONNX ""
#define KILN_DOM_ML "ai.onnx.ml"
#define KILN_DOM_TRAINING "ai.onnx.preview.training"
#define KILN_DOM_PREVIEW "ai.onnx.preview"
#define KILN_DOM_KILN "kiln"

struct attr_row {
    const char *domain, *op;
    int since, until; /* until 0: still current */
    const char *spec; /* "name:type[!] ...", leading '*' = incomplete */
};

static const struct attr_row attr_rows[] = {
#define KILN_ATTRS(dom, op, since, until, spec) {KILN_DOM_##dom, #op, since, until, spec},
#include "ops/attr_table.def"
#undef KILN_ATTRS
};

static const char *const attr_type_names[] = {
    [KILN_ATTR_UNDEFINED] = "undefined",       [KILN_ATTR_FLOAT] = "float",
    [KILN_ATTR_INT] = "int",                   [KILN_ATTR_STRING] = "string",
    [KILN_ATTR_TENSOR] = "tensor",             [KILN_ATTR_GRAPH] = "graph",
    [KILN_ATTR_FLOATS] = "floats",             [KILN_ATTR_INTS] = "ints",
    [KILN_ATTR_STRINGS] = "strings",           [KILN_ATTR_TENSORS] = "tensors",
    [KILN_ATTR_GRAPHS] = "graphs",             [KILN_ATTR_SPARSE_TENSOR] = "sparse_tensor",
    [KILN_ATTR_SPARSE_TENSORS] = "sparse_tensors", [KILN_ATTR_TYPE_PROTO] = "type_proto",
    [KILN_ATTR_TYPE_PROTOS] = "type_protos",
};

static const char *attr_type_name(enum kiln_attr_type t)
{
    if ((unsigned)t < sizeof attr_type_names / sizeof attr_type_names[0] && attr_type_names[t])
        return attr_type_names[t];
    return "unknown";
}

/* The attribute type named by spec text [s, s+n); KILN_ATTR_UNDEFINED if none. */
static enum kiln_attr_type attr_type_parse(const char *s, size_t n)
{
    for (size_t t = 1; t < sizeof attr_type_names / sizeof attr_type_names[0]; t++)
        if (strlen(attr_type_names[t]) == n && memcmp(attr_type_names[t], s, n) == 0)
            return (enum kiln_attr_type)t;
    return KILN_ATTR_UNDEFINED;
}

/* One parsed "name:type[!]" token of a spec. */
struct spec_item {
    const char *name;
    size_t name_len;
    enum kiln_attr_type type;
    bool required;
};

/* Parses the token starting at *p (skipping spaces and a leading '*'); advances *p.
 * Returns false at the end of the spec. */
static bool spec_next(const char **p, struct spec_item *it)
{
    const char *s = *p;
    while (*s == ' ' || *s == '*') s++;
    if (!*s) return false;
    const char *tok = s;
    while (*s && *s != ' ') s++;
    size_t len = (size_t)(s - tok);
    const char *colon = memchr(tok, ':', len);
    it->name = tok;
    it->name_len = colon ? (size_t)(colon - tok) : len;
    it->required = len > 0 && tok[len - 1] == '!';
    it->type = colon ? attr_type_parse(colon + 1, (size_t)(tok + len - it->required - colon - 1))
                     : KILN_ATTR_UNDEFINED;
    *p = s;
    return true;
}

static int domain_rank(const char *d)
{
    if (!d[0]) return 0;
    if (strcmp(d, KILN_DOM_ML) == 0) return 1;
    if (strcmp(d, KILN_DOM_TRAINING) == 0) return 2;
    if (strcmp(d, KILN_DOM_PREVIEW) == 0) return 3;
    return 4;
}

/* The attribute row of (domain, op) at schema version `since`, or NULL. attr_table.def is
 * sorted by (domain rank, op) with one row per version, so a binary search finds the op. */
static const struct attr_row *attr_row_find(const char *domain, const char *op, int since)
{
    int rank = domain_rank(domain);
    size_t lo = 0, hi = sizeof attr_rows / sizeof attr_rows[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = domain_rank(attr_rows[mid].domain);
        int c = r != rank ? r - rank : strcmp(attr_rows[mid].op, op);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < sizeof attr_rows / sizeof attr_rows[0]; i++) {
        const struct attr_row *r = &attr_rows[i];
        if (strcmp(r->op, op) != 0 || domain_rank(r->domain) != rank) break;
        if (r->since == since) return r;
    }
    return NULL;
}

/* ------------------------------------------------------------------ duplicates */

struct keyed {
    const char *key;
    size_t idx;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* For keys key(base, 0..n) (NULL never matches), returns a kiln_malloc'd array whose entry
 * i is the index of the first entry with the same key (i itself when none comes earlier);
 * the caller frees it. NULL when memory is short (the caller then compares pairwise).
 * Sorting keeps hostile files with thousands of names (outputs, attributes, opset imports)
 * from making the checker quadratic. */
static size_t *mark_dups(const void *base, size_t n, const char *(*key)(const void *, size_t))
{
    size_t *dup = kiln_malloc((n + 1) * sizeof *dup);
    struct keyed *ks = kiln_malloc((n + 1) * sizeof *ks);
    if (!dup || !ks) {
        kiln_free(dup);
        kiln_free(ks);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = key(base, i);
        dup[i] = i;
        if (k) ks[m++] = (struct keyed){k, i};
    }
    qsort(ks, m, sizeof *ks, cmp_keyed);
    for (size_t i = 1; i < m; i++)
        if (!strcmp(ks[i].key, ks[i - 1].key)) dup[ks[i].idx] = dup[ks[i - 1].idx];
    kiln_free(ks);
    return dup;
}

static const char *attr_key(const void *base, size_t i)
{
    const char *k = ((const struct kiln_attr *)base)[i].name;
    return k && k[0] ? k : NULL;
}

static const char *output_key(const void *base, size_t i)
{
    const char *k = ((const struct kiln_value_info *)base)[i].name;
    return k && k[0] ? k : NULL;
}

static const char *opset_key(const void *base, size_t i)
{
    const char *k = ((const struct kiln_opset *)base)[i].domain;
    k = k ? k : "";
    return strcmp(k, "ai.onnx") ? k : "";
}

/* ------------------------------------------------------------------ reporting */

struct checker {
    const struct kiln_model *m;
    kiln_problem_fn problem;
    void *user;
    size_t n;
};

static void report(struct checker *c, const char *fmt, ...) KILN_PRINTF(2, 3);
static void report(struct checker *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->n++;
    if (c->problem) c->problem(c->user, msg);
}

static const char *str_or(const char *s, const char *dflt) { return s ? s : dflt; }

/* Where a node is: "Conv node 'c1'", plus the enclosing subgraph or function. */
static const char *node_where(const struct kiln_graph *g, const char *fn_name, size_t idx,
                              const struct kiln_node *n, char *buf, size_t size)
{
    char lb[300];
    kiln_node_label(n, lb, sizeof lb);
    bool anonymous = !(n->name && n->name[0]) && !(n->n_out && n->outputs[0] && n->outputs[0][0]);
    char num[32] = "";
    if (anonymous) snprintf(num, sizeof num, " #%zu", idx);
    if (fn_name)
        snprintf(buf, size, "%s%s in function '%s'", lb, num, fn_name);
    else if (g && g->parent)
        snprintf(buf, size, "%s%s in subgraph '%s'", lb, num, str_or(g->name, ""));
    else
        snprintf(buf, size, "%s%s", lb, num);
    return buf;
}

/* ------------------------------------------------------------------ nodes */

/* The opset version of `domain` in a function's imports, else the model's; -1 if absent. */
static int64_t opset_in(const struct kiln_model *m, const struct kiln_function *fn,
                        const char *domain)
{
    if (fn) {
        for (size_t i = 0; i < fn->n_opsets; i++) {
            const char *d = str_or(fn->opsets[i].domain, "");
            if (strcmp(d, "ai.onnx") == 0) d = "";
            if (strcmp(d, domain) == 0) return fn->opsets[i].version;
        }
    }
    return kiln_model_opset_for(m, domain);
}

static const struct kiln_function *local_function(const struct kiln_model *m, const char *domain,
                                                  const char *op)
{
    for (size_t i = 0; i < m->n_functions; i++) {
        const struct kiln_function *f = &m->functions[i];
        const char *fd = str_or(f->domain, "");
        if (strcmp(fd, "ai.onnx") == 0) fd = "";
        if (f->name && strcmp(f->name, op) == 0 && strcmp(fd, domain) == 0) return f;
    }
    return NULL;
}

static void check_graph(struct checker *c, const struct kiln_graph *g);

/* Attribute names, types and required attributes against the table row of op version `ver`.
 * Inside functions (`in_function`), attributes bound by ref_attr_name are not checked and
 * required attributes may come from the caller, so only the given ones are checked. */
static void check_attrs(struct checker *c, const char *where, const struct kiln_node *n,
                        const char *domain, int ver, bool in_function)
{
    const char *op = n->op_type;
    size_t *dup = n->n_attr > 1 ? mark_dups(n->attrs, n->n_attr, attr_key) : NULL;
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if (!a->name || !a->name[0]) {
            report(c, "%s: attribute #%zu has an empty name", where, k);
            continue;
        }
        for (size_t j = 0; !dup && j < k; j++)
            if (n->attrs[j].name && strcmp(n->attrs[j].name, a->name) == 0) {
                report(c, "%s: attribute '%s' is given twice", where, a->name);
                break;
            }
        if (dup && dup[k] != k) report(c, "%s: attribute '%s' is given twice", where, a->name);
        if (a->ref_attr_name && !in_function)
            report(c, "%s: attribute '%s' refers to function attribute '%s' outside a function",
                   where, a->name, a->ref_attr_name);
    }
    kiln_free(dup);
    const struct attr_row *row = ver > 0 ? attr_row_find(domain, op, ver) : NULL;
    if (!row) return; /* no attribute data for this op version: nothing more to check */
    bool open = row->spec[0] == '*';
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if (!a->name || !a->name[0] || (in_function && a->ref_attr_name)) continue;
        const char *p = row->spec;
        struct spec_item it;
        bool found = false;
        while (spec_next(&p, &it)) {
            if (strlen(a->name) != it.name_len || memcmp(a->name, it.name, it.name_len) != 0)
                continue;
            found = true;
            if (a->type != it.type)
                report(c, "%s: attribute '%s' is %s; %s-%d expects %s", where, a->name,
                       attr_type_name(a->type), op, ver, attr_type_name(it.type));
            break;
        }
        if (!found && !open)
            report(c, "%s: unknown attribute '%s' for %s-%d", where, a->name, op, ver);
    }
    const char *p = row->spec;
    struct spec_item it;
    while (spec_next(&p, &it)) {
        if (!it.required) continue;
        bool given = false;
        for (size_t k = 0; k < n->n_attr && !given; k++)
            given = n->attrs[k].name && strlen(n->attrs[k].name) == it.name_len &&
                    memcmp(n->attrs[k].name, it.name, it.name_len) == 0;
        if (!given && !in_function)
            report(c, "%s: required attribute '%.*s' of %s-%d is missing", where,
                   (int)it.name_len, it.name, op, ver);
    }
}

static void check_sparse(struct checker *c, const char *what, const struct kiln_sparse_tensor *sp);

/* Constant takes its value from exactly one attribute (Constant-1..25). */
static void check_constant(struct checker *c, const char *where, const struct kiln_node *n)
{
    static const char *const names[] = {"value",        "value_float",  "value_floats",
                                         "value_int",    "value_ints",   "value_string",
                                         "value_strings", "sparse_value"};
    size_t given = 0;
    for (size_t k = 0; k < n->n_attr; k++)
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            given += n->attrs[k].name && strcmp(n->attrs[k].name, names[j]) == 0;
    if (given != 1)
        report(c, "%s: Constant needs exactly one value attribute (value, value_float, ..., "
                  "sparse_value); it has %zu", where, given);
}

/* One node of graph g (or of function fn, then g is NULL). */
static void check_node(struct checker *c, const struct kiln_graph *g,
                       const struct kiln_function *fn, size_t idx, const struct kiln_node *n)
{
    const struct kiln_model *m = c->m;
    char where[700];
    if (!n->op_type || !n->op_type[0]) {
        char lb[400];
        node_where(g, fn ? str_or(fn->name, "") : NULL, idx, n, lb, sizeof lb);
        report(c, "%s: node #%zu has an empty op_type", lb, idx);
    } else {
        const char *domain = str_or(n->domain, "");
        if (strcmp(domain, "ai.onnx") == 0) domain = "";
        node_where(g, fn ? str_or(fn->name, "") : NULL, idx, n, where, sizeof where);
        int64_t opset = opset_in(m, fn, domain);
        bool known_domain = kiln_schema_latest(domain) > 0;
        int attr_ver = 0; /* op version whose attribute row applies; 0: none */
        if (opset < 0) {
            report(c, "%s: domain '%s' is not imported by the model (no opset_import entry)",
                   where, domain);
        } else if (local_function(m, domain, n->op_type)) {
            /* A call of a model-local function: its attributes are the function's. */
        } else if (known_domain) {
            const struct kiln_op_schema *s = kiln_schema_find(domain, n->op_type);
            int ver = kiln_schema_resolve(domain, n->op_type, opset);
            if (!s) {
                report(c, "%s: unknown op '%s' in domain '%s' at opset %lld", where, n->op_type,
                       domain, (long long)opset);
            } else if (ver < 0) {
                report(c, "%s: op '%s' was removed in opset %d (deprecated); the model imports "
                          "opset %lld of domain '%s'",
                       where, n->op_type, s->deprecated_since, (long long)opset, domain);
            } else if (ver == 0) {
                report(c, "%s: op '%s' does not exist in domain '%s' at opset %lld (it first "
                          "appears in opset %d)",
                       where, n->op_type, domain, (long long)opset, s->versions[0]);
            } else {
                attr_ver = ver;
                if (!domain[0] && strcmp(n->op_type, "Constant") == 0) check_constant(c, where, n);
            }
        } else if (!kiln_op_known(m, domain, n->op_type)) {
            /* Loading refuses these already (src/plugin); kept, in the same words, for
             * models built or changed after loading. A plugin's op is known. */
            report(c, "%s: op '%s' of domain '%s' is not known to kiln and no loaded plugin "
                      "declares it (kiln --plugin LIB.so)", where, n->op_type, domain);
        }
        check_attrs(c, where, n, domain, attr_ver, fn != NULL);
    }
    /* Subgraphs and sparse tensors inside attributes. */
    for (size_t k = 0; k < n->n_attr; k++) {
        const struct kiln_attr *a = &n->attrs[k];
        if (a->type == KILN_ATTR_GRAPH && a->g) check_graph(c, a->g);
        if (a->type == KILN_ATTR_GRAPHS)
            for (size_t j = 0; j < a->n; j++)
                if (a->graphs && a->graphs[j]) check_graph(c, a->graphs[j]);
        char what[800];
        if (a->type == KILN_ATTR_SPARSE_TENSOR && a->sp) {
            char lb[400];
            node_where(g, fn ? str_or(fn->name, "") : NULL, idx, n, lb, sizeof lb);
            snprintf(what, sizeof what, "%s: attribute '%s'", lb, str_or(a->name, ""));
            check_sparse(c, what, a->sp);
        }
        if (a->type == KILN_ATTR_SPARSE_TENSORS && a->sparses)
            for (size_t j = 0; j < a->n; j++) {
                char lb[400];
                node_where(g, fn ? str_or(fn->name, "") : NULL, idx, n, lb, sizeof lb);
                snprintf(what, sizeof what, "%s: attribute '%s'[%zu]", lb, str_or(a->name, ""), j);
                check_sparse(c, what, &a->sparses[j]);
            }
    }
}

/* ------------------------------------------------------------------ declarations */

/* Why a declared type is incomplete (onnx.checker check_value_info), or NULL if it is fine. */
static const char *type_gap(const struct kiln_type *t)
{
    for (int depth = 0; t && depth < 64; depth++) {
        switch (t->kind) {
        case KILN_TYPE_NONE: return "has no type";
        case KILN_TYPE_TENSOR:
        case KILN_TYPE_SPARSE_TENSOR:
            return t->elem == KILN_DTYPE_UNDEFINED ? "has no element type" : NULL;
        case KILN_TYPE_SEQUENCE:
        case KILN_TYPE_OPTIONAL:
            if (!t->inner) return "has a sequence or optional type without element type";
            t = t->inner;
            break;
        case KILN_TYPE_MAP:
            if (t->elem == KILN_DTYPE_UNDEFINED) return "has a map type without key type";
            if (!t->inner) return "has a map type without value type";
            t = t->inner;
            break;
        default: return "has an unknown type kind";
        }
    }
    return NULL;
}

/* Sparse tensor consistency (onnx.checker check_sparse_tensor): values 1-D with NNZ
 * entries; indices int64, [NNZ] linear or [NNZ, rank] coordinates, in range, and in strictly
 * increasing (lexicographic) order. */
static void check_sparse(struct checker *c, const char *what, const struct kiln_sparse_tensor *sp)
{
    if (sp->rank < 0 || sp->rank > KILN_MAX_RANK) {
        report(c, "%s: sparse tensor has rank %d", what, sp->rank);
        return;
    }
    uint64_t dense = 1;
    for (int d = 0; d < sp->rank; d++) {
        if (sp->dims[d] < 0) {
            report(c, "%s: sparse tensor dimension %d is negative (%lld)", what, d,
                   (long long)sp->dims[d]);
            return;
        }
        if (__builtin_mul_overflow(dense, (uint64_t)sp->dims[d], &dense)) dense = UINT64_MAX;
    }
    const struct kiln_tensor *v = &sp->values, *ix = &sp->indices;
    if (v->rank != 1) {
        report(c, "%s: sparse tensor values must be 1-D; got rank %d", what, v->rank);
        return;
    }
    int64_t nnz = v->dims[0];
    if (ix->rank == 0 && ix->dtype == KILN_DTYPE_UNDEFINED && nnz == 0) return; /* empty */
    if (ix->dtype != KILN_DTYPE_I64) {
        report(c, "%s: sparse tensor indices must be int64", what);
        return;
    }
    const int64_t *idx = ix->data;
    if (ix->rank == 1) {
        if (ix->dims[0] != nnz) {
            report(c, "%s: sparse tensor has %lld values but %lld linear indices", what,
                   (long long)nnz, (long long)ix->dims[0]);
            return;
        }
        for (int64_t i = 0; i < nnz && idx; i++) {
            if (idx[i] < 0 || (uint64_t)idx[i] >= dense) {
                report(c, "%s: sparse tensor index %lld at position %lld is out of range [0, %llu)",
                       what, (long long)idx[i], (long long)i, (unsigned long long)dense);
                return;
            }
            if (i > 0 && idx[i] <= idx[i - 1]) {
                report(c, "%s: sparse tensor indices are not strictly increasing at position %lld",
                       what, (long long)i);
                return;
            }
        }
    } else if (ix->rank == 2) {
        if (ix->dims[0] != nnz || ix->dims[1] != sp->rank) {
            report(c, "%s: sparse tensor indices have shape [%lld,%lld]; expected [%lld,%d]", what,
                   (long long)ix->dims[0], (long long)ix->dims[1], (long long)nnz, sp->rank);
            return;
        }
        for (int64_t i = 0; i < nnz && idx; i++) {
            const int64_t *row = idx + i * sp->rank;
            for (int d = 0; d < sp->rank; d++)
                if (row[d] < 0 || row[d] >= sp->dims[d]) {
                    report(c, "%s: sparse tensor index %lld of entry %lld is out of range for "
                              "dimension %d (size %lld)",
                           what, (long long)row[d], (long long)i, d, (long long)sp->dims[d]);
                    return;
                }
            if (i > 0) {
                int cmp = 0;
                for (int d = 0; d < sp->rank && !cmp; d++)
                    cmp = (row[d] > row[d - sp->rank]) - (row[d] < row[d - sp->rank]);
                if (cmp <= 0) {
                    report(c, "%s: sparse tensor indices are not strictly increasing at entry %lld",
                           what, (long long)i);
                    return;
                }
            }
        }
    } else {
        report(c, "%s: sparse tensor indices must be 1-D or 2-D; got rank %d", what, ix->rank);
    }
}

static void check_graph(struct checker *c, const struct kiln_graph *g)
{
    const struct kiln_model *m = c->m;
    const char *gname = str_or(g->name, "");
    bool main_graph = g->parent == NULL && g == m->graph;
    const char *kind = main_graph ? "graph" : "subgraph";

    /* onnx.checker requires complete types on the main graph's inputs and outputs only;
     * subgraph declarations may leave them to inference. */
    if (main_graph) {
        for (size_t i = 0; i < g->n_inputs; i++) {
            const char *why = type_gap(&g->inputs[i].type);
            if (why && g->inputs[i].name && g->inputs[i].name[0])
                report(c, "graph input '%s' %s", g->inputs[i].name, why);
        }
        for (size_t i = 0; i < g->n_outputs; i++) {
            const char *why = type_gap(&g->outputs[i].type);
            if (why && g->outputs[i].name && g->outputs[i].name[0])
                report(c, "graph output '%s' %s", g->outputs[i].name, why);
        }
    }
    size_t *dup = g->n_outputs > 1 ? mark_dups(g->outputs, g->n_outputs, output_key) : NULL;
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *nm = str_or(g->outputs[i].name, "");
        if (!nm[0]) {
            report(c, "%s '%s' output #%zu has an empty name", kind, gname, i);
            continue;
        }
        if (dup && dup[i] != i)
            report(c, "%s '%s' lists output '%s' twice (#%zu and #%zu)", kind, gname, nm, dup[i],
                   i);
        for (size_t j = 0; !dup && j < i; j++)
            if (g->outputs[j].name && strcmp(g->outputs[j].name, nm) == 0) {
                report(c, "%s '%s' lists output '%s' twice (#%zu and #%zu)", kind, gname, nm, j, i);
                break;
            }
    }
    kiln_free(dup);
    for (size_t i = 0; i < g->n_value_info; i++)
        if (!g->value_info[i].name || !g->value_info[i].name[0])
            report(c, "%s '%s' value_info #%zu has an empty name", kind, gname, i);
    /* Before IR 4 every initializer had to be a graph input as well (IR.md, onnx.checker). */
    if (main_graph && m->ir_version > 0 && m->ir_version < 4) {
        for (size_t i = 0; i < g->n_inits; i++) {
            const char *nm = g->inits[i].name;
            if (!nm || !nm[0]) continue;
            /* The linker gives a name declared as an input that input's declaration. */
            int id = kiln_graph_find(g, nm);
            const struct kiln_value_info *vi = id >= 0 ? g->values[id].info : NULL;
            bool is_input = vi && vi >= g->inputs && vi < g->inputs + g->n_inputs;
            for (size_t j = 0; !g->values && j < g->n_inputs && !is_input; j++)
                is_input = g->inputs[j].name && strcmp(g->inputs[j].name, nm) == 0;
            if (!is_input)
                report(c, "initializer '%s' is not a graph input (required for ir_version %lld < 4)",
                       nm, (long long)m->ir_version);
        }
    }
    for (size_t i = 0; i < g->n_sparse_inits; i++) {
        const struct kiln_sparse_tensor *sp = &g->sparse_inits[i];
        char what[400];
        if (!sp->name || !sp->name[0]) {
            report(c, "%s '%s' sparse initializer #%zu has an empty name", kind, gname, i);
            snprintf(what, sizeof what, "sparse initializer #%zu", i);
        } else {
            snprintf(what, sizeof what, "sparse initializer '%s'", sp->name);
        }
        check_sparse(c, what, sp);
    }
    for (size_t i = 0; i < g->n_nodes; i++) check_node(c, g, NULL, i, &g->nodes[i]);
}

/* ------------------------------------------------------------------ model */

static void check_header(struct checker *c)
{
    const struct kiln_model *m = c->m;
    if (m->ir_version <= 0)
        report(c, "model has no ir_version");
    else if (m->ir_version > KILN_IR_VERSION_MAX)
        report(c, "model ir_version %lld is newer than kiln supports (up to %d)",
               (long long)m->ir_version, KILN_IR_VERSION_MAX);
    /* onnx.checker: IR >= 3 needs opset_import (IR 1-2 implied ai.onnx opset 1). A model of
     * only ai.onnx.ml or training ops need not import the default domain; a node that uses a
     * domain without an import is reported at the node. */
    if (m->n_opsets == 0 && m->ir_version >= 3)
        report(c, "model imports no opset (opset_import is empty; required for ir_version >= 3)");
    size_t *dup = m->n_opsets > 1 ? mark_dups(m->opsets, m->n_opsets, opset_key) : NULL;
    for (size_t i = 0; i < m->n_opsets; i++) {
        const char *d = str_or(m->opsets[i].domain, "");
        if (strcmp(d, "ai.onnx") == 0) d = "";
        if (dup && dup[i] != i) report(c, "opset_import lists domain '%s' twice", d);
        for (size_t j = 0; !dup && j < i; j++) {
            const char *e = str_or(m->opsets[j].domain, "");
            if (strcmp(e, "ai.onnx") == 0) e = "";
            if (strcmp(d, e) == 0) {
                report(c, "opset_import lists domain '%s' twice", d);
                break;
            }
        }
        int latest = kiln_schema_latest(d);
        int64_t v = m->opsets[i].version;
        if (latest > 0 && v < 1)
            report(c, "opset_import of domain '%s' has version %lld; versions start at 1", d,
                   (long long)v);
        else if (latest > 0 && v > latest)
            /* The loader refuses these already (schema.h, kiln_schema_check_import); kept,
             * in the same words, for models changed after loading. */
            report(c, "model imports opset %s %lld; kiln knows %s up to %d", d[0] ? d : "ai.onnx",
                   (long long)v, d[0] ? d : "ai.onnx", latest);
    }
    kiln_free(dup);
}

static void shape_problem(void *user, const char *msg)
{
    report(user, "%s", msg);
}

/* Shape inference (src/infer), once every other check has passed: contradictions between declared and inferred types and the rules' problems,
 * one line each naming the node. Inference writes its results into the model (g->vtypes,
 * in the model's arena): that is a cache of derived facts, not a change of the model, so
 * the const checker may run it. */
static void check_shapes(struct checker *c)
{
    struct kiln_model *m = (struct kiln_model *)c->m;
    if (!m->graph || m->n_link_errors) return;
    kiln_err err = {0};
    kiln_status st = kiln_infer_model(m, shape_problem, c, NULL, &err);
    if (st == KILN_E_NOMEM) report(c, "shape inference ran out of memory");
    else if (st) report(c, "shape inference: %s", err.msg);
}

size_t kiln_model_check(const kiln_model *m, kiln_problem_fn problem, void *user)
{
    if (!m) return 0;
    struct checker c = {.m = m, .problem = problem, .user = user};
    for (size_t i = 0; i < m->n_link_problems; i++)
        report(&c, "%s", m->link_problems[i] ? m->link_problems[i] : "(link problem)");
    check_header(&c);
    if (!m->graph)
        report(&c, "model has no graph");
    else
        check_graph(&c, m->graph);
    for (size_t i = 0; i < m->n_functions; i++) {
        const struct kiln_function *fn = &m->functions[i];
        if (!fn->name || !fn->name[0]) report(&c, "model-local function #%zu has an empty name", i);
        for (size_t k = 0; k < fn->n_nodes; k++) check_node(&c, NULL, fn, k, &fn->nodes[k]);
    }
    if (c.n == 0) check_shapes(&c); /* rules assume well-formed nodes */
    return c.n;
}
