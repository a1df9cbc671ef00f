/* src/cpu/ops/nn_extra.c: ONNX Attention (opsets 23, 24), RotaryEmbedding (23), SwiGLU (28),
 * LinearAttention (27), CausalConvWithState (27) and ai.onnx.preview FlexAttention (1).
 *
 * Attention follows the ONNX reference implementation (onnx/reference/ops/op_attention.py):
 *   - Q [B, Hq, Sq, D] / K [B, Hkv, Skv, D] / V [B, Hkv, Skv, Dv], or 3-D [B, S, H*D] with
 *     q_num_heads / kv_num_heads; the 3-D output is [B, Sq, Hq*Dv].
 *   - past_key/past_value are prepended along the sequence: present = concat(past, new),
 *     T = past + Skv keys in all.
 *   - scores = scale * Q K^T (scale defaults to 1/sqrt(D)); softcap > 0 maps s to
 *     softcap * tanh(s / softcap) before the bias is added, so -inf masks stay -inf.
 *   - bias = attn_mask (bool: true keeps, false gives -inf; float: added) broadcast to
 *     [B, Hq, Sq, T], its last dim padded to T with -inf; is_causal masks key j for query i
 *     when j > i + offset, offset = past length, else nonpad_kv_seqlen[b] - Sq, else 0;
 *     nonpad_kv_seqlen (24) masks keys j >= nonpad_kv_seqlen[b].
 *   - GQA: query head h reads kv head h / (Hq / Hkv).
 *   - qk_matmul_output: mode 0 and 1 the (softcapped) scaled scores, 2 the scores plus
 *     bias, 3 the softmax.
 *   A fully masked row has no defined softmax; we output zeros there (the robustness cases
 *   of the ONNX test suite expect finite output).
 * RotaryEmbedding: X [B, H, S, D] or [B, S, H*D] (num_heads); the first R dims of each
 *   head (rotary_embedding_dim, 0 = D) rotate as pairs (x[i], x[i + R/2]), or (x[2i],
 *   x[2i+1]) when interleaved, by cos/sin taken from the caches at position_ids[b, s]
 *   (caches [P, R/2]) or directly (caches [B, S, R/2]) without position_ids.
 *
 * SwiGLU: Y = A * sigmoid(alpha * A) * B, A and B of identical shape (no broadcasting).
 * LinearAttention (onnx/reference/ops/op_linear_attention.py): query [B, T, Hq*dk], key
 *   [B, T, Hkv*dk], value [B, T, Hkv*dv]; a recurrent state S [B, Hkv, dk, dv] (past_state or
 *   zeros) is updated per step t by update_rule:
 *     gated / gated_delta: S *= exp(g_t) (decay [B, T, Hkv] per head or [B, T, Hkv*dk] per
 *       key dim);
 *     delta / gated_delta: v_t = beta_t * (v_t - S^T (e_t * k_t)) with beta [B, T, Hkv or 1]
 *       and the optional erase_gate e [B, T, Hkv*dk] (else e = 1);
 *     then S += k_t (x) v_t, and o_t = scale * q_t^T S for every query head sharing the kv
 *     head (query head h reads kv head h / (Hq / Hkv)). scale 0 or absent = 1/sqrt(dk).
 *   Outputs: output [B, T, Hq*dv] and present_state (dtype of past_state, else of query).
 *   Decay must be given exactly for the gated rules and beta exactly for the delta rules.
 * CausalConvWithState (op_causal_conv_with_state.py): input [B, C, L], weight [C, 1, k],
 *   optional bias [C] and past_state [B, C, k-1] (zeros when absent). A depthwise valid
 *   convolution over concat(past_state, input); activation "silu"/"swish" applies
 *   x * sigmoid(x) after rounding the convolution to the I/O dtype, as the reference does.
 *   present_state = the last k-1 positions of that concatenation.
 * FlexAttention (ai.onnx.preview 1): Q [B, Hq, L, E], K [B, Hkv, S, E], V [B, Hkv, S, Ev];
 *   scores = scale * Q K^T (scale default 1/sqrt(E)), then the score_mod subgraph (one
 *   input: the whole [B, Hq, L, S] score tensor; one output of the same shape), softmax over
 *   S, the prob_mod subgraph likewise, and Y = probs V. GQA as in Attention. The tensors
 *   the subgraphs see are float32 (float64 for float64 inputs), the softmax precision of
 *   the op's function body. A row whose scores are all -inf gives NaN, as Softmax does.
 *
 * dtypes: float32 natively; float16/bfloat16/float64 staged through float32.
 *
 * Prepared kernels (cpu/kernel.h): prepare decodes each op's attributes into its own struct
 * (refusing an unknown update_rule, bad head counts of LinearAttention and an unknown
 * CausalConvWithState activation there); run reads it as k->state. A kernel run without
 * prepare (k->state NULL: the unit tests call run directly) decodes through the same
 * function at run time. kiln.Attention (fused.c's table) runs kiln_cpu_kiln_attention_run
 * with kiln_cpu_kiln_attention_prepare's state: a float32 fast path (see its section), else
 * attention_common.
 *
 * In place (KILN_OP_INPLACE): RotaryEmbedding (each rotated pair is read before either half
 * is written, the rest copied element by element), SwiGLU (y[i] from a[i], b[i]) and
 * CausalConvWithState (each (b, c) row is copied into the padded buffer before its outputs
 * are written) may write output 0 over input 0. The attention ops are not marked: their
 * outputs are laid out differently from Q in general, and reasoning about which head reads
 * what when is not worth the saving.
 */
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "cpu/attention_isa.h"
#include "cpu/ops/fused.h"
#include "cpu/sgemm.h"
#include "cpu/tensor_util.h"
#include "cpu/vmath.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ Attention */

/* Copies a 3-D [B, S, H*D] tensor into 4-D [B, H, S, D] layout at dst (or a 4-D one
 * verbatim). */
static void to_bhsd(const float *src, bool three_d, size_t B, size_t H, size_t S, size_t D,
                    float *dst)
{
    if (!three_d) {
        memcpy(dst, src, B * H * S * D * sizeof *dst);
        return;
    }
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++)
            for (size_t h = 0; h < H; h++)
                memcpy(dst + ((b * H + h) * S + s) * D, src + ((b * S + s) * H + h) * D,
                       D * sizeof *dst);
}

/* Inputs 0..2 (Q, K, V) of Attention and FlexAttention: required, of one float type. */
static kiln_status qkv_in(struct kiln_kctx *k, const struct kiln_tensor **q,
                          const struct kiln_tensor **kk, const struct kiln_tensor **v)
{
    KILN_TRY(kiln_in_req(k, 0, q));
    KILN_TRY(kiln_in_req(k, 1, kk));
    KILN_TRY(kiln_in_req(k, 2, v));
    kiln_dtype dt = (*q)->dtype;
    if (!kiln_dtype_is_real_float(dt) || (*kk)->dtype != dt || (*v)->dtype != dt)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "Q/K/V are %s/%s/%s; expected one float type",
                          kiln_dtype_name(dt), kiln_dtype_name((*kk)->dtype),
                          kiln_dtype_name((*v)->dtype));
    return KILN_OK;
}

/* One (batch, query head) of attention_common: scores, bias, softmax, times V. */
struct attn_job {
    const float *q4, *kp, *vp, *mf;
    float *yf, *qkf, *sc, *yh; /* sc, yh: per worker Sq * T and Sq * Dv floats */
    const struct kiln_tensor *nonpad;
    struct kiln_pool *pool;
    size_t B, Hq, Hkv, Sq, T, P, D, Dv, Tm;
    const size_t *ms;
    float scale, softcap;
    int64_t mode;
    bool three, causal, past;
};

