/* test_infer.c: the shape-inference driver (src/infer/infer.c) and the shape family's rules
 * (shape_shape.c) on small graphs built directly in the IR: symbolic shape arithmetic
 * (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), constant evaluation, declared-type
 * merging and contradictions, data-dependent sizes, hostile sizes, and the public API
 * (kiln_model_set_input_shape, kiln_model_value_*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/infer_priv.h"
#include "test_support.h"

/* ------------------------------------------------------------------ a tiny graph builder */

#define TB_MAX_NODES 4096

struct tb {
    struct kiln_model m;
    struct kiln_graph g;
    struct kiln_opset opset;
    struct kiln_node *nodes; /* TB_MAX_NODES, in the arena */
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
    t->nodes = kiln_arena_array(A(t), TB_MAX_NODES, sizeof *t->nodes);
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
    if (n_attr) memcpy(n->attrs, attrs, n_attr * sizeof *attrs);
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

static void tb_free(struct tb *t)
{
    kiln_arena_free(&t->m.infer_arena);
    kiln_arena_free(&t->m.arena);
}

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

/* Known input values (kiln_infer_model_values): a shape given as a graph input. */
static void test_input_values(void)
{
    struct tb t;
    tb_init(&t, 13);
    tb_input(&t, "x", KILN_DTYPE_F32, "2,3,4");
    tb_input(&t, "shape", KILN_DTYPE_I64, "2");
    tb_node(&t, "Reshape", "r", "x,shape", "y", NULL, 0);
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "y", "float32[?,?]");
    static const int64_t two[] = {2}, sv[] = {-1, 4};
    struct kiln_value *v = tensor_of(KILN_DTYPE_I64, 1, two, sv);
    const char *names[] = {"shape"};
    const struct kiln_value *vals[] = {v};
    kiln_err err = {0};
    CHECK(kiln_infer_model_values(&t.m, 0, 1, names, vals, NULL, NULL, NULL, &err) == KILN_OK, "%s", err.msg);
    TYPE_IS(&t, "y", "float32[6,4]");
    kiln_value_free(v);
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
    TYPE_IS(&t, "f", "float32[10,max(0,N-1)]"); /* x[1:] is empty when N is 0 */
    TYPE_IS(&t, "g", "float32[8,N]");
    TYPE_IS(&t, "s1", "int64[1]");
    const struct kiln_vtype *v = kiln_infer_lookup(t.m.graph, "s1");
    CHECK(v && v->n_vals == 1 && v->vals[0].param && strcmp(v->vals[0].param, "N") == 0, "Slice of vals");
    CHECK(t.p.n == 0, "no problems (%s)", t.p.msg[0]);
    tb_free(&t);
}

/* A subgraph (arena) with inputs "name:dims" (float32; "" none) and outputs (untyped);
 * its nodes are added with sub_node. */
static struct kiln_graph *sub_begin(struct tb *t, const char *name)
{
    struct kiln_graph *g = kiln_arena_array(A(t), 1, sizeof *g);
    g->name = name;
    g->nodes = kiln_arena_array(A(t), 8, sizeof *g->nodes);
    g->inputs = kiln_arena_array(A(t), 4, sizeof *g->inputs);
    g->outputs = kiln_arena_array(A(t), 4, sizeof *g->outputs);
    return g;
}

static void sub_input(struct tb *t, struct kiln_graph *g, const char *name, kiln_dtype dt, const char *dims)
{
    g->inputs[g->n_inputs++] = (struct kiln_value_info){.name = name, .type = ty(t, dt, dims)};
}

static void sub_output(struct tb *t, struct kiln_graph *g, const char *name)
{
    (void)t;
    g->outputs[g->n_outputs++] = (struct kiln_value_info){.name = name, .type = {.rank = -1}};
}

/* Adds a node to g by building it in t's node list and moving it. */
static void sub_node(struct tb *t, struct kiln_graph *g, const char *op, const char *name, const char *ins,
                     const char *outs, const struct kiln_attr *attrs, size_t n_attr)
{
    tb_node(t, op, name, ins, outs, attrs, n_attr);
    g->nodes[g->n_nodes++] = t->nodes[--t->g.n_nodes];
}

