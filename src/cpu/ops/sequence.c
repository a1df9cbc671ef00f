/* src/cpu/ops/sequence.c: ONNX sequence and optional ops.
 *
 * SequenceEmpty, SequenceConstruct, SequenceAt, SequenceInsert, SequenceErase,
 * SequenceLength, SplitToSequence, ConcatFromSequence (11; SplitToSequence also 24),
 * SequenceMap (17), Optional (15), OptionalHasElement and OptionalGetElement (15, 18).
 *
 * Values are never shared: every op that outputs part of an input outputs a deep copy
 * (kiln_value_clone), so the executor can free inputs and outputs independently.
 * Positions may be negative (counted from the end): SequenceAt/SequenceErase accept
 * [-n, n-1], SequenceInsert [-n, n]. SequenceErase and SequenceInsert default to the end.
 *
 * SplitToSequence: without `split` the input is cut into pieces of 1 along `axis` (and
 * the axis is squeezed out when keepdims=0); a scalar `split` cuts pieces of that size
 * with a shorter last piece; a 1-D `split` gives the sizes, which must sum to the axis.
 * ConcatFromSequence joins along `axis`, or along a new axis inserted at `axis` when
 * new_axis=1 (then axis may be in [-r-1, r]); an empty sequence is an error, as the
 * output shape would be unknown.
 *
 * From opset 18 OptionalHasElement and OptionalGetElement also take a plain tensor or
 * sequence (always "has an element"), and OptionalHasElement an absent input (none).
 *
 * The ops with attributes (SequenceEmpty, SplitToSequence, ConcatFromSequence,
 * SequenceMap, Optional) decode them once in prepare; their checks stay in run.
 */
#include <string.h>

#include "cpu/tensor_util.h"

/* The attributes of the sequence and optional ops (each op reads its own). */
struct seq_state {
    int64_t dtype;                 /* SequenceEmpty */
    bool has_axis;                 /* ConcatFromSequence: axis is required */
    int64_t axis;                  /* SplitToSequence, ConcatFromSequence (0 when absent) */
    bool keepdims;                 /* SplitToSequence */
    bool new_axis;                 /* ConcatFromSequence */
    const struct kiln_graph *body; /* SequenceMap; NULL: missing */
    const struct kiln_type *type;  /* Optional: the `type` attribute; NULL: none */
};

static kiln_status seq_prepare(struct kiln_kprep *p)
{
    struct seq_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    const struct kiln_kctx *k = &p->kc;
    s->dtype = kiln_attr_i(k, "dtype", KILN_DTYPE_F32);
    s->has_axis = kiln_attr_has(k, "axis");
    s->axis = kiln_attr_i(k, "axis", 0);
    s->keepdims = kiln_attr_i(k, "keepdims", 1) != 0;
    s->new_axis = kiln_attr_i(k, "new_axis", 0) != 0;
    s->body = kiln_attr_g(k, "body");
    const struct kiln_attr *a = kiln_node_attr(k->node, "type");
    s->type = a && a->type == KILN_ATTR_TYPE_PROTO ? a->tp : NULL;
    p->state = s;
    return KILN_OK;
}

/* ------------------------------------------------------------------ helpers */

/* Reads input i (an integer scalar or one-element tensor) as a position in a sequence of
 * n items, allowing [-n, n-1] or, with `end_ok`, [-n, n]. Absent: *pos = def. */
static kiln_status read_position(struct kiln_kctx *k, size_t i, size_t n, bool end_ok, size_t def,
                                 size_t *pos)
{
    const struct kiln_tensor *t = kiln_in(k, i);
    if (!t) {
        *pos = def;
        return KILN_OK;
    }
    if (!kiln_dtype_is_int(t->dtype) || kiln_tensor_numel(t) != 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'position' is %s with %zu elements; "
                          "expected one int32/int64", kiln_dtype_name(t->dtype),
                          kiln_tensor_numel(t));
    int64_t p = kiln_tensor_get_i64(t, 0);
    const int64_t sn = (int64_t)n, hi = end_ok ? sn : sn - 1;
    if (p < -sn || p > hi)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'position' is %lld; expected [%lld, %lld] "
                          "for a sequence of %zu", (long long)p, (long long)-sn, (long long)hi, n);
    *pos = (size_t)(p < 0 ? p + sn : p);
    return KILN_OK;
}