static void attn_head(const struct attn_job *j, size_t b, size_t h, float *sc, float *yh)
{
    const size_t Sq = j->Sq, T = j->T, D = j->D, Dv = j->Dv, Hq = j->Hq, Tm = j->Tm;
    const size_t *ms = j->ms;
    int64_t npad = j->nonpad ? kiln_tensor_get_i64(j->nonpad, b) : (int64_t)T;
    int64_t offset = j->past ? (int64_t)j->P : j->nonpad ? npad - (int64_t)Sq : 0;
    size_t kvh = h / (Hq / j->Hkv);
    const float *qh = j->q4 + (b * Hq + h) * Sq * D;
    const float *kh = j->kp + (b * j->Hkv + kvh) * T * D;
    const float *vh = j->vp + (b * j->Hkv + kvh) * T * Dv;
    kiln_sgemm_par(j->pool, false, true, Sq, T, D, j->scale, qh, D, kh, D, 0.0f, sc, T);
    float *qko = j->qkf ? j->qkf + (b * Hq + h) * Sq * T : NULL;
    for (size_t i = 0; i < Sq; i++) {
        float *row = sc + i * T;
        if (j->softcap > 0)
            for (size_t c = 0; c < T; c++) row[c] = j->softcap * tanhf(row[c] / j->softcap);
        if (qko && j->mode <= 1) memcpy(qko + i * T, row, T * sizeof *row);
        const float *mrow = j->mf ? j->mf + b * ms[0] + h * ms[1] + i * ms[2] : NULL;
        for (size_t c = 0; c < T; c++) {
            float bias = 0;
            if (mrow) bias = c < Tm ? mrow[c * ms[3]] : -INFINITY;
            if (j->causal && (int64_t)c > (int64_t)i + offset) bias = -INFINITY;
            if (j->nonpad && (int64_t)c >= npad) bias = -INFINITY;
            row[c] += bias;
        }
        if (qko && j->mode == 2) memcpy(qko + i * T, row, T * sizeof *row);
        float mx = -INFINITY;
        for (size_t c = 0; c < T; c++)
            if (row[c] > mx) mx = row[c];
        double sum = 0;
        if (mx == -INFINITY) {
            memset(row, 0, T * sizeof *row); /* fully masked: see file comment */
        } else {
            for (size_t c = 0; c < T; c++) row[c] -= mx;
            kiln_vexp_f32(row, row, T);
            for (size_t c = 0; c < T; c++) sum += row[c];
            float inv = (float)(1.0 / sum);
            for (size_t c = 0; c < T; c++) row[c] *= inv;
        }
        if (qko && j->mode == 3) memcpy(qko + i * T, row, T * sizeof *row);
    }
    kiln_sgemm_par(j->pool, false, false, Sq, Dv, T, 1.0f, sc, T, vh, Dv, 0.0f, yh, Dv);
    for (size_t i = 0; i < Sq; i++) {
        float *dst = j->three ? j->yf + ((b * Sq + i) * Hq + h) * Dv
                              : j->yf + ((b * Hq + h) * Sq + i) * Dv;
        memcpy(dst, yh + i * Dv, Dv * sizeof *dst);
    }
}

static void attn_chunk(void *ctx, size_t u0, size_t u1, int worker)
{
    const struct attn_job *j = ctx;
    float *sc = j->sc + (size_t)worker * j->Sq * j->T;
    float *yh = j->yh + (size_t)worker * j->Sq * j->Dv;
    for (size_t u = u0; u < u1; u++) attn_head(j, u / j->Hq, u % j->Hq, sc, yh);
}

/* Attention's attributes: the head counts of 3-D inputs (ignored for 4-D ones), causal
 * masking, the scale (has_scale false: 1/sqrt(D)), softcap and qk_matmul_output_mode. */
struct attn_state {
    int64_t hq, hk, mode;
    bool causal, has_scale;
    float scale, softcap;
};

/* The attributes both Attention and kiln.Attention read under these names. */
static void decode_attn_common(struct kiln_kctx *k, struct attn_state *s)
{
    const struct kiln_attr *a = kiln_node_attr(k->node, "scale");
    s->has_scale = a && a->type == KILN_ATTR_FLOAT;
    s->scale = s->has_scale ? a->f : 0.0f;
    s->softcap = kiln_attr_f(k, "softcap", 0.0f);
    s->mode = kiln_attr_i(k, "qk_matmul_output_mode", 0);
}

static kiln_status decode_attention(struct kiln_kctx *k, struct attn_state *s)
{
    decode_attn_common(k, s);
    s->hq = kiln_attr_i(k, "q_num_heads", 0);
    s->hk = kiln_attr_i(k, "kv_num_heads", 0);
    s->causal = kiln_attr_i(k, "is_causal", 0) != 0;
    return KILN_OK;
}

/* kiln.Attention: one num_heads for Q and K/V, `causal`. */
static kiln_status decode_kiln_attention(struct kiln_kctx *k, struct attn_state *s)
{
    decode_attn_common(k, s);
    s->hq = s->hk = kiln_attr_i(k, "num_heads", 0);
    s->causal = kiln_attr_i(k, "causal", 0) != 0;
    return KILN_OK;
}

KILN_PREPARE_WITH(attention_prepare, struct attn_state, decode_attention)