static struct kiln_attr attr_g(const char *name, struct kiln_graph *g)
{
    return (struct kiln_attr){.name = name, .type = KILN_ATTR_GRAPH, .g = g};
}

/* If and Loop: subgraphs see outer values, get their inputs from the parent's rule, and a
 * problem inside a Loop body (inferred again until the carried types settle) is reported
 * once. */
static void test_subgraphs(void)
{
    struct tb t;
    tb_init(&t, 17);
    tb_input(&t, "x", KILN_DTYPE_F32, "N,3");
    tb_input(&t, "cond", KILN_DTYPE_BOOL, "");
    static const int64_t three[] = {3}, p0[] = {0};
    tb_ints(&t, "M", true, 1, three);
    struct kiln_graph *th = sub_begin(&t, "then"), *el = sub_begin(&t, "else");
    sub_node(&t, th, "Relu", "relu", "x", "t_out", NULL, 0);
    sub_output(&t, th, "t_out");
    sub_node(&t, el, "Neg", "neg", "x", "e_out", NULL, 0);
    sub_output(&t, el, "e_out");
    struct kiln_attr branches[2] = {attr_g("then_branch", th), attr_g("else_branch", el)};
    tb_node(&t, "If", "if", "cond", "y", branches, 2);

    struct kiln_graph *body = sub_begin(&t, "body");
    sub_input(&t, body, "i", KILN_DTYPE_I64, "");
    sub_input(&t, body, "c_in", KILN_DTYPE_BOOL, "");
    sub_input(&t, body, "v_in", KILN_DTYPE_UNDEFINED, NULL);
    struct kiln_attr ax0 = attr_i("axis", 0), perm = attr_ints("perm", p0, 1);
    sub_node(&t, body, "Identity", "keep", "c_in", "c_out", NULL, 0);
    sub_node(&t, body, "Concat", "grow", "v_in,x", "v_out", &ax0, 1);
    sub_node(&t, body, "Transpose", "bad", "v_in", "tr", &perm, 1);
    sub_output(&t, body, "c_out");
    sub_output(&t, body, "v_out");
    struct kiln_attr battr = attr_g("body", body);
    tb_node(&t, "Loop", "loop", "M,-,x", "v_final", &battr, 1);
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "y", "float32[N,3]");
    const struct kiln_vtype *v = kiln_infer_lookup(th, "t_out");
    char buf[100] = "";
    kiln_vtype_str(v, buf, sizeof buf);
    CHECK(strcmp(buf, "float32[N,3]") == 0, "then branch sees the outer x: %s", buf);
    v = kiln_infer_lookup(body, "i");
    kiln_vtype_str(v, buf, sizeof buf);
    CHECK(strcmp(buf, "int64[]") == 0, "body input typed: %s", buf);
    v = kiln_infer_lookup(body, "x");
    CHECK(v && v == kiln_infer_lookup(&t.g, "x"), "outer values are looked up through the parent");
    size_t bad = 0;
    for (size_t i = 0; i < t.p.n && i < 16; i++)
        bad += strstr(t.p.msg[i], "Transpose node 'bad' in subgraph 'body': perm has 1 entries") != NULL;
    CHECK(bad == 1 && t.p.n == 1, "the body's problem is reported once (%zu times; %zu problems: %s | %s)",
          bad, t.p.n, t.p.msg[0], t.p.n > 1 ? t.p.msg[1] : "");
    const char *vf = type_of(&t, "v_final");
    CHECK(strncmp(vf, "float32[", 8) == 0 && strstr(vf, ",3]"), "carried value: %s", vf);
    tb_free(&t);

    /* A body input declared with another type than the Loop gives it: named with the node. */
    tb_init(&t, 17);
    tb_input(&t, "x", KILN_DTYPE_F32, "N,3");
    tb_ints(&t, "M", true, 1, three);
    body = sub_begin(&t, "body");
    sub_input(&t, body, "i", KILN_DTYPE_I64, "");
    sub_input(&t, body, "c_in", KILN_DTYPE_BOOL, "");
    sub_input(&t, body, "v_in", KILN_DTYPE_F32, "N,4");
    sub_node(&t, body, "Identity", "keep", "c_in", "c_out", NULL, 0);
    sub_node(&t, body, "Identity", "same", "v_in", "v_out", NULL, 0);
    sub_output(&t, body, "c_out");
    sub_output(&t, body, "v_out");
    battr = attr_g("body", body);
    tb_node(&t, "Loop", "loop", "M,-,x", "v_final", &battr, 1);
    if (!tb_infer(&t, 0)) return;
    CHECK(has_problem(&t, "Loop node 'loop': subgraph 'body': input 'v_in' declared float32[N,4], inferred float32[N,3]"),
          "subgraph input contradiction: %zu problems: %s", t.p.n, t.p.msg[0]);
    tb_free(&t);
}

