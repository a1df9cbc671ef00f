/* util.c: helpers shared by the `kiln` subcommands: error lines, option and number parsing,
 * model loading, reading input files (`kiln run`, `kiln bench`) and the human-readable value
 * summary printed by `kiln run` and `kiln compare`.
 *
 * Element decoding follows kiln.h's in-memory layout: whole bytes per element, float16 /
 * bfloat16 as 2 bytes, the float8 types as 1 byte, 4-bit and 2-bit types unpacked one per
 * byte, complex as (re, im) pairs, strings as NUL-terminated `char *`.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("kiln: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("kiln: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) fprintf(stderr, " (see 'kiln help %s')\n", cmd);
    else fputs(" (see 'kiln --help')\n", stderr);
    return CLI_USAGE;
}

kiln_model *cli_load_model(const char *path)
{
    kiln_model *m = NULL;
    kiln_err err = {0};
    if (kiln_model_load_file(path, &m, &err) != KILN_OK) {
        /* The loader usually names the file; add it when it does not. */
        if (strstr(err.msg, path)) cli_error("%s", err.msg);
        else cli_error("%s: %s", path, err.msg[0] ? err.msg : kiln_status_name(err.status));
        kiln_model_free(m);
        return NULL;
    }
    return m;
}

bool cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    if (!s || !*s) return false;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_double(const char *s, double *out)
{
    char *end;
    if (!s || !*s) return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *opt, bool *missing)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

/* ------------------------------------------------------------------ input files */

