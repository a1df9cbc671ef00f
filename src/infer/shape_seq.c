/* shape_seq.c: shape and type rules for the sequence and optional ops (src/cpu/ops/
 * sequence.c): SequenceEmpty, SequenceConstruct, SequenceAt, SequenceInsert, SequenceErase,
 * SequenceLength, SplitToSequence, ConcatFromSequence (11), SequenceMap (17), Optional,
 * OptionalHasElement, OptionalGetElement (15, 18).
 *
 * A sequence's type is one tensor type for all its elements: where elements differ (a dim,
 * the rank) the element type says unknown there (kiln_infer_merge).
 *   SequenceEmpty       seq(tensor(dtype attr, default float32), unknown rank)
 *   SequenceConstruct   seq(merge of the inputs)
 *   SequenceInsert      seq(merge of the element type and the inserted tensor), except that
 *                       inserting into SequenceEmpty's output gives the tensor's type
 *   SequenceAt          the element type; SequenceErase like the input
 *   SequenceLength      int64 scalar
 * A sequence built in the same graph by SequenceEmpty/Construct/Insert/Erase with known
 * positions has a known element list: SequenceAt at a constant position gets that
 * element's type, SequenceLength the count as its value, ConcatFromSequence the sum of the
 * elements' axis dims (or their count with new_axis).
 *   SplitToSequence     elements of the input's shape with the axis dim: 1 (or removed with
 *                       keepdims 0) without split; the split size for a scalar split (unknown
 *                       when it does not divide the dim); for a 1-D split its common value
 *   ConcatFromSequence  the element shape, the axis dim unknown (it sums over the elements;
 *                       new_axis 1 inserts a dim of the sequence length, also unknown)
 *   SequenceMap         seq(body output k) with the body run on the element types
 *   Optional            optional(input type) or optional(the type attribute)
 *   OptionalHasElement  bool scalar; OptionalGetElement the contained type
 */
#include "infer/shape_nn.h"

static const struct kiln_type *in_type(const struct kiln_ictx *c, size_t i)
{
    const struct kiln_vtype *v = i < c->n_in ? kiln_ic_in(c, i) : NULL;
    return v && v->type.kind != KILN_TYPE_NONE ? &v->type : NULL;
}

/* Whether input i is made by a SequenceEmpty node of this graph. */
static bool from_sequence_empty(const struct kiln_ictx *c, size_t i)
{
    int id = i < c->node->n_in && c->node->in_ids ? c->node->in_ids[i] : -1;
    if (id < 0 || (size_t)id >= c->g->n_values) return false;
    const struct kiln_graph_value *gv = &c->g->values[id];
    return gv->def == KILN_DEF_NODE && gv->producer >= 0 && (size_t)gv->producer < c->g->n_nodes &&
           !strcmp(c->g->nodes[gv->producer].op_type, "SequenceEmpty");
}

/* Output o: seq(elem); elem NULL: a sequence of tensors of unknown type. */
static kiln_status set_seq(struct kiln_ictx *c, size_t o, const struct kiln_type *elem)
{
    struct kiln_type unk = {.kind = KILN_TYPE_TENSOR, .rank = -1};
    struct kiln_type s = {.kind = KILN_TYPE_SEQUENCE, .inner = (struct kiln_type *)(elem ? elem : &unk)};
    return kiln_ic_set_type(c, o, &s);
}

/* ------------------------------------------------------------------ element lists */

#define SEQ_MAX_ELEMS 64

/* A scalar integer constant (a position input), when known. */
static bool const_index(const struct kiln_vtype *v, int64_t *out)
{
    const struct kiln_tensor *t = v ? v->konst : NULL;
    if (!t || kiln_tensor_numel(t) != 1 || !t->data) return false;
    if (t->dtype == KILN_DTYPE_I64)
        *out = *(const int64_t *)t->data;
    else if (t->dtype == KILN_DTYPE_I32)
        *out = *(const int32_t *)t->data;
    else
        return false;
    return true;
}

/* The element types of sequence value `name` of g, one per element, when the sequence is
 * built in g by SequenceEmpty / SequenceConstruct / SequenceInsert / SequenceErase with
 * known positions: the count (at most cap), or -1 when not known. */
