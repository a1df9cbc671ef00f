/* pass_fold_constants.c: constant folding.
 *
 * A Constant node becomes an initializer holding its value. Any other node whose inputs are
 * all constants (initializers that are not graph inputs, or values folded earlier in the same
 * run) and that kiln_eval_node can evaluate (a CPU kernel, no subgraph, not random) is
 * evaluated once and its outputs become initializers; the node goes. So does a node whose
 * outputs shape inference knows as constants (Shape of a value with a static shape, and the
 * shape arithmetic after it; what `kiln optimize --shapes` folds). Nodes are visited in
 * topological order, so a whole constant subgraph folds in one run.
 *
 * Size cap: a node is left alone when its outputs would take more than fold_limit_bytes
 * beyond its inputs' bytes (ConstantOfShape, Expand, Tile, Range... would bloat the model).
 * The inferred output shapes decide before evaluating; when they are not all known, ops that
 * can expand (EXPANDING below) are left alone, and for the others the result is measured and
 * dropped when too big. Identity is left to eliminate_identity (folding it would copy the
 * constant's data). Results that are not tensors (sequences, optionals) are not folded;
 * a kernel that fails on its constant inputs leaves the node as it is (the error is the
 * model's, and shows when it runs).
 */
#include <string.h>

#include "exec/eval.h"
#include "opt/opt.h"

/* Ops whose outputs can be much larger than their inputs. */
static const char *const EXPANDING[] = {
    "ConstantOfShape", "Expand",        "Tile",   "Range", "Resize", "Upsample",      "Pad",
    "OneHot",          "EyeLike",       "MatMul", "Gemm",  "Einsum", "ConvTranspose", "Col2Im",
    "GridSample",      "CenterCropPad", "Trilu",  NULL};

static bool expanding(const char *op)
{
    for (size_t i = 0; EXPANDING[i]; i++)
        if (strcmp(EXPANDING[i], op) == 0) return true;
    return false;
}

/* Bytes of the outputs when the inferred shapes are all known; false otherwise. */
static bool inferred_out_bytes(const struct kiln_graph *g, const struct kiln_node *n, size_t *out)
{
    size_t total = 0;
    for (size_t k = 0; k < n->n_out; k++) {
        if (!n->outputs[k][0]) continue;
        kiln_dtype dt;
        int rank;
        int64_t dims[KILN_MAX_RANK];
        if (!kiln_opt_tensor_type(g, n->outputs[k], &dt, NULL, NULL) ||
            !kiln_opt_static_shape(g, n->outputs[k], &rank, dims))
            return false;
        size_t b = kiln_dtype_size(dt);
        for (int d = 0; d < rank; d++)
            if (!kiln_mul_size(b, (size_t)dims[d], &b)) b = SIZE_MAX;
        if (!kiln_add_size(total, b, &total)) total = SIZE_MAX;
    }
    *out = total;
    return true;
}

#define MAX_IN  64
#define MAX_OUT 16

static kiln_status fold_node(struct kiln_opt *o, struct kiln_graph *g, size_t idx, bool *changed)
{
    struct kiln_model *m = kiln_opt_model(o);
    struct kiln_node *n = &g->nodes[idx];
    bool is_constant = !n->domain[0] && strcmp(n->op_type, "Constant") == 0;
    if (!n->n_out || n->n_in > MAX_IN || n->n_out > MAX_OUT) return KILN_OK;
    if (!is_constant && n->n_in == 0) return KILN_OK; /* sources other than Constant */
    /* Identity of a constant would copy its data; eliminate_identity rewires instead. */
    if (!n->domain[0] && strcmp(n->op_type, "Identity") == 0) return KILN_OK;
    if (!kiln_eval_can(m, n)) return KILN_OK;

    /* Values shape inference already knows (Shape of a static shape and its arithmetic):
     * taken as they are, when every wanted output is known and small. */
    bool all_known = true;
    size_t known_bytes = 0;
    for (size_t k = 0; k < n->n_out && all_known; k++) {
        if (!n->outputs[k][0]) continue;
        const struct kiln_vtype *vt = kiln_opt_vtype(g, n->outputs[k]);
        all_known = vt && vt->konst && !vt->data_dependent;
        if (all_known) known_bytes += kiln_tensor_nbytes(vt->konst);
    }
    if (all_known && !is_constant && known_bytes <= KILN_INFER_FOLD_LIMIT) {
        for (size_t k = 0; k < n->n_out; k++) {
            const char *out = n->outputs[k];
            if (!out[0]) continue;
            const char *name;
            KILN_TRY(kiln_opt_add_init(o, g, out, kiln_opt_vtype(g, out)->konst, &name));
            KILN_TRY(kiln_opt_replace_uses(o, g, out, name));
        }
        kiln_opt_remove_node(o, g, idx);
        *changed = true;
        return KILN_OK;
    }

    const struct kiln_value *in[MAX_IN];
    struct kiln_value inv[MAX_IN];
    struct kiln_value *outv[MAX_OUT] = {0};
    size_t in_bytes = 0;
    for (size_t k = 0; k < n->n_in; k++) {
        in[k] = NULL;
        if (!n->inputs[k][0]) continue;
        const struct kiln_tensor *t = kiln_opt_const_pending(o, g, n->inputs[k]);
        if (!t) return KILN_OK; /* not constant */
        inv[k] = (struct kiln_value){.kind = KILN_VALUE_TENSOR, .t = *t};
        inv[k].t.flags = 0; /* borrowed */
        in[k] = &inv[k];
        in_bytes += kiln_tensor_nbytes(t);
    }

    size_t limit = kiln_opt_fold_limit(o), out_bytes;
    if (!is_constant) {
        if (inferred_out_bytes(g, n, &out_bytes)) {
            if (out_bytes > in_bytes && out_bytes - in_bytes > limit) return KILN_OK;
        } else if (expanding(n->op_type)) {
            return KILN_OK;
        }
    }

    kiln_err eerr;
    if (kiln_eval_node(m, n, in, outv, &eerr) != KILN_OK) return KILN_OK;
    kiln_status st = KILN_OK;
    bool ok = true;
    out_bytes = 0;
    for (size_t k = 0; k < n->n_out; k++) {
        if (!n->outputs[k][0]) continue;
        if (!outv[k] || outv[k]->kind != KILN_VALUE_TENSOR)
            ok = false;
        else
            out_bytes += kiln_tensor_nbytes(&outv[k]->t);
    }
    if (ok && !is_constant && out_bytes > in_bytes && out_bytes - in_bytes > limit) ok = false;
    if (!ok) goto done;
    for (size_t k = 0; k < n->n_out; k++) {
        const char *out = n->outputs[k];
        if (!out[0]) continue;
        const char *name;
        st = kiln_opt_add_init(o, g, out, &outv[k]->t, &name);
        if (st) goto done;
        st = kiln_opt_replace_uses(o, g, out, name); /* graph outputs: the init takes `out` */
        if (st) goto done;
    }
    kiln_opt_remove_node(o, g, idx);
    *changed = true;
done:
    for (size_t k = 0; k < n->n_out; k++) kiln_value_free(outv[k]);
    return st;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    /* The manager hands over graphs in topological node order (the commit sorts them). */
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_live(o, g, i)) continue;
        KILN_TRY(fold_node(o, g, i, changed));
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fold_constants = {
    .name = "fold_constants",
    .level = KILN_OPT_BASIC,
    .doc = "evaluates nodes whose inputs are all constants; Constant nodes become initializers",
    .run = run,
};
