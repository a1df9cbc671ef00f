/* pass_fuse_attention.c: multi-head attention written out as exporters emit it becomes one
 * kiln.Attention node (docs/fused-ops.md):
 *
 *   Q4 = Transpose(Reshape(q, [B, S, H, D]), 0 2 1 3)        [optionally * or / a constant]
 *   K4 = Transpose(Reshape(k, [B, S, H, D]), 0 2 1 3)        [optionally Concat(past_k, ., axis 2)]
 *   Kt = Transpose(K4, 0 1 3 2), or Transpose(Reshape(k), 0 2 3 1) without a cache
 *   V4 = Transpose(Reshape(v, [B, S, H, D]), 0 2 1 3)        [optionally Concat(past_v, ., axis 2)]
 *   s  = MatMul(Q4, Kt)    [* or / a constant]   [+ mask, or Where(bool mask, s, -huge)]
 *   y  = Reshape(Transpose(MatMul(Softmax(s, last axis), V4), 0 2 1 3), [B, S, H*D])
 *
 * becomes kiln.Attention(q, k, v, mask, past_k, past_v) -> (y, present_k, present_v) with
 * num_heads H and scale = the product of the constant factors (1 when there is none: a
 * scale folded into q before the Reshape stays there). q, k, v are float32 [B, S, H*D]; the
 * mask must be float32 with its last dim equal to the scores' (it may broadcast elsewhere);
 * a Where mask becomes the float mask Where(cond, 0, fill). The head Reshapes' shapes are
 * constants, or computed ones whose inferred result is [., S, H, D] (dynamic exports).
 * Every intermediate must have no other use, except the Concat results (the present K/V),
 * which keep their names and uses. Needs kiln ops.
 *
 * The sequence-first form torch's nn.MultiheadAttention exports (torchvision's ViT) has the
 * batch and heads merged:
 *
 *   Qh = Transpose(Reshape(q, [S, B*H, D]), 1 0 2)            q [S, B, H*D], B known
 *   Kt = Transpose(Reshape(k, [S, B*H, D]), 1 2 0), or Transpose(heads of k, 0 2 1)
 *   y  = Reshape(Transpose(MatMul(Softmax(s), Vh), 1 0 2), [S*B, H*D] or [S, B, H*D])
 *
 * with the scale and mask as above (no KV cache; a 3-D mask's first dim must be 1, or B must
 * be 1, and no mask dim may widen the scores). q, k, v go in as [B, S, H*D] (a Reshape when B
 * is 1, else a Transpose 1 0 2) and the result comes back the same way. A scale may also sit
 * on K^T, in either form.
 */
#include <string.h>

#include "opt/fuse_util.h"

struct attn {
    size_t nodes[24];
    size_t n;
    const char *q, *k, *v, *mask, *pk, *pv, *present_k, *present_v, *out;
    const char *cond, *fill; /* a Where mask: cond (bool) and the fill constant */
    int64_t H, D;
    int form;   /* 4: [B, H, S, D] heads; 3: [B*H, S, D] heads of sequence-first q; 0: not yet */
    int64_t B3; /* form 3: the batch (dim 1 of the sequence-first q) */
    int out_rank;
    double scale;
};

static bool perm_is(const struct kiln_node *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    const int64_t *p;
    size_t n;
    return kiln_opt_attr_ints(t, "perm", &p, &n) && n == 4 && p[0] == a && p[1] == b && p[2] == c &&
           p[3] == d;
}

static bool perm3_is(const struct kiln_node *t, int64_t a, int64_t b, int64_t c)
{
    const int64_t *p;
    size_t n;
    return kiln_opt_attr_ints(t, "perm", &p, &n) && n == 3 && p[0] == a && p[1] == b && p[2] == c;
}

/* Every matched head reshape is of one form (3 or 4). */
static bool set_form(struct attn *a, int form)
{
    if (a->form && a->form != form) return false;
    a->form = form;
    return true;
}

/* The live default-domain node `op` producing `name`, used only once (-1 otherwise). */
static int single_from(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                       const char *op)
{
    int p = kiln_opt_producer(g, name);
    if (p < 0 || kiln_opt_single_consumer(g, name) < 0 || !fu_is(o, g, p, "", op)) return -1;
    return p;
}

static bool push(struct attn *a, int i)
{
    if (i < 0 || a->n >= 24) return false;
    a->nodes[a->n++] = (size_t)i;
    return true;
}