/* Attention (ONNX) and kiln.Attention, with the attributes as decoded. */
static kiln_status attention_common(struct kiln_kctx *k, const struct attn_state *as)
{
    const int64_t hq = as->hq, hk = as->hk;
    const bool causal = as->causal;
    const struct kiln_tensor *q, *kk, *v, *mask = kiln_in(k, 3), *pk = kiln_in(k, 4),
                             *pv = kiln_in(k, 5), *nonpad = kiln_in(k, 6);
    KILN_TRY(qkv_in(k, &q, &kk, &v));
    if (q->rank != kk->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Q/K/V ranks %d/%d/%d; expected all 3 or all 4",
                          q->rank, kk->rank, v->rank);
    if ((pk == NULL) != (pv == NULL))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "past_key and past_value must come together");
    bool three = q->rank == 3;
    size_t B = (size_t)q->dims[0], Hq, Hkv, Sq, Skv, D, Dv;
    if (three) {
        if (hq < 1 || hk < 1 || q->dims[2] % hq || kk->dims[2] % hk || v->dims[2] % hk)
            return kiln_kfail(k, KILN_E_INVALID_MODEL,
                              "3-D inputs need q_num_heads/kv_num_heads dividing the hidden "
                              "sizes; got %lld/%lld for %lld/%lld/%lld",
                              (long long)hq, (long long)hk, (long long)q->dims[2],
                              (long long)kk->dims[2], (long long)v->dims[2]);
        Hq = (size_t)hq, Hkv = (size_t)hk;
        Sq = (size_t)q->dims[1], Skv = (size_t)kk->dims[1];
        D = (size_t)(q->dims[2] / hq), Dv = (size_t)(v->dims[2] / hk);
        if ((size_t)(kk->dims[2] / hk) != D || v->dims[1] != kk->dims[1])
            return kiln_kfail(k, KILN_E_INVALID_ARG, "K head size or V length does not match");
    } else {
        Hq = (size_t)q->dims[1], Hkv = (size_t)kk->dims[1];
        Sq = (size_t)q->dims[2], Skv = (size_t)kk->dims[2];
        D = (size_t)q->dims[3], Dv = (size_t)v->dims[3];
        if (kk->dims[3] != q->dims[3] || v->dims[1] != kk->dims[1] || v->dims[2] != kk->dims[2])
            return kiln_kfail(k, KILN_E_INVALID_ARG, "K/V shapes do not match Q");
    }
    if (kk->dims[0] != q->dims[0] || v->dims[0] != q->dims[0])
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Q/K/V batch sizes differ");
    if (Hkv == 0 || Hq % Hkv)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "q heads %zu not a multiple of kv heads %zu", Hq, Hkv);
    size_t P = 0;
    if (pk) {
        if (pk->rank != 4 || pv->rank != 4 || (size_t)pk->dims[0] != B ||
            (size_t)pk->dims[1] != Hkv || (size_t)pk->dims[3] != D || (size_t)pv->dims[0] != B ||
            (size_t)pv->dims[1] != Hkv || pv->dims[2] != pk->dims[2] || (size_t)pv->dims[3] != Dv)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "past_key/past_value shapes do not match "
                              "[%zu, %zu, P, %zu] / [.., %zu]", B, Hkv, D, Dv);
        P = (size_t)pk->dims[2];
    }
    size_t T = P + Skv;
    if (nonpad && (kiln_tensor_numel(nonpad) != B || !kiln_dtype_is_int(nonpad->dtype)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "nonpad_kv_seqlen must be %zu integers", B);

    float scale = as->has_scale ? as->scale : (float)(1.0 / sqrt((double)D));
    float softcap = as->softcap;
    int64_t mode = as->mode;

    /* Outputs. */
    struct kiln_tensor *y, *tpk = NULL, *tpv = NULL, *tqk = NULL;
    int64_t yd[4];
    if (three) {
        yd[0] = (int64_t)B, yd[1] = (int64_t)Sq, yd[2] = (int64_t)(Hq * Dv);
    } else {
        yd[0] = (int64_t)B, yd[1] = (int64_t)Hq, yd[2] = (int64_t)Sq, yd[3] = (int64_t)Dv;
    }
    KILN_TRY(kiln_out_tensor(k, 0, q->dtype, q->rank, yd, &y));
    int64_t pkd[4] = {(int64_t)B, (int64_t)Hkv, (int64_t)T, (int64_t)D};
    int64_t pvd[4] = {(int64_t)B, (int64_t)Hkv, (int64_t)T, (int64_t)Dv};
    int64_t qkd[4] = {(int64_t)B, (int64_t)Hq, (int64_t)Sq, (int64_t)T};
    if (kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor(k, 1, q->dtype, 4, pkd, &tpk));
    if (kiln_out_wanted(k, 2)) KILN_TRY(kiln_out_tensor(k, 2, q->dtype, 4, pvd, &tpv));
    if (kiln_out_wanted(k, 3)) KILN_TRY(kiln_out_tensor(k, 3, q->dtype, 4, qkd, &tqk));

    /* Staging: Q in [B, Hq, Sq, D]; present K/V in [B, Hkv, T, *]. */
    const float *qf, *kf, *vf, *pkf = NULL, *pvf = NULL;
    KILN_TRY(kiln_stage_f32(k, q, &qf));
    KILN_TRY(kiln_stage_f32(k, kk, &kf));
    KILN_TRY(kiln_stage_f32(k, v, &vf));
    if (pk) {
        KILN_TRY(kiln_stage_f32(k, pk, &pkf));
        KILN_TRY(kiln_stage_f32(k, pv, &pvf));
    }
    float *q4, *kp, *vp, *yf, *tmp;
    if (three) {
        KILN_TRY(kiln_scratch(k, B * Hq * Sq * D * sizeof(float) + 1, (void **)&q4));
        to_bhsd(qf, true, B, Hq, Sq, D, q4);
    } else {
        q4 = (float *)qf;
    }
    if (tpk) KILN_TRY(kiln_stage_out_f32(k, tpk, &kp));
    else KILN_TRY(kiln_scratch(k, B * Hkv * T * D * sizeof(float) + 1, (void **)&kp));
    if (tpv) KILN_TRY(kiln_stage_out_f32(k, tpv, &vp));
    else KILN_TRY(kiln_scratch(k, B * Hkv * T * Dv * sizeof(float) + 1, (void **)&vp));
    size_t newsz = B * Hkv * Skv * (D > Dv ? D : Dv);
    KILN_TRY(kiln_scratch(k, newsz * sizeof(float) + 1, (void **)&tmp));
    to_bhsd(kf, three, B, Hkv, Skv, D, tmp);
    for (size_t bh = 0; bh < B * Hkv; bh++) {
        if (P) memcpy(kp + bh * T * D, pkf + bh * P * D, P * D * sizeof(float));
        memcpy(kp + (bh * T + P) * D, tmp + bh * Skv * D, Skv * D * sizeof(float));
    }
    to_bhsd(vf, three, B, Hkv, Skv, Dv, tmp);
    for (size_t bh = 0; bh < B * Hkv; bh++) {
        if (P) memcpy(vp + bh * T * Dv, pvf + bh * P * Dv, P * Dv * sizeof(float));
        memcpy(vp + (bh * T + P) * Dv, tmp + bh * Skv * Dv, Skv * Dv * sizeof(float));
    }

    /* Mask: staged to float (bool -> 0 / -inf), strides for broadcasting to [B,Hq,Sq,Tm]. */
    const float *mf = NULL;
    size_t ms[4] = {0}, Tm = 0;
    if (mask) {
        if (mask->rank < 1 || mask->rank > 4)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "attn_mask has rank %d; expected 1..4", mask->rank);
        size_t n = kiln_tensor_numel(mask);
        float *m;
        KILN_TRY(kiln_scratch(k, n * sizeof *m + 1, (void **)&m));
        for (size_t i = 0; i < n; i++)
            m[i] = mask->dtype == KILN_DTYPE_BOOL ? (((const uint8_t *)mask->data)[i] ? 0.0f : -INFINITY)
                                                  : (float)kiln_tensor_get_f64(mask, i);
        mf = m;
        Tm = (size_t)mask->dims[mask->rank - 1];
        if (Tm > T)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "attn_mask has %zu columns; at most %zu keys", Tm, T);
        size_t full[4] = {B, Hq, Sq, Tm}, st = 1;
        for (int d = mask->rank - 1; d >= 0; d--) {
            int od = 4 - mask->rank + d;
            size_t md = (size_t)mask->dims[d];
            if (md != 1 && md != full[od])
                return kiln_kfail(k, KILN_E_INVALID_ARG,
                                  "attn_mask dim %d is %zu; expected 1 or %zu", d, md, full[od]);
            ms[od] = md == 1 ? 0 : st;
            st *= md;
        }
    }

    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    float *qkf = NULL, *sc, *yh;
    if (tqk) KILN_TRY(kiln_stage_out_f32(k, tqk, &qkf));
    /* (batch, head) pairs side by side, each with its own scores; a single pair (or a
     * pool of one) runs its two products split over the pool instead. */
    size_t threads = (size_t)kiln_pool_threads(k->pool);
    KILN_TRY(kiln_scratch(k, threads * Sq * T * sizeof(float) + 1, (void **)&sc));
    KILN_TRY(kiln_scratch(k, threads * Sq * Dv * sizeof(float) + 1, (void **)&yh));
    struct attn_job j = {q4, kp, vp, mf, yf, qkf, sc, yh, nonpad, k->pool, B, Hq, Hkv, Sq, T,
                         P, D, Dv, Tm, ms, scale, softcap, mode, three, causal, pk != NULL};
    kiln_pool_for(k->pool, B * Hq, kiln_pool_grain(Sq * T * (D + Dv), 65536), attn_chunk, &j);
    kiln_unstage_f32(y, yf);
    if (tpk) kiln_unstage_f32(tpk, kp);
    if (tpv) kiln_unstage_f32(tpv, vp);
    if (tqk) kiln_unstage_f32(tqk, qkf);
    return KILN_OK;
}

static kiln_status attention_run(struct kiln_kctx *k)
{
    struct attn_state dec;
    const struct attn_state *as;
    KILN_STATE_OR_DECODE(k, decode_attention, dec, as);
    return attention_common(k, as);
}

/* ------------------------------------------------------------------ kiln.Attention */

/* kiln.Attention on float32 (the common case) runs without staging: each task is one block
 * of KATTN_QB query rows of one (batch, head), whose scores Q_h K_h^T come from kiln_sgemm
 * over strided views of the [B, S, H*D] inputs (the past keys, when given, as a second
 * product into the first P columns), then kiln_attn_softmax_row (cpu/attention_isa.h) adds
 * the mask and normalizes each row, and probs V_h goes straight into Y's [B, S, H*Dv] rows
 * (past values first, then the new ones accumulated). The blocks are fixed by the shapes
 * alone, so results do not depend on the thread count. present_key / present_value (when
 * wanted) are written by each (batch, head)'s first block; no task reads them. Scratch:
 * KATTN_QB x T scores per thread, sized at prepare when the shapes are known. Anything else
 * (other dtypes, a bool mask, shapes the fast path does not accept) runs attention_common,
 * which also reports the errors. */
