/* test_infer.c: the shape-inference driver (src/infer/infer.c) and the shape family's rules
 * (shape_shape.c) on small graphs built directly in the IR: symbolic shape arithmetic
 * (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), constant evaluation, declared-type
 * merging and contradictions, data-dependent sizes, hostile sizes, and the public API
 * (kiln_model_set_input_shape, kiln_model_value_*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer_priv.h"
#include "test_support.h"

/* ------------------------------------------------------------------ a tiny graph builder */

struct tb {
    struct kiln_model m;
    struct kiln_graph g;
    struct kiln_opset opset;
    struct kiln_node nodes[32];
    struct kiln_value_info in[8], out[8], vi[8];
    struct kiln_initializer inits[16];
    struct problems {
        size_t n;
        char msg[16][600];
    } p;
};

static struct kiln_arena *A(struct tb *t) { return &t->m.arena; }

static char *dup(struct tb *t, const char *s) { return kiln_arena_strndup(A(t), s, strlen(s)); }

/* "N,seq,768": numbers are known, "?" unknown, names symbolic; "" is rank 0; NULL: no type. */
static struct kiln_type ty(struct tb *t, kiln_dtype dt, const char *dims)
{
    struct kiln_type r = {.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = -1};
    if (!dims) return (struct kiln_type){.kind = KILN_TYPE_NONE, .rank = -1};
    r.dims = kiln_arena_array(A(t), 16, sizeof *r.dims);
    r.rank = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", dims);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        struct kiln_dim d = {.value = -1};
        if (tok[0] >= '0' && tok[0] <= '9') d.value = strtoll(tok, NULL, 10);
        else if (strcmp(tok, "?") != 0) d.param = dup(t, tok);
        r.dims[r.rank++] = d;
    }
    return r;
}

static void tb_init(struct tb *t, int opset)
{
    memset(t, 0, sizeof *t);
    t->opset = (struct kiln_opset){"", opset};
    t->m.opsets = &t->opset;
    t->m.n_opsets = 1;
    t->m.ir_version = 8;
    t->m.graph = &t->g;
    t->g.name = "g";
    t->g.nodes = t->nodes;
    t->g.inputs = t->in;
    t->g.outputs = t->out;
    t->g.value_info = t->vi;
    t->g.inits = t->inits;
}

static void tb_input(struct tb *t, const char *name, kiln_dtype dt, const char *dims)
{
    t->in[t->g.n_inputs++] = (struct kiln_value_info){.name = name, .type = ty(t, dt, dims)};
}

static void tb_output(struct tb *t, const char *name, kiln_dtype dt, const char *dims)
{
    t->out[t->g.n_outputs++] = (struct kiln_value_info){.name = name, .type = ty(t, dt, dims)};
}

static void tb_vi(struct tb *t, const char *name, kiln_dtype dt, const char *dims)
{
    t->vi[t->g.n_value_info++] = (struct kiln_value_info){.name = name, .type = ty(t, dt, dims)};
}

/* An int64 initializer: rank 0 when rank0, else 1-D of n values. */
static void tb_ints(struct tb *t, const char *name, bool rank0, size_t n, const int64_t *v)
{
    struct kiln_initializer *in = &t->inits[t->g.n_inits++];
    in->name = name;
    in->t.dtype = KILN_DTYPE_I64;
    in->t.rank = rank0 ? 0 : 1;
    in->t.dims[0] = (int64_t)n;
    in->t.data = kiln_arena_array(A(t), n ? n : 1, sizeof(int64_t));
    memcpy(in->t.data, v, n * sizeof *v);
}

static size_t split(struct tb *t, const char *list, const char ***out)
{
    size_t n = 0;
    *out = kiln_arena_array(A(t), 16, sizeof **out);
    if (!list || !list[0]) return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *s = buf, *e; s; s = e ? e + 1 : NULL) {
        e = strchr(s, ',');
        if (e) *e = 0;
        (*out)[n++] = strcmp(s, "-") == 0 ? "" : dup(t, s); /* "-": absent */
    }
    return n;
}

