/* plan.c: the memory planner (plan.h). */
#include <stdlib.h>
#include <string.h>

#include "exec/engine.h"
#include "infer/infer.h"

static bool is_graph_output(const struct kiln_graph *g, const char *name)
{
    for (size_t o = 0; o < g->n_outputs; o++)
        if (strcmp(g->outputs[o].name, name) == 0) return true;
    return false;
}

/* A bare identifier (a symbol an input can bind), not an expression. */
static bool is_symbol(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9')) return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* rank dims in a, their symbolic texts too; NULL when out of memory. */
static struct kiln_dim *copy_dims(struct kiln_arena *a, const struct kiln_dim *dims, int rank)
{
    struct kiln_dim *c = kiln_arena_array(a, (size_t)rank + 1, sizeof *c);
    for (int d = 0; c && d < rank; d++) {
        c[d] = dims[d];
        if (dims[d].param && !(c[d].param = kiln_arena_strndup(a, dims[d].param, strlen(dims[d].param))))
            return NULL;
    }
    return c;
}

kiln_status kiln_plan_info_init(struct kiln_plan_info *pi, struct kiln_arena *a, const struct kiln_egraph *eg,
                                kiln_err *err)
{
    const struct kiln_graph *g = eg->g;
    size_t nv = g->n_values, nn = g->n_nodes;
    memset(pi, 0, sizeof *pi);
    pi->n_values = nv;
    pi->first = kiln_arena_array(a, nv + 1, sizeof *pi->first);
    pi->last = kiln_arena_array(a, nv + 1, sizeof *pi->last);
    pi->plannable = kiln_arena_array(a, nv + 1, sizeof *pi->plannable);
    pi->alias = kiln_arena_array(a, nv + 1, sizeof *pi->alias);
    pi->alias_pos = kiln_arena_array(a, nv + 1, sizeof *pi->alias_pos);
    pi->dtype = kiln_arena_array(a, nv + 1, sizeof *pi->dtype);
    pi->rank = kiln_arena_array(a, nv + 1, sizeof *pi->rank);
    pi->dims = kiln_arena_array(a, nv + 1, sizeof *pi->dims);
    int *pos = kiln_calloc(nn + 1, sizeof *pos);
    size_t cap_occ = 0;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_vtype *t = kiln_infer_lookup(g, g->inputs[i].name);
        if (t && t->type.kind == KILN_TYPE_TENSOR && t->type.rank > 0) cap_occ += (size_t)t->type.rank;
    }
    pi->sym = kiln_arena_array(a, cap_occ + 1, sizeof *pi->sym);
    pi->occ_sym = kiln_arena_array(a, cap_occ + 1, sizeof *pi->occ_sym);
    pi->occ_input = kiln_arena_array(a, cap_occ + 1, sizeof *pi->occ_input);
    pi->occ_dim = kiln_arena_array(a, cap_occ + 1, sizeof *pi->occ_dim);
    if (!pi->first || !pi->last || !pi->plannable || !pi->alias || !pi->alias_pos || !pi->dtype || !pi->rank || !pi->dims ||
        !pos || !pi->sym || !pi->occ_sym || !pi->occ_input || !pi->occ_dim)
        goto nomem;
    for (size_t oi = 0; oi < nn; oi++) pos[g->order[oi]] = (int)oi;
    for (size_t v = 0; v < nv; v++) {
        pi->first[v] = pi->last[v] = -1;
        pi->alias[v] = pi->alias_pos[v] = -1;
        pi->plannable[v] = false;
    }
    for (size_t v = 0; v < nv; v++)
        if (g->values[v].def == KILN_DEF_NODE && g->values[v].producer >= 0)
            pi->first[v] = pi->last[v] = pos[g->values[v].producer];
    for (size_t ni = 0; ni < nn; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        for (size_t j = 0; j < n->n_in + n->n_implicit; j++) {
            int id = j < n->n_in ? n->in_ids[j] : n->implicit_ids[j - n->n_in];
            if (id >= 0 && pos[ni] > pi->last[id]) pi->last[id] = pos[ni];
        }
    }
    for (size_t v = 0; v < nv; v++) {
        const struct kiln_graph_value *gv = &g->values[v];
        if (gv->def != KILN_DEF_NODE || gv->producer < 0 || is_graph_output(g, gv->name)) continue;
        const struct kiln_vtype *t = kiln_infer_value(g, (int)v);
        if (!t || t->type.kind != KILN_TYPE_TENSOR || t->type.rank < 0 || t->type.rank > KILN_MAX_RANK ||
            t->type.elem == KILN_DTYPE_STRING || t->type.elem == KILN_DTYPE_UNDEFINED ||
            !kiln_dtype_size(t->type.elem))
            continue;
        bool ok = true;
        for (int d = 0; d < t->type.rank && ok; d++) ok = kiln_dim_defined(t->type.dims[d]);
        if (!ok) continue;
        /* A copy: inference results live in the model's inference arena, which the next
         * inference frees, and a session's model may be inferred again (kiln_model_check)
         * while the session plans new shapes with these. */
        struct kiln_dim *dims = copy_dims(a, t->type.dims, t->type.rank);
        if (!dims) goto nomem;
        pi->plannable[v] = true;
        pi->dtype[v] = t->type.elem;
        pi->rank[v] = t->type.rank;
        pi->dims[v] = dims;
    }
    /* In place: output 0 over input 0 (or the input the kernel's flag names) when the kernel
     * allows it and that input dies here. */
    for (size_t ni = 0; ni < nn; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        if (!(eg->nodes[ni].op && (eg->nodes[ni].op->flags & KILN_OP_INPLACE))) continue;
        size_t ip = KILN_OP_INPLACE_INPUT(eg->nodes[ni].op->flags);
        if (n->n_in <= ip || n->n_out < 1 || n->in_ids[ip] < 0 || n->out_ids[0] < 0) continue;
        int a0 = n->in_ids[ip], v = n->out_ids[0];
        if (!pi->plannable[a0] || !pi->plannable[v] || pi->last[a0] != pos[ni]) continue;
        bool twice = false;
        for (size_t j = 0; j < n->n_in; j++) twice |= j != ip && n->in_ids[j] == a0;
        if (!twice) pi->alias[v] = a0, pi->alias_pos[v] = (int)ip;
    }
    kiln_free(pos);
    /* Symbols of the graph inputs (the inferred types carry their canonical names). */
    for (size_t i = 0; i < g->n_inputs; i++) {
        const struct kiln_vtype *t = kiln_infer_lookup(g, g->inputs[i].name);
        if (!t || t->type.kind != KILN_TYPE_TENSOR || t->type.rank <= 0) continue;
        for (int d = 0; d < t->type.rank; d++) {
            const char *p = t->type.dims[d].value < 0 ? t->type.dims[d].param : NULL;
            if (!is_symbol(p)) continue;
            size_t s = 0;
            while (s < pi->n_syms && strcmp(pi->sym[s], p) != 0) s++;
            if (s == pi->n_syms && !(pi->sym[pi->n_syms++] = kiln_arena_strndup(a, p, strlen(p))))
                return kiln_err_set(err, KILN_E_NOMEM, "out of memory planning memory");
            pi->occ_sym[pi->n_occ] = (int)s;
            pi->occ_input[pi->n_occ] = (int)i;
            pi->occ_dim[pi->n_occ] = d;
            pi->n_occ++;
        }
    }
    return KILN_OK;
nomem:
    kiln_free(pos);
    return kiln_err_set(err, KILN_E_NOMEM, "out of memory planning memory");
}

