/* conformance.c: runs the ONNX backend test cases (node/, simple/, pytorch-operator/) through
 * kiln's public API and compares with the expected outputs.
 *
 * Tolerance is ONNX's default for backend tests: |got - expected| <= atol + rtol * |expected|
 * with rtol 1e-3 and atol 1e-7 for floating types; integers, bools and strings are exact;
 * NaN matches NaN and infinities must match exactly. Float8/float4 values compare by bits
 * (any NaN encoding matches any other).
 *
 * Each case runs in a child process (crash isolation and a time limit), up to -j at once.
 * The final line is `conformance: N passed, M failed`. With --passing FILE every case named
 * there must pass (the list may only grow); --write-passing FILE rewrites it; --report FILE
 * writes a markdown report listing every failing case and why.
 *
 * --roundtrip writes each model to ONNX bytes (kiln_model_save_buffer) and loads them back
 * before running it, which checks the writer against every case. --opset N converts each
 * model whose default-domain opset is below N (kiln_model_convert_opset) before running it
 * (and before the round trip, with both); the converted model must not have more
 * kiln_model_check problems than the original (stale attributes, say); a model the
 * converter refuses counts as refused,
 * not failed, and --refused FILE lists the refusals that are expected (one line each: the
 * case name, then the reason). A case of --passing that is refused without being listed
 * there, or listed there but no longer refused, is a regression.
 *
 * --level basic|extended optimizes each model (kiln_model_optimize, keep_fused on) after the
 * conversion and before the round trip, so every optimizer pass is checked against every
 * case; a failure to optimize fails the case.
 *
 * Usage: kiln-conformance [--data DIR] [-k SUBSTR]... [-v] [-j N] [--passing FILE]
 *                         [--write-passing FILE] [--report FILE] [--timeout SEC]
 *                         [--roundtrip] [--opset N [--refused FILE]]
 *                         [--level basic|extended|layout]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "kiln.h"

#define RTOL 1e-3
#define ATOL 1e-7

struct result {
    char name[512]; /* suite/case */
    int passed;
    int converted; /* --opset: the model's opset was below N and it was converted */
    int refused;   /* --opset: the converter refused the model (reason says why) */
    char reason[1024];
};

static int roundtrip;       /* --roundtrip */
static int64_t target_opset; /* --opset N; 0: none */
static int opt_level;        /* --level: a kiln_opt_level; 0: none */

/* ------------------------------------------------------------------ comparison */

static double get_f(const kiln_value *v, size_t i)
{
    const void *d = kiln_value_data((kiln_value *)v);
    switch (kiln_value_dtype(v)) {
    case KILN_DTYPE_F32: return ((const float *)d)[i];
    case KILN_DTYPE_F64: return ((const double *)d)[i];
    case KILN_DTYPE_C64: return ((const float *)d)[i];
    case KILN_DTYPE_C128: return ((const double *)d)[i];
    case KILN_DTYPE_F16: {
        uint16_t h = ((const uint16_t *)d)[i];
        uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
        float f;
        uint32_t u;
        if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
        else if (exp == 0) return (sign ? -1.0 : 1.0) * man * 0x1p-24;
        else u = sign | ((exp + 112) << 23) | (man << 13);
        memcpy(&f, &u, 4);
        return f;
    }
    case KILN_DTYPE_BF16: {
        uint32_t u = (uint32_t)((const uint16_t *)d)[i] << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: return 0;
    }
}

static int64_t get_i(const kiln_value *v, size_t i)
{
    const void *d = kiln_value_data((kiln_value *)v);
    switch (kiln_value_dtype(v)) {
    case KILN_DTYPE_I64: return ((const int64_t *)d)[i];
    case KILN_DTYPE_U64: return (int64_t)((const uint64_t *)d)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)d)[i];
    case KILN_DTYPE_U32: return ((const uint32_t *)d)[i];
    case KILN_DTYPE_I16: return ((const int16_t *)d)[i];
    case KILN_DTYPE_U16: return ((const uint16_t *)d)[i];
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: return ((const int8_t *)d)[i];
    default: return ((const uint8_t *)d)[i];
    }
}

