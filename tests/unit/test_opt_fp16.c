/* test_opt_fp16.c: the fp16_compute pass (src/opt/pass_fp16_compute.c) on small float16
 * models written in the text form of support/test_text_model.h, run on real data.
 *
 * Each case optimizes a copy of the model and checks the structure the pass promises: one
 * Cast(to=float) per float16 value entering a region, one Cast(to=float16) per region value
 * read outside it, under the value's original name; no float16 initializer left for the
 * region (widened to float32); the region's values inferred (and their value_info declared)
 * float32; Casts already in the model kept; regions of data movement only left alone. Then
 * it runs both copies on the same seeded inputs: the optimized model computes in float32
 * where the original rounds to float16 after every op, so outputs agree within float16
 * tolerance, |a - b| <= 1e-2 * (1 + |b|) (float16 has an 11-bit significand, 4.9e-4
 * relative per rounding; the models here chain at most 8 ops). The full extended level must
 * then fuse the float32 region (Conv + BatchNormalization + Relu), and a second run of the
 * pass changes nothing. Every allocation failing in turn leaves the model as it was.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "infer/infer.h"
#include "ir/half.h"
#include "ir/ir.h"
#include "kiln.h"
#include "test_support.h"
#include "test_text_model.h"

#define TOL 1e-2

static kiln_model *load(const char *text)
{
    struct buf b;
    rng_seed(5); /* the same weights for every copy */
    parse_model(text, &b);
    kiln_model *m = NULL;
    kiln_err e = {0};
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &e);
    free(b.p);
    CHECK(st == KILN_OK, "load: %s", e.msg);
    return st ? NULL : m;
}

static kiln_status optimize(kiln_model *m, const char *passes)
{
    kiln_optimize_options opt = {.level = KILN_OPT_EXTENDED, .passes = passes, .keep_fused = true};
    kiln_err e = {0};
    kiln_status st = kiln_model_optimize(m, &opt, &e);
    CHECK(st == KILN_OK, "optimize %s: %s", passes ? passes : "(extended)", e.msg);
    return st;
}

/* ------------------------------------------------------------------ running */

struct run {
    size_t n_out;
    kiln_value *out[8];
};

/* Runs m on seeded random inputs (floats in [-1, 1], float16 rounded; int64 in [0, 4)). */
static bool run_model(const kiln_model *m, struct run *r, const char *what)
{
    size_t n_in = kiln_model_input_count(m);
    kiln_value *in[8] = {0};
    kiln_err e = {0};
    rng_seed(77);
    for (size_t i = 0; i < n_in && i < 8; i++) {
        int rank = kiln_model_input_rank(m, i);
        int64_t dims[8];
        for (int d = 0; d < rank; d++) dims[d] = kiln_model_input_dim(m, i, d, NULL);
        kiln_dtype dt = kiln_model_input_dtype(m, i);
        if (kiln_value_create_tensor(dt, rank, dims, &in[i], &e)) exit(1);
        size_t k = kiln_value_numel(in[i]);
        for (size_t j = 0; j < k; j++) {
            if (dt == KILN_DTYPE_F32)
                ((float *)kiln_value_data(in[i]))[j] = rng_f32();
            else if (dt == KILN_DTYPE_F16)
                ((uint16_t *)kiln_value_data(in[i]))[j] = kiln_half_f32_to_f16(rng_f32());
            else
                ((int64_t *)kiln_value_data(in[i]))[j] = rng_int(4);
        }
    }
    kiln_session *s = NULL;
    r->n_out = kiln_model_output_count(m);
    kiln_status st = kiln_session_create(m, NULL, &s, &e);
    if (!st) st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, r->n_out, r->out, &e);
    CHECK(st == KILN_OK, "%s: run failed: %s", what, e.msg);
    kiln_session_free(s);
    for (size_t i = 0; i < n_in; i++) kiln_value_free(in[i]);
    return st == KILN_OK;
}

static void free_run(struct run *r)
{
    for (size_t i = 0; i < r->n_out; i++) kiln_value_free(r->out[i]);
    r->n_out = 0;
}

static double elem(kiln_value *v, size_t j)
{
    if (kiln_value_dtype(v) == KILN_DTYPE_F16) return kiln_half_f16_to_f32(((const uint16_t *)kiln_value_data(v))[j]);
    return ((const float *)kiln_value_data(v))[j];
}