static int seq_elems(const struct kiln_graph *g, const char *name, const struct kiln_type **el, int cap,
                     int depth)
{
    int id = name && *name ? kiln_graph_find(g, name) : -1;
    if (id < 0 || depth > 32 || g->values[id].def != KILN_DEF_NODE) return -1;
    const struct kiln_node *n = &g->nodes[g->values[id].producer];
    const struct kiln_vtype *v;
    int64_t pos;
    if (!strcmp(n->op_type, "SequenceEmpty")) return 0;
    if (!strcmp(n->op_type, "SequenceConstruct")) {
        if (n->n_in > (size_t)cap) return -1;
        for (size_t i = 0; i < n->n_in; i++) {
            v = kiln_infer_lookup(g, n->inputs[i]);
            if (!v || v->type.kind != KILN_TYPE_TENSOR) return -1;
            el[i] = &v->type;
        }
        return (int)n->n_in;
    }
    bool insert = !strcmp(n->op_type, "SequenceInsert"), erase = !strcmp(n->op_type, "SequenceErase");
    if ((!insert && !erase) || n->n_in < 1) return -1;
    int k = seq_elems(g, n->inputs[0], el, cap, depth + 1);
    if (k < 0) return -1;
    size_t pi = insert ? 2 : 1;
    bool has_pos = n->n_in > pi && *n->inputs[pi];
    if (has_pos && !const_index(kiln_infer_lookup(g, n->inputs[pi]), &pos)) return -1;
    if (!has_pos) pos = insert ? k : k - 1;
    if (pos < 0) pos += k;
    if (insert) {
        v = kiln_infer_lookup(g, n->inputs[1]);
        if (k >= cap || pos < 0 || pos > k || !v || v->type.kind != KILN_TYPE_TENSOR) return -1;
        memmove(el + pos + 1, el + pos, (size_t)(k - pos) * sizeof *el);
        el[pos] = &v->type;
        return k + 1;
    }
    if (pos < 0 || pos >= k) return -1;
    memmove(el + pos, el + pos + 1, (size_t)(k - pos - 1) * sizeof *el);
    return k - 1;
}

/* ------------------------------------------------------------------ rules */

static kiln_status seq_empty_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = KILN_DTYPE_F32;
    if (kiln_ic_attr_has(c, "dtype")) {
        int64_t v = kiln_ic_attr_i(c, "dtype", 1);
        dt = v == (int)v && kiln_dtype_valid((int)v) ? (kiln_dtype)v : KILN_DTYPE_UNDEFINED;
    }
    struct kiln_type e = {.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = -1};
    return set_seq(c, 0, &e);
}

static kiln_status seq_construct_infer(struct kiln_ictx *c)
{
    /* the merge of every input, kept in acc (tensor types only) */
    struct kiln_type acc = {0};
    struct kiln_dim accd[KILN_MAX_RANK];
    for (size_t i = 0; i < c->n_in; i++) {
        const struct kiln_type *t = in_type(c, i);
        struct kiln_merge_buf buf = {.used = 0};
        if (!t || t->kind != KILN_TYPE_TENSOR || t->rank > KILN_MAX_RANK) return set_seq(c, 0, NULL);
        const struct kiln_type *m = i ? kiln_infer_merge(&acc, t, &buf) : t;
        if (!m) return set_seq(c, 0, NULL);
        acc = *m;
        if (m->rank > 0) memmove(accd, m->dims, (size_t)m->rank * sizeof accd[0]);
        acc.dims = m->rank >= 0 ? accd : NULL;
    }
    return set_seq(c, 0, c->n_in ? &acc : NULL);
}

static kiln_status seq_at_infer(struct kiln_ictx *c)
{
    const struct kiln_type *el[SEQ_MAX_ELEMS];
    int64_t pos;
    int k = seq_elems(c->g, c->node->inputs[0], el, SEQ_MAX_ELEMS, 0);
    if (k > 0 && const_index(kiln_ic_in(c, 1), &pos) && pos >= -k && pos < k)
        return kiln_ic_set_type(c, 0, el[pos < 0 ? pos + k : pos]);
    const struct kiln_type *s = in_type(c, 0);
    if (!s || s->kind != KILN_TYPE_SEQUENCE || !s->inner) return KILN_OK;
    return kiln_ic_set_type(c, 0, s->inner);
}

