/* test_fused_ops.c: kiln's fused ops (src/cpu/ops/fused.c, domain "kiln") against the
 * unfused sequence of standard kernels they replace, each standard op run through the test
 * support's single-node runner on the same random inputs.
 *
 * FusedConv = Conv -> Add(Z) -> activation; FusedGemm = Gemm -> activation;
 * FusedMatMul = MatMul -> Add(bias) -> Add(Z) -> activation; kiln.Gelu = Gelu-20;
 * kiln.LayerNormalization = LayerNormalization-17; kiln.RMSNormalization = RMSNormalization-23;
 * kiln.Attention = Reshape/Transpose of Q, K, V into heads -> (Concat with past K/V) ->
 * MatMul(Q, K^T) -> Mul(scale) -> Add(mask) -> Softmax -> MatMul(V) -> Transpose -> Reshape.
 * Every activation kiln knows is covered (SiLU as Sigmoid -> Mul), on tiny (all dims 1), odd
 * and grouped / depthwise shapes, with and without bias and residual, and with a session pool
 * of 3 threads. Tolerance: |fused - unfused| <= 1e-5 * (1 + |unfused|) everywhere (the
 * fused ops run the same loops, so most cases agree exactly; attention's softmax uses
 * another exp and summation order). Bad activation names must fail with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "test_support.h"

#define TOL 1e-5

static struct kiln_pool *pool3;

/* Runs one standard op with one output; a failure is a test failure (NULL back). */
static struct kiln_value *op1(const char *op, int ver, const struct kiln_attr *at, size_t na,
                              struct kiln_value **in, size_t nin)
{
    struct kiln_value *out = NULL;
    kiln_err e = {0};
    kiln_status st = run_op(op, ver, at, na, in, nin, &out, &e);
    CHECK(st == KILN_OK, "%s-%d failed: %s", op, ver, e.msg);
    return st == KILN_OK ? out : NULL;
}

/* op1 that consumes (frees) its first input, for chains. */
static struct kiln_value *chain1(const char *op, int ver, const struct kiln_attr *at, size_t na,
                                 struct kiln_value *x, struct kiln_value *other)
{
    if (!x) return NULL;
    struct kiln_value *in[2] = {x, other};
    struct kiln_value *y = op1(op, ver, at, na, in, other ? 2 : 1);
    kiln_value_free(x);
    return y;
}

/* Whether float32 tensors got and want agree within TOL * (1 + |want|). */
static void check_close(const struct kiln_value *got, const struct kiln_value *want,
                        const char *what)
{
    CHECK(got && want, "%s: missing result", what);
    if (!got || !want) return;
    const struct kiln_tensor *g = &got->t, *w = &want->t;
    CHECK(g->rank == w->rank && !memcmp(g->dims, w->dims, (size_t)g->rank * sizeof *g->dims),
          "%s: shapes differ", what);
    if (g->rank != w->rank) return;
    size_t n = kiln_tensor_numel(w);
    const float *a = g->data, *b = w->data;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - b[i]) <= TOL * (1 + fabs((double)b[i])))) {
            CHECK(false, "%s: element %zu is %.9g; unfused %.9g", what, i, (double)a[i],
                  (double)b[i]);
            return;
        }
    test_checks++;
}

/* ------------------------------------------------------------------ activations */

struct act_case {
    const char *name;
    float p[2];
    size_t np;
    const char *approx;
};

static const struct act_case acts[] = {
    {"", {0}, 0, NULL},
    {"Relu", {0}, 0, NULL},
    {"Clip", {0.0f, 6.0f}, 2, NULL},
    {"Clip", {-0.25f, 0.5f}, 2, NULL},
    {"LeakyRelu", {0.1f}, 1, NULL},
    {"LeakyRelu", {0}, 0, NULL},
    {"Sigmoid", {0}, 0, NULL},
    {"Tanh", {0}, 0, NULL},
    {"HardSigmoid", {0.3f, 0.4f}, 2, NULL},
    {"HardSwish", {0}, 0, NULL},
    {"SiLU", {0}, 0, NULL},
    {"Gelu", {0}, 0, "none"},
    {"Gelu", {0}, 0, "tanh"},
};
#define N_ACTS (sizeof acts / sizeof acts[0])

