/* optimize.c: kiln_model_optimize, the pass manager (docs/optimizer.md).
 *
 * Picks the passes (the level's, or the `passes` list), then runs them in pass_table.def
 * order over the main graph and every subgraph, committing each pass's edits, and repeats
 * the list until a round changes nothing (at most KILN_OPT_MAX_ROUNDS rounds); analysis passes
 * (the layout marks) then run once over the final graphs. Reports go to
 * the options' callback: the passes' own notes, one summary line per pass that changed
 * something (node count and op histogram difference), and a final summary with the whole
 * histograms.
 *
 * All or nothing: before the first pass the manager snapshots every graph (the graph struct,
 * node structs, their input/output/attribute arrays, initializers, inputs, outputs,
 * value_info) and the model's opsets and link results; any failure writes the snapshot back,
 * so the model is as it was. Memory the failed run took from the model's arena stays there
 * until the model is freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opt/opt_priv.h"

#define KILN_PASS(name) extern const struct kiln_pass kiln_pass_##name;
#include "opt/pass_table.def"
#undef KILN_PASS

static const struct kiln_pass *const PASSES[] = {
#define KILN_PASS(name) &kiln_pass_##name,
#include "opt/pass_table.def"
#undef KILN_PASS
};
#define N_PASSES (sizeof PASSES / sizeof PASSES[0])

const struct kiln_pass *const *kiln_opt_passes(size_t *n)
{
    *n = N_PASSES;
    return PASSES;
}

const struct kiln_pass *kiln_opt_find_pass(const char *name)
{
    for (size_t i = 0; i < N_PASSES; i++)
        if (strcmp(PASSES[i]->name, name) == 0) return PASSES[i];
    return NULL;
}

/* ------------------------------------------------------------------ snapshot */

struct snap_graph {
    struct kiln_graph *g;
    struct kiln_graph saved;
    struct kiln_node *nodes; /* n_nodes structs */
    const char **names;      /* every node's inputs then outputs */
    struct kiln_attr *attrs; /* every node's attributes */
    struct kiln_initializer *inits;
    struct kiln_value_info *vinfo; /* inputs, outputs, value_info */
};

struct snapshot {
    struct snap_graph *gs;
    size_t n, cap;
    struct kiln_opset *opsets;
    size_t n_opsets;
    size_t n_link_problems, n_link_errors;
    const char **link_problems;
};

static void snapshot_free(struct snapshot *s)
{
    for (size_t i = 0; i < s->n; i++) {
        kiln_free(s->gs[i].nodes);
        kiln_free(s->gs[i].names);
        kiln_free(s->gs[i].attrs);
        kiln_free(s->gs[i].inits);
        kiln_free(s->gs[i].vinfo);
    }
    kiln_free(s->gs);
    kiln_free(s->opsets);
    *s = (struct snapshot){0};
}

static void *dup_array(const void *p, size_t count, size_t size, bool *ok)
{
    size_t bytes;
    if (!kiln_mul_size(count, size, &bytes)) {
        *ok = false;
        return NULL;
    }
    void *d = kiln_malloc(bytes ? bytes : 1);
    if (!d) {
        *ok = false;
        return NULL;
    }
    if (bytes) memcpy(d, p, bytes);
    return d;
}

