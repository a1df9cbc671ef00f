/* dnnl_qconv.c: kiln.QConv's oneDNN int8 convolution (dnnl_qconv.h). */
#include "cpu/dnnl_qconv.h"

#include <string.h>

#include "cpu/kernel.h"

#ifdef KILN_HAVE_DNNL
#include "cpu/dnnl_util.h"
#include "cpu/isa.h"

#define MAX_SLICES 16

#include <stdlib.h>
#include <time.h>

struct qslice {
    int64_t o0, o1, in0; /* output rows [o0, o1), the first input row read */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src_md, dst_md, w_md, b_md, sp_md;
    const void *w;
};

struct kiln_dnnl_qconv {
    struct kiln_qconv_geom g;
    int32_t zp[2];          /* runtime zero points of source and destination */
    bool zp_src, zp_dst;    /* passed to the primitive */
    dnnl_memory_desc_t zp_md[2]; /* one each: kiln_dnnl_execute's cache keys on the address */
    const int32_t *bias;
    int n_slices;
    int kind; /* KIND_* */
    struct qslice sl[MAX_SLICES];
};

/* Whether oneDNN's int8 kernels at its effective instruction set accumulate exactly: VNNI
 * (AVX-512 or AVX) or AMX (dnnl_int8.h). */
static bool exact_int8_isa(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned v512 = (unsigned)dnnl_cpu_isa_avx512_core_vnni, v256 = (unsigned)dnnl_cpu_isa_avx2_vnni;
    return (isa & v512) == v512 || (isa & v256) == v256;
}

static void qconv_free(void *arg)
{
    struct kiln_dnnl_qconv *q = arg;
    for (int i = 0; i < q->n_slices; i++)
        if (q->sl[i].prim) dnnl_primitive_destroy(q->sl[i].prim);
}

/* The attribute: scales per output channel, zero points (runtime), activation. */
static bool make_attr(const struct kiln_dnnl_qconv *q, const struct kiln_qconv_epi *e, dnnl_primitive_attr_t *attr)
{
    if (!kiln_dnnl_attr_create(attr)) return false;
    const int32_t rt = DNNL_RUNTIME_S32_VAL;
    bool ok = dnnl_primitive_attr_set_output_scales(*attr, q->g.M, 1 << 1, e->scale) == dnnl_success;
    if (ok && q->zp_src) ok = dnnl_primitive_attr_set_zero_points(*attr, DNNL_ARG_SRC, 1, 0, &rt) == dnnl_success;
    if (ok && q->zp_dst) ok = dnnl_primitive_attr_set_zero_points(*attr, DNNL_ARG_DST, 1, 0, &rt) == dnnl_success;
    if (ok && e->act) {
        dnnl_post_ops_t po = NULL;
        ok = dnnl_post_ops_create(&po) == dnnl_success &&
             (e->act == 1 ? dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)
                          : dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip_v2, e->lo, e->hi)) ==
                 dnnl_success &&
             dnnl_primitive_attr_set_post_ops(*attr, po) == dnnl_success;
        if (po) dnnl_post_ops_destroy(po);
    }
    if (!ok) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return ok;
}

/* Implementation kinds a convolution can take: oneDNN's first choice (AMX where the CPU has
 * it), or its first one without AMX (AVX-512 VNNI): AMX's tiles want 64 input channels, and
 * MobileNetV2's thin 1x1 convolutions (16-32 channels) ran 1.5-2.7x faster on VNNI here,
 * ResNet-50's 2x slower. Prepare times both on the first slice and keeps the faster. */
enum { KIND_DEFAULT, KIND_NO_AMX, KIND_COUNT };

/* The primitive descriptor of kind `kind` for cd with attr; NULL when there is none (or only
 * oneDNN's reference code). */