void cli_input_list(const kiln_model *m, char *buf, size_t size)
{
    size_t n = kiln_model_input_count(m), o = 0;
    buf[0] = 0;
    if (n == 0) snprintf(buf, size, "(none)");
    for (size_t i = 0; i < n && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s'%s'", i ? ", " : "", kiln_model_input_name(m, i));
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int read_input(const kiln_model *m, size_t k, const char *path, kiln_value **out)
{
    kiln_err err = {0};
    if (kiln_value_read_file(path, kiln_model_input_kind(m, k), out, &err) != KILN_OK) {
        *out = NULL;
        if (strstr(err.msg, path))
            return cli_error("input '%s': %s", kiln_model_input_name(m, k), err.msg);
        return cli_error("input '%s': %s: %s", kiln_model_input_name(m, k), path, err.msg);
    }
    return CLI_OK;
}

int cli_read_inputs(const kiln_model *m, int n_bind, const char *const *names,
                    const char *const *files, const char *input_dir, kiln_value **vals)
{
    size_t n_in = kiln_model_input_count(m);
    char list[512];
    for (int b = 0; b < n_bind; b++) {
        size_t k = 0;
        while (k < n_in && strcmp(kiln_model_input_name(m, k), names[b]) != 0) k++;
        if (k == n_in) {
            cli_input_list(m, list, sizeof list);
            return cli_error("the model has no input named '%s'; its inputs are %s", names[b], list);
        }
        if (vals[k]) return cli_error("input '%s' is given twice", names[b]);
        if (read_input(m, k, files[b], &vals[k]) != CLI_OK) return CLI_FAIL;
    }
    if (!input_dir) return CLI_OK;
    struct stat st;
    if (stat(input_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_error("--input-dir '%s' is not a folder", input_dir);
    size_t plen = strlen(input_dir) + 32;
    char *path = malloc(plen);
    if (!path) return cli_error("out of memory");
    int rc = CLI_OK;
    for (size_t k = 0; k < n_in && rc == CLI_OK; k++) {
        snprintf(path, plen, "%s/input_%zu.pb", input_dir, k);
        if (vals[k]) continue; /* --input overrides the folder */
        if (!file_exists(path))
            rc = cli_error("missing input '%s': %s does not exist", kiln_model_input_name(m, k), path);
        else
            rc = read_input(m, k, path, &vals[k]);
    }
    /* A data set with more files than the model has inputs belongs to another model. */
    snprintf(path, plen, "%s/input_%zu.pb", input_dir, n_in);
    if (rc == CLI_OK && file_exists(path))
        rc = cli_error("%s exists but the model has only %zu input%s", path, n_in, n_in == 1 ? "" : "s");
    free(path);
    return rc;
}

/* ------------------------------------------------------------------ element decoding */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15), exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return sign ? -v : v;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Small floats (float8 variants, float4e2m1) per the ONNX float8 spec (docs/Float8.md):
 * `fnuz` types have no negative zero and use 0x80 as their only NaN; e4m3fn has NaN at
 * S.1111.111 and no infinity; e5m2 is IEEE-like. */
static double small_float(uint8_t b, int ebits, int mbits, int bias, bool fnuz, bool ieee)
{
    int total = 1 + ebits + mbits;
    unsigned sign = (b >> (total - 1)) & 1u;
    unsigned exp = (b >> mbits) & ((1u << ebits) - 1), man = b & ((1u << mbits) - 1);
    if (fnuz && total == 8 && b == 0x80) return NAN;
    if (ieee && exp == (1u << ebits) - 1) return man ? NAN : (sign ? -INFINITY : INFINITY);
    if (!ieee && !fnuz && total == 8 && exp == (1u << ebits) - 1 && man == (1u << mbits) - 1)
        return NAN; /* e4m3fn */
    double v = exp == 0 ? ldexp((double)man, 1 - bias - mbits)
                        : ldexp((double)(man | (1u << mbits)), (int)exp - bias - mbits);
    return sign ? -v : v;
}

bool cli_dtype_is_real(kiln_dtype dt)
{
    return dt != KILN_DTYPE_STRING && dt != KILN_DTYPE_C64 && dt != KILN_DTYPE_C128 &&
           dt != KILN_DTYPE_UNDEFINED && dt < KILN_DTYPE_COUNT_;
}

bool cli_dtype_is_float(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_BF16:
    case KILN_DTYPE_F8E4M3FN: case KILN_DTYPE_F8E4M3FNUZ: case KILN_DTYPE_F8E5M2:
    case KILN_DTYPE_F8E5M2FNUZ: case KILN_DTYPE_F4E2M1: case KILN_DTYPE_F8E8M0:
    case KILN_DTYPE_C64: case KILN_DTYPE_C128:
        return true;
    default: return false;
    }
}

double cli_elem_f64(const void *data, kiln_dtype dt, size_t i)
{
    const uint8_t *p = data;
    switch (dt) {
    case KILN_DTYPE_F32: return ((const float *)data)[i];
    case KILN_DTYPE_F64: return ((const double *)data)[i];
    case KILN_DTYPE_F16: return half_to_float(((const uint16_t *)data)[i]);
    case KILN_DTYPE_BF16: return bf16_to_float(((const uint16_t *)data)[i]);
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2: return p[i];
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: return ((const int8_t *)data)[i];
    case KILN_DTYPE_BOOL: return p[i] != 0;
    case KILN_DTYPE_U16: return ((const uint16_t *)data)[i];
    case KILN_DTYPE_I16: return ((const int16_t *)data)[i];
    case KILN_DTYPE_U32: return ((const uint32_t *)data)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)data)[i];
    case KILN_DTYPE_U64: return (double)((const uint64_t *)data)[i];
    case KILN_DTYPE_I64: return (double)((const int64_t *)data)[i];
    case KILN_DTYPE_F8E4M3FN: return small_float(p[i], 4, 3, 7, false, false);
    case KILN_DTYPE_F8E4M3FNUZ: return small_float(p[i], 4, 3, 8, true, false);
    case KILN_DTYPE_F8E5M2: return small_float(p[i], 5, 2, 15, false, true);
    case KILN_DTYPE_F8E5M2FNUZ: return small_float(p[i], 5, 2, 16, true, false);
    case KILN_DTYPE_F4E2M1: return small_float(p[i] & 0xf, 2, 1, 1, false, false);
    case KILN_DTYPE_F8E8M0: return p[i] == 0xff ? NAN : ldexp(1.0, (int)p[i] - 127);
    case KILN_DTYPE_C64: return ((const float *)data)[i]; /* index into the float pairs */
    case KILN_DTYPE_C128: return ((const double *)data)[i];
    default: return NAN;
    }
}