#define KATTN_QB 128 /* query rows per task */

struct kattn_job {
    const float *q, *k, *v, *pk, *pv, *mf;
    float *y, *prk, *prv, *sc;
    size_t B, H, Sq, Skv, P, T, D, Dv, Tm, nqb;
    size_t ms[3];
    float scale;
    bool causal;
    void (*row)(float *x, const float *m, size_t n, size_t T);
};

static void kattn_block(const struct kattn_job *j, size_t u, float *sc)
{
    const size_t H = j->H, D = j->D, Dv = j->Dv, T = j->T, P = j->P, Skv = j->Skv;
    size_t bh = u / j->nqb, i0 = (u % j->nqb) * KATTN_QB, b = bh / H, h = bh % H;
    size_t rows = j->Sq - i0 < KATTN_QB ? j->Sq - i0 : KATTN_QB;
    const float *qh = j->q + (b * j->Sq + i0) * H * D + h * D;
    const float *kh = j->k + b * Skv * H * D + h * D;
    const float *vh = j->v + b * Skv * H * Dv + h * Dv;
    const float *pkh = j->pk ? j->pk + bh * P * D : NULL;
    const float *pvh = j->pv ? j->pv + bh * P * Dv : NULL;
    if (i0 == 0) {
        if (j->prk) {
            float *dst = j->prk + bh * T * D;
            if (P) memcpy(dst, pkh, P * D * sizeof *dst);
            for (size_t s = 0; s < Skv; s++)
                memcpy(dst + (P + s) * D, kh + s * H * D, D * sizeof *dst);
        }
        if (j->prv) {
            float *dst = j->prv + bh * T * Dv;
            if (P) memcpy(dst, pvh, P * Dv * sizeof *dst);
            for (size_t s = 0; s < Skv; s++)
                memcpy(dst + (P + s) * Dv, vh + s * H * Dv, Dv * sizeof *dst);
        }
    }
    if (P) kiln_sgemm(false, true, rows, P, D, j->scale, qh, H * D, pkh, D, 0.0f, sc, T);
    kiln_sgemm(false, true, rows, Skv, D, j->scale, qh, H * D, kh, H * D, 0.0f, sc + P, T);
    for (size_t r = 0; r < rows; r++) {
        size_t i = i0 + r, n = T;
        if (j->causal && i + P + 1 < n) n = i + P + 1; /* key c masked when c > i + P */
        const float *mrow = NULL;
        if (j->mf) {
            mrow = j->mf + b * j->ms[0] + h * j->ms[1] + i * j->ms[2];
            if (j->Tm < n) n = j->Tm; /* a short mask pads with -inf */
        }
        j->row(sc + r * T, mrow, n, T);
    }
    float *yh = j->y + (b * j->Sq + i0) * H * Dv + h * Dv;
    if (P) kiln_sgemm(false, false, rows, Dv, P, 1.0f, sc, T, pvh, Dv, 0.0f, yh, H * Dv);
    kiln_sgemm(false, false, rows, Dv, Skv, 1.0f, sc + P, T, vh, H * Dv, P ? 1.0f : 0.0f, yh,
               H * Dv);
}

static void kattn_chunk(void *ctx, size_t u0, size_t u1, int worker)
{
    const struct kattn_job *j = ctx;
    size_t rows = j->Sq < KATTN_QB ? j->Sq : KATTN_QB;
    float *sc = j->sc + (size_t)worker * rows * j->T;
    for (size_t u = u0; u < u1; u++) kattn_block(j, u, sc);
}

static bool known_dims(const struct kiln_vtype *t, int rank, int64_t *dims)
{
    if (!t || t->type.kind != KILN_TYPE_TENSOR || t->type.rank != rank) return false;
    for (int d = 0; d < rank; d++)
        if ((dims[d] = t->type.dims[d].value) < 0) return false;
    return true;
}

static bool is_f32(const struct kiln_tensor *t)
{
    return !t || t->dtype == KILN_DTYPE_F32;
}

/* The float32 fast path; *done false (nothing written) when it does not apply. */
static kiln_status kattn_fast(struct kiln_kctx *k, const struct attn_state *as, bool *done)
{
    *done = false;
    const struct kiln_tensor *q = kiln_in(k, 0), *kk = kiln_in(k, 1), *v = kiln_in(k, 2),
                             *mask = kiln_in(k, 3), *pk = kiln_in(k, 4), *pv = kiln_in(k, 5);
    if (!q || !kk || !v || !is_f32(q) || !is_f32(kk) || !is_f32(v) || !is_f32(mask) ||
        !is_f32(pk) || !is_f32(pv) || (pk == NULL) != (pv == NULL) || kk->rank != 3 ||
        v->rank != 3 || as->hq < 1 || as->softcap > 0)
        return KILN_OK;
    size_t H = (size_t)as->hq, B = (size_t)q->dims[0], Sq = (size_t)q->dims[1];
    size_t Skv = (size_t)kk->dims[1];
    if (q->dims[2] % as->hq || v->dims[2] % as->hq || kk->dims[2] != q->dims[2] ||
        kk->dims[0] != q->dims[0] || v->dims[0] != q->dims[0] || v->dims[1] != kk->dims[1])
        return KILN_OK;
    size_t D = (size_t)q->dims[2] / H, Dv = (size_t)v->dims[2] / H, P = 0;
    if (pk) {
        if (pk->rank != 4 || pv->rank != 4 || (size_t)pk->dims[0] != B ||
            (size_t)pk->dims[1] != H || (size_t)pk->dims[3] != D || (size_t)pv->dims[0] != B ||
            (size_t)pv->dims[1] != H || pv->dims[2] != pk->dims[2] || (size_t)pv->dims[3] != Dv)
            return KILN_OK;
        P = (size_t)pk->dims[2];
    }
    size_t T = P + Skv, Tm = 0, ms[3] = {0};
    if (Sq == 0) return KILN_OK; /* no query blocks would write the present K/V */
    if (mask) {
        if (mask->rank < 1 || mask->rank > 4 || kiln_tensor_numel(mask) == 0) return KILN_OK;
        Tm = (size_t)mask->dims[mask->rank - 1];
        size_t full[4] = {B, H, Sq, Tm}, st = Tm;
        if (Tm > T) return KILN_OK;
        for (int d = mask->rank - 2; d >= 0; d--) {
            int od = 4 - mask->rank + d;
            size_t md = (size_t)mask->dims[d];
            if (md != 1 && md != full[od]) return KILN_OK;
            ms[od] = md == 1 ? 0 : st;
            st *= md;
        }
    }
    *done = true;
    struct kiln_tensor *y, *tpk = NULL, *tpv = NULL;
    int64_t yd[3] = {(int64_t)B, (int64_t)Sq, (int64_t)(H * Dv)};
    int64_t pkd[4] = {(int64_t)B, (int64_t)H, (int64_t)T, (int64_t)D};
    int64_t pvd[4] = {(int64_t)B, (int64_t)H, (int64_t)T, (int64_t)Dv};
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_F32, 3, yd, &y));
    if (kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor_raw(k, 1, KILN_DTYPE_F32, 4, pkd, &tpk));
    if (kiln_out_wanted(k, 2)) KILN_TRY(kiln_out_tensor_raw(k, 2, KILN_DTYPE_F32, 4, pvd, &tpv));
    size_t threads = (size_t)kiln_pool_threads(k->pool), rows = Sq < KATTN_QB ? Sq : KATTN_QB;
    float *sc;
    KILN_TRY(kiln_scratch_raw(k, threads * rows * T * sizeof *sc + 1, (void **)&sc));
    struct kattn_job j = {
        .q = q->data, .k = kk->data, .v = v->data, .pk = pk ? pk->data : NULL,
        .pv = pv ? pv->data : NULL, .mf = mask ? mask->data : NULL, .y = y->data,
        .prk = tpk ? tpk->data : NULL, .prv = tpv ? tpv->data : NULL, .sc = sc, .B = B, .H = H,
        .Sq = Sq, .Skv = Skv, .P = P, .T = T, .D = D, .Dv = Dv, .Tm = Tm,
        .nqb = (Sq + KATTN_QB - 1) / KATTN_QB, .ms = {ms[0], ms[1], ms[2]},
        .scale = as->has_scale ? as->scale : (float)(1.0 / sqrt((double)D)),
        .causal = as->causal, .row = KILN_ISA_SELECT(kiln_attn_softmax_row_isa)};
    kiln_pool_for(k->pool, B * H * j.nqb, kiln_pool_grain(rows * T * (D + Dv), 65536), kattn_chunk, &j);
    return KILN_OK;
}

