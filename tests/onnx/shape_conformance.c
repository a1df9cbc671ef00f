/* shape_conformance.c: checks kiln's shape inference against the ONNX backend test cases
 * (node/, simple/, pytorch-operator/).
 *
 * Two modes per case; a case passes when both do:
 *   fixed     The graph inputs are fixed to the shapes of test_data_set_0's input_N.pb
 *             (kiln_model_set_input_shape), shapes are inferred IGNORING the declared
 *             value_info and graph-output types (so the rules alone are judged), and every
 *             graph output's inferred type must equal (a) the element type and shape of
 *             output_N.pb, every dim known, and (b) the declared output type where it gives
 *             one (a declared symbolic dim accepts any inferred dim). Any problem the
 *             inference reports also fails the case: these models are valid.
 *   declared  The declared input types only (symbolic dims kept); the inferred type of every
 *             output whose declared type has no symbolic or unknown dim must equal it.
 *             Outputs with symbolic declared types are not compared; a case with none to
 *             compare passes this mode vacuously (counted apart in the summary).
 * Sequence outputs compare their element type, and their element shape where the data
 * agree on one; optional outputs compare what they hold. A failure is WRONG when a known
 * inferred fact (element type, rank, dim, kind) differs from the data or the declaration,
 * else only incomplete (unknown or symbolic where the data has a number); the summary
 * counts the wrong ones apart. Failing cases with a small integer input (a shape, axes or
 * scales given as data) are run a third time, informationally, with those inputs' values
 * known (kiln_infer_model_values), to show what data propagation makes of them.
 *
 * Each case runs in a child process (crash isolation, a time limit), up to -j at once. The
 * final line is `shapes: N passed, M failed`. --passing FILE: every case listed there must
 * pass (the list may only grow); --write-passing FILE rewrites it (keeping what it listed);
 * --report FILE writes a markdown report with every failing case and why.
 *
 * Usage: kiln-shape-conformance [--data DIR] [-k SUBSTR]... [-v] [-j N] [--passing FILE]
 *                               [--write-passing FILE] [--report FILE] [--timeout SEC]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cases.h"
#include "infer/infer_priv.h"

struct result {
    char name[512]; /* suite/case */
    int fixed_ok, declared_ok, declared_compared;
    int wrong; /* a known fact differs from the data or the declaration (not just unknown) */
    int small_int_input; /* a graph input is a small integer (or 1-D float) tensor: likely a
                            shape, axes or scales given as data */
    int data_dependent;  /* an output's inferred size depends on the data */
    int values_ok;       /* informational: exact once the small inputs' values are known too */
    char reason[1024];
};

/* ------------------------------------------------------------------ comparison */

struct probs {
    size_t n;
    char first[600];
};

static void on_problem(void *user, const char *msg)
{
    struct probs *p = user;
    if (p->n++ == 0) snprintf(p->first, sizeof p->first, "%s", msg);
}

static void vtext(const struct kiln_type *t, char *buf, size_t n)
{
    kiln_type_str(t, buf, n);
}

/* The inferred type t against the actual value v: 1 when equal and complete, 0 when only
 * incomplete (unknown or symbolic where the data has a number), -1 when wrong (a known
 * element type, rank or dim that differs; a different kind). */
