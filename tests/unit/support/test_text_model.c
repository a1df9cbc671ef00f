/* tests/unit/support/test_text_model.c: the text-form model encoder of test_text_model.h. */
#include "test_text_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/half.h"
#include "ir/ir.h"
#include "test_support.h"

/* ------------------------------------------------------------------ protobuf bytes */

static void put(struct buf *b, const void *src, size_t n)
{
    if (!n) return; /* src may be NULL then (an empty message) */
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            printf("FAIL: out of memory\n");
            exit(1);
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_var(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, n);
}

static void f_int(struct buf *b, unsigned field, int64_t v)
{
    put_var(b, field << 3);
    put_var(b, (uint64_t)v);
}

static void f_len(struct buf *b, unsigned field, const void *p, size_t n)
{
    put_var(b, field << 3 | 2);
    put_var(b, n);
    put(b, p, n);
}

static void f_str(struct buf *b, unsigned field, const char *s) { f_len(b, field, s, strlen(s)); }

/* Appends sub as a length-delimited field and frees it. */
static void f_sub(struct buf *b, unsigned field, struct buf *sub)
{
    f_len(b, field, sub->p, sub->len);
    free(sub->p);
    *sub = (struct buf){0};
}

static void f_f32(struct buf *b, unsigned field, float v)
{
    put_var(b, field << 3 | 5);
    put(b, &v, 4); /* little-endian hosts only, as kiln itself */
}



/* ------------------------------------------------------------------ the text form */

/* Splits s at any of `sep` into at most cap pieces (s is modified). */
size_t split(char *s, const char *sep, char **out, size_t cap)
{
    size_t n = 0;
    for (char *t = strtok(s, sep); t && n < cap; t = strtok(NULL, sep)) out[n++] = t;
    return n;
}

/* Comma-separated numbers into v; returns the count. */
static size_t numbers(const char *s, double *v, size_t cap)
{
    size_t n = 0;
    while (*s && n < cap) {
        char *end;
        v[n++] = strtod(s, &end);
        if (end == s) break;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void value_info(struct buf *g, unsigned field, const char *name, int elem, const char *dims)
{
    struct buf vi = {0}, tp = {0}, tt = {0}, shape = {0};
    f_str(&vi, 1, name);
    f_int(&tt, 1, elem);
    if (dims) {
        /* Each dim: digits (known), "?" (unknown) or a name (symbolic); "-": rank 0. */
        char copy[256], *save = NULL;
        snprintf(copy, sizeof copy, "%s", strcmp(dims, "-") ? dims : "");
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            struct buf dim = {0};
            if (tok[0] >= '0' && tok[0] <= '9')
                f_int(&dim, 1, strtoll(tok, NULL, 10));
            else if (strcmp(tok, "?") != 0)
                f_str(&dim, 2, tok);
            f_sub(&shape, 1, &dim);
        }
        f_len(&tt, 2, shape.p, shape.len);
        free(shape.p);
    }
    f_sub(&tp, 1, &tt);
    f_sub(&vi, 2, &tp);
    f_sub(g, field, &vi);
}

/* TensorProto element type of "f32", "f16", "i64", "u8", "i8" or "i32". */
static int elem_code(const char *t)
{
    if (!strcmp(t, "f32")) return 1;
    if (!strcmp(t, "f16")) return 10;
    if (!strcmp(t, "u8")) return 2;
    if (!strcmp(t, "i8")) return 3;
    if (!strcmp(t, "i32")) return 6;
    CHECK(!strcmp(t, "i64"), "bad element type '%s'", t);
    return 7;
}

static void initializer(struct buf *g, char *name, char *type, char *dims, char *how, char *vals)
{
    struct buf t = {0};
    double d[16];
    size_t nd = strcmp(dims, "-") ? numbers(dims, d, 16) : 0, n = 1;
    for (size_t i = 0; i < nd; i++) {
        f_int(&t, 1, (int64_t)d[i]);
        n *= (size_t)d[i];
    }
    int code = elem_code(type);
    f_int(&t, 2, code);
    f_str(&t, 8, name);
    size_t es = code == 1 || code == 6 ? 4 : code == 10 ? 2 : code == 2 || code == 3 ? 1 : 8;
    uint8_t *raw = calloc(n ? n : 1, es);
    double *lst = calloc(n ? n : 1, sizeof *lst);
    if (!raw || !lst) exit(1);
    if (!strcmp(how, "=")) {
        size_t got = numbers(vals, lst, n);
        CHECK(got == n, "initializer %s lists %zu values; shape holds %zu", name, got, n);
    }
    for (size_t i = 0; i < n; i++) {
        double v = !strcmp(how, "rand") ? rng_range(-1, 1) : !strcmp(how, "pos") ? rng_range(0.5, 1.5) : lst[i];
        if (code == 1) {
            float f = (float)v;
            memcpy(raw + 4 * i, &f, 4);
        } else if (code == 10) {
            uint16_t h = kiln_half_f32_to_f16((float)v);
            memcpy(raw + 2 * i, &h, 2);
        } else if (code == 2 || code == 3) {
            raw[i] = (uint8_t)(int)v; /* int8: its two's complement byte */
        } else if (code == 6) {
            int32_t x = (int32_t)v;
            memcpy(raw + 4 * i, &x, 4);
        } else {
            int64_t x = (int64_t)v;
            memcpy(raw + 8 * i, &x, 8);
        }
    }
    f_len(&t, 9, raw, n * es);
    free(raw);
    free(lst);
    f_sub(g, 5, &t);
}

static void attribute(struct buf *nd, char *spec)
{
    char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon) {
        CHECK(false, "bad attribute '%s'", spec);
        return;
    }
    *eq = *colon = 0;
    const char *type = eq + 1, *val = colon + 1;
    struct buf a = {0};
    f_str(&a, 1, spec);
    double v[64];
    if (!strcmp(type, "int")) {
        f_int(&a, 3, strtoll(val, NULL, 10));
        f_int(&a, 20, 2);
    } else if (!strcmp(type, "float")) {
        f_f32(&a, 2, strtof(val, NULL));
        f_int(&a, 20, 1);
    } else if (!strcmp(type, "string")) {
        f_str(&a, 4, strcmp(val, "_") ? val : "");
        f_int(&a, 20, 3);
    } else if (!strcmp(type, "ints")) {
        size_t n = numbers(val, v, 64);
        for (size_t i = 0; i < n; i++) f_int(&a, 8, (int64_t)v[i]);
        f_int(&a, 20, 7);
    } else if (!strcmp(type, "floats")) {
        size_t n = numbers(val, v, 64);
        for (size_t i = 0; i < n; i++) f_f32(&a, 7, (float)v[i]);
        f_int(&a, 20, 6);
    } else {
        CHECK(false, "bad attribute type '%s'", type);
    }
    f_sub(nd, 5, &a);
}

