/* test_schema.c: the op schema table (src/ops/schema.c, schema_table.def) and the attribute
 * table (attr_table.def) the checker reads.
 *
 * 1. Resolution follows onnx.checker: the largest since_version <= the imported opset; 0
 *    before the op exists; -1 once its deprecated schema is selected; "ai.onnx" == "".
 * 2. Table invariants, over every entry: versions ascending and within the domain's latest
 *    opset, a deprecated op's last version is its deprecation, every entry is found by
 *    kiln_schema_find; every attribute row names an existing (op, version), its `until`
 *    matches the next version, its spec parses, and rows are sorted (the checker searches
 *    them by bisection).
 * 3. Cross-check against the ONNX backend test data: every node (subgraphs included) of
 *    every model under node/, simple/ and pytorch-operator/ in a domain kiln knows resolves
 *    to a version > 0 at the model's opset, and the linker recorded that same version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ops/schema.h"
#include "test_support.h"

#define KILN_DOM_ONNX ""
#define KILN_DOM_ML "ai.onnx.ml"
#define KILN_DOM_TRAINING "ai.onnx.preview.training"
#define KILN_DOM_PREVIEW "ai.onnx.preview"
#define KILN_DOM_KILN "kiln"

/* The tables themselves, read the way schema.c and check.c read them. */
struct entry {
    const char *domain, *op;
    int deprecated;
    int n;
    int v[16];
};
static const struct entry entries[] = {
#define KILN_SCHEMA(dom, op, dep, ...)                                                         \
    {KILN_DOM_##dom, #op, dep, (int)(sizeof(int[]){__VA_ARGS__} / sizeof(int)), {__VA_ARGS__}},
#include "ops/schema_table.def"
#undef KILN_SCHEMA
};

struct attr_row {
    const char *domain, *op;
    int since, until;
    const char *spec;
};
static const struct attr_row attr_rows[] = {
#define KILN_ATTRS(dom, op, since, until, spec) {KILN_DOM_##dom, #op, since, until, spec},
#include "ops/attr_table.def"
#undef KILN_ATTRS
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ 1. resolution */

static void expect_resolve(const char *domain, const char *op, int64_t opset, int want)
{
    int got = kiln_schema_resolve(domain, op, opset);
    CHECK(got == want, "resolve('%s', %s, %lld) = %d; expected %d", domain, op, (long long)opset,
          got, want);
}

static void test_resolve(void)
{
    expect_resolve("", "Abs", 1, 1);
    expect_resolve("", "Abs", 5, 1);
    expect_resolve("", "Abs", 6, 6);
    expect_resolve("", "Abs", 12, 6);
    expect_resolve("", "Abs", 13, 13);
    expect_resolve("", "Abs", 28, 13);
    expect_resolve("ai.onnx", "Abs", 13, 13);
    expect_resolve(NULL, "Abs", 13, 13);
    expect_resolve("", "Abs", 0, 0);
    expect_resolve("", "Abs", -3, 0);
    expect_resolve("", "NoSuchOp", 13, 0);
    expect_resolve("", NULL, 13, 0);
    expect_resolve("com.example", "Abs", 13, 0);
    /* Deprecated ops: the deprecating opset and later select the deprecated schema. */
    expect_resolve("", "Upsample", 6, 1);
    expect_resolve("", "Upsample", 8, 7);
    expect_resolve("", "Upsample", 9, 9);
    expect_resolve("", "Upsample", 10, -1);
    expect_resolve("", "Upsample", 20, -1);
    expect_resolve("", "Scatter", 8, 0);
    expect_resolve("", "Scatter", 10, 9);
    expect_resolve("", "Scatter", 11, -1);
    /* Ops that changed often. */
    expect_resolve("", "Cast", 20, 19);
    expect_resolve("", "Cast", 25, 25);
    expect_resolve("", "Pad", 18, 18);
    expect_resolve("", "Pad", 22, 21);
    expect_resolve("", "Resize", 17, 13);
    expect_resolve("", "Softmax", 12, 11);
    expect_resolve("", "Gelu", 19, 0);
    expect_resolve("", "Gelu", 20, 20);
    expect_resolve("", "Attention", 23, 23);
    expect_resolve("", "Range", 26, 11);
    expect_resolve("", "Range", 27, 27);
    expect_resolve("", "Celu", 28, 28);
    /* Other domains. */
    expect_resolve("ai.onnx.ml", "LabelEncoder", 3, 2);
    expect_resolve("ai.onnx.ml", "LabelEncoder", 4, 4);
    expect_resolve("ai.onnx.ml", "TreeEnsembleClassifier", 4, 3);
    expect_resolve("ai.onnx.ml", "TreeEnsembleClassifier", 5, -1);
    expect_resolve("ai.onnx.ml", "TreeEnsemble", 5, 5);
    expect_resolve("ai.onnx.ml", "Abs", 5, 0);
    expect_resolve("ai.onnx.preview.training", "Adam", 1, 1);
    expect_resolve("ai.onnx.preview", "FlexAttention", 1, 1);

    CHECK(kiln_schema_latest("") == 28, "latest('') = %d", kiln_schema_latest(""));
    CHECK(kiln_schema_latest("ai.onnx") == 28, "latest('ai.onnx')");
    CHECK(kiln_schema_latest("ai.onnx.ml") == 5, "latest(ml)");
    CHECK(kiln_schema_latest("ai.onnx.preview.training") == 1, "latest(training)");
    CHECK(kiln_schema_latest("com.microsoft") == 0, "latest(unknown)");

    const struct kiln_op_schema *s = kiln_schema_find("", "Upsample");
    CHECK(s && s->deprecated_since == 10, "Upsample deprecated_since");
    s = kiln_schema_find("ai.onnx", "Conv");
    CHECK(s && strcmp(s->name, "Conv") == 0 && s->domain[0] == 0 && s->n_versions == 3 &&
              s->versions[0] == 1 && s->versions[1] == 11 && s->versions[2] == 22,
          "Conv versions");
    CHECK(!kiln_schema_find("ai.onnx.ml", "Conv"), "Conv is not an ai.onnx.ml op");
}

/* ------------------------------------------------------------------ 2. invariants */

static const struct entry *entry_of(const char *domain, const char *op)
{
    for (size_t i = 0; i < COUNT(entries); i++)
        if (strcmp(entries[i].domain, domain) == 0 && strcmp(entries[i].op, op) == 0)
            return &entries[i];
    return NULL;
}

static int domain_rank(const char *d)
{
    return !d[0]                             ? 0
           : strcmp(d, KILN_DOM_ML) == 0       ? 1
           : strcmp(d, KILN_DOM_TRAINING) == 0 ? 2
           : strcmp(d, KILN_DOM_PREVIEW) == 0  ? 3
                                               : 4; /* as check.c */
}

static const char *const type_names[] = {
    "float", "int", "string", "tensor", "graph", "floats", "ints", "strings", "tensors",
    "graphs", "sparse_tensor", "sparse_tensors", "type_proto", "type_protos",
};

static void test_table(void)
{
    CHECK(COUNT(entries) >= 227, "only %zu schema entries", COUNT(entries));
    for (size_t i = 0; i < COUNT(entries); i++) {
        const struct entry *e = &entries[i];
        const struct kiln_op_schema *s = kiln_schema_find(e->domain, e->op);
        CHECK(s && s->n_versions == e->n, "%s not found or differs", e->op);
        int latest = kiln_schema_latest(e->domain);
        for (int k = 0; k < e->n; k++) {
            CHECK(e->v[k] >= 1 && e->v[k] <= latest, "%s version %d out of [1, %d]", e->op,
                  e->v[k], latest);
            CHECK(k == 0 || e->v[k] > e->v[k - 1], "%s versions not ascending", e->op);
            CHECK(kiln_schema_resolve(e->domain, e->op, e->v[k]) ==
                      (e->deprecated && e->v[k] >= e->deprecated ? -1 : e->v[k]),
                  "%s resolves its own version %d wrongly", e->op, e->v[k]);
        }
        CHECK(!e->deprecated || e->v[e->n - 1] == e->deprecated,
              "%s: deprecated_since %d is not its last version", e->op, e->deprecated);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(entries[j].op, e->op) || strcmp(entries[j].domain, e->domain),
                  "%s listed twice", e->op);
    }
    CHECK(COUNT(attr_rows) > 500, "only %zu attribute rows", COUNT(attr_rows));
    for (size_t i = 0; i < COUNT(attr_rows); i++) {
        const struct attr_row *r = &attr_rows[i];
        const struct entry *e = entry_of(r->domain, r->op);
        CHECK(e != NULL, "attribute row for unknown op %s", r->op);
        if (!e) continue;
        int k = 0;
        while (k < e->n && e->v[k] != r->since) k++;
        CHECK(k < e->n, "attribute row %s-%d: no such version", r->op, r->since);
        if (k < e->n) {
            int until = k + 1 < e->n ? e->v[k + 1] - 1 : 0;
            CHECK(r->until == until, "attribute row %s-%d: until %d, expected %d", r->op,
                  r->since, r->until, until);
        }
        if (i > 0) {
            const struct attr_row *q = &attr_rows[i - 1];
            int c = domain_rank(q->domain) != domain_rank(r->domain)
                        ? domain_rank(q->domain) - domain_rank(r->domain)
                        : strcmp(q->op, r->op);
            CHECK(c < 0 || (c == 0 && q->since < r->since), "attribute rows not sorted at %s-%d",
                  r->op, r->since);
        }
        /* Spec tokens: name:type[!], type one of the AttributeProto types. */
        const char *p = r->spec;
        if (*p == '*') p++;
        while (*p) {
            while (*p == ' ') p++;
            if (!*p) break;
            const char *tok = p;
            while (*p && *p != ' ') p++;
            const char *colon = memchr(tok, ':', (size_t)(p - tok));
            CHECK(colon && colon > tok, "attribute row %s-%d: bad token '%.*s'", r->op, r->since,
                  (int)(p - tok), tok);
            if (!colon) continue;
            size_t tl = (size_t)(p - colon - 1) - (p[-1] == '!');
            bool ok = false;
            for (size_t t = 0; t < COUNT(type_names); t++)
                ok |= strlen(type_names[t]) == tl && memcmp(type_names[t], colon + 1, tl) == 0;
            CHECK(ok, "attribute row %s-%d: bad type in '%.*s'", r->op, r->since,
                  (int)(p - tok), tok);
        }
    }
    /* Every non-deprecated version of every ai.onnx op has attribute data. */
    for (size_t i = 0; i < COUNT(entries); i++) {
        const struct entry *e = &entries[i];
        for (int k = 0; k < e->n; k++) {
            if (e->deprecated && e->v[k] >= e->deprecated) continue;
            bool found = false;
            for (size_t j = 0; j < COUNT(attr_rows) && !found; j++)
                found = attr_rows[j].since == e->v[k] && strcmp(attr_rows[j].op, e->op) == 0 &&
                        strcmp(attr_rows[j].domain, e->domain) == 0;
            CHECK(found, "no attribute row for %s-%d", e->op, e->v[k]);
        }
    }
}

/* ------------------------------------------------------------------ 3. test data */

static size_t n_nodes_checked;

static void walk(const struct kiln_model *m, const struct kiln_graph *g, const char *model_name)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        const char *domain = n->domain ? n->domain : "";
        int64_t opset = kiln_model_opset_for(m, domain);
        if (kiln_schema_latest(domain) > 0) {
            int v = kiln_schema_resolve(domain, n->op_type, opset);
            CHECK(v > 0, "%s: %s (domain '%s') at opset %lld resolves to %d", model_name,
                  n->op_type, domain, (long long)opset, v);
            CHECK(n->since == v, "%s: %s: linker recorded version %d, schema says %d",
                  model_name, n->op_type, n->since, v);
            n_nodes_checked++;
        }
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) walk(m, a->g, model_name);
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++) walk(m, a->graphs[j], model_name);
        }
    }
}

static void test_data(void)
{
    const char *subs[] = {"node", "simple", "pytorch-operator"};
    size_t n_models = 0;
    for (size_t s = 0; s < COUNT(subs); s++) {
        size_t n;
        char **cases = list_cases(subs[s], &n);
        for (size_t i = 0; i < n; i++) {
            char path[4096];
            case_path(path, sizeof path, subs[s], cases[i], "model.onnx");
            kiln_model *m = NULL;
            kiln_err err = {0};
            if (kiln_model_load_file(path, &m, &err) != KILN_OK) {
                CHECK(0, "%s does not load: %s", cases[i], err.msg);
                continue;
            }
            const struct kiln_model *im = m;
            if (im->graph) walk(im, im->graph, cases[i]);
            n_models++;
            kiln_model_free(m);
        }
        free_cases(cases, n);
    }
    fprintf(stderr, "resolved %zu nodes of %zu ONNX test models\n", n_nodes_checked, n_models);
}

int main(void)
{
    test_resolve();
    test_table();
    test_data();
    return test_summary("test_schema");
}