static kiln_status seq_insert_infer(struct kiln_ictx *c)
{
    const struct kiln_type *s = in_type(c, 0), *t = in_type(c, 1);
    const struct kiln_type *e = s && s->kind == KILN_TYPE_SEQUENCE ? s->inner : NULL;
    struct kiln_merge_buf buf = {.used = 0};
    if (from_sequence_empty(c, 0) && t && t->kind == KILN_TYPE_TENSOR && e &&
        (e->elem == t->elem || e->elem == KILN_DTYPE_UNDEFINED))
        return set_seq(c, 0, t); /* an empty sequence says nothing of the shape */
    if (e && t && e->kind == KILN_TYPE_TENSOR && t->kind == KILN_TYPE_TENSOR &&
        e->elem != KILN_DTYPE_UNDEFINED && t->elem != KILN_DTYPE_UNDEFINED && e->elem != t->elem) {
        kiln_ic_problem(c, "inserting a %s tensor into a sequence of %s", kiln_dtype_name(t->elem),
                        kiln_dtype_name(e->elem));
        return KILN_OK;
    }
    return set_seq(c, 0, kiln_infer_merge(e, t, &buf));
}

static kiln_status seq_erase_infer(struct kiln_ictx *c)
{
    return in_type(c, 0) ? kiln_ic_set_like(c, 0, 0) : KILN_OK;
}

static kiln_status seq_length_infer(struct kiln_ictx *c)
{
    const struct kiln_type *el[SEQ_MAX_ELEMS];
    int k = seq_elems(c->g, c->node->inputs[0], el, SEQ_MAX_ELEMS, 0);
    KILN_TRY(kiln_ic_set_tensor(c, 0, KILN_DTYPE_I64, 0, NULL));
    if (k < 0) return KILN_OK;
    struct kiln_dim n = kiln_dim_int(k);
    return kiln_ic_set_vals(c, 0, 1, &n);
}

static kiln_status split_to_seq_infer(struct kiln_ictx *c)
{
    kiln_dtype dt = kiln_ic_in_dtype(c, 0);
    int r, axis;
    const struct kiln_dim *x;
    struct kiln_type e = {.kind = KILN_TYPE_TENSOR, .elem = dt, .rank = -1};
    if (!kiln_infer_shape_of(c, 0, &r, &x)) return set_seq(c, 0, &e);
    if (!kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &axis)) return KILN_OK;
    struct kiln_dim y[KILN_MAX_RANK];
    memcpy(y, x, (size_t)r * sizeof *y);
    e.rank = r;
    e.dims = y;
    bool has_split = c->n_in > 1 && kiln_ic_in(c, 1);
    if (!has_split) {
        if (kiln_ic_attr_i(c, "keepdims", 1)) {
            y[axis] = kiln_dim_int(1);
        } else {
            memmove(y + axis, y + axis + 1, (size_t)(r - axis - 1) * sizeof *y);
            e.rank = r - 1;
        }
        return set_seq(c, 0, &e);
    }
    int n, rs = kiln_ic_in_rank(c, 1);
    const struct kiln_dim *v;
    y[axis] = kiln_dim_unknown();
    if (kiln_ic_vals(c, 1, &n, &v)) {
        if (rs == 0 && n == 1) {
            /* scalar split: equal pieces, the last one smaller unless it divides */
            if (kiln_dim_known(v[0]) && kiln_dim_known(x[axis]) && v[0].value > 0 &&
                x[axis].value % v[0].value == 0)
                y[axis] = v[0];
            else if (kiln_dim_known(v[0]) && kiln_dim_known(x[axis]) && v[0].value >= x[axis].value)
                y[axis] = x[axis];
        } else if (n > 0) {
            bool same = true;
            for (int i = 1; i < n && same; i++) same = kiln_dim_eq(v[i], v[0]);
            if (same) y[axis] = v[0];
        }
    }
    return set_seq(c, 0, &e);
}

