/* src/cpu/ops/fused.c: kiln's own ops (domain "kiln", version 1), which the extended
 * optimizer level fuses subgraphs into. docs/fused-ops.md is the reference; in short:
 *
 * FusedConv (X, W, B?, Z?)      Conv, then + Z (the residual, Y's shape), then activation
 * FusedGemm (A, B, C?, Z?)      Gemm, then + Z, then activation
 * FusedMatMul (A, B, bias?, Z?) MatMul, then + bias (broadcast along the last dim), then + Z,
 *                               then activation
 * Gelu (X)                      ONNX Gelu-20 (approximate "none" or "tanh")
 * LayerNormalization, RMSNormalization: ONNX LayerNormalization-17 and RMSNormalization-23,
 *                               for models whose opset lacks them
 * Attention (Q, K, V, mask?, past_key?, past_value?) -> (Y, present_key?, present_value?)
 *                               multi-head attention on projected [B, S, H*D] inputs
 *
 * The activation is the string attribute `activation` (an ONNX op name, "" for none) with
 * float parameters `activation_params` and, for Gelu, `approximate` (cpu/act.h). Every
 * computation is the standard kernel's (conv.c, gemm.c, norm.c, nn_extra.c) followed by the
 * activation loop that the standard activation op runs, in the order the unfused graph
 * computes it, so fused and unfused graphs agree to the last bit for float32 (up to the
 * summation order of an Add of a residual, which is the same: (conv + bias) + Z).
 *
 * Prepare (kernel.h): FusedConv, FusedGemm, FusedMatMul and Gelu decode their activation
 * once (an unknown one fails there, with the message the run gave before); the fused Conv
 * and Gemm then run their base op's prepare, whose state, variant and prepacked weights the
 * fused state holds (struct fused_state), so a FusedConv picks its Conv variant and a
 * FusedGemm uses its B^T blob exactly as the plain op does. LayerNormalization and
 * RMSNormalization run other families' kernels and have no prepare here; Attention's
 * kernel and prepare live in nn_extra.c.
 *
 * FusedMatMul on kiln's own GEMM (the MatMul variant "kiln-pgemm", cpu/pgemm.h) hands it
 * the bias, Z and activation as its epilogue, applied per tile while the tile is in L1
 * instead of in a second pass over Y: the same floats (cpu/pgemm_isa.h). Other variants,
 * dtypes or shapes keep the pass after the product.
 *
 * dtypes: the float types; float16/bfloat16/float64 outputs are post-processed in float32.
 */
#include <string.h>

#include "base/pool.h"
#include "cpu/act.h"
#include "cpu/ops/fused.h"
#include "cpu/pgemm.h"
#include "cpu/tensor_util.h"

/* What the fused ops' prepare makes: the base op's state (NULL when it has no prepare) and
 * the activation. */
struct fused_state {
    const void *base;
    struct kiln_act act;
};

/* Reads the activation attributes. */
static kiln_status read_act(struct kiln_kctx *k, struct kiln_act *a)
{
    return kiln_attr_act(k, a);
}

/* Post-processing of output rows of N elements: y = act(y + bias + z). */
struct post_job {
    const struct kiln_act *a;
    float *y;
    const float *bias, *z;
    size_t N;
};

static void post_chunk(void *ctx, size_t r0, size_t r1, int worker)
{
    const struct post_job *j = ctx;
    (void)worker;
    for (size_t r = r0; r < r1; r++) {
        float *y = j->y + r * j->N;
        if (j->bias)
            for (size_t c = 0; c < j->N; c++) y[c] += j->bias[c];
        kiln_act_apply_f32(j->a, y, j->z ? j->z + r * j->N : NULL, y, j->N);
    }
}

/* Whether t has exactly y's shape. */
static bool same_dims(const struct kiln_tensor *t, const struct kiln_tensor *y)
{
    return t->rank == y->rank && memcmp(t->dims, y->dims, (size_t)y->rank * sizeof *y->dims) == 0;
}

/* After the base kernel filled output 0: adds input `bias_in` (a vector over the last dim;
 * (size_t)-1: none), then input `z_in` (Y's shape; absent: none), then the activation. */
