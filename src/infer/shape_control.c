/* shape_control.c: shape and type rules for control flow: If (1, 11, 13, 16, 19, 21, 23),
 * Loop (1, 11, 13, 16, 19, 21, 23) and Scan (8, 9, 11, 16, 19, 21, 23).
 *
 * If: both branches are inferred (kiln_ic_subgraph, no inputs) and output k is the merge of
 *   their outputs k: equal dims kept, different ones unknown (a constant cond picks its
 *   branch alone). Body and branch outputs that are data-dependent make the node's so.
 * Loop: the body sees (iteration_num int64 scalar, cond bool scalar, carried values typed
 *   from v_initial). A carried value whose body output differs from its input is merged and
 *   the body inferred again with the merged type (a few rounds, until nothing changes), so
 *   a value that grows each iteration ends up with an unknown dim. Rounds multiply with
 *   nesting, so a body nested two levels deep gets one round (its carried outputs still
 *   get the merged types). Final carried values get
 *   that merged type (an optional carried in whose body hands back its content: the content
 *   type merged with the body's). Scan output k is [L, body output k...] with L the trip count M when M
 *   is known and there is no cond input (or a constant true one the body passes back
 *   unchanged); otherwise a fresh symbol, data-dependent.
 * Scan (9+): the body sees the state variables and each scan input with its scan axis
 *   (scan_input_axes, default 0) removed; states round as for Loop; scan output k gets a new
 *   dim of the scan length at scan_output_axes[k] (default 0). Scan 8: a leading batch axis
 *   on every state and scan input (removed for the body, put back on the outputs), scan axis
 *   1, outputs [batch, len, ...].
 */
#include "infer/shape_nn.h"

#define BODY_ROUNDS 4

static const struct kiln_type *in_type(const struct kiln_ictx *c, size_t i)
{
    const struct kiln_vtype *v = i < c->n_in ? kiln_ic_in(c, i) : NULL;
    return v && v->type.kind != KILN_TYPE_NONE ? &v->type : NULL;
}

static const struct kiln_type *out_type(const struct kiln_graph *g, size_t k)
{
    if (k >= g->n_outputs) return NULL;
    const struct kiln_vtype *v = kiln_infer_lookup(g, g->outputs[k].name);
    return v && v->type.kind != KILN_TYPE_NONE ? &v->type : NULL;
}

/* Whether subgraph output k's shape depends on the data. */
static bool out_dd(const struct kiln_graph *g, size_t k)
{
    const struct kiln_vtype *v = k < g->n_outputs ? kiln_infer_lookup(g, g->outputs[k].name) : NULL;
    return v && v->data_dependent;
}

static struct kiln_graph *graph_attr(const struct kiln_ictx *c, const char *name)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, name);
    return a && a->type == KILN_ATTR_GRAPH ? a->g : NULL;
}

/* ------------------------------------------------------------------ If */

