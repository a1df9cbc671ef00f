/* test_attention_fast.c: kiln.Attention's float32 kernel (src/cpu/ops/nn_extra.c) and its
 * softmax row pass (cpu/isa/attention.c).
 *
 * 1. kiln_attn_softmax_row of every ISA variant up to kiln_isa_best() against a float64
 *    softmax on odd and tiny lengths, with and without a mask, with a masked tail and fully
 *    masked rows: within 1e-6 absolute + 4e-6 relative (exp within 2 ulp, float sums).
 * 2. kiln.Attention on random shapes (batch 1-2, heads 1-5, head sizes odd and 64, query
 *    blocks crossing the kernel's 128-row block, past K/V, float masks of rank 1-4 that
 *    broadcast and may be shorter than the keys, -inf entries and fully masked rows, causal,
 *    an explicit scale, a bool mask that takes the generic path) and the bench models' shapes
 *    (ViT S=197, BERT S=128, GPT-2 decoding S_q 1..8 over up to 1024 cached keys), against a
 *    float64 reference written here: Y within 1e-5 * (1 + |y|); present_key/value exact.
 *    Each case also runs ONNX Attention-23 (the generic kernel kiln.Attention used before)
 *    on the same inputs: within the same 1e-5; and inline against a 2-thread pool:
 *    identical bytes.
 * 3. A mask with no columns gives zeros; bad shapes fail with a status, never crash.
 *
 * `test_attention_fast bench [NAME]` instead times kiln.Attention against ONNX Attention on
 * the bench models' shapes (those whose name contains NAME; best of 40 session runs, 1 and
 * 2 threads).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cpu/attention_isa.h"
#include "cpu/isa.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

static struct kiln_pool *g_pool;

#define TOL 1e-5

/* ------------------------------------------------------------------ the row pass */

static void ref_softmax(const float *x, const float *m, size_t n, size_t T, double *y)
{
    double mx = -INFINITY;
    for (size_t c = 0; c < n; c++) {
        double v = (double)x[c] + (m ? m[c] : 0);
        if (v > mx) mx = v;
    }
    double s = 0;
    for (size_t c = 0; c < T; c++) {
        double v = c < n ? (double)x[c] + (m ? m[c] : 0) : -INFINITY;
        y[c] = mx == -INFINITY || v == -INFINITY ? 0 : exp(v - mx);
        s += y[c];
    }
    for (size_t c = 0; c < T; c++) y[c] = s > 0 ? y[c] / s : 0;
}

static void test_rows(void)
{
    static const size_t lens[] = {0, 1, 2, 3, 15, 16, 17, 33, 128, 197, 1001};
    float *x = malloc(1001 * sizeof *x), *m = malloc(1001 * sizeof *m), *r = malloc(1001 * sizeof *r);
    double *y = malloc(1001 * sizeof *y);
    if (!x || !m || !r || !y) exit(1);
    for (int isa = 0; isa <= (int)kiln_isa_best(); isa++) {
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t T = lens[li];
            for (int variant = 0; variant < 4; variant++) {
                /* 0: plain; 1: mask with -inf entries; 2: tail masked (n < T); 3: all masked */
                for (size_t c = 0; c < T; c++) {
                    x[c] = 8 * rng_f32();
                    m[c] = rng_unit() < 0.2 ? -INFINITY : 2 * rng_f32();
                    if (variant == 3) m[c] = -INFINITY;
                }
                size_t n = variant == 2 ? T / 2 : T;
                const float *mm = variant ? m : NULL;
                ref_softmax(x, mm, n, T, y);
                memcpy(r, x, T * sizeof *r);
                KILN_ISA_VARIANT(kiln_attn_softmax_row_isa, isa)(r, mm, n, T);
                bool ok = true;
                for (size_t c = 0; c < T; c++)
                    ok = ok && fabs(r[c] - y[c]) <= 1e-6 + 4e-6 * fabs(y[c]);
                CHECK(ok, "softmax row %s, T %zu, variant %d", kiln_isa_name((enum kiln_isa)isa), T,
                      variant);
            }
        }
    }
    free(x), free(m), free(r), free(y);
}

/* ------------------------------------------------------------------ the op */

