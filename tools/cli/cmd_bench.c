/* cmd_bench.c: `kiln bench MODEL [--input NAME=FILE]... [--input-dir DIR]
 * [--shape NAME=D0xD1x...]... [--threads N] [--warmup N] [--iterations N] [--min-time S]
 * [--duration S] [--json] [--profile] [--export-profile FILE] [--level L]`.
 *
 * Measures how long kiln_session_run takes on one model. An ONNX model is built into an
 * engine first, as `kiln build` builds it (build_session: the builder's default level or
 * --level's, the session's threads, a one-shape profile for every input with a symbolic or
 * unknown dim, at the shape it is run with), so that the figure is the engine's, as users
 * of `kiln build` and of the Python module get it; --level none runs the model as it is
 * (kiln_session_create). An engine file runs as built. Inputs come from files (as
 * `kiln run` binds them) or are generated from the declared type: deterministic
 * pseudo-random data (fixed seed per input position), floats uniform in [-1, 1) rounded to
 * the element type, integers in [0, 10) (fewer for 2- and 4-bit types) so index-like inputs
 * stay in range, bools alternating false/true. A symbolic or unknown dim must be fixed with
 * --shape, which gives the whole shape. One session is created; --warmup runs are not timed;
 * then exactly --iterations runs, or else runs until at least 10 runs and --min-time (or
 * --duration) seconds have passed (at most 100000). Each run is timed alone with
 * CLOCK_MONOTONIC and its outputs are freed outside the timed span.
 *
 * Statistics over the timed runs: min, median, 90th, 95th and 99th percentiles (interpolated
 * linearly between the sorted samples, as numpy.percentile does by default), mean, max, the
 * throughput (timed runs divided by the wall time of the timed phase), the load time (model
 * load and link, session creation) and the peak resident set (getrusage ru_maxrss). --json
 * prints them as one line, in the shape the ONNX Runtime benchmark script prints, plus
 * the extra fields (docs/cli.md):
 *   {"model":"m.onnx","threads":2,"warmup":3,"runs":100,
 *    "latency_ms":{"min":..,"median":..,"p90":..,"p95":..,"p99":..,"mean":..,"max":..},
 *    "throughput_per_s":..,"cpu_ms":..,"load_ms":..,"peak_rss_mb":..,"iterations":100,"inputs":{"x":[1,3]}}
 *
 * --profile and --export-profile create the session with options.profile, reset the
 * profile after the warm-up runs and report the timed runs' per-node times (which include
 * the timer's own cost, so latencies are a little higher than without).
 *
 * The declared element type and shape of an input come from kiln_model_input_dtype, _rank
 * and _dim.
 */
#include <limits.h>
#include <math.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define MIN_AUTO_RUNS 10     /* without --iterations: at least this many timed runs */
#define MAX_AUTO_RUNS 100000 /* and at most this many */
#define MAX_ITERATIONS 10000000L
#define MAX_WARMUP 1000000L
#define SEED 0x6b696c6e62656e63ULL /* "kilnbenc" */

struct bench_args {
    struct cli_io_args io; /* MODEL, --input, --input-dir, --threads */
    const char **shape_names; /* --shape NAME=DIMS, n_shape entries */
    int64_t **shape_dims;
    int *shape_rank;
    int n_shape;
    long warmup, iterations; /* iterations 0: run for min_time */
    double min_time;
    bool json;
    bool profile;              /* --profile: per-node table after the report */
    const char *level;         /* --level: NULL = build an engine at the builder's default */
    const char *trace_path;    /* --export-profile FILE: Chrome trace of the timed runs */
};

static void free_args(struct bench_args *a)
{
    for (int i = 0; a->shape_dims && i < a->n_shape; i++) free(a->shape_dims[i]);
    free(a->shape_dims);
    free(a->shape_rank);
    free(a->shape_names);
    cli_io_fini(&a->io);
}

/* "1x3x224x224" -> dims; false when malformed (empty, an empty or non-decimal part). */
static bool parse_dims(const char *s, int64_t **dims, int *rank)
{
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == 'x';
    int64_t *d = calloc((size_t)n, sizeof *d);
    if (!d) return false;
    char part[32];
    const char *p = s;
    for (int i = 0; i < n; i++) {
        const char *end = strchr(p, 'x');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        long v;
        /* cli_parse_int takes a sign; a dim is digits only. */
        if (len == 0 || len >= sizeof part || p[0] < '0' || p[0] > '9') goto bad;
        memcpy(part, p, len);
        part[len] = 0;
        if (!cli_parse_int(part, 0, LONG_MAX, &v)) goto bad;
        d[i] = v;
        p = end ? end + 1 : p + len;
    }
    *dims = d;
    *rank = n;
    return true;
bad:
    free(d);
    return false;
}

