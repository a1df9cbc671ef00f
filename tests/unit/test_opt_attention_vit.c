/* test_opt_attention_vit.c: fuse_attention (src/opt/pass_fuse_attention.c) on the attention
 * torch's nn.MultiheadAttention exports for sequence-first input (torchvision's ViT): one
 * in-projection sliced into q, k, v [S, B, E]; heads Reshape(., [S, B*H, D]) + Transpose
 * (1 0 2) (K: Transpose 1 2 0, or 1 0 2 then 0 2 1); a scale on Q, K^T or the scores; an
 * optional mask; Softmax; probs V; Transpose (1 0 2) and Reshape back to [S*B, E] or [S, B, E].
 *
 * Each case is a model in the text form of support/test_text_model.h, run on seeded random
 * inputs before and after optimizing with the pass list under test (level extended, kiln ops
 * allowed); checks: the optimized model is valid, the op counts are what the fusion should
 * give, and the outputs agree within |a - b| <= 1e-5 * (1 + |b|) (kiln.Attention's softmax
 * uses another exp than Softmax's and sums in another order). Negative cases (a mask that
 * cannot map to [B, H, S, T], the probabilities read elsewhere) must stay unfused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-5

struct run {
    size_t n_out;
    kiln_value *out[4];
};

static bool run_model(const kiln_model *m, struct run *r, const char *what)
{
    size_t n = kiln_model_input_count(m);
    kiln_value *in[4] = {0};
    rng_seed(77);
    for (size_t i = 0; i < n && i < 4; i++) {
        int rank = kiln_model_input_rank(m, i);
        int64_t dims[8];
        for (int d = 0; d < rank; d++) dims[d] = kiln_model_input_dim(m, i, d, NULL);
        kiln_err e;
        if (kiln_value_create_tensor(KILN_DTYPE_F32, rank, dims, &in[i], &e)) exit(1);
        float *p = kiln_value_data(in[i]);
        for (size_t j = 0; j < kiln_value_numel(in[i]); j++) p[j] = rng_f32();
    }
    kiln_session *s = NULL;
    kiln_err e = {0};
    r->n_out = kiln_model_output_count(m);
    kiln_session_options so = {.threads = 2};
    kiln_status st = kiln_session_create(m, &so, &s, &e);
    if (!st) st = kiln_session_run(s, n, NULL, (const kiln_value *const *)in, r->n_out, r->out, &e);
    CHECK(st == KILN_OK, "%s: run failed: %s", what, e.msg);
    kiln_session_free(s);
    for (size_t i = 0; i < n; i++) kiln_value_free(in[i]);
    return st == KILN_OK;
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n_out; i++) kiln_value_free(r->out[i]);
}

/* Largest |a - b| / (1 + |b|); -1 when the shapes differ. */
static double max_diff(const struct run *a, const struct run *b)
{
    double worst = 0;
    for (size_t i = 0; i < a->n_out; i++) {
        size_t n = kiln_value_numel(a->out[i]);
        int r = kiln_value_rank(a->out[i]);
        if (n != kiln_value_numel(b->out[i]) || r != kiln_value_rank(b->out[i]) ||
            memcmp(kiln_value_dims(a->out[i]), kiln_value_dims(b->out[i]), (size_t)r * sizeof(int64_t)))
            return -1;
        const float *x = kiln_value_data(a->out[i]), *y = kiln_value_data(b->out[i]);
        for (size_t j = 0; j < n; j++) {
            double d = fabs((double)x[j] - y[j]) / (1 + fabs((double)y[j]));
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
        }
    }
    return worst;
}

static size_t count_op(const kiln_model *m, const char *op, const char *domain)
{
    size_t c = 0;
    for (size_t i = 0; i < kiln_model_node_count(m); i++) {
        const char *name, *o, *d;
        kiln_model_node(m, i, &name, &o, &d);
        if (!strcmp(o, op) && !strcmp(d ? d : "", domain)) c++;
    }
    return c;
}

static void print_problem(void *user, const char *msg)
{
    printf("  problem (%s): %s\n", (const char *)user, msg);
}

/* Optimizes `text` with `passes`; expects `attn` kiln.Attention and `softmax` Softmax nodes
 * after, and the same outputs. */