static int match_value(const struct kiln_type *t, const kiln_value *v, int depth, char *why, size_t n)
{
    char tb[300];
    vtext(t, tb, sizeof tb);
    if (depth > 8) return 1;
    kiln_value_kind k = kiln_value_kind_of(v);
    if (k == KILN_VALUE_OPTIONAL) {
        if (t->kind != KILN_TYPE_OPTIONAL) {
            snprintf(why, n, "WRONG: inferred %s for an optional value", tb);
            return t->kind == KILN_TYPE_NONE ? 0 : -1;
        }
        if (kiln_value_count(v) == 0 || !t->inner) return 1;
        return match_value(t->inner, kiln_value_item(v, 0), depth + 1, why, n);
    }
    if (k == KILN_VALUE_SEQUENCE) {
        if (t->kind != KILN_TYPE_SEQUENCE || !t->inner) {
            snprintf(why, n, "WRONG: inferred %s for a sequence", tb);
            return t->kind == KILN_TYPE_NONE ? 0 : -1;
        }
        const struct kiln_type *in = t->inner;
        if (in->kind == KILN_TYPE_TENSOR && in->elem != kiln_value_elem_dtype(v) &&
            kiln_value_elem_dtype(v) != KILN_DTYPE_UNDEFINED) {
            snprintf(why, n, "WRONG: inferred %s; the sequence holds %s", tb,
                     kiln_dtype_name(kiln_value_elem_dtype(v)));
            return -1;
        }
        /* element shapes: compare dims the items agree on */
        size_t cnt = kiln_value_count(v);
        if (cnt == 0 || in->kind != KILN_TYPE_TENSOR || in->rank < 0) return 1;
        for (size_t i = 0; i < cnt; i++) {
            const kiln_value *it = kiln_value_item(v, i);
            if (kiln_value_kind_of(it) != KILN_VALUE_TENSOR) return 1;
            if (kiln_value_rank(it) != in->rank) {
                snprintf(why, n, "WRONG: inferred %s; item %zu has rank %d", tb, i, kiln_value_rank(it));
                return -1;
            }
            for (int d = 0; d < in->rank; d++)
                if (in->dims[d].value >= 0 && in->dims[d].value != kiln_value_dims(it)[d]) {
                    snprintf(why, n, "WRONG: inferred %s; item %zu has dim %d = %lld", tb, i, d,
                             (long long)kiln_value_dims(it)[d]);
                    return -1;
                }
        }
        return 1;
    }
    char vb[300];
    size_t o = (size_t)snprintf(vb, sizeof vb, "%s[", kiln_dtype_name(kiln_value_dtype(v)));
    for (int d = 0; d < kiln_value_rank(v) && o < sizeof vb; d++)
        o += (size_t)snprintf(vb + o, sizeof vb - o, d ? ",%lld" : "%lld", (long long)kiln_value_dims(v)[d]);
    if (o < sizeof vb) snprintf(vb + o, sizeof vb - o, "]");
    int ok = t->kind == KILN_TYPE_TENSOR && t->elem == kiln_value_dtype(v) && t->rank == kiln_value_rank(v);
    for (int d = 0; ok && d < t->rank; d++) ok = t->dims[d].value == kiln_value_dims(v)[d];
    if (!ok) {
        /* wrong (a known fact that differs) or only incomplete (unknown, symbolic)? */
        bool wrong = t->kind == KILN_TYPE_TENSOR &&
                     ((t->elem != KILN_DTYPE_UNDEFINED && t->elem != kiln_value_dtype(v)) ||
                      (t->rank >= 0 && t->rank != kiln_value_rank(v)));
        for (int d = 0; !wrong && t->kind == KILN_TYPE_TENSOR && d < t->rank; d++)
            wrong = t->dims[d].value >= 0 && t->dims[d].value != kiln_value_dims(v)[d];
        if (t->kind != KILN_TYPE_TENSOR && t->kind != KILN_TYPE_NONE) wrong = true;
        snprintf(why, n, "%sinferred %s, actual %s", wrong ? "WRONG: " : "", tb, vb);
        return wrong ? -1 : 0;
    }
    return ok;
}

/* Inferred t against declared d. sym_ok: a declared symbolic/unknown dim accepts anything.
 * Returns 1 when they agree. */
static int match_declared(const struct kiln_type *t, const struct kiln_type *d, int depth)
{
    if (!d || d->kind == KILN_TYPE_NONE || depth > 8) return 1;
    if (t->kind != d->kind) return 0;
    if (t->kind == KILN_TYPE_TENSOR || t->kind == KILN_TYPE_SPARSE_TENSOR) {
        if (d->elem != KILN_DTYPE_UNDEFINED && t->elem != d->elem) return 0;
        if (d->rank < 0) return 1;
        if (t->rank != d->rank) return 0;
        for (int i = 0; i < d->rank; i++)
            if (d->dims[i].value >= 0 && t->dims[i].value != d->dims[i].value) return 0;
        return 1;
    }
    if (t->kind == KILN_TYPE_MAP && d->elem != t->elem) return 0;
    if (d->inner) return t->inner ? match_declared(t->inner, d->inner, depth + 1) : 0;
    return 1;
}

