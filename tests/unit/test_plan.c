/* test_plan.c: the memory planner (src/exec/plan.h), on its own and through engines.
 *
 * On its own: plans made from hand-written planner inputs (struct kiln_plan_info): best fit
 * picks the smallest gap that holds a tensor, in-place outputs share their input's block
 * (same size only), offsets are multiples of KILN_PLAN_ALIGN, symbolic sizes follow their
 * symbols' values, unbound symbols / zero sizes / overflowing sizes are not planned, and on
 * 300 random lifetimes no two tensors alive at once share a byte.
 *
 * Through engines (kiln_builder_build at KILN_OPT_NONE, so the graph is the one written): the
 * plan a context made for its last run is read back (struct kiln_context's plan) and checked
 * against lifetimes the test works out itself from the graph (producer's position in the
 * order to the last consumer's, implicit inputs of subgraphs included): every pair of planned
 * values that share memory must not be alive at the same time (an in-place output and the
 * input it overwrites excepted). Checked on small hand-made graphs (a diamond, a dead output,
 * an If reading an outer value) and on a random DAG of 200 element-wise nodes and Concats at
 * two batch sizes. A chain of 32 same-size nodes needs 2 blocks (1 when its kernels may run
 * in place); values of a model with dim N planned for N=1 and N=7 differ by a factor 7 (or
 * keep their size when they do not depend on N); graph outputs, NonZero's data-dependent
 * output and string tensors stay out of the arena; and every planned run gives the same bytes
 * as a run of the same engine with planning switched off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/engine.h"
#include "exec/plan.h"
#include "kiln.h"
#include "test_model.h"
#include "test_support.h"
#include "test_text_model.h"

/* ------------------------------------------------------------------ the planner on its own */

/* A planner input for n values built by hand: every value a plannable float32 vector of
 * sizes[v] elements (size_t dims through param "" are not used), alive [first, last]. */
struct hand {
    struct kiln_plan_info pi;
    int first[512], last[512], alias[512], alias_pos[512], rank[512];
    bool plannable[512];
    kiln_dtype dtype[512];
    struct kiln_dim dims[512][2];
    const struct kiln_dim *dimp[512];
    const char *sym[4];
};

static void hand_init(struct hand *h, size_t n)
{
    memset(h, 0, sizeof *h);
    h->pi.n_values = n;
    h->pi.first = h->first;
    h->pi.last = h->last;
    h->pi.alias = h->alias;
    h->pi.alias_pos = h->alias_pos;
    h->pi.plannable = h->plannable;
    h->pi.dtype = h->dtype;
    h->pi.rank = h->rank;
    h->pi.dims = h->dimp;
    h->pi.sym = h->sym;
    for (size_t v = 0; v < n; v++) {
        h->alias[v] = h->alias_pos[v] = -1;
        h->dimp[v] = h->dims[v];
    }
}

/* Value v: `bytes` bytes (uint8 vector), alive [first, last]. */
static void hand_val(struct hand *h, int v, size_t bytes, int first, int last)
{
    h->plannable[v] = true;
    h->dtype[v] = KILN_DTYPE_U8;
    h->rank[v] = 1;
    h->dims[v][0] = (struct kiln_dim){.value = (int64_t)bytes};
    h->first[v] = first;
    h->last[v] = last;
}

/* No two values of p alive at once (per the hand lifetimes) share a byte, unless joined in
 * place (out->alias set and the same offset); offsets aligned; everything inside the arena. */
static void check_hand_plan(const struct hand *h, const struct kiln_plan *p, const char *what)
{
    size_t n = h->pi.n_values, sum = 0, planned = 0;
    for (size_t v = 0; v < n; v++) {
        if (!p->cap[v]) continue;
        sum += p->cap[v];
        planned++;
        CHECK(p->off[v] % KILN_PLAN_ALIGN == 0, "%s: value %zu at offset %zu, not a multiple of %d", what, v,
              p->off[v], KILN_PLAN_ALIGN);
        CHECK(p->off[v] + p->cap[v] <= p->arena_bytes, "%s: value %zu ends at %zu, past the arena (%zu)", what,
              v, p->off[v] + p->cap[v], p->arena_bytes);
    }
    CHECK(p->sum_bytes == sum, "%s: sum_bytes %zu, the planned sizes add up to %zu", what, p->sum_bytes, sum);
    CHECK(p->n_planned == planned, "%s: n_planned %zu, counted %zu", what, p->n_planned, planned);
    for (size_t u = 0; u < n; u++)
        for (size_t v = u + 1; v < n; v++) {
            if (!p->cap[u] || !p->cap[v]) continue;
            bool mem = p->off[u] < p->off[v] + p->cap[v] && p->off[v] < p->off[u] + p->cap[u];
            bool time = h->first[u] <= h->last[v] && h->first[v] <= h->last[u];
            bool joined = (h->alias[v] == (int)u || h->alias[u] == (int)v) && p->off[u] == p->off[v];
            if (mem && time && !joined)
                test_fail(__FILE__, __LINE__, NULL,
                          "%s: values %zu [%d,%d] at %zu+%zu and %zu [%d,%d] at %zu+%zu are alive at once and "
                          "share memory", what, u, h->first[u], h->last[u], p->off[u], p->cap[u], v,
                          h->first[v], h->last[v], p->off[v], p->cap[v]);
        }
}