/* Prints element i exactly for integers (no detour through double for 64-bit values). */
static void print_elem(FILE *f, const void *data, kiln_dtype dt, size_t i)
{
    switch (dt) {
    case KILN_DTYPE_I64: fprintf(f, "%lld", (long long)((const int64_t *)data)[i]); return;
    case KILN_DTYPE_U64: fprintf(f, "%llu", (unsigned long long)((const uint64_t *)data)[i]); return;
    case KILN_DTYPE_BOOL: fputs(((const uint8_t *)data)[i] ? "true" : "false", f); return;
    case KILN_DTYPE_STRING: {
        const char *s = ((char *const *)data)[i];
        fputc('"', f);
        size_t n = 0;
        for (; s && *s && n < 64; s++, n++) {
            unsigned char c = (unsigned char)*s;
            if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
            else fputc(c, f);
        }
        if (s && *s) fputs("...", f);
        fputc('"', f);
        return;
    }
    case KILN_DTYPE_C64: case KILN_DTYPE_C128:
        fprintf(f, "(%.6g%+.6gi)", cli_elem_f64(data, dt, 2 * i), cli_elem_f64(data, dt, 2 * i + 1));
        return;
    default:
        if (cli_dtype_is_float(dt)) fprintf(f, "%.6g", cli_elem_f64(data, dt, i));
        else fprintf(f, "%.0f", cli_elem_f64(data, dt, i));
        return;
    }
}

/* ------------------------------------------------------------------ value summary */

#define SHORT_LIMIT 20 /* tensors up to this many elements are printed in full */
#define HEAD_COUNT 8   /* else this many leading elements */

static void print_shape(const kiln_value *v)
{
    int rank = kiln_value_rank(v);
    const int64_t *d = kiln_value_dims(v);
    fputc('[', stdout);
    for (int i = 0; i < rank; i++) printf(i ? ",%lld" : "%lld", (long long)d[i]);
    fputc(']', stdout);
}

static void print_tensor(const kiln_value *v, const char *indent, bool all)
{
    kiln_dtype dt = kiln_value_dtype(v);
    size_t n = kiln_value_numel(v);
    const void *data = kiln_value_data((kiln_value *)v);
    printf("%s", kiln_dtype_name(dt));
    print_shape(v);
    fputc('\n', stdout);
    if (n == 0) {
        printf("%s  values: (empty)\n", indent);
        return;
    }
    size_t shown = all || n <= SHORT_LIMIT ? n : HEAD_COUNT;
    printf("%s  values:", indent);
    for (size_t i = 0; i < shown; i++) {
        fputc(' ', stdout);
        print_elem(stdout, data, dt, i);
    }
    if (shown < n) printf(" ... (%zu elements)", n);
    fputc('\n', stdout);
    if (shown == n || !cli_dtype_is_real(dt)) return;
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        double x = cli_elem_f64(data, dt, i);
        if (isnan(x)) {
            nan++;
            continue;
        }
        if (x < lo) lo = x;
        if (x > hi) hi = x;
        sum += x;
    }
    if (nan == n) {
        printf("%s  all NaN\n", indent);
        return;
    }
    printf("%s  min %.6g  max %.6g  mean %.6g", indent, lo, hi, sum / (double)(n - nan));
    if (nan) printf("  NaN %zu", nan);
    fputc('\n', stdout);
}