static kiln_status concat_from_seq_infer(struct kiln_ictx *c)
{
    const struct kiln_type *s = in_type(c, 0);
    const struct kiln_type *e = s && s->kind == KILN_TYPE_SEQUENCE ? s->inner : NULL;
    if (!e || e->kind != KILN_TYPE_TENSOR) return KILN_OK;
    bool new_axis = kiln_ic_attr_i(c, "new_axis", 0) != 0;
    if (e->rank < 0) return kiln_ic_set_tensor(c, 0, e->elem, -1, NULL);
    int r = e->rank + (new_axis ? 1 : 0), axis;
    if (r > KILN_MAX_RANK || !kiln_ic_axis(c, kiln_ic_attr_i(c, "axis", 0), r, &axis)) return KILN_OK;
    struct kiln_dim y[KILN_MAX_RANK];
    for (int i = 0, j = 0; i < r; i++) {
        if (new_axis && i == axis) {
            y[i] = kiln_dim_unknown();
            continue;
        }
        y[i] = e->dims[j++];
    }
    y[axis] = kiln_dim_unknown();
    /* the elements, when the sequence is built in this graph: the axis dim is their count
     * (new_axis) or the sum of theirs */
    const struct kiln_type *el[SEQ_MAX_ELEMS];
    int k = seq_elems(c->g, c->node->inputs[0], el, SEQ_MAX_ELEMS, 0);
    if (k > 0 && new_axis) {
        y[axis] = kiln_dim_int(k);
    } else if (k > 0) {
        struct kiln_dim sum = kiln_dim_int(0);
        for (int i = 0; i < k; i++)
            sum = el[i]->rank == e->rank ? kiln_sym_add(c->inf, sum, el[i]->dims[axis]) : kiln_dim_unknown();
        y[axis] = sum;
    }
    return kiln_ic_set_tensor(c, 0, e->elem, r, y);
}

static kiln_status seq_map_infer(struct kiln_ictx *c)
{
    const struct kiln_attr *a = kiln_node_attr(c->node, "body");
    if (!a || !a->g) return KILN_OK;
    struct kiln_graph *body = a->g;
    const struct kiln_type *in[KILN_MAX_RANK * 4];
    size_t n = c->n_in < sizeof in / sizeof in[0] ? c->n_in : sizeof in / sizeof in[0];
    for (size_t i = 0; i < n; i++) {
        const struct kiln_type *t = in_type(c, i);
        in[i] = t && t->kind == KILN_TYPE_SEQUENCE ? t->inner : t;
    }
    KILN_TRY(kiln_ic_subgraph(c, body, n, in));
    for (size_t k = 0; k < c->n_out && k < body->n_outputs; k++) {
        const struct kiln_vtype *v = kiln_infer_lookup(body, body->outputs[k].name);
        KILN_TRY(set_seq(c, k, v && v->type.kind != KILN_TYPE_NONE ? &v->type : NULL));
    }
    return KILN_OK;
}

static kiln_status optional_infer(struct kiln_ictx *c)
{
    const struct kiln_type *t = in_type(c, 0);
    const struct kiln_attr *a = kiln_node_attr(c->node, "type");
    if (!t && a && a->tp) t = a->tp;
    if (!t) return KILN_OK;
    struct kiln_type o = {.kind = KILN_TYPE_OPTIONAL, .inner = (struct kiln_type *)t};
    return kiln_ic_set_type(c, 0, &o);
}

static kiln_status optional_has_infer(struct kiln_ictx *c)
{
    return kiln_ic_set_tensor(c, 0, KILN_DTYPE_BOOL, 0, NULL);
}

static kiln_status optional_get_infer(struct kiln_ictx *c)
{
    const struct kiln_type *t = in_type(c, 0);
    if (!t) return KILN_OK;
    if (t->kind == KILN_TYPE_OPTIONAL) return t->inner ? kiln_ic_set_type(c, 0, t->inner) : KILN_OK;
    return kiln_ic_set_like(c, 0, 0); /* opset 18: a tensor or sequence passes through */
}

const struct kiln_infer_op kiln_infer_ops_seq[] = {
    {"SequenceEmpty", "", 11, 0, seq_empty_infer},
    {"SequenceConstruct", "", 11, 0, seq_construct_infer},
    {"SequenceAt", "", 11, 0, seq_at_infer},
    {"SequenceInsert", "", 11, 0, seq_insert_infer},
    {"SequenceErase", "", 11, 0, seq_erase_infer},
    {"SequenceLength", "", 11, 0, seq_length_infer},
    {"SplitToSequence", "", 11, 0, split_to_seq_infer},
    {"ConcatFromSequence", "", 11, 0, concat_from_seq_infer},
    {"SequenceMap", "", 17, 0, seq_map_infer},
    {"Optional", "", 15, 0, optional_infer},
    {"OptionalHasElement", "", 15, 0, optional_has_infer},
    {"OptionalGetElement", "", 15, 0, optional_get_infer},
    {0},
};
