/* pass_split_matmul_slices.c: a MatMul by a constant B [K, N] (optionally followed by an
 * Add of a constant bias [N]) whose result is read only by Slices of its last axis becomes
 * one MatMul (and Add) per Slice, on the Slice's columns of B and of the bias:
 *
 *     y = MatMul(x, B) [+ b];  q = Slice(y, s0, e0, -1);  k = Slice(y, s1, e1, -1); ...
 *  -> q = MatMul(x, B[:, s0:e0]) [+ b[s0:e0]];  k = MatMul(x, B[:, s1:e1]) [+ b[s1:e1]]; ...
 *
 * PyTorch's nn.MultiheadAttention (ViT-B/16) projects q, k and v with one in_proj and slices
 * the result: the Slices copied 3 x 600 KB a layer, slowly on two threads, where the second
 * core reads what the first one's slice of the product wrote (7.6 ms a run on a Zen 4,
 * against 1.7 at one thread). The products write their own outputs instead; the arithmetic
 * and the weights' bytes are the same, each element the same sum (results equal bit for bit
 * on kiln's GEMM, whose sums do not depend on N). fuse_matmul_add then makes each pair one
 * kiln.FusedMatMul.
 *
 * Matched: B a float32 constant of rank 2, the bias (either Add input) a float32 constant
 * [N]; every use of the result a Slice (opset 10 and later: starts, ends, axes as constant
 * inputs of one element each, axes -1 or rank - 1, steps absent or 1) reading it as its
 * data; neither the result nor the Add's a graph output. Columns of B a Slice does not take
 * are simply not computed.
 */
#include <string.h>

#include "opt/fuse_util.h"
#include "opt/opt.h"

/* A one-element integer constant. */
static bool const_int(const struct kiln_graph *g, const char *name, int64_t *v)
{
    const struct kiln_tensor *t = kiln_opt_const(g, name);
    if (!t || kiln_tensor_numel(t) != 1) return false;
    if (t->dtype == KILN_DTYPE_I64)
        *v = ((const int64_t *)t->data)[0];
    else if (t->dtype == KILN_DTYPE_I32)
        *v = ((const int32_t *)t->data)[0];
    else
        return false;
    return true;
}

static bool has(const struct kiln_node *n, size_t i)
{
    return n->n_in > i && n->inputs[i] && n->inputs[i][0];
}

/* Slice node j of `y` (rank r, N columns in its last axis): its columns [*s, *e). */
static bool last_axis_slice(const struct kiln_opt *o, const struct kiln_graph *g, size_t j, const char *y,
                            int r, int64_t N, int64_t *s, int64_t *e)
{
    const struct kiln_node *n = &g->nodes[j];
    int64_t ax, st = 1;
    if (!kiln_opt_is_op(o, g, j, "Slice") || n->n_in < 4 || n->n_out != 1 || strcmp(n->inputs[0], y) ||
        !const_int(g, n->inputs[1], s) || !const_int(g, n->inputs[2], e) || !has(n, 3) ||
        !const_int(g, n->inputs[3], &ax) || (ax != -1 && ax != r - 1) ||
        (has(n, 4) && (!const_int(g, n->inputs[4], &st) || st != 1)) ||
        kiln_opt_is_graph_output(g, n->outputs[0]))
        return false;
    if (*s < 0) *s += N;
    if (*e < 0) *e += N;
    *s = *s < 0 ? 0 : *s > N ? N : *s;
    *e = *e < 0 ? 0 : *e > N ? N : *e;
    return *s < *e;
}

/* Queues a float32 initializer of `cols` columns [s, s + cols) of src ([rows, N]). */
static kiln_status columns(struct kiln_opt *o, struct kiln_graph *g, const char *base,
                           const struct kiln_tensor *src, int rank, int64_t rows, int64_t N, int64_t s,
                           int64_t cols, const char **name)
{
    struct kiln_tensor t;
    int64_t d[2] = {rows, cols};
    if (rank == 1) d[0] = cols;
    KILN_TRY(kiln_opt_new_tensor(o, KILN_DTYPE_F32, rank, d, &t));
    const float *in = src->data;
    float *out = t.data;
    for (int64_t k = 0; k < rows; k++) memcpy(out + k * cols, in + k * N + s, (size_t)cols * sizeof *out);
    return kiln_opt_add_init(o, g, base, &t, name);
}