static bool snapshot_graph(struct snapshot *s, struct kiln_graph *g)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct snap_graph *gs = kiln_realloc(s->gs, cap * sizeof *gs);
        if (!gs) return false;
        s->gs = gs;
        s->cap = cap;
    }
    struct snap_graph *sg = &s->gs[s->n++];
    *sg = (struct snap_graph){.g = g, .saved = *g};
    bool ok = true;
    size_t n_names = 0, n_attrs = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        n_names += g->nodes[i].n_in + g->nodes[i].n_out;
        n_attrs += g->nodes[i].n_attr;
    }
    sg->nodes = dup_array(g->nodes, g->n_nodes, sizeof *g->nodes, &ok);
    sg->names = kiln_malloc((n_names + 1) * sizeof *sg->names);
    sg->attrs = kiln_malloc((n_attrs + 1) * sizeof *sg->attrs);
    sg->inits = dup_array(g->inits, g->n_inits, sizeof *g->inits, &ok);
    sg->vinfo = kiln_malloc((g->n_inputs + g->n_outputs + g->n_value_info + 1) * sizeof *sg->vinfo);
    if (!ok || !sg->names || !sg->attrs || !sg->vinfo) return false;
    size_t pn = 0, pa = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        if (n->n_in) memcpy(sg->names + pn, n->inputs, n->n_in * sizeof *sg->names);
        pn += n->n_in;
        if (n->n_out) memcpy(sg->names + pn, n->outputs, n->n_out * sizeof *sg->names);
        pn += n->n_out;
        if (n->n_attr) memcpy(sg->attrs + pa, n->attrs, n->n_attr * sizeof *sg->attrs);
        pa += n->n_attr;
    }
    if (g->n_inputs) memcpy(sg->vinfo, g->inputs, g->n_inputs * sizeof *sg->vinfo);
    if (g->n_outputs) memcpy(sg->vinfo + g->n_inputs, g->outputs, g->n_outputs * sizeof *sg->vinfo);
    if (g->n_value_info)
        memcpy(sg->vinfo + g->n_inputs + g->n_outputs, g->value_info, g->n_value_info * sizeof *sg->vinfo);
    /* Subgraphs (their struct pointers live in the attribute arrays saved above). */
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g && !snapshot_graph(s, a->g)) return false;
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j] && !snapshot_graph(s, a->graphs[j])) return false;
        }
    }
    return true;
}

static bool snapshot_take(struct snapshot *s, struct kiln_model *m)
{
    *s = (struct snapshot){0};
    bool ok = true;
    s->opsets = dup_array(m->opsets, m->n_opsets, sizeof *m->opsets, &ok);
    s->n_opsets = m->n_opsets;
    s->n_link_problems = m->n_link_problems;
    s->link_problems = m->link_problems;
    s->n_link_errors = m->n_link_errors;
    return ok && snapshot_graph(s, m->graph);
}

static void snapshot_restore(struct snapshot *s, struct kiln_model *m)
{
    for (size_t i = 0; i < s->n; i++) {
        struct snap_graph *sg = &s->gs[i];
        struct kiln_graph *g = sg->g;
        *g = sg->saved;
        if (g->n_nodes) memcpy(g->nodes, sg->nodes, g->n_nodes * sizeof *g->nodes);
        size_t pn = 0, pa = 0;
        for (size_t j = 0; j < g->n_nodes; j++) {
            struct kiln_node *n = &g->nodes[j];
            if (n->n_in) memcpy((void *)n->inputs, sg->names + pn, n->n_in * sizeof *sg->names);
            pn += n->n_in;
            if (n->n_out) memcpy((void *)n->outputs, sg->names + pn, n->n_out * sizeof *sg->names);
            pn += n->n_out;
            if (n->n_attr) memcpy(n->attrs, sg->attrs + pa, n->n_attr * sizeof *sg->attrs);
            pa += n->n_attr;
        }
        if (g->n_inits) memcpy(g->inits, sg->inits, g->n_inits * sizeof *g->inits);
        if (g->n_inputs) memcpy(g->inputs, sg->vinfo, g->n_inputs * sizeof *sg->vinfo);
        if (g->n_outputs) memcpy(g->outputs, sg->vinfo + g->n_inputs, g->n_outputs * sizeof *sg->vinfo);
        if (g->n_value_info)
            memcpy(g->value_info, sg->vinfo + g->n_inputs + g->n_outputs,
                   g->n_value_info * sizeof *sg->vinfo);
    }
    /* The opsets array may have been replaced by a new one: point back at a copy. */
    if (m->n_opsets != s->n_opsets ||
        (s->n_opsets && memcmp(m->opsets, s->opsets, s->n_opsets * sizeof *s->opsets))) {
        struct kiln_opset *ops = kiln_arena_array(&m->arena, s->n_opsets + 1, sizeof *ops);
        if (ops) { /* on NOMEM the larger list stays: it only adds imports */
            if (s->n_opsets) memcpy(ops, s->opsets, s->n_opsets * sizeof *ops);
            m->opsets = ops;
            m->n_opsets = s->n_opsets;
        }
    }
    m->n_link_problems = s->n_link_problems;
    m->link_problems = s->link_problems;
    m->n_link_errors = s->n_link_errors;
}