static void tb_node(struct tb *t, const char *op, const char *name, const char *ins,
                    const char *outs, const struct kiln_attr *attrs, size_t n_attr)
{
    struct kiln_node *n = &t->nodes[t->g.n_nodes++];
    n->op_type = op;
    n->domain = "";
    n->name = name;
    n->n_in = split(t, ins, &n->inputs);
    n->n_out = split(t, outs, &n->outputs);
    n->attrs = kiln_arena_array(A(t), n_attr + 1, sizeof *n->attrs);
    memcpy(n->attrs, attrs, n_attr * sizeof *attrs);
    n->n_attr = n_attr;
}

static void collect(void *user, const char *msg)
{
    struct problems *p = user;
    if (p->n < 16) snprintf(p->msg[p->n], sizeof p->msg[0], "%s", msg);
    p->n++;
}

static bool tb_infer(struct tb *t, unsigned flags)
{
    kiln_err err = {0};
    if (kiln_model_link(&t->m, &err) || t->m.n_link_errors) {
        CHECK(0, "link: %s", err.msg);
        return false;
    }
    memset(&t->p, 0, sizeof t->p);
    kiln_status st = kiln_infer_model_ex(&t->m, flags, collect, &t->p, NULL, &err);
    CHECK(st == KILN_OK, "inference failed: %s", err.msg);
    return st == KILN_OK;
}

/* The inferred type of value `name` as text. */
static const char *type_of(struct tb *t, const char *name)
{
    static char buf[4][400];
    static int k;
    char *b = buf[k++ % 4];
    const struct kiln_vtype *v = kiln_infer_lookup(t->m.graph, name);
    if (!v) return "(no such value)";
    kiln_vtype_str(v, b, 400);
    return b;
}

#define TYPE_IS(t, name, want)                                                                     \
    do {                                                                                           \
        const char *got_ = type_of(t, name);                                                       \
        CHECK(strcmp(got_, want) == 0, "%s: got %s, want %s", name, got_, want);                   \
    } while (0)

static bool has_problem(struct tb *t, const char *text)
{
    for (size_t i = 0; i < t->p.n && i < 16; i++)
        if (strstr(t->p.msg[i], text)) return true;
    return false;
}

static void tb_free(struct tb *t) { kiln_arena_free(&t->m.arena); }

/* ------------------------------------------------------------------ tests */

static const int64_t I0[] = {0}, I1[] = {1}, I12_64[] = {12, 64}, I00M1[] = {0, 0, -1},
                     M1_768[] = {-1, 768}, P0213[] = {0, 2, 1, 3};

/* x[N,seq,768] -> Shape -> Gather 0/1 -> Unsqueeze -> Concat [12,64] -> Reshape, then
 * Transpose and Reshape back with 0 and -1: the exporter pattern of attention heads. */
static void build_heads(struct tb *t)
{
    tb_init(t, 13);
    tb_input(t, "x", KILN_DTYPE_F32, "N,seq,768");
    tb_ints(t, "i0", true, 1, I0);
    tb_ints(t, "i1", true, 1, I1);
    tb_ints(t, "ax0", false, 1, I0);
    tb_ints(t, "heads", false, 2, I12_64);
    tb_ints(t, "flat", false, 3, I00M1);
    tb_ints(t, "rows", false, 2, M1_768);
    struct kiln_attr axis0 = attr_i("axis", 0), perm = attr_ints("perm", P0213, 4);
    tb_node(t, "Shape", "shape", "x", "s", NULL, 0);
    tb_node(t, "Gather", "g0", "s,i0", "n", NULL, 0);
    tb_node(t, "Gather", "g1", "s,i1", "l", NULL, 0);
    tb_node(t, "Unsqueeze", "u0", "n,ax0", "un", NULL, 0);
    tb_node(t, "Unsqueeze", "u1", "l,ax0", "ul", NULL, 0);
    tb_node(t, "Concat", "cat", "un,ul,heads", "shp", &axis0, 1);
    tb_node(t, "Reshape", "r1", "x,shp", "y", NULL, 0);
    tb_node(t, "Transpose", "tr", "y", "yt", &perm, 1);
    tb_node(t, "Reshape", "r2", "yt,flat", "z", NULL, 0);
    tb_node(t, "Reshape", "r3", "x,rows", "w", NULL, 0);
    tb_node(t, "Size", "size", "x", "sz", NULL, 0);
    tb_output(t, "z", KILN_DTYPE_F32, "N,12,?");
}