/* `name` = Reshape(x, [.., .., H, D]) used once: sets *x and checks / sets H and D. */
static bool heads_reshape(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                          struct attn *a, const char **x)
{
    int r = single_from(o, g, name, "Reshape");
    if (r < 0 || g->nodes[r].n_in != 2) return false;
    *x = g->nodes[r].inputs[0];
    int rank;
    kiln_dtype dt;
    const struct kiln_dim *d;
    if (!kiln_opt_tensor_type(g, *x, &dt, &rank, &d) || dt != KILN_DTYPE_F32 || rank != 3 ||
        !kiln_dim_known(d[2]))
        return false;
    int64_t h, hd;
    const struct kiln_tensor *s = fu_const(o, g, g->nodes[r].inputs[1]);
    if (s) {
        if (s->dtype != KILN_DTYPE_I64 || kiln_tensor_numel(s) != 4) return false;
        h = ((const int64_t *)s->data)[2];
        hd = ((const int64_t *)s->data)[3];
    } else {
        /* A shape computed at run time (dynamic exports: Concat of Shape dims and constants):
         * the inferred result must be [., S, H, D] with S the input's dim 1, so that the
         * element count leaves dim 0 equal to the input's too. */
        int ro;
        const struct kiln_dim *od;
        if (!kiln_opt_tensor_type(g, g->nodes[r].outputs[0], &dt, &ro, &od) || ro != 4 ||
            !kiln_dim_known(od[2]) || !kiln_dim_known(od[3]) || !kiln_dim_eq(od[1], d[1]))
            return false;
        h = od[2].value;
        hd = od[3].value;
    }
    if (h < 1 || hd < 1 || (a->H && (h != a->H || hd != a->D)) || !set_form(a, 4)) return false;
    a->H = h;
    a->D = hd;
    if (d[2].value != a->H * a->D) return false;
    return push(a, r);
}

/* `name` = Reshape(x, [S, B*H, D]) used once, x float32 [S, B, H*D] with B and H*D known
 * (torch's nn.MultiheadAttention, sequence first): sets *x and checks / sets B, H and D. The
 * shape may be constant or computed; its inferred result decides. */
static bool heads3_reshape(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                           struct attn *a, const char **x)
{
    int r = single_from(o, g, name, "Reshape");
    if (r < 0 || g->nodes[r].n_in != 2) return false;
    *x = g->nodes[r].inputs[0];
    int rank, ro;
    kiln_dtype dt;
    const struct kiln_dim *d, *od;
    if (!kiln_opt_tensor_type(g, *x, &dt, &rank, &d) || dt != KILN_DTYPE_F32 || rank != 3 ||
        !kiln_dim_known(d[1]) || !kiln_dim_known(d[2]) || d[1].value < 1 ||
        !kiln_opt_tensor_type(g, g->nodes[r].outputs[0], &dt, &ro, &od) || ro != 3 ||
        !kiln_dim_known(od[1]) || !kiln_dim_known(od[2]) || !kiln_dim_eq(od[0], d[0]))
        return false;
    int64_t b = d[1].value, n = od[1].value, hd = od[2].value;
    if (n < 1 || hd < 1 || n % b || d[2].value != (n / b) * hd) return false;
    if (a->H && (n / b != a->H || hd != a->D || b != a->B3)) return false;
    if (!set_form(a, 3)) return false;
    a->H = n / b;
    a->D = hd;
    a->B3 = b;
    return push(a, r);
}

/* `name` = Transpose(Reshape(x), 0 2 1 3): the [B, H, S, D] heads of x; or
 * Transpose(Reshape(x), 1 0 2): the [B*H, S, D] heads of a sequence-first x. */
static bool heads(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                  struct attn *a, const char **x)
{
    int t = single_from(o, g, name, "Transpose");
    if (t < 0) return false;
    if (perm3_is(&g->nodes[t], 1, 0, 2))
        return push(a, t) && heads3_reshape(o, g, g->nodes[t].inputs[0], a, x);
    return perm_is(&g->nodes[t], 0, 2, 1, 3) && push(a, t) &&
           heads_reshape(o, g, g->nodes[t].inputs[0], a, x);
}

/* `name` = heads(x), or Concat(past, heads(x), axis 2) whose result may have other uses. */
static bool cached_heads(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                         struct attn *a, const char **x, const char **past, const char **present)
{
    int c = kiln_opt_producer(g, name);
    *past = *present = NULL;
    if (c >= 0 && fu_is(o, g, c, "", "Concat")) {
        const struct kiln_node *cn = &g->nodes[c];
        int64_t axis = kiln_opt_attr_i(cn, "axis", 0);
        if (cn->n_in != 2 || cn->n_out != 1 || (axis != 2 && axis != -2)) return false;
        *past = cn->inputs[0];
        *present = cn->outputs[0];
        return push(a, c) && heads(o, g, cn->inputs[1], a, x) && a->form == 4;
    }
    return heads(o, g, name, a, x);
}