/* Input i as a sequence value, or a failure naming it. */
static kiln_status in_seq(struct kiln_kctx *k, size_t i, const char *what,
                          const struct kiln_value **v)
{
    *v = kiln_in_value(k, i);
    if (!*v || (*v)->kind != KILN_VALUE_SEQUENCE)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s; expected a sequence", what,
                          !*v ? "missing" : (*v)->kind == KILN_VALUE_TENSOR ? "a tensor" : "an optional");
    return KILN_OK;
}

/* Copies elements [src + from, + count) of an equally typed tensor into dst at `to`,
 * duplicating strings. */
static kiln_status copy_elems(struct kiln_kctx *k, struct kiln_tensor *dst, size_t to,
                              const struct kiln_tensor *src, size_t from, size_t count)
{
    if (src->dtype == KILN_DTYPE_STRING)
        return kiln_copy_strings(k, (char **)dst->data + to,
                                 (const char *const *)src->data + from, count);
    size_t es = kiln_dtype_size(src->dtype);
    if (count) memcpy((uint8_t *)dst->data + to * es, (const uint8_t *)src->data + from * es,
                      count * es);
    return KILN_OK;
}

/* A new tensor value (zero-filled), with the error reported through the kernel. */
static kiln_status new_tensor(struct kiln_kctx *k, kiln_dtype dt, int rank, const int64_t *dims,
                              struct kiln_value **out)
{
    return kiln_value_new_tensor(dt, rank, dims, out, k->err);
}

static struct kiln_value *new_seq(kiln_dtype elem)
{
    struct kiln_value *s = kiln_value_new(KILN_VALUE_SEQUENCE);
    if (s) s->elem_dtype = elem;
    return s;
}

/* Removes and frees item i of seq. */
static void seq_remove(struct kiln_value *seq, size_t i)
{
    kiln_value_free(seq->items[i]);
    memmove(seq->items + i, seq->items + i + 1, (seq->count - i - 1) * sizeof *seq->items);
    seq->count--;
}

/* ------------------------------------------------------------------ sequence ops */

static kiln_status seq_empty_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, seq_prepare, seq_empty_run);
    int64_t dt = ((const struct seq_state *)k->state)->dtype;
    if (!kiln_dtype_valid((int)dt) || dt != (int)dt)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "attribute 'dtype' is %lld; expected a tensor "
                          "element type", (long long)dt);
    struct kiln_value *s = new_seq((kiln_dtype)dt);
    if (!s) return kiln_kfail(k, KILN_E_NOMEM, "out of memory creating a sequence");
    return kiln_out_value(k, 0, s);
}

static kiln_status seq_construct_run(struct kiln_kctx *k)
{
    const struct kiln_tensor *t0;
    KILN_TRY(kiln_in_req(k, 0, &t0));
    struct kiln_value *s = new_seq(t0->dtype);
    if (!s) return kiln_kfail(k, KILN_E_NOMEM, "out of memory creating a sequence");
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < k->n_in; i++) {
        const struct kiln_value *v = kiln_in_value(k, i);
        if (!v || v->kind != KILN_VALUE_TENSOR || v->t.dtype != t0->dtype) {
            st = kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu is %s; expected a %s tensor like "
                            "input 0", i, !v ? "missing" : v->kind != KILN_VALUE_TENSOR ?
                            "not a tensor" : kiln_dtype_name(v->t.dtype), kiln_dtype_name(t0->dtype));
            break;
        }
        struct kiln_value *c;
        if ((st = kiln_value_clone(v, &c, k->err))) break;
        if ((st = kiln_value_append(s, c, k->err))) break;
    }
    if (st) {
        kiln_value_free(s);
        return st;
    }
    return kiln_out_value(k, 0, s);
}

