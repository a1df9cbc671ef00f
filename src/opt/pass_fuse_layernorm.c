/* pass_fuse_layernorm.c: layer and RMS normalization written out with reductions become one
 * node. Patterns (each product and sum in either operand order; x^2 as Pow(., 2) or
 * Mul(., .); 1/sqrt as Div by the Sqrt or Mul by its Reciprocal):
 *
 *   LayerNorm  m = ReduceMean(x); d = x - m; v = ReduceMean(d^2); s = Sqrt(v + eps);
 *              y = d / s [* gamma] [+ beta]          (PyTorch before opset 17, Paddle, TF)
 *   TF / Keras m and d as above; a = Reciprocal(Sqrt(ReduceMean(d^2) + eps)) * gamma;
 *              y = x * a + (beta - m * a)        (tf2onnx's rewrite of the same formula)
 *   RMSNorm    v = ReduceMean(x^2); s = Sqrt(v + eps); y = x / s [* gamma]
 *
 * Both ReduceMeans keep dims and reduce the same trailing axes [r-k, r) of x's rank r (axes
 * as attribute before opset 18, as a constant input from 18); eps is a constant scalar;
 * gamma and beta are float32 values whose rank is at most k (they broadcast within the
 * normalized dims only). The result is LayerNormalization (opset 17+) / RMSNormalization
 * (opset 23+) with axis -k and epsilon eps, else kiln.LayerNormalization /
 * kiln.RMSNormalization (needs kiln ops); without gamma a ones initializer of the
 * normalized shape is added. The fused kernels accumulate in double, so outputs move by a
 * few float ulps.
 */
#include <string.h>

#include "opt/fuse_util.h"

struct ln_match {
    size_t nodes[16];
    size_t n;
    int k;        /* normalized trailing dims */
    float eps;
    const char *gamma, *beta, *out;
};

static void add(struct ln_match *m, int i)
{
    if (m->n < sizeof m->nodes / sizeof m->nodes[0]) m->nodes[m->n++] = (size_t)i;
}

/* The trailing-axes count of ReduceMean node i over an input of rank r; 0 when it is not a
 * keepdims ReduceMean over trailing axes. */
static int trailing_axes(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, int r)
{
    const struct kiln_node *n = &g->nodes[i];
    if (kiln_opt_attr_i(n, "keepdims", 1) != 1 || r < 1) return 0;
    int64_t ax[KILN_MAX_RANK];
    size_t na = 0;
    const int64_t *v;
    size_t cnt;
    if (kiln_opt_attr_ints(n, "axes", &v, &cnt)) {
        if (cnt > KILN_MAX_RANK) return 0;
        for (size_t j = 0; j < cnt; j++) ax[na++] = v[j];
    } else if (n->n_in == 2) {
        const struct kiln_tensor *t = fu_const(o, g, n->inputs[1]);
        if (!t || t->dtype != KILN_DTYPE_I64 || kiln_tensor_numel(t) > KILN_MAX_RANK) return 0;
        for (size_t j = 0; j < kiln_tensor_numel(t); j++) ax[na++] = ((const int64_t *)t->data)[j];
    }
    if (na == 0 || na > (size_t)r) return 0;
    bool seen[KILN_MAX_RANK] = {0};
    for (size_t j = 0; j < na; j++) {
        int64_t a = ax[j] < 0 ? ax[j] + r : ax[j];
        if (a < r - (int64_t)na || a >= r || seen[a]) return 0;
        seen[a] = true;
    }
    return (int)na;
}

static int rank_of(const struct kiln_graph *g, const char *name)
{
    kiln_dtype dt;
    int r;
    const struct kiln_dim *d;
    return kiln_opt_tensor_type(g, name, &dt, &r, &d) && dt == KILN_DTYPE_F32 ? r : -1;
}