static dnnl_primitive_desc_t pick_pd(const dnnl_convolution_desc_t *cd, dnnl_primitive_attr_t attr, int kind)
{
    dnnl_primitive_desc_iterator_t it = NULL;
    if (dnnl_primitive_desc_iterator_create(&it, cd, attr, kiln_dnnl_engine(), NULL) != dnnl_success) return NULL;
    dnnl_primitive_desc_t found = NULL;
    do {
        dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
        if (!pd) break;
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (impl && strncmp(impl, "ref", 3) && (kind == KIND_DEFAULT || !strstr(impl, "amx"))) {
            found = pd;
            break;
        }
        dnnl_primitive_desc_destroy(pd);
    } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
    dnnl_primitive_desc_iterator_destroy(it);
    return found;
}

/* Slice sl's primitive of kind `kind` (weights not packed yet): source rows [in0, in0 + sh)
 * with the padding its rows see, output rows [o0, o1); false when oneDNN has no such
 * implementation. */
static bool make_prim(struct kiln_dnnl_qconv *q, struct qslice *sl, const struct kiln_qconv_epi *e, int kind,
                      dnnl_memory_desc_t *wsrc)
{
    const struct kiln_qconv_geom *g = &q->g;
    int64_t dk = (g->k[0] - 1) * g->d[0] + 1;
    int64_t first = sl->o0 * g->s[0] - g->pb[0], last = (sl->o1 - 1) * g->s[0] - g->pb[0] + dk;
    int64_t lo = first < 0 ? 0 : first, hi = last > g->H ? g->H : last;
    sl->in0 = lo;
    int64_t G = g->group, Cg = g->C / G, Mg = g->M / G;
    dnnl_dims_t sd = {1, g->C, hi - lo, g->W}, dd = {1, g->M, sl->o1 - sl->o0, g->OW};
    dnnl_dims_t wd = {G, Mg, Cg, g->k[0], g->k[1]}, bd = {g->M};
    dnnl_dims_t wd1 = {g->M, Cg, g->k[0], g->k[1]}; /* group 1: OIHW */
    dnnl_dims_t str = {g->s[0], g->s[1]}, dil = {g->d[0] - 1, g->d[1] - 1};
    dnnl_dims_t pad_l = {lo - first, g->pb[1]}, pad_r = {last - hi, g->pe[1]};
    dnnl_data_type_t st = e->x_signed ? dnnl_s8 : dnnl_u8, dt = e->y_signed ? dnnl_s8 : dnnl_u8;
    dnnl_memory_desc_t wany;
    memset(&sl->b_md, 0, sizeof sl->b_md);
    if (dnnl_memory_desc_init_by_tag(&sl->src_md, 4, sd, st, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&sl->dst_md, 4, dd, dt, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&wany, G > 1 ? 5 : 4, G > 1 ? wd : wd1, dnnl_s8, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(wsrc, G > 1 ? 5 : 4, G > 1 ? wd : wd1, dnnl_s8, G > 1 ? dnnl_goihw : dnnl_oihw) ||
        (q->bias && dnnl_memory_desc_init_by_tag(&sl->b_md, 1, bd, dnnl_s32, dnnl_x)))
        return false;
    dnnl_convolution_desc_t cd;
    if (dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &sl->src_md, &wany, q->bias ? &sl->b_md : NULL, &sl->dst_md,
                                                   str, dil, pad_l, pad_r))
        return false;
    dnnl_primitive_attr_t attr = NULL;
    if (!make_attr(q, e, &attr)) return false;
    dnnl_primitive_desc_t pd = pick_pd(&cd, attr, kind);
    dnnl_primitive_attr_destroy(attr);
    if (!pd) return false;
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    bool ok = wq != NULL;
    if (ok) {
        sl->w_md = *wq;
        memset(&sl->sp_md, 0, sizeof sl->sp_md);
        if (sp) sl->sp_md = *sp;
        ok = dnnl_primitive_create(&sl->prim, pd) == dnnl_success;
        if (!ok) sl->prim = NULL;
    }
    dnnl_primitive_desc_destroy(pd);
    return ok;
}

/* Packs slice idx's weights (shared with an earlier slice of the same format). */
static bool pack(struct kiln_kprep *p, struct kiln_dnnl_qconv *q, struct qslice *sl, int idx,
                 const dnnl_memory_desc_t *wsrc, const int8_t *w)
{
    for (int j = 0; j < idx; j++)
        if (dnnl_memory_desc_equal(&q->sl[j].w_md, &sl->w_md)) {
            sl->w = q->sl[j].w;
            return true;
        }
    if (kiln_dnnl_pack_weights(p, (uint32_t)(0x51C0u + (unsigned)idx), wsrc, w, &sl->w_md, &sl->w)) return false;
    return sl->w != NULL;
}