static kiln_status finish(struct kiln_kctx *k, const struct kiln_act *a, size_t bias_in,
                          size_t z_in)
{
    if (!k->out[0] || k->out[0]->kind != KILN_VALUE_TENSOR)
        return kiln_kfail(k, KILN_E_INTERNAL, "the base kernel left no output tensor");
    struct kiln_tensor *y = &k->out[0]->t;
    const struct kiln_tensor *b = bias_in != (size_t)-1 ? kiln_in(k, bias_in) : NULL;
    const struct kiln_tensor *z = kiln_in(k, z_in);
    if (!kiln_dtype_is_real_float(y->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "output is %s; expected a float type",
                          kiln_dtype_name(y->dtype));
    size_t n = kiln_tensor_numel(y);
    size_t N = y->rank ? (size_t)y->dims[y->rank - 1] : 1;
    if (b) {
        bool ok = b->dtype == y->dtype && kiln_tensor_numel(b) == N && b->rank >= 1 &&
                  (size_t)b->dims[b->rank - 1] == N;
        if (!ok)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "bias must be %zu values of %s along the last dim of Y", N,
                              kiln_dtype_name(y->dtype));
    }
    if (z && (z->dtype != y->dtype || !same_dims(z, y))) {
        char s1[128], s2[128];
        return kiln_kfail(k, KILN_E_INVALID_ARG, "residual Z is %s %s; expected %s %s like Y",
                          kiln_dtype_name(z->dtype), kiln_shape_str(z->rank, z->dims, s1, sizeof s1),
                          kiln_dtype_name(y->dtype), kiln_shape_str(y->rank, y->dims, s2, sizeof s2));
    }
    if (n == 0 || (a->kind == KILN_ACT_NONE && !b && !z)) return KILN_OK;
    const float *yc, *bf = NULL, *zf = NULL;
    /* Staging a float32 output gives its own data; any other gives a scratch copy. Both are
     * ours to write, and kiln_unstage_f32 rounds the copy back. */
    KILN_TRY(kiln_stage_f32(k, y, &yc));
    if (b) KILN_TRY(kiln_stage_f32(k, b, &bf));
    if (z) KILN_TRY(kiln_stage_f32(k, z, &zf));
    struct post_job j = {a, (float *)yc, bf, zf, N ? N : 1};
    kiln_pool_for(k->pool, N ? n / N : 0, kiln_pool_grain(N, 16384), post_chunk, &j);
    kiln_unstage_f32(y, yc);
    return KILN_OK;
}

/* The fused state of k: its prepare's, or (a kernel called without prepare) *own, filled now
 * with the activation and no base state. */
static kiln_status fused_state_of(struct kiln_kctx *k, struct fused_state *own,
                                  const struct fused_state **fs)
{
    *fs = k->state;
    if (*fs) return KILN_OK;
    own->base = NULL;
    KILN_TRY(read_act(k, &own->act));
    *fs = own;
    return KILN_OK;
}

/* Prepare of a fused op on base op `base_prepare` (NULL: none): the activation first, as
 * the run read it first, then the base op's state, variant and blobs. */
static kiln_status fused_prepare(struct kiln_kprep *p,
                                 kiln_status (*base_prepare)(struct kiln_kprep *))
{
    struct fused_state *fs;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *fs, (void **)&fs));
    KILN_TRY(read_act(&p->kc, &fs->act));
    if (base_prepare) {
        KILN_TRY(base_prepare(p));
        fs->base = p->state;
    }
    p->state = fs;
    return KILN_OK;
}

/* Runs base kernel `run` on k with the base op's own state. */
static kiln_status run_base(struct kiln_kctx *k, const struct fused_state *fs,
                            kiln_status (*run)(struct kiln_kctx *))
{
    const void *mine = k->state;
    k->state = fs->base;
    kiln_status st = run(k);
    k->state = mine;
    return st;
}

static kiln_status fused_conv_prepare(struct kiln_kprep *p)
{
    return fused_prepare(p, kiln_cpu_conv_prepare);
}

static kiln_status fused_conv_run(struct kiln_kctx *k)
{
    struct fused_state own;
    const struct fused_state *fs;
    KILN_TRY(fused_state_of(k, &own, &fs));
    KILN_TRY(run_base(k, fs, kiln_cpu_conv_run));
    return finish(k, &fs->act, (size_t)-1, 3);
}

static kiln_status fused_gemm_prepare(struct kiln_kprep *p)
{
    return fused_prepare(p, kiln_cpu_gemm_prepare);
}

static kiln_status fused_gemm_run(struct kiln_kctx *k)
{
    struct fused_state own;
    const struct fused_state *fs;
    KILN_TRY(fused_state_of(k, &own, &fs));
    KILN_TRY(run_base(k, fs, kiln_cpu_gemm_run));
    return finish(k, &fs->act, (size_t)-1, 3);
}

static kiln_status fused_matmul_prepare(struct kiln_kprep *p)
{
    return fused_prepare(p, kiln_cpu_matmul_prepare);
}