static void test_symbolic_heads(void)
{
    struct tb t;
    build_heads(&t);
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "s", "int64[3]");
    TYPE_IS(&t, "n", "int64[]");
    TYPE_IS(&t, "shp", "int64[4]");
    const struct kiln_vtype *v = kiln_infer_lookup(t.m.graph, "shp");
    CHECK(v && v->n_vals == 4 && v->vals[0].param && strcmp(v->vals[0].param, "N") == 0 &&
              v->vals[3].value == 64,
          "shape arithmetic carries the elements (N, seq, 12, 64)");
    TYPE_IS(&t, "y", "float32[N,seq,12,64]");
    TYPE_IS(&t, "yt", "float32[N,12,seq,64]");
    TYPE_IS(&t, "z", "float32[N,12,64*seq]");
    TYPE_IS(&t, "w", "float32[N*seq,768]");
    TYPE_IS(&t, "sz", "int64[]");
    v = kiln_infer_lookup(t.m.graph, "sz");
    CHECK(v && v->n_vals == 1 && v->vals[0].param && strcmp(v->vals[0].param, "768*N*seq") == 0,
          "Size is the product of the dims (%s)", v && v->n_vals == 1 && v->vals[0].param ? v->vals[0].param : "?");
    CHECK(t.p.n == 0, "no problems (%zu: %s)", t.p.n, t.p.msg[0]);

    /* The public API: fix the input, infer, list values. */
    kiln_err err = {0};
    const int64_t dims[] = {2, 5, 768}, bad_rank[] = {2, 5}, bad_dim[] = {2, 5, 769};
    CHECK(kiln_model_set_input_shape(&t.m, "x", 2, bad_rank, &err) == KILN_E_INVALID_ARG &&
              strstr(err.msg, "rank"),
          "wrong rank refused: %s", err.msg);
    CHECK(kiln_model_set_input_shape(&t.m, "x", 3, bad_dim, &err) == KILN_E_INVALID_ARG &&
              strstr(err.msg, "768"),
          "contradicting a declared dim refused: %s", err.msg);
    CHECK(kiln_model_set_input_shape(&t.m, "nope", 3, dims, &err) == KILN_E_INVALID_ARG, "no such input");
    CHECK(kiln_model_value_count(&t.m) == 18, "a refused shape changes nothing");
    CHECK(kiln_model_set_input_shape(&t.m, "x", 3, dims, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_model_value_count(&t.m) == 0, "no listing until inference runs again");
    CHECK(kiln_model_infer_shapes(&t.m, &err) == KILN_OK, "%s", err.msg);
    TYPE_IS(&t, "y", "float32[2,5,12,64]");
    TYPE_IS(&t, "z", "float32[2,12,320]");
    size_t n = kiln_model_value_count(&t.m);
    CHECK(n == 1 + 6 + 11, "value count %zu", n);
    CHECK(strcmp(kiln_model_value_name(&t.m, 0), "x") == 0, "inputs first");
    CHECK(strcmp(kiln_model_value_name(&t.m, 1), "i0") == 0, "then initializers");
    CHECK(strcmp(kiln_model_value_name(&t.m, 7), "s") == 0, "then node outputs in order");
    char buf[64];
    size_t need = kiln_model_value_type(&t.m, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "float32[2,5,768]") == 0 && need == strlen(buf), "value type %s", buf);
    need = kiln_model_value_type(&t.m, 0, buf, 4);
    CHECK(need == strlen("float32[2,5,768]") && strlen(buf) == 3, "truncated like snprintf");
    /* with all shapes known, Shape -> ... became constants */
    v = kiln_infer_lookup(t.m.graph, "shp");
    CHECK(v && v->konst && ((const int64_t *)v->konst->data)[1] == 5, "known shape arithmetic is constant");
    tb_free(&t);
}