struct acase {
    int B, H, Sq, Skv, P, D, Dv;
    int mask_rank; /* 0: none */
    bool bool_mask, short_mask, causal, scale;
};

static float *fdata(struct kiln_value *v)
{
    return kiln_value_data(v);
}

/* The float64 reference of kiln.Attention (docs/fused-ops.md) into y [B, Sq, H*Dv]. */
static void reference(const struct acase *c, struct kiln_value *q, struct kiln_value *k,
                      struct kiln_value *v, struct kiln_value *mask, struct kiln_value *pk,
                      struct kiln_value *pv, double scale, double *y)
{
    const int B = c->B, H = c->H, Sq = c->Sq, Skv = c->Skv, P = c->P, D = c->D, Dv = c->Dv;
    const int T = P + Skv;
    const float *qf = fdata(q), *kf = fdata(k), *vf = fdata(v);
    int mr = mask ? kiln_value_rank(mask) : 0;
    const int64_t *md = mask ? kiln_value_dims(mask) : NULL;
    int64_t Tm = mask ? md[mr - 1] : 0;
    double *s = malloc((size_t)(T ? T : 1) * sizeof *s);
    if (!s) exit(1);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Sq; i++) {
                double mx = -INFINITY;
                for (int t = 0; t < T; t++) {
                    double acc = 0;
                    for (int d = 0; d < D; d++) {
                        double kv = t < P ? fdata(pk)[(((size_t)b * H + h) * P + t) * D + d]
                                          : kf[((size_t)b * Skv + (t - P)) * H * D + h * D + d];
                        acc += (double)qf[((size_t)b * Sq + i) * H * D + h * D + d] * kv;
                    }
                    double bias = 0;
                    if (mask) {
                        if (t >= Tm) {
                            bias = -INFINITY;
                        } else {
                            int64_t full[4] = {b, h, i, t}, idx = 0;
                            for (int a = 0; a < mr; a++) {
                                int64_t dim = md[a], at = full[4 - mr + a];
                                idx = idx * dim + (dim == 1 ? 0 : at);
                            }
                            if (kiln_value_dtype(mask) == KILN_DTYPE_BOOL)
                                bias = ((const uint8_t *)kiln_value_data(mask))[idx] ? 0 : -INFINITY;
                            else
                                bias = fdata(mask)[idx];
                        }
                    }
                    if (c->causal && t > i + P) bias = -INFINITY;
                    s[t] = acc * (double)(float)scale + bias;
                    if (s[t] > mx) mx = s[t];
                }
                double sum = 0;
                for (int t = 0; t < T; t++) {
                    s[t] = mx == -INFINITY || s[t] == -INFINITY ? 0 : exp(s[t] - mx);
                    sum += s[t];
                }
                for (int e = 0; e < Dv; e++) {
                    double acc = 0;
                    for (int t = 0; t < T; t++) {
                        double vv = t < P ? fdata(pv)[(((size_t)b * H + h) * P + t) * Dv + e]
                                          : vf[((size_t)b * Skv + (t - P)) * H * Dv + h * Dv + e];
                        acc += (sum > 0 ? s[t] / sum : 0) * vv;
                    }
                    y[((size_t)b * Sq + i) * H * Dv + h * Dv + e] = acc;
                }
            }
    free(s);
}

/* present = concat(past, heads(x)) [B, H, T, W], from x [B, Skv, H*W]. */
static void present_ref(const struct acase *c, struct kiln_value *past, struct kiln_value *x, int W,
                        double *out)
{
    const int T = c->P + c->Skv;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int t = 0; t < T; t++)
                for (int w = 0; w < W; w++)
                    out[(((size_t)b * c->H + h) * T + t) * W + w] =
                        t < c->P ? fdata(past)[(((size_t)b * c->H + h) * c->P + t) * W + w]
                                 : fdata(x)[((size_t)b * c->Skv + (t - c->P)) * c->H * W + h * W + w];
}

static bool same_bytes(struct kiln_value *a, struct kiln_value *b)
{
    if (!a || !b || kiln_value_numel(a) != kiln_value_numel(b)) return false;
    return !memcmp(kiln_value_data(a), kiln_value_data(b), kiln_value_numel(a) * sizeof(float));
}

