/* tests/unit/support/test_support.c: the shared unit-test scaffolding (see test_support.h). */
#include "test_support.h"
#include "exec/eval.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ checks */

int test_checks, test_failures;

void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    test_failures++;
    printf("FAIL %s:%d: ", file, line);
    if (cond) printf("CHECK(%s) failed: ", cond);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout); /* keep the line if the test crashes next */
}

int test_summary(const char *name)
{
    printf("%s: %d checks, %d failures\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* ------------------------------------------------------------------ random numbers */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

void rng_seed(uint64_t seed) { g_rng = seed; }

uint64_t rng_u64(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return g_rng;
}

int rng_int(int n) { return (int)((rng_u64() >> 33) % (uint64_t)n); }

int rng_int_low(int n) { return (int)(rng_u64() % (uint64_t)n); }

double rng_unit(void) { return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0); }

double rng_range(double lo, double hi) { return lo + (hi - lo) * rng_unit(); }

float rng_f32(void) { return (float)rng_range(-1, 1); }

/* ------------------------------------------------------------------ tensors */

struct kiln_value *new_tensor(kiln_dtype dt, int rank, const int64_t *dims)
{
    struct kiln_value *v;
    if (kiln_value_new_tensor(dt, rank, dims, &v, NULL)) {
        printf("FAIL: out of memory for a test tensor\n");
        exit(1);
    }
    return v;
}

struct kiln_value *new_vec(kiln_dtype dt, size_t n)
{
    int64_t d = (int64_t)n;
    return new_tensor(dt, 1, &d);
}

struct kiln_value *tensor_of(kiln_dtype dt, int rank, const int64_t *dims, const void *data)
{
    struct kiln_value *v = new_tensor(dt, rank, dims);
    size_t n = kiln_tensor_numel(&v->t);
    if (!data || !n) return v;
    if (dt == KILN_DTYPE_STRING) {
        char **s = v->t.data;
        for (size_t i = 0; i < n; i++) s[i] = kiln_strdup(((const char *const *)data)[i]);
    } else {
        memcpy(v->t.data, data, kiln_tensor_nbytes(&v->t));
    }
    return v;
}

struct kiln_value *vec_of(kiln_dtype dt, size_t n, const void *data)
{
    int64_t d = (int64_t)n;
    return tensor_of(dt, 1, &d, data);
}

struct kiln_value *tensor_f64(kiln_dtype dt, int rank, const int64_t *dims, const double *x)
{
    struct kiln_value *v = new_tensor(dt, rank, dims);
    size_t n = kiln_tensor_numel(&v->t);
    for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(&v->t, i, x[i]);
    return v;
}

struct kiln_value *vec_f64(kiln_dtype dt, size_t n, const double *x)
{
    int64_t d = (int64_t)n;
    return tensor_f64(dt, 1, &d, x);
}

struct kiln_value *scalar(kiln_dtype dt, double x)
{
    return tensor_f64(dt, 0, NULL, &x);
}

struct kiln_value *rand_tensor(int rank, const int64_t *dims)
{
    struct kiln_value *v = new_tensor(KILN_DTYPE_F32, rank, dims);
    float *d = v->t.data;
    for (size_t i = 0; i < kiln_tensor_numel(&v->t); i++) d[i] = rng_f32();
    return v;
}

void free_all(struct kiln_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++) kiln_value_free(v[i]);
}

bool same_shape(const struct kiln_tensor *t, int rank, const int64_t *dims)
{
    if (t->rank != rank) return false;
    for (int a = 0; a < rank; a++)
        if (t->dims[a] != dims[a]) return false;
    return true;
}

bool close_to(const struct kiln_value *got, const double *want, size_t n, double tol,
              const char *what)
{
    if (!got || kiln_tensor_numel(&got->t) != n) {
        test_fail(__FILE__, __LINE__, NULL, "%s: got %zu elements, want %zu", what,
                  got ? kiln_tensor_numel(&got->t) : 0, n);
        return false;
    }
    const float *g = got->t.data;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(g[i] - want[i]) <= tol * (1 + fabs(want[i])))) {
            test_fail(__FILE__, __LINE__, NULL, "%s: element %zu is %.7g, want %.7g", what, i,
                      g[i], want[i]);
            return false;
        }
    return true;
}

/* ------------------------------------------------------------------ attributes */

struct kiln_attr attr_i(const char *name, int64_t v)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_INT, .i = v};
}

struct kiln_attr attr_f(const char *name, float v)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_FLOAT, .f = v};
}

struct kiln_attr attr_s(const char *name, const char *v)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_STRING, .s = v, .s_len = strlen(v)};
}

struct kiln_attr attr_ints(const char *name, const int64_t *v, size_t n)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_INTS, .ints = (int64_t *)v, .n = n};
}

struct kiln_attr attr_floats(const char *name, const float *v, size_t n)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_FLOATS, .floats = (float *)v, .n = n};
}

struct kiln_attr attr_strs(const char *name, const char *const *v, size_t n)
{
    return (struct kiln_attr){
        .name = name, .type = KILN_ATTR_STRINGS, .strings = (const char **)v, .n = n};
}

struct kiln_attr attr_t(const char *name, struct kiln_tensor *t, kiln_dtype dt, const void *data,
                        size_t n)
{
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = 1;
    t->dims[0] = (int64_t)n;
    t->data = (void *)data;
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_TENSOR, .t = t};
}