/* Follows a Mul / Div by a constant scalar on `name` (used once); returns the other operand
 * (or name itself when there is none) and multiplies a->scale. */
static const char *unscale(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                           struct attn *a)
{
    int p = kiln_opt_producer(g, name);
    if (p < 0 || kiln_opt_single_consumer(g, name) < 0) return name;
    bool mul = fu_is(o, g, p, "", "Mul"), div = fu_is(o, g, p, "", "Div");
    if (!mul && !div) return name;
    const struct kiln_node *n = &g->nodes[p];
    if (n->n_in != 2) return name;
    for (int k = div ? 1 : 0; k < 2; k++) {
        const struct kiln_tensor *c = fu_const_f32(o, g, n->inputs[k]);
        if (!c || kiln_tensor_numel(c) != 1) continue;
        double v = ((const float *)c->data)[0];
        if (div && v == 0) return name;
        a->scale *= div ? 1.0 / v : v;
        push(a, p);
        return n->inputs[1 - k];
    }
    return name;
}

/* Q K^T: MatMul node mi. */
static bool match_qk(const struct kiln_opt *o, const struct kiln_graph *g, int mi, struct attn *a)
{
    if (mi < 0 || !fu_is(o, g, mi, "", "MatMul") || g->nodes[mi].n_in != 2) return false;
    if (kiln_opt_single_consumer(g, g->nodes[mi].outputs[0]) < 0) return false;
    push(a, mi);
    const struct kiln_node *m = &g->nodes[mi];
    const char *qh = unscale(o, g, m->inputs[0], a);
    if (!heads(o, g, qh, a, &a->q)) return false;
    int t = single_from(o, g, unscale(o, g, m->inputs[1], a), "Transpose");
    if (t < 0 || !push(a, t)) return false;
    const struct kiln_node *tn = &g->nodes[t];
    if (a->form == 3) {
        if (perm3_is(tn, 1, 2, 0)) return heads3_reshape(o, g, tn->inputs[0], a, &a->k);
        return perm3_is(tn, 0, 2, 1) && heads(o, g, tn->inputs[0], a, &a->k);
    }
    if (perm_is(tn, 0, 2, 3, 1)) return heads_reshape(o, g, tn->inputs[0], a, &a->k);
    if (!perm_is(tn, 0, 1, 3, 2)) return false;
    return cached_heads(o, g, tn->inputs[0], a, &a->k, &a->pk, &a->present_k);
}

/* Whether `mask` (dtype dt) added to the scores s can be kiln.Attention's mask: rank 1..4,
 * its last dim the scores' key count. The [B*H, S, T] scores of form 3 take masks of rank
 * <= 3 whose first dim of three is 1 or (batch 1) the head count's, which then broadcast
 * over [B, H, S, T] the same way. */
static bool mask_fits(const struct kiln_graph *g, const struct attn *a, const char *mask,
                      kiln_dtype dt, const char *s)
{
    kiln_dtype dm_t, ds_t;
    int rm, rs;
    const struct kiln_dim *dm, *ds;
    if (!kiln_opt_tensor_type(g, mask, &dm_t, &rm, &dm) || dm_t != dt || rm < 1 || rm > 4 ||
        !kiln_opt_tensor_type(g, s, &ds_t, &rs, &ds) || rs != (a->form == 3 ? 3 : 4) ||
        !kiln_dim_eq(dm[rm - 1], ds[rs - 1]))
        return false;
    if (rm > rs) return false;
    if (a->form == 3) {
        if (rm == 3 && a->B3 != 1 && !(kiln_dim_known(dm[0]) && dm[0].value == 1)) return false;
        for (int i = 0; i < rm; i++) /* the mask must not widen the scores */
            if (!(kiln_dim_known(dm[i]) && dm[i].value == 1) && !kiln_dim_eq(dm[i], ds[rs - rm + i]))
                return false;
    }
    return true;
}