/* ------------------------------------------------------------------ graphs and histograms */

struct graph_list {
    struct kiln_graph **g;
    size_t n, cap;
};

static bool list_graphs(struct graph_list *l, struct kiln_graph *g)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct kiln_graph **p = kiln_realloc(l->g, cap * sizeof *p);
        if (!p) return false;
        l->g = p;
        l->cap = cap;
    }
    l->g[l->n++] = g;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g && !list_graphs(l, a->g)) return false;
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j] && !list_graphs(l, a->graphs[j])) return false;
        }
    }
    return true;
}

struct hist_entry {
    const char *domain, *op;
    size_t count;
};

struct hist {
    struct hist_entry *e;
    size_t n, nodes, inits;
};

static int cmp_node_op(const void *a, const void *b)
{
    const struct kiln_node *x = *(const struct kiln_node *const *)a;
    const struct kiln_node *y = *(const struct kiln_node *const *)b;
    int c = strcmp(x->domain ? x->domain : "", y->domain ? y->domain : "");
    return c ? c : strcmp(x->op_type ? x->op_type : "", y->op_type ? y->op_type : "");
}

static void hist_free(struct hist *h)
{
    kiln_free(h->e);
    *h = (struct hist){0};
}

/* Op histogram of every graph of the model (sorted by domain, op). false on NOMEM. */
static bool hist_take(struct kiln_model *m, struct hist *h)
{
    *h = (struct hist){0};
    struct graph_list l = {0};
    if (!list_graphs(&l, m->graph)) {
        kiln_free(l.g);
        return false;
    }
    size_t total = 0;
    for (size_t i = 0; i < l.n; i++) {
        total += l.g[i]->n_nodes;
        h->inits += l.g[i]->n_inits;
    }
    const struct kiln_node **all = kiln_malloc((total + 1) * sizeof *all);
    h->e = kiln_malloc((total + 1) * sizeof *h->e);
    if (!all || !h->e) {
        kiln_free(all);
        kiln_free(l.g);
        hist_free(h);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < l.n; i++)
        for (size_t j = 0; j < l.g[i]->n_nodes; j++) all[k++] = &l.g[i]->nodes[j];
    qsort(all, total, sizeof *all, cmp_node_op);
    for (size_t i = 0; i < total; i++) {
        const char *d = all[i]->domain ? all[i]->domain : "";
        const char *op = all[i]->op_type ? all[i]->op_type : "";
        if (h->n && strcmp(h->e[h->n - 1].domain, d) == 0 && strcmp(h->e[h->n - 1].op, op) == 0)
            h->e[h->n - 1].count++;
        else
            h->e[h->n++] = (struct hist_entry){d, op, 1};
    }
    h->nodes = total;
    kiln_free(all);
    kiln_free(l.g);
    return true;
}

static int cmp_entry(const struct hist_entry *a, const struct hist_entry *b)
{
    int c = strcmp(a->domain, b->domain);
    return c ? c : strcmp(a->op, b->op);
}

static void put_str(char *buf, size_t size, size_t *len, const char *fmt, ...) KILN_PRINTF(4, 5);
static void put_str(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
    if (*len >= size) {
        *len = size;
        if (size > 4) memcpy(buf + size - 4, "...", 4);
    }
}

static void put_op(char *buf, size_t size, size_t *len, const struct hist_entry *e)
{
    if (e->domain[0]) put_str(buf, size, len, "%s.", e->domain);
    put_str(buf, size, len, "%s", e->op);
}

/* "Conv 3 -> 2, BatchNormalization 1 -> 0": entries whose count differs. */
static void hist_diff(const struct hist *a, const struct hist *b, char *buf, size_t size)
{
    size_t len = 0, i = 0, j = 0;
    bool first = true;
    buf[0] = 0;
    while (i < a->n || j < b->n) {
        int c = i >= a->n ? 1 : j >= b->n ? -1 : cmp_entry(&a->e[i], &b->e[j]);
        size_t ca = c <= 0 ? a->e[i].count : 0, cb = c >= 0 ? b->e[j].count : 0;
        const struct hist_entry *e = c <= 0 ? &a->e[i] : &b->e[j];
        if (ca != cb) {
            put_str(buf, size, &len, "%s", first ? "" : ", ");
            put_op(buf, size, &len, e);
            put_str(buf, size, &len, " %zu -> %zu", ca, cb);
            first = false;
        }
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
}

static void hist_text(const struct hist *h, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < h->n; i++) {
        put_str(buf, size, &len, "%s", i ? ", " : "");
        put_op(buf, size, &len, &h->e[i]);
        put_str(buf, size, &len, " %zu", h->e[i].count);
    }
}