static void test_best_fit(void)
{
    /* Placed largest first: A [0,512), B [512,768), C [768,960), D [960,1088), E [1088,1152).
     * F (64 bytes, alive [5,6], placed after E: same size, born later) sees A, C and E
     * alive: gaps [512,768) of 256 bytes and [960,1088) of 128. Best fit takes the 128-byte
     * gap (first fit would take 512). */
    struct hand h;
    hand_init(&h, 6);
    hand_val(&h, 0, 512, 0, 10);
    hand_val(&h, 1, 256, 0, 1);
    hand_val(&h, 2, 192, 0, 10);
    hand_val(&h, 3, 128, 0, 1);
    hand_val(&h, 4, 64, 0, 10);
    hand_val(&h, 5, 64, 5, 6);
    struct kiln_plan p;
    kiln_err err = {0};
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.off[0] == 0 && p.off[1] == 512 && p.off[2] == 768 && p.off[3] == 960 && p.off[4] == 1088,
          "placement of the first five: %zu %zu %zu %zu %zu", p.off[0], p.off[1], p.off[2], p.off[3], p.off[4]);
    CHECK(p.off[5] == 960, "best fit: F at %zu, expected 960 (the 128-byte gap)", p.off[5]);
    CHECK(p.arena_bytes == 1152, "arena %zu, expected 1152", p.arena_bytes);
    check_hand_plan(&h, &p, "best fit");
    kiln_plan_free(&p);

    /* Disjoint lifetimes share one block; sizes round up to the alignment. */
    hand_init(&h, 3);
    hand_val(&h, 0, 100, 0, 1);
    hand_val(&h, 1, 10, 2, 3);
    hand_val(&h, 2, 65, 4, 5);
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.off[0] == 0 && p.off[1] == 0 && p.off[2] == 0, "disjoint lifetimes: offsets %zu %zu %zu", p.off[0],
          p.off[1], p.off[2]);
    CHECK(p.arena_bytes == 128, "arena %zu, expected 128 (100 rounded up to 64s)", p.arena_bytes);
    CHECK(p.sum_bytes == 175, "sum %zu, expected 175 (unrounded sizes)", p.sum_bytes);
    check_hand_plan(&h, &p, "disjoint");
    kiln_plan_free(&p);

    /* A value dies where the next is born: both alive at that node, so apart. */
    hand_init(&h, 2);
    hand_val(&h, 0, 64, 0, 3);
    hand_val(&h, 1, 64, 3, 4);
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.off[0] != p.off[1], "a value born at its input's last use shares its block without in place");
    kiln_plan_free(&p);
}

static void test_in_place(void)
{
    /* 0 -> 1 -> 2 in place (each dies where the next is born), 3 alive throughout. */
    struct hand h;
    hand_init(&h, 4);
    hand_val(&h, 0, 256, 0, 1);
    hand_val(&h, 1, 256, 1, 2);
    hand_val(&h, 2, 256, 2, 5);
    hand_val(&h, 3, 64, 0, 5);
    h.alias[1] = 0, h.alias_pos[1] = 0;
    h.alias[2] = 1, h.alias_pos[2] = 3; /* 2 overwrites its producer's input 3 (a residual Z) */
    struct kiln_plan p;
    kiln_err err = {0};
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.off[0] == p.off[1] && p.off[1] == p.off[2], "in-place chain at %zu %zu %zu", p.off[0], p.off[1],
          p.off[2]);
    CHECK(p.alias[0] == -1 && p.alias[1] == 0 && p.alias[2] == 3, "alias %d %d %d", p.alias[0], p.alias[1],
          p.alias[2]);
    CHECK(p.arena_bytes == 320, "arena %zu, expected 256 + 64", p.arena_bytes);
    check_hand_plan(&h, &p, "in place");
    kiln_plan_free(&p);

    /* Sizes differ: no join; the output gets a block of its own, apart from its input. */
    hand_init(&h, 2);
    hand_val(&h, 0, 256, 0, 1);
    hand_val(&h, 1, 512, 1, 2);
    h.alias[1] = 0, h.alias_pos[1] = 0;
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.alias[1] == -1, "different sizes joined in place");
    CHECK(p.off[0] + 256 <= p.off[1] || p.off[1] + 512 <= p.off[0], "different sizes overlap: %zu %zu",
          p.off[0], p.off[1]);
    kiln_plan_free(&p);
}