/* Constant subgraphs are evaluated with the CPU kernels. */
static void test_constant_evaluation(void)
{
    struct tb t;
    tb_init(&t, 17);
    static const int64_t two_three[] = {2, 3}, s0[] = {0}, s5[] = {5}, d1[] = {1};
    tb_input(&t, "x", KILN_DTYPE_F32, "4");
    struct kiln_attr vi = attr_ints("value_ints", two_three, 2);
    tb_node(&t, "Constant", "c", "", "c23", &vi, 1);
    tb_node(&t, "ConstantOfShape", "cos", "c23", "zeros", NULL, 0);
    tb_ints(&t, "start", true, 1, s0);
    tb_ints(&t, "limit", true, 1, s5);
    tb_ints(&t, "delta", true, 1, d1);
    tb_node(&t, "Range", "range", "start,limit,delta", "r", NULL, 0);
    tb_node(&t, "Shape", "sh", "zeros", "zs", NULL, 0);
    tb_node(&t, "Tile", "tile", "x,d", "xt", NULL, 0);
    tb_ints(&t, "d", false, 1, (const int64_t[]){3});
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "c23", "int64[2]");
    TYPE_IS(&t, "zeros", "float32[2,3]");
    const struct kiln_vtype *v = kiln_infer_lookup(t.m.graph, "zeros");
    CHECK(v && v->konst && kiln_tensor_numel(v->konst) == 6, "ConstantOfShape was evaluated");
    TYPE_IS(&t, "r", "int64[5]");
    v = kiln_infer_lookup(t.m.graph, "r");
    CHECK(v && v->konst && ((const int64_t *)v->konst->data)[4] == 4, "Range was evaluated");
    CHECK(v && v->n_vals == 5 && v->vals[3].value == 3, "and its elements are vals");
    TYPE_IS(&t, "zs", "int64[2]");
    TYPE_IS(&t, "xt", "float32[12]");
    CHECK(t.p.n == 0, "no problems (%s)", t.p.msg[0]);
    tb_free(&t);
}