/* The square of `x` feeding ReduceMean node ri: Pow(x, 2) or Mul(x, x), single use. */
static int square_node(const struct kiln_opt *o, const struct kiln_graph *g, const char *sq,
                       const char **x)
{
    int p = kiln_opt_producer(g, sq);
    if (p < 0 || kiln_opt_single_consumer(g, sq) < 0) return -1;
    const struct kiln_node *n = &g->nodes[p];
    if (n->n_in != 2) return -1;
    if (fu_is(o, g, p, "", "Pow") && fu_const_all(o, g, n->inputs[1], 2, 0)) {
        *x = n->inputs[0];
        return p;
    }
    if (fu_is(o, g, p, "", "Mul") && !strcmp(n->inputs[0], n->inputs[1])) {
        *x = n->inputs[0];
        return p;
    }
    return -1;
}

/* From the variance node vi: its single use Add(var, eps) with a one-element float32
 * constant eps (into m->eps), then Sqrt of that; both go into m. The Sqrt's index, or -1. */
static int eps_sqrt(const struct kiln_opt *o, const struct kiln_graph *g, size_t vi, struct ln_match *m)
{
    int a = fu_next(o, g, vi);
    if (a < 0 || !fu_is(o, g, a, "", "Add")) return -1;
    int k = fu_other(&g->nodes[a], g->nodes[vi].outputs[0]);
    const struct kiln_tensor *eps = k >= 0 ? fu_const_f32(o, g, g->nodes[a].inputs[k]) : NULL;
    if (!eps || kiln_tensor_numel(eps) != 1) return -1;
    m->eps = ((const float *)eps->data)[0];
    add(m, a);
    int s = fu_next(o, g, (size_t)a);
    if (s < 0 || !fu_is(o, g, s, "", "Sqrt")) return -1;
    add(m, s);
    return s;
}

/* From the variance ReduceMean vi (over the square of d, k axes): + eps, Sqrt, d / s; then
 * the optional * gamma and + beta. */
static bool ln_tail(const struct kiln_opt *o, const struct kiln_graph *g, size_t vi, const char *d,
                    bool with_beta, struct ln_match *m)
{
    int s = eps_sqrt(o, g, vi, m);
    if (s < 0) return false;
    int q = fu_next(o, g, (size_t)s);
    const char *nrm;
    if (q >= 0 && fu_is(o, g, q, "", "Div")) {
        const struct kiln_node *dn = &g->nodes[q];
        if (dn->n_in != 2 || strcmp(dn->inputs[0], d) || strcmp(dn->inputs[1], g->nodes[s].outputs[0]))
            return false;
        add(m, q);
        nrm = dn->outputs[0];
    } else if (q >= 0 && fu_is(o, g, q, "", "Reciprocal")) {
        add(m, q);
        int mm = fu_next(o, g, (size_t)q);
        if (mm < 0 || !fu_is(o, g, mm, "", "Mul")) return false;
        int j = fu_other(&g->nodes[mm], g->nodes[q].outputs[0]);
        if (j < 0 || strcmp(g->nodes[mm].inputs[j], d)) return false;
        add(m, mm);
        nrm = g->nodes[mm].outputs[0];
    } else {
        return false;
    }
    m->out = nrm;
    int last = (int)m->nodes[m->n - 1];
    int gm = fu_next(o, g, (size_t)last);
    if (gm >= 0 && fu_is(o, g, gm, "", "Mul")) {
        int j = fu_other(&g->nodes[gm], nrm);
        const char *gam = j >= 0 ? g->nodes[gm].inputs[j] : NULL;
        int gr = gam ? rank_of(g, gam) : -1;
        if (gam && gr >= 0 && gr <= m->k) {
            m->gamma = gam;
            add(m, gm);
            m->out = g->nodes[gm].outputs[0];
            int b = with_beta ? fu_next(o, g, (size_t)gm) : -1;
            if (b >= 0 && fu_is(o, g, b, "", "Add")) {
                j = fu_other(&g->nodes[b], m->out);
                const char *bet = j >= 0 ? g->nodes[b].inputs[j] : NULL;
                int br = bet ? rank_of(g, bet) : -1;
                if (bet && br >= 0 && br <= m->k) {
                    m->beta = bet;
                    add(m, b);
                    m->out = g->nodes[b].outputs[0];
                }
            }
        }
    }
    return true;
}