/* Whether inferred t contradicts declared d: a known fact of both that differs. */
static int contradicts(const struct kiln_type *t, const struct kiln_type *d, int depth)
{
    if (!t || !d || t->kind == KILN_TYPE_NONE || d->kind == KILN_TYPE_NONE || depth > 8) return 0;
    if (t->kind != d->kind) return 1;
    if (t->elem != KILN_DTYPE_UNDEFINED && d->elem != KILN_DTYPE_UNDEFINED && t->elem != d->elem)
        return 1;
    if (t->kind == KILN_TYPE_TENSOR || t->kind == KILN_TYPE_SPARSE_TENSOR) {
        if (t->rank < 0 || d->rank < 0) return 0;
        if (t->rank != d->rank) return 1;
        for (int i = 0; i < d->rank; i++)
            if (t->dims[i].value >= 0 && d->dims[i].value >= 0 && t->dims[i].value != d->dims[i].value)
                return 1;
        return 0;
    }
    return contradicts(t->inner, d->inner, depth + 1);
}

/* Whether d is complete: every dim known, at every level. */
static int symbol_free(const struct kiln_type *d, int depth)
{
    if (!d || d->kind == KILN_TYPE_NONE || depth > 8) return 0;
    if (d->kind == KILN_TYPE_TENSOR) {
        if (d->elem == KILN_DTYPE_UNDEFINED || d->rank < 0) return 0;
        for (int i = 0; i < d->rank; i++)
            if (d->dims[i].value < 0) return 0;
        return 1;
    }
    if (d->kind == KILN_TYPE_SEQUENCE || d->kind == KILN_TYPE_OPTIONAL)
        return symbol_free(d->inner, depth + 1);
    return 0;
}

/* ------------------------------------------------------------------ one case */

static const struct kiln_type *inferred_output(struct kiln_model *m, size_t o)
{
    const struct kiln_vtype *vt = kiln_infer_lookup(m->graph, m->graph->outputs[o].name);
    return vt ? &vt->type : NULL;
}

static int is_small_input(const kiln_value *v, size_t i)
{
    return kiln_value_kind_of(v) == KILN_VALUE_TENSOR && kiln_value_rank(v) <= 1 &&
           kiln_value_numel(v) <= 64 &&
           (kiln_value_dtype(v) == KILN_DTYPE_I64 || kiln_value_dtype(v) == KILN_DTYPE_I32 ||
            (i > 0 && kiln_value_dtype(v) == KILN_DTYPE_F32)); /* scales, OneHot's depth */
}

/* Informational third mode: inputs fixed as in `fixed`, and the values of the small inputs
 * (a shape, axes, scales, a count given as data) known too (kiln_infer_model_values): does
 * data propagation then give the exact output types? */