/* Random inputs of case c; in[0..6) (absent ones NULL). */
static void make_inputs(const struct acase *c, struct kiln_value **in)
{
    int64_t qd[3] = {c->B, c->Sq, (int64_t)c->H * c->D}, kd[3] = {c->B, c->Skv, (int64_t)c->H * c->D};
    int64_t vd[3] = {c->B, c->Skv, (int64_t)c->H * c->Dv};
    int64_t pkd[4] = {c->B, c->H, c->P, c->D}, pvd[4] = {c->B, c->H, c->P, c->Dv};
    memset(in, 0, 6 * sizeof *in);
    in[0] = rand_tensor(3, qd);
    in[1] = rand_tensor(3, kd);
    in[2] = rand_tensor(3, vd);
    if (c->P) {
        in[4] = rand_tensor(4, pkd);
        in[5] = rand_tensor(4, pvd);
    }
    if (c->mask_rank) {
        int T = c->P + c->Skv;
        int64_t full[4] = {c->B, c->H, c->Sq, c->short_mask && T > 1 ? 1 + rng_int(T - 1) : T};
        int64_t md[4];
        int r = c->mask_rank;
        for (int a = 0; a < r; a++) {
            int64_t d = full[4 - r + a];
            md[a] = a < r - 1 && rng_int(3) == 0 ? 1 : d; /* broadcast some leading dims */
        }
        if (c->bool_mask) {
            in[3] = new_tensor(KILN_DTYPE_BOOL, r, md);
            uint8_t *p = kiln_value_data(in[3]);
            for (size_t i = 0; i < kiln_value_numel(in[3]); i++) p[i] = rng_unit() < 0.8;
        } else {
            in[3] = new_tensor(KILN_DTYPE_F32, r, md);
            float *p = kiln_value_data(in[3]);
            for (size_t i = 0; i < kiln_value_numel(in[3]); i++)
                p[i] = rng_unit() < 0.1 ? -INFINITY : 2 * rng_f32();
        }
    }
}

static void attention_attrs(const struct acase *c, float scale, struct attrs *at)
{
    add_i(at, "num_heads", c->H);
    if (c->causal) add_i(at, "causal", 1);
    if (c->scale) add_f(at, "scale", scale);
}

static void run_case(const struct acase *c, const char *what)
{
    struct kiln_value *in[6];
    make_inputs(c, in);
    float scale = c->scale ? 0.3f : (float)(1.0 / sqrt((double)c->D));
    size_t ny = (size_t)c->B * c->Sq * c->H * c->Dv;
    size_t T = (size_t)(c->P + c->Skv), nk = (size_t)c->B * c->H * T * c->D,
           nv = (size_t)c->B * c->H * T * c->Dv;
    double *y = malloc((ny + 1) * sizeof *y), *pk = malloc((nk + 1) * sizeof *pk),
           *pv = malloc((nv + 1) * sizeof *pv);
    if (!y || !pk || !pv) exit(1);
    reference(c, in[0], in[1], in[2], in[3], in[4], in[5], scale, y);
    present_ref(c, in[4], in[1], c->D, pk);
    present_ref(c, in[5], in[2], c->Dv, pv);
    struct attrs at = {0};
    attention_attrs(c, scale, &at);
    size_t n_in = c->P ? 6 : c->mask_rank ? 4 : 3, n_out = 3;
    struct kiln_value *out[2][3] = {{0}};
    for (int p = 0; p < 2; p++) {
        kiln_err e = {0};
        kiln_status st = run_node_pool(p ? g_pool : NULL, "kiln", "Attention", 1, at.a, at.n, in, n_in,
                                       out[p], n_out, &e);
        CHECK(st == KILN_OK, "%s: kiln.Attention failed: %s", what, e.msg);
        if (st) continue;
        char w[160];
        snprintf(w, sizeof w, "%s: Y (%s)", what, p ? "2 threads" : "inline");
        close_to(out[p][0], y, ny, TOL, w);
        snprintf(w, sizeof w, "%s: present_key", what);
        close_to(out[p][1], pk, nk, 0, w);
        snprintf(w, sizeof w, "%s: present_value", what);
        close_to(out[p][2], pv, nv, 0, w);
    }
    if (out[0][0] && out[1][0])
        for (int o = 0; o < 3; o++)
            CHECK(same_bytes(out[0][o], out[1][o]), "%s: output %d differs between 1 and 2 threads",
                  what, o);
    /* The generic kernel (ONNX Attention-23 with equal head counts). */
    struct attrs oa = {0};
    add_i(&oa, "q_num_heads", c->H);
    add_i(&oa, "kv_num_heads", c->H);
    if (c->causal) add_i(&oa, "is_causal", 1);
    if (c->scale) add_f(&oa, "scale", scale);
    struct kiln_value *gen[3] = {0};
    kiln_err e = {0};
    kiln_status st = run_node_pool(NULL, "", "Attention", 23, oa.a, oa.n, in, n_in, gen, 3, &e);
    CHECK(st == KILN_OK, "%s: ONNX Attention failed: %s", what, e.msg);
    if (!st && out[0][0]) {
        const float *g = kiln_value_data(gen[0]);
        for (size_t i = 0; i < ny; i++) y[i] = g[i];
        char w[160];
        snprintf(w, sizeof w, "%s: against the generic kernel", what);
        close_to(out[0][0], y, ny, TOL, w);
    }
    free_all(gen, 3);
    free_all(out[0], 3);
    free_all(out[1], 3);
    free_all(in, 6);
    free(y), free(pk), free(pv);
}

