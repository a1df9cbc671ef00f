/* test_qdq_fuse.c: the fuse_qdq pass (src/opt/pass_fuse_qdq.c) on small QDQ models in the
 * text form of support/test_text_model.h, fused engine (level extended) against the model as
 * written (level none: DequantizeLinear -> float32 Conv / Add / MaxPool -> QuantizeLinear),
 * random data, 1 and 2 threads.
 *
 * Conv: random odd channel counts, group 1 / depthwise / 3 groups, kernels 1..3, strides,
 * dilations, asymmetric pads, activation none / Relu / Clip(0, 6), per-channel int8 weights,
 * int32 bias with scale x_scale * w_scale (as quantize_static writes), uint8 activations
 * (a quarter of the cases int8) with random zero points. The fused node must be kiln.QConv, and every output within one
 * quantization step of the unfused one (docs/quantization.md says why it can differ: the
 * float32 sum of the unfused Conv rounds, the fused one is exact), and at least 99% equal.
 *
 * Gemm (transB) as a 1x1 QConv: within one step. Concat (channels) and Reshape between
 * DequantizeLinear and QuantizeLinear of one scale: on the 8-bit data, bit-exact.
 *
 * Add + MaxPool (the residual and the stem's pool): DequantizeLinear of two quantized
 * tensors, Add, QuantizeLinear, DequantizeLinear, MaxPool (3x3, stride 2, pads 1),
 * QuantizeLinear with the same scale and zero point: fused to kiln.QAdd and kiln.QMaxPool,
 * and bit for bit equal to the unfused model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define tf model_text_add

static size_t total_out, total_diff; /* conv outputs compared, and those a step apart */