/* The attention ending in Softmax node si. */
static bool match(const struct kiln_opt *o, const struct kiln_graph *g, size_t si, struct attn *a)
{
    const struct kiln_node *sm = &g->nodes[si];
    int64_t axis = kiln_opt_attr_i(sm, "axis", sm->since >= 13 ? -1 : 1);
    if (sm->n_in != 1 || sm->n_out != 1 || (axis != -1 && axis != 3)) return false;
    push(a, (int)si);
    a->scale = 1.0;
    const char *s = sm->inputs[0];
    int ad = kiln_opt_producer(g, s);
    if (ad >= 0 && fu_is(o, g, ad, "", "Add") && kiln_opt_single_consumer(g, s) >= 0) {
        const struct kiln_node *an = &g->nodes[ad];
        size_t save = a->n;
        for (int k = 0; k < 2 && an->n_in == 2; k++) {
            a->n = save;
            a->scale = 1.0;
            push(a, ad);
            const char *sc = unscale(o, g, an->inputs[k], a);
            if (match_qk(o, g, kiln_opt_producer(g, sc), a)) {
                a->mask = an->inputs[1 - k];
                break;
            }
        }
        if (!a->mask || !mask_fits(g, a, a->mask, KILN_DTYPE_F32, s)) return false;
    } else if (ad >= 0 && fu_is(o, g, ad, "", "Where") && kiln_opt_single_consumer(g, s) >= 0) {
        /* Where(cond, scores, fill) with a huge negative constant fill (GPT-2's causal mask):
         * the same as scores + Where(cond, 0, fill), since scores + fill rounds to fill (or
         * is -inf) and Softmax gives those keys 0 either way. The float mask is built in run. */
        const struct kiln_node *wn = &g->nodes[ad];
        if (wn->n_in != 3) return false;
        const struct kiln_tensor *f = fu_const_f32(o, g, wn->inputs[2]);
        if (!f || kiln_tensor_numel(f) != 1 || !(((const float *)f->data)[0] <= -1e30f)) return false;
        push(a, ad);
        const char *sc = unscale(o, g, wn->inputs[1], a);
        if (!match_qk(o, g, kiln_opt_producer(g, sc), a) ||
            !mask_fits(g, a, wn->inputs[0], KILN_DTYPE_BOOL, s))
            return false;
        a->cond = wn->inputs[0];
        a->fill = wn->inputs[2];
    } else {
        const char *sc = unscale(o, g, s, a);
        if (!match_qk(o, g, kiln_opt_producer(g, sc), a)) return false;
    }
    /* probs V, back to [B, S, H*D]. */
    int pv = fu_next(o, g, si);
    if (pv < 0 || !fu_is(o, g, pv, "", "MatMul") || g->nodes[pv].n_in != 2 ||
        strcmp(g->nodes[pv].inputs[0], sm->outputs[0]) || !push(a, pv))
        return false;
    if (!cached_heads(o, g, g->nodes[pv].inputs[1], a, &a->v, &a->pv, &a->present_v)) return false;
    if ((a->pk == NULL) != (a->pv == NULL)) return false;
    int t = fu_next(o, g, (size_t)pv);
    if (t < 0 || !fu_is(o, g, t, "", "Transpose") || !push(a, t) ||
        !(a->form == 3 ? perm3_is(&g->nodes[t], 1, 0, 2) : perm_is(&g->nodes[t], 0, 2, 1, 3)))
        return false;
    int r = fu_next(o, g, (size_t)t);
    if (r < 0 || !fu_is(o, g, r, "", "Reshape") || !push(a, r)) return false;
    a->out = g->nodes[r].outputs[0];
    kiln_dtype dt;
    int ro;
    const struct kiln_dim *d;
    if (!kiln_opt_tensor_type(g, a->out, &dt, &ro, &d) || !kiln_dim_known(d[ro - 1]) ||
        d[ro - 1].value != a->H * a->D)
        return false;
    a->out_rank = ro;
    /* Form 3 gives [S*B, H*D] or [S, B, H*D] back (sequence first). */
    if (a->form == 3)
        return ro == 2 || (ro == 3 && kiln_dim_known(d[1]) && d[1].value == a->B3);
    return ro == 3;
}

/* A new int64 initializer holding v[0..n); *name its name. */
static kiln_status shape_init(struct kiln_opt *o, struct kiln_graph *g, const int64_t *v, size_t n,
                              const char **name)
{
    struct kiln_tensor t;
    int64_t dims[1] = {(int64_t)n};
    KILN_TRY(kiln_opt_new_tensor(o, KILN_DTYPE_I64, 1, dims, &t));
    memcpy(t.data, v, n * sizeof *v);
    return kiln_opt_add_init(o, g, "attention_shape", &t, name);
}

/* Queues `op`(x, extra) -> a new name *y (extra NULL: one input; perm: a Transpose's). */
static kiln_status add_unary(struct kiln_opt *o, struct kiln_graph *g, const char *op, const char *x,
                             const char *extra, const int64_t *perm, const char **y)
{
    const char *ins[2] = {x, extra};
    struct kiln_node *n;
    KILN_TRY(kiln_opt_unique_name(o, "attention_io", y));
    KILN_TRY(kiln_opt_add_node(o, g, op, "", NULL, extra ? 2 : 1, ins, 1, y, &n));
    return perm ? kiln_opt_set_attr_ints(o, n, "perm", perm, 3) : KILN_OK;
}