static void check_case(const char *what, const char *text, const char *passes, size_t attn,
                       size_t softmax)
{
    struct buf b;
    parse_model(text, &b);
    kiln_model *m0 = NULL, *m1 = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m0, &e);
    if (!st) st = kiln_model_load_buffer(b.p, b.len, NULL, &m1, &e);
    free(b.p);
    CHECK(st == KILN_OK, "%s: load: %s", what, e.msg);
    if (st) goto out;
    CHECK(kiln_model_check(m0, print_problem, (void *)what) == 0, "%s: the test model is invalid", what);
    kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .passes = passes, .keep_fused = true};
    st = kiln_model_optimize(m1, &opt, &e);
    CHECK(st == KILN_OK, "%s: optimize: %s", what, e.msg);
    if (st) goto out;
    CHECK(kiln_model_check(m1, print_problem, (void *)what) == 0, "%s: optimized model invalid", what);
    size_t na = count_op(m1, "Attention", "kiln"), ns = count_op(m1, "Softmax", "");
    CHECK(na == attn && ns == softmax, "%s: %zu kiln.Attention and %zu Softmax after; expected %zu, %zu",
          what, na, ns, attn, softmax);
    struct run r0 = {0}, r1 = {0};
    if (run_model(m0, &r0, what) && run_model(m1, &r1, what)) {
        double d = max_diff(&r1, &r0);
        CHECK(d >= 0 && d <= TOL, "%s: outputs differ by %.3g (tolerance %.1g)", what, d, TOL);
    }
    free_run(&r0);
    free_run(&r1);
    size_t before = kiln_model_node_count(m1);
    st = kiln_model_optimize(m1, &opt, &e);
    CHECK(st == KILN_OK && kiln_model_node_count(m1) == before, "%s: a second run changed the graph",
          what);
out:
    kiln_model_free(m0);
    kiln_model_free(m1);
}

/* A block over x (S = 5, E = 16, H = 4 heads of D = 4, batch B): `pre` makes xs [S, B, E]
 * from x, `k_path` makes kt [B*H, D, S] from k, `scores` makes sc from qh and kt, `tail`
 * reshapes o3 [S, B*H, D] into y. */
static void vit_case(const char *what, int B, const char *inputs, const char *pre,
                     const char *k_path, const char *scores, const char *tail, size_t attn)
{
    char text[4096];
    snprintf(text, sizeof text,
             "opset 17\n%s"
             "init w f32 16,48 rand\ninit b f32 48 rand\ninit s0 i64 1 = 0\ninit s1 i64 1 = 16\n"
             "init s2 i64 1 = 32\ninit s3 i64 1 = 48\ninit ax i64 1 = -1\n"
             "init shp i64 3 = 5,%d,4\ninit c8 f32 - = 2\ninit c3 f32 - = 0.75\n"
             "%s"
             "node MatMul xs,w -> p0\nnode Add p0,b -> p\n"
             "node Slice p,s0,s1,ax -> q\nnode Slice p,s1,s2,ax -> k\nnode Slice p,s2,s3,ax -> v\n"
             "node Reshape q,shp -> q3\nnode Transpose q3 -> qh perm=ints:1,0,2\n"
             "node Reshape v,shp -> v3\nnode Transpose v3 -> vh perm=ints:1,0,2\n"
             "%s%s"
             "node Softmax sc -> pr axis=int:-1\nnode MatMul pr,vh -> o\n"
             "node Transpose o -> o3 perm=ints:1,0,2\n%s",
             inputs, 4 * B, pre, k_path, scores, tail);
    check_case(what, text, "fuse_attention,dce", attn, 1 - attn);
}