/* Appends the activation attributes of c to at. */
static void add_act(struct attrs *at, const struct act_case *c)
{
    add_s(at, "activation", c->name);
    if (c->np) {
        at->a[at->n++] = attr_floats("activation_params", c->p, c->np);
    }
    if (c->approx) add_s(at, "approximate", c->approx);
}

/* The standard ops of activation c applied to x (consumed). */
static struct kiln_value *ref_act(const struct act_case *c, struct kiln_value *x)
{
    struct kiln_attr at[2];
    const char *n = c->name;
    if (!x || !n[0]) return x;
    if (!strcmp(n, "Relu")) return chain1("Relu", 14, NULL, 0, x, NULL);
    if (!strcmp(n, "Sigmoid")) return chain1("Sigmoid", 13, NULL, 0, x, NULL);
    if (!strcmp(n, "Tanh")) return chain1("Tanh", 13, NULL, 0, x, NULL);
    if (!strcmp(n, "HardSwish")) return chain1("HardSwish", 14, NULL, 0, x, NULL);
    if (!strcmp(n, "LeakyRelu")) {
        at[0] = attr_f("alpha", c->np ? c->p[0] : 0.01f);
        return chain1("LeakyRelu", 16, at, 1, x, NULL);
    }
    if (!strcmp(n, "HardSigmoid")) {
        at[0] = attr_f("alpha", c->p[0]);
        at[1] = attr_f("beta", c->p[1]);
        return chain1("HardSigmoid", 6, at, 2, x, NULL);
    }
    if (!strcmp(n, "Gelu")) {
        at[0] = attr_s("approximate", c->approx);
        return chain1("Gelu", 20, at, 1, x, NULL);
    }
    if (!strcmp(n, "Clip")) {
        struct kiln_value *in[3] = {x, scalar(KILN_DTYPE_F32, c->p[0]),
                                    scalar(KILN_DTYPE_F32, c->p[1])};
        struct kiln_value *y = op1("Clip", 13, NULL, 0, in, 3);
        free_all(in, 3);
        return y;
    }
    if (!strcmp(n, "SiLU")) {
        struct kiln_value *s = op1("Sigmoid", 13, NULL, 0, &x, 1);
        struct kiln_value *y = chain1("Mul", 14, NULL, 0, x, s);
        kiln_value_free(s);
        return y;
    }
    CHECK(false, "no reference for activation %s", n);
    kiln_value_free(x);
    return NULL;
}

/* Runs kiln:op on in[0..nin) (with pool when given); NULL on failure (a test failure). */
static struct kiln_value *run_kiln(struct kiln_pool *pool, const char *op, const struct attrs *at,
                                   struct kiln_value **in, size_t nin)
{
    struct kiln_value *out = NULL;
    kiln_err e = {0};
    kiln_status st = run_node_pool(pool, "kiln", op, 1, at->a, at->n, in, nin, &out, 1, &e);
    CHECK(st == KILN_OK, "kiln.%s failed: %s", op, e.msg);
    return st == KILN_OK ? out : NULL;
}

/* ------------------------------------------------------------------ FusedConv */

struct conv_case {
    int64_t N, C, H, W, M, group, kh, kw, stride, pad;
    bool bias, resid;
};

