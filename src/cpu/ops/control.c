/* src/cpu/ops/control.c: ONNX control flow: If (1..), Loop (1..), Scan (8, 9..).
 *
 * Subgraphs run through kiln_run_subgraph and see the enclosing graphs' values.
 * If: `cond` is a one-element bool tensor; the chosen branch's outputs become the node's.
 * Loop: inputs (M, cond, v_initial...); body (iter, cond, v...) -> (cond, v..., scan...).
 *   Scan outputs are stacked along a new axis 0; with zero iterations they are empty
 *   tensors of shape [0] with the element type the body declares.
 * Scan: opset 9+ (num_scan_inputs, per-input axes and directions, output axes and
 *   directions); opset 8 has a leading batch axis and optional sequence_lens (which must
 *   cover the full length: kiln supports only that case).
 *
 * Prepare finds the subgraph attributes (the engine prepares their nodes itself) and, for
 * Scan, decodes num_scan_inputs and the axes and directions lists once; a missing body is
 * reported by run, as before.
 */
#include <string.h>

#include "cpu/tensor_util.h"

static kiln_status take_outputs(struct kiln_kctx *k, struct kiln_value **vals, size_t n)
{
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < n; i++) {
        if (st == KILN_OK && i < k->n_out && kiln_out_wanted(k, i))
            st = kiln_out_value(k, i, vals[i]);
        else
            kiln_value_free(vals[i]);
        vals[i] = NULL;
    }
    return st;
}

static bool truthy(const struct kiln_tensor *t)
{
    return t && kiln_tensor_numel(t) >= 1 && kiln_tensor_get_i64(t, 0) != 0;
}

/* ------------------------------------------------------------------ If */

struct if_state {
    const struct kiln_graph *then_branch, *else_branch; /* NULL: missing */
};

static kiln_status if_prepare(struct kiln_kprep *p)
{
    struct if_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->then_branch = kiln_attr_g(&p->kc, "then_branch");
    s->else_branch = kiln_attr_g(&p->kc, "else_branch");
    p->state = s;
    return KILN_OK;
}

static kiln_status if_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, if_prepare, if_run);
    const struct if_state *is = k->state;
    const struct kiln_tensor *c;
    KILN_TRY(kiln_in_req(k, 0, &c));
    if (kiln_tensor_numel(c) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'cond' has %zu elements; expected 1",
                          kiln_tensor_numel(c));
    const struct kiln_graph *g = truthy(c) ? is->then_branch : is->else_branch;
    if (!g)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute '%s' is missing",
                          truthy(c) ? "then_branch" : "else_branch");
    if (g->n_outputs != k->n_out)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "branch '%s' has %zu outputs; the node has %zu",
                          g->name ? g->name : "", g->n_outputs, k->n_out);
    struct kiln_value *outs[64] = {0};
    if (g->n_outputs > 64) return kiln_kfail(k, KILN_E_LIMIT, "more than 64 branch outputs");
    KILN_TRY(kiln_run_subgraph(k, g, 0, NULL, outs));
    return take_outputs(k, outs, g->n_outputs);
}

/* ------------------------------------------------------------------ stacking helpers */