static int mode_values(const char *dir, const char *set)
{
    char path[4096];
    kiln_err err = {0};
    kiln_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) return 0;
    kiln_value *vals[64] = {0};
    const char *names[64];
    size_t nv = 0, n_in = kiln_model_input_count(m);
    int ok = 1;
    for (size_t i = 0; ok && i < n_in && i < 64; i++) {
        snprintf(path, sizeof path, "%s/%s/input_%zu.pb", dir, set, i);
        if (!file_exists(path)) break;
        kiln_value *v = NULL;
        if (kiln_value_read_file(path, kiln_model_input_kind(m, i), &v, &err)) {
            ok = 0;
            break;
        }
        if (kiln_value_kind_of(v) == KILN_VALUE_TENSOR &&
            kiln_model_set_input_shape(m, kiln_model_input_name(m, i), kiln_value_rank(v),
                                       kiln_value_dims(v), &err))
            ok = 0;
        if (is_small_input(v, i)) {
            names[nv] = kiln_model_input_name(m, i);
            vals[nv++] = v;
        } else {
            kiln_value_free(v);
        }
    }
    struct probs pr = {0};
    if (ok && kiln_infer_model_values(m, KILN_INFER_IGNORE_DECLARED, nv, names,
                                      (const struct kiln_value *const *)vals, on_problem, &pr, NULL, &err))
        ok = 0;
    if (pr.n) ok = 0;
    for (size_t o = 0; ok && o < kiln_model_output_count(m); o++) {
        snprintf(path, sizeof path, "%s/%s/output_%zu.pb", dir, set, o);
        if (!file_exists(path)) continue;
        kiln_value *v = NULL;
        if (kiln_value_read_file(path, kiln_model_output_kind(m, o), &v, &err)) {
            ok = 0;
            break;
        }
        const struct kiln_type *t = inferred_output(m, o);
        struct kiln_type none = {.rank = -1};
        char w[700];
        if (match_value(t ? t : &none, v, 0, w, sizeof w) != 1) ok = 0;
        kiln_value_free(v);
    }
    for (size_t k = 0; k < nv; k++) kiln_value_free(vals[k]);
    kiln_model_free(m);
    return ok;
}

static int mode_fixed(const char *dir, const char *set, int *wrong, int *small_int, int *dd,
                      char *why, size_t n)
{
    char path[4096];
    kiln_err err = {0};
    kiln_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) {
        snprintf(why, n, "load: %.900s", err.msg);
        return 0;
    }
    int ok = 1;
    size_t n_in = kiln_model_input_count(m);
    for (size_t i = 0; ok && i < n_in; i++) {
        snprintf(path, sizeof path, "%s/%s/input_%zu.pb", dir, set, i);
        if (!file_exists(path)) break;
        kiln_value *v = NULL;
        if (kiln_value_read_file(path, kiln_model_input_kind(m, i), &v, &err)) {
            snprintf(why, n, "input_%zu.pb: %.900s", i, err.msg);
            ok = 0;
            break;
        }
        if (is_small_input(v, i)) *small_int = 1;
        if (kiln_value_kind_of(v) == KILN_VALUE_TENSOR &&
            kiln_model_set_input_shape(m, kiln_model_input_name(m, i), kiln_value_rank(v),
                                       kiln_value_dims(v), &err)) {
            snprintf(why, n, "fixing input '%s': %.900s", kiln_model_input_name(m, i), err.msg);
            ok = 0;
        }
        kiln_value_free(v);
    }
    struct probs pr = {0};
    if (ok && kiln_infer_model_ex(m, KILN_INFER_IGNORE_DECLARED, on_problem, &pr, NULL, &err)) {
        snprintf(why, n, "inference failed: %.900s", err.msg);
        ok = 0;
    }
    if (ok && pr.n) {
        snprintf(why, n, "fixed: %zu problem(s), first: %.800s", pr.n, pr.first);
        ok = 0;
    }
    size_t n_out = kiln_model_output_count(m);
    for (size_t o = 0; o < n_out && m->graph->vtypes; o++) {
        const struct kiln_vtype *vt = kiln_infer_lookup(m->graph, m->graph->outputs[o].name);
        if (vt && vt->data_dependent) *dd = 1;
    }
    for (size_t o = 0; ok && o < n_out; o++) {
        const struct kiln_type *t = inferred_output(m, o);
        const char *name = kiln_model_output_name(m, o);
        struct kiln_type none = {.rank = -1};
        if (!t) t = &none;
        snprintf(path, sizeof path, "%s/%s/output_%zu.pb", dir, set, o);
        if (file_exists(path)) {
            kiln_value *v = NULL;
            if (kiln_value_read_file(path, kiln_model_output_kind(m, o), &v, &err)) {
                snprintf(why, n, "output_%zu.pb: %.900s", o, err.msg);
                ok = 0;
                break;
            }
            char w[700];
            int mv = match_value(t, v, 0, w, sizeof w);
            if (mv != 1) {
                snprintf(why, n, "fixed: output '%.200s': %s", name, w);
                ok = 0;
                if (mv < 0) *wrong = 1;
            }
            kiln_value_free(v);
        }
        const struct kiln_type *d = &m->graph->outputs[o].type;
        if (ok && !match_declared(t, d, 0)) {
            char a[300], b[300];
            vtext(t, a, sizeof a);
            vtext(d, b, sizeof b);
            int bad = contradicts(t, d, 0);
            snprintf(why, n, "fixed: output '%.200s': %sinferred %s, declared %s", name,
                     bad ? "WRONG: " : "", a, b);
            ok = 0;
            if (bad) *wrong = 1;
        }
    }
    kiln_model_free(m);
    return ok;
}