/* Runs both models and checks their float outputs agree within TOL (same types, shapes). */
static void same_outputs(const kiln_model *m0, const kiln_model *m1, const char *what)
{
    struct run a = {0}, b = {0};
    if (run_model(m0, &a, what) && run_model(m1, &b, what)) {
        double worst = 0;
        for (size_t i = 0; i < a.n_out; i++) {
            kiln_dtype dt = kiln_value_dtype(a.out[i]);
            size_t n = kiln_value_numel(a.out[i]);
            CHECK(dt == kiln_value_dtype(b.out[i]) && n == kiln_value_numel(b.out[i]) && n > 0,
                  "%s: output %zu changed type or size", what, i);
            if (dt != kiln_value_dtype(b.out[i]) || n != kiln_value_numel(b.out[i])) continue;
            if (dt != KILN_DTYPE_F32 && dt != KILN_DTYPE_F16) continue;
            for (size_t j = 0; j < n; j++) {
                double x = elem(a.out[i], j), y = elem(b.out[i], j);
                double d = fabs(x - y) / (1 + fabs(x));
                if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
            }
        }
        CHECK(worst <= TOL, "%s: outputs differ by %.3g (tolerance %.0e)", what, worst, TOL);
    }
    free_run(&a);
    free_run(&b);
}

/* ------------------------------------------------------------------ structure */

static const struct kiln_node *producer(const kiln_model *m, const char *name)
{
    const struct kiln_graph *g = m->graph;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i].n_out; k++)
            if (!strcmp(g->nodes[i].outputs[k], name)) return &g->nodes[i];
    return NULL;
}

static size_t count_op(const kiln_model *m, const char *op)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_nodes; i++) c += !strcmp(m->graph->nodes[i].op_type, op);
    return c;
}

/* Whether `out` is made by Cast(in, to=to). */
static bool is_cast(const kiln_model *m, const char *in, const char *out, kiln_dtype to)
{
    const struct kiln_node *n = producer(m, out);
    if (!n || strcmp(n->op_type, "Cast") || n->n_in != 1 || strcmp(n->inputs[0], in)) return false;
    const struct kiln_attr *a = kiln_node_attr(n, "to");
    return a && a->type == KILN_ATTR_INT && a->i == (int64_t)to;
}

/* Input k of the node making `out` (NULL when none). */
static const char *input_of(const kiln_model *m, const char *out, size_t k)
{
    const struct kiln_node *n = producer(m, out);
    return n && k < n->n_in ? n->inputs[k] : NULL;
}

static kiln_dtype inferred(const kiln_model *m, const char *name)
{
    const struct kiln_vtype *vt = kiln_infer_lookup(m->graph, name);
    return vt && vt->type.kind == KILN_TYPE_TENSOR ? vt->type.elem : KILN_DTYPE_UNDEFINED;
}

static kiln_dtype declared(const kiln_model *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_value_info; i++)
        if (!strcmp(m->graph->value_info[i].name, name)) return m->graph->value_info[i].type.elem;
    return KILN_DTYPE_UNDEFINED;
}

static size_t f16_inits(const kiln_model *m)
{
    size_t c = 0;
    for (size_t i = 0; i < m->graph->n_inits; i++) c += m->graph->inits[i].t.dtype == KILN_DTYPE_F16;
    return c;
}

static const struct kiln_tensor *init_of(const kiln_model *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_inits; i++)
        if (name && !strcmp(m->graph->inits[i].name, name)) return &m->graph->inits[i].t;
    return NULL;
}

/* A second run of the pass changes nothing. */
static void fixed_point(kiln_model *m, const char *what)
{
    size_t nodes = m->graph->n_nodes, casts = count_op(m, "Cast");
    if (optimize(m, "fp16_compute,dce")) return;
    CHECK(m->graph->n_nodes == nodes && count_op(m, "Cast") == casts, "%s: a second run changed the graph",
          what);
}

/* ------------------------------------------------------------------ cases */

/* A CNN as float16 converters write it: Casts at the float32 interface. */
static const char *CNN = "opset 17\n"
                         "input x f32 1,3,9,8\n"
                         "init w f16 4,3,3,3 rand\ninit b f16 4 rand\n"
                         "init s f16 4 pos\ninit t f16 4 rand\ninit mu f16 4 rand\ninit var f16 4 pos\n"
                         "init wg f16 4,5 rand\ninit bg f16 5 rand\n"
                         "node Cast x -> x16 to=int:10\n"
                         "node Conv x16,w,b -> c pads=ints:1,1,1,1\n"
                         "node BatchNormalization c,s,t,mu,var -> bn\n"
                         "node Relu bn -> r\n"
                         "node MaxPool r -> p kernel_shape=ints:2,2 strides=ints:2,2\n"
                         "node GlobalAveragePool p -> gp\n"
                         "node Flatten gp -> f\n"
                         "node Gemm f,wg,bg -> y16\n"
                         "node Cast y16 -> y to=int:1\n"
                         "value x16 f16\nvalue c f16\nvalue r f16\nvalue y16 f16\n"
                         "output y\n";