static void test_fused_conv(void)
{
    static const struct conv_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, false, false}, /* tiny */
        {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, true, true},
        {2, 3, 7, 5, 5, 1, 3, 3, 2, 1, true, true}, /* odd */
        {1, 4, 6, 6, 6, 2, 3, 3, 1, 1, false, true}, /* grouped */
        {2, 3, 9, 8, 3, 3, 3, 3, 1, 1, true, false}, /* depthwise */
        {1, 8, 5, 5, 7, 1, 1, 1, 1, 0, true, true},  /* 1x1 */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct conv_case *c = &cases[t];
        int64_t OH = (c->H + 2 * c->pad - c->kh) / c->stride + 1;
        int64_t OW = (c->W + 2 * c->pad - c->kw) / c->stride + 1;
        int64_t xd[4] = {c->N, c->C, c->H, c->W}, wd[4] = {c->M, c->C / c->group, c->kh, c->kw};
        int64_t bd[1] = {c->M}, yd[4] = {c->N, c->M, OH, OW};
        struct kiln_value *in[4] = {rand_tensor(4, xd), rand_tensor(4, wd),
                                    c->bias ? rand_tensor(1, bd) : NULL,
                                    c->resid ? rand_tensor(4, yd) : NULL};
        int64_t pads[4] = {c->pad, c->pad, c->pad, c->pad}, st[2] = {c->stride, c->stride};
        struct attrs base = {0};
        add_i(&base, "group", c->group);
        add_ints(&base, "pads", pads, 4);
        add_ints(&base, "strides", st, 2);
        for (size_t a = 0; a < N_ACTS; a++) {
            struct attrs at = base;
            /* add_ints' copies live in at.ints: point the copied list attributes there. */
            for (size_t i = 0; i < at.n; i++)
                if (at.a[i].type == KILN_ATTR_INTS) at.a[i].ints = at.ints[i];
            add_act(&at, &acts[a]);
            struct kiln_value *y = op1("Conv", 11, base.a, base.n, in, 3);
            if (c->resid) y = chain1("Add", 14, NULL, 0, y, in[3]);
            y = ref_act(&acts[a], y);
            char what[128];
            snprintf(what, sizeof what, "FusedConv case %zu activation '%s'%s", t, acts[a].name,
                     acts[a].approx ? acts[a].approx : "");
            for (int p = 0; p < 2; p++) {
                struct kiln_value *f = run_kiln(p ? pool3 : NULL, "FusedConv", &at, in, 4);
                check_close(f, y, what);
                kiln_value_free(f);
            }
            kiln_value_free(y);
        }
        free_all(in, 4);
    }
}

/* ------------------------------------------------------------------ FusedGemm */

static void test_fused_gemm(void)
{
    static const struct {
        int64_t M, K, N;
        int tA, tB, c_rank;
        float alpha, beta;
    } cases[] = {
        {1, 1, 1, 0, 0, 0, 1.0f, 1.0f},
        {5, 7, 3, 0, 1, 1, 1.0f, 1.0f},
        {4, 9, 6, 1, 0, 2, 0.5f, 2.0f},
        {37, 65, 33, 0, 1, 1, 1.0f, 1.0f},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t ad[2] = {cases[t].tA ? cases[t].K : cases[t].M, cases[t].tA ? cases[t].M : cases[t].K};
        int64_t bd[2] = {cases[t].tB ? cases[t].N : cases[t].K, cases[t].tB ? cases[t].K : cases[t].N};
        int64_t cd[2] = {cases[t].M, cases[t].N};
        int cr = cases[t].c_rank;
        struct kiln_value *in[3] = {rand_tensor(2, ad), rand_tensor(2, bd),
                                    cr ? rand_tensor(cr, cd + 2 - cr) : NULL};
        struct attrs base = {0};
        add_i(&base, "transA", cases[t].tA);
        add_i(&base, "transB", cases[t].tB);
        add_f(&base, "alpha", cases[t].alpha);
        add_f(&base, "beta", cases[t].beta);
        for (size_t a = 0; a < N_ACTS; a++) {
            struct attrs at = base;
            add_act(&at, &acts[a]);
            struct kiln_value *y = ref_act(&acts[a], op1("Gemm", 13, base.a, base.n, in, 3));
            char what[128];
            snprintf(what, sizeof what, "FusedGemm case %zu activation '%s'", t, acts[a].name);
            for (int p = 0; p < 2; p++) {
                struct kiln_value *f = run_kiln(p ? pool3 : NULL, "FusedGemm", &at, in, 3);
                check_close(f, y, what);
                kiln_value_free(f);
            }
            kiln_value_free(y);
        }
        free_all(in, 3);
    }
}

/* ------------------------------------------------------------------ FusedMatMul */

