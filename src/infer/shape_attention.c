/* shape_attention.c: shape and type rules for the fused nn ops of src/cpu/ops/nn_extra.c:
 * Attention (23, 24), RotaryEmbedding (23), SwiGLU (28), LinearAttention (27),
 * CausalConvWithState (27) and ai.onnx.preview FlexAttention (1).
 *
 * Attention: Q [B, Hq, Sq, D], K [B, Hkv, Skv, D], V [B, Hkv, Skv, Dv] (or 3-D [B, S, H*D]
 * with q_num_heads / kv_num_heads), past_key/past_value [B, Hkv, P, D/Dv]; T = P + Skv.
 *   Y [B, Hq, Sq, Dv] (3-D: [B, Sq, Hq*Dv]); present_key [B, Hkv, T, D];
 *   present_value [B, Hkv, T, Dv]; qk_matmul_output [B, Hq, Sq, T].
 *   Element types: Y, present_key and qk_matmul_output Q's (T1), present_value V's (T2).
 * RotaryEmbedding, SwiGLU: Y like input 0.
 * LinearAttention: output [B, T, q_num_heads * dv] with dv = value width / kv_num_heads;
 *   present_state [B, Hkv, dk, dv] (dk = query width / q_num_heads), past_state's type.
 * CausalConvWithState: output like input [B, C, L]; present_state [B, C, k - 1], k = W[2].
 * FlexAttention: Y [B, Hq, L, Ev].
 */
#include "infer/shape_nn.h"

/* A 3- or 4-D input's dims; NULL when not known or of another rank (reported). */
static const struct kiln_dim *attn_in(struct kiln_ictx *c, size_t i, int want3, int want4, int *rank)
{
    const struct kiln_dim *d;
    if (!kiln_infer_shape_of(c, i, rank, &d)) return NULL;
    if (*rank != want3 && *rank != want4) {
        kiln_ic_problem(c, "input %zu has %d dims; expected %d or %d", i, *rank, want3, want4);
        return NULL;
    }
    return d;
}

static struct kiln_dim div_heads(struct kiln_ictx *c, struct kiln_dim d, int64_t heads)
{
    if (heads < 1) return kiln_dim_unknown();
    if (kiln_dim_known(d) && d.value % heads) {
        kiln_ic_problem(c, "width %lld is not a multiple of %lld heads", (long long)d.value,
                        (long long)heads);
        return kiln_dim_unknown();
    }
    return kiln_sym_floordiv(c->inf, d, kiln_dim_int(heads));
}

static kiln_status attention_infer(struct kiln_ictx *c)
{
    kiln_dtype dq = kiln_ic_in_dtype(c, 0), dv = kiln_ic_in_dtype(c, 2);
    if (dv == KILN_DTYPE_UNDEFINED) dv = dq;
    int rq = -1, rk = -1, rv = -1, rp = -1;
    const struct kiln_dim *q = attn_in(c, 0, 3, 4, &rq), *k = attn_in(c, 1, 3, 4, &rk),
                          *v = attn_in(c, 2, 3, 4, &rv);
    const struct kiln_dim *pk = c->n_in > 4 ? attn_in(c, 4, 4, 4, &rp) : NULL;
    int rank = q ? rq : k ? rk : v ? rv : -1;
    if ((q && rq != rank) || (k && rk != rank) || (v && rv != rank)) {
        kiln_ic_problem(c, "Q, K, V have %d, %d, %d dims; expected all 3 or all 4", rq, rk, rv);
        return KILN_OK;
    }
    struct kiln_infer *inf = c->inf;
    struct kiln_dim u = kiln_dim_unknown();
    struct kiln_dim B = q ? q[0] : k ? k[0] : v ? v[0] : u;
    struct kiln_dim Hq = u, Hkv = u, Sq = u, Skv = u, D = u, Dv = u, P = kiln_dim_int(0);
    if (rank == 3) {
        int64_t hq = kiln_ic_attr_i(c, "q_num_heads", 0), hk = kiln_ic_attr_i(c, "kv_num_heads", 0);
        if (hq > 0) Hq = kiln_dim_int(hq);
        if (hk > 0) Hkv = kiln_dim_int(hk);
        if (q) Sq = q[1], D = div_heads(c, q[2], hq);
        if (k) Skv = k[1];
        if (!kiln_dim_defined(D) && k) D = div_heads(c, k[2], hk);
        if (v) Dv = div_heads(c, v[2], hk);
        if (!kiln_dim_defined(Skv) && v) Skv = v[1];
    } else if (rank == 4) {
        if (q) Hq = q[1], Sq = q[2], D = q[3];
        if (k) Hkv = k[1], Skv = k[2];
        if (!kiln_dim_defined(D) && k) D = k[3];
        if (v) Dv = v[3];
        if (!kiln_dim_defined(Hkv) && v) Hkv = v[1];
        if (!kiln_dim_defined(Skv) && v) Skv = v[2];
        if (q && k && kiln_dim_ne(q[3], k[3])) {
            kiln_ic_problem(c, "Q head size %lld differs from K's %lld", (long long)q[3].value,
                            (long long)k[3].value);
            return KILN_OK;
        }
    }
    bool has_past = c->n_in > 4 && kiln_ic_in(c, 4);
    if (has_past) P = pk ? pk[2] : u;
    struct kiln_dim T = kiln_sym_add(inf, P, Skv);
    if (rank < 0) {
        KILN_TRY(kiln_ic_set_tensor(c, 0, dq, -1, NULL));
    } else if (rank == 3) {
        struct kiln_dim y[3] = {B, Sq, kiln_sym_mul(inf, Hq, Dv)};
        KILN_TRY(kiln_ic_set_tensor(c, 0, dq, 3, y));
    } else {
        struct kiln_dim y[4] = {B, Hq, Sq, Dv};
        KILN_TRY(kiln_ic_set_tensor(c, 0, dq, 4, y));
    }
    struct kiln_dim pkd[4] = {B, Hkv, T, D}, pvd[4] = {B, Hkv, T, Dv}, qkd[4] = {B, Hq, Sq, T};
    if (c->n_out > 1) KILN_TRY(kiln_ic_set_tensor(c, 1, dq, 4, pkd));
    if (c->n_out > 2) KILN_TRY(kiln_ic_set_tensor(c, 2, dv, 4, pvd));
    if (c->n_out > 3) KILN_TRY(kiln_ic_set_tensor(c, 3, dq, 4, qkd));
    return KILN_OK;
}