/* For fused.c (fused.h): decodes the node's attributes now, whatever k->state holds. */

kiln_status kiln_cpu_kiln_attention_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *q;
    KILN_TRY(kiln_in_req(k, 0, &q));
    if (q->rank != 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input Q has rank %d; expected 3 ([B, S, H*D])",
                          q->rank);
    if (k->n_in > 6 || k->n_out > 3)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "has %zu inputs and %zu outputs; expected at most 6 and 3", k->n_in,
                          k->n_out);
    struct attn_state dec;
    const struct attn_state *as;
    KILN_STATE_OR_DECODE(k, decode_kiln_attention, dec, as);
    bool done;
    KILN_TRY(kattn_fast(k, as, &done));
    return done ? KILN_OK : attention_common(k, as);
}

/* Decodes the attributes and sizes the fast path's scratch when Q, K (and the past keys)
 * have known shapes. */
kiln_status kiln_cpu_kiln_attention_prepare(struct kiln_kprep *p)
{
    struct attn_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    KILN_TRY(decode_kiln_attention(&p->kc, s));
    p->state = s;
    int64_t qd[3], kd[3], pd[4] = {0, 0, 0, 0};
    bool past = p->kc.n_in > 4 && p->kc.node->inputs[4][0];
    if (p->in && known_dims(p->in[0], 3, qd) && known_dims(p->in[1], 3, kd) &&
        (!past || known_dims(p->in[4], 4, pd))) {
        size_t rows = (size_t)qd[1] < KATTN_QB ? (size_t)qd[1] : KATTN_QB;
        size_t T = (size_t)(pd[2] + kd[1]);
        p->scratch_bytes = ((size_t)p->threads * rows * T * sizeof(float) + 64) & ~(size_t)63;
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ RotaryEmbedding */

/* RotaryEmbedding: interleaved, rotary_embedding_dim (0: the head size), num_heads (3-D). */
struct rotary_state {
    bool inter;
    int64_t R, num_heads;
};

static kiln_status decode_rotary(struct kiln_kctx *k, struct rotary_state *s)
{
    s->inter = kiln_attr_i(k, "interleaved", 0) != 0;
    s->R = kiln_attr_i(k, "rotary_embedding_dim", 0);
    s->num_heads = kiln_attr_i(k, "num_heads", 0);
    return KILN_OK;
}

KILN_PREPARE_WITH(rotary_prepare, struct rotary_state, decode_rotary)

static kiln_status rotary_run(struct kiln_kctx *k)
{
    struct rotary_state dec;
    const struct rotary_state *rs;
    KILN_STATE_OR_DECODE(k, decode_rotary, dec, rs);
    const struct kiln_tensor *x, *cc, *scache, *pos = kiln_in(k, 3);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &cc));
    KILN_TRY(kiln_in_req(k, 2, &scache));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    if (x->rank != 3 && x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected 3 or 4", x->rank);
    bool inter = rs->inter;
    int64_t R = rs->R;
    size_t B = (size_t)x->dims[0], H, S, D;
    bool three = x->rank == 3;
    if (three) {
        int64_t nh = rs->num_heads;
        if (nh < 1 || x->dims[2] % nh)
            return kiln_kfail(k, KILN_E_INVALID_MODEL,
                              "3-D input needs num_heads dividing %lld; got %lld",
                              (long long)x->dims[2], (long long)nh);
        H = (size_t)nh, S = (size_t)x->dims[1], D = (size_t)(x->dims[2] / nh);
    } else {
        H = (size_t)x->dims[1], S = (size_t)x->dims[2], D = (size_t)x->dims[3];
    }
    if (R == 0) R = (int64_t)D;
    if (R < 0 || (size_t)R > D || R % 2)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "rotary_embedding_dim %lld must be even and <= head size %zu",
                          (long long)R, D);
    size_t half = (size_t)R / 2;
    if (cc->dims[cc->rank - 1] != (int64_t)half || scache->dims[scache->rank - 1] != (int64_t)half)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "cos/sin caches must end in %zu", half);
    size_t ncache = kiln_tensor_numel(cc) / (half ? half : 1);
    if (kiln_tensor_numel(scache) != kiln_tensor_numel(cc))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "cos_cache and sin_cache shapes differ");
    if (pos) {
        if (kiln_tensor_numel(pos) != B * S)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "position_ids must be [%zu, %zu]", B, S);
    } else if (ncache != B * S) {
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "without position_ids the caches must be [%zu, %zu, %zu]", B, S, half);
    }
    const float *xf, *cf, *sf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_f32(k, cc, &cf));
    KILN_TRY(kiln_stage_f32(k, scache, &sf));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    for (size_t b = 0; b < B; b++)
        for (size_t s = 0; s < S; s++) {
            size_t row = b * S + s;
            if (pos) {
                int64_t p = kiln_tensor_get_i64(pos, row);
                if (p < 0 || (size_t)p >= ncache)
                    return kiln_kfail(k, KILN_E_INVALID_ARG,
                                      "position_ids value %lld out of range [0, %zu)", (long long)p,
                                      ncache);
                row = (size_t)p;
            }
            const float *cr = cf + row * half, *sr = sf + row * half;
            for (size_t h = 0; h < H; h++) {
                size_t off = three ? ((b * S + s) * H + h) * D : ((b * H + h) * S + s) * D;
                const float *xi = xf + off;
                float *yo = yf + off;
                for (size_t i = 0; i < half; i++) {
                    size_t i1 = inter ? 2 * i : i, i2 = inter ? 2 * i + 1 : i + half;
                    float x1 = xi[i1], x2 = xi[i2];
                    yo[i1] = cr[i] * x1 - sr[i] * x2;
                    yo[i2] = sr[i] * x1 + cr[i] * x2;
                }
                for (size_t i = (size_t)R; i < D; i++) yo[i] = xi[i];
            }
        }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ SwiGLU */

static bool same_shape(const struct kiln_tensor *a, const struct kiln_tensor *b)
{
    return a->rank == b->rank && memcmp(a->dims, b->dims, (size_t)a->rank * sizeof *a->dims) == 0;
}

/* SwiGLU's alpha. */
struct alpha_state {
    float alpha;
};

static kiln_status decode_swiglu(struct kiln_kctx *k, struct alpha_state *s)
{
    s->alpha = kiln_attr_f(k, "alpha", 1.0f);
    return KILN_OK;
}

KILN_PREPARE_WITH(swiglu_prepare, struct alpha_state, decode_swiglu)