/* A model of thousands of constant nodes: evaluation stops at its budget (types only
 * after it), so inference stays fast and small. */
static void test_eval_budget(void)
{
    struct tb t;
    tb_init(&t, 17);
    static float big[8192];
    struct kiln_initializer *in = &t.inits[t.g.n_inits++];
    in->name = "c0";
    in->t = (struct kiln_tensor){.dtype = KILN_DTYPE_F32, .rank = 1, .dims = {8192}, .data = big};
    char prev[16] = "c0", next[16], ins[40];
    for (int i = 1; i < 3000; i++) {
        snprintf(next, sizeof next, "c%d", i);
        snprintf(ins, sizeof ins, "%s,c0", prev);
        tb_node(&t, "Add", "", ins, next, NULL, 0);
        snprintf(prev, sizeof prev, "%s", next);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (!tb_infer(&t, 0)) return;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    const struct kiln_vtype *first = kiln_infer_lookup(&t.g, "c1"), *last = kiln_infer_lookup(&t.g, "c2999");
    CHECK(first && first->konst, "the first nodes are evaluated");
    CHECK(last && !last->konst, "the budget stops evaluation");
    TYPE_IS(&t, "c2999", "float32[8192]");
    CHECK(s < 5.0, "3000 constant nodes inferred in %.2f s", s);
    tb_free(&t);
}

/* Out of memory at every allocation of a run: NOMEM (or OK, where the failure is absorbed),
 * never a crash or a leak (ASan), and no half results. */
static void test_out_of_memory(void)
{
    struct tb t;
    build_heads(&t);
    tb_node(&t, "NonZero", "nz", "shp", "nzo", NULL, 0);
    tb_node(&t, "Range", "range", "i0,n,i1", "rg", NULL, 0);
    if (!tb_infer(&t, 0)) return;
    int failed = 0;
    for (long n = 1; n < 100000; n++) {
        kiln_err err = {0};
        size_t np = 0;
        kiln_alloc_fail_after(n);
        kiln_status st = kiln_infer_model_ex(&t.m, 0, NULL, NULL, &np, &err);
        long used = kiln_alloc_fail_after(0);
        CHECK(st == KILN_OK || st == KILN_E_NOMEM, "allocation %ld failed: status %d (%s)", n, (int)st, err.msg);
        if (st == KILN_E_NOMEM) {
            failed++;
            CHECK(t.g.vtypes == NULL, "a failed run leaves no types (allocation %ld)", n);
            CHECK(err.msg[0] != 0, "NOMEM with a message");
        }
        if (used < n) break; /* the run needed fewer allocations: all were tried */
    }
    CHECK(failed > 0, "some allocation failures were seen");
    if (!tb_infer(&t, 0)) return;
    TYPE_IS(&t, "z", "float32[N,12,64*seq]");
    tb_free(&t);
}

/* ------------------------------------------------------------------ property test */

/* Inferred shapes must agree with the shapes the CPU kernels produce: random shape-op nodes
 * on a data input of known shape (a graph input, so nothing is evaluated ahead of time)
 * with random constant parameters. When the kernel accepts the node, the inferred type must
 * be complete and equal, and no problem may be reported; when it refuses, inference just
 * must not crash. */

struct prop {
    struct tb t;
    struct kiln_value *in[8];
    size_t n_in;
    char ins[64];
    int64_t env[8]; /* symbolic mode: s<i> = env[i]; t0 = env[7] */
};

/* Symbolic mode: x is declared with symbols s0, s1, ... instead of its sizes, and every
 * inferred dim that is defined must evaluate, with the symbols bound to the sizes, to what
 * the kernel produced. */
static bool prop_symbolic;
static int prop_dims_total, prop_dims_defined;

static int64_t sym_eval(const char *s, size_t n, const int64_t *env, bool *ok);

/* One atom of canonical text (sym.c's grammar): a number, a symbol, "(E)", "A/k", "A/(E)",
 * "min(E,F)", "max(E,F)". */
static int64_t atom_eval(const char *s, size_t n, const int64_t *env, bool *ok)
{
    if (n == 0) return *ok = false, 0;
    bool digits = true;
    for (size_t i = 0; i < n; i++) digits = digits && s[i] >= '0' && s[i] <= '9';
    if (digits) return strtoll(s, NULL, 10);
    if ((n > 4 && (strncmp(s, "min(", 4) == 0 || strncmp(s, "max(", 4) == 0)) && s[n - 1] == ')') {
        int depth = 0;
        for (size_t i = 4; i < n - 1; i++) {
            depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
            if (depth == 0 && s[i] == ',') {
                int64_t a = sym_eval(s + 4, i - 4, env, ok), b = sym_eval(s + i + 1, n - 2 - i, env, ok);
                return s[1] == 'i' ? (a < b ? a : b) : (a > b ? a : b);
            }
        }
        return *ok = false, 0;
    }
    int depth = 0;
    for (size_t i = n; i-- > 0;) { /* the last top-level '/' */
        depth += s[i] == ')' ? 1 : s[i] == '(' ? -1 : 0;
        if (depth == 0 && s[i] == '/') {
            int64_t a = atom_eval(s, i, env, ok), b = atom_eval(s + i + 1, n - i - 1, env, ok);
            if (b <= 0) return *ok = false, 0;
            return a >= 0 ? a / b : -((-a + b - 1) / b);
        }
    }
    if (s[0] == '(' && s[n - 1] == ')') return sym_eval(s + 1, n - 2, env, ok);
    if (n == 2 && s[0] == 's' && s[1] >= '0' && s[1] <= '6') return env[s[1] - '0'];
    if (n == 2 && s[0] == 't' && s[1] == '0') return env[7];
    return *ok = false, 0;
}

static int64_t sym_eval(const char *s, size_t n, const int64_t *env, bool *ok)
{
    int64_t sum = 0;
    size_t i = 0;
    while (i < n && *ok) {
        int64_t sign = 1, prod = 1;
        if (s[i] == '+' || s[i] == '-') sign = s[i++] == '-' ? -1 : 1;
        for (;;) {
            size_t b = i;
            int depth = 0;
            while (i < n && !(depth == 0 && (s[i] == '+' || s[i] == '-' || s[i] == '*'))) {
                depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
                i++;
            }
            prod *= atom_eval(s + b, i - b, env, ok);
            if (i < n && s[i] == '*') {
                i++;
                continue;
            }
            break;
        }
        sum += sign * prod;
    }
    return sum;
}

static void prop_begin(struct prop *p, int opset, int rank, const int64_t *dims)
{
    tb_init(&p->t, opset);
    char d[128] = "";
    for (int i = 0; i < rank; i++) {
        p->env[i] = dims[i];
        if (prop_symbolic) snprintf(d + strlen(d), sizeof d - strlen(d), i ? ",s%d" : "s%d", i);
        else snprintf(d + strlen(d), sizeof d - strlen(d), i ? ",%lld" : "%lld", (long long)dims[i]);
    }
    tb_input(&p->t, "x", KILN_DTYPE_F32, d);
    p->in[0] = rand_tensor(rank, dims);
    p->n_in = 1;
    snprintf(p->ins, sizeof p->ins, "x");
}

/* An int64 constant input of the node (an initializer). */
static void prop_ints(struct prop *p, const char *name, int rank, const int64_t *dims, const int64_t *v)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    struct kiln_initializer *in = &p->t.inits[p->t.g.n_inits++];
    in->name = name;
    in->t.dtype = KILN_DTYPE_I64;
    in->t.rank = rank;
    memcpy(in->t.dims, dims, (size_t)rank * sizeof *dims);
    in->t.data = kiln_arena_array(A(&p->t), n ? n : 1, sizeof(int64_t));
    memcpy(in->t.data, v, n * sizeof *v);
    p->in[p->n_in++] = tensor_of(KILN_DTYPE_I64, rank, dims, v);
    snprintf(p->ins + strlen(p->ins), sizeof p->ins - strlen(p->ins), ",%s", name);
}