static int f8_is_nan(kiln_dtype dt, uint8_t b)
{
    switch (dt) {
    case KILN_DTYPE_F8E4M3FN: return (b & 0x7f) == 0x7f;
    case KILN_DTYPE_F8E5M2: return (b & 0x7f) > 0x7c;
    case KILN_DTYPE_F8E4M3FNUZ: case KILN_DTYPE_F8E5M2FNUZ: return b == 0x80;
    case KILN_DTYPE_F8E8M0: return b == 0xff;
    default: return 0;
    }
}

static void shape_text(const kiln_value *v, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < kiln_value_rank(v) && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ",%lld" : "%lld", (long long)kiln_value_dims(v)[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Returns 1 when equal, else 0 with a reason. */
static int compare(const kiln_value *got, const kiln_value *exp, const char *what, char *why, size_t n)
{
    if (kiln_value_kind_of(got) != kiln_value_kind_of(exp)) {
        snprintf(why, n, "%s: got kind %d, expected kind %d", what, kiln_value_kind_of(got),
                 kiln_value_kind_of(exp));
        return 0;
    }
    if (kiln_value_kind_of(exp) != KILN_VALUE_TENSOR) {
        if (kiln_value_count(got) != kiln_value_count(exp)) {
            snprintf(why, n, "%s: got %zu elements, expected %zu", what, kiln_value_count(got),
                     kiln_value_count(exp));
            return 0;
        }
        for (size_t i = 0; i < kiln_value_count(exp); i++) {
            char sub[300];
            snprintf(sub, sizeof sub, "%s[%zu]", what, i);
            if (!compare(kiln_value_item(got, i), kiln_value_item(exp, i), sub, why, n)) return 0;
        }
        return 1;
    }
    kiln_dtype dt = kiln_value_dtype(exp);
    if (kiln_value_dtype(got) != dt) {
        snprintf(why, n, "%s: got type %s, expected %s", what, kiln_dtype_name(kiln_value_dtype(got)),
                 kiln_dtype_name(dt));
        return 0;
    }
    int shape_ok = kiln_value_rank(got) == kiln_value_rank(exp);
    for (int d = 0; shape_ok && d < kiln_value_rank(exp); d++)
        shape_ok = kiln_value_dims(got)[d] == kiln_value_dims(exp)[d];
    if (!shape_ok) {
        char a[200], b[200];
        shape_text(got, a, sizeof a);
        shape_text(exp, b, sizeof b);
        snprintf(why, n, "%s: got shape %s, expected %s", what, a, b);
        return 0;
    }
    size_t numel = kiln_value_numel(exp);
    if (dt == KILN_DTYPE_C64 || dt == KILN_DTYPE_C128) numel *= 2;
    const void *gd = kiln_value_data((kiln_value *)got), *ed = kiln_value_data((kiln_value *)exp);
    for (size_t i = 0; i < numel; i++) {
        switch (dt) {
        case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_BF16:
        case KILN_DTYPE_C64: case KILN_DTYPE_C128: {
            double a = get_f(got, i), e = get_f(exp, i);
            if (isnan(e) && isnan(a)) continue;
            if (isinf(e) || isinf(a) ? a == e : fabs(a - e) <= ATOL + RTOL * fabs(e)) continue;
            snprintf(why, n, "%s: mismatch at index %zu: got %.9g, expected %.9g", what, i, a, e);
            return 0;
        }
        case KILN_DTYPE_STRING: {
            const char *a = ((char *const *)gd)[i], *e = ((char *const *)ed)[i];
            if (strcmp(a ? a : "", e ? e : "") == 0) continue;
            snprintf(why, n, "%s: mismatch at index %zu: got \"%.80s\", expected \"%.80s\"", what, i,
                     a ? a : "", e ? e : "");
            return 0;
        }
        case KILN_DTYPE_F8E4M3FN: case KILN_DTYPE_F8E4M3FNUZ: case KILN_DTYPE_F8E5M2:
        case KILN_DTYPE_F8E5M2FNUZ: case KILN_DTYPE_F8E8M0: {
            uint8_t a = ((const uint8_t *)gd)[i], e = ((const uint8_t *)ed)[i];
            if (a == e || (f8_is_nan(dt, a) && f8_is_nan(dt, e))) continue;
            snprintf(why, n, "%s: mismatch at index %zu: got bits 0x%02x, expected 0x%02x", what, i, a, e);
            return 0;
        }
        default: {
            int64_t a = get_i(got, i), e = get_i(exp, i);
            if (a == e) continue;
            snprintf(why, n, "%s: mismatch at index %zu: got %lld, expected %lld", what, i,
                     (long long)a, (long long)e);
            return 0;
        }
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ one case */

/* Keeps the first problem message kiln_model_check reports. */
static void first_problem(void *user, const char *msg)
{
    char *buf = user;
    if (!buf[0]) snprintf(buf, 600, "%s", msg);
}

/* Runs one case folder; fills r->passed / r->reason. */
static void run_case(const char *dir, struct result *r)
{
    char path[4096];
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    r->passed = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) {
        snprintf(r->reason, sizeof r->reason, "load: %.1000s", err.msg);
        return;
    }
    if (target_opset) {
        int64_t have = -1;
        for (size_t i = 0; i < kiln_model_opset_count(m); i++) {
            const char *dom;
            int64_t v;
            kiln_model_opset(m, i, &dom, &v);
            if (!dom[0] || !strcmp(dom, "ai.onnx")) have = v;
        }
        if (have >= 0 && have < target_opset) {
            r->converted = 1;
            size_t problems = kiln_model_check(m, NULL, NULL);
            if (kiln_model_convert_opset(m, target_opset, &err)) {
                r->refused = err.status == KILN_E_UNSUPPORTED;
                snprintf(r->reason, sizeof r->reason, "convert %lld -> %lld: %.900s",
                         (long long)have, (long long)target_opset, err.msg);
                kiln_model_free(m);
                return;
            }
            /* the converted model must be as valid as the original (attributes the new
             * version does not know, inputs of the wrong kind, ...) */
            char first[600] = "";
            if (kiln_model_check(m, first_problem, first) > problems) {
                snprintf(r->reason, sizeof r->reason, "check after converting to %lld: %.900s",
                         (long long)target_opset, first);
                kiln_model_free(m);
                return;
            }
        }
    }
    if (opt_level) {
        kiln_optimize_options oo = {.level = (kiln_opt_level)opt_level, .keep_fused = 1};
        if (kiln_model_optimize(m, &oo, &err)) {
            snprintf(r->reason, sizeof r->reason, "optimize: %.1000s", err.msg);
            kiln_model_free(m);
            return;
        }
    }
    if (roundtrip) {
        void *buf = NULL;
        size_t len = 0;
        kiln_model *back = NULL;
        if (kiln_model_save_buffer(m, &buf, &len, &err) ||
            kiln_model_load_buffer(buf, len, dir, &back, &err)) {
            snprintf(r->reason, sizeof r->reason, "round trip: %.1000s", err.msg);
            kiln_buffer_free(buf);
            kiln_model_free(m);
            return;
        }
        kiln_buffer_free(buf);
        kiln_model_free(m);
        m = back;
    }
    if (kiln_session_create(m, NULL, &s, &err)) {
        snprintf(r->reason, sizeof r->reason, "%s", err.msg);
        kiln_model_free(m);
        return;
    }
    char **sets;
    size_t n_sets = list_dir(dir, "test_data_set_", 1, &sets);
    if (n_sets == 0) snprintf(r->reason, sizeof r->reason, "no test_data_set_* folders");
    int ok = n_sets > 0;
    size_t n_out = kiln_model_output_count(m);
    for (size_t si = 0; ok && si < n_sets; si++) {
        kiln_value *ins[64] = {0}, *outs[64] = {0}, *exps[64] = {0};
        size_t n_in = 0;
        for (; n_in < 64; n_in++) {
            snprintf(path, sizeof path, "%s/%s/input_%zu.pb", dir, sets[si], n_in);
            if (!file_exists(path)) break;
            kiln_value_kind kind = n_in < kiln_model_input_count(m) ? kiln_model_input_kind(m, n_in) : 0;
            if (kiln_value_read_file(path, kind, &ins[n_in], &err)) {
                snprintf(r->reason, sizeof r->reason, "%.60s input_%zu.pb: %.900s", sets[si], n_in, err.msg);
                ok = 0;
                break;
            }
        }
        if (ok && n_out > 64) {
            snprintf(r->reason, sizeof r->reason, "more than 64 outputs");
            ok = 0;
        }
        if (ok && kiln_session_run(s, n_in, NULL, (const kiln_value *const *)ins, n_out, outs, &err)) {
            snprintf(r->reason, sizeof r->reason, "%s", err.msg);
            ok = 0;
        }
        for (size_t o = 0; ok && o < n_out; o++) {
            snprintf(path, sizeof path, "%s/%s/output_%zu.pb", dir, sets[si], o);
            if (!file_exists(path)) continue; /* the data set does not check this output */
            if (kiln_value_read_file(path, kiln_model_output_kind(m, o), &exps[o], &err)) {
                snprintf(r->reason, sizeof r->reason, "%.60s output_%zu.pb: %.900s", sets[si], o, err.msg);
                ok = 0;
                break;
            }
            char what[300];
            snprintf(what, sizeof what, "output '%s'", kiln_model_output_name(m, o));
            if (!compare(outs[o], exps[o], what, r->reason, sizeof r->reason)) ok = 0;
        }
        for (size_t i = 0; i < 64; i++) {
            kiln_value_free(ins[i]);
            kiln_value_free(outs[i]);
            kiln_value_free(exps[i]);
        }
    }
    free_list(sets, n_sets);
    kiln_session_free(s);
    kiln_model_free(m);
    r->passed = ok;
}

/* ------------------------------------------------------------------ driver */

struct job {
    pid_t pid;
    int fd;
    size_t index;
};

static void run_isolated(const char *dir, struct result *r, int fd, int timeout)
{
    alarm((unsigned)timeout);
    run_case(dir, r);
    ssize_t w = write(fd, r, sizeof *r);
    (void)w;
    _exit(0);
}

static void collect(struct job *j, struct result *res, int status, int timeout)
{
    struct result *r = &res[j->index];
    struct result tmp;
    ssize_t got = read(j->fd, &tmp, sizeof tmp);
    close(j->fd);
    if (got == (ssize_t)sizeof tmp) {
        r->passed = tmp.passed;
        r->converted = tmp.converted;
        r->refused = tmp.refused;
        memcpy(r->reason, tmp.reason, sizeof r->reason);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        snprintf(r->reason, sizeof r->reason, "timed out after %d s", timeout);
    } else if (WIFSIGNALED(status)) {
        snprintf(r->reason, sizeof r->reason, "crashed with signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(r->reason, sizeof r->reason, "child exited with status %d without a result",
                 WEXITSTATUS(status));
    }
}

int main(int argc, char **argv)
{
    const char *data = KILN_ONNX_TESTS, *passing = NULL, *write_passing = NULL, *report = NULL;
    const char *refused_file = NULL;
    const char *filters[64];
    size_t n_filters = 0;
    int verbose = 0, jobs = 2, timeout = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-v") == 0) verbose = 1;
        else if (strcmp(a, "-k") == 0 && next && n_filters < 64) filters[n_filters++] = argv[++i];
        else if (strcmp(a, "-j") == 0 && next) jobs = atoi(argv[++i]);
        else if (strncmp(a, "-j", 2) == 0 && a[2]) jobs = atoi(a + 2);
        else if (strcmp(a, "--data") == 0 && next) data = argv[++i];
        else if (strcmp(a, "--passing") == 0 && next) passing = argv[++i];
        else if (strcmp(a, "--write-passing") == 0 && next) write_passing = argv[++i];
        else if (strcmp(a, "--report") == 0 && next) report = argv[++i];
        else if (strcmp(a, "--timeout") == 0 && next) timeout = atoi(argv[++i]);
        else if (strcmp(a, "--roundtrip") == 0) roundtrip = 1;
        else if (strcmp(a, "--level") == 0 && next) {
            const char *l = argv[++i];
            opt_level = !strcmp(l, "basic")      ? KILN_OPT_BASIC
                        : !strcmp(l, "extended") ? KILN_OPT_EXTENDED
                        : !strcmp(l, "layout")   ? KILN_OPT_LAYOUT
                                                 : -1;
            if (opt_level < 0) {
                fprintf(stderr, "%s: unknown level '%s' (basic, extended, layout)\n", argv[0], l);
                return 2;
            }
        }
        else if (strcmp(a, "--opset") == 0 && next) target_opset = atoi(argv[++i]);
        else if (strcmp(a, "--refused") == 0 && next) refused_file = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--data DIR] [-k SUBSTR]... [-v] [-j N] [--passing FILE] "
                            "[--write-passing FILE] [--report FILE] [--timeout SEC] "
                            "[--roundtrip] [--opset N [--refused FILE]] [--level LEVEL]\n", argv[0]);
            return 2;
        }
    }
    if (jobs < 1) jobs = 1;
    if (timeout < 1) timeout = 60;
    struct case_list cl;
    if (cases_find(data, filters, n_filters, &cl) != 0) return 2;
    size_t n_cases = cl.n;
    char **dirs = cl.dirs;
    struct result *res = calloc(n_cases ? n_cases : 1, sizeof *res);
    if (!res) return 2;
    for (size_t i = 0; i < n_cases; i++) snprintf(res[i].name, sizeof res[i].name, "%s", cl.names[i]);
    if (n_cases == 0) {
        fprintf(stderr, "kiln-conformance: no cases found under %s (filters: %zu)\n", data, n_filters);
        return 2;
    }

    struct job *running = calloc((size_t)jobs, sizeof *running);
    size_t next = 0, done = 0;
    int active = 0;
    while (done < n_cases) {
        while (active < jobs && next < n_cases) {
            int fds[2];
            if (pipe(fds) != 0) return 2;
            pid_t pid = fork();
            if (pid == 0) {
                close(fds[0]);
                run_isolated(dirs[next], &res[next], fds[1], timeout);
            }
            close(fds[1]);
            for (int j = 0; j < jobs; j++)
                if (running[j].pid == 0) {
                    running[j] = (struct job){pid, fds[0], next};
                    break;
                }
            active++;
            next++;
        }
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int j = 0; j < jobs; j++)
            if (running[j].pid == pid) {
                collect(&running[j], res, status, timeout);
                struct result *r = &res[running[j].index];
                if (verbose || n_filters)
                    printf("%s %s%s%s\n", r->passed ? "PASS" : "FAIL", r->name,
                           r->passed ? "" : ": ", r->passed ? "" : r->reason);
                running[j].pid = 0;
                active--;
                done++;
                break;
            }
    }
    free(running);

    size_t n_pass = 0;
    for (size_t i = 0; i < n_cases; i++) n_pass += res[i].passed != 0;

    int rc = 0;
    char **refused_ok = NULL;
    size_t n_refused_ok = 0, n_converted = 0, n_refused = 0;
    if (refused_file) {
        n_refused_ok = read_lines(refused_file, &refused_ok);
        for (size_t i = 0; i < n_refused_ok; i++) refused_ok[i][strcspn(refused_ok[i], " \t")] = 0;
    }
    for (size_t c = 0; c < n_cases; c++) {
        n_converted += res[c].converted && !res[c].refused;
        n_refused += res[c].refused != 0;
    }
    if (passing) {
        char **must;
        size_t n_must = read_lines(passing, &must);
        for (size_t i = 0; i < n_must; i++) {
            for (size_t c = 0; c < n_cases; c++) {
                if (strcmp(res[c].name, must[i]) != 0) continue;
                int listed = name_in(res[c].name, refused_ok, n_refused_ok);
                if (res[c].refused && listed) continue;
                if (!res[c].passed) {
                    printf("REGRESSION %s (on %s): %s\n", res[c].name, passing, res[c].reason);
                    rc = 1;
                } else if (listed && target_opset) {
                    printf("STALE %s (on %s): converted and passed; remove it from the list\n",
                           res[c].name, refused_file);
                    rc = 1;
                }
            }
        }
        if (n_filters == 0)
            for (size_t i = 0; i < n_must; i++) {
                int found = 0;
                for (size_t c = 0; c < n_cases && !found; c++) found = strcmp(res[c].name, must[i]) == 0;
                if (!found) {
                    printf("MISSING %s (on %s): no such case under %s\n", must[i], passing, data);
                    rc = 1;
                }
            }
        free_list(must, n_must);
    }
    if (write_passing) {
        char **old;
        size_t n_old = read_lines(write_passing, &old);
        FILE *f = fopen(write_passing, "w");
        if (!f) {
            fprintf(stderr, "kiln-conformance: cannot write %s\n", write_passing);
            return 2;
        }
        fprintf(f, "# ONNX backend test cases that must pass (enforced by the onnx_conformance test).\n"
                   "# This list may only grow: regenerate with scripts/update_conformance.sh.\n");
        for (size_t c = 0; c < n_cases; c++)
            if (res[c].passed || name_in(res[c].name, old, n_old)) fprintf(f, "%s\n", res[c].name);
        fclose(f);
        free_list(old, n_old);
    }
    if (report) {
        FILE *f = fopen(report, "w");
        if (f) {
            time_t now = time(NULL);
            char day[32];
            strftime(day, sizeof day, "%Y-%m-%d", gmtime(&now));
            fprintf(f, "# ONNX conformance report\n\nGenerated by `kiln-conformance` on %s.\n\n"
                       "**%zu passed, %zu failed** of %zu cases (node, simple, pytorch-operator).\n\n"
                       "Tolerance: rtol 1e-3, atol 1e-7 for floats; exact for integers, bools and "
                       "strings; NaN matches NaN.\n\n## Failing cases\n\n| case | reason |\n|---|---|\n",
                    day, n_pass, n_cases - n_pass, n_cases);
            for (size_t c = 0; c < n_cases; c++) {
                if (res[c].passed) continue;
                for (char *p = res[c].reason; *p; p++)
                    if (*p == '|') *p = '/';
                fprintf(f, "| %s | %s |\n", res[c].name, res[c].reason);
            }
            fclose(f);
        }
    }
    if (target_opset) {
        printf("conformance: converted %zu models to opset %lld, %zu refused\n", n_converted,
               (long long)target_opset, n_refused);
        if (verbose)
            for (size_t c = 0; c < n_cases; c++)
                if (res[c].refused) printf("REFUSED %s: %s\n", res[c].name, res[c].reason);
    }
    free_list(refused_ok, n_refused_ok);
    printf("conformance: %zu passed, %zu failed\n", n_pass, n_cases - n_pass);
    cases_free(&cl);
    free(res);
    return rc;
}