static void test_symbolic_sizes(void)
{
    /* float32 [N,3], [2*N,3], [N+1], [M] (M unbound), [0], and one too large to plan. */
    struct hand h;
    hand_init(&h, 6);
    for (int v = 0; v < 6; v++) hand_val(&h, v, 1, v, v + 1);
    h.sym[0] = "N";
    h.sym[1] = "M";
    h.pi.n_syms = 2;
    const char *params[4] = {"N", "2*N", "N+1", "M"};
    for (int v = 0; v < 4; v++) {
        h.dtype[v] = KILN_DTYPE_F32;
        h.rank[v] = v < 2 ? 2 : 1;
        h.dims[v][0] = (struct kiln_dim){.value = -1, .param = params[v]};
        h.dims[v][1] = (struct kiln_dim){.value = 3};
    }
    h.dims[4][0].value = 0;
    h.dtype[5] = KILN_DTYPE_F64;
    h.rank[5] = 2;
    h.dims[5][0] = (struct kiln_dim){.value = (int64_t)1 << 40};
    h.dims[5][1] = (struct kiln_dim){.value = (int64_t)1 << 40};
    int64_t syms[2] = {5, -1};
    struct kiln_plan p;
    kiln_err err = {0};
    CHECK(kiln_plan_make(&h.pi, syms, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.cap[0] == 5 * 3 * 4, "[N,3] at N=5: %zu bytes", p.cap[0]);
    CHECK(p.cap[1] == 10 * 3 * 4, "[2*N,3] at N=5: %zu bytes", p.cap[1]);
    CHECK(p.cap[2] == 6 * 4, "[N+1] at N=5: %zu bytes", p.cap[2]);
    CHECK(p.cap[3] == 0, "[M] with M unbound is planned (%zu bytes)", p.cap[3]);
    CHECK(p.cap[4] == 0, "an empty tensor is planned (%zu bytes)", p.cap[4]);
    CHECK(p.cap[5] == 0, "a tensor of 2^83 bytes is planned (%zu bytes)", p.cap[5]);
    CHECK(p.n_planned == 3, "n_planned %zu", p.n_planned);
    check_hand_plan(&h, &p, "symbolic");
    kiln_plan_free(&p);
    syms[0] = 1;
    CHECK(kiln_plan_make(&h.pi, syms, &p, &err) == KILN_OK, "%s", err.msg);
    CHECK(p.cap[0] == 12 && p.cap[1] == 24 && p.cap[2] == 8, "at N=1: %zu %zu %zu", p.cap[0], p.cap[1], p.cap[2]);
    kiln_plan_free(&p);
}

static void test_random_lifetimes(void)
{
    static struct hand h;
    hand_init(&h, 300);
    for (int v = 0; v < 300; v++) {
        int first = rng_int(200), len = rng_int(8) == 0 ? rng_int(150) : rng_int(6);
        hand_val(&h, v, 1 + (size_t)rng_int(rng_int(4) == 0 ? 20000 : 700), first, first + len);
        /* Some in-place pairs: v overwrites an earlier value of the same size dying at v's birth. */
        if (v > 0 && rng_int(6) == 0) {
            int u = v - 1;
            if (h.alias[u] < 0 && h.plannable[u]) {
                h.dims[v][0] = h.dims[u][0];
                h.first[v] = h.last[u];
                h.last[v] = h.first[v] + rng_int(5);
                bool taken = false;
                for (int w = 0; w < v; w++) taken |= h.alias[w] == u;
                if (!taken) h.alias[v] = u, h.alias_pos[v] = 0;
            }
        }
    }
    struct kiln_plan p;
    kiln_err err = {0};
    CHECK(kiln_plan_make(&h.pi, NULL, &p, &err) == KILN_OK, "%s", err.msg);
    check_hand_plan(&h, &p, "random lifetimes");
    /* The arena holds at least what is alive at the busiest moment, at most everything. */
    size_t peak = 0;
    for (int t = 0; t < 400; t++) {
        size_t live = 0;
        for (int v = 0; v < 300; v++)
            if (h.first[v] <= t && t <= h.last[v] && h.alias[v] < 0) live += p.cap[v];
        if (live > peak) peak = live;
    }
    CHECK(p.arena_bytes >= peak, "arena %zu below the live peak %zu", p.arena_bytes, peak);
    CHECK(p.arena_bytes < p.sum_bytes, "arena %zu, sum %zu: nothing shared", p.arena_bytes, p.sum_bytes);
    kiln_plan_free(&p);
}

/* ------------------------------------------------------------------ through engines */

/* Engines for the text model, built at KILN_OPT_NONE with one thread: *e and, when ref is
 * not NULL, *ref from the same model bytes (random initializers drawn once), with planning
 * switched off. A dynamic model gets profile "p" bounding input `pin` (rank 2, [lo..hi,
 * width]) when pin is set. false (and NULLs) after a failed CHECK. */
static void unplan(kiln_engine *e);
static bool build_text(const char *text, const char *pin, int64_t lo, int64_t hi, int64_t width, kiln_engine **e,
                       kiln_engine **ref)
{
    struct buf b = {0};
    parse_model(text, &b);
    kiln_err err = {0};
    kiln_model *m = NULL;
    kiln_builder *bl = NULL;
    *e = NULL;
    if (ref) *ref = NULL;
    kiln_status st = kiln_model_load_buffer(b.p, b.len, NULL, &m, &err);
    free(b.p);
    if (!st) st = kiln_builder_create(&bl, &err);
    if (!st) {
        kiln_builder_set_opt_level(bl, KILN_OPT_NONE);
        st = kiln_builder_set_threads(bl, 1, &err);
    }
    if (!st && pin) {
        int64_t mn[2] = {lo, width}, op[2] = {hi, width}, mx[2] = {hi, width};
        st = kiln_builder_add_profile(bl, "p", pin, 2, mn, op, mx, &err);
    }
    if (!st) st = kiln_builder_build(bl, m, e, &err);
    if (!st && ref) st = kiln_builder_build(bl, m, ref, &err);
    CHECK(st == KILN_OK, "building the engine: %s", err.msg);
    kiln_builder_free(bl);
    kiln_model_free(m);
    if (st) {
        kiln_engine_free(*e);
        if (ref) kiln_engine_free(*ref);
        *e = NULL;
        if (ref) *ref = NULL;
        return false;
    }
    if (ref) unplan(*ref);
    return true;
}

/* The same engine with planning switched off: every value runs from the heap. */
static void unplan(kiln_engine *e)
{
    for (size_t v = 0; v < e->pinfo.n_values; v++) e->pinfo.plannable[v] = false;
    e->arena_bytes = 0;
}

/* Marks every kernel of e's main graph KILN_OP_INPLACE (copies of the ops in `ops`) and
 * redoes the planner's view of the graph, as a kernel that declares the flag would give. */
static void make_inplace(kiln_engine *e, struct kiln_cpu_op *ops, size_t cap)
{
    struct kiln_egraph *eg = &e->graphs[0];
    size_t n = eg->g->n_nodes;
    CHECK(n <= cap, "%zu nodes", n);
    for (size_t i = 0; i < n && i < cap; i++) {
        ops[i] = *eg->nodes[i].op;
        ops[i].flags |= KILN_OP_INPLACE;
        eg->nodes[i].op = &ops[i];
    }
    kiln_err err = {0};
    CHECK(kiln_plan_info_init(&e->pinfo, &e->arena, eg, &err) == KILN_OK, "%s", err.msg);
    e->arena_bytes = 0;
}

/* The lifetimes of the main graph's values worked out here from the graph (not from the
 * planner's tables): born = position of the producer in the order, dies = position of the
 * last consumer (inputs and implicit inputs), or born when nothing consumes it. */
struct lifetimes {
    int *born, *dies, *pos;
};

static void lifetimes_of(const struct kiln_graph *g, struct lifetimes *lt)
{
    lt->born = calloc(g->n_values + 1, sizeof *lt->born);
    lt->dies = calloc(g->n_values + 1, sizeof *lt->dies);
    lt->pos = calloc(g->n_nodes + 1, sizeof *lt->pos);
    if (!lt->born || !lt->dies || !lt->pos) exit(1);
    for (size_t oi = 0; oi < g->n_nodes; oi++) lt->pos[g->order[oi]] = (int)oi;
    for (size_t v = 0; v < g->n_values; v++) {
        lt->born[v] = lt->dies[v] = -1;
        if (g->values[v].def == KILN_DEF_NODE) lt->born[v] = lt->dies[v] = lt->pos[g->values[v].producer];
    }
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const struct kiln_node *n = &g->nodes[ni];
        for (size_t j = 0; j < n->n_in + n->n_implicit; j++) {
            int id = j < n->n_in ? n->in_ids[j] : n->implicit_ids[j - n->n_in];
            if (id >= 0 && lt->pos[ni] > lt->dies[id]) lt->dies[id] = lt->pos[ni];
        }
    }
}