/* Stacks n same-shape tensors along a new axis `axis` into a new value. */
static kiln_status stack(struct kiln_kctx *k, struct kiln_value *const *items, size_t n, int axis,
                         kiln_dtype empty_dt, struct kiln_value **out)
{
    kiln_err e;
    if (n == 0) {
        int64_t zero = 0;
        kiln_status st = kiln_value_new_tensor(empty_dt ? empty_dt : KILN_DTYPE_F32, 1, &zero, out, &e);
        return st ? kiln_kfail(k, st, "%s", e.msg) : KILN_OK;
    }
    const struct kiln_tensor *t0 = &items[0]->t;
    for (size_t i = 0; i < n; i++) {
        const struct kiln_tensor *t = &items[i]->t;
        bool same = items[i]->kind == KILN_VALUE_TENSOR && t->dtype == t0->dtype && t->rank == t0->rank;
        for (int d = 0; same && d < t->rank; d++) same = t->dims[d] == t0->dims[d];
        if (!same)
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "scan output of iteration %zu differs in type or shape from iteration 0", i);
    }
    if (t0->rank + 1 > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "stacked rank exceeds %d", KILN_MAX_RANK);
    if (axis < 0) axis += t0->rank + 1;
    if (axis < 0 || axis > t0->rank) return kiln_kfail(k, KILN_E_INVALID_MODEL, "scan output axis %d out of range", axis);
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0, s = 0; d <= t0->rank; d++) dims[d] = d == axis ? (int64_t)n : t0->dims[s++];
    kiln_status st = kiln_value_new_tensor(t0->dtype, t0->rank + 1, dims, out, &e);
    if (st) return kiln_kfail(k, st, "%s", e.msg);
    size_t es = kiln_dtype_size(t0->dtype), outer = 1, inner = es;
    for (int d = 0; d < axis; d++) outer *= (size_t)t0->dims[d];
    for (int d = axis; d < t0->rank; d++) inner *= (size_t)t0->dims[d];
    char *dst = (*out)->t.data;
    for (size_t i = 0; i < n; i++) {
        const char *src = items[i]->t.data;
        for (size_t o = 0; o < outer; o++) {
            char *q = dst + (o * n + i) * inner;
            if (t0->dtype == KILN_DTYPE_STRING) {
                st = kiln_copy_strings(k, (char **)q, (const char *const *)(src + o * inner),
                                       inner / es);
                if (st) {
                    kiln_value_free(*out);
                    *out = NULL;
                    return st;
                }
            } else {
                memcpy(q, src + o * inner, inner);
            }
        }
    }
    return KILN_OK;
}

/* Copies slice `index` of t along `axis` into a new tensor value (the axis removed). */
static kiln_status slice_axis(struct kiln_kctx *k, const struct kiln_tensor *t, int axis, int64_t index,
                              struct kiln_value **out)
{
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0, s = 0; d < t->rank; d++)
        if (d != axis) dims[s++] = t->dims[d];
    kiln_err e;
    kiln_status st = kiln_value_new_tensor(t->dtype, t->rank - 1, dims, out, &e);
    if (st) return kiln_kfail(k, st, "%s", e.msg);
    size_t es = kiln_dtype_size(t->dtype), outer = 1, inner = es;
    for (int d = 0; d < axis; d++) outer *= (size_t)t->dims[d];
    for (int d = axis + 1; d < t->rank; d++) inner *= (size_t)t->dims[d];
    size_t len = (size_t)t->dims[axis];
    for (size_t o = 0; o < outer; o++) {
        const char *src = (const char *)t->data + (o * len + (size_t)index) * inner;
        char *dst = (char *)(*out)->t.data + o * inner;
        if (t->dtype == KILN_DTYPE_STRING) {
            st = kiln_copy_strings(k, (char **)dst, (const char *const *)src, inner / es);
            if (st) {
                kiln_value_free(*out);
                *out = NULL;
                return st;
            }
        } else {
            memcpy(dst, src, inner);
        }
    }
    return KILN_OK;
}

static void free_values(struct kiln_value **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kiln_value_free(v[i]);
        v[i] = NULL;
    }
}

/* ------------------------------------------------------------------ Loop */

/* A loop-carried value bound to a body input declared optional(...) is wrapped in an
 * optional when it is not one already (the body may return the bare element, as the ONNX
 * loop16_seq_none case does). */
static kiln_status wrap_optional(struct kiln_kctx *k, const struct kiln_value_info *vi, struct kiln_value **v)
{
    if (vi->type.kind != KILN_TYPE_OPTIONAL || (*v)->kind == KILN_VALUE_OPTIONAL) return KILN_OK;
    struct kiln_value *o = kiln_value_new(KILN_VALUE_OPTIONAL);
    if (!o) return kiln_kfail(k, KILN_E_NOMEM, "out of memory wrapping a loop value");
    o->elem_kind = (*v)->kind;
    o->elem_dtype = (*v)->kind == KILN_VALUE_TENSOR ? (*v)->t.dtype : (*v)->elem_dtype;
    struct kiln_value *inner = *v;
    *v = o;
    return kiln_value_append(o, inner, k->err);
}