static void print_value_rec(const kiln_value *v, const char *indent, bool all, int depth)
{
    char deeper[64];
    snprintf(deeper, sizeof deeper, "%s    ", indent);
    switch (kiln_value_kind_of(v)) {
    case KILN_VALUE_TENSOR: print_tensor(v, indent, all); return;
    case KILN_VALUE_SEQUENCE: {
        size_t n = kiln_value_count(v);
        printf("seq(%s) of %zu item%s\n", kiln_dtype_name(kiln_value_elem_dtype(v)), n,
               n == 1 ? "" : "s");
        for (size_t i = 0; i < n && depth < 8; i++) {
            printf("%s  [%zu] ", indent, i);
            print_value_rec(kiln_value_item(v, i), deeper, all, depth + 1);
        }
        return;
    }
    case KILN_VALUE_OPTIONAL:
        if (kiln_value_count(v) == 0) {
            printf("optional: none\n");
            return;
        }
        printf("optional: ");
        print_value_rec(kiln_value_item(v, 0), indent, all, depth + 1);
        return;
    default: printf("(value of unknown kind)\n"); return;
    }
}

void cli_print_value(const kiln_value *v, const char *indent, bool all)
{
    print_value_rec(v, indent, all, 0);
}

/* ------------------------------------------------------------------ run/bench arguments */

int cli_io_init(struct cli_io_args *a, int argc)
{
    a->in_names = calloc((size_t)argc + 1, sizeof *a->in_names);
    a->in_files = calloc((size_t)argc + 1, sizeof *a->in_files);
    if (!a->in_names || !a->in_files) return cli_error("out of memory");
    return CLI_OK;
}

void cli_io_fini(struct cli_io_args *a)
{
    free(a->in_names);
    free(a->in_files);
    a->in_names = a->in_files = NULL;
}

int cli_io_option(const char *cmd, int argc, char **argv, int *i, struct cli_io_args *a, bool *taken,
                  bool *missing)
{
    const char *v;
    *taken = true;
    if ((v = cli_opt_value(argc, argv, i, "--input", missing))) {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) return cli_usage(cmd, "--input takes NAME=FILE; got '%s'", v);
        *(char *)eq = 0; /* the name is the text before the first '='; argv is ours to cut */
        a->in_names[a->n_bind] = v;
        a->in_files[a->n_bind++] = eq + 1;
    } else if ((v = cli_opt_value(argc, argv, i, "--input-dir", missing))) {
        if (a->input_dir) return cli_usage(cmd, "--input-dir given twice");
        a->input_dir = v;
    } else if ((v = cli_opt_value(argc, argv, i, "--threads", missing))) {
        if (!cli_parse_int(v, 0, 1024, &a->threads))
            return cli_usage(cmd, "--threads takes a number from 0 to 1024; got '%s'", v);
    } else {
        *taken = false;
    }
    return CLI_OK;
}

int cli_io_positional(const char *cmd, const char *arg, bool missing, struct cli_io_args *a)
{
    if (missing) return cli_usage(cmd, "%s needs a value", arg);
    if (arg[0] == '-' && arg[1]) return cli_usage(cmd, "unknown option '%s'", arg);
    if (a->model) return cli_usage(cmd, "%s takes one MODEL; got an extra '%s'", cmd, arg);
    a->model = arg;
    return CLI_OK;
}

int cli_io_done(const char *cmd, const struct cli_io_args *a)
{
    return a->model ? CLI_OK : cli_usage(cmd, "%s needs a MODEL file", cmd);
}

bool cli_out_option(int argc, char **argv, int *i, struct cli_out_args *a, bool *missing)
{
    const char *v;
    if ((v = cli_opt_value(argc, argv, i, "-o", missing)) ||
        (v = cli_opt_value(argc, argv, i, "--output", missing)))
        a->out = v;
    else if ((v = cli_opt_value(argc, argv, i, "--external-data", missing)))
        a->ext_s = v;
    else
        return false;
    return true;
}

int cli_out_positional(const char *cmd, const char *arg, bool missing, struct cli_out_args *a)
{
    if (missing) return cli_usage(cmd, "option '%s' needs a value", arg);
    if (arg[0] == '-' && arg[1]) return cli_usage(cmd, "unknown option '%s'", arg);
    if (a->model) return cli_usage(cmd, "%s takes one MODEL; '%s' is a second", cmd, arg);
    a->model = arg;
    return CLI_OK;
}