static void lifetimes_free(struct lifetimes *lt)
{
    free(lt->born), free(lt->dies), free(lt->pos);
}

/* Whether v may share u's memory in place: v is output 0 of a node whose kernel allows it,
 * u is that node's input 0 (or the input its KILN_OP_INPLACE_FROM names), once, u dies there,
 * and both have the same size and place. */
static bool inplace_pair(const kiln_engine *e, const struct lifetimes *lt, const struct kiln_plan *p, int u, int v)
{
    const struct kiln_graph *g = e->model->graph;
    if (g->values[v].def != KILN_DEF_NODE) return false;
    int ni = g->values[v].producer;
    const struct kiln_node *n = &g->nodes[ni];
    unsigned flags = e->graphs[0].nodes[ni].op->flags;
    size_t ip = KILN_OP_INPLACE_INPUT(flags);
    if (!(flags & KILN_OP_INPLACE)) return false;
    if (n->n_in <= ip || n->in_ids[ip] != u || n->out_ids[0] != v) return false;
    for (size_t j = 0; j < n->n_in; j++)
        if (j != ip && n->in_ids[j] == u) return false;
    return lt->dies[u] == lt->born[v] && p->off[u] == p->off[v] && p->cap[u] == p->cap[v];
}

static bool is_output(const struct kiln_graph *g, int v)
{
    for (size_t o = 0; o < g->n_outputs; o++)
        if (strcmp(g->outputs[o].name, g->values[v].name) == 0) return true;
    return false;
}

/* Checks plan p of e's main graph: only node outputs that are not graph outputs are planned,
 * each aligned and inside the arena; no two alive at once share memory (in place excepted).
 * Returns the number of planned values. */
static size_t check_plan(const kiln_engine *e, const struct kiln_plan *p, const char *what)
{
    const struct kiln_graph *g = e->model->graph;
    struct lifetimes lt;
    lifetimes_of(g, &lt);
    size_t planned = 0, sum = 0;
    for (size_t v = 0; v < g->n_values; v++) {
        if (!p->cap[v]) continue;
        planned++;
        sum += p->cap[v];
        CHECK(g->values[v].def == KILN_DEF_NODE && !is_output(g, (int)v),
              "%s: '%s' is planned but is not an intermediate", what, g->values[v].name);
        CHECK(p->off[v] % KILN_PLAN_ALIGN == 0, "%s: '%s' at offset %zu", what, g->values[v].name, p->off[v]);
        CHECK(p->off[v] + p->cap[v] <= p->arena_bytes, "%s: '%s' ends at %zu, past the arena (%zu)", what,
              g->values[v].name, p->off[v] + p->cap[v], p->arena_bytes);
    }
    CHECK(planned == p->n_planned && sum == p->sum_bytes, "%s: %zu planned summing to %zu; the plan says %zu, %zu",
          what, planned, sum, p->n_planned, p->sum_bytes);
    size_t bad = 0;
    for (size_t u = 0; u < g->n_values; u++)
        for (size_t v = u + 1; v < g->n_values; v++) {
            if (!p->cap[u] || !p->cap[v]) continue;
            bool mem = p->off[u] < p->off[v] + p->cap[v] && p->off[v] < p->off[u] + p->cap[u];
            bool time = lt.born[u] <= lt.dies[v] && lt.born[v] <= lt.dies[u];
            if (!mem || !time || inplace_pair(e, &lt, p, (int)u, (int)v) || inplace_pair(e, &lt, p, (int)v, (int)u))
                continue;
            if (bad++ < 5)
                test_fail(__FILE__, __LINE__, NULL,
                          "%s: '%s' (nodes %d..%d, bytes %zu+%zu) and '%s' (nodes %d..%d, bytes %zu+%zu) are "
                          "alive at once and share memory", what, g->values[u].name, lt.born[u], lt.dies[u],
                          p->off[u], p->cap[u], g->values[v].name, lt.born[v], lt.dies[v], p->off[v], p->cap[v]);
        }
    test_checks++;
    lifetimes_free(&lt);
    return planned;
}