bool kiln_plan_bind_shapes(const struct kiln_plan_info *pi, const int *rank,
                           const int64_t (*dims)[KILN_MAX_RANK], int64_t *sym_values)
{
    for (size_t s = 0; s < pi->n_syms; s++) sym_values[s] = -1;
    for (size_t o = 0; o < pi->n_occ; o++) {
        int i = pi->occ_input[o], d = pi->occ_dim[o], s = pi->occ_sym[o];
        if (rank[i] <= d) return false;
        int64_t v = dims[i][d];
        if (v < 0 || (sym_values[s] >= 0 && sym_values[s] != v)) return false;
        sym_values[s] = v;
    }
    return true;
}

bool kiln_plan_bind(const struct kiln_plan_info *pi, const struct kiln_graph *g,
                    const struct kiln_value *const *bound, int64_t *sym_values)
{
    for (size_t s = 0; s < pi->n_syms; s++) sym_values[s] = -1;
    for (size_t o = 0; o < pi->n_occ; o++) {
        int i = pi->occ_input[o], d = pi->occ_dim[o], s = pi->occ_sym[o];
        const struct kiln_value *v = (size_t)i < g->n_inputs ? bound[i] : NULL;
        if (!v || v->kind != KILN_VALUE_TENSOR || v->t.rank <= d) return false;
        int64_t x = v->t.dims[d];
        if (sym_values[s] >= 0 && sym_values[s] != x) return false;
        sym_values[s] = x;
    }
    return true;
}