/* ModelProto bytes of the text model (the caller frees b->p). */
void parse_model(const char *text, struct buf *out)
{
    struct buf g = {0};
    char *copy = strdup(text), *save = NULL;
    int64_t opset = 17;
    bool kiln_dom = false;
    int node_no = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *w[48];
        size_t n = split(line, " \t", w, 48);
        if (n == 0) continue;
        if (!strcmp(w[0], "opset")) {
            opset = strtoll(w[1], NULL, 10);
            kiln_dom = n > 2 && !strcmp(w[2], "kiln");
        } else if (!strcmp(w[0], "input") && n == 4) {
            value_info(&g, 11, w[1], elem_code(w[2]), w[3]);
        } else if (!strcmp(w[0], "output") && (n == 2 || n == 3)) {
            value_info(&g, 12, w[1], n == 3 ? elem_code(w[2]) : 1, NULL);
        } else if (!strcmp(w[0], "value") && n == 3) {
            value_info(&g, 13, w[1], elem_code(w[2]), NULL);
        } else if (!strcmp(w[0], "init") && n >= 5) {
            initializer(&g, w[1], w[2], w[3], w[4], n > 5 ? w[5] : "");
        } else if (!strcmp(w[0], "node") && n >= 5 && !strcmp(w[3], "->")) {
            struct buf nd = {0};
            char *ins[16], *outs[8], name[32];
            size_t ni = split(w[2], ",", ins, 16);
            for (size_t i = 0; i < ni; i++) f_str(&nd, 1, strcmp(ins[i], "_") ? ins[i] : "");
            size_t no = split(w[4], ",", outs, 8);
            for (size_t i = 0; i < no; i++) f_str(&nd, 2, outs[i]);
            snprintf(name, sizeof name, "n%d", node_no++);
            f_str(&nd, 3, name);
            const char *op = w[1];
            if (!strncmp(op, "kiln.", 5)) {
                f_str(&nd, 7, "kiln");
                op += 5;
            }
            f_str(&nd, 4, op);
            for (size_t i = 5; i < n; i++) attribute(&nd, w[i]);
            f_sub(&g, 1, &nd);
        } else {
            CHECK(false, "bad model line starting '%s'", w[0]);
        }
    }
    free(copy);
    f_str(&g, 2, "g");
    struct buf m = {0}, os = {0};
    f_int(&m, 1, 8);
    f_int(&os, 2, opset);
    f_sub(&m, 8, &os);
    if (kiln_dom) {
        f_str(&os, 1, "kiln");
        f_int(&os, 2, 1);
        f_sub(&m, 8, &os);
    }
    f_sub(&m, 7, &g);
    *out = m;
}

static struct buf model_txt;