int main(void)
{
    static const char *k120 = "node Reshape k,shp -> k3\nnode Transpose k3 -> kt perm=ints:1,2,0\n";
    static const char *k_two = /* heads, then their transpose */
        "node Reshape k,shp -> k3\nnode Transpose k3 -> kh perm=ints:1,0,2\n"
        "node Transpose kh -> kt perm=ints:0,2,1\n";
    static const char *vit_pre = "node Transpose x -> xs perm=ints:1,0,2\n";
    static const char *div_q = "node Div qh,c8 -> qs\nnode MatMul qs,kt -> sc\n";
    static const char *back2 = "init back i64 2 = 5,16\nnode Reshape o3,back -> y\noutput y\n";
    static const char *back3 = "init back i64 3 = 5,2,16\nnode Reshape o3,back -> y\noutput y\n";

    rng_seed(0x71e);
    vit_case("ViT as exported (batch 1, Div on Q, [S*B, E] out)", 1, "input x f32 1,5,16\n", vit_pre,
             k120, div_q, back2, 1);
    vit_case("sequence-first batch 2, scale on the scores, [S, B, E] out", 2,
             "input xs f32 5,2,16\n", "", k120,
             "node MatMul qh,kt -> sr\nnode Mul sr,c3 -> sc\n", back3, 1);
    vit_case("K heads transposed twice, scale on K^T, 2-D mask", 1,
             "input x f32 1,5,16\ninput m f32 5,5\n", vit_pre, k_two,
             "node Mul kt,c3 -> ks\nnode MatMul qh,ks -> sr\nnode Add sr,m -> sc\n", back2, 1);
    vit_case("batch 1, per-head mask [H, S, T]", 1, "input x f32 1,5,16\ninput m f32 4,5,5\n", vit_pre,
             k120, "node MatMul qh,kt -> sr\nnode Add m,sr -> sc\n", back2, 1);
    vit_case("batch 2, mask [1, S, T]", 2, "input xs f32 5,2,16\ninput m f32 1,5,5\n", "", k120,
             "node MatMul qh,kt -> sr\nnode Add sr,m -> sc\n", back3, 1);
    /* Not fused: a mask over the merged batch*heads of batch 2 (no [B, H, S, T] broadcast
     * gives it), the probabilities also an output. */
    vit_case("batch 2, mask [B*H, S, T]", 2, "input xs f32 5,2,16\ninput m f32 8,5,5\n", "", k120,
             "node MatMul qh,kt -> sr\nnode Add sr,m -> sc\n", back3, 0);
    vit_case("probabilities read", 1, "input x f32 1,5,16\n", vit_pre, k120, div_q,
             "init back i64 2 = 5,16\nnode Reshape o3,back -> y\noutput y\noutput pr\n", 0);

    /* The whole extended level on the ViT block: the fusion survives the other passes. */
    char text[4096];
    snprintf(text, sizeof text,
             "opset 17\ninput x f32 1,5,16\n"
             "init w f32 16,48 rand\ninit b f32 48 rand\ninit s0 i64 1 = 0\ninit s1 i64 1 = 16\n"
             "init s2 i64 1 = 32\ninit s3 i64 1 = 48\ninit ax i64 1 = -1\n"
             "init shp i64 3 = 5,4,4\ninit c8 f32 - = 2\ninit wo f32 16,16 rand\ninit bo f32 16 rand\n"
             "init back i64 2 = 5,16\ninit back3 i64 3 = 5,1,16\n"
             "node Transpose x -> xs perm=ints:1,0,2\n"
             "node MatMul xs,w -> p0\nnode Add p0,b -> p\n"
             "node Slice p,s0,s1,ax -> q\nnode Slice p,s1,s2,ax -> k\nnode Slice p,s2,s3,ax -> v\n"
             "node Reshape q,shp -> q3\nnode Transpose q3 -> qh perm=ints:1,0,2\n"
             "node Reshape k,shp -> k3\nnode Transpose k3 -> kt perm=ints:1,2,0\n"
             "node Reshape v,shp -> v3\nnode Transpose v3 -> vh perm=ints:1,0,2\n"
             "node Div qh,c8 -> qs\nnode MatMul qs,kt -> sc\n"
             "node Softmax sc -> pr axis=int:-1\nnode MatMul pr,vh -> o\n"
             "node Transpose o -> o3 perm=ints:1,0,2\nnode Reshape o3,back -> o2\n"
             "node Gemm o2,wo,bo -> g transB=int:1\nnode Reshape g,back3 -> g3\n"
             "node Transpose g3 -> y0 perm=ints:1,0,2\nnode Add y0,x -> y\noutput y\n");
    check_case("ViT block, whole extended level", text, NULL, 1, 0);
    return test_summary("test_opt_attention_vit");
}
