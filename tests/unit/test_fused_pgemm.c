/* test_fused_pgemm.c: kiln.FusedMatMul on kiln's own GEMM (cpu/pgemm.h), which applies the
 * bias, the residual Z and the activation in the product's epilogue (fused.c ->
 * kiln_cpu_matmul_run_epi in gemm.c), against the unfused graph MatMul -> Add(bias) ->
 * Add(Z) -> activation in the same model (a session runs the model as written), bit for
 * bit: the product is the same kernel with the same summation order, and the epilogue's
 * adds and activation are the unfused ops' floats (cpu/pgemm_isa.h). KILN_MATMUL_PACKED=pgemm
 * (set here) puts every constant-B product on kiln's GEMM whatever its shape.
 *
 * Shapes: M 1..197 (one row tile, several, ViT's 197 rows), K 1..1601 (K over 768 runs in
 * K blocks, whose epilogue comes on the last one), N 1..200 (masked column tails, several
 * groups of panels); bias and Z each present or not; activations none, Relu, Gelu (erf and
 * tanh), LeakyRelu; threads 1, 2, 3 (the result must not depend on them). Without an
 * activation Y is also checked against a float64 sum: |Y - ref| <= 1e-6 (K + 1) sum |x w|
 * + 1e-6 (|bias| + |z|) + 1e-30. A bias or Z that does not fit (the fused path declines it
 * and finish reports it) still fails with finish's message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define tf model_text_add

struct fcase {
    int64_t M, K, N;
    bool bias, z;
    const char *act, *approx; /* act NULL: none; approx for Gelu */
};

static float *rand_floats(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) exit(1);
    for (size_t i = 0; i < n; i++) v[i] = rng_f32();
    return v;
}

static void fcase(const struct fcase *c)
{
    long long M = c->M, K = c->K, N = c->N;
    float *w = rand_floats((size_t)(K * N)), *b = rand_floats((size_t)N), *z = rand_floats((size_t)(M * N));
    float *x = rand_floats((size_t)(M * K));
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,1,%lld,%lld\noutput R\noutput Y\n", M, K);
    tf("init W f32 %lld,%lld", K, N);
    model_text_floats(w, (size_t)(K * N));
    tf("\ninit Bv f32 %lld", N);
    model_text_floats(b, (size_t)N);
    tf("\ninit Z f32 1,1,%lld,%lld", M, N);
    model_text_floats(z, (size_t)(M * N));
    tf("\nnode MatMul X,W -> p\n");
    const char *s = "p";
    if (c->bias) tf("node Add %s,Bv -> pb\n", s), s = "pb";
    if (c->z) tf("node Add %s,Z -> pz\n", s), s = "pz";
    if (!c->act) tf("node Identity %s -> R\n", s);
    else if (!strcmp(c->act, "Gelu")) tf("node kiln.Gelu %s -> R approximate=string:%s\n", s, c->approx);
    else if (!strcmp(c->act, "LeakyRelu")) tf("node LeakyRelu %s -> R alpha=float:0.125\n", s);
    else tf("node %s %s -> R\n", c->act, s);
    tf("node kiln.FusedMatMul X,W,%s,%s -> Y", c->bias ? "Bv" : "_", c->z ? "Z" : "_");
    if (c->act) tf(" activation=string:%s", c->act);
    if (c->act && !strcmp(c->act, "Gelu")) tf(" approximate=string:%s", c->approx);
    if (c->act && !strcmp(c->act, "LeakyRelu")) tf(" activation_params=floats:0.125");
    tf("\n");
    int64_t d[4] = {1, 1, c->M, c->K};
    size_t ny = (size_t)(M * N);
    float *first = malloc(ny * sizeof *first);
    if (!first) exit(1);
    for (int t = 1; t <= 3; t++) {
        char what[200];
        snprintf(what, sizeof what, "FusedMatMul %lldx%lldx%lld%s%s %s%s%s, %d threads", M, K, N,
                 c->bias ? " +bias" : "", c->z ? " +Z" : "", c->act ? c->act : "no act",
                 c->approx ? " " : "", c->approx ? c->approx : "", t);
        kiln_value *out[2] = {NULL, NULL};
        if (model_text_run_x(x, d, t, out, false, NULL, 0, what)) {
            const float *r = kiln_value_data(out[0]), *y = kiln_value_data(out[1]);
            size_t bad = 0, bi = 0;
            for (size_t i = 0; i < ny; i++)
                if (memcmp(&r[i], &y[i], sizeof(float)) && !bad++) bi = i;
            CHECK(bad == 0, "%s: %zu of %zu differ from the unfused ops (first [%zu, %zu]: %.9g vs %.9g)", what,
                  bad, ny, bi / (size_t)N, bi % (size_t)N, bad ? r[bi] : 0.0, bad ? y[bi] : 0.0);
            if (t == 1) memcpy(first, y, ny * sizeof(float));
            else CHECK(!memcmp(first, y, ny * sizeof(float)), "%s: differs from 1 thread", what);
            if (!c->act && t == 1) {
                size_t nbad = 0;
                for (int64_t m = 0; m < c->M; m++)
                    for (int64_t n = 0; n < c->N; n++) {
                        double s = 0, mag = 0, extra = 0;
                        for (int64_t k = 0; k < c->K; k++) {
                            double p = (double)x[m * c->K + k] * w[k * c->N + n];
                            s += p, mag += fabs(p);
                        }
                        if (c->bias) s += b[n], extra += fabs(b[n]);
                        if (c->z) s += z[m * c->N + n], extra += fabs(z[m * c->N + n]);
                        double tol = 1e-6 * (double)(c->K + 1) * mag + 1e-6 * extra + 1e-30;
                        nbad += !(fabs(y[m * c->N + n] - s) <= tol);
                    }
                CHECK(nbad == 0, "%s: %zu elements off the float64 sum", what, nbad);
            }
        }
        kiln_value_free(out[0]);
        kiln_value_free(out[1]);
    }
    free(first), free(w), free(b), free(z), free(x);
}

