/* cmd_compare.c: `kiln compare ACTUAL EXPECTED [--rtol R] [--atol A] [--kind K]`.
 *
 * Compares two value files the way ONNX's backend test runner compares outputs
 * (onnx/backend/test/runner: numpy.testing.assert_allclose with rtol 1e-3, atol 1e-7):
 * floats match when |a - e| <= atol + rtol * |e|, NaN matches NaN and an infinity matches
 * only the same infinity; integers, bools and strings must be equal. Kinds, element types,
 * shapes and sequence lengths must agree. Exit 0 equal, 1 different, 2 error.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct cmp_ctx {
    double rtol, atol;
    char where[256]; /* path into nested values: "", "[2]", "[2][0]" */
};

static int differ(const struct cmp_ctx *c, const char *fmt, ...) CLI_PRINTF(2, 3);
static int differ(const struct cmp_ctx *c, const char *fmt, ...)
{
    va_list ap;
    printf("different%s%s: ", c->where[0] ? " at item " : "", c->where);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    return CLI_FAIL;
}

static const char *kind_name(kiln_value_kind k)
{
    return k == KILN_VALUE_TENSOR ? "tensor" : k == KILN_VALUE_SEQUENCE ? "sequence"
           : k == KILN_VALUE_OPTIONAL ? "optional" : "unknown";
}