/* LayerNorm from its first ReduceMean ri. */
static bool match_ln(const struct kiln_opt *o, const struct kiln_graph *g, size_t ri, const char **x,
                     struct ln_match *m)
{
    const struct kiln_node *r0 = &g->nodes[ri];
    *x = r0->inputs[0];
    int r = rank_of(g, *x);
    m->k = trailing_axes(o, g, ri, r);
    if (!m->k) return false;
    add(m, (int)ri);
    int su = fu_next(o, g, ri);
    if (su < 0 || !fu_is(o, g, su, "", "Sub")) return false;
    const struct kiln_node *sn = &g->nodes[su];
    if (sn->n_in != 2 || strcmp(sn->inputs[0], *x) || strcmp(sn->inputs[1], r0->outputs[0])) return false;
    add(m, su);
    const char *d = sn->outputs[0];
    /* d's uses: the square (-> variance ReduceMean) and the normalizing Div / Mul. */
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "ReduceMean")) continue;
        const char *sx;
        int sq = square_node(o, g, g->nodes[i].inputs[0], &sx);
        if (sq < 0 || strcmp(sx, d) || trailing_axes(o, g, i, r) != m->k) continue;
        add(m, sq);
        add(m, (int)i);
        return ln_tail(o, g, i, d, true, m);
    }
    return false;
}

/* The node among g's live nodes of op `op` whose two inputs are {a, b} in any order; -1. */
static int find_binary(const struct kiln_opt *o, const struct kiln_graph *g, const char *op,
                       const char *a, const char *b, bool ordered)
{
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, op)) continue;
        const struct kiln_node *n = &g->nodes[i];
        if (n->n_in != 2 || n->n_out != 1) continue;
        if (!strcmp(n->inputs[0], a) && !strcmp(n->inputs[1], b)) return (int)i;
        if (!ordered && !strcmp(n->inputs[0], b) && !strcmp(n->inputs[1], a)) return (int)i;
    }
    return -1;
}

/* The TF / Keras LayerNorm from its first ReduceMean ri. */
static bool match_ln_tf(const struct kiln_opt *o, const struct kiln_graph *g, size_t ri,
                        const char **x, struct ln_match *m)
{
    const struct kiln_node *r0 = &g->nodes[ri];
    *x = r0->inputs[0];
    int r = rank_of(g, *x);
    m->k = trailing_axes(o, g, ri, r);
    if (!m->k) return false;
    const char *mean = r0->outputs[0];
    int su = find_binary(o, g, "Sub", *x, mean, true);
    if (su < 0) return false;
    add(m, (int)ri);
    add(m, su);
    const char *d = g->nodes[su].outputs[0];
    int vi = -1;
    for (size_t i = 0; i < g->n_nodes && vi < 0; i++) {
        const char *sx;
        if (!kiln_opt_is_op(o, g, i, "ReduceMean")) continue;
        int sq = square_node(o, g, g->nodes[i].inputs[0], &sx);
        if (sq < 0 || strcmp(sx, d) || trailing_axes(o, g, i, r) != m->k) continue;
        add(m, sq);
        add(m, (int)i);
        vi = (int)i;
    }
    if (vi < 0) return false;
    int s = eps_sqrt(o, g, (size_t)vi, m);
    if (s < 0) return false;
    int rc = fu_next(o, g, (size_t)s);
    if (rc < 0 || !fu_is(o, g, rc, "", "Reciprocal")) return false;
    add(m, rc);
    int gm = fu_next(o, g, (size_t)rc);
    if (gm < 0 || !fu_is(o, g, gm, "", "Mul")) return false;
    int j = fu_other(&g->nodes[gm], g->nodes[rc].outputs[0]);
    if (j < 0 || rank_of(g, g->nodes[gm].inputs[j]) < 0 || rank_of(g, g->nodes[gm].inputs[j]) > m->k)
        return false;
    m->gamma = g->nodes[gm].inputs[j];
    add(m, gm);
    const char *sc = g->nodes[gm].outputs[0];
    int xa = find_binary(o, g, "Mul", *x, sc, false), ma = find_binary(o, g, "Mul", mean, sc, false);
    if (xa < 0 || ma < 0) return false;
    add(m, xa);
    add(m, ma);
    int sb = fu_next(o, g, (size_t)ma);
    if (sb < 0 || !fu_is(o, g, sb, "", "Sub") || g->nodes[sb].n_in != 2 ||
        strcmp(g->nodes[sb].inputs[1], g->nodes[ma].outputs[0]))
        return false;
    m->beta = g->nodes[sb].inputs[0];
    if (rank_of(g, m->beta) < 0 || rank_of(g, m->beta) > m->k) return false;
    add(m, sb);
    int y = find_binary(o, g, "Add", g->nodes[xa].outputs[0], g->nodes[sb].outputs[0], false);
    if (y < 0) return false;
    add(m, y);
    m->out = g->nodes[y].outputs[0];
    return true;
}