/* The next free slot of s; a test that needs more than TEST_MAX_ATTRS is wrong, so stop. */
static struct kiln_attr *add(struct attrs *s)
{
    if (s->n >= TEST_MAX_ATTRS) {
        printf("FAIL: more than %d attributes in a test node\n", TEST_MAX_ATTRS);
        exit(1);
    }
    return &s->a[s->n++];
}

void add_i(struct attrs *s, const char *name, int64_t v) { *add(s) = attr_i(name, v); }

void add_f(struct attrs *s, const char *name, float v) { *add(s) = attr_f(name, v); }

void add_s(struct attrs *s, const char *name, const char *v) { *add(s) = attr_s(name, v); }

void add_ints(struct attrs *s, const char *name, const int64_t *v, size_t n)
{
    if (n > TEST_MAX_INTS) {
        printf("FAIL: attribute %s has %zu ints; tests hold at most %d\n", name, n, TEST_MAX_INTS);
        exit(1);
    }
    struct kiln_attr *a = add(s);
    int64_t *copy = s->ints[a - s->a];
    if (n) memcpy(copy, v, n * sizeof *v);
    *a = attr_ints(name, copy, n);
}

/* ------------------------------------------------------------------ running one op */

kiln_status run_node(const char *domain, const char *op, int opset, const struct kiln_attr *attrs,
                     size_t n_attr, struct kiln_value **in, size_t n_in, struct kiln_value **out,
                     size_t n_out, kiln_err *err)
{
    return run_node_pool(NULL, domain, op, opset, attrs, n_attr, in, n_in, out, n_out, err);
}

kiln_status run_op_pool(struct kiln_pool *pool, const char *op, int opset, const struct kiln_attr *attrs,
                        size_t n_attr, struct kiln_value **in, size_t n_in, struct kiln_value **out,
                        size_t n_out, kiln_err *err)
{
    return run_node_pool(pool, "", op, opset, attrs, n_attr, in, n_in, out, n_out, err);
}

kiln_status run_node_pool(struct kiln_pool *pool, const char *domain, const char *op, int opset,
                          const struct kiln_attr *attrs, size_t n_attr, struct kiln_value **in,
                          size_t n_in, struct kiln_value **out, size_t n_out, kiln_err *err)
{
    static const char *const in_names[TEST_MAX_IO] = {"A", "B", "C", "D", "E", "F", "G", "H",
                                                      "I", "J", "K", "L", "M", "N", "O", "P"};
    static const char *const out_names[TEST_MAX_IO] = {"y",  "y1",  "y2",  "y3",  "y4",  "y5",
                                                       "y6", "y7",  "y8",  "y9",  "y10", "y11",
                                                       "y12", "y13", "y14", "y15"};
    if (n_in > TEST_MAX_IO || n_out > TEST_MAX_IO) {
        printf("FAIL: %s with %zu inputs and %zu outputs; tests run at most %d\n", op, n_in,
               n_out, TEST_MAX_IO);
        exit(1);
    }
    const char *names[TEST_MAX_IO] = {0}, *outs[TEST_MAX_IO] = {0};
    struct kiln_value *o[TEST_MAX_IO] = {0};
    for (size_t i = 0; i < n_in; i++) names[i] = in[i] ? in_names[i] : "";
    for (size_t i = 0; i < n_out; i++) outs[i] = out_names[i], out[i] = NULL;
    struct kiln_node node = {.name = "t", .op_type = op, .domain = domain, .n_in = n_in,
                             .n_out = n_out, .n_attr = n_attr, .inputs = names, .outputs = outs,
                             .attrs = (struct kiln_attr *)attrs, .since = opset};
    const struct kiln_cpu_op *kop = kiln_cpu_find_op(domain, op, opset);
    if (!kop) {
        test_fail(__FILE__, __LINE__, NULL, "no kernel for %s%s%s-%d", domain, *domain ? ":" : "",
                  op, opset);
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "no kernel for %s-%d", op, opset);
    }
    /* prepare then run, as an engine does */
    kiln_status st = kiln_eval_kernel(kop, &node, opset, (const struct kiln_value *const *)in, o, pool, err);
    for (size_t i = 0; i < n_out; i++) {
        if (st) kiln_value_free(o[i]);
        else out[i] = o[i];
    }
    return st;
}

kiln_status run_op(const char *op, int opset, const struct kiln_attr *attrs, size_t n_attr,
                   struct kiln_value **in, size_t n_in, struct kiln_value **out, kiln_err *err)
{
    return run_node("", op, opset, attrs, n_attr, in, n_in, out, 1, err);
}

/* ------------------------------------------------------------------ ONNX backend test data */

const char *onnx_tests_dir(void)
{
    const char *d = getenv("KILN_ONNX_TESTS");
    return d && *d ? d : KILN_ONNX_TESTS;
}

void case_path(char *buf, size_t size, const char *sub, const char *cas, const char *file)
{
    snprintf(buf, size, "%s/%s/%s/%s", onnx_tests_dir(), sub, cas, file);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **list_cases(const char *sub, size_t *n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", onnx_tests_dir(), sub);
    *n = 0;
    DIR *d = opendir(path);
    if (!d) return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "test_", 5)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                printf("FAIL: out of memory listing %s\n", path);
                exit(1);
            }
            names = grown;
        }
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof *names, cmp_str);
    return names ? names : calloc(1, sizeof *names);
}

void free_cases(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}