static void test_fused_matmul(void)
{
    static const struct {
        int ra, rb;
        int64_t ad[4], bd[4];
        bool bias, resid;
    } cases[] = {
        {2, 2, {1, 1}, {1, 1}, true, true},
        {4, 2, {2, 3, 5, 7}, {7, 6}, true, true},
        {3, 3, {2, 5, 7}, {2, 7, 3}, true, false},
        {3, 2, {1, 9, 16}, {16, 11}, false, true},
        {2, 2, {40, 96}, {96, 72}, true, true},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int ra = cases[t].ra, rb = cases[t].rb;
        int64_t N = cases[t].bd[rb - 1], yd[4];
        int yr = ra > rb ? ra : rb;
        for (int d = 0; d < yr - 1; d++) yd[d] = ra >= rb ? cases[t].ad[d] : cases[t].bd[d];
        yd[yr - 2] = cases[t].ad[ra - 2];
        yd[yr - 1] = N;
        struct kiln_value *in[4] = {rand_tensor(ra, cases[t].ad), rand_tensor(rb, cases[t].bd),
                                    cases[t].bias ? rand_tensor(1, &N) : NULL,
                                    cases[t].resid ? rand_tensor(yr, yd) : NULL};
        for (size_t a = 0; a < N_ACTS; a++) {
            struct attrs at = {0};
            add_act(&at, &acts[a]);
            struct kiln_value *y = op1("MatMul", 13, NULL, 0, in, 2);
            if (in[2]) y = chain1("Add", 14, NULL, 0, y, in[2]);
            if (in[3]) y = chain1("Add", 14, NULL, 0, y, in[3]);
            y = ref_act(&acts[a], y);
            char what[128];
            snprintf(what, sizeof what, "FusedMatMul case %zu activation '%s'", t, acts[a].name);
            for (int p = 0; p < 2; p++) {
                struct kiln_value *f = run_kiln(p ? pool3 : NULL, "FusedMatMul", &at, in, 4);
                check_close(f, y, what);
                kiln_value_free(f);
            }
            kiln_value_free(y);
        }
        free_all(in, 4);
    }
}

/* ------------------------------------------------------------------ Gelu and the norms */

static void test_gelu_norms(void)
{
    static const int64_t shapes[][4] = {{1, 1, 1, 1}, {3, 5, 7, 1}, {2, 3, 4, 33}, {1, 2, 3, 700}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        struct kiln_value *x = rand_tensor(4, shapes[t]);
        for (int ap = 0; ap < 2; ap++) {
            struct attrs at = {0};
            add_s(&at, "approximate", ap ? "tanh" : "none");
            struct kiln_value *y = op1("Gelu", 20, at.a, at.n, &x, 1);
            struct kiln_value *f = run_kiln(pool3, "Gelu", &at, &x, 1);
            check_close(f, y, ap ? "kiln.Gelu tanh" : "kiln.Gelu");
            kiln_value_free(f);
            kiln_value_free(y);
        }
        for (int axis = -1; axis >= -3; axis -= 2) {
            int64_t sd[4];
            int sr = -axis;
            for (int d = 0; d < sr; d++) sd[d] = shapes[t][4 - sr + d];
            struct kiln_value *in[3] = {x, rand_tensor(sr, sd), rand_tensor(sr, sd)};
            struct attrs at = {0};
            add_i(&at, "axis", axis);
            add_f(&at, "epsilon", 1e-3f);
            struct kiln_value *y = op1("LayerNormalization", 17, at.a, at.n, in, 3);
            struct kiln_value *f = run_kiln(pool3, "LayerNormalization", &at, in, 3);
            check_close(f, y, "kiln.LayerNormalization");
            kiln_value_free(f);
            kiln_value_free(y);
            y = op1("RMSNormalization", 23, at.a, at.n, in, 2);
            f = run_kiln(NULL, "RMSNormalization", &at, in, 2);
            check_close(f, y, "kiln.RMSNormalization");
            kiln_value_free(f);
            kiln_value_free(y);
            free_all(in + 1, 2);
        }
        kiln_value_free(x);
    }
}

/* ------------------------------------------------------------------ Attention */

