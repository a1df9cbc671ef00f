/* schema.c: the ONNX op schema table (schema.h): which ops exist in which versions, from the
 * ONNX operator changelog (onnx/onnx docs/Operators.md, Operators-ml.md, Changelog.md) up to
 * ai.onnx opset 28, ai.onnx.ml 5, ai.onnx.preview.training 1 and ai.onnx.preview 1, and
 * kiln's own domain "kiln" version 1 (the fused ops of docs/fused-ops.md).
 *
 * schema_table.def lists each op once per domain with every since_version in which its
 * schema changed and, for deprecated ops, the opset from which it no longer exists.
 * Resolution follows onnx.checker: the largest since_version <= the imported opset; an op
 * whose selected schema is the deprecated one resolves to -1.
 */
#include <string.h>

#include "ops/schema.h"

/* Domain tags used in the .def, mapped to the domain strings. */
#define KILN_DOM_ONNX ""
#define KILN_DOM_ML "ai.onnx.ml"
#define KILN_DOM_TRAINING "ai.onnx.preview.training"
#define KILN_DOM_PREVIEW "ai.onnx.preview"
#define KILN_DOM_KILN "kiln"

#define KILN_SCHEMA(dom, op, dep, ...) static const int v_##dom##_##op[] = {__VA_ARGS__};
#include "ops/schema_table.def"
#undef KILN_SCHEMA

static const struct kiln_op_schema schemas[] = {
#define KILN_SCHEMA(dom, op, dep, ...)                                                         \
    {KILN_DOM_##dom, #op, (int)(sizeof v_##dom##_##op / sizeof(int)), v_##dom##_##op, dep},
#include "ops/schema_table.def"
#undef KILN_SCHEMA
};

/* Newest opset per domain this table describes. */
static const struct {
    const char *domain;
    int latest;
} domains[] = {
    {"", 28},
    {"ai.onnx.ml", 5},
    {"ai.onnx.preview.training", 1},
    {"ai.onnx.preview", 1},
    {"kiln", 1},
};

static const char *norm_domain(const char *d)
{
    if (!d || strcmp(d, "ai.onnx") == 0) return "";
    return d;
}

const struct kiln_op_schema *kiln_schema_find(const char *domain, const char *op_type)
{
    if (!op_type) return NULL;
    domain = norm_domain(domain);
    /* ~250 entries, looked up once per node at link time: a linear scan is enough. */
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++)
        if (strcmp(schemas[i].name, op_type) == 0 && strcmp(schemas[i].domain, domain) == 0)
            return &schemas[i];
    return NULL;
}

int kiln_schema_resolve(const char *domain, const char *op_type, int64_t opset)
{
    const struct kiln_op_schema *s = kiln_schema_find(domain, op_type);
    if (!s || opset <= 0) return 0;
    if (s->deprecated_since && opset >= s->deprecated_since) return -1;
    int best = 0;
    for (int i = 0; i < s->n_versions; i++)
        if (s->versions[i] <= opset) best = s->versions[i];
    return best;
}

int kiln_schema_latest(const char *domain)
{
    domain = norm_domain(domain);
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
        if (strcmp(domains[i].domain, domain) == 0) return domains[i].latest;
    return 0;
}

kiln_status kiln_schema_check_import(const char *who, const char *domain, int64_t version,
                                     kiln_err *err)
{
    int latest = kiln_schema_latest(domain);
    if (latest <= 0 || version <= latest) return KILN_OK;
    const char *d = norm_domain(domain);
    if (!d[0]) d = "ai.onnx";
    return kiln_err_set(err, KILN_E_UNSUPPORTED, "%s imports opset %s %lld; kiln knows %s up to %d",
                        who, d, (long long)version, d, latest);
}