static void run_one(const struct kiln_dnnl_qconv *q, const struct qslice *sl, const void *x, void *y, bool *failed);

/* The best of 5 runs of slice sl on scratch data, in seconds (weights unpacked: the speed
 * does not depend on their values); a large value on failure. */
static double time_slice(const struct kiln_dnnl_qconv *q, struct qslice *sl)
{
    size_t xs = dnnl_memory_desc_get_size(&sl->src_md), ys = dnnl_memory_desc_get_size(&sl->dst_md);
    size_t ws = dnnl_memory_desc_get_size(&sl->w_md);
    void *x = calloc(1, xs + 64), *y = malloc(ys + 64), *w = calloc(1, ws + 64);
    double best = 1e30;
    const void *keep = sl->w;
    sl->w = w;
    bool failed = false;
    for (int r = 0; r < 6 && x && y && w && !failed; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        run_one(q, sl, x, y, &failed);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (r > 0 && dt < best) best = dt; /* the first run warms up */
    }
    sl->w = keep;
    free(x), free(y), free(w);
    return failed ? 1e30 : best;
}

/* The multiply-adds a slice must have for a convolution to be split over the threads:
 * KILN_QCONV_SLICE_MACS when set (measurements), else the default below. */
static double min_slice_macs(bool grouped)
{
    const char *e = getenv("KILN_QCONV_SLICE_MACS");
    if (e && *e) return strtod(e, NULL);
    return grouped ? 2e5 : 2e6;
}

kiln_status kiln_dnnl_qconv_prepare(struct kiln_kprep *p, const struct kiln_qconv_geom *g,
                                    const struct kiln_qconv_epi *e, const int8_t *w, const int32_t *bias,
                                    struct kiln_dnnl_qconv **out)
{
    *out = NULL;
    if (kiln_isa_active() < KILN_ISA_AVX2 || !kiln_dnnl_engine() || !exact_int8_isa()) return KILN_OK;
    if (g->OH < 1 || g->OW < 1 || g->C < 1 || g->M < 1) return KILN_OK;
    struct kiln_dnnl_qconv *q;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *q, (void **)&q));
    q->g = *g;
    q->zp[0] = e->x_zp;
    q->zp[1] = e->y_zp;
    q->zp_src = e->x_zp != 0;
    q->zp_dst = e->y_zp != 0;
    dnnl_dims_t one = {1};
    if (dnnl_memory_desc_init_by_tag(&q->zp_md[0], 1, one, dnnl_s32, dnnl_x) ||
        dnnl_memory_desc_init_by_tag(&q->zp_md[1], 1, one, dnnl_s32, dnnl_x))
        return KILN_OK;
    if (bias) {
        int32_t *b;
        KILN_TRY(kiln_kprep_alloc(p, (size_t)g->M * sizeof *b, (void **)&b));
        memcpy(b, bias, (size_t)g->M * sizeof *b);
        q->bias = b;
    }
    /* Threads: one slice each, at least min_slice_macs() per slice. */
    double macs = (double)(g->OH * g->OW * g->M) * (double)(g->C / g->group * g->k[0] * g->k[1]);
    int64_t t = p->threads < 1 ? 1 : p->threads;
    if (t > MAX_SLICES) t = MAX_SLICES;
    if (t > g->OH) t = g->OH;
    while (t > 1 && macs / (double)t < min_slice_macs(g->group > 1)) t--;
    kiln_status st = kiln_kprep_on_free(p, qconv_free, q);
    if (st) return st;
    /* The kind: a loaded engine's, else the faster on slice 0 (the largest). */
    int kind = p->variant >= 1 && p->variant <= KIND_COUNT ? p->variant - 1 : -1;
    for (int64_t i = 0; i < t; i++) {
        struct qslice *sl = &q->sl[i];
        sl->o0 = g->OH * i / t;
        sl->o1 = g->OH * (i + 1) / t;
        q->n_slices = (int)i + 1;
        dnnl_memory_desc_t wsrc;
        if (kind < 0) {
            double best = 1e30;
            for (int kd = 0; kd < KIND_COUNT; kd++) {
                struct qslice cand = *sl;
                if (!make_prim(q, &cand, e, kd, &wsrc)) continue;
                double tm = time_slice(q, &cand);
                if (tm < best) {
                    if (sl->prim) dnnl_primitive_destroy(sl->prim);
                    *sl = cand, best = tm, kind = kd;
                } else {
                    dnnl_primitive_destroy(cand.prim);
                }
            }
            if (kind < 0) return KILN_OK;
        } else if (!make_prim(q, sl, e, kind, &wsrc)) {
            return KILN_OK; /* q is dropped; its primitives are freed with the engine */
        }
        if (!pack(p, q, sl, (int)i, &wsrc, w)) return KILN_OK;
    }
    q->kind = kind;
    *out = q;
    return KILN_OK;
}