#define MAX_LOOP_VALUES 64

struct loop_state {
    const struct kiln_graph *body; /* NULL: missing */
};

static kiln_status loop_prepare(struct kiln_kprep *p)
{
    struct loop_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->body = kiln_attr_g(&p->kc, "body");
    p->state = s;
    return KILN_OK;
}

static kiln_status loop_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, loop_prepare, loop_run);
    const struct kiln_graph *body = ((const struct loop_state *)k->state)->body;
    if (!body) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'body' is missing");
    size_t n_carried = k->n_in >= 2 ? k->n_in - 2 : 0;
    if (body->n_inputs != n_carried + 2 || body->n_outputs < n_carried + 1)
        return kiln_kfail(k, KILN_E_INVALID_MODEL,
                          "body has %zu inputs and %zu outputs; expected %zu inputs and >= %zu outputs",
                          body->n_inputs, body->n_outputs, n_carried + 2, n_carried + 1);
    size_t n_scan = body->n_outputs - 1 - n_carried;
    if (n_carried + n_scan > MAX_LOOP_VALUES)
        return kiln_kfail(k, KILN_E_LIMIT, "more than %d loop values", MAX_LOOP_VALUES);
    const struct kiln_tensor *tm = kiln_in(k, 0), *tc = kiln_in(k, 1);
    int64_t max_trip = tm && kiln_tensor_numel(tm) ? kiln_tensor_get_i64(tm, 0) : INT64_MAX;
    bool cond = tc ? truthy(tc) : true;

    struct kiln_value *carried[MAX_LOOP_VALUES] = {0}, *outs[MAX_LOOP_VALUES + 1] = {0};
    struct kiln_value **scans[MAX_LOOP_VALUES] = {0};
    size_t n_iter_cap = 0;
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < n_carried && !st; i++) {
        const struct kiln_value *v = kiln_in_value(k, i + 2);
        if (!v) {
            carried[i] = kiln_value_new(KILN_VALUE_OPTIONAL); /* absent optional input */
            if (!carried[i]) st = kiln_kfail(k, KILN_E_NOMEM, "out of memory");
        } else {
            st = kiln_value_clone(v, &carried[i], k->err);
            if (!st) st = wrap_optional(k, &body->inputs[2 + i], &carried[i]);
        }
    }
    struct kiln_value *iter_v = NULL, *cond_v = NULL;
    kiln_err e;
    if (!st && (st = kiln_value_new_tensor(KILN_DTYPE_I64, 0, NULL, &iter_v, &e)))
        kiln_kfail(k, st, "%s", e.msg);
    if (!st && (st = kiln_value_new_tensor(KILN_DTYPE_BOOL, 0, NULL, &cond_v, &e)))
        kiln_kfail(k, st, "%s", e.msg);
    int64_t it = 0;
    size_t done = 0; /* iterations whose scan outputs are stored */
    for (; !st && it < max_trip && cond; it++) {
        st = kiln_kctx_check_cancel(k, it);
        if (st) break;
        *(int64_t *)iter_v->t.data = it;
        *(uint8_t *)cond_v->t.data = cond;
        struct kiln_value *ins[MAX_LOOP_VALUES + 2];
        ins[0] = iter_v;
        ins[1] = cond_v;
        for (size_t i = 0; i < n_carried; i++) ins[i + 2] = carried[i];
        st = kiln_run_subgraph(k, body, n_carried + 2, ins, outs);
        if (st) break;
        const struct kiln_tensor *co = outs[0]->kind == KILN_VALUE_TENSOR ? &outs[0]->t : NULL;
        cond = truthy(co);
        free_values(outs, 1);
        for (size_t i = 0; i < n_carried; i++) {
            kiln_value_free(carried[i]);
            carried[i] = outs[1 + i];
            outs[1 + i] = NULL;
            if (!st) st = wrap_optional(k, &body->inputs[2 + i], &carried[i]);
        }
        if ((size_t)it >= n_iter_cap) {
            size_t cap = n_iter_cap ? n_iter_cap * 2 : 16;
            for (size_t s = 0; s < n_scan && !st; s++) {
                struct kiln_value **p = kiln_realloc(scans[s], cap * sizeof *p);
                if (!p) st = kiln_kfail(k, KILN_E_NOMEM, "out of memory collecting scan outputs");
                else scans[s] = p;
            }
            n_iter_cap = cap;
        }
        for (size_t s = 0; s < n_scan; s++) {
            if (!st) scans[s][it] = outs[1 + n_carried + s];
            else kiln_value_free(outs[1 + n_carried + s]);
            outs[1 + n_carried + s] = NULL;
        }
        if (!st) done++;
    }
    for (size_t i = 0; i < n_carried && !st; i++) {
        /* Undo wrap_optional where the body's own output is not declared optional. */
        if (carried[i]->kind == KILN_VALUE_OPTIONAL && carried[i]->count == 1 &&
            body->outputs[1 + i].type.kind != KILN_TYPE_OPTIONAL &&
            body->outputs[1 + i].type.kind != KILN_TYPE_NONE) {
            struct kiln_value *inner = carried[i]->items[0];
            carried[i]->count = 0;
            kiln_value_free(carried[i]);
            carried[i] = inner;
        }
        if (kiln_out_wanted(k, i)) st = kiln_out_value(k, i, carried[i]);
        else kiln_value_free(carried[i]);
        carried[i] = NULL;
    }
    for (size_t s = 0; s < n_scan && !st; s++) {
        const struct kiln_type *ty = &body->outputs[1 + n_carried + s].type;
        struct kiln_value *v = NULL;
        st = stack(k, scans[s], done, 0, ty->kind == KILN_TYPE_TENSOR ? ty->elem : KILN_DTYPE_UNDEFINED, &v);
        if (!st) st = kiln_out_value(k, n_carried + s, v);
    }
    for (size_t s = 0; s < n_scan; s++) {
        if (scans[s]) free_values(scans[s], done);
        kiln_free(scans[s]);
    }
    free_values(carried, n_carried);
    kiln_value_free(iter_v);
    kiln_value_free(cond_v);
    return st;
}