static int mode_declared(const char *dir, int *compared, int *wrong, char *why, size_t n)
{
    char path[4096];
    kiln_err err = {0};
    kiln_model *m = NULL;
    *compared = 0;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    if (kiln_model_load_file(path, &m, &err)) {
        snprintf(why, n, "load: %.900s", err.msg);
        return 0;
    }
    int ok = 1;
    struct probs pr = {0};
    if (kiln_infer_model_ex(m, KILN_INFER_IGNORE_DECLARED, on_problem, &pr, NULL, &err)) {
        snprintf(why, n, "declared: inference failed: %.900s", err.msg);
        ok = 0;
    }
    if (ok && pr.n) {
        snprintf(why, n, "declared: %zu problem(s), first: %.800s", pr.n, pr.first);
        ok = 0;
    }
    for (size_t o = 0; ok && o < kiln_model_output_count(m); o++) {
        const struct kiln_type *d = &m->graph->outputs[o].type;
        if (!symbol_free(d, 0)) continue;
        (*compared)++;
        const struct kiln_type *t = inferred_output(m, o);
        struct kiln_type none = {.rank = -1};
        if (!t) t = &none;
        char a[300], b[300];
        vtext(t, a, sizeof a);
        vtext(d, b, sizeof b);
        if (strcmp(a, b) != 0) {
            int bad = contradicts(t, d, 0);
            snprintf(why, n, "declared: output '%.200s': %sinferred %s, declared %s",
                     kiln_model_output_name(m, o), bad ? "WRONG: " : "", a, b);
            ok = 0;
            if (bad) *wrong = 1;
        }
    }
    kiln_model_free(m);
    return ok;
}

static void run_case(const char *dir, struct result *r)
{
    char **sets;
    char sd[4096];
    snprintf(sd, sizeof sd, "%s", dir);
    size_t n_sets = list_dir(sd, "", 1, &sets);
    const char *set = NULL;
    for (size_t i = 0; i < n_sets && !set; i++)
        if (strcmp(sets[i], "test_data_set_0") == 0) set = sets[i];
    r->reason[0] = 0;
    if (!set) {
        snprintf(r->reason, sizeof r->reason, "no test_data_set_0");
    } else {
        r->fixed_ok = mode_fixed(dir, set, &r->wrong, &r->small_int_input, &r->data_dependent,
                                 r->reason, sizeof r->reason);
        if (!r->fixed_ok && r->small_int_input && !r->wrong) r->values_ok = mode_values(dir, set);
    }
    char why[1024] = "";
    r->declared_ok = mode_declared(dir, &r->declared_compared, &r->wrong, why, sizeof why);
    if (!r->declared_ok && (r->fixed_ok || !r->reason[0])) snprintf(r->reason, sizeof r->reason, "%s", why);
    free_list(sets, n_sets);
}

/* ------------------------------------------------------------------ driver */

struct job {
    pid_t pid;
    int fd;
    size_t index;
};

static int passed(const struct result *r)
{
    return r->fixed_ok && r->declared_ok;
}