static kiln_status seq_at_run(struct kiln_kctx *k)
{
    const struct kiln_value *s;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s));
    if (!kiln_in(k, 1)) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'position' is missing");
    size_t pos;
    KILN_TRY(read_position(k, 1, s->count, false, 0, &pos));
    struct kiln_value *c;
    KILN_TRY(kiln_value_clone(s->items[pos], &c, k->err));
    return kiln_out_value(k, 0, c);
}

static kiln_status seq_insert_run(struct kiln_kctx *k)
{
    const struct kiln_value *s;
    const struct kiln_tensor *t;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s));
    KILN_TRY(kiln_in_req(k, 1, &t));
    if (s->count && s->elem_dtype && t->dtype != s->elem_dtype)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'tensor' is %s; the sequence holds %s",
                          kiln_dtype_name(t->dtype), kiln_dtype_name(s->elem_dtype));
    size_t pos;
    KILN_TRY(read_position(k, 2, s->count, true, s->count, &pos));
    struct kiln_value *c, *item;
    KILN_TRY(kiln_value_clone(s, &c, k->err));
    c->elem_dtype = t->dtype;
    kiln_status st = kiln_value_clone(kiln_in_value(k, 1), &item, k->err);
    if (st == KILN_OK) st = kiln_value_append(c, item, k->err);
    if (st) {
        kiln_value_free(c);
        return st;
    }
    memmove(c->items + pos + 1, c->items + pos, (c->count - 1 - pos) * sizeof *c->items);
    c->items[pos] = item;
    return kiln_out_value(k, 0, c);
}

static kiln_status seq_erase_run(struct kiln_kctx *k)
{
    const struct kiln_value *s;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s));
    if (s->count == 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input_sequence' is empty; nothing to "
                          "erase");
    size_t pos;
    KILN_TRY(read_position(k, 1, s->count, false, s->count - 1, &pos));
    struct kiln_value *c;
    KILN_TRY(kiln_value_clone(s, &c, k->err));
    seq_remove(c, pos);
    return kiln_out_value(k, 0, c);
}

static kiln_status seq_length_run(struct kiln_kctx *k)
{
    const struct kiln_value *s;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s));
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_I64, 0, NULL, &y));
    *(int64_t *)y->data = (int64_t)s->count;
    return KILN_OK;
}

static kiln_status split_to_seq_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, seq_prepare, split_to_seq_run);
    const struct seq_state *ss = k->state;
    const struct kiln_tensor *x, *sp = kiln_in(k, 1);
    KILN_TRY(kiln_in_req(k, 0, &x));
    if (x->rank == 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is a scalar; expected rank >= 1");
    int axis;
    KILN_TRY(kiln_norm_axis(k, ss->axis, x->rank, "attribute 'axis'", &axis));
    const bool keepdims = ss->keepdims;
    const int64_t len = x->dims[axis];
    size_t outer = 1, inner = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis) outer *= (size_t)x->dims[d];
        if (d > axis) inner *= (size_t)x->dims[d];
    }

    /* Piece sizes. */
    size_t np;
    int64_t chunk = 1;
    const int64_t *sizes = NULL;
    int64_t *sbuf = NULL;
    bool squeeze = false;
    if (!sp) {
        np = (size_t)len;
        squeeze = !keepdims;
    } else {
        if (!kiln_dtype_is_int(sp->dtype) || sp->rank > 1)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'split' is %s of rank %d; expected "
                              "an int32/int64 scalar or 1-D tensor", kiln_dtype_name(sp->dtype),
                              sp->rank);
        if (sp->rank == 0) {
            chunk = kiln_tensor_get_i64(sp, 0);
            if (chunk < 1)
                return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'split' is %lld; expected >= 1",
                                  (long long)chunk);
            np = (size_t)((len + chunk - 1) / chunk);
        } else {
            np = kiln_tensor_numel(sp);
            sbuf = kiln_malloc((np ? np : 1) * sizeof *sbuf);
            if (!sbuf) return kiln_kfail(k, KILN_E_NOMEM, "out of memory reading 'split'");
            int64_t sum = 0;
            for (size_t i = 0; i < np; i++) {
                int64_t v = kiln_tensor_get_i64(sp, i);
                if (v < 0 || v > len) {
                    kiln_free(sbuf);
                    return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'split' entry %zu is %lld; "
                                      "expected [0, %lld]", i, (long long)v, (long long)len);
                }
                sbuf[i] = v;
                sum += sbuf[i];
            }
            if (sum != len) {
                kiln_free(sbuf);
                return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'split' sums to %lld; expected "
                                  "%lld (the size of axis %lld)", (long long)sum, (long long)len,
                                  (long long)axis);
            }
            sizes = sbuf;
        }
    }

    struct kiln_value *s = new_seq(x->dtype);
    kiln_status st = KILN_OK;
    if (!s) {
        kiln_free(sbuf);
        return kiln_kfail(k, KILN_E_NOMEM, "out of memory creating a sequence");
    }
    int64_t start = 0;
    for (size_t p = 0; p < np && st == KILN_OK; p++) {
        int64_t sz = sizes ? sizes[p] : (len - start < chunk ? len - start : chunk);
        int64_t dims[KILN_MAX_RANK];
        int rank = 0;
        for (int d = 0; d < x->rank; d++) {
            if (d == axis && squeeze) continue;
            dims[rank++] = d == axis ? sz : x->dims[d];
        }
        struct kiln_value *piece;
        st = new_tensor(k, x->dtype, rank, dims, &piece);
        if (st) break;
        for (size_t a = 0; a < outer && st == KILN_OK; a++)
            st = copy_elems(k, &piece->t, a * (size_t)sz * inner, x,
                            (a * (size_t)len + (size_t)start) * inner, (size_t)sz * inner);
        if (st == KILN_OK) st = kiln_value_append(s, piece, k->err);
        else kiln_value_free(piece);
        start += sz;
    }
    kiln_free(sbuf);
    if (st) {
        kiln_value_free(s);
        return st;
    }
    return kiln_out_value(k, 0, s);
}