/* Builds and runs the model at level extended; *n_fused the nodes whose kernel names `op`. */
static kiln_value *run_fused(size_t n_in, const char *const *names, kiln_value *const *in, int threads,
                             const char *op, int *n_fused, const char *what)
{
    kiln_engine *e = build_text_model(model_text(), threads, what);
    if (!e) return NULL;
    *n_fused = 0;
    size_t nn = kiln_model_node_count(kiln_engine_model(e));
    for (size_t i = 0; i < nn; i++) {
        const char *be, *kernel, *variant;
        kiln_engine_node_kernel(e, i, &be, &kernel, &variant);
        *n_fused += kernel && !strncmp(kernel, op, strlen(op));
    }
    kiln_session *s = NULL;
    kiln_value *out = NULL;
    kiln_err err = {0};
    kiln_status st = kiln_session_create_from_engine(e, NULL, &s, &err);
    if (!st) st = kiln_session_run(s, n_in, names, (const kiln_value *const *)in, 1, &out, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    kiln_session_free(s);
    kiln_engine_free(e);
    return out;
}

static void ints(const char *name, const char *type, const char *dims, const int32_t *v, size_t n)
{
    tf("init %s %s %s = ", name, type, dims);
    for (size_t i = 0; i < n; i++) tf("%s%d", i ? "," : "", v[i]);
    tf("\n");
}

static void floats(const char *name, const char *dims, const float *v, size_t n)
{
    tf("init %s f32 %s = ", name, dims);
    for (size_t i = 0; i < n; i++) tf("%s%.9g", i ? "," : "", v[i]);
    tf("\n");
}

static void conv_case(int t)
{
    int64_t C = 1 + rng_int(19), G = 1, M;
    int kind = rng_int(3);
    if (kind == 1) G = C;
    if (kind == 2) G = 3, C = 3 * (1 + rng_int(5));
    M = kind == 1 ? C : G * (1 + rng_int(kind == 2 ? 5 : 19));
    int64_t k = 1 + rng_int(3), s = 1 + rng_int(2), d = k > 1 ? 1 + rng_int(2) : 1;
    int64_t H = (k - 1) * d + 1 + rng_int(12), W = (k - 1) * d + 1 + rng_int(12);
    int64_t p[4] = {rng_int((int)k), rng_int((int)k), rng_int((int)k), rng_int((int)k)};
    int act = rng_int(3);
    int64_t Cg = C / G, nw = M * Cg * k * k;
    int32_t *w = malloc((size_t)nw * sizeof *w), *b = malloc((size_t)M * sizeof *b), *zero = calloc((size_t)M, sizeof *zero);
    float *ws = malloc((size_t)M * sizeof *ws), *bs = malloc((size_t)M * sizeof *bs);
    if (!w || !b || !zero || !ws || !bs) exit(1);
    float xs = (float)rng_range(0.004, 0.02), ys = (float)rng_range(0.01, 0.05);
    bool s8 = t % 4 == 3; /* int8 activations (QuantFormat with QInt8 activations) */
    const char *at = s8 ? "i8" : "u8";
    int32_t lo = s8 ? -128 : 0;
    int32_t xz = lo + rng_int(256), yz = act ? lo : lo + rng_int(256);
    for (int64_t i = 0; i < nw; i++) w[i] = rng_int(255) - 127;
    for (int64_t m = 0; m < M; m++) {
        ws[m] = (float)rng_range(0.002, 0.01);
        bs[m] = xs * ws[m];
        b[m] = rng_int(2001) - 1000;
    }
    char dims[64], bd[32];
    snprintf(dims, sizeof dims, "%lld,%lld,%lld,%lld", (long long)M, (long long)Cg, (long long)k, (long long)k);
    snprintf(bd, sizeof bd, "%lld", (long long)M);
    model_text_reset();
    tf("opset 17\ninput x f32 1,%lld,%lld,%lld\n", (long long)C, (long long)H, (long long)W);
    tf("init xs f32 - = %.9g\ninit xz %s - = %d\ninit ys f32 - = %.9g\ninit yz %s - = %d\n", xs, at, xz, ys, at, yz);
    ints("w", "i8", dims, w, (size_t)nw);
    floats("ws", bd, ws, (size_t)M);
    ints("wz", "i8", bd, zero, (size_t)M);
    ints("b", "i32", bd, b, (size_t)M);
    floats("bs", bd, bs, (size_t)M);
    ints("bz", "i32", bd, zero, (size_t)M);
    tf("init lo f32 - = 0\ninit hi f32 - = 6\n");
    tf("node QuantizeLinear x,xs,xz -> xq\nnode DequantizeLinear xq,xs,xz -> xd\n");
    tf("node DequantizeLinear w,ws,wz -> wd axis=int:0\nnode DequantizeLinear b,bs,bz -> bd axis=int:0\n");
    tf("node Conv xd,wd,bd -> c group=int:%lld kernel_shape=ints:%lld,%lld strides=ints:%lld,%lld "
       "dilations=ints:%lld,%lld pads=ints:%lld,%lld,%lld,%lld\n",
       (long long)G, (long long)k, (long long)k, (long long)s, (long long)s, (long long)d, (long long)d,
       (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
    if (act == 1) tf("node Relu c -> r\n");
    if (act == 2) tf("node Clip c,lo,hi -> r\n");
    tf("node QuantizeLinear %s,ys,yz -> yq\nnode DequantizeLinear yq,ys,yz -> y\noutput y\n", act ? "r" : "c");
    int64_t xd[4] = {1, C, H, W};
    kiln_value *x = rand_tensor(4, xd); /* uniform in [-1, 1] */
    const char *names[1] = {"x"};
    char what[256];
    for (int threads = 1; threads <= 2; threads++) {
        snprintf(what, sizeof what, "conv case %d (%s, C %lld -> M %lld, group %lld, k %lld, s %lld, d %lld, pads %lld,%lld,%lld,%lld, act %d, xz %d, yz %d, %d threads)",
                 t, at, (long long)C, (long long)M, (long long)G, (long long)k, (long long)s, (long long)d, (long long)p[0],
                 (long long)p[1], (long long)p[2], (long long)p[3], act, xz, yz, threads);
        kiln_value *ref = run_text_model(model_text(), 1, names, &x, threads, what);
        int fused = 0;
        kiln_value *got = run_fused(1, names, (kiln_value *const *)&x, threads, "QConv", &fused, what);
        CHECK(fused == 1, "%s: %d kiln.QConv nodes, expected 1", what, fused);
        if (ref && got) {
            size_t n = kiln_tensor_numel(&ref->t), diff = 0;
            double worst = 0;
            const float *a = ref->t.data, *g2 = got->t.data;
            CHECK(kiln_tensor_numel(&got->t) == n, "%s: output sizes differ", what);
            for (size_t i = 0; i < n && kiln_tensor_numel(&got->t) == n; i++) {
                double u = fabs((double)a[i] - (double)g2[i]) / ys;
                if (u > 0.5) diff++;
                if (u > worst) worst = u;
            }
            total_out += n, total_diff += diff;
            CHECK(worst < 1.5, "%s: differs by %.2f quantization steps", what, worst);
            CHECK(diff * 100 <= n, "%s: %zu of %zu outputs differ by a step", what, diff, n);
        }
        kiln_value_free(ref);
        kiln_value_free(got);
    }
    kiln_value_free(x);
    free(w), free(b), free(zero), free(ws), free(bs);
}

static void add_pool_case(int t)
{
    int64_t C = 1 + rng_int(37), H = 2 + rng_int(15), W = 2 + rng_int(15);
    float as = (float)rng_range(0.004, 0.02), bs = (float)rng_range(0.004, 0.02), ys = (float)rng_range(0.005, 0.03);
    int az = rng_int(256), bz = rng_int(256), yz = t % 2 ? 0 : rng_int(256);
    model_text_reset();
    tf("opset 17\ninput a f32 1,%lld,%lld,%lld\ninput b f32 1,%lld,%lld,%lld\n", (long long)C, (long long)H,
       (long long)W, (long long)C, (long long)H, (long long)W);
    tf("init as f32 - = %.9g\ninit az u8 - = %d\ninit bs f32 - = %.9g\ninit bz u8 - = %d\n", as, az, bs, bz);
    tf("init ys f32 - = %.9g\ninit yz u8 - = %d\n", ys, yz);
    tf("node QuantizeLinear a,as,az -> aq\nnode DequantizeLinear aq,as,az -> ad\n");
    tf("node QuantizeLinear b,bs,bz -> bq\nnode DequantizeLinear bq,bs,bz -> bd\n");
    tf("node Add ad,bd -> s\nnode QuantizeLinear s,ys,yz -> sq\nnode DequantizeLinear sq,ys,yz -> sd\n");
    tf("node MaxPool sd -> m kernel_shape=ints:3,3 strides=ints:2,2 pads=ints:1,1,1,1\n");
    tf("node QuantizeLinear m,ys,yz -> mq\nnode DequantizeLinear mq,ys,yz -> y\noutput y\n");
    int64_t d[4] = {1, C, H, W};
    kiln_value *in[2] = {rand_tensor(4, d), rand_tensor(4, d)};
    const char *names[2] = {"a", "b"};
    char what[160];
    for (int threads = 1; threads <= 2; threads++) {
        snprintf(what, sizeof what, "add+pool case %d (C %lld, %lldx%lld, zps %d %d %d, %d threads)", t, (long long)C,
                 (long long)H, (long long)W, az, bz, yz, threads);
        kiln_value *ref = run_text_model(model_text(), 2, names, in, threads, what);
        int n_add = 0, n_pool = 0;
        kiln_value *got = run_fused(2, names, in, threads, "QAdd", &n_add, what);
        kiln_value_free(run_fused(2, names, in, threads, "QMaxPool", &n_pool, what));
        CHECK(n_add == 1 && n_pool == 1, "%s: %d kiln.QAdd and %d kiln.QMaxPool nodes, expected 1 and 1", what, n_add,
              n_pool);
        if (ref && got) {
            size_t n = kiln_tensor_numel(&ref->t);
            CHECK(kiln_tensor_numel(&got->t) == n && !memcmp(ref->t.data, got->t.data, n * sizeof(float)),
                  "%s: fused and unfused outputs differ", what);
        }
        kiln_value_free(ref);
        kiln_value_free(got);
    }
    free_all(in, 2);
}

/* DequantizeLinear -> Gemm (transB, per-row int8 weights, int32 bias) -> QuantizeLinear:
 * a 1x1 kiln.QConv between Reshapes, within one step of the unfused model. */
static void gemm_case(int t)
{
    int64_t R = 1 + rng_int(3), K = 1 + rng_int(70), N = 1 + rng_int(40);
    int32_t *w = malloc((size_t)(N * K) * sizeof *w), *b = malloc((size_t)N * sizeof *b), *zero = calloc((size_t)N, sizeof *zero);
    float *ws = malloc((size_t)N * sizeof *ws), *bs = malloc((size_t)N * sizeof *bs);
    if (!w || !b || !zero || !ws || !bs) exit(1);
    float xs = (float)rng_range(0.004, 0.02), ys = (float)rng_range(0.01, 0.05);
    int32_t xz = rng_int(256), yz = rng_int(256);
    for (int64_t i = 0; i < N * K; i++) w[i] = rng_int(255) - 127;
    for (int64_t m = 0; m < N; m++) {
        ws[m] = (float)rng_range(0.002, 0.01);
        bs[m] = xs * ws[m];
        b[m] = rng_int(2001) - 1000;
    }
    char dims[64], nd[32];
    snprintf(dims, sizeof dims, "%lld,%lld", (long long)N, (long long)K);
    snprintf(nd, sizeof nd, "%lld", (long long)N);
    model_text_reset();
    tf("opset 17\ninput x f32 %lld,%lld\n", (long long)R, (long long)K);
    tf("init xs f32 - = %.9g\ninit xz u8 - = %d\ninit ys f32 - = %.9g\ninit yz u8 - = %d\n", xs, xz, ys, yz);
    ints("w", "i8", dims, w, (size_t)(N * K));
    floats("ws", nd, ws, (size_t)N);
    ints("wz", "i8", nd, zero, (size_t)N);
    ints("b", "i32", nd, b, (size_t)N);
    floats("bs", nd, bs, (size_t)N);
    ints("bz", "i32", nd, zero, (size_t)N);
    tf("node QuantizeLinear x,xs,xz -> xq\nnode DequantizeLinear xq,xs,xz -> xd\n");
    tf("node DequantizeLinear w,ws,wz -> wd axis=int:0\nnode DequantizeLinear b,bs,bz -> bd axis=int:0\n");
    tf("node Gemm xd,wd,bd -> c transB=int:1\n");
    tf("node QuantizeLinear c,ys,yz -> yq\nnode DequantizeLinear yq,ys,yz -> y\noutput y\n");
    int64_t xd[2] = {R, K};
    kiln_value *x = rand_tensor(2, xd);
    const char *names[1] = {"x"};
    char what[160];
    snprintf(what, sizeof what, "gemm case %d (%lld x %lld -> %lld)", t, (long long)R, (long long)K, (long long)N);
    kiln_value *ref = run_text_model(model_text(), 1, names, &x, 1, what);
    int fused = 0;
    kiln_value *got = run_fused(1, names, (kiln_value *const *)&x, 1, "QConv", &fused, what);
    CHECK(fused == 1, "%s: %d kiln.QConv nodes, expected 1", what, fused);
    if (ref && got) {
        size_t n = kiln_tensor_numel(&ref->t);
        CHECK(kiln_tensor_numel(&got->t) == n && got->t.rank == 2, "%s: output shapes differ", what);
        const float *a = ref->t.data, *g2 = got->t.data;
        for (size_t i = 0; i < n && kiln_tensor_numel(&got->t) == n; i++)
            CHECK(fabs((double)a[i] - (double)g2[i]) / ys < 1.5, "%s: [%zu] %g vs %g", what, i, a[i], g2[i]);
    }
    kiln_value_free(ref);
    kiln_value_free(got);
    kiln_value_free(x);
    free(w), free(b), free(zero), free(ws), free(bs);
}

/* DequantizeLinear -> Concat (channels) -> QuantizeLinear -> DequantizeLinear -> Reshape ->
 * QuantizeLinear, one scale and zero point: Concat and Reshape on the 8-bit data, no
 * QuantizeLinear / DequantizeLinear left but the input's and the output's, bit-exact. */
static void move_case(int t)
{
    int64_t C1 = 1 + rng_int(9), C2 = 1 + rng_int(9), H = 1 + rng_int(6), W = 1 + rng_int(6);
    float sc = (float)rng_range(0.004, 0.02);
    int z = rng_int(256);
    model_text_reset();
    tf("opset 17\ninput a f32 1,%lld,%lld,%lld\ninput b f32 1,%lld,%lld,%lld\n", (long long)C1, (long long)H,
       (long long)W, (long long)C2, (long long)H, (long long)W);
    tf("init s f32 - = %.9g\ninit z u8 - = %d\ninit shape i64 2 = 1,-1\n", sc, z);
    tf("node QuantizeLinear a,s,z -> aq\nnode DequantizeLinear aq,s,z -> ad\n");
    tf("node QuantizeLinear b,s,z -> bq\nnode DequantizeLinear bq,s,z -> bd\n");
    tf("node Concat ad,bd -> c axis=int:1\nnode QuantizeLinear c,s,z -> cq\nnode DequantizeLinear cq,s,z -> cd\n");
    tf("node Reshape cd,shape -> r\nnode QuantizeLinear r,s,z -> rq\nnode DequantizeLinear rq,s,z -> y\noutput y\n");
    int64_t da[4] = {1, C1, H, W}, db[4] = {1, C2, H, W};
    kiln_value *in[2] = {rand_tensor(4, da), rand_tensor(4, db)};
    const char *names[2] = {"a", "b"};
    char what[128];
    snprintf(what, sizeof what, "move case %d (C %lld + %lld, %lldx%lld)", t, (long long)C1, (long long)C2, (long long)H,
             (long long)W);
    kiln_value *ref = run_text_model(model_text(), 2, names, in, 1, what);
    int nq = 0, ndq = 0;
    kiln_value *got = run_fused(2, names, in, 1, "QuantizeLinear", &nq, what);
    kiln_value_free(run_fused(2, names, in, 1, "DequantizeLinear", &ndq, what));
    CHECK(nq == 0 && ndq == 0, "%s: %d QuantizeLinear and %d DequantizeLinear left", what, nq, ndq);
    if (ref && got) {
        size_t n = kiln_tensor_numel(&ref->t);
        CHECK(kiln_tensor_numel(&got->t) == n && !memcmp(ref->t.data, got->t.data, n * sizeof(float)),
              "%s: fused and unfused outputs differ", what);
    }
    kiln_value_free(ref);
    kiln_value_free(got);
    free_all(in, 2);
}

int main(void)
{
    rng_seed(1202);
    for (int t = 0; t < 60; t++) conv_case(t);
    for (int t = 0; t < 20; t++) add_pool_case(t);
    for (int t = 0; t < 20; t++) gemm_case(t);
    for (int t = 0; t < 20; t++) move_case(t);
    printf("test_qdq_fuse: %zu of %zu QConv outputs one step from the unfused model\n", total_diff, total_out);
    return test_summary("test_qdq_fuse");
}