static kiln_status one(struct kiln_opt *o, struct kiln_graph *g, size_t i, bool *changed)
{
    const struct kiln_node *mm = &g->nodes[i];
    if (mm->n_in != 2 || mm->n_out != 1 || !has(mm, 0) || !mm->outputs[0][0]) return KILN_OK;
    const struct kiln_tensor *B = kiln_opt_const(g, mm->inputs[1]);
    if (!B || B->dtype != KILN_DTYPE_F32 || B->rank != 2) return KILN_OK;
    int64_t K = B->dims[0], N = B->dims[1];
    const char *y = mm->outputs[0];
    if (kiln_opt_is_graph_output(g, y)) return KILN_OK;
    /* an Add of a constant [N] bias, the product's only use */
    const struct kiln_tensor *bias = NULL;
    int add = -1, c = kiln_opt_single_consumer(g, y);
    if (c >= 0 && kiln_opt_is_op(o, g, (size_t)c, "Add") && g->nodes[c].n_in == 2) {
        const struct kiln_node *a = &g->nodes[c];
        const char *other = strcmp(a->inputs[0], y) ? a->inputs[0] : a->inputs[1];
        const struct kiln_tensor *b = kiln_opt_const(g, other);
        if (b && b->dtype == KILN_DTYPE_F32 && b->rank == 1 && b->dims[0] == N &&
            !kiln_opt_is_graph_output(g, a->outputs[0]))
            bias = b, add = c, y = a->outputs[0];
    }
    int r;
    if (fu_opset(o) < 10 || !kiln_opt_tensor_type(g, y, NULL, &r, NULL) || r < 1) return KILN_OK;
    /* every use of y a last-axis Slice */
    int uses = kiln_opt_uses(g, y), found = 0;
    for (size_t j = 0; j < g->n_nodes; j++) {
        if (!kiln_opt_live(o, g, j)) continue;
        const struct kiln_node *n = &g->nodes[j];
        for (size_t q = 0; q < n->n_in; q++)
            if (n->inputs[q] && !strcmp(n->inputs[q], y)) {
                int64_t s, e;
                if (q != 0 || !last_axis_slice(o, g, j, y, r, N, &s, &e)) return KILN_OK;
                found++;
            }
    }
    if (!found || found != uses) return KILN_OK;
    for (size_t j = 0; j < g->n_nodes; j++) {
        if (!kiln_opt_live(o, g, j) || !kiln_opt_is_op(o, g, j, "Slice") || strcmp(g->nodes[j].inputs[0], y))
            continue;
        int64_t s, e;
        if (!last_axis_slice(o, g, j, y, r, N, &s, &e)) continue; /* cannot happen: checked above */
        const char *wname, *bname = NULL, *x = g->nodes[i].inputs[0], *out = g->nodes[j].outputs[0];
        KILN_TRY(columns(o, g, "split_matmul_w", B, 2, K, N, s, e - s, &wname));
        if (bias) KILN_TRY(columns(o, g, "split_matmul_b", bias, 1, 1, N, s, e - s, &bname));
        const char *mid = out, *ins[2] = {x, wname};
        if (bias) KILN_TRY(kiln_opt_unique_name(o, "split_matmul", &mid));
        KILN_TRY(kiln_opt_add_node(o, g, "MatMul", "", g->nodes[j].name, 2, ins, 1, &mid, NULL));
        if (bias) {
            const char *ains[2] = {mid, bname};
            KILN_TRY(kiln_opt_add_node(o, g, "Add", "", NULL, 2, ains, 1, &out, NULL));
        }
        kiln_opt_remove_node(o, g, j);
    }
    if (add >= 0) kiln_opt_remove_node(o, g, (size_t)add);
    kiln_opt_remove_node(o, g, i);
    *changed = true;
    return KILN_OK;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (kiln_opt_is_op(o, g, i, "MatMul")) KILN_TRY(one(o, g, i, changed));
    return KILN_OK;
}

const struct kiln_pass kiln_pass_split_matmul_slices = {
    .name = "split_matmul_slices",
    .level = KILN_OPT_EXTENDED,
    .doc = "a MatMul by a constant (and its bias Add) read only by Slices of its last axis becomes one "
           "MatMul per "
           "Slice on that Slice's columns",
    .run = run,
};