/* Runs e in context c on one float32 input of shape [rows, cols] filled from the test
 * generator (seeded with `seed`); n_out outputs into out[]. */
static kiln_status run_ctx(kiln_context *c, int64_t rows, int64_t cols, uint64_t seed, size_t n_out,
                           kiln_value **out, kiln_err *err)
{
    int64_t dims[2] = {rows, cols};
    rng_seed(seed);
    kiln_value *x = rand_tensor(2, dims);
    const kiln_value *in[1] = {x};
    kiln_status st = kiln_context_run(c, NULL, 1, NULL, in, n_out, out, err);
    kiln_value_free(x);
    return st;
}

/* Whether a and b are the same tensors byte for byte. */
static bool same_bytes(const kiln_value *a, const kiln_value *b)
{
    if (!a || !b || kiln_value_dtype(a) != kiln_value_dtype(b) || kiln_value_rank(a) != kiln_value_rank(b))
        return false;
    for (int d = 0; d < kiln_value_rank(a); d++)
        if (kiln_value_dims(a)[d] != kiln_value_dims(b)[d]) return false;
    size_t bytes = kiln_value_numel(a) * 4;
    return memcmp(kiln_value_data((kiln_value *)a), kiln_value_data((kiln_value *)b), bytes) == 0;
}

/* Runs the planned engine and its unplanned twin on the same input; checks the plan, the
 * outputs (outside the arena, equal bytes). Returns the planned value count. */
static size_t run_and_compare(kiln_engine *e, kiln_engine *ref, int64_t rows, int64_t cols, size_t n_out,
                              const char *what)
{
    kiln_context *c = NULL, *rc = NULL;
    kiln_err err = {0};
    kiln_value *out[8] = {0}, *want[8] = {0};
    size_t planned = 0;
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_context_create(ref, &rc, &err) == KILN_OK, "%s", err.msg);
    if (!c || !rc) goto done;
    CHECK(run_ctx(c, rows, cols, 42, n_out, out, &err) == KILN_OK, "%s: %s", what, err.msg);
    CHECK(run_ctx(rc, rows, cols, 42, n_out, want, &err) == KILN_OK, "%s (unplanned): %s", what, err.msg);
    CHECK(c->plan_valid, "%s: the run was not planned", what);
    CHECK(!rc->plan_valid || rc->plan.n_planned == 0, "%s: the reference run was planned", what);
    if (c->plan_valid) {
        planned = check_plan(e, &c->plan, what);
        CHECK(kiln_context_arena_bytes(c) == c->plan.arena_bytes, "%s: arena bytes %llu", what,
              (unsigned long long)kiln_context_arena_bytes(c));
        CHECK(c->arena_size >= c->plan.arena_bytes && (uintptr_t)c->arena % KILN_PLAN_ALIGN == 0,
              "%s: the context's arena (%zu bytes) does not hold the plan (%zu)", what, c->arena_size,
              c->plan.arena_bytes);
    }
    for (size_t i = 0; i < n_out; i++) {
        CHECK(same_bytes(out[i], want[i]), "%s: output %zu differs from the unplanned run", what, i);
        const uint8_t *d = out[i] ? kiln_value_data(out[i]) : NULL;
        CHECK(!d || !c->arena || d + kiln_value_numel(out[i]) * 4 <= c->arena || d >= c->arena + c->arena_size,
              "%s: output %zu lies in the context's arena", what, i);
    }
done:
    free_all(out, n_out);
    free_all(want, n_out);
    kiln_context_free(c);
    kiln_context_free(rc);
    return planned;
}

