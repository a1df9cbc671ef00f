/* dnnl_qconv.c: kiln.QConv's oneDNN int8 convolution (dnnl_qconv.h). */
#include "cpu/dnnl_qconv.h"

#include <string.h>

#include "cpu/kernel.h"

#ifdef KILN_HAVE_DNNL
#include "cpu/dnnl_util.h"
#include "cpu/isa.h"

#define MAX_SLICES 16

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

/* Slice sl's primitive: source rows [in0, in0 + sh) with the padding pad_t / pad_b its rows
 * see, output rows [o0, o1); false when oneDNN declines or would run its reference code. */
static bool make_slice(struct kiln_kprep *p, struct kiln_dnnl_qconv *q, struct qslice *sl, int idx,
                       const struct kiln_qconv_epi *e, const int8_t *w)
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
    dnnl_memory_desc_t wany, wsrc;
    memset(&sl->b_md, 0, sizeof sl->b_md);
    if (dnnl_memory_desc_init_by_tag(&sl->src_md, 4, sd, st, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&sl->dst_md, 4, dd, dt, dnnl_nhwc) ||
        dnnl_memory_desc_init_by_tag(&wany, G > 1 ? 5 : 4, G > 1 ? wd : wd1, dnnl_s8, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wsrc, G > 1 ? 5 : 4, G > 1 ? wd : wd1, dnnl_s8,
                                     G > 1 ? dnnl_goihw : dnnl_oihw) ||
        (q->bias && dnnl_memory_desc_init_by_tag(&sl->b_md, 1, bd, dnnl_s32, dnnl_x)))
        return false;
    dnnl_convolution_desc_t cd;
    if (dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &sl->src_md, &wany, q->bias ? &sl->b_md : NULL, &sl->dst_md,
                                                   str, dil, pad_l, pad_r))
        return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    bool ok = make_attr(q, e, &attr) &&
              dnnl_primitive_desc_create(&pd, &cd, attr, kiln_dnnl_engine(), NULL) == dnnl_success;
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) return false;
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    ok = impl && strncmp(impl, "ref", 3) != 0 && wq;
    if (ok) {
        sl->w_md = *wq;
        memset(&sl->sp_md, 0, sizeof sl->sp_md);
        if (sp) sl->sp_md = *sp;
        ok = dnnl_primitive_create(&sl->prim, pd) == dnnl_success;
        if (!ok) sl->prim = NULL;
    }
    dnnl_primitive_desc_destroy(pd);
    if (!ok) return false;
    /* Weights: the slices of one convolution share one packed copy when their formats agree. */
    for (int j = 0; j < idx; j++)
        if (dnnl_memory_desc_equal(&q->sl[j].w_md, &sl->w_md)) {
            sl->w = q->sl[j].w;
            return true;
        }
    if (kiln_dnnl_pack_weights(p, (uint32_t)(0x51C0u + (unsigned)idx), &wsrc, w, &sl->w_md, &sl->w)) return false;
    return sl->w != NULL;
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
    /* Threads: one slice each, at least ~2 MMAC per slice (int8 runs ~4x the fp32 rate). */
    double macs = (double)(g->OH * g->OW * g->M) * (double)(g->C / g->group * g->k[0] * g->k[1]);
    int64_t t = p->threads < 1 ? 1 : p->threads;
    if (t > MAX_SLICES) t = MAX_SLICES;
    if (t > g->OH) t = g->OH;
    while (t > 1 && macs / (double)t < (g->group > 1 ? 2e5 : 2e6)) t--;
    kiln_status st = kiln_kprep_on_free(p, qconv_free, q);
    if (st) return st;
    for (int64_t i = 0; i < t; i++) {
        struct qslice *sl = &q->sl[i];
        sl->o0 = g->OH * i / t;
        sl->o1 = g->OH * (i + 1) / t;
        q->n_slices = (int)i + 1;
        if (!make_slice(p, q, sl, (int)i, e, w)) return KILN_OK; /* q is dropped; freed with the engine */
    }
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

static void run_slices(void *ctx, size_t i0, size_t i1, int worker)
{
    (void)worker;
    struct qjob *j = ctx;
    const struct kiln_dnnl_qconv *q = j->q;
    const struct kiln_qconv_geom *g = &q->g;
    for (size_t i = i0; i < i1; i++) {
        const struct qslice *sl = &q->sl[i];
        for (int64_t n = 0; n < j->N; n++) {
            const uint8_t *x = j->x + ((n * g->H + sl->in0) * g->W) * g->C;
            uint8_t *y = j->y + ((n * g->OH + sl->o0) * g->OW) * g->M;
            struct kiln_dnnl_arg args[7] = {{DNNL_ARG_SRC, &sl->src_md, x},
                                            {DNNL_ARG_WEIGHTS, &sl->w_md, sl->w},
                                            {DNNL_ARG_DST, &sl->dst_md, y},
                                            {DNNL_ARG_SCRATCHPAD, &sl->sp_md, NULL}};
            int na = 4;
            if (q->bias) args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_BIAS, &sl->b_md, q->bias};
            if (q->zp_src)
                args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &q->zp_md[0], &q->zp[0]};
            if (q->zp_dst)
                args[na++] = (struct kiln_dnnl_arg){DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, &q->zp_md[1], &q->zp[1]};
            if (!kiln_dnnl_execute(sl->prim, na, args)) j->failed = true;
        }
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
#endif