struct qjob {
    const struct kiln_dnnl_qconv *q;
    const uint8_t *x;
    uint8_t *y;
    int64_t N;
    bool failed;
};

static void run_one(const struct kiln_dnnl_qconv *q, const struct qslice *sl, const void *x, void *y, bool *failed)
{
    struct kiln_dnnl_arg args[7] = {{DNNL_ARG_SRC, &sl->src_md, x},
                                    {DNNL_ARG_WEIGHTS, &sl->w_md, sl->w},
                                    {DNNL_ARG_DST, &sl->dst_md, y},
                                    {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL}};
    int na = 4;
    if (q->bias) args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_BIAS, &sl->b_md, q->bias};
    if (q->zp_src) args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &q->zp_md[0], &q->zp[0]};
    if (q->zp_dst) args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, &q->zp_md[1], &q->zp[1]};
    if (!kiln_dnnl_execute(sl->prim, na, args)) *failed = true;
}

static void run_slices(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct qjob *j = ctx;
    const struct kiln_dnnl_qconv *q = j->q;
    const struct kiln_qconv_geom *g = &q->g;
    for (size_t i = i0; i < i1; i++) {
        const struct qslice *sl = &q->sl[i];
        for (int64_t n = 0; n < j->N; n++)
            run_one(q, sl, j->x + ((n * g->H + sl->in0) * g->W) * g->C, j->y + ((n * g->OH + sl->o0) * g->OW) * g->M,
                    &j->failed);
    }
}

bool kiln_dnnl_qconv_run(const struct kiln_dnnl_qconv *qc, struct kiln_pool *pool, int64_t N, const void *x,
                         void *y)
{
    struct qjob j = {qc, x, y, N, false};
    if (qc->n_slices == 1)
        run_slices(&j, 0, 1, 0);
    else
        kiln_pool_for(pool, (size_t)qc->n_slices, 1, run_slices, &j);
    return !j.failed;
}

int kiln_dnnl_qconv_slices(const struct kiln_dnnl_qconv *qc) { return qc->n_slices; }

int kiln_dnnl_qconv_kind(const struct kiln_dnnl_qconv *qc) { return qc->kind; }

#else

kiln_status kiln_dnnl_qconv_prepare(struct kiln_kprep *p, const struct kiln_qconv_geom *g,
                                    const struct kiln_qconv_epi *e, const int8_t *w, const int32_t *bias,
                                    struct kiln_dnnl_qconv **out)
{
    (void)p, (void)g, (void)e, (void)w, (void)bias;
    *out = NULL;
    return KILN_OK;
}

bool kiln_dnnl_qconv_run(const struct kiln_dnnl_qconv *qc, struct kiln_pool *pool, int64_t N, const void *x,
                         void *y)
{
    (void)qc, (void)pool, (void)N, (void)x, (void)y;
    return false;
}

int kiln_dnnl_qconv_slices(const struct kiln_dnnl_qconv *qc)
{
    (void)qc;
    return 0;
}

int kiln_dnnl_qconv_kind(const struct kiln_dnnl_qconv *qc)
{
    (void)qc;
    return 0;
}
#endif
