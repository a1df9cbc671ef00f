/* src/cpu/ops/nn_extra.c: ONNX Attention (opsets 23, 24) and RotaryEmbedding (23).
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
 * dtypes: float32 natively; float16/bfloat16/float64 staged through float32.
 */
#include <math.h>
#include <string.h>

#include "cpu/kernel.h"
#include "cpu/sgemm.h"

static bool fdt_ok(kiln_dtype dt)
{
    return dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16 ||
           dt == KILN_DTYPE_F64;
}

static kiln_status stage_f32(struct kiln_kctx *k, const struct kiln_tensor *t, const float **out)
{
    if (t->dtype == KILN_DTYPE_F32) {
        *out = t->data;
        return KILN_OK;
    }
    size_t n = kiln_tensor_numel(t);
    float *f;
    KILN_TRY(kiln_scratch(k, n * sizeof *f + 1, (void **)&f));
    for (size_t i = 0; i < n; i++) f[i] = (float)kiln_tensor_get_f64(t, i);
    *out = f;
    return KILN_OK;
}

static kiln_status out_f32(struct kiln_kctx *k, struct kiln_tensor *t, float **out)
{
    if (t->dtype == KILN_DTYPE_F32) {
        *out = t->data;
        return KILN_OK;
    }
    return kiln_scratch(k, kiln_tensor_numel(t) * sizeof(float) + 1, (void **)out);
}

static void unstage_f32(struct kiln_tensor *t, const float *src)
{
    if ((const void *)src == t->data) return;
    size_t n = kiln_tensor_numel(t);
    for (size_t i = 0; i < n; i++) kiln_tensor_set_f64(t, i, src[i]);
}

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