static void test_cnn(void)
{
    kiln_model *m0 = load(CNN), *m1 = load(CNN), *m2 = load(CNN);
    if (!m0 || !m1 || !m2) goto out;
    if (optimize(m1, "fp16_compute,dce")) goto out;
    CHECK(count_op(m1, "Cast") == 4, "cnn: %zu Casts, expected 4", count_op(m1, "Cast"));
    /* the model's rounding of its input, then the region's widening */
    CHECK(is_cast(m1, "x", "x16", KILN_DTYPE_F16), "cnn: the input Cast changed");
    const char *xin = input_of(m1, "c", 0);
    CHECK(xin && strcmp(xin, "x16") && is_cast(m1, "x16", xin, KILN_DTYPE_F32),
          "cnn: Conv does not read a float32 Cast of x16 (reads %s)", xin ? xin : "?");
    /* leaving: the Gemm writes a new name, y16 stays the float16 value */
    const char *g32 = input_of(m1, "y16", 0);
    CHECK(g32 && strcmp(g32, "y16") && producer(m1, g32) && !strcmp(producer(m1, g32)->op_type, "Gemm") &&
              is_cast(m1, g32, "y16", KILN_DTYPE_F16),
          "cnn: y16 is not a float16 Cast of the Gemm's output");
    CHECK(is_cast(m1, "y16", "y", KILN_DTYPE_F32), "cnn: the output Cast changed");
    CHECK(inferred(m1, "y16") == KILN_DTYPE_F16 && declared(m1, "y16") == KILN_DTYPE_F16,
          "cnn: the boundary value y16 was retyped");
    CHECK(f16_inits(m1) == 0, "cnn: %zu float16 initializers left", f16_inits(m1));
    const struct kiln_tensor *w = init_of(m1, input_of(m1, "c", 1)), *w0 = init_of(m0, "w");
    CHECK(w && w0 && w->dtype == KILN_DTYPE_F32 && kiln_tensor_numel(w) == kiln_tensor_numel(w0),
          "cnn: the Conv weight is not a float32 initializer");
    for (size_t i = 0; w && w0 && i < kiln_tensor_numel(w); i++)
        if (((const float *)w->data)[i] != kiln_half_f16_to_f32(((const uint16_t *)w0->data)[i])) {
            CHECK(false, "cnn: weight %zu not widened exactly", i);
            break;
        }
    static const char *const region[] = {"c", "bn", "r", "p", "gp", "f", NULL};
    for (size_t i = 0; region[i]; i++)
        CHECK(inferred(m1, region[i]) == KILN_DTYPE_F32, "cnn: %s not float32", region[i]);
    CHECK(declared(m1, "c") == KILN_DTYPE_F32 && declared(m1, "r") == KILN_DTYPE_F32,
          "cnn: value_info not retyped");
    CHECK(kiln_model_check(m1, NULL, NULL) == 0, "cnn: optimized model invalid");
    same_outputs(m0, m1, "cnn");
    fixed_point(m1, "cnn");
    /* The whole extended level: the float32 region fuses. */
    if (optimize(m2, NULL)) goto out;
    CHECK(count_op(m2, "BatchNormalization") == 0 && count_op(m2, "Relu") == 0 && f16_inits(m2) == 0,
          "cnn: the float32 region did not fuse (BN %zu, Relu %zu)", count_op(m2, "BatchNormalization"),
          count_op(m2, "Relu"));
    same_outputs(m0, m2, "cnn extended");
out:
    kiln_model_free(m0);
    kiln_model_free(m1);
    kiln_model_free(m2);
}

/* Float16 interface; a region value that is also a graph output and read by a node outside
 * the region (ArgMax is not eligible). */
static const char *ATTN = "opset 17\n"
                          "input x f16 2,4,8\n"
                          "init w f16 8,8 rand\ninit bias f16 8 rand\ninit g f16 8 pos\ninit be f16 8 rand\n"
                          "node MatMul x,w -> mm\n"
                          "node Add mm,bias -> a\n"
                          "node Softmax a -> s axis=int:-1\n"
                          "node LayerNormalization s,g,be -> y axis=int:-1\n"
                          "node ArgMax a -> am axis=int:-1\n"
                          "output y f16\noutput a f16\noutput am i64\n";