static int parse_args(int argc, char **argv, struct bench_args *a)
{
    size_t n = (size_t)argc + 1;
    a->warmup = 3;
    a->min_time = 1.0;
    a->shape_names = calloc(n, sizeof *a->shape_names);
    a->shape_dims = calloc(n, sizeof *a->shape_dims);
    a->shape_rank = calloc(n, sizeof *a->shape_rank);
    if (cli_io_init(&a->io, argc) != CLI_OK) return CLI_FAIL;
    if (!a->shape_names || !a->shape_dims || !a->shape_rank) return cli_error("out of memory");
    int rc = CLI_OK;
    for (int i = 0; i < argc && rc == CLI_OK; i++) {
        const char *v;
        bool missing = false, taken;
        const char *arg = argv[i];
        if ((rc = cli_io_option("bench", argc, argv, &i, &a->io, &taken, &missing)) != CLI_OK || taken) {
            /* one of the shared options */
        } else if ((v = cli_opt_value(argc, argv, &i, "--shape", &missing))) {
            const char *eq = strrchr(v, '=');
            int k = a->n_shape;
            if (!eq || eq == v || !parse_dims(eq + 1, &a->shape_dims[k], &a->shape_rank[k]))
                return cli_usage("bench", "--shape takes NAME=D0xD1x... (e.g. x=1x3x224x224); got '%s'", v);
            a->n_shape++;
            *(char *)eq = 0;
            for (int j = 0; j < k; j++)
                if (strcmp(a->shape_names[j], v) == 0)
                    return cli_usage("bench", "--shape for '%s' given twice", v);
            a->shape_names[k] = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--warmup", &missing))) {
            if (!cli_parse_int(v, 0, MAX_WARMUP, &a->warmup))
                return cli_usage("bench", "--warmup takes a number from 0 to %ld; got '%s'", MAX_WARMUP, v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--iterations", &missing))) {
            if (!cli_parse_int(v, 1, MAX_ITERATIONS, &a->iterations))
                return cli_usage("bench", "--iterations takes a number from 1 to %ld; got '%s'",
                                 MAX_ITERATIONS, v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--min-time", &missing)) ||
                   (v = cli_opt_value(argc, argv, &i, "--duration", &missing))) {
            if (!cli_parse_double(v, &a->min_time) || a->min_time < 0 || a->min_time > 86400)
                return cli_usage("bench", "%s takes seconds from 0 to 86400; got '%s'", arg, v);
        } else if ((v = cli_opt_value(argc, argv, &i, "--export-profile", &missing))) {
            a->trace_path = v;
        } else if ((v = cli_opt_value(argc, argv, &i, "--level", &missing))) {
            if (strcmp(v, "none") && strcmp(v, "basic") && strcmp(v, "extended") && strcmp(v, "layout"))
                return cli_usage("bench", "--level takes none, basic, extended or layout; got '%s'", v);
            a->level = v;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = true;
        } else if (strcmp(arg, "--profile") == 0) {
            a->profile = true;
        } else {
            rc = cli_io_positional("bench", arg, missing, &a->io);
        }
        if (rc == CLI_OK && missing) rc = cli_usage("bench", "%s needs a value", arg);
    }
    return rc != CLI_OK ? rc : cli_io_done("bench", &a->io);
}

/* ------------------------------------------------------------------ declared types */

/* A tensor input's declared type, from kiln.h's structured queries. */
struct decl {
    char *text;         /* the type as kiln_model_input_type prints it, for messages (owned) */
    kiln_dtype dt;      /* UNDEFINED when none is declared */
    int rank;           /* -1: no shape declared */
    int64_t *dim;       /* rank sizes, -1 where symbolic or unknown (owned) */
    const char **param; /* rank symbolic names, "" where none (borrowed from the model) */
};

static void decl_fini(struct decl *d)
{
    free(d->text);
    free(d->dim);
    free((void *)d->param);
}

static int decl_read(const kiln_model *m, size_t k, struct decl *d)
{
    size_t len = kiln_model_input_type(m, k, NULL, 0);
    if (!(d->text = malloc(len + 1))) return cli_error("out of memory");
    kiln_model_input_type(m, k, d->text, len + 1);
    d->dt = kiln_model_input_dtype(m, k);
    d->rank = kiln_model_input_rank(m, k);
    if (d->rank <= 0) return CLI_OK;
    d->dim = malloc((size_t)d->rank * sizeof *d->dim);
    d->param = malloc((size_t)d->rank * sizeof *d->param);
    if (!d->dim || !d->param) return cli_error("out of memory");
    for (int i = 0; i < d->rank; i++) d->dim[i] = kiln_model_input_dim(m, k, i, &d->param[i]);
    return CLI_OK;
}

/* "1x3x224x224" suggestion for an input: fixed dims kept, the others 1. */
static void suggest_shape(const struct decl *d, char *buf, size_t size)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < d->rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "x" : "",
                              (long long)(d->dim[i] >= 0 ? d->dim[i] : 1));
}

/* The shape to generate input k with: --shape when given (checked against the declared
 * rank and fixed dims), else the declared shape, which must then be fully fixed. */