/* Declared value_info and outputs: merged, contradictions reported, or ignored. */
static void test_declared(void)
{
    struct tb t;
    tb_init(&t, 13);
    tb_input(&t, "x", KILN_DTYPE_F32, "1,3,8,8");
    tb_input(&t, "shape", KILN_DTYPE_I64, "2");
    tb_node(&t, "Transpose", "t", "x", "y", NULL, 0);
    tb_node(&t, "Reshape", "r", "x,shape", "z", NULL, 0);
    tb_node(&t, "Transpose", "t2", "x", "w", NULL, 0);
    tb_vi(&t, "y", KILN_DTYPE_F32, "8,8,3,2");
    tb_output(&t, "z", KILN_DTYPE_F32, "2,?");
    tb_output(&t, "w", KILN_DTYPE_I32, "8,8,3,1");
    if (!tb_infer(&t, 0)) return;
    CHECK(t.p.n == 2, "two contradictions, got %zu", t.p.n);
    CHECK(has_problem(&t, "Transpose node 't': output 'y' declared float32[8,8,3,2], inferred float32[8,8,3,1]"),
          "dim contradiction named: %s", t.p.msg[0]);
    CHECK(has_problem(&t, "Transpose node 't2': output 'w' declared int32[8,8,3,1], inferred float32[8,8,3,1]"),
          "element type contradiction named: %s", t.p.msg[1]);
    TYPE_IS(&t, "y", "float32[8,8,3,1]"); /* the inferred type wins */
    TYPE_IS(&t, "z", "float32[2,?]");     /* a declared dim fills an unknown one */
    /* ignoring declarations: no problems, only what the rules know */
    if (!tb_infer(&t, KILN_INFER_IGNORE_DECLARED)) return;
    CHECK(t.p.n == 0, "no problems when ignoring declarations (%s)", t.p.msg[0]);
    TYPE_IS(&t, "z", "float32[?,?]");
    tb_free(&t);

    /* rank contradiction and a declared type with no rule behind it */
    tb_init(&t, 13);
    tb_input(&t, "x", KILN_DTYPE_F32, "N,4");
    tb_node(&t, "Flatten", "f", "x", "y", NULL, 0);
    tb_node(&t, "NoSuchOp", "u", "x", "q", NULL, 0);
    tb_vi(&t, "y", KILN_DTYPE_F32, "N");
    tb_vi(&t, "q", KILN_DTYPE_F16, "7,batch size");
    if (!tb_infer(&t, 0)) return;
    CHECK(has_problem(&t, "Flatten node 'f': output 'y' declared float32[N], inferred float32[N,4]"),
          "rank contradiction: %s", t.p.msg[0]);
    TYPE_IS(&t, "q", "float16[7,(batch size)]");
    tb_free(&t);
}

static void test_data_dependent(void)
{
    struct tb t;
    tb_init(&t, 13);
    tb_input(&t, "x", KILN_DTYPE_F32, "3,4");
    tb_node(&t, "NonZero", "nz", "x", "idx", NULL, 0);
    tb_node(&t, "Transpose", "t", "idx", "idxt", NULL, 0);
    tb_node(&t, "Shape", "s", "idxt", "ss", NULL, 0);
    tb_node(&t, "Unique", "u", "x", "uy,ui,uinv,uc", NULL, 0);
    if (!tb_infer(&t, 0)) return;
    const char *a = type_of(&t, "idx");
    CHECK(strncmp(a, "int64[2,NonZero_", 16) == 0 && strstr(a, "(data-dependent)"), "NonZero: %s", a);
    const char *b = type_of(&t, "idxt");
    CHECK(strncmp(b, "int64[NonZero_", 14) == 0 && strstr(b, ",2] (data-dependent)"),
          "data dependence flows on: %s", b);
    TYPE_IS(&t, "ss", "int64[2]");
    const char *u = type_of(&t, "uy"), *c = type_of(&t, "uc");
    CHECK(strncmp(u, "float32[Unique_", 15) == 0 && strncmp(c, "int64[Unique_", 13) == 0 &&
              strcmp(strchr(u, '['), strchr(c, '[')) == 0,
          "Unique's outputs share one size: %s %s", u, c);
    TYPE_IS(&t, "uinv", "int64[12]");
    tb_free(&t);
}