static kiln_status attention_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *q, *kk, *v, *mask = kiln_in(k, 3), *pk = kiln_in(k, 4),
                             *pv = kiln_in(k, 5), *nonpad = kiln_in(k, 6);
    KILN_TRY(kiln_in_req(k, 0, &q));
    KILN_TRY(kiln_in_req(k, 1, &kk));
    KILN_TRY(kiln_in_req(k, 2, &v));
    if (!fdt_ok(q->dtype) || kk->dtype != q->dtype || v->dtype != q->dtype)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "Q/K/V are %s/%s/%s; expected one float type",
                          kiln_dtype_name(q->dtype), kiln_dtype_name(kk->dtype),
                          kiln_dtype_name(v->dtype));
    if (q->rank != kk->rank || q->rank != v->rank || (q->rank != 3 && q->rank != 4))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "Q/K/V ranks %d/%d/%d; expected all 3 or all 4",
                          q->rank, kk->rank, v->rank);
    if ((pk == NULL) != (pv == NULL))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "past_key and past_value must come together");
    bool three = q->rank == 3;
    size_t B = (size_t)q->dims[0], Hq, Hkv, Sq, Skv, D, Dv;
    if (three) {
        int64_t hq = kiln_attr_i(k, "q_num_heads", 0), hk = kiln_attr_i(k, "kv_num_heads", 0);
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

    float scale = kiln_attr_f(k, "scale", (float)(1.0 / sqrt((double)D)));
    if (!kiln_attr_has(k, "scale")) scale = (float)(1.0 / sqrt((double)D));
    bool causal = kiln_attr_i(k, "is_causal", 0) != 0;
    float softcap = kiln_attr_f(k, "softcap", 0.0f);
    int64_t mode = kiln_attr_i(k, "qk_matmul_output_mode", 0);

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
    KILN_TRY(stage_f32(k, q, &qf));
    KILN_TRY(stage_f32(k, kk, &kf));
    KILN_TRY(stage_f32(k, v, &vf));
    if (pk) {
        KILN_TRY(stage_f32(k, pk, &pkf));
        KILN_TRY(stage_f32(k, pv, &pvf));
    }
    float *q4, *kp, *vp, *yf, *tmp;
    if (three) {
        KILN_TRY(kiln_scratch(k, B * Hq * Sq * D * sizeof(float) + 1, (void **)&q4));
        to_bhsd(qf, true, B, Hq, Sq, D, q4);
    } else {
        q4 = (float *)qf;
    }
    if (tpk) KILN_TRY(out_f32(k, tpk, &kp));
    else KILN_TRY(kiln_scratch(k, B * Hkv * T * D * sizeof(float) + 1, (void **)&kp));
    if (tpv) KILN_TRY(out_f32(k, tpv, &vp));
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

    KILN_TRY(out_f32(k, y, &yf));
    float *qkf = NULL, *sc, *yh;
    if (tqk) KILN_TRY(out_f32(k, tqk, &qkf));
    KILN_TRY(kiln_scratch(k, Sq * T * sizeof(float) + 1, (void **)&sc));
    KILN_TRY(kiln_scratch(k, Sq * Dv * sizeof(float) + 1, (void **)&yh));
    size_t rep = Hq / Hkv;
    for (size_t b = 0; b < B; b++) {
        int64_t npad = nonpad ? kiln_tensor_get_i64(nonpad, b) : (int64_t)T;
        int64_t offset = pk ? (int64_t)P : nonpad ? npad - (int64_t)Sq : 0;
        for (size_t h = 0; h < Hq; h++) {
            size_t kvh = h / rep;
            const float *qh = q4 + (b * Hq + h) * Sq * D;
            const float *kh = kp + (b * Hkv + kvh) * T * D;
            const float *vh = vp + (b * Hkv + kvh) * T * Dv;
            kiln_sgemm(false, true, Sq, T, D, scale, qh, D, kh, D, 0.0f, sc, T);
            float *qko = qkf ? qkf + (b * Hq + h) * Sq * T : NULL;
            for (size_t i = 0; i < Sq; i++) {
                float *row = sc + i * T;
                if (softcap > 0)
                    for (size_t j = 0; j < T; j++) row[j] = softcap * tanhf(row[j] / softcap);
                if (qko && mode <= 1) memcpy(qko + i * T, row, T * sizeof *row);
                const float *mrow = mf ? mf + b * ms[0] + h * ms[1] + i * ms[2] : NULL;
                for (size_t j = 0; j < T; j++) {
                    float bias = 0;
                    if (mf) bias = j < Tm ? mrow[j * ms[3]] : -INFINITY;
                    if (causal && (int64_t)j > (int64_t)i + offset) bias = -INFINITY;
                    if (nonpad && (int64_t)j >= npad) bias = -INFINITY;
                    row[j] += bias;
                }
                if (qko && mode == 2) memcpy(qko + i * T, row, T * sizeof *row);
                float mx = -INFINITY;
                for (size_t j = 0; j < T; j++)
                    if (row[j] > mx) mx = row[j];
                double sum = 0;
                if (mx == -INFINITY) {
                    memset(row, 0, T * sizeof *row); /* fully masked: see file comment */
                } else {
                    for (size_t j = 0; j < T; j++) {
                        row[j] = expf(row[j] - mx);
                        sum += row[j];
                    }
                    float inv = (float)(1.0 / sum);
                    for (size_t j = 0; j < T; j++) row[j] *= inv;
                }
                if (qko && mode == 3) memcpy(qko + i * T, row, T * sizeof *row);
            }
            kiln_sgemm(false, false, Sq, Dv, T, 1.0f, sc, T, vh, Dv, 0.0f, yh, Dv);
            for (size_t i = 0; i < Sq; i++) {
                float *dst = three ? yf + ((b * Sq + i) * Hq + h) * Dv
                                   : yf + ((b * Hq + h) * Sq + i) * Dv;
                memcpy(dst, yh + i * Dv, Dv * sizeof *dst);
            }
        }
    }
    unstage_f32(y, yf);
    if (tpk) unstage_f32(tpk, kp);
    if (tpv) unstage_f32(tpv, vp);
    if (tqk) unstage_f32(tqk, qkf);
    return KILN_OK;
}

/* ------------------------------------------------------------------ RotaryEmbedding */

static kiln_status rotary_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *x, *cc, *scache, *pos = kiln_in(k, 3);
    KILN_TRY(kiln_in_req(k, 0, &x));
    KILN_TRY(kiln_in_req(k, 1, &cc));
    KILN_TRY(kiln_in_req(k, 2, &scache));
    if (!fdt_ok(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    if (x->rank != 3 && x->rank != 4)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input X has rank %d; expected 3 or 4", x->rank);
    bool inter = kiln_attr_i(k, "interleaved", 0) != 0;
    int64_t R = kiln_attr_i(k, "rotary_embedding_dim", 0);
    size_t B = (size_t)x->dims[0], H, S, D;
    bool three = x->rank == 3;
    if (three) {
        int64_t nh = kiln_attr_i(k, "num_heads", 0);
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
    KILN_TRY(stage_f32(k, x, &xf));
    KILN_TRY(stage_f32(k, cc, &cf));
    KILN_TRY(stage_f32(k, scache, &sf));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, x->dtype, x->rank, x->dims, &y));
    KILN_TRY(out_f32(k, y, &yf));
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
    unstage_f32(y, yf);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_nn_extra[] = {
    {"Attention", "", 23, 0, attention_run},
    {"RotaryEmbedding", "", 23, 0, rotary_run},
    {0},
};