static int gen_shape(const struct bench_args *a, const char *name, const struct decl *d, int64_t **dims,
                     int *rank)
{
    char hint[256];
    int s = 0;
    while (s < a->n_shape && strcmp(a->shape_names[s], name) != 0) s++;
    if (s < a->n_shape) {
        const int64_t *g = a->shape_dims[s];
        int r = a->shape_rank[s];
        if (d->rank >= 0 && r != d->rank)
            return cli_error("--shape %s: gives %d dim%s; input '%s' is %s (rank %d)", name, r,
                             r == 1 ? "" : "s", name, d->text, d->rank);
        for (int i = 0; d->rank >= 0 && i < r; i++)
            if (d->dim[i] >= 0 && d->dim[i] != g[i])
                return cli_error("--shape %s: dim %d is %lld; input '%s' is %s (dim %d is %lld)", name, i,
                                 (long long)g[i], name, d->text, i, (long long)d->dim[i]);
        *dims = malloc(((size_t)r + 1) * sizeof **dims);
        if (!*dims) return cli_error("out of memory");
        memcpy(*dims, g, (size_t)r * sizeof **dims);
        *rank = r;
        return CLI_OK;
    }
    if (d->rank < 0)
        return cli_error("input '%s' has no declared shape (%s); pass --shape %s=D0xD1x...", name, d->text,
                         name);
    suggest_shape(d, hint, sizeof hint);
    for (int i = 0; i < d->rank; i++) {
        if (d->dim[i] >= 0) continue;
        if (!d->param[i][0])
            return cli_error("input '%s' dim %d is unknown (%s); pass --shape %s=%s", name, i, d->text, name,
                             hint);
        return cli_error("input '%s' dim %d is symbolic ('%s'); pass --shape %s=%s", name, i, d->param[i],
                         name, hint);
    }
    *dims = malloc(((size_t)d->rank + 1) * sizeof **dims);
    if (!*dims) return cli_error("out of memory");
    if (d->rank) memcpy(*dims, d->dim, (size_t)d->rank * sizeof **dims);
    *rank = d->rank;
    return CLI_OK;
}

/* ------------------------------------------------------------------ generated values */

/* splitmix64: small, fast and good enough for benchmark data. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1): a multiple of 2^-52, exact in a double. */
static double uniform_f64(uint64_t *state) { return ldexp((double)(next_u64(state) >> 11), -52) - 1.0; }
/* The same with 2^-23 steps, exact in a float (so never rounded up to 1). */
static float uniform_f32(uint64_t *state) { return ldexpf((float)(next_u64(state) >> 40), -23) - 1.0f; }

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* The finite values of a reduced-precision float type in [-1, 1), sorted, with the bit
 * pattern of each: rounding to the nearest of them keeps generated values in range. */
struct small_table {
    size_t n;
    double *val;
    uint16_t *bits;
};

struct small_entry {
    double val;
    uint16_t bits;
};

static int cmp_entry(const void *x, const void *y) { return cmp_double(x, y); }

static bool small_table_init(struct small_table *t, kiln_dtype dt)
{
    size_t patterns = dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16 ? 65536
                      : dt == KILN_DTYPE_F4E2M1                     ? 16
                                                                    : 256;
    struct small_entry *e = malloc(patterns * sizeof *e);
    if (!e) return false;
    size_t n = 0;
    for (size_t p = 0; p < patterns; p++) {
        uint16_t b16 = (uint16_t)p;
        uint8_t b8 = (uint8_t)p;
        double v = cli_elem_f64(patterns == 65536 ? (const void *)&b16 : (const void *)&b8, dt, 0);
        if (isfinite(v) && v >= -1.0 && v < 1.0) e[n++] = (struct small_entry){v, b16};
    }
    qsort(e, n, sizeof *e, cmp_entry);
    t->n = n;
    t->val = malloc((n + 1) * sizeof *t->val);
    t->bits = malloc((n + 1) * sizeof *t->bits);
    if (!t->val || !t->bits) {
        free(e);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        t->val[i] = e[i].val;
        t->bits[i] = e[i].bits;
    }
    free(e);
    return n > 0;
}

/* Bit pattern of the table value nearest to x. */
static uint16_t small_table_round(const struct small_table *t, double x)
{
    size_t lo = 0, hi = t->n; /* first index with val >= x, by bisection */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->val[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    if (lo == t->n) return t->bits[t->n - 1];
    if (lo > 0 && x - t->val[lo - 1] < t->val[lo] - x) return t->bits[lo - 1];
    return t->bits[lo];
}

/* Integer values are drawn from [0, int_range(dt)). */
static uint64_t int_range(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_I2: return 2;
    case KILN_DTYPE_U2: return 4;
    case KILN_DTYPE_I4: return 8;
    default: return 10;
    }
}

/* Fills a new tensor with the generated values; the seed depends on the input position
 * only, so adding an input does not change the others' data. */