struct lookup_ctx {
    const struct kiln_plan_info *pi;
    const int64_t *vals;
};

static bool lookup_sym(void *user, const char *name, size_t len, int64_t *value)
{
    const struct lookup_ctx *lc = user;
    for (size_t s = 0; s < lc->pi->n_syms; s++)
        if (strlen(lc->pi->sym[s]) == len && memcmp(lc->pi->sym[s], name, len) == 0 && lc->vals[s] >= 0) {
            *value = lc->vals[s];
            return true;
        }
    return false;
}

struct block {
    size_t size, off;
    int first, last;
    bool placed;
};

static int find_root(int *parent, int v)
{
    while (parent[v] != v) v = parent[v] = parent[parent[v]];
    return v;
}

struct key {
    size_t size;
    int first, id;
};

static int cmp_key_size(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    if (x->first != y->first) return (x->first > y->first) - (x->first < y->first);
    return (x->id > y->id) - (x->id < y->id);
}

/* By execution position (stored in size), then id. */
static int cmp_key_first(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->size != y->size) return (x->size > y->size) - (x->size < y->size);
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_by_off(const void *a, const void *b)
{
    const struct block *x = *(const struct block *const *)a, *y = *(const struct block *const *)b;
    return (x->off > y->off) - (x->off < y->off);
}

void kiln_plan_free(struct kiln_plan *p)
{
    kiln_free(p->off);
    kiln_free(p->cap);
    kiln_free(p->alias);
    memset(p, 0, sizeof *p);
}