static void test_small_graphs(void)
{
    /* A diamond: A lives until E; B and C meet in D; the graph output is not planned. */
    const char *diamond = "input X f32 2,8\n"
                          "node Relu X -> A\n"
                          "node Sigmoid A -> B\n"
                          "node Tanh A -> C\n"
                          "node Add B,C -> D\n"
                          "node Mul D,A -> E\n"
                          "node Neg E -> Y\n"
                          "output Y\n";
    kiln_engine *e, *ref;
    if (build_text(diamond, NULL, 0, 0, 0, &e, &ref)) {
        size_t n = run_and_compare(e, ref, 2, 8, 1, "diamond");
        CHECK(n == 5, "diamond: %zu values planned, expected 5 (A..E)", n);
    }
    kiln_engine_free(e);
    kiln_engine_free(ref);

    /* A Split whose second output nobody reads, and a value read by two later nodes. */
    const char *dead = "input X f32 4,8\n"
                       "node Relu X -> A\n"
                       "node Split A -> S1,S2 axis=int:1\n"
                       "node Sigmoid S1 -> B\n"
                       "node Tanh S1 -> C\n"
                       "node Concat B,C -> D axis=int:1\n"
                       "node Mul D,A -> E\n"
                       "node Exp E -> F\n"
                       "node Add F,D -> Y\n"
                       "output Y\n";
    if (build_text(dead, NULL, 0, 0, 0, &e, &ref)) {
        size_t n = run_and_compare(e, ref, 4, 8, 1, "dead output");
        CHECK(n == 8, "dead output: %zu values planned, expected 8", n);
    }
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

/* A graph whose If reads intermediate A from inside its branches (an implicit input): A must
 * stay alive, and unshared, until the If has run. */
static void test_implicit_input(void)
{
    struct model then_b = fresh(17), else_b = fresh(17), m = fresh(17);
    struct pb *n = node("Mul", "A,A", "T");
    end_node(&then_b, n, NULL);
    output(&then_b, "T");
    n = node("Neg", "A", "U");
    end_node(&else_b, n, NULL);
    output(&else_b, "U");
    input(&m, "X", KILN_DTYPE_F32, "4,8");
    input(&m, "C", KILN_DTYPE_BOOL, "");
    end_node(&m, node("Relu", "X", "A"), NULL);
    end_node(&m, node("Sigmoid", "X", "B"), NULL);
    end_node(&m, node("Tanh", "B", "B2"), NULL);
    n = node("If", "C", "R");
    at_g(n, "then_branch", &then_b);
    at_g(n, "else_branch", &else_b);
    end_node(&m, n, NULL);
    end_node(&m, node("Abs", "B2", "B3"), NULL);
    end_node(&m, node("Add", "R,B3", "Y"), NULL);
    output(&m, "Y");
    struct run r;
    if (!run(&m, &r)) return;
    kiln_builder *b = NULL;
    kiln_engine *e = NULL, *ref = NULL;
    kiln_err err = {0};
    CHECK(kiln_builder_create(&b, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_set_opt_level(b, KILN_OPT_NONE);
    CHECK(kiln_builder_set_threads(b, 1, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_builder_build(b, r.km, &e, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_builder_build(b, r.km, &ref, &err) == KILN_OK, "%s", err.msg);
    kiln_builder_free(b);
    done(&r);
    if (!e || !ref) {
        kiln_engine_free(e);
        kiln_engine_free(ref);
        return;
    }
    unplan(ref);
    kiln_context *c = NULL, *rc = NULL;
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_context_create(ref, &rc, &err) == KILN_OK, "%s", err.msg);
    for (int cond = 0; cond < 2 && c && rc; cond++) {
        int64_t dims[2] = {4, 8};
        rng_seed(7);
        kiln_value *x = rand_tensor(2, dims), *cv = scalar(KILN_DTYPE_BOOL, cond);
        const kiln_value *in[2] = {x, cv};
        kiln_value *y = NULL, *want = NULL;
        CHECK(kiln_context_run(c, NULL, 2, NULL, in, 1, &y, &err) == KILN_OK, "%s", err.msg);
        CHECK(kiln_context_run(rc, NULL, 2, NULL, in, 1, &want, &err) == KILN_OK, "%s", err.msg);
        CHECK(same_bytes(y, want), "If (cond %d): planned and unplanned runs differ", cond);
        if (c->plan_valid) {
            check_plan(e, &c->plan, "If with an implicit input");
            int a = kiln_graph_find(e->model->graph, "A");
            CHECK(a >= 0 && c->plan.cap[a] == 4 * 8 * 4, "A is not planned");
        }
        kiln_value_free(x), kiln_value_free(cv), kiln_value_free(y), kiln_value_free(want);
    }
    kiln_context_free(c);
    kiln_context_free(rc);
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

/* 200 random nodes over values [N, w], w in 8..32: unary and binary element-wise ops (with
 * the same value twice at times) and Concats that widen; inputs mostly recent values, some
 * old ones (long lifetimes); four graph outputs. */
static char *random_dag(void)
{
    static const char *unary[] = {"Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Softsign"};
    static const char *binary[] = {"Add", "Mul", "Sub", "Max", "Min"};
    size_t cap = 1 << 16, len = 0;
    char *t = malloc(cap);
    int width[256];
    int nv = 1;
    width[0] = 8;
    if (!t) exit(1);
    len += (size_t)snprintf(t + len, cap - len, "input v0 f32 N,8\n");
    for (int i = 0; i < 200; i++) {
        int pick = rng_int(10) == 0 ? rng_int(nv) : nv - 1 - rng_int(nv < 6 ? nv : 6);
        int kind = rng_int(10), w = width[pick];
        if (kind < 4) {
            len += (size_t)snprintf(t + len, cap - len, "node %s v%d -> v%d\n", unary[rng_int(6)], pick, nv);
        } else if (kind < 8 || w > 16) {
            int other = pick, tries = 0;
            do other = nv - 1 - rng_int(nv < 10 ? nv : 10);
            while (width[other] != w && ++tries < 20);
            if (width[other] != w) other = pick;
            len += (size_t)snprintf(t + len, cap - len, "node %s v%d,v%d -> v%d\n", binary[rng_int(5)], pick,
                                    other, nv);
        } else {
            int other = rng_int(nv);
            if (width[other] + w > 32) other = pick;
            len += (size_t)snprintf(t + len, cap - len, "node Concat v%d,v%d -> v%d axis=int:1\n", pick, other, nv);
            w += width[other];
        }
        width[nv++] = w;
    }
    /* Outputs: the last value and three others (distinct). */
    int outs[4] = {nv - 1, nv - 30, nv - 77, nv - 140};
    for (int i = 0; i < 4; i++) len += (size_t)snprintf(t + len, cap - len, "output v%d\n", outs[i]);
    return t;
}

static void test_random_dag(void)
{
    rng_seed(2024);
    char *text = random_dag();
    kiln_engine *e, *ref;
    bool built = build_text(text, "v0", 1, 8, 8, &e, &ref);
    free(text);
    if (built) {
        for (int64_t rows = 3; rows <= 5; rows += 2) {
            char what[64];
            snprintf(what, sizeof what, "random DAG, N=%lld", (long long)rows);
            size_t n = run_and_compare(e, ref, rows, 8, 4, what);
            CHECK(n >= 190, "%s: only %zu of the 196 intermediates planned", what, n);
        }
        uint64_t arena = 0, sum = 0;
        kiln_engine_profile_memory(e, 0, &arena, &sum);
        CHECK(arena > 0 && arena * 4 < sum, "random DAG at N=8: arena %llu for a sum of %llu", (unsigned long long)arena,
              (unsigned long long)sum);
    }
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

static void test_chain_reuse(void)
{
    /* 32 Relu/Sigmoid nodes in a row on [4,16] float32 (256 bytes each). */
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "input t0 f32 4,16\n");
    for (int i = 0; i < 32; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "node %s t%d -> t%d\n", i % 2 ? "Sigmoid" : "Relu", i,
                                i + 1);
    snprintf(text + len, sizeof text - len, "output t32\n");
    kiln_engine *e, *ref;
    if (build_text(text, NULL, 0, 0, 0, &e, &ref)) {
        uint64_t arena = 0, sum = 0;
        kiln_engine_profile_memory(e, 0, &arena, &sum);
        CHECK(kiln_engine_profile_count(e) == 1, "a static model reports %zu profiles", kiln_engine_profile_count(e));
        CHECK(sum == 31 * 256, "chain: sum %llu, expected 31 x 256", (unsigned long long)sum);
        /* Relu and Sigmoid declare KILN_OP_INPLACE (src/cpu/ops/unary.c): one block serves the
         * whole chain. */
        CHECK(arena == 256, "chain: arena %llu, expected one block of 256 (in place)", (unsigned long long)arena);
        run_and_compare(e, ref, 4, 16, 1, "chain");
        /* With kernels that may run in place, one block serves the whole chain. */
        static struct kiln_cpu_op ops[64];
        make_inplace(e, ops, 64);
        kiln_context *c = NULL;
        kiln_err err = {0};
        kiln_value *y = NULL;
        CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
        if (c) {
            CHECK(run_ctx(c, 4, 16, 5, 1, &y, &err) == KILN_OK, "%s", err.msg);
            CHECK(c->plan_valid && c->plan.arena_bytes == 256, "chain in place: arena %zu, expected 256",
                  c->plan.arena_bytes);
            if (c->plan_valid) check_plan(e, &c->plan, "chain in place");
            kiln_value_free(y);
        }
        kiln_context_free(c);
        run_and_compare(e, ref, 4, 16, 1, "chain in place");
    }
    kiln_engine_free(e);
    kiln_engine_free(ref);

    /* Add(t, t): input 0 read twice, so never in place even when the kernel allows it. */
    len = (size_t)snprintf(text, sizeof text, "input t0 f32 4,16\nnode Relu t0 -> t1\n");
    for (int i = 1; i < 9; i++) len += (size_t)snprintf(text + len, sizeof text - len, "node Add t%d,t%d -> t%d\n", i, i, i + 1);
    snprintf(text + len, sizeof text - len, "node Neg t9 -> y\noutput y\n");
    if (build_text(text, NULL, 0, 0, 0, &e, &ref)) {
        static struct kiln_cpu_op ops[16];
        make_inplace(e, ops, 16);
        run_and_compare(e, ref, 4, 16, 1, "Add(t, t) chain");
    }
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

/* kiln.ConvNhwc writes Y over its residual Z (input 3, KILN_OP_INPLACE_FROM(3)) when Z dies
 * there: the plan joins them, and the results equal the unplanned run's (oneDNN's sum
 * post-op where it has oneDNN; kiln's loop with Z copied aside elsewhere). A Z that lives on
 * (read again after the convolution) keeps its own block. */
static void test_residual_in_place(void)
{
    const char *text = "opset 17 kiln\n"
                       "input X f32 4,32\n"
                       "init S i64 4 = 1,4,4,8\n"
                       "init W f32 8,8,1,1 rand\n"
                       "init W3 f32 8,8,3,3 rand\n"
                       "node Reshape X,S -> A\n"
                       "node Relu A -> Z\n"
                       "node kiln.ConvNhwc A,W,_,Z -> Yc activation=string:Relu\n"
                       "node Tanh A -> Z2\n"
                       "node kiln.ConvNhwc Yc,W3,_,Z2 -> Yd pads=ints:1,1,1,1 activation=string:SiLU\n"
                       "node Neg Yd -> Y\n"
                       "node Mul Yd,Z2 -> Y2\n"
                       "output Y\n"
                       "output Y2\n";
    kiln_engine *e, *ref;
    if (!build_text(text, NULL, 0, 0, 0, &e, &ref)) return;
    run_and_compare(e, ref, 4, 32, 2, "ConvNhwc over its residual");
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    kiln_value *out[2] = {0};
    if (c) CHECK(run_ctx(c, 4, 32, 7, 2, out, &err) == KILN_OK, "%s", err.msg);
    const struct kiln_graph *g = e->model->graph;
    int z = -1, yc = -1, z2 = -1, yd = -1;
    for (size_t v = 0; v < g->n_values; v++) {
        const char *nm = g->values[v].name;
        if (!strcmp(nm, "Z")) z = (int)v;
        if (!strcmp(nm, "Yc")) yc = (int)v;
        if (!strcmp(nm, "Z2")) z2 = (int)v;
        if (!strcmp(nm, "Yd")) yd = (int)v;
    }
    if (c && c->plan_valid && z >= 0 && yc >= 0 && z2 >= 0 && yd >= 0) {
        CHECK(c->plan.alias[yc] == 3 && c->plan.off[yc] == c->plan.off[z], "Yc not over Z: alias %d, offsets %zu %zu",
              c->plan.alias[yc], c->plan.off[yc], c->plan.off[z]);
        CHECK(c->plan.alias[yd] == -1 && c->plan.off[yd] != c->plan.off[z2], "Yd over Z2, which lives on");
    } else {
        CHECK(false, "no plan or values missing");
    }
    free_all(out, 2);
    kiln_context_free(c);
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

static void test_symbolic_engine(void)
{
    /* A [N,16], B [2*N,16] (Concat on axis 0), C [2*N,16], R [1,16] does not depend on N. */
    const char *text = "input X f32 N,16\n"
                       "init W f32 1,16 rand\n"
                       "node Relu X -> A\n"
                       "node Concat A,A -> B axis=int:0\n"
                       "node Mul B,B -> C\n"
                       "init AX i64 1 = 0\n"
                       "node ReduceSum C,AX -> R keepdims=int:1\n"
                       "node Add R,W -> R2\n"
                       "node Add C,R2 -> Y\n"
                       "output Y\n";
    kiln_engine *e, *ref;
    if (!build_text(text, NULL, 0, 0, 0, &e, &ref)) return;
    CHECK(kiln_engine_profile_count(e) == 0, "a dynamic model without profiles reports %zu profiles",
          kiln_engine_profile_count(e));
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    if (!c) goto done;
    size_t nv = e->model->graph->n_values, cap1[64] = {0};
    CHECK(nv < 64, "%zu values", nv);
    kiln_value *y = NULL;
    CHECK(run_ctx(c, 1, 16, 1, 1, &y, &err) == KILN_OK, "%s", err.msg);
    kiln_value_free(y);
    y = NULL;
    CHECK(c->plan_valid && c->bound[0] == 1, "N=1 not planned");
    for (size_t v = 0; v < nv && v < 64 && c->plan_valid; v++) cap1[v] = c->plan.cap[v];
    uint8_t *arena1 = c->arena;
    CHECK(run_ctx(c, 7, 16, 1, 1, &y, &err) == KILN_OK, "%s", err.msg);
    kiln_value_free(y);
    CHECK(c->plan_valid && c->bound[0] == 7, "N=7 not planned");
    static const char *const scaled[] = {"A", "B", "C"}, *const fixed[] = {"R", "R2"};
    for (size_t i = 0; i < 3; i++) {
        int v = kiln_graph_find(e->model->graph, scaled[i]);
        CHECK(v >= 0 && cap1[v] > 0 && c->plan.cap[v] == 7 * cap1[v], "%s: %zu bytes at N=1, %zu at N=7",
              scaled[i], v >= 0 ? cap1[v] : 0, v >= 0 ? c->plan.cap[v] : 0);
    }
    for (size_t i = 0; i < 2; i++) {
        int v = kiln_graph_find(e->model->graph, fixed[i]);
        CHECK(v >= 0 && cap1[v] == 64 && c->plan.cap[v] == 64, "%s: %zu bytes at N=1, %zu at N=7", fixed[i],
              v >= 0 ? cap1[v] : 0, v >= 0 ? c->plan.cap[v] : 0);
    }
    CHECK(c->arena != arena1 || c->arena_size >= c->plan.arena_bytes, "the arena did not grow for N=7");
    check_plan(e, &c->plan, "symbolic N=7");
    /* Back to N=1: the plan is remade, the larger arena kept. */
    size_t size7 = c->arena_size;
    uint8_t *arena7 = c->arena;
    y = NULL;
    CHECK(run_ctx(c, 1, 16, 1, 1, &y, &err) == KILN_OK, "%s", err.msg);
    kiln_value_free(y);
    CHECK(c->arena == arena7 && c->arena_size == size7, "the arena changed going back to N=1");
    kiln_context_free(c);
    run_and_compare(e, ref, 7, 16, 1, "symbolic");
    run_and_compare(e, ref, 2, 16, 1, "symbolic");
done:
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

static void test_unplanned_values(void)
{
    /* NZ: data-dependent (NonZero); S: strings; Y and Z: graph outputs. */
    const char *text = "input X f32 N,8\n"
                       "node Relu X -> A\n"
                       "node NonZero A -> NZ\n"
                       "node Cast NZ -> NZF to=int:1\n"
                       "node Neg NZF -> Z\n"
                       "node Cast A -> S to=int:8\n"
                       "node Cast S -> SF to=int:1\n"
                       "node Add SF,X -> Y\n"
                       "output Y\n"
                       "output Z\n";
    kiln_engine *e, *ref;
    if (!build_text(text, NULL, 0, 0, 0, &e, &ref)) return;
    kiln_context *c = NULL;
    kiln_err err = {0};
    CHECK(kiln_context_create(e, &c, &err) == KILN_OK, "%s", err.msg);
    kiln_value *out[2] = {0};
    if (c && run_ctx(c, 3, 8, 9, 2, out, &err) == KILN_OK && c->plan_valid) {
        const struct kiln_graph *g = e->model->graph;
        static const char *const in_arena[] = {"A", "SF"}, *const off_arena[] = {"NZ", "NZF", "S", "Y", "Z", "X"};
        for (size_t i = 0; i < 2; i++) {
            int v = kiln_graph_find(g, in_arena[i]);
            CHECK(v >= 0 && c->plan.cap[v] == 3 * 8 * 4, "%s is not planned", in_arena[i]);
        }
        for (size_t i = 0; i < 6; i++) {
            int v = kiln_graph_find(g, off_arena[i]);
            CHECK(v >= 0 && c->plan.cap[v] == 0, "%s is planned (%zu bytes)", off_arena[i], v >= 0 ? c->plan.cap[v] : 0);
        }
        check_plan(e, &c->plan, "unplanned values");
    } else {
        CHECK(0, "run: %s", err.msg);
    }
    free_all(out, 2);
    kiln_context_free(c);
    run_and_compare(e, ref, 5, 8, 2, "NonZero and strings");
    kiln_engine_free(e);
    kiln_engine_free(ref);
}

int main(void)
{
    rng_seed(0x91a7);
    test_best_fit();
    test_in_place();
    test_symbolic_sizes();
    test_random_lifetimes();
    test_small_graphs();
    test_implicit_input();
    test_chain_reuse();
    test_symbolic_engine();
    test_residual_in_place();
    test_unplanned_values();
    test_random_dag();
    return test_summary("test_plan");
}