static void shape_text(const kiln_value *v, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < kiln_value_rank(v) && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? ",%lld" : "%lld", (long long)kiln_value_dims(v)[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

/* Multi-index of flat element i, as "[a,b,c]". */
static void index_text(const kiln_value *v, size_t i, char *buf, size_t size)
{
    int rank = kiln_value_rank(v);
    int64_t idx[64];
    const int64_t *d = kiln_value_dims(v);
    for (int k = rank - 1; k >= 0 && k < 64; k--) {
        idx[k] = d[k] ? (int64_t)(i % (size_t)d[k]) : 0;
        i = d[k] ? i / (size_t)d[k] : 0;
    }
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < rank && k < 64 && o < size; k++)
        o += (size_t)snprintf(buf + o, size - o, k ? ",%lld" : "%lld", (long long)idx[k]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static bool float_close(double a, double e, double rtol, double atol)
{
    if (isnan(a) || isnan(e)) return isnan(a) && isnan(e);
    if (isinf(a) || isinf(e)) return a == e;
    return fabs(a - e) <= atol + rtol * fabs(e);
}

/* Exact comparison of element i for non-float types, on the raw bytes (64-bit integers
 * must not round through double). */
static bool exact_equal(const void *a, const void *e, kiln_dtype dt, size_t i)
{
    if (dt == KILN_DTYPE_STRING) {
        const char *sa = ((char *const *)a)[i], *se = ((char *const *)e)[i];
        return strcmp(sa ? sa : "", se ? se : "") == 0;
    }
    if (dt == KILN_DTYPE_BOOL) return (((const uint8_t *)a)[i] != 0) == (((const uint8_t *)e)[i] != 0);
    size_t w = dt == KILN_DTYPE_I64 || dt == KILN_DTYPE_U64 ? 8
               : dt == KILN_DTYPE_I32 || dt == KILN_DTYPE_U32 ? 4
               : dt == KILN_DTYPE_I16 || dt == KILN_DTYPE_U16 ? 2 : 1;
    return memcmp((const uint8_t *)a + i * w, (const uint8_t *)e + i * w, w) == 0;
}

static void elem_text(const void *data, kiln_dtype dt, size_t i, char *buf, size_t size)
{
    if (dt == KILN_DTYPE_STRING) snprintf(buf, size, "\"%.60s\"", ((char *const *)data)[i]);
    else if (dt == KILN_DTYPE_I64) snprintf(buf, size, "%lld", (long long)((const int64_t *)data)[i]);
    else if (dt == KILN_DTYPE_U64) snprintf(buf, size, "%llu", (unsigned long long)((const uint64_t *)data)[i]);
    else snprintf(buf, size, "%.9g", cli_elem_f64(data, dt, i));
}

static int compare_tensor(struct cmp_ctx *c, const kiln_value *a, const kiln_value *e)
{
    char sa[256], se[256];
    kiln_dtype dt = kiln_value_dtype(a);
    if (dt != kiln_value_dtype(e))
        return differ(c, "element type %s vs %s", kiln_dtype_name(dt), kiln_dtype_name(kiln_value_dtype(e)));
    shape_text(a, sa, sizeof sa);
    shape_text(e, se, sizeof se);
    if (strcmp(sa, se) != 0) return differ(c, "shape %s vs %s", sa, se);
    size_t n = kiln_value_numel(a);
    const void *da = kiln_value_data((kiln_value *)a), *de = kiln_value_data((kiln_value *)e);
    bool cplx = dt == KILN_DTYPE_C64 || dt == KILN_DTYPE_C128;
    bool flt = cli_dtype_is_float(dt);
    size_t bad = 0, first = 0;
    double worst = -1;
    for (size_t i = 0; i < n; i++) {
        bool ok;
        if (cplx) {
            ok = float_close(cli_elem_f64(da, dt, 2 * i), cli_elem_f64(de, dt, 2 * i), c->rtol, c->atol) &&
                 float_close(cli_elem_f64(da, dt, 2 * i + 1), cli_elem_f64(de, dt, 2 * i + 1), c->rtol,
                             c->atol);
        } else if (flt) {
            double x = cli_elem_f64(da, dt, i), y = cli_elem_f64(de, dt, i);
            ok = float_close(x, y, c->rtol, c->atol);
            if (!ok && !isnan(x - y) && fabs(x - y) > worst) worst = fabs(x - y);
        } else {
            ok = exact_equal(da, de, dt, i);
        }
        if (!ok && bad++ == 0) first = i;
    }
    if (!bad) return CLI_OK;
    char idx[256];
    index_text(a, first, idx, sizeof idx);
    if (cplx) return differ(c, "%zu of %zu elements differ; first at %s", bad, n, idx);
    elem_text(da, dt, first, sa, sizeof sa);
    elem_text(de, dt, first, se, sizeof se);
    if (flt && worst >= 0)
        return differ(c, "%zu of %zu elements differ (rtol %g, atol %g); first at %s: %s vs %s; "
                         "largest difference %.6g", bad, n, c->rtol, c->atol, idx, sa, se, worst);
    return differ(c, "%zu of %zu elements differ; first at %s: %s vs %s", bad, n, idx, sa, se);
}

static int compare_value(struct cmp_ctx *c, const kiln_value *a, const kiln_value *e, int depth)
{
    kiln_value_kind ka = kiln_value_kind_of(a), ke = kiln_value_kind_of(e);
    if (ka != ke) return differ(c, "a %s vs a %s", kind_name(ka), kind_name(ke));
    if (ka == KILN_VALUE_TENSOR) return compare_tensor(c, a, e);
    size_t na = kiln_value_count(a), ne = kiln_value_count(e);
    if (ka == KILN_VALUE_OPTIONAL && na != ne)
        return differ(c, "optional %s vs %s", na ? "with a value" : "none", ne ? "with a value" : "none");
    if (na != ne) return differ(c, "%zu items vs %zu", na, ne);
    if (depth > 16) return differ(c, "values nested too deeply to compare");
    size_t len = strlen(c->where);
    for (size_t i = 0; i < na; i++) {
        if (ka == KILN_VALUE_SEQUENCE) snprintf(c->where + len, sizeof c->where - len, "[%zu]", i);
        if (compare_value(c, kiln_value_item(a, i), kiln_value_item(e, i), depth + 1) != CLI_OK)
            return CLI_FAIL;
        c->where[len] = 0;
    }
    return CLI_OK;
}

int cli_compare(int argc, char **argv)
{
    struct cmp_ctx c = {.rtol = 1e-3, .atol = 1e-7};
    const char *files[2] = {NULL, NULL};
    int n_files = 0;
    kiln_value_kind kind = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        bool is_r = strcmp(arg, "--rtol") == 0, is_a = strcmp(arg, "--atol") == 0;
        if (is_r || is_a || strcmp(arg, "--kind") == 0) {
            if (i + 1 >= argc) return cli_usage("compare", "%s needs a value", arg);
            const char *v = argv[++i];
            if (is_r || is_a) {
                double x;
                if (!cli_parse_double(v, &x) || x < 0)
                    return cli_usage("compare", "%s takes a number >= 0; got '%s'", arg, v);
                *(is_r ? &c.rtol : &c.atol) = x;
            } else if (strcmp(v, "tensor") == 0) {
                kind = KILN_VALUE_TENSOR;
            } else if (strcmp(v, "seq") == 0 || strcmp(v, "sequence") == 0) {
                kind = KILN_VALUE_SEQUENCE;
            } else if (strcmp(v, "optional") == 0) {
                kind = KILN_VALUE_OPTIONAL;
            } else {
                return cli_usage("compare", "--kind takes tensor, seq or optional; got '%s'", v);
            }
        } else if (arg[0] == '-' && arg[1]) {
            return cli_usage("compare", "unknown option '%s'", arg);
        } else if (n_files < 2) {
            files[n_files++] = arg;
        } else {
            return cli_usage("compare", "compare takes two files; got an extra '%s'", arg);
        }
    }
    if (n_files < 2) return cli_usage("compare", "compare needs two files: ACTUAL EXPECTED");
    kiln_value *v[2] = {NULL, NULL};
    int rc = CLI_OK;
    for (int k = 0; k < 2 && rc == CLI_OK; k++) {
        kiln_err err = {0};
        if (kiln_value_read_file(files[k], kind, &v[k], &err) != KILN_OK) {
            v[k] = NULL;
            if (strstr(err.msg, files[k])) cli_error("%s", err.msg);
            else cli_error("%s: %s", files[k], err.msg);
            rc = CLI_USAGE; /* "trouble", as cmp(1) and diff(1) use 2 */
        }
    }
    if (rc == CLI_OK) {
        rc = compare_value(&c, v[0], v[1], 0);
        if (rc == CLI_OK) printf("equal\n");
    }
    kiln_value_free(v[0]);
    kiln_value_free(v[1]);
    return rc;
}