int cli_out_done(const char *cmd, const struct cli_out_args *a)
{
    if (!a->model) return cli_usage(cmd, "%s needs a MODEL file", cmd);
    if (!a->out) return cli_usage(cmd, "%s needs -o %s", cmd, strcmp(cmd, "build") ? "OUT.onnx" : "OUT.kiln");
    return CLI_OK;
}

int cli_out_external(const char *cmd, struct cli_out_args *a)
{
    if (a->ext_s && !cli_parse_int(a->ext_s, 1, 0x7fffffffL, &a->ext))
        return cli_usage(cmd, "--external-data '%s' is not a byte count >= 1", a->ext_s);
    return CLI_OK;
}

int cli_open_session(const char *cmd, const char *path, const kiln_session_options *opt, kiln_opt_level level,
                     kiln_model **model, kiln_session **session, const kiln_model **m)
{
    kiln_err err = {0};
    *model = NULL;
    *session = NULL;
    *m = NULL;
    if (kiln_file_is_engine(path)) {
        if (level != KILN_OPT_NONE) return cli_usage(cmd, "'%s' is an engine, optimized when it was built: drop --level", path);
        kiln_engine *e = NULL;
        if (kiln_engine_load(path, &e, &err) != KILN_OK) return cli_error("%s", err.msg);
        if (opt && opt->threads && opt->threads != kiln_engine_threads(e)) {
            int t = kiln_engine_threads(e);
            kiln_engine_free(e);
            return cli_usage(cmd, "engine '%s' was built for %d threads; rebuild it with `kiln build --threads %d`",
                             path, t, opt->threads);
        }
        kiln_status st = kiln_session_create_from_engine(e, opt, session, &err);
        kiln_engine_free(e); /* the session holds it */
        if (st != KILN_OK) return cli_error("%s", err.msg);
        *m = kiln_session_model(*session);
        return CLI_OK;
    }
    if (!(*model = cli_load_model(path))) return CLI_FAIL;
    if (level != KILN_OPT_NONE) {
        kiln_optimize_options oo = {.level = level, .keep_fused = 1};
        if (kiln_model_optimize(*model, &oo, &err) != KILN_OK) return cli_error("%s: %s", path, err.msg);
    }
    if (kiln_session_create(*model, opt, session, &err) != KILN_OK) return cli_error("%s", err.msg);
    *m = *model;
    return CLI_OK;
}

bool cli_parse_dims(const char *s, size_t len, int *rank, int64_t *dims)
{
    *rank = 0;
    if (len == 0) return true;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != 'x') j++;
        if (j == i || j - i > 12 || *rank >= 16) return false;
        char buf[16];
        memcpy(buf, s + i, j - i);
        buf[j - i] = 0;
        long v;
        if (!cli_parse_int(buf, 0, 0x7fffffffL, &v)) return false;
        dims[(*rank)++] = v;
        i = j + 1;
    }
    return true;
}


int cli_apply_shapes(const char *cmd, kiln_model *m, const char *spec)
{
    const char *p = spec;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq || eq == p)
            return cli_usage(cmd, "--shapes takes NAME=D0xD1x...[,NAME=...]; got '%.*s'", (int)len, p);
        char name[512];
        size_t nlen = (size_t)(eq - p);
        if (nlen >= sizeof name) return cli_usage(cmd, "--shapes: input name too long");
        memcpy(name, p, nlen);
        name[nlen] = 0;
        int rank;
        int64_t dims[16];
        if (!cli_parse_dims(eq + 1, len - nlen - 1, &rank, dims))
            return cli_usage(cmd, "--shapes %s: '%.*s' is not D0xD1x... (e.g. 1x3x224x224)", name,
                             (int)(len - nlen - 1), eq + 1);
        kiln_err err = {0};
        if (kiln_model_set_input_shape(m, name, rank, dims, &err) != KILN_OK)
            return cli_error("--shapes %s: %s", name, err.msg);
        if (!e) break;
        p = e + 1;
    }
    return CLI_OK;
}