static int fill_tensor(kiln_value *v, size_t k, const char *name)
{
    kiln_dtype dt = kiln_value_dtype(v);
    size_t n = kiln_value_numel(v);
    void *data = kiln_value_data(v);
    uint64_t st = SEED + k;
    switch (dt) {
    case KILN_DTYPE_F32:
        for (size_t i = 0; i < n; i++) ((float *)data)[i] = uniform_f32(&st);
        return CLI_OK;
    case KILN_DTYPE_C64:
        for (size_t i = 0; i < 2 * n; i++) ((float *)data)[i] = uniform_f32(&st);
        return CLI_OK;
    case KILN_DTYPE_F64:
        for (size_t i = 0; i < n; i++) ((double *)data)[i] = uniform_f64(&st);
        return CLI_OK;
    case KILN_DTYPE_C128:
        for (size_t i = 0; i < 2 * n; i++) ((double *)data)[i] = uniform_f64(&st);
        return CLI_OK;
    case KILN_DTYPE_BOOL:
        for (size_t i = 0; i < n; i++) ((uint8_t *)data)[i] = (uint8_t)(i & 1);
        return CLI_OK;
    case KILN_DTYPE_STRING:
        return cli_error("bench cannot generate string input '%s'; pass --input", name);
    default: break;
    }
    if (cli_dtype_is_float(dt)) {
        struct small_table t = {0};
        bool ok = small_table_init(&t, dt);
        if (ok)
            for (size_t i = 0; i < n; i++) {
                uint16_t b = small_table_round(&t, uniform_f64(&st));
                if (dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16) ((uint16_t *)data)[i] = b;
                else ((uint8_t *)data)[i] = (uint8_t)b;
            }
        free(t.val);
        free(t.bits);
        return ok ? CLI_OK : cli_error("out of memory");
    }
    uint64_t range = int_range(dt);
    for (size_t i = 0; i < n; i++) {
        uint64_t x = (next_u64(&st) >> 32) % range;
        switch (dt) {
        case KILN_DTYPE_U8: case KILN_DTYPE_I8: case KILN_DTYPE_U4: case KILN_DTYPE_I4:
        case KILN_DTYPE_U2: case KILN_DTYPE_I2:
            ((uint8_t *)data)[i] = (uint8_t)x;
            break;
        case KILN_DTYPE_U16: case KILN_DTYPE_I16: ((uint16_t *)data)[i] = (uint16_t)x; break;
        case KILN_DTYPE_U32: case KILN_DTYPE_I32: ((uint32_t *)data)[i] = (uint32_t)x; break;
        case KILN_DTYPE_U64: case KILN_DTYPE_I64: ((uint64_t *)data)[i] = x; break;
        default:
            return cli_error("bench cannot generate %s input '%s'; pass --input", kiln_dtype_name(dt), name);
        }
    }
    return CLI_OK;
}

static const char *kind_word(kiln_value_kind k)
{
    switch (k) {
    case KILN_VALUE_SEQUENCE: return "sequence";
    case KILN_VALUE_OPTIONAL: return "optional";
    default: return "untyped or map";
    }
}

/* Generates every input no file bound. Also checks that each --shape names an input that
 * is generated. */
static int generate_inputs(const kiln_model *m, const struct bench_args *a, kiln_value **vals)
{
    size_t n_in = kiln_model_input_count(m);
    for (int s = 0; s < a->n_shape; s++) {
        size_t k = 0;
        char list[512];
        while (k < n_in && strcmp(kiln_model_input_name(m, k), a->shape_names[s]) != 0) k++;
        if (k == n_in) {
            cli_input_list(m, list, sizeof list);
            return cli_error("--shape %s: the model has no input named '%s'; its inputs are %s",
                             a->shape_names[s], a->shape_names[s], list);
        }
        if (vals[k])
            return cli_usage("bench", "--shape %s: input '%s' is read from a file, which gives its shape",
                             a->shape_names[s], a->shape_names[s]);
    }
    for (size_t k = 0; k < n_in; k++) {
        if (vals[k]) continue;
        const char *name = kiln_model_input_name(m, k);
        kiln_value_kind kind = kiln_model_input_kind(m, k);
        if (kind != KILN_VALUE_TENSOR)
            return cli_error("bench cannot generate %s input '%s'; pass --input", kind_word(kind), name);
        struct decl d = {0};
        int64_t *dims = NULL;
        int rank = 0;
        int rc = decl_read(m, k, &d);
        if (rc == CLI_OK && d.dt == KILN_DTYPE_STRING)
            rc = cli_error("bench cannot generate string input '%s'; pass --input", name);
        else if (rc == CLI_OK && d.dt == KILN_DTYPE_UNDEFINED)
            rc = cli_error("input '%s' declares no element type (%s); pass --input", name, d.text);
        if (rc == CLI_OK) rc = gen_shape(a, name, &d, &dims, &rank);
        if (rc == CLI_OK) {
            kiln_err err = {0};
            if (kiln_value_create_tensor(d.dt, rank, dims, &vals[k], &err) != KILN_OK) {
                vals[k] = NULL;
                rc = cli_error("input '%s': %s", name, err.msg);
            } else {
                rc = fill_tensor(vals[k], k, name);
            }
        }
        free(dims);
        decl_fini(&d);
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------ timing and report */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (every thread, user + system), in seconds. On a shared
 * machine it is steadier than wall time: a run that waits for the CPU does not count. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One run; the outputs are freed before returning. */
static int run_once(kiln_session *s, size_t n_in, kiln_value **vals, size_t n_out, kiln_value **outs,
                    double *seconds)
{
    kiln_err err = {0};
    double t0 = now_s();
    kiln_status st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)vals, n_out, outs, &err);
    double t1 = now_s();
    for (size_t i = 0; i < n_out; i++) {
        kiln_value_free(outs[i]);
        outs[i] = NULL;
    }
    if (st != KILN_OK) return cli_error("%s", err.msg);
    if (seconds) *seconds = t1 - t0;
    return CLI_OK;
}