/* Why a case fails, roughly: the rule gave a wrong fact, the output size depends on the
 * data, a shape/axes/scales input is given as data, or something else (a rule gap). */
static const char *category(const struct result *r)
{
    if (passed(r)) return "pass";
    if (r->wrong) return "wrong";
    if (r->data_dependent) return "data-dependent";
    if (r->small_int_input) return "input values";
    return "other";
}

int main(int argc, char **argv)
{
    const char *data = KILN_ONNX_TESTS, *passing = NULL, *write_passing = NULL, *report = NULL;
    const char *filters[64];
    size_t n_filters = 0;
    int verbose = 0, jobs = 2, timeout = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-v") == 0) verbose = 1;
        else if (strcmp(a, "-k") == 0 && next && n_filters < 64) filters[n_filters++] = argv[++i];
        else if (strcmp(a, "-j") == 0 && next) jobs = atoi(argv[++i]);
        else if (strcmp(a, "--data") == 0 && next) data = argv[++i];
        else if (strcmp(a, "--passing") == 0 && next) passing = argv[++i];
        else if (strcmp(a, "--write-passing") == 0 && next) write_passing = argv[++i];
        else if (strcmp(a, "--report") == 0 && next) report = argv[++i];
        else if (strcmp(a, "--timeout") == 0 && next) timeout = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [-k SUBSTR]... [-v] [-j N] [--passing FILE] "
                            "[--write-passing FILE] [--report FILE] [--timeout SEC]\n", argv[0]);
            return 2;
        }
    }
    if (jobs < 1) jobs = 1;
    if (timeout < 1) timeout = 30;
    struct case_list cl;
    if (cases_find(data, filters, n_filters, &cl) != 0) return 2;
    size_t n_cases = cl.n;
    char **dirs = cl.dirs;
    struct result *res = calloc(n_cases ? n_cases : 1, sizeof *res);
    if (!res) return 2;
    for (size_t i = 0; i < n_cases; i++) snprintf(res[i].name, sizeof res[i].name, "%s", cl.names[i]);
    if (n_cases == 0) {
        fprintf(stderr, "kiln-shape-conformance: no cases under %s\n", data);
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
                alarm((unsigned)timeout);
                run_case(dirs[next], &res[next]);
                ssize_t w = write(fds[1], &res[next], sizeof res[next]);
                (void)w;
                _exit(0);
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
        for (int j = 0; j < jobs; j++) {
            if (running[j].pid != pid) continue;
            struct result *r = &res[running[j].index], tmp;
            ssize_t got = read(running[j].fd, &tmp, sizeof tmp);
            close(running[j].fd);
            if (got == (ssize_t)sizeof tmp) {
                *r = tmp;
            } else if (WIFSIGNALED(status)) {
                snprintf(r->reason, sizeof r->reason, "%s (signal %d)",
                         WTERMSIG(status) == SIGALRM ? "timed out" : "crashed", WTERMSIG(status));
            } else {
                snprintf(r->reason, sizeof r->reason, "child exited without a result");
            }
            if (verbose || n_filters)
                printf("%s %s%s%s\n", passed(r) ? "PASS" : "FAIL", r->name, passed(r) ? "" : ": ",
                       passed(r) ? "" : r->reason);
            running[j].pid = 0;
            active--;
            done++;
            break;
        }
    }
    free(running);

    size_t n_pass = 0, n_fixed = 0, n_decl = 0, n_decl_cmp = 0, n_decl_cmp_ok = 0, n_wrong = 0;
    size_t n_cat[3] = {0}; /* input values, data-dependent, other */
    size_t n_values_ok = 0;
    for (size_t i = 0; i < n_cases; i++) {
        n_wrong += res[i].wrong != 0;
        const char *k = category(&res[i]);
        n_cat[0] += strcmp(k, "input values") == 0;
        n_values_ok += strcmp(k, "input values") == 0 && res[i].values_ok;
        n_cat[1] += strcmp(k, "data-dependent") == 0;
        n_cat[2] += strcmp(k, "other") == 0;
        n_pass += passed(&res[i]) != 0;
        n_fixed += res[i].fixed_ok != 0;
        n_decl += res[i].declared_ok != 0;
        if (res[i].declared_compared) {
            n_decl_cmp++;
            n_decl_cmp_ok += res[i].declared_ok != 0;
        }
    }
    int rc = 0;
    if (passing) {
        char **must;
        size_t n_must = read_lines(passing, &must);
        for (size_t i = 0; i < n_must; i++) {
            int found = 0;
            for (size_t c = 0; c < n_cases; c++) {
                if (strcmp(res[c].name, must[i]) != 0) continue;
                found = 1;
                if (!passed(&res[c])) {
                    printf("REGRESSION %s (on %s): %s\n", res[c].name, passing, res[c].reason);
                    rc = 1;
                }
            }
            if (!found && n_filters == 0) {
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
            fprintf(stderr, "kiln-shape-conformance: cannot write %s\n", write_passing);
            return 2;
        }
        fprintf(f, "# ONNX test cases whose shapes kiln infers exactly (enforced by the\n"
                   "# onnx_shape_conformance test; see tests/onnx/shape_conformance.c).\n"
                   "# This list may only grow: regenerate with scripts/update_shape_conformance.sh.\n");
        for (size_t c = 0; c < n_cases; c++)
            if (passed(&res[c]) || name_in(res[c].name, old, n_old)) fprintf(f, "%s\n", res[c].name);
        fclose(f);
        free_list(old, n_old);
    }
    if (report) {
        FILE *f = fopen(report, "w");
        if (f) {
            time_t now = time(NULL);
            char day[32];
            strftime(day, sizeof day, "%Y-%m-%d", gmtime(&now));
            fprintf(f, "# Shape inference conformance report\n\nGenerated by `kiln-shape-conformance` on %s.\n\n"
                       "**%zu passed, %zu failed** of %zu cases (node, simple, pytorch-operator).\n\n"
                       "- fixed inputs (inferred = actual output shapes and declared types): %zu pass\n"
                       "- declared inputs only: %zu of %zu cases with symbol-free declared outputs "
                       "pass (%zu pass in all, vacuous ones included)\n"
                       "- wrong (an inferred known element type, rank or dim that differs from the "
                       "data or the declaration; the rest of the failures are only incomplete): %zu\n\n"
                       "Failing cases by kind: %zu input values (a shape, axes, scales... given as "
                       "data of a graph input; %zu of them are inferred exactly when those small "
                       "inputs' values are known too, kiln_infer_model_values), %zu data-dependent, "
                       "%zu other, %zu wrong.\n\n"
                       "## Failing cases\n\n| case | kind | reason |\n|---|---|---|\n",
                    day, n_pass, n_cases - n_pass, n_cases, n_fixed, n_decl_cmp_ok, n_decl_cmp, n_decl,
                    n_wrong, n_cat[0], n_values_ok, n_cat[1], n_cat[2], n_wrong);
            for (size_t c = 0; c < n_cases; c++) {
                if (passed(&res[c])) continue;
                for (char *p = res[c].reason; *p; p++)
                    if (*p == '|' || *p == '\n') *p = '/';
                fprintf(f, "| %s | %s%s | %s |\n", res[c].name, category(&res[c]),
                        res[c].values_ok ? " (exact with values)" : "", res[c].reason);
            }
            fclose(f);
        }
    }
    printf("shapes: fixed inputs %zu/%zu, declared inputs %zu/%zu compared, %zu wrong\n", n_fixed,
           n_cases, n_decl_cmp_ok, n_decl_cmp, n_wrong);
    printf("shapes: failing: %zu input values (%zu exact once those values are known), %zu "
           "data-dependent, %zu other, %zu wrong\n",
           n_cat[0], n_values_ok, n_cat[1], n_cat[2], n_wrong);
    printf("shapes: %zu passed, %zu failed\n", n_pass, n_cases - n_pass);
    cases_free(&cl);
    free(res);
    return rc;
}