kiln_status kiln_plan_make(const struct kiln_plan_info *pi, const int64_t *sym_values, struct kiln_plan *out,
                           kiln_err *err)
{
    size_t nv = pi->n_values;
    memset(out, 0, sizeof *out);
    out->n_values = nv;
    out->off = kiln_calloc(nv + 1, sizeof *out->off);
    out->cap = kiln_calloc(nv + 1, sizeof *out->cap);
    out->alias = kiln_calloc(nv + 1, sizeof *out->alias);
    int *parent = kiln_calloc(nv + 1, sizeof *parent);
    struct block *blk = kiln_calloc(nv + 1, sizeof *blk);
    int *ids = kiln_calloc(nv + 1, sizeof *ids);
    const struct block **live = kiln_calloc(nv + 1, sizeof *live);
    struct key *keys = kiln_calloc(nv + 1, sizeof *keys);
    kiln_status st = KILN_OK;
    if (!out->off || !out->cap || !out->alias || !parent || !blk || !ids || !live || !keys) {
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory planning memory");
        goto done;
    }
    struct lookup_ctx lc = {pi, sym_values};
    /* Sizes */
    for (size_t v = 0; v < nv; v++) {
        parent[v] = (int)v;
        out->alias[v] = -1;
        if (!pi->plannable[v]) continue;
        size_t bytes = kiln_dtype_size(pi->dtype[v]);
        bool ok = true;
        for (int d = 0; d < pi->rank[v] && ok; d++) {
            struct kiln_dim dm = pi->dims[v][d];
            int64_t x = dm.value;
            if (x < 0) ok = kiln_sym_eval(dm.param, lookup_sym, &lc, &x) && x >= 0;
            ok = ok && kiln_mul_size(bytes, (size_t)x, &bytes);
        }
        if (!ok || bytes == 0 || bytes > ((size_t)1 << 46)) continue;
        out->cap[v] = bytes;
        out->sum_bytes += bytes;
        out->n_planned++;
    }
    /* Blocks: in-place outputs join their input's block (same size only). Values are
     * visited in execution order, so chains join the first block. */
    size_t nb = 0, nplan = 0;
    for (size_t v = 0; v < nv; v++)
        if (out->cap[v]) ids[nplan++] = (int)v;
    for (size_t i = 0; i < nplan; i++) keys[i] = (struct key){.size = (size_t)pi->first[ids[i]], .first = 0, .id = ids[i]};
    qsort(keys, nplan, sizeof *keys, cmp_key_first);
    for (size_t i = 0; i < nplan; i++) {
        int v = keys[i].id;
        int a = pi->alias[v];
        /* Same bytes and same element size: the same element count, so element i of the
         * output overwrites element i of the input only. */
        if (a >= 0 && out->cap[a] == out->cap[v] &&
            kiln_dtype_size(pi->dtype[a]) == kiln_dtype_size(pi->dtype[v])) {
            int r = find_root(parent, a);
            parent[v] = r;
            if (pi->last[v] > blk[r].last) blk[r].last = pi->last[v];
            out->alias[v] = pi->alias_pos[v];
        } else {
            size_t sz = (out->cap[v] + KILN_PLAN_ALIGN - 1) & ~(size_t)(KILN_PLAN_ALIGN - 1);
            blk[v] = (struct block){.size = sz, .first = pi->first[v], .last = pi->last[v]};
            ids[nb++] = v;
        }
    }
    /* Greedy by size, best fit. */
    for (size_t i = 0; i < nb; i++)
        keys[i] = (struct key){.size = blk[ids[i]].size, .first = blk[ids[i]].first, .id = ids[i]};
    qsort(keys, nb, sizeof *keys, cmp_key_size);
    for (size_t i = 0; i < nb; i++) {
        struct block *b = &blk[keys[i].id];
        size_t n_live = 0;
        for (size_t j = 0; j < i; j++) {
            const struct block *o = &blk[keys[j].id];
            if (o->first <= b->last && b->first <= o->last) live[n_live++] = o;
        }
        qsort(live, n_live, sizeof *live, cmp_by_off);
        size_t best = SIZE_MAX, best_gap = SIZE_MAX, end = 0;
        for (size_t j = 0; j < n_live; j++) {
            if (live[j]->off > end) {
                size_t gap = live[j]->off - end;
                if (gap >= b->size && gap < best_gap) best_gap = gap, best = end;
            }
            if (live[j]->off + live[j]->size > end) end = live[j]->off + live[j]->size;
        }
        b->off = best != SIZE_MAX ? best : end;
        b->placed = true;
        if (b->off + b->size > out->arena_bytes) out->arena_bytes = b->off + b->size;
    }
    for (size_t v = 0; v < nv; v++)
        if (out->cap[v]) out->off[v] = blk[find_root(parent, (int)v)].off;
done:
    kiln_free(parent);
    kiln_free(blk);
    kiln_free(ids);
    kiln_free(live);
    kiln_free(keys);
    if (st) kiln_plan_free(out);
    return st;
}