/* A float32 1-D constant input (Resize's scales). */
static void prop_floats(struct prop *p, const char *name, int64_t n, const float *v)
{
    struct kiln_initializer *in = &p->t.inits[p->t.g.n_inits++];
    in->name = name;
    in->t.dtype = KILN_DTYPE_F32;
    in->t.rank = 1;
    in->t.dims[0] = n;
    in->t.data = kiln_arena_array(A(&p->t), (size_t)n + 1, sizeof(float));
    memcpy(in->t.data, v, (size_t)n * sizeof *v);
    p->in[p->n_in++] = tensor_of(KILN_DTYPE_F32, 1, &n, v);
    snprintf(p->ins + strlen(p->ins), sizeof p->ins - strlen(p->ins), ",%s", name);
}

/* An absent optional input. */
static void prop_absent(struct prop *p)
{
    p->in[p->n_in++] = NULL;
    snprintf(p->ins + strlen(p->ins), sizeof p->ins - strlen(p->ins), ",-");
}

static int prop_checked, prop_refused;

static void prop_run(struct prop *p, const char *op, const struct kiln_attr *attrs, size_t n_attr,
                     size_t n_out)
{
    static const char *const outs[] = {"y0", "y0,y1", "y0,y1,y2", "y0,y1,y2,y3"};
    tb_node(&p->t, op, "n", p->ins, outs[n_out - 1], attrs, n_attr);
    if (tb_infer(&p->t, 0)) {
        const struct kiln_node *n = &p->t.nodes[0];
        struct kiln_value *out[4] = {0};
        kiln_err err = {0};
        if (n->since > 0 &&
            run_node("", op, n->since, n->attrs, n->n_attr, p->in, p->n_in, out, n_out, &err) == KILN_OK) {
            prop_checked++;
            for (size_t o = 0; o < n_out; o++) {
                char want[200];
                size_t k = (size_t)snprintf(want, sizeof want, "float32[");
                for (int d = 0; d < out[o]->t.rank; d++)
                    k += (size_t)snprintf(want + k, sizeof want - k, d ? ",%lld" : "%lld", (long long)out[o]->t.dims[d]);
                snprintf(want + k, sizeof want - k, "]");
                char oname[32];
                snprintf(oname, sizeof oname, "y%zu", o);
                const char *got = type_of(&p->t, oname);
                char in_s[200];
                kiln_type_str(&p->t.in[0].type, in_s, sizeof in_s);
                if (!prop_symbolic) {
                    CHECK(strcmp(got, want) == 0, "%s-%d on x %s: output %zu inferred %s, kernel gave %s", op,
                          n->since, in_s, o, got, want);
                    continue;
                }
                const struct kiln_vtype *vt = kiln_infer_lookup(&p->t.g, oname);
                if (!vt || vt->type.rank < 0) { /* an unknown rank is only incomplete */
                    prop_dims_total += out[o]->t.rank;
                    continue;
                }
                CHECK(vt->type.rank == out[o]->t.rank && vt->type.elem == KILN_DTYPE_F32,
                      "%s-%d on x %s: output %zu inferred %s, kernel gave %s", op, n->since, in_s, o, got, want);
                for (int k = 0; k < vt->type.rank && k < out[o]->t.rank; k++) {
                    struct kiln_dim dm = vt->type.dims[k];
                    prop_dims_total++;
                    if (!kiln_dim_defined(dm)) continue;
                    prop_dims_defined++;
                    bool ok = true;
                    int64_t val = dm.value >= 0 ? dm.value : sym_eval(dm.param, strlen(dm.param), p->env, &ok);
                    CHECK(ok && val == out[o]->t.dims[k],
                          "%s-%d on x %s (s = %lld,%lld,%lld,%lld): output %zu inferred %s, kernel gave %s", op,
                          n->since, in_s, (long long)p->env[0], (long long)p->env[1], (long long)p->env[2],
                          (long long)p->env[3], o, got, want);
                }
            }
            CHECK(p->t.p.n == 0, "%s-%d: the kernel ran but inference reported: %s", op, n->since, p->t.p.msg[0]);
        } else {
            prop_refused++;
        }
        free_all(out, n_out);
    }
    free_all(p->in, p->n_in);
    tb_free(&p->t);
}