static void test_cases(void)
{
    char what[160];
    for (int t = 0; t < 80; t++) {
        struct acase c = {
            .B = 1 + rng_int(2), .H = 1 + rng_int(5), .Sq = 1 + rng_int(t % 4 == 0 ? 140 : 9),
            .Skv = rng_int(t % 4 == 1 ? 150 : 12), .P = rng_int(3) ? 0 : rng_int(20),
            .D = rng_int(2) ? 64 : 1 + 2 * rng_int(12),
        };
        c.Dv = rng_int(3) ? c.D : 1 + rng_int(20);
        if (c.Skv + c.P == 0) c.Skv = 1;
        c.mask_rank = rng_int(5);
        c.bool_mask = c.mask_rank && rng_int(5) == 0;
        c.short_mask = rng_int(4) == 0;
        c.causal = rng_int(3) == 0;
        c.scale = rng_int(2) == 0;
        snprintf(what, sizeof what,
                 "case %d (B %d H %d Sq %d Skv %d P %d D %d Dv %d mask %d%s%s%s%s)", t, c.B, c.H,
                 c.Sq, c.Skv, c.P, c.D, c.Dv, c.mask_rank, c.bool_mask ? " bool" : "",
                 c.short_mask ? " short" : "", c.causal ? " causal" : "", c.scale ? " scale" : "");
        run_case(&c, what);
    }
    /* The bench models' shapes. */
    static const struct acase fixed[] = {
        {1, 12, 197, 197, 0, 64, 64, 0, false, false, false, false}, /* ViT-B/16 */
        {1, 12, 128, 128, 0, 64, 64, 4, false, false, false, true},  /* BERT, padding mask */
        {1, 12, 8, 8, 16, 64, 64, 4, false, false, false, true},     /* GPT-2 bench step */
        {1, 12, 1, 1, 1023, 64, 64, 0, false, false, true, false},   /* GPT-2 decode, causal */
        {1, 12, 8, 8, 1016, 64, 64, 2, false, false, false, false},
        {2, 3, 70, 0, 5, 7, 5, 3, false, false, true, false},        /* no new keys */
        {1, 2, 5, 4, 0, 3, 3, 4, false, true, false, false},         /* short mask, odd D */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        snprintf(what, sizeof what, "fixed case %zu (Sq %d T %d)", i, fixed[i].Sq,
                 fixed[i].Skv + fixed[i].P);
        run_case(&fixed[i], what);
    }
}

/* A mask with no columns masks every key: Y is zeros (the fast path leaves it to the generic
 * kernel). */