/* The epilogue kiln's GEMM can apply inside FusedMatMul's product: float32 A [.., M, K] and
 * B [K, N], bias absent or N float32 values along its last dim, Z absent or float32 of Y's
 * shape ([.., M, N]). False (the product then leaves them to finish) for anything else,
 * including what finish rejects, so that its messages stay the same. */
static bool matmul_epi(struct kiln_kctx *k, const struct kiln_act *act, struct kiln_pgemm_epi *epi)
{
    const struct kiln_tensor *a = kiln_in(k, 0), *b = kiln_in(k, 1), *bias = kiln_in(k, 2), *z = kiln_in(k, 3);
    if (!a || !b || a->dtype != KILN_DTYPE_F32 || a->rank < 2 || b->rank != 2) return false;
    size_t N = (size_t)b->dims[1];
    if (bias && (bias->dtype != KILN_DTYPE_F32 || bias->rank < 1 || kiln_tensor_numel(bias) != N ||
                 (size_t)bias->dims[bias->rank - 1] != N))
        return false;
    if (z) {
        if (z->dtype != KILN_DTYPE_F32 || z->rank != a->rank || (size_t)z->dims[z->rank - 1] != N) return false;
        for (int d = 0; d + 1 < a->rank; d++)
            if (z->dims[d] != a->dims[d]) return false;
    }
    *epi = (struct kiln_pgemm_epi){bias ? bias->data : NULL, z ? z->data : NULL, N, act};
    return true;
}

static kiln_status fused_matmul_run(struct kiln_kctx *k)
{
    struct fused_state own;
    const struct fused_state *fs;
    KILN_TRY(fused_state_of(k, &own, &fs));
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input A is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    struct kiln_pgemm_epi epi;
    bool done = false;
    if (fs->base && matmul_epi(k, &fs->act, &epi)) {
        const void *mine = k->state;
        k->state = fs->base;
        kiln_status st = kiln_cpu_matmul_run_epi(k, &epi, &done);
        k->state = mine;
        KILN_TRY(st);
    } else {
        KILN_TRY(run_base(k, fs, kiln_cpu_matmul_run));
    }
    return done ? KILN_OK : finish(k, &fs->act, 2, 3);
}

/* Gelu's `approximate` as an activation. */
static kiln_status gelu_decode(struct kiln_kctx *k, struct kiln_act *a)
{
    const char *approx = kiln_attr_s(k, "approximate", "none");
    if (!kiln_act_parse("Gelu", NULL, 0, approx, a))
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "attribute approximate is '%s'; expected 'none' or 'tanh'", approx);
    return KILN_OK;
}

static kiln_status gelu_prepare(struct kiln_kprep *p)
{
    struct kiln_act *a;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *a, (void **)&a));
    KILN_TRY(gelu_decode(&p->kc, a));
    p->state = a;
    return KILN_OK;
}

static kiln_status gelu_run(struct kiln_kctx *k)
{
    struct kiln_act own;
    const struct kiln_act *a = k->state;
    if (!a) { /* called without prepare (kernel tests) */
        KILN_TRY(gelu_decode(k, &own));
        a = &own;
    }
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (!kiln_dtype_is_real_float(x->dtype))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "input X is %s; expected a float type",
                          kiln_dtype_name(x->dtype));
    struct kiln_tensor *y;
    const float *xf;
    float *yf;
    KILN_TRY(kiln_out_tensor_raw(k, 0, x->dtype, x->rank, x->dims, &y));
    KILN_TRY(kiln_stage_f32(k, x, &xf));
    KILN_TRY(kiln_stage_out_f32(k, y, &yf));
    kiln_act_apply_par(k->pool, a, xf, NULL, yf, kiln_tensor_numel(x));
    kiln_unstage_f32(y, yf);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_fused[] = {
    {"FusedConv", "kiln", 1, 0, fused_conv_run, fused_conv_prepare, 0},
    {"FusedGemm", "kiln", 1, 0, fused_gemm_run, fused_gemm_prepare, 0},
    {"FusedMatMul", "kiln", 1, 0, fused_matmul_run, fused_matmul_prepare, 0},
    {"Gelu", "kiln", 1, 0, gelu_run, gelu_prepare, 0},
    {"LayerNormalization", "kiln", 1, 0, kiln_cpu_layernorm_run, NULL, 0},
    {"RMSNormalization", "kiln", 1, 0, kiln_cpu_rmsnorm_run, NULL, 0},
    {"Attention", "kiln", 1, 0, kiln_cpu_kiln_attention_run, kiln_cpu_kiln_attention_prepare, 0},
    {0},
};