static const int64_t swap01[3] = {1, 0, 2};

/* Form 3: q, k, v [S, B, H*D] become kiln.Attention's [B, S, H*D]: a Reshape when B is 1
 * (the same elements in the same order), else a Transpose. */
static kiln_status batch_first(struct kiln_opt *o, struct kiln_graph *g, struct attn *a)
{
    const char *shp = NULL;
    if (a->B3 == 1) {
        int64_t v[3] = {1, -1, a->H * a->D};
        KILN_TRY(shape_init(o, g, v, 3, &shp));
    }
    const char **xs[3] = {&a->q, &a->k, &a->v};
    for (int i = 0; i < 3; i++)
        KILN_TRY(add_unary(o, g, shp ? "Reshape" : "Transpose", *xs[i], shp, shp ? NULL : swap01,
                           xs[i]));
    return KILN_OK;
}

/* Form 3: kiln.Attention's [B, S, H*D] output y back to the replaced Reshape's result a->out,
 * [S*B, H*D] or [S, B, H*D]. */
static kiln_status seq_first(struct kiln_opt *o, struct kiln_graph *g, const struct attn *a,
                             const char *y)
{
    int64_t v[3] = {-1, a->B3, a->H * a->D};
    if (a->out_rank == 2) v[1] = a->H * a->D;
    const char *shp, *x = y;
    KILN_TRY(shape_init(o, g, v, (size_t)a->out_rank, &shp));
    if (a->B3 != 1) KILN_TRY(add_unary(o, g, "Transpose", y, NULL, swap01, &x));
    const char *ins[2] = {x, shp};
    return kiln_opt_add_node(o, g, "Reshape", "", NULL, 2, ins, 1, &a->out, NULL);
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "Softmax")) continue;
        struct attn a = {0};
        if (!match(o, g, i, &a)) continue;
        bool dup = false;
        for (size_t x = 0; x < a.n; x++)
            for (size_t y = x + 1; y < a.n; y++) dup = dup || a.nodes[x] == a.nodes[y];
        const char *keep[3] = {a.out, a.present_k, a.present_v};
        if (dup || !fu_closed(g, a.nodes, a.n, keep, 3)) continue;
        if (a.cond) {
            /* mask = Where(cond, 0, fill): float32, the shape of cond */
            struct kiln_tensor zero;
            const char *zname, *mname;
            KILN_TRY(kiln_opt_new_tensor(o, KILN_DTYPE_F32, 0, NULL, &zero));
            KILN_TRY(kiln_opt_add_init(o, g, "attention_mask_zero", &zero, &zname));
            KILN_TRY(kiln_opt_unique_name(o, "attention_mask", &mname));
            const char *wins[3] = {a.cond, zname, a.fill};
            KILN_TRY(kiln_opt_add_node(o, g, "Where", "", NULL, 3, wins, 1, &mname, NULL));
            a.mask = mname;
        }
        const char *out = a.out;
        if (a.form == 3) {
            KILN_TRY(batch_first(o, g, &a));
            KILN_TRY(kiln_opt_unique_name(o, "attention_out", &out));
        }
        const char *ins[6] = {a.q, a.k, a.v, a.mask ? a.mask : "", a.pk ? a.pk : "",
                              a.pv ? a.pv : ""};
        const char *outs[3] = {out, a.present_k ? a.present_k : "", a.present_v ? a.present_v : ""};
        size_t n_in = a.pk ? 6 : a.mask ? 4 : 3, n_out = a.pk ? 3 : 1;
        struct kiln_node *nn;
        KILN_TRY(fu_replace(o, g, a.nodes, a.n, "Attention", "kiln", n_in, ins, n_out, outs, NULL, &nn));
        if (a.form == 3) KILN_TRY(seq_first(o, g, &a, out));
        KILN_TRY(kiln_opt_set_attr_i(o, nn, "num_heads", a.H));
        KILN_TRY(kiln_opt_set_attr_f(o, nn, "scale", (float)a.scale));
        *changed = true;
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_attention = {
    .name = "fuse_attention",
    .level = KILN_OPT_EXTENDED,
    .needs_kiln_ops = true,
    .doc = "multi-head attention (heads reshape, Q K^T, scale, mask, Softmax, V, KV cache) -> kiln.Attention",
    .run = run,
};