static kiln_status concat_from_seq_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, seq_prepare, concat_from_seq_run);
    const struct seq_state *ss = k->state;
    const struct kiln_value *s;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s));
    if (!ss->has_axis)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'axis' is missing");
    const int64_t axis_v = ss->axis;
    const bool new_axis = ss->new_axis;
    if (s->count == 0)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input_sequence' is empty; the output "
                          "shape is undefined");
    for (size_t i = 0; i < s->count; i++)
        if (s->items[i]->kind != KILN_VALUE_TENSOR)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence item %zu is not a tensor", i);
    const struct kiln_tensor *t0 = &s->items[0]->t;
    const int r = t0->rank, orank = new_axis ? r + 1 : r;
    int axis;
    KILN_TRY(kiln_norm_axis(k, axis_v, orank, "attribute 'axis'", &axis));
    if (r == 0 && !new_axis)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence items are scalars; concatenation "
                          "needs new_axis=1");
    int64_t total = 0;
    char b1[128], b2[128];
    for (size_t i = 0; i < s->count; i++) {
        const struct kiln_tensor *t = &s->items[i]->t;
        bool ok = t->rank == r && t->dtype == t0->dtype;
        for (int d = 0; ok && d < r; d++) ok = d == axis && !new_axis ? true : t->dims[d] == t0->dims[d];
        if (!ok)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "sequence item %zu is %s%s; expected %s%s "
                              "(all dims equal except axis %lld)", i, kiln_dtype_name(t->dtype),
                              kiln_shape_str(t->rank, t->dims, b1, sizeof b1),
                              kiln_dtype_name(t0->dtype),
                              kiln_shape_str(t0->rank, t0->dims, b2, sizeof b2), (long long)axis);
        total += new_axis ? 1 : t->dims[axis];
    }
    int64_t odims[KILN_MAX_RANK];
    if (orank > KILN_MAX_RANK)
        return kiln_kfail(k, KILN_E_LIMIT, "output rank %d exceeds %d", orank, KILN_MAX_RANK);
    for (int d = 0, j = 0; d < orank; d++) {
        if (d == axis) {
            odims[d] = total;
            if (!new_axis) j++;
        } else {
            odims[d] = t0->dims[j++];
        }
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, t0->dtype, orank, odims, &y));
    size_t outer = 1, inner = 1;
    for (int d = 0; d < orank; d++) {
        if (d < axis) outer *= (size_t)odims[d];
        if (d > axis) inner *= (size_t)odims[d];
    }
    size_t off = 0; /* position along the axis */
    for (size_t i = 0; i < s->count; i++) {
        const struct kiln_tensor *t = &s->items[i]->t;
        size_t len = new_axis ? 1 : (size_t)t->dims[axis];
        for (size_t a = 0; a < outer; a++)
            KILN_TRY(copy_elems(k, y, (a * (size_t)total + off) * inner, t, a * len * inner,
                                len * inner));
        off += len;
    }
    return KILN_OK;
}