static int rnd_rank(int lo, int hi) { return lo + rng_int(hi - lo + 1); }

static void rnd_dims(int rank, int64_t *d, int max)
{
    for (int i = 0; i < rank; i++) d[i] = 1 + rng_int(max);
}

static void test_property(bool symbolic)
{
    prop_symbolic = symbolic;
    prop_checked = prop_refused = 0;
    rng_seed(symbolic ? 4321 : 1234);
    static const char *const ops[] = {"Transpose", "Concat", "Slice",   "Reshape",      "Squeeze",
                                      "Unsqueeze", "Tile",   "Pad",     "Expand",       "Split",
                                      "Gather",    "Flatten", "DepthToSpace", "SpaceToDepth",
                                      "Resize",    "GatherElements", "GatherND", "CenterCropPad"};
    for (int iter = 0; iter < 2000; iter++) {
        struct prop p;
        int64_t d[6], v[16], e[16];
        int r = rnd_rank(1, 4);
        rnd_dims(r, d, 4);
        const char *op = ops[iter % (sizeof ops / sizeof ops[0])];
        struct kiln_attr at[3];
        int64_t perm[6];
        int opset = 13 + rng_int(6); /* 13..18 */
        if (strcmp(op, "Transpose") == 0) {
            for (int i = 0; i < r; i++) perm[i] = i;
            for (int i = r - 1; i > 0; i--) {
                int j = rng_int(i + 1);
                int64_t x = perm[i];
                perm[i] = perm[j];
                perm[j] = x;
            }
            prop_begin(&p, opset, r, d);
            at[0] = attr_ints("perm", perm, (size_t)r);
            prop_run(&p, op, at, 1, 1);
        } else if (strcmp(op, "Concat") == 0) {
            int ax = rng_int(r);
            prop_begin(&p, opset, r, d);
            int64_t d2[6];
            memcpy(d2, d, sizeof d2);
            d2[ax] = 1 + rng_int(3);
            char dd[64] = "";
            for (int i = 0; i < r; i++) {
                if (prop_symbolic && i == ax) snprintf(dd + strlen(dd), sizeof dd - strlen(dd), i ? ",t0" : "t0");
                else if (prop_symbolic) snprintf(dd + strlen(dd), sizeof dd - strlen(dd), i ? ",s%d" : "s%d", i);
                else snprintf(dd + strlen(dd), sizeof dd - strlen(dd), i ? ",%lld" : "%lld", (long long)d2[i]);
            }
            p.env[7] = d2[ax];
            tb_input(&p.t, "x2", KILN_DTYPE_F32, dd);
            p.in[p.n_in++] = rand_tensor(r, d2);
            snprintf(p.ins, sizeof p.ins, "x,x2");
            at[0] = attr_i("axis", rng_int(2) ? ax : ax - r);
            prop_run(&p, op, at, 1, 1);
        } else if (strcmp(op, "Slice") == 0) {
            int k = rnd_rank(1, r);
            int64_t st[4], en[4], ax[4], sp[4], one[1] = {k};
            int used[6] = {0};
            for (int i = 0; i < k; i++) {
                int a;
                do a = rng_int(r); while (used[a]);
                used[a] = 1;
                ax[i] = rng_int(2) ? a : a - r;
                st[i] = rng_int(13) - 6;
                en[i] = rng_int(4) == 0 ? INT64_MAX : rng_int(13) - 6;
                sp[i] = rng_int(2) ? 1 + rng_int(3) : -1 - rng_int(3);
            }
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "st", 1, one, st);
            prop_ints(&p, "en", 1, one, en);
            prop_ints(&p, "ax", 1, one, ax);
            prop_ints(&p, "sp", 1, one, sp);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Reshape") == 0) {
            /* a new shape from the factors of the element count */
            int64_t total = 1, ns = 0;
            for (int i = 0; i < r; i++) total *= d[i];
            int64_t left = total;
            while (left > 1 && ns < 4) {
                int64_t f = 1 + rng_int((int)left);
                while (left % f) f--;
                v[ns++] = f;
                left /= f;
            }
            if (left > 1 || ns == 0) v[ns++] = left;
            if (rng_int(2)) v[rng_int((int)ns)] = -1;
            for (int i = 0; i < ns && i < r; i++)
                if (v[i] == d[i] && rng_int(2)) v[i] = 0;
            int64_t n1[1] = {ns};
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "shape", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Squeeze") == 0 || strcmp(op, "Unsqueeze") == 0) {
            bool sq = op[0] == 'S';
            int64_t n1[1];
            int k = 0;
            if (sq) {
                for (int i = 0; i < r; i++)
                    if (rng_int(2)) d[i] = 1;
                for (int i = 0; i < r; i++)
                    if (d[i] == 1 && rng_int(2)) v[k++] = rng_int(2) ? i : i - r;
            } else {
                k = rnd_rank(1, 2);
                int ro = r + k, used[8] = {0};
                for (int i = 0; i < k; i++) {
                    int a;
                    do a = rng_int(ro); while (used[a]);
                    used[a] = 1;
                    v[i] = rng_int(2) ? a : a - ro;
                }
            }
            n1[0] = k;
            prop_begin(&p, opset, r, d);
            if (k || !sq) prop_ints(&p, "axes", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Tile") == 0) {
            int64_t n1[1] = {r};
            for (int i = 0; i < r; i++) v[i] = rng_int(4);
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "rep", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Pad") == 0) {
            int64_t n1[1] = {2 * r};
            for (int i = 0; i < 2 * r; i++) v[i] = rng_int(4) - (rng_int(3) == 0);
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "pads", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Expand") == 0) {
            int ro = r + rng_int(2);
            int64_t n1[1] = {ro};
            for (int i = 0; i < ro; i++) {
                int j = i - (ro - r);
                v[i] = j < 0 ? 1 + rng_int(3) : d[j] == 1 ? 1 + rng_int(3) : (rng_int(2) ? d[j] : 1);
            }
            if (rng_int(2)) d[rng_int(r)] = 1;
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "shape", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Split") == 0) {
            int ax = rng_int(r), no = 1 + rng_int(3);
            d[ax] = no + rng_int(5);
            prop_begin(&p, 18, r, d);
            if (rng_int(2)) {
                int64_t left = d[ax], n1[1] = {no};
                for (int i = 0; i < no; i++) {
                    e[i] = i + 1 < no ? rng_int((int)left + 1) : left;
                    left -= e[i];
                }
                prop_ints(&p, "split", 1, n1, e);
                at[0] = attr_i("axis", ax);
                prop_run(&p, op, at, 1, (size_t)no);
            } else {
                at[0] = attr_i("axis", ax);
                at[1] = attr_i("num_outputs", no);
                prop_run(&p, op, at, 2, (size_t)no);
            }
        } else if (strcmp(op, "Gather") == 0) {
            int ax = rng_int(r), q = rng_int(3);
            int64_t qd[2] = {1 + rng_int(3), 1 + rng_int(2)};
            size_t n = q == 0 ? 1 : q == 1 ? (size_t)qd[0] : (size_t)(qd[0] * qd[1]);
            for (size_t i = 0; i < n; i++) v[i] = rng_int((int)(2 * d[ax])) - d[ax];
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "idx", q, qd, v);
            at[0] = attr_i("axis", ax);
            prop_run(&p, op, at, 1, 1);
        } else if (strcmp(op, "Resize") == 0) {
            /* scales or sizes on every axis, or (18) on some axes with a policy */
            int rop = rng_int(2) ? 13 : 18;
            prop_begin(&p, rop, r, d);
            int64_t axes[4], na = 0;
            bool use_axes = rop == 18 && rng_int(2);
            for (int i = 0; i < r; i++)
                if (!use_axes || rng_int(2)) axes[na++] = i;
            if (na == 0) axes[na++] = r - 1;
            prop_absent(&p); /* roi */
            struct kiln_attr ra[2];
            size_t nra = 0;
            if (use_axes) ra[nra++] = attr_ints("axes", axes, (size_t)na);
            if (rng_int(2)) {
                static const float choices[] = {0.5f, 1.0f, 1.5f, 2.0f, 0.75f, 3.0f, 0.6f, 1.25f};
                float sc[4];
                for (int i = 0; i < na; i++) sc[i] = choices[rng_int(8)];
                prop_floats(&p, "scales", na, sc);
            } else {
                prop_absent(&p);
                int64_t sz[4], n1[1] = {na};
                for (int i = 0; i < na; i++) sz[i] = 1 + rng_int(7);
                prop_ints(&p, "sizes", 1, n1, sz);
                static const char *const pol[] = {"stretch", "not_larger", "not_smaller"};
                if (rop == 18) ra[nra++] = attr_s("keep_aspect_ratio_policy", pol[rng_int(3)]);
            }
            prop_run(&p, op, ra, nra, 1);
        } else if (strcmp(op, "GatherElements") == 0) {
            int ax = rng_int(r);
            int64_t id[4];
            memcpy(id, d, sizeof id);
            id[ax] = 1 + rng_int(4);
            size_t n = 1;
            for (int i = 0; i < r; i++) n *= (size_t)id[i];
            int64_t *iv = calloc(n, sizeof *iv);
            for (size_t i = 0; i < n; i++) iv[i] = rng_int((int)d[ax]);
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "idx", r, id, iv);
            free(iv);
            at[0] = attr_i("axis", ax);
            prop_run(&p, op, at, 1, 1);
        } else if (strcmp(op, "GatherND") == 0) {
            int b = rng_int(r), last = 1 + rng_int(r - b);
            int64_t id[8]; /* rank up to b + 2 <= 5 */
            int q = b + 1 + rng_int(2);
            for (int i = 0; i < b; i++) id[i] = d[i];
            for (int i = b; i < q - 1; i++) id[i] = 1 + rng_int(3);
            id[q - 1] = last;
            size_t n = 1;
            for (int i = 0; i < q; i++) n *= (size_t)id[i];
            int64_t *iv = calloc(n, sizeof *iv);
            for (size_t i = 0; i < n; i++) iv[i] = rng_int((int)d[b + (int)(i % (size_t)last)]);
            prop_begin(&p, opset, r, d);
            prop_ints(&p, "idx", q, id, iv);
            free(iv);
            at[0] = attr_i("batch_dims", b);
            prop_run(&p, op, at, 1, 1);
        } else if (strcmp(op, "CenterCropPad") == 0) {
            int64_t n1[1] = {r};
            for (int i = 0; i < r; i++) v[i] = 1 + rng_int(6);
            prop_begin(&p, 18, r, d);
            prop_ints(&p, "shape", 1, n1, v);
            prop_run(&p, op, NULL, 0, 1);
        } else if (strcmp(op, "Flatten") == 0) {
            prop_begin(&p, opset, r, d);
            at[0] = attr_i("axis", rng_int(2 * r + 1) - r);
            prop_run(&p, op, at, 1, 1);
        } else {
            int64_t b = 1 + rng_int(2), d4[4] = {1 + rng_int(2), 1 + rng_int(3), 1 + rng_int(3), 1 + rng_int(3)};
            if (op[0] == 'D') d4[1] *= b * b;
            else d4[2] *= b, d4[3] *= b;
            prop_begin(&p, opset, 4, d4);
            at[0] = attr_i("blocksize", b);
            prop_run(&p, op, at, 1, 1);
        }
    }
    printf("property%s: %d random nodes checked against the kernels, %d refused by them\n",
           symbolic ? " (symbolic inputs)" : "", prop_checked, prop_refused);
    if (symbolic)
        printf("property (symbolic inputs): %d of %d output dims determined\n", prop_dims_defined,
               prop_dims_total);
    CHECK(prop_checked > 1500, "the kernels ran %d random nodes (refused %d)", prop_checked, prop_refused);
}

int main(void)
{
    test_symbolic_heads();
    test_constant_evaluation();
    test_declared();
    test_input_values();
    test_data_dependent();
    test_hostile();
    test_split_slice();
    test_subgraphs();
    test_out_of_memory();
    test_eval_budget();
    test_property(false);
    test_property(true);
    return test_summary("test_infer");
}