static void report(const kiln_optimize_options *opt, const char *fmt, ...) KILN_PRINTF(2, 3);
static void report(const kiln_optimize_options *opt, const char *fmt, ...)
{
    if (!opt->report) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    opt->report(opt->report_user, msg);
}

/* ------------------------------------------------------------------ the manager */

/* The passes to run: the `passes` list (validated) or the level's. */
static kiln_status select_passes(const kiln_optimize_options *opt, const struct kiln_pass **sel,
                                 size_t *n_sel, kiln_err *err)
{
    *n_sel = 0;
    if (!opt->passes) {
        for (size_t i = 0; i < N_PASSES; i++) {
            if ((int)PASSES[i]->level > (int)opt->level) continue;
            if (PASSES[i]->needs_kiln_ops && !opt->keep_fused) continue;
            sel[(*n_sel)++] = PASSES[i];
        }
        return KILN_OK;
    }
    bool want[N_PASSES + 1];
    memset(want, 0, sizeof want);
    const char *p = opt->passes;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len) {
            size_t i = 0;
            for (; i < N_PASSES; i++)
                if (strlen(PASSES[i]->name) == len && memcmp(PASSES[i]->name, p, len) == 0) break;
            if (i == N_PASSES) {
                char known[1024];
                size_t kl = 0;
                for (size_t j = 0; j < N_PASSES; j++)
                    put_str(known, sizeof known, &kl, "%s%s", j ? ", " : "", PASSES[j]->name);
                return kiln_err_set(err, KILN_E_INVALID_ARG, "unknown optimizer pass '%.*s' (known: %s)",
                                    (int)(len > 100 ? 100 : len), p, kl ? known : "");
            }
            want[i] = true;
        }
        if (!e) break;
        p = e + 1;
    }
    /* Table order, whatever order the list gives. */
    for (size_t i = 0; i < N_PASSES; i++) {
        if (!want[i]) continue;
        if (PASSES[i]->needs_kiln_ops && !opt->keep_fused) continue;
        sel[(*n_sel)++] = PASSES[i];
    }
    return KILN_OK;
}

static kiln_status run_pass(struct kiln_opt *o, const struct kiln_pass *pass, int round, bool *changed)
{
    kiln_status st = KILN_OK;
    struct graph_list l = {0};
    struct hist before = {0}, after = {0};
    bool reporting = o->opt.report != NULL;
    *changed = false;
    o->pass = pass;
    if (!list_graphs(&l, o->m->graph) || (reporting && !hist_take(o->m, &before))) {
        st = kiln_err_set(o->err, KILN_E_NOMEM, "out of memory optimizing the model");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        struct kiln_graph *g = l.g[i];
        bool ch = false;
        st = opt_begin(o, g);
        if (st) goto done;
        st = pass->run(o, g, &ch);
        if (st) {
            if (o->err && o->err->status == KILN_OK)
                kiln_err_set(o->err, st, "optimizer pass '%s' failed", pass->name);
            goto done;
        }
        if (pass->analysis && kiln_opt_pending(o, g)) {
            st = kiln_err_set(o->err, KILN_E_INTERNAL,
                              "optimizer pass '%s' is an analysis but edited graph '%s'",
                              pass->name, g->name ? g->name : "");
            goto done;
        }
        if (kiln_opt_pending(o, g)) {
            st = kiln_opt_commit(o, g);
            if (st) goto done;
            ch = true;
        }
        opt_pending_free(&o->pend);
        if (ch) *changed = true;
    }
    if (*changed && reporting) {
        if (!hist_take(o->m, &after)) {
            st = kiln_err_set(o->err, KILN_E_NOMEM, "out of memory optimizing the model");
            goto done;
        }
        char diff[2048], inits[64] = "";
        hist_diff(&before, &after, diff, sizeof diff);
        if (before.inits != after.inits)
            snprintf(inits, sizeof inits, ", %zu -> %zu initializers", before.inits, after.inits);
        report(&o->opt, "pass %s (round %d): %zu -> %zu nodes%s%s%s", pass->name, round, before.nodes,
               after.nodes, inits, diff[0] ? "; " : "", diff);
    }
done:
    opt_pending_free(&o->pend);
    hist_free(&before);
    hist_free(&after);
    kiln_free(l.g);
    o->pass = NULL;
    return st;
}