/* Runs the body once per position; each body output j is appended to output sequence j. */
static kiln_status seq_map_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, seq_prepare, seq_map_run);
    const struct kiln_graph *g = ((const struct seq_state *)k->state)->body;
    if (!g) return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'body' is missing");
    const struct kiln_value *s0;
    KILN_TRY(in_seq(k, 0, "input_sequence", &s0));
    const size_t n = s0->count, nin = k->n_in, nout = k->n_out;
    if (g->n_inputs != nin || g->n_outputs != nout)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "body has %zu inputs and %zu outputs; the node "
                          "has %zu and %zu", g->n_inputs, g->n_outputs, nin, nout);
    for (size_t i = 1; i < nin; i++) {
        const struct kiln_value *v = kiln_in_value(k, i);
        if (!v) return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu is missing", i);
        if (v->kind == KILN_VALUE_SEQUENCE && v->count != n)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu is a sequence of %zu; expected %zu "
                              "like input 0", i, v->count, n);
    }
    kiln_status st = KILN_OK;
    struct kiln_value **bin = kiln_calloc(nin ? nin : 1, sizeof *bin);
    struct kiln_value **bout = kiln_calloc(nout ? nout : 1, sizeof *bout);
    struct kiln_value **res = kiln_calloc(nout ? nout : 1, sizeof *res);
    if (!bin || !bout || !res) {
        st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for SequenceMap");
        goto done;
    }
    for (size_t j = 0; j < nout; j++) {
        const struct kiln_type *ty = &g->outputs[j].type;
        res[j] = new_seq(ty->kind == KILN_TYPE_TENSOR ? ty->elem : KILN_DTYPE_UNDEFINED);
        if (!res[j]) {
            st = kiln_kfail(k, KILN_E_NOMEM, "out of memory for SequenceMap");
            goto done;
        }
    }
    for (size_t p = 0; p < n; p++) {
        st = kiln_kctx_check_cancel(k, (int64_t)p);
        if (st) goto done;
        for (size_t i = 0; i < nin; i++) {
            const struct kiln_value *v = kiln_in_value(k, i);
            /* The body borrows the inputs; it does not modify or free them. */
            bin[i] = (struct kiln_value *)(v->kind == KILN_VALUE_SEQUENCE ? v->items[p] : v);
        }
        st = kiln_run_subgraph(k, g, nin, bin, bout);
        if (st) goto done;
        for (size_t j = 0; j < nout; j++) {
            struct kiln_value *o = bout[j];
            bout[j] = NULL;
            if (o && o->kind == KILN_VALUE_TENSOR) res[j]->elem_dtype = o->t.dtype;
            if (!o) {
                st = kiln_kfail(k, KILN_E_INTERNAL, "body output %zu is missing", j);
                goto done;
            }
            if ((st = kiln_value_append(res[j], o, k->err))) goto done;
        }
    }
    for (size_t j = 0; j < nout; j++) {
        struct kiln_value *r = res[j];
        res[j] = NULL;
        if ((st = kiln_out_value(k, j, r))) goto done;
    }
done:
    for (size_t j = 0; res && j < nout; j++) kiln_value_free(res[j]);
    for (size_t j = 0; bout && j < nout; j++) kiln_value_free(bout[j]);
    kiln_free(bin);
    kiln_free(bout);
    kiln_free(res);
    return st;
}