void model_text_reset(void)
{
    model_txt.len = 0;
    if (model_txt.p) model_txt.p[0] = 0;
}

void model_text_add(const char *fmt, ...)
{
    for (;;) {
        size_t room = model_txt.cap - model_txt.len;
        va_list ap;
        va_start(ap, fmt);
        int n = model_txt.p ? vsnprintf((char *)model_txt.p + model_txt.len, room, fmt, ap) : -2;
        va_end(ap);
        if (n == -1) {
            fprintf(stderr, "model_text_add: bad format\n");
            exit(1);
        }
        if (n >= 0 && (size_t)n < room) {
            model_txt.len += (size_t)n;
            return;
        }
        size_t cap = model_txt.cap ? model_txt.cap * 2 : 1 << 16;
        while (n >= 0 && cap - model_txt.len <= (size_t)n) cap *= 2;
        uint8_t *p = realloc(model_txt.p, cap);
        if (!p) {
            fprintf(stderr, "model_text_add: out of memory\n");
            exit(1);
        }
        if (!model_txt.p) p[0] = 0;
        model_txt.p = p, model_txt.cap = cap;
    }
}

void model_text_ints(const int32_t *v, size_t n)
{
    model_text_add(" =");
    for (size_t i = 0; i < n; i++) model_text_add("%s%d", i ? "," : " ", v[i]);
}

void model_text_floats(const float *v, size_t n)
{
    model_text_add(" =");
    for (size_t i = 0; i < n; i++) model_text_add("%s%.9g", i ? "," : " ", (double)v[i]);
}

const char *model_text(void) { return model_txt.p ? (const char *)model_txt.p : ""; }

kiln_value *run_text_model(const char *text, size_t n_in, const char *const *names, kiln_value *const *in,
                           int threads, const char *what)
{
    struct buf mb = {0};
    parse_model(text, &mb);
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_value *out = NULL;
    kiln_err e = {0};
    kiln_session_options o = {.threads = threads};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &e);
    if (!st) st = kiln_session_create(m, &o, &s, &e);
    if (!st) st = kiln_session_run(s, n_in, names, (const kiln_value *const *)in, 1, &out, &e);
    CHECK(st == KILN_OK, "%s: %s", what, e.msg);
    kiln_session_free(s);
    kiln_model_free(m);
    free(mb.p);
    return st ? NULL : out;
}

kiln_engine *build_text_model(const char *text, int threads, const char *what)
{
    struct buf mb = {0};
    parse_model(text, &mb);
    kiln_model *m = NULL;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &err);
    if (!st) st = kiln_builder_create(&b, &err);
    if (!st) st = kiln_builder_set_threads(b, threads, &err);
    if (!st) st = kiln_builder_build(b, m, &e, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_builder_free(b);
    kiln_model_free(m);
    free(mb.p);
    return st ? NULL : e;
}

bool model_text_run_x(const float *x, const int64_t *d, int threads, kiln_value **out, bool expect_fail,
                     char *msg, size_t msg_size, const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *m = NULL;
    kiln_session *s = NULL;
    kiln_err e = {0};
    kiln_session_options o = {.threads = threads};
    kiln_value *in = tensor_of(KILN_DTYPE_F32, 4, d, x);
    const char *names[1] = {"X"};
    out[0] = out[1] = NULL;
    kiln_status st = kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &e);
    if (!st) st = kiln_session_create(m, &o, &s, &e);
    if (!st) st = kiln_session_run(s, 1, names, (const kiln_value *const *)&in, 2, out, &e);
    if (!expect_fail) CHECK(st == KILN_OK, "%s: %s", what, e.msg);
    if (msg) snprintf(msg, msg_size, "%s", e.msg);
    kiln_value_free(in);
    kiln_session_free(s);
    kiln_model_free(m);
    free(mb.p);
    return st == KILN_OK;
}

kiln_model *load_text_model(const char *text, const char *what)
{
    struct buf b;
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &e);
    free(b.p);
    CHECK(st == KILN_OK, "%s: load: %s", what, e.msg);
    return st ? NULL : m;
}

size_t model_count_op(const kiln_model *m, const char *dom, const char *op)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_nodes; i++) {
        const struct kiln_node *n = &m->graph->nodes[i];
        c += !strcmp(n->domain ? n->domain : "", dom) && !strcmp(n->op_type, op);
    }
    return c;
}