/* Percentile p (0..100) of sorted samples, linear between neighbours (numpy's default). */
static double percentile(const double *sorted, size_t n, double p)
{
    double pos = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n) return sorted[n - 1];
    double v = sorted[lo] + (pos - (double)lo) * (sorted[lo + 1] - sorted[lo]);
    /* Rounding must not step outside the two neighbours, so min <= median <= p90 <= max. */
    return v < sorted[lo] ? sorted[lo] : v > sorted[lo + 1] ? sorted[lo + 1] : v;
}

struct stats {
    double min, median, p90, p95, p99, mean, max, wall;
    double cpu_ms; /* process CPU time (all threads) per timed run */
    double load_ms;     /* model load and session creation */
    double peak_rss_mb; /* getrusage ru_maxrss at the end, in MiB */
    size_t runs;
    int threads; /* what the session uses (--threads 0 resolved) */
};

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_dims(const kiln_value *v, const char *open, const char *sep, const char *close)
{
    int rank = kiln_value_rank(v);
    const int64_t *d = kiln_value_dims(v);
    fputs(open, stdout);
    for (int i = 0; i < rank; i++) printf("%s%lld", i ? sep : "", (long long)d[i]);
    fputs(close, stdout);
}

static double throughput(const struct stats *st)
{
    return st->wall > 0 ? (double)st->runs / st->wall : 0.0;
}

/* ------------------------------------------------------------------ --profile */

struct prof_row {
    kiln_profile_entry e;
};

static int cmp_prof_row(const void *x, const void *y)
{
    const struct prof_row *a = x, *b = y;
    if (a->e.total_ns != b->e.total_ns) return a->e.total_ns < b->e.total_ns ? 1 : -1;
    return strcmp(a->e.name, b->e.name);
}

/* The session's profile entries sorted by time, most first, into *rows (free it); *top_ns:
 * the summed time of the main graph's nodes, what the shares are of. */
static int prof_rows(const kiln_session *s, struct prof_row **rows, size_t *n, uint64_t *top_ns)
{
    *n = kiln_session_profile_count(s);
    *top_ns = 0;
    if (!(*rows = calloc(*n + 1, sizeof **rows))) return cli_error("out of memory");
    for (size_t i = 0; i < *n; i++) {
        kiln_err err = {0};
        if (kiln_session_profile_entry(s, i, &(*rows)[i].e, &err) != KILN_OK) return cli_error("%s", err.msg);
        if ((*rows)[i].e.depth == 0) *top_ns += (*rows)[i].e.total_ns;
    }
    qsort(*rows, *n, sizeof **rows, cmp_prof_row);
    return CLI_OK;
}

static double share(uint64_t ns, uint64_t top_ns) { return top_ns ? 100.0 * (double)ns / (double)top_ns : 0.0; }

/* Per-op-type sums over the main graph's nodes (subgraph nodes count in their enclosing
 * node), in the order of the sorted rows' first appearance after sorting by sum. */
struct op_sum {
    const char *op_type;
    uint64_t ns;
    size_t nodes;
};

static int cmp_op_sum(const void *x, const void *y)
{
    const struct op_sum *a = x, *b = y;
    if (a->ns != b->ns) return a->ns < b->ns ? 1 : -1;
    return strcmp(a->op_type, b->op_type);
}

static size_t op_sums(const struct prof_row *rows, size_t n, struct op_sum *sums)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].e.depth != 0) continue;
        size_t j = 0;
        while (j < k && strcmp(sums[j].op_type, rows[i].e.op_type) != 0) j++;
        if (j == k) sums[k++] = (struct op_sum){rows[i].e.op_type, 0, 0};
        sums[j].ns += rows[i].e.total_ns;
        sums[j].nodes++;
    }
    qsort(sums, k, sizeof *sums, cmp_op_sum);
    return k;
}