static kiln_status swiglu_run(struct kiln_kctx *k)
{
    struct alpha_state dec;
    const struct alpha_state *as;
    KILN_STATE_OR_DECODE(k, decode_swiglu, dec, as);
    const struct kiln_tensor *a, *b;
    KILN_TRY(kiln_in_req(k, 0, &a));
    KILN_TRY(kiln_in_req(k, 1, &b));
    if (!kiln_dtype_is_real_float(a->dtype) || b->dtype != a->dtype)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "inputs A/B are %s/%s; expected one float type",
                          kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype));
    if (!same_shape(a, b)) {
        char s1[64], s2[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "inputs A %s and B %s must have identical shapes",
                          kiln_shape_str(a->rank, a->dims, s1, sizeof s1),
                          kiln_shape_str(b->rank, b->dims, s2, sizeof s2));
    }
    float alpha = as->alpha;
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, a->dtype, a->rank, a->dims, &y));
    const float *af, *bf;
    float *yf;
    KILN_TRY(kiln_stage_f32(k, a, &af));
    KILN_TRY(kiln_stage_f32(k, b, &bf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    size_t n = kiln_tensor_numel(a);
    for (size_t i = 0; i < n; i++) yf[i] = af[i] / (1.0f + expf(-alpha * af[i])) * bf[i];
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ LinearAttention */

/* LinearAttention: the update rule (gating: decays the state; delta: the delta rule; rule:
 * its name), the head counts and scale (0: 1/sqrt(dk)). */
struct linattn_state {
    bool gating, delta;
    const char *rule;
    int64_t hq, hkv;
    float scale;
};

static kiln_status decode_linattn(struct kiln_kctx *k, struct linattn_state *s)
{
    const char *rule = kiln_attr_s(k, "update_rule", "gated_delta");
    s->rule = rule;
    if (strcmp(rule, "linear") == 0) s->gating = false, s->delta = false;
    else if (strcmp(rule, "gated") == 0) s->gating = true, s->delta = false;
    else if (strcmp(rule, "delta") == 0) s->gating = false, s->delta = true;
    else if (strcmp(rule, "gated_delta") == 0) s->gating = true, s->delta = true;
    else
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "update_rule '%s' is not linear, gated, delta or gated_delta", rule);
    s->hq = kiln_attr_i(k, "q_num_heads", 0);
    s->hkv = kiln_attr_i(k, "kv_num_heads", 0);
    if (s->hq < 1 || s->hkv < 1 || s->hq % s->hkv)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "q_num_heads %lld must be a positive multiple of kv_num_heads %lld",
                          (long long)s->hq, (long long)s->hkv);
    s->scale = kiln_attr_f(k, "scale", 0.0f);
    return KILN_OK;
}

KILN_PREPARE_WITH(linattn_prepare, struct linattn_state, decode_linattn)

static kiln_status linear_attention_run(struct kiln_kctx *k)
{
    struct linattn_state dec;
    const struct linattn_state *ls;
    KILN_STATE_OR_DECODE(k, decode_linattn, dec, ls);
    const struct kiln_tensor *q, *kk, *v, *past = kiln_in(k, 3), *decay = kiln_in(k, 4),
                             *beta = kiln_in(k, 5), *erase = kiln_in(k, 6);
    KILN_TRY(kiln_in_req(k, 0, &q));
    KILN_TRY(kiln_in_req(k, 1, &kk));
    KILN_TRY(kiln_in_req(k, 2, &v));
    const struct kiln_tensor *all[7] = {q, kk, v, past, decay, beta, erase};
    static const char *const names[7] = {"query", "key", "value", "past_state", "decay", "beta",
                                         "erase_gate"};
    for (int i = 0; i < 7; i++)
        if (all[i] && !kiln_dtype_is_real_float(all[i]->dtype))
            return kiln_kfail(k, KILN_E_UNSUPPORTED, "input %s is %s; expected a float type",
                              names[i], kiln_dtype_name(all[i]->dtype));
    const char *rule = ls->rule;
    const bool gating = ls->gating, delta = ls->delta;
    if (gating != (decay != NULL))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "update_rule '%s' %s the decay input", rule,
                          gating ? "requires" : "forbids");
    if (delta != (beta != NULL))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "update_rule '%s' %s the beta input", rule,
                          delta ? "requires" : "forbids");
    if (erase && !delta)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "update_rule '%s' forbids the erase_gate input",
                          rule);
    const int64_t hq = ls->hq, hkv = ls->hkv;
    for (int i = 0; i < 3; i++)
        if (all[i]->rank != 3)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %s has rank %d; expected 3 (B, T, H*D)",
                              names[i], all[i]->rank);
    int64_t B = q->dims[0], T = q->dims[1];
    if (kk->dims[0] != B || kk->dims[1] != T || v->dims[0] != B || v->dims[1] != T)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "query/key/value batch and length differ");
    if (q->dims[2] % hq || v->dims[2] % hkv)
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "query width %lld / value width %lld not divisible by %lld / %lld heads",
                          (long long)q->dims[2], (long long)v->dims[2], (long long)hq,
                          (long long)hkv);
    int64_t dk = q->dims[2] / hq, dv = v->dims[2] / hkv;
    if (kk->dims[2] != hkv * dk)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "key width is %lld; expected %lld (kv heads x dk)",
                          (long long)kk->dims[2], (long long)(hkv * dk));
    bool per_dim = false;
    if (decay) {
        if (decay->rank != 3 || decay->dims[0] != B || decay->dims[1] != T ||
            (decay->dims[2] != hkv && decay->dims[2] != hkv * dk))
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "input decay must be [%lld, %lld, %lld or %lld]", (long long)B,
                              (long long)T, (long long)hkv, (long long)(hkv * dk));
        per_dim = decay->dims[2] == hkv * dk && hkv * dk != hkv;
    }
    if (beta && (beta->rank != 3 || beta->dims[0] != B || beta->dims[1] != T ||
                 (beta->dims[2] != hkv && beta->dims[2] != 1)))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input beta must be [%lld, %lld, %lld or 1]",
                          (long long)B, (long long)T, (long long)hkv);
    if (erase && (erase->rank != 3 || erase->dims[0] != B || erase->dims[1] != T ||
                  erase->dims[2] != hkv * dk))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input erase_gate must be [%lld, %lld, %lld]",
                          (long long)B, (long long)T, (long long)(hkv * dk));
    int64_t sd[4] = {B, hkv, dk, dv}, owidth, ssz_i;
    if (__builtin_mul_overflow(hq, dv, &owidth) || __builtin_mul_overflow(B, hkv, &ssz_i) ||
        __builtin_mul_overflow(ssz_i, dk, &ssz_i) ||
        __builtin_mul_overflow(ssz_i, dv, &ssz_i) || (uint64_t)ssz_i > KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_LIMIT, "state [%lld, %lld, %lld, %lld] or output width is too "
                          "large", (long long)B, (long long)hkv, (long long)dk, (long long)dv);
    if (past && (past->rank != 4 || memcmp(past->dims, sd, sizeof sd))) {
        char s1[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input past_state is %s; expected [%lld, %lld, "
                          "%lld, %lld]", kiln_shape_str(past->rank, past->dims, s1, sizeof s1),
                          (long long)B, (long long)hkv, (long long)dk, (long long)dv);
    }
    float scale = ls->scale;
    if (scale == 0.0f) scale = (float)(1.0 / sqrt((double)dk));

    struct kiln_tensor *out, *pres = NULL;
    int64_t od[3] = {B, T, owidth};
    KILN_TRY(kiln_out_tensor(k, 0, q->dtype, 3, od, &out));
    if (kiln_out_wanted(k, 1))
        KILN_TRY(kiln_out_tensor(k, 1, past ? past->dtype : q->dtype, 4, sd, &pres));
    const float *qf, *kf, *vf, *gf = NULL, *bf = NULL, *ef = NULL, *pf = NULL;
    KILN_TRY(kiln_stage_f32(k, q, &qf));
    KILN_TRY(kiln_stage_f32(k, kk, &kf));
    KILN_TRY(kiln_stage_f32(k, v, &vf));
    if (decay) KILN_TRY(kiln_stage_f32(k, decay, &gf));
    if (beta) KILN_TRY(kiln_stage_f32(k, beta, &bf));
    if (erase) KILN_TRY(kiln_stage_f32(k, erase, &ef));
    if (past) KILN_TRY(kiln_stage_f32(k, past, &pf));
    float *of, *S, *vt, *ke;
    KILN_TRY(kiln_stage_out_f32(k, out, &of));
    size_t ssz = (size_t)ssz_i;
    if (pres) KILN_TRY(kiln_stage_out_f32(k, pres, &S));
    else KILN_TRY(kiln_scratch(k, ssz * sizeof *S + 1, (void **)&S));
    if (pf) memcpy(S, pf, ssz * sizeof *S);
    else memset(S, 0, ssz * sizeof *S);
    KILN_TRY(kiln_scratch(k, (size_t)dv * sizeof *vt + 1, (void **)&vt));
    KILN_TRY(kiln_scratch(k, (size_t)dk * sizeof *ke + 1, (void **)&ke));

    size_t Dk = (size_t)dk, Dv = (size_t)dv, Hq = (size_t)hq, Hkv = (size_t)hkv;
    size_t grp = Hq / Hkv, glast = decay ? (size_t)decay->dims[2] : 0;
    size_t blast = beta ? (size_t)beta->dims[2] : 0;
    for (size_t b = 0; b < (size_t)B; b++)
        for (size_t h = 0; h < Hkv; h++) {
            float *Sh = S + (b * Hkv + h) * Dk * Dv;
            for (size_t t = 0; t < (size_t)T; t++) {
                size_t bt = b * (size_t)T + t;
                const float *kt = kf + (bt * Hkv + h) * Dk, *v0 = vf + (bt * Hkv + h) * Dv;
                if (gating) {
                    const float *g = gf + bt * glast + (per_dim ? h * Dk : h);
                    for (size_t d = 0; d < Dk; d++) {
                        float e = expf(g[per_dim ? d : 0]);
                        for (size_t m = 0; m < Dv; m++) Sh[d * Dv + m] *= e;
                    }
                }
                if (delta) {
                    const float *eg = ef ? ef + (bt * Hkv + h) * Dk : NULL;
                    for (size_t d = 0; d < Dk; d++) ke[d] = eg ? eg[d] * kt[d] : kt[d];
                    float bb = bf[bt * blast + (blast == 1 ? 0 : h)];
                    for (size_t m = 0; m < Dv; m++) {
                        float r = 0;
                        for (size_t d = 0; d < Dk; d++) r += Sh[d * Dv + m] * ke[d];
                        vt[m] = bb * (v0[m] - r);
                    }
                } else {
                    memcpy(vt, v0, Dv * sizeof *vt);
                }
                for (size_t d = 0; d < Dk; d++)
                    for (size_t m = 0; m < Dv; m++) Sh[d * Dv + m] += kt[d] * vt[m];
                for (size_t j = 0; j < grp; j++) {
                    size_t hh = h * grp + j;
                    const float *qt = qf + (bt * Hq + hh) * Dk;
                    float *ot = of + (bt * Hq + hh) * Dv;
                    for (size_t m = 0; m < Dv; m++) {
                        float acc = 0;
                        for (size_t d = 0; d < Dk; d++) acc += qt[d] * Sh[d * Dv + m];
                        ot[m] = scale * acc;
                    }
                }
            }
        }
    kiln_unstage_f32(out, of);
    if (pres) kiln_unstage_f32(pres, S);
    return KILN_OK;
}