static void test_interface(void)
{
    kiln_model *m0 = load(ATTN), *m1 = load(ATTN);
    if (!m0 || !m1 || optimize(m1, "fp16_compute,dce")) goto out;
    CHECK(count_op(m1, "Cast") == 3, "interface: %zu Casts, expected 3", count_op(m1, "Cast"));
    const char *xin = input_of(m1, "mm", 0), *a32 = input_of(m1, "a", 0), *y32 = input_of(m1, "y", 0);
    CHECK(xin && is_cast(m1, "x", xin, KILN_DTYPE_F32), "interface: MatMul does not read a Cast of x");
    CHECK(a32 && strcmp(a32, "a") && is_cast(m1, a32, "a", KILN_DTYPE_F16) &&
              !strcmp(producer(m1, a32)->op_type, "Add"),
          "interface: output a is not a Cast of the Add");
    CHECK(!strcmp(input_of(m1, "s", 0), a32), "interface: Softmax does not read the float32 Add");
    CHECK(!strcmp(input_of(m1, "am", 0), "a"), "interface: ArgMax does not read the float16 a");
    CHECK(y32 && is_cast(m1, y32, "y", KILN_DTYPE_F16), "interface: output y is not a Cast");
    CHECK(inferred(m1, "a") == KILN_DTYPE_F16 && inferred(m1, "y") == KILN_DTYPE_F16 &&
              inferred(m1, "s") == KILN_DTYPE_F32 && inferred(m1, "mm") == KILN_DTYPE_F32,
          "interface: wrong types");
    CHECK(f16_inits(m1) == 0, "interface: %zu float16 initializers left", f16_inits(m1));
    CHECK(kiln_model_check(m1, NULL, NULL) == 0, "interface: optimized model invalid");
    same_outputs(m0, m1, "interface");
    fixed_point(m1, "interface");
out:
    kiln_model_free(m0);
    kiln_model_free(m1);
}

/* Only data movement between the Casts: nothing to gain, left alone. */
static const char *MOVE = "opset 17\n"
                          "input x f32 2,3,4\ninit shp i64 2 = 6,4\n"
                          "node Cast x -> h to=int:10\n"
                          "node Reshape h,shp -> r\n"
                          "node Transpose r -> t perm=ints:1,0\n"
                          "node Cast t -> y to=int:1\n"
                          "output y\n";

static void test_move_only(void)
{
    kiln_model *m = load(MOVE);
    if (!m || optimize(m, "fp16_compute,dce")) goto out;
    CHECK(m->graph->n_nodes == 4 && count_op(m, "Cast") == 2 && !strcmp(input_of(m, "r", 0), "h") &&
              inferred(m, "r") == KILN_DTYPE_F16,
          "move: a movement-only region changed");
out:
    kiln_model_free(m);
}

/* Resize's scales are float32 whatever the data type: they stay as they are. */
static const char *RESIZE = "opset 17\n"
                            "input x f32 1,2,3,3\ninit sc f32 4 = 1,1,2,2\ninit k f16 1 = 0.5\n"
                            "node Cast x -> h to=int:10\n"
                            "node Resize h,_,sc -> rz mode=string:linear\n"
                            "node Mul rz,k -> mu\n"
                            "node Cast mu -> y to=int:1\n"
                            "output y\n";

static void test_resize(void)
{
    kiln_model *m0 = load(RESIZE), *m1 = load(RESIZE);
    if (!m0 || !m1 || optimize(m1, "fp16_compute,dce")) goto out;
    CHECK(count_op(m1, "Cast") == 4, "resize: %zu Casts, expected 4", count_op(m1, "Cast"));
    const struct kiln_tensor *sc = init_of(m1, input_of(m1, "rz", 2));
    CHECK(sc && sc->dtype == KILN_DTYPE_F32 && !strcmp(input_of(m1, "rz", 2), "sc"), "resize: scales changed");
    CHECK(inferred(m1, "rz") == KILN_DTYPE_F32 && f16_inits(m1) == 0, "resize: region not converted");
    same_outputs(m0, m1, "resize");
    fixed_point(m1, "resize");
out:
    kiln_model_free(m0);
    kiln_model_free(m1);
}

/* Every allocation failing in turn: NOMEM with the model as it was, or success. */
static void test_nomem(void)
{
    size_t failures = 0;
    for (long n = 1; n < 100000; n++) {
        kiln_model *m = load(CNN);
        if (!m) break;
        size_t nodes = m->graph->n_nodes, f16 = f16_inits(m);
        kiln_optimize_options o = {.level = KILN_OPT_EXTENDED, .passes = "fp16_compute"};
        kiln_err e = {0};
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_model_optimize(m, &o, &e);
        kiln_alloc_fail_after(0);
        if (st == KILN_OK) {
            CHECK(count_op(m, "Cast") == 4, "nomem: %zu Casts after success", count_op(m, "Cast"));
            kiln_model_free(m);
            break;
        }
        failures++;
        CHECK(st == KILN_E_NOMEM, "allocation %ld: status %d (%s)", n, st, e.msg);
        CHECK(m->graph->n_nodes == nodes && f16_inits(m) == f16 && count_op(m, "Cast") == 2,
              "allocation %ld: model changed", n);
        kiln_model_free(m);
    }
    CHECK(failures > 0, "nomem: no allocation failed");
}

int main(void)
{
    test_cnn();
    test_interface();
    test_move_only();
    test_resize();
    test_nomem();
    return test_summary("test_opt_fp16");
}