/* Hostile sizes and contradictions inside rules: problems, never crashes or huge work. */
static void test_hostile(void)
{
    struct tb t;
    tb_init(&t, 13);
    static const int64_t huge[] = {INT64_C(1) << 40, INT64_C(1) << 40}, zero3[] = {0, 0, 0, 0},
                         five[] = {5}, idx9[] = {9};
    tb_input(&t, "x", KILN_DTYPE_F32, "2,3");
    tb_ints(&t, "huge", false, 2, huge);
    tb_ints(&t, "z4", false, 4, zero3);
    tb_ints(&t, "ax5", false, 1, five);
    tb_ints(&t, "i9", true, 1, idx9);
    struct kiln_attr axis5 = attr_i("axis", 5);
    tb_node(&t, "ConstantOfShape", "big", "huge", "b", NULL, 0);
    tb_node(&t, "Reshape", "r", "x,z4", "r0", NULL, 0);
    tb_node(&t, "Concat", "cat", "x,x", "c", &axis5, 1);
    tb_node(&t, "Squeeze", "sq", "x,ax5", "q", NULL, 0);
    tb_node(&t, "Shape", "sh", "x", "s", NULL, 0);
    tb_node(&t, "Gather", "g", "s,i9", "gs", NULL, 0);
    tb_node(&t, "Tile", "tile", "b,huge", "bt", NULL, 0);
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "b", "float32[1099511627776,1099511627776]");
    const struct kiln_vtype *v = kiln_infer_lookup(t.m.graph, "b");
    CHECK(v && !v->konst, "a huge constant is not evaluated");
    TYPE_IS(&t, "bt", "float32[?,?]"); /* 2^80 overflows: unknown, not wrapped */
    CHECK(has_problem(&t, "Reshape node 'r': shape[2] is 0 (copy) but the input has rank 2"), "%s", t.p.msg[0]);
    CHECK(has_problem(&t, "Concat node 'cat': axis 5 is out of range for rank 2"), "concat axis");
    CHECK(has_problem(&t, "Squeeze node 'sq': axis 5 is out of range for rank 2"), "squeeze axis");
    CHECK(has_problem(&t, "Gather node 'g': index 9 is out of range for 2 elements"), "gather index");
    TYPE_IS(&t, "r0", "unknown");
    tb_free(&t);
}

static void test_split_slice(void)
{
    struct tb t;
    tb_init(&t, 18);
    static const int64_t st[] = {1}, en[] = {INT64_MAX}, en2[] = {-1}, ax1[] = {1};
    tb_input(&t, "x", KILN_DTYPE_F32, "10,N");
    struct kiln_attr n3 = attr_i("num_outputs", 3), ax = attr_i("axis", 1);
    tb_node(&t, "Split", "sp", "x", "a,b,c", &n3, 1);
    struct kiln_attr n2[] = {attr_i("num_outputs", 2), attr_i("axis", 1)};
    tb_node(&t, "Split", "sp2", "x", "d,e", n2, 2);
    (void)ax;
    tb_ints(&t, "st", false, 1, st);
    tb_ints(&t, "en", false, 1, en);
    tb_ints(&t, "en2", false, 1, en2);
    tb_ints(&t, "ax1", false, 1, ax1);
    tb_node(&t, "Slice", "sl", "x,st,en,ax1", "f", NULL, 0);
    tb_node(&t, "Slice", "sl2", "x,st,en2", "g", NULL, 0);
    tb_node(&t, "Shape", "sh", "x", "s", NULL, 0);
    tb_node(&t, "Slice", "sl3", "s,st,en", "s1", NULL, 0);
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "a", "float32[4,N]");
    TYPE_IS(&t, "c", "float32[2,N]");
    TYPE_IS(&t, "d", "float32[10,(N+1)/2]"); /* Split-18: ceil, the rest last */
    TYPE_IS(&t, "e", "float32[10,-(N+1)/2+N]");
    TYPE_IS(&t, "f", "float32[10,N-1]");
    TYPE_IS(&t, "g", "float32[8,N]");
    TYPE_IS(&t, "s1", "int64[1]");
    const struct kiln_vtype *v = kiln_infer_lookup(t.m.graph, "s1");
    CHECK(v && v->n_vals == 1 && v->vals[0].param && strcmp(v->vals[0].param, "N") == 0, "Slice of vals");
    CHECK(t.p.n == 0, "no problems (%s)", t.p.msg[0]);
    tb_free(&t);
}

int main(void)
{
    test_symbolic_heads();
    test_constant_evaluation();
    test_declared();
    test_data_dependent();
    test_hostile();
    test_split_slice();
    return test_summary("test_infer");
}