/* ------------------------------------------------------------------ CausalConvWithState */

/* x rounded to dt's precision (float16/bfloat16); other types unchanged. */
static float round_to(kiln_dtype dt, float x)
{
    if (dt == KILN_DTYPE_F16) return kiln_f16_to_f32(kiln_f32_to_f16(x));
    if (dt == KILN_DTYPE_BF16) return kiln_bf16_to_f32(kiln_f32_to_bf16(x));
    return x;
}

/* CausalConvWithState: whether the activation is silu/swish (else none). */
struct cconv_state {
    bool silu;
};

static kiln_status decode_cconv(struct kiln_kctx *k, struct cconv_state *s)
{
    const char *act = kiln_attr_s(k, "activation", "none");
    s->silu = strcmp(act, "silu") == 0 || strcmp(act, "swish") == 0;
    if (!s->silu && strcmp(act, "none") != 0)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "activation '%s' is not none, silu or swish",
                          act);
    return KILN_OK;
}

KILN_PREPARE_WITH(cconv_prepare, struct cconv_state, decode_cconv)

static kiln_status causal_conv_run(struct kiln_kctx *k)
{
    struct cconv_state dec;
    const struct cconv_state *cs;
    KILN_STATE_OR_DECODE(k, decode_cconv, dec, cs);
    const struct kiln_tensor *x, *w, *bias = kiln_in(k, 2), *past = kiln_in(k, 3);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &w));
    if (!kiln_dtype_is_real_float(x->dtype) || w->dtype != x->dtype ||
        (bias && bias->dtype != x->dtype) || (past && past->dtype != x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED,
                          "input is %s; expected a float type shared by weight, bias, past_state",
                          kiln_dtype_name(x->dtype));
    const bool silu = cs->silu;
    if (x->rank != 3)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input has rank %d; expected 3 (B, C, L)",
                          x->rank);
    int64_t B = x->dims[0], C = x->dims[1], L = x->dims[2];
    if (w->rank != 3 || w->dims[0] != C || w->dims[1] != 1 || w->dims[2] < 1) {
        char s1[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input weight is %s; expected [%lld, 1, k >= 1]",
                          kiln_shape_str(w->rank, w->dims, s1, sizeof s1), (long long)C);
    }
    int64_t kw = w->dims[2];
    if (bias && (bias->rank != 1 || bias->dims[0] != C))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input bias must be [%lld]", (long long)C);
    int64_t pd[3] = {B, C, kw - 1};
    if (past && (past->rank != 3 || memcmp(past->dims, pd, sizeof pd))) {
        char s1[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input past_state is %s; expected [%lld, %lld, %lld]",
                          kiln_shape_str(past->rank, past->dims, s1, sizeof s1), (long long)B,
                          (long long)C, (long long)(kw - 1));
    }
    struct kiln_tensor *y, *pres = NULL;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, 3, x->dims, &y));
    if (kiln_out_wanted(k, 1)) KILN_TRY(kiln_out_tensor(k, 1, x->dtype, 3, pd, &pres));
    const float *xf, *wf, *bf = NULL, *pf = NULL;
    float *yf, *sf = NULL, *pad;
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_f32(k, w, &wf));
    if (bias) KILN_TRY(kiln_stage_f32(k, bias, &bf));
    if (past) KILN_TRY(kiln_stage_f32(k, past, &pf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    if (pres) KILN_TRY(kiln_stage_out_f32(k, pres, &sf));
    size_t Lp = (size_t)(L + kw - 1), K1 = (size_t)(kw - 1), Ls = (size_t)L;
    KILN_TRY(kiln_scratch(k, Lp * sizeof *pad + 1, (void **)&pad));
    for (size_t bc = 0; bc < (size_t)(B * C); bc++) {
        size_t c = bc % (size_t)C;
        if (pf) memcpy(pad, pf + bc * K1, K1 * sizeof *pad);
        else memset(pad, 0, K1 * sizeof *pad);
        memcpy(pad + K1, xf + bc * Ls, Ls * sizeof *pad);
        const float *wc = wf + c * (size_t)kw;
        for (size_t l = 0; l < Ls; l++) {
            float acc = bf ? bf[c] : 0.0f;
            for (size_t j = 0; j < (size_t)kw; j++) acc += wc[j] * pad[l + j];
            if (silu) {
                acc = round_to(x->dtype, acc);
                acc = acc / (1.0f + expf(-acc));
            }
            yf[bc * Ls + l] = acc;
        }
        if (sf) memcpy(sf + bc * K1, pad + Ls, K1 * sizeof *sf);
    }
    kiln_unstage_f32(y, yf);
    if (pres) kiln_unstage_f32(pres, sf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ FlexAttention */

/* Runs a score_mod/prob_mod subgraph on buf (dims [B, H, L, S]) in place: the subgraph
 * sees one tensor of dtype dt and must return one float tensor of the same shape. */
static kiln_status flex_apply(struct kiln_kctx *k, const struct kiln_graph *g, const char *what,
                              float *buf, const int64_t *dims, kiln_dtype dt)
{
    if (g->n_inputs != 1 || g->n_outputs != 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "%s has %zu inputs and %zu outputs; expected 1 "
                          "and 1", what, g->n_inputs, g->n_outputs);
    struct kiln_value *in = NULL, *out = NULL;
    KILN_TRY(kiln_value_new_tensor(dt, 4, dims, &in, k->err));
    size_t n = kiln_tensor_numel(&in->t);
    if (dt == KILN_DTYPE_F32) memcpy(in->t.data, buf, n * sizeof *buf);
    else
        for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(&in->t, i, buf[i]);
    kiln_status st = kiln_run_subgraph(k, g, 1, &in, &out);
    kiln_value_free(in);
    if (st) return st;
    if (out->kind != KILN_VALUE_TENSOR || !kiln_dtype_is_float(out->t.dtype) || out->t.rank != 4 ||
        memcmp(out->t.dims, dims, 4 * sizeof *dims)) {
        char s1[64], s2[64];
        st = kiln_kfail(k, KILN_E_INVALID_MODEL, "%s returned %s %s; expected float %s", what,
                        out->kind == KILN_VALUE_TENSOR ? kiln_dtype_name(out->t.dtype) : "a non-tensor",
                        out->kind == KILN_VALUE_TENSOR ? kiln_shape_str(out->t.rank, out->t.dims, s1, sizeof s1) : "",
                        kiln_shape_str(4, dims, s2, sizeof s2));
    } else {
        for (size_t i = 0; i < n; i++) buf[i] = (float)kiln_tensor_get_f64(&out->t, i);
    }
    kiln_value_free(out);
    return st;
}

/* FlexAttention: the scale when given, and the score_mod / prob_mod subgraphs (NULL: none). */
struct flex_state {
    bool has_scale;
    float scale;
    const struct kiln_graph *score_mod, *prob_mod;
};

static kiln_status decode_flex(struct kiln_kctx *k, struct flex_state *s)
{
    s->has_scale = kiln_attr_has(k, "scale");
    s->scale = kiln_attr_f(k, "scale", 1.0f);
    s->score_mod = kiln_attr_g(k, "score_mod");
    s->prob_mod = kiln_attr_g(k, "prob_mod");
    return KILN_OK;
}

KILN_PREPARE_WITH(flex_prepare, struct flex_state, decode_flex)

static kiln_status flex_attention_run(struct kiln_kctx *k)
{
    struct flex_state dec;
    const struct flex_state *fs;
    KILN_STATE_OR_DECODE(k, decode_flex, dec, fs);
    const struct kiln_tensor *q, *kk, *v;
    KILN_TRY(qkv_in(k, &q, &kk, &v));
    if (q->rank != 4 || kk->rank != 4 || v->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Q/K/V ranks %d/%d/%d; expected 4", q->rank,
                          kk->rank, v->rank);
    int64_t B = q->dims[0], Hq = q->dims[1], L = q->dims[2], E = q->dims[3];
    int64_t Hkv = kk->dims[1], S = kk->dims[2], Ev = v->dims[3];
    if (kk->dims[0] != B || v->dims[0] != B || kk->dims[3] != E || v->dims[1] != Hkv ||
        v->dims[2] != S) {
        char s1[64], s2[64], s3[64];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Q %s, K %s, V %s do not match [B, H, L, E], "
                          "[B, Hkv, S, E], [B, Hkv, S, Ev]",
                          kiln_shape_str(4, q->dims, s1, sizeof s1),
                          kiln_shape_str(4, kk->dims, s2, sizeof s2),
                          kiln_shape_str(4, v->dims, s3, sizeof s3));
    }
    if (Hkv < 1 || Hq % Hkv)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "q heads %lld not a multiple of kv heads %lld",
                          (long long)Hq, (long long)Hkv);
    float scale = fs->has_scale ? fs->scale : (float)(1.0 / sqrt((double)(E > 0 ? E : 1)));
    const struct kiln_graph *score_mod = fs->score_mod, *prob_mod = fs->prob_mod;
    int64_t yd[4] = {B, Hq, L, Ev}, sd[4] = {B, Hq, L, S};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, q->dtype, 4, yd, &y));
    size_t heads = (size_t)(B * Hq), Ls = (size_t)L, Ss = (size_t)S, Es = (size_t)E,
           Evs = (size_t)Ev, rep = (size_t)(Hq / Hkv), nsc;
    if (!kiln_mul_size(heads, Ls, &nsc) || !kiln_mul_size(nsc, Ss, &nsc) ||
        nsc > KILN_MAX_NUMEL)
        return kiln_kfail(k, KILN_E_LIMIT, "score tensor [%lld, %lld, %lld, %lld] is too large",
                          (long long)B, (long long)Hq, (long long)L, (long long)S);
    const float *qf, *kf, *vf;
    float *yf, *sc;
    KILN_TRY(kiln_stage_f32(k, q, &qf));
    KILN_TRY(kiln_stage_f32(k, kk, &kf));
    KILN_TRY(kiln_stage_f32(k, v, &vf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    KILN_TRY(kiln_scratch(k, nsc * sizeof *sc + 1, (void **)&sc));
    for (size_t bh = 0; bh < heads; bh++) {
        size_t kvh = (bh / (size_t)Hq) * (size_t)Hkv + (bh % (size_t)Hq) / rep;
        kiln_sgemm_par(k->pool, false, true, Ls, Ss, Es, scale, qf + bh * Ls * Es, Es, kf + kvh * Ss * Es, Es,
                       0.0f, sc + bh * Ls * Ss, Ss);
    }
    kiln_dtype sub_dt = q->dtype == KILN_DTYPE_F64 ? KILN_DTYPE_F64 : KILN_DTYPE_F32;
    if (score_mod) KILN_TRY(flex_apply(k, score_mod, "score_mod", sc, sd, sub_dt));
    /* Plain softmax arithmetic: an all -inf row gives NaN, as the reference's does. */
    for (size_t r = 0; r < heads * Ls; r++) {
        float *row = sc + r * Ss, mx = -INFINITY;
        for (size_t j = 0; j < Ss; j++)
            if (row[j] > mx) mx = row[j];
        double sum = 0;
        for (size_t j = 0; j < Ss; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < Ss; j++) row[j] *= inv;
    }
    if (prob_mod) KILN_TRY(flex_apply(k, prob_mod, "prob_mod", sc, sd, sub_dt));
    for (size_t bh = 0; bh < heads; bh++) {
        size_t kvh = (bh / (size_t)Hq) * (size_t)Hkv + (bh % (size_t)Hq) / rep;
        kiln_sgemm_par(k->pool, false, false, Ls, Evs, Ss, 1.0f, sc + bh * Ls * Ss, Ss, vf + kvh * Ss * Evs,
                       Evs, 0.0f, yf + bh * Ls * Evs, Evs);
    }
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_nn_extra[] = {
    {"Attention", "", 23, 0, attention_run, attention_prepare, 0},
    {"RotaryEmbedding", "", 23, 0, rotary_run, rotary_prepare, KILN_OP_INPLACE},
    {"SwiGLU", "", 28, 0, swiglu_run, swiglu_prepare, KILN_OP_INPLACE},
    {"LinearAttention", "", 27, 0, linear_attention_run, linattn_prepare, 0},
    {"CausalConvWithState", "", 27, 0, causal_conv_run, cconv_prepare, KILN_OP_INPLACE},
    {"FlexAttention", "ai.onnx.preview", 1, 0, flex_attention_run, flex_prepare, 0},
    {0},
};