/* ------------------------------------------------------------------ Scan */

/* Scan's attributes; opset 8 has no axes lists and calls scan_input_directions
 * `directions`. */
struct scan_state {
    const struct kiln_graph *body; /* NULL: missing */
    int64_t num_scan_inputs;       /* -1: missing */
    const int64_t *in_axes, *in_dirs, *out_axes, *out_dirs;
    size_t n_in_axes, n_in_dirs, n_out_axes, n_out_dirs;
};

static kiln_status scan_prepare(struct kiln_kprep *p)
{
    struct scan_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    bool v8 = k->opset < 9;
    s->body = kiln_attr_g(k, "body");
    s->num_scan_inputs = kiln_attr_i(k, "num_scan_inputs", -1);
    s->n_in_axes = v8 ? 0 : kiln_attr_ints(k, "scan_input_axes", &s->in_axes);
    s->n_in_dirs = kiln_attr_ints(k, v8 ? "directions" : "scan_input_directions", &s->in_dirs);
    s->n_out_axes = v8 ? 0 : kiln_attr_ints(k, "scan_output_axes", &s->out_axes);
    s->n_out_dirs = v8 ? 0 : kiln_attr_ints(k, "scan_output_directions", &s->out_dirs);
    p->state = s;
    return KILN_OK;
}