/* A bias of the wrong length: the fused path declines it, finish fails as before. */
static void bad_bias(void)
{
    model_text_reset();
    tf("opset 17 kiln\ninput X f32 1,1,20,8\noutput Y\noutput Y2\n");
    tf("init W f32 8,40 rand\ninit Bv f32 39 rand\n");
    tf("node kiln.FusedMatMul X,W,Bv -> Y activation=string:Relu\nnode Identity Y -> Y2\n");
    int64_t d[4] = {1, 1, 20, 8};
    float x[160];
    for (int i = 0; i < 160; i++) x[i] = rng_f32();
    kiln_value *out[2] = {NULL, NULL};
    char msg[512] = "";
    bool ok = model_text_run_x(x, d, 1, out, true, msg, sizeof msg, "bad bias");
    CHECK(!ok && strstr(msg, "bias must be 40 values"), "bad bias: ran (%d) or said '%s'", ok, msg);
    kiln_value_free(out[0]);
    kiln_value_free(out[1]);
}

int main(void)
{
    setenv("KILN_MATMUL_PACKED", "pgemm", 1);
    rng_seed(0x6b31);
    static const struct fcase cases[] = {
        {1, 1, 1, true, true, NULL, NULL},
        {1, 33, 70, true, false, "Gelu", "none"},
        {5, 7, 31, false, true, "Relu", NULL},
        {14, 64, 40, true, true, "Gelu", "tanh"},
        {15, 100, 65, true, true, NULL, NULL},
        {29, 800, 96, true, false, "Gelu", "none"},
        {128, 96, 200, true, true, "Gelu", "none"},
        {128, 1601, 70, true, true, NULL, NULL},
        {197, 64, 100, false, true, "LeakyRelu", NULL},
        {197, 33, 33, true, false, "Gelu", "tanh"},
        {40, 769, 161, false, false, "Relu", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) fcase(&cases[i]);
    bad_bias();
    return test_summary("test_fused_pgemm");
}