kiln_status kiln_model_optimize(kiln_model *m, const kiln_optimize_options *opt, kiln_err *err)
{
    kiln_optimize_options defaults = {.level = KILN_OPT_EXTENDED, .keep_fused = 1};
    if (!opt) opt = &defaults;
    if (!m) return kiln_err_set(err, KILN_E_INVALID_ARG, "optimize: no model");
    if ((int)opt->level < KILN_OPT_NONE || (int)opt->level > KILN_OPT_LAYOUT)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "optimize: unknown level %d", (int)opt->level);
    const struct kiln_pass *sel[N_PASSES + 1];
    size_t n_sel;
    KILN_TRY(select_passes(opt, sel, &n_sel, err));
    if (!m->graph || !n_sel) return KILN_OK;
    if (m->n_link_errors) {
        const char *first = m->n_link_problems ? m->link_problems[0] : "link errors";
        return kiln_err_set(err, KILN_E_INVALID_MODEL,
                            "cannot optimize a model whose graph does not link: %s", first ? first : "");
    }

    struct kiln_opt o = {.m = m, .opt = *opt, .err = err};
    o.fold_limit = opt->fold_limit_bytes ? opt->fold_limit_bytes : KILN_OPT_FOLD_LIMIT_DEFAULT;
    struct snapshot snap;
    struct hist h0 = {0}, h1 = {0};
    kiln_status st = KILN_OK;
    if (!snapshot_take(&snap, m)) {
        snapshot_free(&snap);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory optimizing the model");
    }
    if (opt->report && !hist_take(m, &h0)) goto oom;
    st = opt_collect_names(&o);
    if (st) goto fail;
    /* Sorted, linked and typed before the first pass (a file may list nodes out of order). */
    st = opt_relink(&o);
    if (st) goto fail;

    int round = 1;
    for (; round <= KILN_OPT_MAX_ROUNDS; round++) {
        bool any = false;
        for (size_t i = 0; i < n_sel; i++) {
            bool ch;
            if (sel[i]->analysis) continue;
            st = run_pass(&o, sel[i], round, &ch);
            if (st) goto fail;
            any |= ch;
        }
        if (!any) break;
    }
    /* Analyses (the layout marks), once, over the final graphs: nothing commits after them,
     * so what they record stays valid. */
    for (size_t i = 0; i < n_sel; i++) {
        if (!sel[i]->analysis) continue;
        bool ch;
        st = run_pass(&o, sel[i], round > KILN_OPT_MAX_ROUNDS ? KILN_OPT_MAX_ROUNDS : round, &ch);
        if (st) goto fail;
    }
    if (opt->report) {
        if (!hist_take(m, &h1)) goto oom;
        char a[2048], b[2048];
        hist_text(&h0, a, sizeof a);
        hist_text(&h1, b, sizeof b);
        report(opt, "optimized: %zu -> %zu nodes, %zu -> %zu initializers in %d round%s%s", h0.nodes,
               h1.nodes, h0.inits, h1.inits, round > KILN_OPT_MAX_ROUNDS ? KILN_OPT_MAX_ROUNDS : round,
               round == 1 ? "" : "s", round > KILN_OPT_MAX_ROUNDS ? " (round limit reached)" : "");
        report(opt, "ops before: %s", a);
        report(opt, "ops after: %s", b);
    }
    hist_free(&h0);
    hist_free(&h1);
    snapshot_free(&snap);
    opt_nameset_free(&o.names);
    return KILN_OK;
oom:
    st = kiln_err_set(err, KILN_E_NOMEM, "out of memory optimizing the model");
fail:
    opt_pending_free(&o.pend);
    snapshot_restore(&snap, m);
    snapshot_free(&snap);
    hist_free(&h0);
    hist_free(&h1);
    opt_nameset_free(&o.names);
    return st;
}