static void test_empty_mask(void)
{
    int64_t qd[3] = {1, 4, 8}, md[2] = {4, 0};
    struct kiln_value *x = rand_tensor(3, qd), *m = new_tensor(KILN_DTYPE_F32, 2, md);
    struct kiln_value *in[4] = {x, x, x, m}, *out[1] = {0};
    struct attrs at = {0};
    add_i(&at, "num_heads", 2);
    kiln_err e = {0};
    kiln_status st = run_node_pool(g_pool, "kiln", "Attention", 1, at.a, at.n, in, 4, out, 1, &e);
    CHECK(st == KILN_OK, "empty mask: %s", e.msg);
    double zeros[32] = {0};
    if (!st) close_to(out[0], zeros, 32, 0, "empty mask");
    free_all(out, 1);
    kiln_value_free(x);
    kiln_value_free(m);
}

/* ------------------------------------------------------------------ errors */

static void expect_fail(struct kiln_value **in, size_t n_in, int64_t heads, const char *what)
{
    struct attrs at = {0};
    add_i(&at, "num_heads", heads);
    struct kiln_value *out[3] = {0};
    kiln_err e = {0};
    kiln_status st = run_node_pool(g_pool, "kiln", "Attention", 1, at.a, at.n, in, n_in, out, 3, &e);
    CHECK(st != KILN_OK, "%s: expected a failure", what);
    free_all(out, 3);
}

static void test_errors(void)
{
    int64_t q[3] = {1, 4, 8}, k6[3] = {1, 4, 6}, k2[3] = {2, 4, 8}, v5[3] = {1, 5, 8};
    int64_t pk_bad[4] = {1, 3, 2, 4}, pk[4] = {1, 2, 2, 4}, m_bad[2] = {3, 4}, m_long[2] = {4, 9};
    struct kiln_value *x = rand_tensor(3, q), *kd = rand_tensor(3, k6), *kb = rand_tensor(3, k2),
                      *vl = rand_tensor(3, v5), *pkb = rand_tensor(4, pk_bad), *pkg = rand_tensor(4, pk),
                      *mb = rand_tensor(2, m_bad), *ml = rand_tensor(2, m_long);
    struct kiln_value *a[6] = {x, kd, x, NULL, NULL, NULL};
    expect_fail(a, 3, 2, "K head size differs");
    struct kiln_value *b[6] = {x, kb, x, NULL, NULL, NULL};
    expect_fail(b, 3, 2, "K batch differs");
    struct kiln_value *c[6] = {x, x, vl, NULL, NULL, NULL};
    expect_fail(c, 3, 2, "V length differs");
    expect_fail((struct kiln_value *[6]){x, x, x, NULL, NULL, NULL}, 3, 3, "heads do not divide");
    expect_fail((struct kiln_value *[6]){x, x, x, NULL, NULL, NULL}, 3, 0, "no heads");
    expect_fail((struct kiln_value *[6]){x, x, x, NULL, pkb, pkb}, 6, 2, "past heads differ");
    expect_fail((struct kiln_value *[6]){x, x, x, NULL, pkg, NULL}, 6, 2, "past_value missing");
    expect_fail((struct kiln_value *[6]){x, x, x, mb, NULL, NULL}, 4, 2, "mask rows differ");
    expect_fail((struct kiln_value *[6]){x, x, x, ml, NULL, NULL}, 4, 2, "mask longer than keys");
    struct kiln_value *all[] = {x, kd, kb, vl, pkb, pkg, mb, ml};
    free_all(all, sizeof all / sizeof all[0]);
}

/* ------------------------------------------------------------------ bench */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A one-node model of case c (kiln.Attention, or ONNX Attention-23 when generic); its mask
 * input, when c has one, declared with mask's dims (make_inputs broadcasts some at random). */