static int report_profile_text(const kiln_session *s, size_t runs)
{
    struct prof_row *rows;
    size_t n;
    uint64_t top_ns;
    int rc = prof_rows(s, &rows, &n, &top_ns);
    struct op_sum *sums = rc == CLI_OK ? calloc(n + 1, sizeof *sums) : NULL;
    if (rc == CLI_OK && !sums) rc = cli_error("out of memory");
    if (rc != CLI_OK) {
        free(rows);
        return rc;
    }
    int op_w = 7, name_w = 4, kern_w = 6;
    for (size_t i = 0; i < n; i++) {
        int w = (int)strlen(rows[i].e.op_type);
        op_w = w > op_w ? w : op_w;
        w = (int)strlen(rows[i].e.name);
        name_w = w > name_w ? w : name_w;
        w = (int)strlen(rows[i].e.kernel);
        kern_w = w > kern_w ? w : kern_w;
    }
    name_w = name_w > 60 ? 60 : name_w;
    printf("profile:    %zu node%s, times summed over %zu timed run%s\n", n, n == 1 ? "" : "s", runs,
           runs == 1 ? "" : "s");
    printf("  %10s %6s %7s  %-*s %-*s %-*s %s\n", "total ms", "share", "calls", op_w, "op type", name_w, "node",
           kern_w, "kernel", "output shapes");
    for (size_t i = 0; i < n; i++)
        printf("  %10.3f %5.1f%% %7llu  %-*s %-*s %-*s %s\n", (double)rows[i].e.total_ns / 1e6,
               share(rows[i].e.total_ns, top_ns), (unsigned long long)rows[i].e.calls, op_w, rows[i].e.op_type,
               name_w, rows[i].e.name, kern_w, rows[i].e.kernel, rows[i].e.shapes);
    size_t k = op_sums(rows, n, sums);
    printf("by op type (main graph):\n");
    printf("  %10s %6s %7s  %s\n", "total ms", "share", "nodes", "op type");
    for (size_t i = 0; i < k; i++)
        printf("  %10.3f %5.1f%% %7zu  %s\n", (double)sums[i].ns / 1e6, share(sums[i].ns, top_ns), sums[i].nodes,
               sums[i].op_type);
    free(sums);
    free(rows);
    return CLI_OK;
}

static void json_string(const char *s);

/* ,"profile":{"nodes":[...],"op_types":[...]} */
static int report_profile_json(const kiln_session *s)
{
    struct prof_row *rows;
    size_t n;
    uint64_t top_ns;
    int rc = prof_rows(s, &rows, &n, &top_ns);
    struct op_sum *sums = rc == CLI_OK ? calloc(n + 1, sizeof *sums) : NULL;
    if (rc == CLI_OK && !sums) rc = cli_error("out of memory");
    if (rc != CLI_OK) {
        free(rows);
        return rc;
    }
    fputs(",\"profile\":{\"nodes\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
        json_string(rows[i].e.name);
        fputs(",\"op_type\":", stdout);
        json_string(rows[i].e.op_type);
        fputs(",\"kernel\":", stdout);
        json_string(rows[i].e.kernel);
        fputs(",\"shapes\":", stdout);
        json_string(rows[i].e.shapes);
        printf(",\"total_ms\":%.6g,\"share\":%.4g,\"calls\":%llu,\"depth\":%d}",
               (double)rows[i].e.total_ns / 1e6, share(rows[i].e.total_ns, top_ns) / 100.0,
               (unsigned long long)rows[i].e.calls, rows[i].e.depth);
    }
    fputs("],\"op_types\":[", stdout);
    size_t k = op_sums(rows, n, sums);
    for (size_t i = 0; i < k; i++) {
        fputs(i ? ",{\"op_type\":" : "{\"op_type\":", stdout);
        json_string(sums[i].op_type);
        printf(",\"total_ms\":%.6g,\"share\":%.4g,\"nodes\":%zu}", (double)sums[i].ns / 1e6,
               share(sums[i].ns, top_ns) / 100.0, sums[i].nodes);
    }
    fputs("]}", stdout);
    free(sums);
    free(rows);
    return CLI_OK;
}

static int report_json(const kiln_model *m, const kiln_session *s, const struct bench_args *a,
                       kiln_value **vals, const struct stats *st)
{
    fputs("{\"model\":", stdout);
    json_string(a->io.model);
    printf(",\"threads\":%d,\"warmup\":%ld,\"runs\":%zu", st->threads, a->warmup,
           st->runs);
    printf(",\"latency_ms\":{\"min\":%.6g,\"median\":%.6g,\"p90\":%.6g,\"p95\":%.6g,\"p99\":%.6g,"
           "\"mean\":%.6g,\"max\":%.6g}",
           st->min, st->median, st->p90, st->p95, st->p99, st->mean, st->max);
    printf(",\"throughput_per_s\":%.6g,\"cpu_ms\":%.6g,\"load_ms\":%.6g,\"peak_rss_mb\":%.6g,"
           "\"iterations\":%zu",
           throughput(st), st->cpu_ms, st->load_ms, st->peak_rss_mb, st->runs);
    fputs(",\"inputs\":{", stdout);
    for (size_t k = 0; k < kiln_model_input_count(m); k++) {
        if (k) putchar(',');
        json_string(kiln_model_input_name(m, k));
        putchar(':');
        if (kiln_value_kind_of(vals[k]) == KILN_VALUE_TENSOR) print_dims(vals[k], "[", ",", "]");
        else fputs("null", stdout); /* a sequence or optional has no one shape */
    }
    putchar('}');
    if (a->profile && report_profile_json(s) != CLI_OK) return CLI_FAIL;
    fputs("}\n", stdout);
    return CLI_OK;
}