/* [B, S, H*D] -> [B, H, S, D] (perm 0 2 1 3) or, for keys, [B, H, D, S] (perm 0 2 3 1). */
static struct kiln_value *heads(const struct kiln_value *x, int64_t H, bool keys)
{
    const struct kiln_tensor *t = &x->t;
    double shp[4] = {(double)t->dims[0], (double)t->dims[1], (double)H, (double)(t->dims[2] / H)};
    struct kiln_value *s = vec_f64(KILN_DTYPE_I64, 4, shp);
    struct kiln_value *in[2] = {(struct kiln_value *)x, s};
    struct kiln_value *r = op1("Reshape", 14, NULL, 0, in, 2);
    kiln_value_free(s);
    int64_t perm[4] = {0, 2, keys ? 3 : 1, keys ? 1 : 3};
    struct kiln_attr at = attr_ints("perm", perm, 4);
    return chain1("Transpose", 13, &at, 1, r, NULL);
}

/* The concatenation of past [B, H, P, D] and new [B, H, S, D] along axis 2 (new if no past). */
static struct kiln_value *with_past(struct kiln_value *past, struct kiln_value *x)
{
    if (!past) return x;
    struct kiln_attr at = attr_i("axis", 2);
    struct kiln_value *in[2] = {past, x};
    struct kiln_value *y = op1("Concat", 13, &at, 1, in, 2);
    kiln_value_free(x);
    return y;
}

struct attn_case {
    int64_t B, S, P, H, D;
    int mask; /* 0 none, 1 [B, 1, 1, T] padding-style, 2 [S, T] */
    bool causal, scale;
};