static kiln_status like_input0(struct kiln_ictx *c)
{
    int r;
    const struct kiln_dim *d;
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    if (!kiln_infer_shape_of(c, 0, &r, &d)) return kiln_ic_set_tensor(c, 0, dt, -1, NULL);
    return kiln_ic_set_tensor(c, 0, dt, r, d);
}

static kiln_status swiglu_infer(struct kiln_ictx *c)
{
    int ra, rb;
    const struct kiln_dim *a, *b;
    if (kiln_infer_shape_of(c, 0, &ra, &a) && kiln_infer_shape_of(c, 1, &rb, &b)) {
        bool bad = ra != rb;
        for (int i = 0; !bad && i < ra; i++) bad = kiln_dim_ne(a[i], b[i]);
        if (bad) {
            kiln_ic_problem(c, "inputs A and B must have identical shapes");
            return KILN_OK;
        }
    }
    return like_input0(c);
}

static kiln_status linear_attention_infer(struct kiln_ictx *c)
{
    kiln_dtype dq = kiln_ic_in_dtype(c, 0), ds = kiln_ic_in_dtype(c, 3);
    if (ds == KILN_DTYPE_UNDEFINED || !kiln_ic_in(c, 3)) ds = dq;
    int64_t hq = kiln_ic_attr_i(c, "q_num_heads", 0), hkv = kiln_ic_attr_i(c, "kv_num_heads", 0);
    int rq = -1, rv = -1;
    const struct kiln_dim *q = attn_in(c, 0, 3, 3, &rq), *v = attn_in(c, 2, 3, 3, &rv);
    struct kiln_dim u = kiln_dim_unknown();
    struct kiln_dim B = q ? q[0] : v ? v[0] : u, T = q ? q[1] : v ? v[1] : u;
    struct kiln_dim dk = q ? div_heads(c, q[2], hq) : u, dv = v ? div_heads(c, v[2], hkv) : u;
    struct kiln_dim o[3] = {B, T, hq > 0 ? kiln_sym_mul(c->inf, dv, kiln_dim_int(hq)) : u};
    KILN_TRY(kiln_ic_set_tensor(c, 0, dq, 3, o));
    struct kiln_dim s[4] = {B, hkv > 0 ? kiln_dim_int(hkv) : u, dk, dv};
    if (c->n_out > 1) KILN_TRY(kiln_ic_set_tensor(c, 1, ds, 4, s));
    return KILN_OK;
}

static kiln_status causal_conv_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rx = -1, rw = -1;
    const struct kiln_dim *x = attn_in(c, 0, 3, 3, &rx), *w = attn_in(c, 1, 3, 3, &rw);
    struct kiln_dim u = kiln_dim_unknown();
    if (x && w && kiln_dim_ne(x[1], w[0])) {
        kiln_ic_problem(c, "input has %lld channels but weight has %lld", (long long)x[1].value,
                        (long long)w[0].value);
        return KILN_OK;
    }
    if (x)
        KILN_TRY(kiln_ic_set_tensor(c, 0, dt, 3, x));
    else
        KILN_TRY(kiln_ic_set_tensor(c, 0, dt, 3, (struct kiln_dim[3]){u, w ? w[0] : u, u}));
    struct kiln_dim k1 = w ? kiln_infer_dim_plus(c->inf, w[2], -1) : u;
    struct kiln_dim p[3] = {x ? x[0] : u, x ? x[1] : w ? w[0] : u, k1};
    if (c->n_out > 1) KILN_TRY(kiln_ic_set_tensor(c, 1, dt, 3, p));
    return KILN_OK;
}

static kiln_status flex_attention_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int rq = -1, rv = -1;
    const struct kiln_dim *q = attn_in(c, 0, 4, 4, &rq), *v = attn_in(c, 2, 4, 4, &rv);
    struct kiln_dim u = kiln_dim_unknown();
    struct kiln_dim y[4] = {q ? q[0] : v ? v[0] : u, q ? q[1] : u, q ? q[2] : u, v ? v[3] : u};
    return kiln_ic_set_tensor(c, 0, dt, 4, y);
}

const struct kiln_infer_op kiln_infer_ops_attention[] = {
    {"Attention", "", 23, 0, attention_infer},
    {"RotaryEmbedding", "", 23, 0, like_input0},
    {"SwiGLU", "", 28, 0, swiglu_infer},
    {"LinearAttention", "", 27, 0, linear_attention_infer},
    {"CausalConvWithState", "", 27, 0, causal_conv_infer},
    {"FlexAttention", "ai.onnx.preview", 1, 0, flex_attention_infer},
    {0},
};