/* An input's type as used ("float32[1,3,224,224]", "sequence of 3 items") into buf. */
static void used_type(const kiln_value *v, char *buf, size_t size)
{
    if (kiln_value_kind_of(v) != KILN_VALUE_TENSOR) {
        size_t n = kiln_value_count(v);
        snprintf(buf, size, "%s of %zu item%s", kind_word(kiln_value_kind_of(v)), n, n == 1 ? "" : "s");
        return;
    }
    int rank = kiln_value_rank(v);
    const int64_t *d = kiln_value_dims(v);
    size_t o = (size_t)snprintf(buf, size, "%s[", kiln_dtype_name(kiln_value_dtype(v)));
    for (int i = 0; i < rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? ",%lld" : "%lld", (long long)d[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static void report_text(const kiln_model *m, const struct bench_args *a, kiln_value **vals,
                        const bool *generated, const struct stats *st)
{
    size_t n_in = kiln_model_input_count(m);
    int name_w = 0, type_w = 0;
    char type[256];
    for (size_t k = 0; k < n_in; k++) {
        int w = (int)strlen(kiln_model_input_name(m, k));
        name_w = w > name_w ? w : name_w;
        used_type(vals[k], type, sizeof type);
        w = (int)strlen(type);
        type_w = w > type_w ? w : type_w;
    }
    printf("model:      %s\n", a->io.model);
    printf("threads:    %d%s\n", st->threads, a->io.threads ? "" : " (one per CPU)");
    printf("inputs (%zu):\n", n_in);
    for (size_t k = 0; k < n_in; k++) {
        used_type(vals[k], type, sizeof type);
        printf("  %-*s %-*s  %s\n", name_w, kiln_model_input_name(m, k), type_w, type,
               generated[k] ? "generated" : "from file");
    }
    printf("warmup:     %ld run%s\n", a->warmup, a->warmup == 1 ? "" : "s");
    printf("runs:       %zu in %.3f s\n", st->runs, st->wall);
    printf("latency ms: min %.4g  median %.4g  p90 %.4g  p95 %.4g  p99 %.4g  mean %.4g  max %.4g\n",
           st->min, st->median, st->p90, st->p95, st->p99, st->mean, st->max);
    printf("throughput: %.1f runs/s\n", throughput(st));
    printf("CPU time:   %.4g ms per run (all threads)\n", st->cpu_ms);
    printf("load:       %.3f ms (model load and session creation)\n", st->load_ms);
    printf("peak RSS:   %.1f MB\n", st->peak_rss_mb);
}

/* Builds m into an engine as `kiln build` does (a.level, else the builder's default; the
 * session's threads) and opens a session on it. Every tensor input whose declared shape has
 * a symbolic or unknown dim gets a one-shape profile at the shape of its value in vals, so
 * the engine is as static as the run (prepacked, planned once), as `kiln build --shapes`
 * makes it. The model is freed (*m = NULL) before the build reads the file again, so its
 * memory and the build's do not add up in the peak. */
static int build_session(const struct bench_args *a, const kiln_session_options *opt, kiln_model **m,
                         kiln_value *const *vals, kiln_session **s)
{
    kiln_err err = {0};
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    int rc = CLI_FAIL;
    if (kiln_builder_create(&b, &err) != KILN_OK || kiln_builder_set_threads(b, opt->threads, &err) != KILN_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (a->level)
        kiln_builder_set_opt_level(b, strcmp(a->level, "basic") == 0      ? KILN_OPT_BASIC
                                      : strcmp(a->level, "extended") == 0 ? KILN_OPT_EXTENDED
                                                                          : KILN_OPT_LAYOUT);
    size_t n_in = kiln_model_input_count(*m);
    for (size_t k = 0; k < n_in; k++) {
        int rank = kiln_model_input_rank(*m, k);
        bool fixed = rank >= 0;
        for (int d = 0; fixed && d < rank; d++) fixed = kiln_model_input_dim(*m, k, d, NULL) >= 0;
        if (fixed || kiln_value_kind_of(vals[k]) != KILN_VALUE_TENSOR) continue;
        const int64_t *dims = kiln_value_dims(vals[k]);
        if (kiln_builder_add_profile(b, "default", kiln_model_input_name(*m, k), kiln_value_rank(vals[k]), dims,
                                     dims, dims, &err) != KILN_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
    }
    kiln_model_free(*m);
    *m = NULL;
    if (kiln_builder_build_file(b, a->io.model, &e, &err) != KILN_OK) {
        cli_error("%s: %s", a->io.model, err.msg);
        goto done;
    }
    if (kiln_session_create_from_engine(e, opt, s, &err) != KILN_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    rc = CLI_OK;
done:
    kiln_engine_free(e); /* the session holds it */
    kiln_builder_free(b);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    struct bench_args a = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value **vals = NULL, **outs = NULL;
    bool *generated = NULL;
    double *lat = NULL;
    size_t n_in = 0, n_out = 0;
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK) goto done;
    rc = CLI_FAIL;
    double load_start = now_s();
    kiln_err err = {0};
    kiln_session_options opt = {.threads = (int)a.io.threads, .profile = a.profile || a.trace_path};
    const kiln_model *qm = NULL;
    /* An engine file, or --level none: the model as it is. Otherwise the model is built into
     * an engine first, as `kiln build` builds it; its inputs are read or generated from the
     * model's declarations before that, and their shapes fix the engine's profile. */
    bool as_is = kiln_file_is_engine(a.io.model) || (a.level && strcmp(a.level, "none") == 0);
    if (as_is && a.level && kiln_file_is_engine(a.io.model)) {
        rc = cli_usage("bench", "'%s' is an engine, optimized when it was built: drop --level", a.io.model);
        goto done;
    }
    if (as_is) rc = cli_open_session("bench", a.io.model, &opt, KILN_OPT_NONE, &m, &s, &qm);
    else if ((m = cli_load_model(a.io.model))) rc = CLI_OK, qm = m;
    if (rc != CLI_OK) goto done;
    rc = CLI_FAIL;
    n_in = kiln_model_input_count(qm);
    n_out = kiln_model_output_count(qm);
    size_t cap = a.iterations ? (size_t)a.iterations : MAX_AUTO_RUNS;
    vals = calloc(n_in + 1, sizeof *vals);
    outs = calloc(n_out + 1, sizeof *outs);
    generated = calloc(n_in + 1, sizeof *generated);
    lat = malloc(cap * sizeof *lat);
    if (!vals || !outs || !generated || !lat) {
        cli_error("out of memory");
        goto done;
    }
    double inputs_start = now_s();
    if (cli_read_inputs(qm, a.io.n_bind, a.io.in_names, a.io.in_files, a.io.input_dir, vals) != CLI_OK) goto done;
    for (size_t k = 0; k < n_in; k++) generated[k] = !vals[k];
    if ((rc = generate_inputs(qm, &a, vals)) != CLI_OK) goto done;
    double inputs_s = now_s() - inputs_start;
    if (!as_is) {
        rc = build_session(&a, &opt, &m, vals, &s);
        if (rc != CLI_OK) goto done;
        qm = kiln_session_model(s);
    }
    rc = CLI_FAIL;
    double load_ms = (now_s() - load_start - inputs_s) * 1e3;

    for (long i = 0; i < a.warmup; i++)
        if (run_once(s, n_in, vals, n_out, outs, NULL) != CLI_OK) goto done;
    kiln_session_profile_reset(s); /* profile the timed runs only */
    struct stats st = {.threads = kiln_session_threads(s), .load_ms = load_ms};
    double start = now_s(), elapsed = 0, cpu_start = cpu_s();
    while (st.runs < cap) {
        if (run_once(s, n_in, vals, n_out, outs, &lat[st.runs]) != CLI_OK) goto done;
        st.runs++;
        elapsed = now_s() - start;
        if (!a.iterations && st.runs >= MIN_AUTO_RUNS && elapsed >= a.min_time) break;
    }
    st.wall = elapsed;
    st.cpu_ms = (cpu_s() - cpu_start) * 1e3 / (double)st.runs;
    double sum = 0;
    for (size_t i = 0; i < st.runs; i++) sum += lat[i] *= 1e3; /* seconds -> ms */
    qsort(lat, st.runs, sizeof *lat, cmp_double);
    st.min = lat[0];
    st.max = lat[st.runs - 1];
    st.median = percentile(lat, st.runs, 50);
    st.p90 = percentile(lat, st.runs, 90);
    st.p95 = percentile(lat, st.runs, 95);
    st.p99 = percentile(lat, st.runs, 99);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) st.peak_rss_mb = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
    st.mean = sum / (double)st.runs;
    /* The mean of rounded sums can land a hair outside [min, max]; keep the order exact. */
    st.mean = st.mean < st.min ? st.min : st.mean > st.max ? st.max : st.mean;
    if (a.json) {
        if (report_json(qm, s, &a, vals, &st) != CLI_OK) goto done;
    } else {
        report_text(qm, &a, vals, generated, &st);
        if (a.profile && report_profile_text(s, st.runs) != CLI_OK) goto done;
    }
    if (a.trace_path && kiln_session_profile_write_trace(s, a.trace_path, &err) != KILN_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    rc = CLI_OK;
done:
    for (size_t i = 0; vals && i < n_in; i++) kiln_value_free(vals[i]);
    free(vals);
    free(outs);
    free(generated);
    free(lat);
    kiln_session_free(s);
    kiln_model_free(m);
    free_args(&a);
    return rc;
}