static kiln_model *one_node(const struct acase *c, bool generic, const struct kiln_value *mask)
{
    char text[2048];
    int n = snprintf(text, sizeof text, "opset 23 kiln\ninput q f32 %d,%d,%d\ninput k f32 %d,%d,%d\n"
                     "input v f32 %d,%d,%d\n", c->B, c->Sq, c->H * c->D, c->B, c->Skv, c->H * c->D,
                     c->B, c->Skv, c->H * c->Dv);
    if (c->mask_rank) {
        n += snprintf(text + n, sizeof text - (size_t)n, "input m f32 ");
        for (int a = 0; a < kiln_value_rank(mask); a++)
            n += snprintf(text + n, sizeof text - (size_t)n, "%s%lld", a ? "," : "",
                          (long long)kiln_value_dims(mask)[a]);
        n += snprintf(text + n, sizeof text - (size_t)n, "\n");
    }
    if (c->P)
        n += snprintf(text + n, sizeof text - (size_t)n, "input pk f32 %d,%d,%d,%d\n"
                      "input pv f32 %d,%d,%d,%d\n", c->B, c->H, c->P, c->D, c->B, c->H, c->P, c->Dv);
    const char *ins = c->P ? (c->mask_rank ? "q,k,v,m,pk,pv" : "q,k,v,_,pk,pv")
                           : (c->mask_rank ? "q,k,v,m" : "q,k,v");
    if (generic)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "node Attention %s -> y%s q_num_heads=int:%d kv_num_heads=int:%d is_causal=int:%d\n",
                      ins, c->P ? ",prk,prv" : "", c->H, c->H, c->causal);
    else
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "node kiln.Attention %s -> y%s num_heads=int:%d causal=int:%d\n", ins,
                      c->P ? ",prk,prv" : "", c->H, c->causal);
    snprintf(text + n, sizeof text - (size_t)n, "output y\n%s", c->P ? "output prk\noutput prv\n" : "");
    struct buf b;
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &e);
    free(b.p);
    if (st) printf("load: %s\n", e.msg);
    return m;
}

static int bench(const char *only)
{
    static const struct {
        const char *name;
        struct acase c;
    } shapes[] = {
        {"ViT S=197", {1, 12, 197, 197, 0, 64, 64, 0, false, false, false, false}},
        {"BERT S=128 mask", {1, 12, 128, 128, 0, 64, 64, 4, false, false, false, false}},
        {"GPT-2 Sq=8 P=16 mask", {1, 12, 8, 8, 16, 64, 64, 4, false, false, false, false}},
        {"GPT-2 Sq=1 P=1023", {1, 12, 1, 1, 1023, 64, 64, 0, false, false, true, false}},
        {"GPT-2 Sq=8 P=1016", {1, 12, 8, 8, 1016, 64, 64, 0, false, false, true, false}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct acase *c = &shapes[s].c;
        if (only && !strstr(shapes[s].name, only)) continue;
        struct kiln_value *in6[6], *in[6];
        make_inputs(c, in6);
        size_t n_in = 0;
        for (int i = 0; i < 6; i++)
            if (in6[i]) in[n_in++] = in6[i];
        for (int threads = 1; threads <= 2; threads++) {
            double best[2] = {1e30, 1e30};
            for (int generic = 0; generic < 2; generic++) {
                kiln_model *m = one_node(c, generic, in6[3]);
                kiln_session_options so = {.threads = threads};
                kiln_session *ss = NULL;
                kiln_err e = {0};
                if (!m || kiln_session_create(m, &so, &ss, &e)) {
                    printf("%s: %s\n", shapes[s].name, e.msg);
                    return 1;
                }
                for (int r = 0; r < 40; r++) {
                    kiln_value *out[3] = {0};
                    double t0 = now_ms();
                    kiln_status st = kiln_session_run(ss, n_in, NULL, (const kiln_value *const *)in,
                                                      c->P ? 3 : 1, out, &e);
                    double t = now_ms() - t0;
                    for (int o = 0; o < 3; o++) kiln_value_free(out[o]);
                    if (st) {
                        printf("%s failed: %s\n", shapes[s].name, e.msg);
                        return 1;
                    }
                    if (t < best[generic]) best[generic] = t;
                }
                kiln_session_free(ss);
                kiln_model_free(m);
            }
            printf("%-22s %d thread(s): kiln.Attention %.3f ms, generic %.3f ms\n", shapes[s].name,
                   threads, best[0], best[1]);
        }
        free_all(in6, 6);
    }
    return 0;
}

int main(int argc, char **argv)
{
    rng_seed(0xa77e);
    kiln_err e = {0};
    if (kiln_pool_create(2, &g_pool, &e)) {
        printf("pool: %s\n", e.msg);
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "bench")) {
        int rc = bench(argc > 2 ? argv[2] : NULL);
        kiln_pool_free(g_pool);
        return rc;
    }
    test_rows();
    test_cases();
    test_empty_mask();
    test_errors();
    kiln_pool_free(g_pool);
    return test_summary("test_attention_fast");
}