/* RMSNorm from its ReduceMean ri (over x^2). */
static bool match_rms(const struct kiln_opt *o, const struct kiln_graph *g, size_t ri, const char **x,
                      struct ln_match *m)
{
    int sq = square_node(o, g, g->nodes[ri].inputs[0], x);
    if (sq < 0) return false;
    /* Not the variance of a LayerNorm: x = Sub(y, ReduceMean(y)). */
    int p = kiln_opt_producer(g, *x);
    if (p >= 0 && fu_is(o, g, p, "", "Sub")) {
        int q = kiln_opt_producer(g, g->nodes[p].inputs[1]);
        if (q >= 0 && fu_is(o, g, q, "", "ReduceMean")) return false;
    }
    m->k = trailing_axes(o, g, ri, rank_of(g, *x));
    if (!m->k) return false;
    add(m, sq);
    add(m, (int)ri);
    return ln_tail(o, g, ri, *x, false, m);
}

/* A ones initializer of x's last k dims (static); NULL name when they are not known. */
static kiln_status ones(struct kiln_opt *o, struct kiln_graph *g, const char *x, int k,
                        const char **name)
{
    int r;
    int64_t d[KILN_MAX_RANK];
    *name = NULL;
    if (!kiln_opt_static_shape(g, x, &r, d) || r < k) return KILN_OK;
    size_t n = 1;
    for (int i = r - k; i < r; i++) n *= (size_t)d[i];
    float *v = kiln_malloc((n ? n : 1) * sizeof *v);
    if (!v) return fu_nomem(o);
    for (size_t i = 0; i < n; i++) v[i] = 1.0f;
    kiln_status st = fu_add_f32(o, g, "ones", k, d + r - k, v, name);
    kiln_free(v);
    return st;
}

static kiln_status run(struct kiln_opt *o, struct kiln_graph *g, bool *changed)
{
    int64_t opset = fu_opset(o);
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!kiln_opt_is_op(o, g, i, "ReduceMean")) continue;
        for (int form = 0; form < 3; form++) {
            struct ln_match m = {0};
            const char *x;
            bool rms = form == 2;
            if (!(form == 0   ? match_ln(o, g, i, &x, &m)
                  : form == 1 ? match_ln_tf(o, g, i, &x, &m)
                              : match_rms(o, g, i, &x, &m)))
                continue;
            bool std_op = opset >= (rms ? 23 : 17);
            if (!std_op && !kiln_opt_keep_fused(o)) break;
            const char *keep[1] = {m.out};
            if (!fu_closed(g, m.nodes, m.n, keep, 1)) continue;
            const char *gamma = m.gamma;
            if (!gamma) KILN_TRY(ones(o, g, x, m.k, &gamma));
            if (!gamma) break;
            const char *ins[3] = {x, gamma, m.beta ? m.beta : ""}, *outs[1] = {m.out};
            struct kiln_node *nn;
            KILN_TRY(fu_replace(o, g, m.nodes, m.n, rms ? "RMSNormalization" : "LayerNormalization",
                                std_op ? "" : "kiln", m.beta ? 3 : 2, ins, 1, outs, NULL, &nn));
            KILN_TRY(kiln_opt_set_attr_i(o, nn, "axis", -m.k));
            KILN_TRY(kiln_opt_set_attr_f(o, nn, "epsilon", m.eps));
            *changed = true;
            break;
        }
    }
    return KILN_OK;
}

const struct kiln_pass kiln_pass_fuse_layernorm = {
    .name = "fuse_layernorm",
    .level = KILN_OPT_EXTENDED,
    .doc = "decomposed LayerNorm / RMSNorm -> LayerNormalization / RMSNormalization (or kiln's)",
    .run = run,
};