static kiln_status scan_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, scan_prepare, scan_run);
    const struct scan_state *ss = k->state;
    const struct kiln_graph *body = ss->body;
    if (!body) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'body' is missing");
    bool v8 = k->opset < 9;
    size_t first = v8 ? 1 : 0; /* opset 8: input 0 is sequence_lens */
    int64_t n_scan_in = ss->num_scan_inputs;
    if (n_scan_in < 0 || (size_t)n_scan_in > k->n_in - first)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "num_scan_inputs %lld invalid for %zu inputs",
                          (long long)n_scan_in, k->n_in);
    size_t n_state = k->n_in - first - (size_t)n_scan_in;
    size_t n_scan_out = k->n_out >= n_state ? k->n_out - n_state : 0;
    if (n_state + (size_t)n_scan_in > MAX_LOOP_VALUES || n_state + n_scan_out > MAX_LOOP_VALUES)
        return kiln_kfail(k, KILN_E_LIMIT, "more than %d scan values", MAX_LOOP_VALUES);
    if (body->n_inputs != n_state + (size_t)n_scan_in || body->n_outputs != n_state + n_scan_out)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "body signature (%zu in, %zu out) does not match the node",
                          body->n_inputs, body->n_outputs);
    if (v8) {
        const struct kiln_tensor *sl = kiln_in(k, 0);
        if (sl && sl->rank > 0) {
            /* Only full-length sequences are supported: checked per batch below. */
        }
    }
    const int64_t *in_axes = ss->in_axes, *in_dirs = ss->in_dirs, *out_axes = ss->out_axes,
                  *out_dirs = ss->out_dirs;
    size_t n_in_axes = ss->n_in_axes, n_in_dirs = ss->n_in_dirs;
    size_t n_out_axes = ss->n_out_axes, n_out_dirs = ss->n_out_dirs;

    const struct kiln_tensor *xs[MAX_LOOP_VALUES];
    int axes[MAX_LOOP_VALUES];
    int64_t len = -1, batch = 1;
    for (size_t j = 0; j < (size_t)n_scan_in; j++) {
        KILN_TRY(kiln_in_req(k, first + n_state + j, &xs[j]));
        int ax = v8 ? 1 : (int)(j < n_in_axes ? in_axes[j] : 0);
        if (ax < 0) ax += xs[j]->rank;
        if (ax < 0 || ax >= xs[j]->rank)
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "scan input %zu: axis out of range for rank %d", j, xs[j]->rank);
        axes[j] = ax;
        if (len >= 0 && xs[j]->dims[ax] != len)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "scan inputs disagree on the sequence length (%lld vs %lld)",
                              (long long)len, (long long)xs[j]->dims[ax]);
        len = xs[j]->dims[ax];
        if (v8) batch = xs[j]->dims[0];
    }
    if (len < 0) len = 0;
    if (v8) {
        const struct kiln_tensor *sl = kiln_in(k, 0);
        for (size_t b = 0; sl && b < kiln_tensor_numel(sl); b++)
            if (kiln_tensor_get_i64(sl, b) != len)
                return kiln_kfail(k, KILN_E_UNSUPPORTED, "sequence_lens shorter than the scan length are not supported");
    }

    kiln_status st = KILN_OK;
    struct kiln_value *state[MAX_LOOP_VALUES] = {0}, *outs[MAX_LOOP_VALUES] = {0};
    struct kiln_value **coll[MAX_LOOP_VALUES] = {0};
    /* For opset 8, each batch entry runs separately and results are stacked on axis 0. */
    struct kiln_value **batch_res[MAX_LOOP_VALUES] = {0};
    for (size_t o = 0; o < n_state + n_scan_out && !st; o++) {
        batch_res[o] = kiln_calloc((size_t)batch + 1, sizeof **batch_res);
        if (!batch_res[o]) st = kiln_kfail(k, KILN_E_NOMEM, "out of memory");
    }
    for (size_t o = 0; o < n_scan_out && !st; o++) {
        coll[o] = kiln_calloc((size_t)len + 1, sizeof **coll);
        if (!coll[o]) st = kiln_kfail(k, KILN_E_NOMEM, "out of memory");
    }
    for (int64_t b = 0; b < batch && !st; b++) {
        for (size_t i = 0; i < n_state && !st; i++) {
            const struct kiln_tensor *s0;
            st = kiln_in_req(k, first + i, &s0);
            if (!st && v8) st = slice_axis(k, s0, 0, b, &state[i]);
            else if (!st) st = kiln_value_clone(kiln_in_value(k, first + i), &state[i], k->err);
        }
        for (int64_t t = 0; t < len && !st; t++) {
            st = kiln_kctx_check_cancel(k, b * len + t);
            if (st) break;
            struct kiln_value *ins[MAX_LOOP_VALUES * 2] = {0};
            for (size_t i = 0; i < n_state; i++) ins[i] = state[i];
            for (size_t j = 0; j < (size_t)n_scan_in && !st; j++) {
                bool rev = j < n_in_dirs && in_dirs[j] == 1;
                int64_t idx = rev ? len - 1 - t : t;
                if (v8) {
                    struct kiln_value *row = NULL;
                    st = slice_axis(k, xs[j], 0, b, &row);
                    if (!st) st = slice_axis(k, &row->t, 0, idx, &ins[n_state + j]);
                    kiln_value_free(row);
                } else {
                    st = slice_axis(k, xs[j], axes[j], idx, &ins[n_state + j]);
                }
            }
            if (!st) st = kiln_run_subgraph(k, body, n_state + (size_t)n_scan_in, ins, outs);
            for (size_t j = 0; j < (size_t)n_scan_in; j++) kiln_value_free(ins[n_state + j]);
            if (st) break;
            for (size_t i = 0; i < n_state; i++) {
                kiln_value_free(state[i]);
                state[i] = outs[i];
                outs[i] = NULL;
            }
            for (size_t o = 0; o < n_scan_out; o++) {
                coll[o][t] = outs[n_state + o];
                outs[n_state + o] = NULL;
            }
        }
        for (size_t o = 0; o < n_scan_out && !st; o++) {
            bool rev = o < n_out_dirs && out_dirs[o] == 1;
            if (rev)
                for (int64_t a = 0, z = len - 1; a < z; a++, z--) {
                    struct kiln_value *tmp = coll[o][a];
                    coll[o][a] = coll[o][z];
                    coll[o][z] = tmp;
                }
            int ax = v8 ? 0 : (int)(o < n_out_axes ? out_axes[o] : 0);
            const struct kiln_type *ty = &body->outputs[n_state + o].type;
            st = stack(k, coll[o], (size_t)len, ax, ty->elem, &batch_res[n_state + o][b]);
            free_values(coll[o], (size_t)len);
        }
        for (size_t i = 0; i < n_state; i++) {
            batch_res[i][b] = state[i];
            state[i] = NULL;
        }
    }
    for (size_t o = 0; o < n_state + n_scan_out && !st; o++) {
        struct kiln_value *v = NULL;
        if (v8) {
            st = stack(k, batch_res[o], (size_t)batch, 0, KILN_DTYPE_UNDEFINED, &v);
        } else {
            v = batch_res[o][0];
            batch_res[o][0] = NULL;
        }
        if (!st) st = kiln_out_wanted(k, o) ? kiln_out_value(k, o, v) : (kiln_value_free(v), KILN_OK);
    }
    for (size_t o = 0; o < n_state + n_scan_out; o++) {
        if (batch_res[o]) free_values(batch_res[o], (size_t)batch);
        kiln_free(batch_res[o]);
    }
    for (size_t o = 0; o < n_scan_out; o++) {
        if (coll[o]) free_values(coll[o], (size_t)len);
        kiln_free(coll[o]);
    }
    free_values(state, n_state);
    free_values(outs, n_state + n_scan_out);
    return st;
}

const struct kiln_cpu_op kiln_cpu_ops_control[] = {
    {"If", "", 1, 0, if_run, if_prepare, 0},
    {"Loop", "", 1, 0, loop_run, loop_prepare, 0},
    {"Scan", "", 8, 0, scan_run, scan_prepare, 0},
    {0},
};