static kiln_status if_infer(struct kiln_ictx *c)
{
    struct kiln_graph *th = graph_attr(c, "then_branch"), *el = graph_attr(c, "else_branch");
    if (!th || !el) return KILN_OK;
    const struct kiln_tensor *cond = kiln_ic_const(c, 0);
    int pick = -1; /* 1: then, 0: else, -1: both */
    if (cond && kiln_tensor_numel(cond) == 1 && cond->dtype == KILN_DTYPE_BOOL && cond->data)
        pick = *(const uint8_t *)cond->data ? 1 : 0;
    if (pick != 0) KILN_TRY(kiln_ic_subgraph(c, th, 0, NULL));
    if (pick != 1) KILN_TRY(kiln_ic_subgraph(c, el, 0, NULL));
    if (pick < 0 && th->n_outputs != el->n_outputs) {
        kiln_ic_problem(c, "then_branch has %zu outputs but else_branch has %zu", th->n_outputs,
                        el->n_outputs);
        return KILN_OK;
    }
    for (size_t k = 0; k < c->n_out; k++) {
        struct kiln_merge_buf buf = {.used = 0};
        const struct kiln_type *t;
        if (pick == 1) {
            t = out_type(th, k);
        } else if (pick == 0) {
            t = out_type(el, k);
        } else {
            const struct kiln_type *a = out_type(th, k), *b = out_type(el, k);
            if (!a || !b) { /* one branch says nothing of the shape: only the element type stands */
                const struct kiln_type *k1 = a ? a : b;
                if (k1 && k1->kind == KILN_TYPE_TENSOR && k1->elem != KILN_DTYPE_UNDEFINED)
                    KILN_TRY(kiln_ic_set_tensor(c, k, k1->elem, -1, NULL));
                continue;
            }
            if (a->kind == KILN_TYPE_TENSOR && b->kind == KILN_TYPE_TENSOR && a->elem && b->elem &&
                a->elem != b->elem) {
                kiln_ic_problem(c, "output %zu is %s in then_branch but %s in else_branch", k,
                                kiln_dtype_name(a->elem), kiln_dtype_name(b->elem));
                continue;
            }
            t = kiln_infer_merge(a, b, &buf);
        }
        if (!t) continue;
        KILN_TRY(kiln_ic_set_type(c, k, t));
        if ((pick != 0 && out_dd(th, k)) || (pick != 1 && out_dd(el, k))) kiln_ic_data_dependent(c, k);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ bodies with carried values */

/* Infers body with input types bin[0..n_bin) where bin[in_off + k] (k < n_car) are carried
 * values that come back as body output out_off + k; rounds until the carried types are
 * stable and sets node outputs 0..n_car to them (with batch: a leading batch dim put back,
 * for Scan 8). empty (may be NULL): carried values that start as an empty sequence
 * (SequenceEmpty), whose element type says nothing yet: the first round takes the body's.
 * bin entries may be replaced (by pointers into memory freed on return). */
static kiln_status run_body(struct kiln_ictx *c, struct kiln_graph *body, size_t n_bin,
                            const struct kiln_type **bin, size_t in_off, size_t out_off, size_t n_car,
                            const struct kiln_dim *batch, const bool *empty)
{
    struct kiln_merge_buf *bufs = NULL, tmp;
    if (n_car) {
        bufs = kiln_calloc(2 * n_car, sizeof *bufs);
        if (!bufs) return KILN_E_NOMEM;
    }
    kiln_status st = KILN_OK;
    int p = 0, depth = 0, rounds = BODY_ROUNDS;
    for (const struct kiln_graph *g = c->g; g && g->parent; g = g->parent) depth++;
    if (depth >= 2) rounds = 1; /* nested bodies: rounds multiply, so only the outer ones round */
    for (int round = 0; round < rounds; round++) {
        st = kiln_ic_subgraph(c, body, n_bin, bin);
        if (st) goto done;
        bool changed = false;
        for (size_t k = 0; k < n_car; k++) {
            const struct kiln_type *cur = bin[in_off + k], *o = out_type(body, out_off + k);
            struct kiln_merge_buf *dst = &bufs[(size_t)(1 - p) * n_car + k];
            struct kiln_type weak;
            if (!o && cur && cur->kind == KILN_TYPE_TENSOR) { /* the body says nothing: keep the kind */
                weak = (struct kiln_type){.kind = KILN_TYPE_TENSOR, .elem = cur->elem, .rank = -1};
                o = &weak;
            }
            tmp.used = 0;
            if (cur && o && cur->kind == KILN_TYPE_OPTIONAL && o->kind != KILN_TYPE_OPTIONAL)
                o = cur; /* optional in, its content out: the body keeps seeing the optional */
            const struct kiln_type *m = o ? kiln_infer_merge(cur, o, &tmp) : NULL;
            if (round == 0 && empty && empty[k] && o && o->kind == KILN_TYPE_SEQUENCE) m = o;
            dst->used = 0;
            bin[in_off + k] = kiln_infer_type_copy(m, dst);
            if (!kiln_infer_type_same(m, cur)) changed = true;
        }
        p = 1 - p;
        if (!changed) break;
    }
    for (size_t k = 0; k < n_car && k < c->n_out; k++) {
        const struct kiln_type *t = bin[in_off + k], *o = out_type(body, out_off + k);
        if (!t) continue;
        if (t->kind == KILN_TYPE_OPTIONAL && o && o->kind != KILN_TYPE_OPTIONAL) {
            /* the final value is what the last iteration produced (or, with none, the
             * initial optional's content) */
            tmp.used = 0;
            t = kiln_infer_merge(t->inner, o, &tmp);
            if (!t) continue;
        }
        if (batch && t->kind == KILN_TYPE_TENSOR) {
            struct kiln_dim d[KILN_MAX_RANK];
            if (t->rank < 0 || t->rank + 1 > KILN_MAX_RANK) {
                st = kiln_ic_set_tensor(c, k, t->elem, -1, NULL);
            } else {
                d[0] = *batch;
                if (t->rank) memcpy(d + 1, t->dims, (size_t)t->rank * sizeof *d);
                st = kiln_ic_set_tensor(c, k, t->elem, t->rank + 1, d);
            }
        } else {
            st = kiln_ic_set_type(c, k, t);
        }
        if (st) goto done;
        if (out_dd(body, out_off + k)) kiln_ic_data_dependent(c, k);
    }
done:
    kiln_free(bufs);
    return st;
}

/* Output o: body output type t with new dims inserted: len at position axis (after the
 * optional leading batch dim). */
static kiln_status set_stacked(struct kiln_ictx *c, size_t o, const struct kiln_type *t, int64_t axis,
                               struct kiln_dim len, const struct kiln_dim *batch, bool dd)
{
    if (!t || t->kind != KILN_TYPE_TENSOR) return KILN_OK;
    int extra = batch ? 2 : 1;
    if (t->rank < 0 || t->rank + extra > KILN_MAX_RANK) {
        KILN_TRY(kiln_ic_set_tensor(c, o, t->elem, -1, NULL));
    } else {
        int r = t->rank + 1, ax;
        if (!kiln_ic_axis(c, axis, r, &ax)) return KILN_OK;
        struct kiln_dim d[KILN_MAX_RANK];
        int n = 0;
        if (batch) d[n++] = *batch;
        for (int i = 0, j = 0; i < r; i++) d[n++] = i == ax ? len : t->dims[j++];
        KILN_TRY(kiln_ic_set_tensor(c, o, t->elem, n, d));
    }
    if (dd) kiln_ic_data_dependent(c, o);
    return KILN_OK;
}

/* ------------------------------------------------------------------ Loop */

/* Whether the loop's cond never stops it: the cond input is a constant true and the body
 * hands its cond input straight back (directly, through Identity, or as a constant true):
 * the pattern exporters write for a plain counted loop. */
static bool cond_always_true(const struct kiln_ictx *c, const struct kiln_graph *body)
{
    const struct kiln_tensor *t = kiln_ic_const(c, 1);
    if (!t || t->dtype != KILN_DTYPE_BOOL || kiln_tensor_numel(t) != 1 || !t->data ||
        !*(const uint8_t *)t->data || body->n_outputs < 1 || body->n_inputs < 2)
        return false;
    const char *out = body->outputs[0].name, *in = body->inputs[1].name;
    for (int hops = 0; hops < 8 && out; hops++) {
        if (!strcmp(out, in)) return true;
        const struct kiln_vtype *v = kiln_infer_lookup(body, out);
        if (v && v->konst && v->konst->dtype == KILN_DTYPE_BOOL && kiln_tensor_numel(v->konst) == 1 &&
            v->konst->data && *(const uint8_t *)v->konst->data)
            return true;
        int id = kiln_graph_find(body, out);
        if (id < 0 || body->values[id].def != KILN_DEF_NODE) return false;
        const struct kiln_node *n = &body->nodes[body->values[id].producer];
        if (strcmp(n->op_type, "Identity") || n->n_in != 1) return false;
        out = n->inputs[0];
    }
    return false;
}

static kiln_status loop_infer(struct kiln_ictx *c)
{
    struct kiln_graph *body = graph_attr(c, "body");
    if (!body || c->n_in < 2) return KILN_OK;
    size_t n_car = c->n_in - 2;
    if (body->n_inputs != n_car + 2 || body->n_outputs < n_car + 1) {
        kiln_ic_problem(c, "body has %zu inputs and %zu outputs; expected %zu and at least %zu",
                        body->n_inputs, body->n_outputs, n_car + 2, n_car + 1);
        return KILN_OK;
    }
    const struct kiln_type **bin = kiln_calloc(n_car + 2, sizeof *bin);
    if (!bin) return KILN_E_NOMEM;
    struct kiln_type iter = {.kind = KILN_TYPE_TENSOR, .elem = KILN_DTYPE_I64, .rank = 0};
    struct kiln_type cond = {.kind = KILN_TYPE_TENSOR, .elem = KILN_DTYPE_BOOL, .rank = 0};
    /* Scalars, unless the body declares a shape of its own (some exporters write [1]): then
     * the declaration stands. */
    bin[0] = body->inputs[0].type.kind == KILN_TYPE_TENSOR && body->inputs[0].type.rank >= 0 ? NULL : &iter;
    bin[1] = body->inputs[1].type.kind == KILN_TYPE_TENSOR && body->inputs[1].type.rank >= 0 ? NULL : &cond;
    for (size_t k = 0; k < n_car; k++) bin[2 + k] = in_type(c, 2 + k);
    bool *empty = kiln_calloc(n_car + 1, sizeof *empty);
    if (!empty) {
        kiln_free(bin);
        return KILN_E_NOMEM;
    }
    for (size_t k = 0; k < n_car; k++) {
        int id = c->node->in_ids ? c->node->in_ids[2 + k] : -1;
        const struct kiln_graph_value *gv = id >= 0 && (size_t)id < c->g->n_values ? &c->g->values[id] : NULL;
        empty[k] = gv && gv->def == KILN_DEF_NODE && gv->producer >= 0 &&
                   !strcmp(c->g->nodes[gv->producer].op_type, "SequenceEmpty");
    }
    kiln_status st = run_body(c, body, n_car + 2, bin, 2, 1, n_car, NULL, empty);
    kiln_free(bin);
    kiln_free(empty);
    if (st) return st;

    /* Scan outputs: [L, ...]. */
    int n;
    const struct kiln_dim *m;
    bool has_m = kiln_ic_in(c, 0) != NULL, has_cond = kiln_ic_in(c, 1) != NULL;
    struct kiln_dim len = kiln_dim_unknown();
    bool dd = true;
    if (has_m && (!has_cond || cond_always_true(c, body)) && kiln_ic_vals(c, 0, &n, &m) && n == 1 &&
        kiln_dim_defined(m[0])) {
        len = m[0];
        dd = false;
    }
    size_t n_scan = body->n_outputs - 1 - n_car;
    if (dd && n_scan) len = kiln_sym_fresh(c->inf, "Loop");
    for (size_t k = 0; k < n_scan && n_car + k < c->n_out; k++)
        KILN_TRY(set_stacked(c, n_car + k, out_type(body, 1 + n_car + k), 0, len, NULL,
                             dd || out_dd(body, 1 + n_car + k)));
    return KILN_OK;
}

/* ------------------------------------------------------------------ Scan */

static kiln_status scan_infer(struct kiln_ictx *c)
{
    struct kiln_graph *body = graph_attr(c, "body");
    int64_t n_scan_in = kiln_ic_attr_i(c, "num_scan_inputs", -1);
    bool v8 = c->opset < 9;
    size_t first = v8 ? 1 : 0; /* Scan 8: input 0 is sequence_lens */
    if (!body || n_scan_in < 1 || (size_t)n_scan_in + first > c->n_in) {
        kiln_ic_problem(c, "num_scan_inputs %lld does not fit the %zu inputs", (long long)n_scan_in, c->n_in);
        return KILN_OK;
    }
    size_t n_state = c->n_in - first - (size_t)n_scan_in;
    if (body->n_inputs != n_state + (size_t)n_scan_in || body->n_outputs < n_state) {
        kiln_ic_problem(c, "body has %zu inputs; expected %zu", body->n_inputs, n_state + (size_t)n_scan_in);
        return KILN_OK;
    }
    const int64_t *in_axes = NULL, *out_axes = NULL;
    size_t n_in_axes = v8 ? 0 : kiln_ic_attr_ints(c, "scan_input_axes", &in_axes);
    size_t n_out_axes = v8 ? 0 : kiln_ic_attr_ints(c, "scan_output_axes", &out_axes);
    size_t n_bin = n_state + (size_t)n_scan_in;
    const struct kiln_type **bin = kiln_calloc(n_bin, sizeof *bin);
    struct kiln_merge_buf *slices = kiln_calloc(n_bin, sizeof *slices);
    kiln_status st = KILN_OK;
    if (!bin || !slices) {
        st = KILN_E_NOMEM;
        goto done;
    }
    struct kiln_dim len = kiln_dim_unknown(), batch = kiln_dim_unknown();
    /* States: as given (8: without the batch dim). */
    for (size_t i = 0; i < n_state; i++) {
        const struct kiln_type *t = in_type(c, first + i);
        if (v8 && t && t->kind == KILN_TYPE_TENSOR && t->rank >= 1) {
            const struct kiln_type *cp = kiln_infer_type_copy(t, &slices[i]);
            struct kiln_type *w = (struct kiln_type *)cp;
            if (!kiln_dim_defined(batch)) batch = t->dims[0];
            w->rank = t->rank - 1;
            memmove(w->dims, w->dims + 1, (size_t)w->rank * sizeof *w->dims);
            t = w;
        } else if (v8 && t && t->kind == KILN_TYPE_TENSOR) {
            t = NULL;
        }
        bin[i] = t;
    }
    /* Scan inputs: one slice along the scan axis. */
    for (size_t j = 0; j < (size_t)n_scan_in; j++) {
        const struct kiln_type *t = in_type(c, first + n_state + j);
        bin[n_state + j] = NULL;
        if (!t || t->kind != KILN_TYPE_TENSOR || t->rank < 0) continue;
        int r = t->rank, ax;
        int64_t a = v8 ? 1 : j < n_in_axes ? in_axes[j] : 0;
        if (!kiln_ic_axis(c, a, r, &ax)) goto done;
        if (!kiln_dim_defined(len))
            len = t->dims[ax];
        else if (kiln_dim_ne(len, t->dims[ax])) {
            kiln_ic_problem(c, "scan inputs disagree on the sequence length (%lld vs %lld)",
                            (long long)len.value, (long long)t->dims[ax].value);
            goto done;
        }
        if (v8 && !kiln_dim_defined(batch)) batch = t->dims[0];
        struct kiln_type *w = (struct kiln_type *)kiln_infer_type_copy(t, &slices[n_state + j]);
        int drop0 = v8 ? 1 : 0;
        int n = 0;
        for (int i = 0; i < r; i++)
            if (i != ax && i >= drop0) w->dims[n++] = t->dims[i];
        w->rank = n;
        bin[n_state + j] = w;
    }
    st = run_body(c, body, n_bin, bin, 0, 0, n_state, v8 ? &batch : NULL, NULL);
    if (st) goto done;
    for (size_t k = 0; n_state + k < body->n_outputs && n_state + k < c->n_out; k++) {
        int64_t ax = v8 ? 0 : k < n_out_axes ? out_axes[k] : 0;
        st = set_stacked(c, n_state + k, out_type(body, n_state + k), ax, len, v8 ? &batch : NULL,
                         out_dd(body, n_state + k));
        if (st) goto done;
    }
done:
    kiln_free(bin);
    kiln_free(slices);
    return st;
}

const struct kiln_infer_op kiln_infer_ops_control[] = {
    {"If", "", 1, 0, if_infer},
    {"Loop", "", 1, 0, loop_infer},
    {"Scan", "", 8, 0, scan_infer},
    {0},
};