kiln_model *optimized_matches_n(const float *x, const int64_t *d, size_t n_out, const size_t *want_numel,
                                double atol, double rtol, const char *what)
{
    struct buf mb = {0};
    parse_model(model_text(), &mb);
    kiln_model *ref = NULL, *m = NULL;
    kiln_err e = {0};
    if (n_out < 1 || n_out > 4) {
        CHECK(0, "%s: %zu outputs to compare (1 to 4)", what, n_out);
        goto fail;
    }
    if (kiln_model_load_buffer(mb.p, mb.len, NULL, &ref, &e) || kiln_model_load_buffer(mb.p, mb.len, NULL, &m, &e)) {
        CHECK(0, "%s: load: %s", what, e.msg);
        goto fail;
    }
    kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
    if (kiln_model_optimize(m, &o, &e)) {
        CHECK(0, "%s: optimize: %s", what, e.msg);
        goto fail;
    }
    for (int t = 1; t <= 2; t++) {
        kiln_value *in = tensor_of(KILN_DTYPE_F32, 4, d, x), *a[4] = {NULL}, *b[4] = {NULL};
        kiln_session *sa = NULL, *sb = NULL;
        kiln_session_options so = {.threads = t};
        const char *names[1] = {"X"};
        if (kiln_session_create(ref, &so, &sa, &e) || kiln_session_create(m, &so, &sb, &e) ||
            kiln_session_run(sa, 1, names, (const kiln_value *const *)&in, n_out, a, &e) ||
            kiln_session_run(sb, 1, names, (const kiln_value *const *)&in, n_out, b, &e)) {
            CHECK(0, "%s: run: %s", what, e.msg);
        } else {
            for (size_t k = 0; k < n_out; k++) {
                const float *pa = kiln_value_data(a[k]), *pb = kiln_value_data(b[k]);
                size_t bad = 0, na = kiln_value_numel(a[k]), first = 0;
                bool sizes = na == want_numel[k] && kiln_value_numel(b[k]) == want_numel[k];
                for (size_t i = 0; sizes && i < na; i++)
                    if (!(fabs((double)pb[i] - pa[i]) <= atol + rtol * fabs(pa[i])) && !bad++) first = i;
                CHECK(sizes && bad == 0, "%s, %d threads, output %zu: %zu and %zu elements (expected %zu), %zu differ "
                      "from the unoptimized model's (first [%zu]: %.9g, unoptimized %.9g)", what, t, k, na,
                      kiln_value_numel(b[k]), want_numel[k], bad, first, bad ? pb[first] : 0.0, bad ? pa[first] : 0.0);
            }
        }
        for (size_t k = 0; k < n_out; k++) kiln_value_free(a[k]), kiln_value_free(b[k]);
        kiln_value_free(in);
        kiln_session_free(sa);
        kiln_session_free(sb);
    }
    kiln_model_free(ref);
    free(mb.p);
    return m;
fail:
    kiln_model_free(ref);
    kiln_model_free(m);
    free(mb.p);
    return NULL;
}

kiln_model *optimized_matches(const float *x, const int64_t *d, size_t want_numel, double atol, double rtol,
                              const char *what)
{
    return optimized_matches_n(x, d, 1, &want_numel, atol, rtol, what);
}

void nhwc_equal(kiln_value *r, kiln_value *y, double tol, const char *what)
{
    int64_t rd[4], yd[4];
    for (int i = 0; i < 4; i++) rd[i] = kiln_value_dims(r)[i];
    int64_t want[4] = {rd[0], rd[2], rd[3], rd[1]};
    CHECK(kiln_value_rank(y) == 4, "%s: Y has rank %d", what, kiln_value_rank(y));
    if (kiln_value_rank(y) != 4) return;
    for (int i = 0; i < 4; i++) yd[i] = kiln_value_dims(y)[i];
    CHECK(!memcmp(yd, want, sizeof want), "%s: Y is [%lld,%lld,%lld,%lld], expected [%lld,%lld,%lld,%lld]",
          what, (long long)yd[0], (long long)yd[1], (long long)yd[2], (long long)yd[3], (long long)want[0],
          (long long)want[1], (long long)want[2], (long long)want[3]);
    if (memcmp(yd, want, sizeof want)) return;
    const float *a = kiln_value_data(r), *b = kiln_value_data(y);
    size_t bad = 0, first = 0;
    for (int64_t n = 0; n < rd[0]; n++)
        for (int64_t c = 0; c < rd[1]; c++)
            for (int64_t h = 0; h < rd[2]; h++)
                for (int64_t w = 0; w < rd[3]; w++) {
                    size_t i = (size_t)(((n * rd[1] + c) * rd[2] + h) * rd[3] + w);
                    size_t j = (size_t)(((n * rd[2] + h) * rd[3] + w) * rd[1] + c);
                    bool ok = tol < 0 ? !memcmp(&a[i], &b[j], sizeof(float))
                                      : (isnan(a[i]) ? isnan(b[j])
                                                     : fabs((double)b[j] - a[i]) <= tol * (1 + fabs(a[i])));
                    if (!ok && !bad++) first = i;
                }
    CHECK(bad == 0, "%s: %zu elements differ (first at NCHW index %zu, want %g)", what, bad, first,
          bad ? (double)a[first] : 0.0);
}