static void test_attention(void)
{
    static const struct attn_case cases[] = {
        {1, 1, 0, 1, 1, 0, false, false},  /* tiny */
        {2, 5, 0, 3, 4, 1, false, false},  /* BERT-style padding mask */
        {1, 7, 0, 2, 8, 0, true, true},    /* causal, explicit scale */
        {2, 3, 4, 2, 5, 2, true, false},   /* GPT-2 decoding with a KV cache */
        {1, 1, 6, 4, 16, 0, true, false},  /* one new token */
        {2, 33, 0, 4, 16, 1, false, false},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct attn_case *c = &cases[t];
        int64_t T = c->P + c->S, hd[3] = {c->B, c->S, c->H * c->D};
        int64_t pd[4] = {c->B, c->H, c->P, c->D};
        int64_t md1[4] = {c->B, 1, 1, T}, md2[2] = {c->S, T};
        struct kiln_value *q = rand_tensor(3, hd), *k = rand_tensor(3, hd), *v = rand_tensor(3, hd);
        struct kiln_value *pk = c->P ? rand_tensor(4, pd) : NULL, *pv = c->P ? rand_tensor(4, pd) : NULL;
        struct kiln_value *mask = c->mask == 1 ? rand_tensor(4, md1) : c->mask == 2 ? rand_tensor(2, md2) : NULL;
        float scale = c->scale ? 0.3f : (float)(1.0 / sqrt((double)c->D));
        /* Unfused: the additive mask, plus -inf above the causal diagonal (offset P). */
        struct kiln_value *bias = mask;
        if (c->causal) {
            int64_t cd[2] = {c->S, T};
            double *cm = calloc((size_t)(c->S * T), sizeof *cm);
            for (int64_t i = 0; i < c->S; i++)
                for (int64_t j = 0; j < T; j++) cm[i * T + j] = j > i + c->P ? -INFINITY : 0;
            struct kiln_value *cv = tensor_f64(KILN_DTYPE_F32, 2, cd, cm);
            free(cm);
            if (mask) {
                bias = chain1("Add", 14, NULL, 0, cv, mask);
            } else {
                bias = cv;
            }
        }
        struct kiln_value *q4 = heads(q, c->H, false);
        struct kiln_value *k4 = with_past(pk, heads(k, c->H, false));
        struct kiln_value *v4 = with_past(pv, heads(v, c->H, false));
        int64_t perm[4] = {0, 1, 3, 2};
        struct kiln_attr pa = attr_ints("perm", perm, 4);
        struct kiln_value *kt = op1("Transpose", 13, &pa, 1, &k4, 1);
        struct kiln_value *in2[2] = {q4, kt};
        struct kiln_value *s = op1("MatMul", 13, NULL, 0, in2, 2);
        struct kiln_value *sv = scalar(KILN_DTYPE_F32, scale);
        s = chain1("Mul", 14, NULL, 0, s, sv);
        if (bias) s = chain1("Add", 14, NULL, 0, s, bias);
        struct kiln_attr ax = attr_i("axis", -1);
        s = chain1("Softmax", 13, &ax, 1, s, NULL);
        s = chain1("MatMul", 13, NULL, 0, s, v4);
        int64_t back[4] = {0, 2, 1, 3};
        struct kiln_attr ba = attr_ints("perm", back, 4);
        s = chain1("Transpose", 13, &ba, 1, s, NULL);
        double shp[3] = {(double)c->B, (double)c->S, (double)(c->H * c->D)};
        struct kiln_value *sh = vec_f64(KILN_DTYPE_I64, 3, shp);
        struct kiln_value *want = chain1("Reshape", 14, NULL, 0, s, sh);

        struct attrs at = {0};
        add_i(&at, "num_heads", c->H);
        if (c->causal) add_i(&at, "causal", 1);
        if (c->scale) add_f(&at, "scale", scale);
        struct kiln_value *in[6] = {q, k, v, mask, pk, pv};
        for (int p = 0; p < 2; p++) {
            struct kiln_value *out[3] = {0};
            kiln_err e = {0};
            kiln_status st = run_node_pool(p ? pool3 : NULL, "kiln", "Attention", 1, at.a, at.n, in,
                                           c->P ? 6 : 4, out, c->P ? 3 : 1, &e);
            CHECK(st == KILN_OK, "kiln.Attention case %zu: %s", t, e.msg);
            char what[64];
            snprintf(what, sizeof what, "kiln.Attention case %zu", t);
            check_close(out[0], want, what);
            if (c->P) {
                check_close(out[1], k4, "present_key");
                check_close(out[2], v4, "present_value");
            }
            free_all(out, 3);
        }
        struct kiln_value *rest[] = {q, k, v, pk, pv, q4, k4, v4, kt, sv, sh, want,
                                     bias != mask ? bias : NULL, mask};
        free_all(rest, sizeof rest / sizeof rest[0]);
    }
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void)
{
    int64_t xd[4] = {1, 1, 3, 3}, wd[4] = {1, 1, 1, 1};
    struct kiln_value *in[2] = {rand_tensor(4, xd), rand_tensor(4, wd)}, *out = NULL;
    struct attrs at = {0};
    add_s(&at, "activation", "Softmax");
    kiln_err e = {0};
    kiln_status st = run_node("kiln", "FusedConv", 1, at.a, at.n, in, 2, &out, 1, &e);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(e.msg, "Softmax"), "unknown activation: %d %s", st,
          e.msg);
    struct attrs at2 = {0};
    static const float three[3] = {1, 2, 3};
    add_s(&at2, "activation", "Relu");
    at2.a[at2.n++] = attr_floats("activation_params", three, 3);
    st = run_node("kiln", "FusedConv", 1, at2.a, at2.n, in, 2, &out, 1, &e);
    CHECK(st == KILN_E_INVALID_MODEL, "Relu with 3 parameters accepted");
    int64_t zd[4] = {1, 1, 2, 3};
    struct kiln_value *in4[4] = {in[0], in[1], NULL, rand_tensor(4, zd)};
    struct attrs none = {0};
    st = run_node("kiln", "FusedConv", 1, none.a, none.n, in4, 4, &out, 1, &e);
    CHECK(st == KILN_E_INVALID_ARG && strstr(e.msg, "residual"), "bad residual shape: %s", e.msg);
    kiln_value_free(in4[3]);
    free_all(in, 2);
}

int main(void)
{
    rng_seed(0xF05EDu);
    kiln_err e = {0};
    if (kiln_pool_create(3, &pool3, &e)) {
        printf("FAIL: pool: %s\n", e.msg);
        return 1;
    }
    test_fused_conv();
    test_fused_gemm();
    test_fused_matmul();
    test_gelu_norms();
    test_attention();
    test_errors();
    kiln_pool_free(pool3);
    return test_summary("test_fused_ops");
}