/* ------------------------------------------------------------------ optional ops */

static kiln_status optional_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, seq_prepare, optional_run);
    const struct seq_state *ss = k->state;
    const struct kiln_value *v = kiln_in_value(k, 0);
    struct kiln_value *o = kiln_value_new(KILN_VALUE_OPTIONAL);
    if (!o) return kiln_kfail(k, KILN_E_NOMEM, "out of memory creating an optional");
    if (v) {
        if (v->kind == KILN_VALUE_OPTIONAL) {
            kiln_value_free(o);
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is an optional; expected a "
                              "tensor or a sequence");
        }
        o->elem_kind = v->kind;
        o->elem_dtype = v->kind == KILN_VALUE_TENSOR ? v->t.dtype : v->elem_dtype;
        struct kiln_value *c;
        kiln_status st = kiln_value_clone(v, &c, k->err);
        if (st == KILN_OK) st = kiln_value_append(o, c, k->err);
        if (st) {
            kiln_value_free(o);
            return st;
        }
    } else {
        const struct kiln_type *tp = ss->type;
        if (!tp) {
            kiln_value_free(o);
            return kiln_kfail(k, KILN_E_INVALID_MODEL, "has no input and no 'type' attribute");
        }
        if (tp->kind == KILN_TYPE_SEQUENCE) {
            o->elem_kind = KILN_VALUE_SEQUENCE;
            o->elem_dtype = tp->inner ? tp->inner->elem : KILN_DTYPE_UNDEFINED;
        } else {
            o->elem_kind = KILN_VALUE_TENSOR;
            o->elem_dtype = tp->elem;
        }
    }
    return kiln_out_value(k, 0, o);
}

static kiln_status optional_has_run(struct kiln_kctx *k)
{
    const struct kiln_value *v = kiln_in_value(k, 0);
    if (!v && k->opset < 18)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is missing");
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, KILN_DTYPE_BOOL, 0, NULL, &y));
    *(uint8_t *)y->data = v && (v->kind != KILN_VALUE_OPTIONAL || v->count > 0);
    return KILN_OK;
}

static kiln_status optional_get_run(struct kiln_kctx *k)
{
    const struct kiln_value *v = kiln_in_value(k, 0);
    if (!v) return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is missing");
    if (v->kind == KILN_VALUE_OPTIONAL) {
        if (v->count == 0)
            return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is an empty optional");
        v = v->items[0];
    } else if (k->opset < 18) {
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input 'input' is not an optional");
    }
    struct kiln_value *c;
    KILN_TRY(kiln_value_clone(v, &c, k->err));
    return kiln_out_value(k, 0, c);
}

const struct kiln_cpu_op kiln_cpu_ops_sequence[] = {
    {"SequenceEmpty", "", 11, KILN_OPSET_ANY, seq_empty_run, seq_prepare, 0},
    {"SequenceConstruct", "", 11, KILN_OPSET_ANY, seq_construct_run, NULL, 0},
    {"SequenceAt", "", 11, KILN_OPSET_ANY, seq_at_run, NULL, 0},
    {"SequenceInsert", "", 11, KILN_OPSET_ANY, seq_insert_run, NULL, 0},
    {"SequenceErase", "", 11, KILN_OPSET_ANY, seq_erase_run, NULL, 0},
    {"SequenceLength", "", 11, KILN_OPSET_ANY, seq_length_run, NULL, 0},
    {"SplitToSequence", "", 11, KILN_OPSET_ANY, split_to_seq_run, seq_prepare, 0},
    {"ConcatFromSequence", "", 11, KILN_OPSET_ANY, concat_from_seq_run, seq_prepare, 0},
    {"SequenceMap", "", 17, KILN_OPSET_ANY, seq_map_run, seq_prepare, 0},
    {"Optional", "", 15, KILN_OPSET_ANY, optional_run, seq_prepare, 0},
    {"OptionalHasElement", "", 15, KILN_OPSET_ANY, optional_has_run, NULL, 0},
    {"OptionalGetElement", "", 15, KILN_OPSET_ANY, optional_get_run, NULL, 0},
    {0},
};
