/* src/cpu/ops/misc.c: standalone ONNX ops: NonMaxSuppression (10, 11) and BitCast (26).
 *
 * NonMaxSuppression: per batch and class, boxes whose score exceeds score_threshold are
 * taken greedily by descending score (ties: lower box index first); a box is dropped when
 * its IoU with an already selected box exceeds iou_threshold. center_point_box 0 reads
 * [y1, x1, y2, x2] (either corner order), 1 reads [x_center, y_center, width, height].
 * Output rows are [batch, class, box] in selection order. Corners and areas are computed
 * once per batch; each candidate is tested against the boxes selected so far with a
 * vectorized overlap test (cpu/nms_isa.h) that decides exactly as the scalar IoU did.
 *
 * BitCast: reinterprets the bytes (little-endian) as the `to` type. Equal sizes keep the
 * shape; a narrower target appends a dim of size(from)/size(to); a wider target requires
 * the last dim to be size(to)/size(from) and removes it. String and sub-byte types are
 * refused.
 *
 * Both decode their attributes once, in prepare (cpu/kernel.h). This file also holds
 * kiln_cpu_run_unprepared, the fallback that the prepared kernels of the op families
 * converted with it (reduce, index, scan, quant, rnn, misc, control, sequence, ml, text,
 * vision, image, random, training) take when run is called without prepare.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "cpu/nms_isa.h"
#include "exec/engine.h"
#include "infer/infer.h"

/* ------------------------------------------------------------------ NonMaxSuppression */

struct scored {
    float score;
    int64_t index;
};

static int by_score_desc(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Boxes as corner columns plus areas, computed once per batch; selected boxes are kept in
 * the same layout for the overlap test (cpu/nms_isa.h). The float expressions are the ones
 * the IoU was always computed with (corners, then (y2 - y1) * (x2 - x1)), so the decisions,
 * and the output, do not change. */
struct nms_cols {
    float *y1, *x1, *y2, *x2, *area;
};

static void nms_corners(const float *b, size_t n, int center, const struct nms_cols *c)
{
    for (size_t i = 0; i < n; i++, b += 4) {
        float y1, x1, y2, x2;
        if (center) {
            x1 = b[0] - b[2] / 2;
            x2 = b[0] + b[2] / 2;
            y1 = b[1] - b[3] / 2;
            y2 = b[1] + b[3] / 2;
        } else {
            y1 = fminf(b[0], b[2]);
            y2 = fmaxf(b[0], b[2]);
            x1 = fminf(b[1], b[3]);
            x2 = fmaxf(b[1], b[3]);
        }
        c->y1[i] = y1;
        c->x1[i] = x1;
        c->y2[i] = y2;
        c->x2[i] = x2;
        c->area[i] = (y2 - y1) * (x2 - x1);
    }
}

struct nms_state {
    int center; /* center_point_box */
};

/* Scratch bytes for n boxes per batch, cap = min(max_out, n) selections per class and
 * cap_all output rows: candidates, the batch's corner columns, the selected columns and the
 * rows. One block, so one allocation per run. */
static bool nms_scratch_bytes(size_t n, size_t cap, size_t cap_all, size_t *bytes)
{
    size_t a, b, c, d;
    if (!kiln_mul_size(n + 1, sizeof(struct scored), &a) || !kiln_mul_size(n + 16, 5 * sizeof(float), &b) ||
        !kiln_mul_size(cap + 16, 5 * sizeof(float), &c) || !kiln_mul_size(cap_all + 1, 3 * sizeof(int64_t), &d))
        return false;
    return kiln_add_size(a, b, &a) && kiln_add_size(a, c, &a) && kiln_add_size(a, d, &a) &&
           kiln_add_size(a, 4 * 64, bytes);
}

static kiln_status nms_prepare(struct kiln_kprep *p)
{
    struct nms_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->center = (int)kiln_attr_i(&p->kc, "center_point_box", 0);
    p->state = s;
    /* Size the scratch when the shapes and max_output_boxes_per_class are known. */
    const struct kiln_vtype *bt = p->in ? p->in[0] : NULL, *st = p->in ? p->in[1] : NULL;
    const struct kiln_tensor *tmax = p->kc.n_in > 2 ? kiln_kprep_const(p, 2) : NULL;
    if (bt && st && tmax && kiln_tensor_numel(tmax) && bt->type.kind == KILN_TYPE_TENSOR &&
        st->type.kind == KILN_TYPE_TENSOR && bt->type.rank == 3 && st->type.rank == 3 &&
        bt->type.dims[0].value >= 0 && bt->type.dims[1].value >= 0 && st->type.dims[1].value >= 0) {
        size_t B = (size_t)bt->type.dims[0].value, N = (size_t)bt->type.dims[1].value,
               C = (size_t)st->type.dims[1].value, bytes;
        int64_t max_out = kiln_tensor_get_i64(tmax, 0);
        size_t cap = max_out > 0 ? (max_out < (int64_t)N ? (size_t)max_out : N) : 0, cap_all;
        if (kiln_mul_size(B * C, cap, &cap_all) && nms_scratch_bytes(N, cap, cap_all, &bytes))
            p->scratch_bytes = bytes;
    }
    return KILN_OK;
}

static float *nms_carve(unsigned char **at, size_t n)
{
    float *p = (float *)*at;
    *at += ((n + 15) & ~(size_t)15) * sizeof(float);
    return p;
}

static kiln_status nms_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, nms_prepare, nms_run);
    const struct nms_state *ps = k->state;
    const struct kiln_tensor *boxes, *scores;
    KILN_TRY(kiln_in_req(k, 0, &boxes));
    KILN_TRY(kiln_in_req(k, 1, &scores));
    if (boxes->dtype != KILN_DTYPE_F32 || scores->dtype != KILN_DTYPE_F32)
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "boxes and scores must be float32");
    if (boxes->rank != 3 || boxes->dims[2] != 4 || scores->rank != 3 || scores->dims[0] != boxes->dims[0] ||
        scores->dims[2] != boxes->dims[1])
        return kiln_kfail(k, KILN_E_INVALID_ARG,
                          "boxes must be [B, N, 4] and scores [B, C, N] with matching B and N");
    const struct kiln_tensor *tmax = kiln_in(k, 2), *tiou = kiln_in(k, 3), *tscore = kiln_in(k, 4);
    int64_t max_out = tmax && kiln_tensor_numel(tmax) ? kiln_tensor_get_i64(tmax, 0) : 0;
    float iou_th = tiou && kiln_tensor_numel(tiou) ? (float)kiln_tensor_get_f64(tiou, 0) : 0.0f;
    bool has_score_th = tscore && kiln_tensor_numel(tscore);
    float score_th = has_score_th ? (float)kiln_tensor_get_f64(tscore, 0) : 0.0f;
    int center = ps->center;
    size_t B = (size_t)boxes->dims[0], N = (size_t)boxes->dims[1], C = (size_t)scores->dims[1];
    const float *bx = boxes->data, *sc = scores->data;

    /* The sizes depend on max_output_boxes_per_class, an input: one scratch block per run
     * (prepare sizes the arena for it when that input is a constant). */
    size_t cap = max_out > 0 ? (max_out < (int64_t)N ? (size_t)max_out : N) : 0;
    size_t cap_all = B * C * cap, bytes;
    if (!nms_scratch_bytes(N, cap, cap_all, &bytes))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch for %zu boxes is too large", N);
    unsigned char *at;
    KILN_TRY(kiln_scratch(k, bytes, (void **)&at));
    struct scored *cand = (struct scored *)at;
    at += ((N + 1) * sizeof *cand + 63) & ~(size_t)63;
    struct nms_cols cols = {nms_carve(&at, N), nms_carve(&at, N), nms_carve(&at, N), nms_carve(&at, N),
                            nms_carve(&at, N)};
    struct nms_cols sel = {nms_carve(&at, cap), nms_carve(&at, cap), nms_carve(&at, cap),
                           nms_carve(&at, cap), nms_carve(&at, cap)};
    int64_t *all = (int64_t *)at;
    size_t n_all = 0;
    int (*overlaps)(float, float, float, float, float, const float *, const float *, const float *,
                    const float *, const float *, size_t, float) = KILN_ISA_SELECT(kiln_nms_overlaps_isa);
    for (size_t b = 0; b < B && max_out > 0; b++) {
        nms_corners(bx + b * N * 4, N, center, &cols);
        for (size_t c = 0; c < C; c++) {
            const float *s = sc + (b * C + c) * N;
            size_t nc = 0;
            for (size_t i = 0; i < N; i++)
                if (!has_score_th || s[i] > score_th) cand[nc++] = (struct scored){s[i], (int64_t)i};
            qsort(cand, nc, sizeof *cand, by_score_desc);
            size_t ns = 0;
            for (size_t i = 0; i < nc && ns < cap; i++) {
                size_t bi = (size_t)cand[i].index;
                if (overlaps(cols.y1[bi], cols.x1[bi], cols.y2[bi], cols.x2[bi], cols.area[bi], sel.y1,
                             sel.x1, sel.y2, sel.x2, sel.area, ns, iou_th))
                    continue;
                sel.y1[ns] = cols.y1[bi];
                sel.x1[ns] = cols.x1[bi];
                sel.y2[ns] = cols.y2[bi];
                sel.x2[ns] = cols.x2[bi];
                sel.area[ns] = cols.area[bi];
                ns++;
                all[n_all * 3] = (int64_t)b;
                all[n_all * 3 + 1] = (int64_t)c;
                all[n_all * 3 + 2] = (int64_t)bi;
                n_all++;
            }
        }
    }
    int64_t dims[2] = {(int64_t)n_all, 3};
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor_raw(k, 0, KILN_DTYPE_I64, 2, dims, &y));
    if (n_all) memcpy(y->data, all, n_all * 3 * sizeof *all);
    return KILN_OK;
}

/* ------------------------------------------------------------------ BitCast */

static bool sub_byte(kiln_dtype dt)
{
    return dt == KILN_DTYPE_I4 || dt == KILN_DTYPE_U4 || dt == KILN_DTYPE_F4E2M1 ||
           dt == KILN_DTYPE_I2 || dt == KILN_DTYPE_U2;
}

struct bitcast_state {
    int64_t to;
};

static kiln_status bitcast_prepare(struct kiln_kprep *p)
{
    struct bitcast_state *s;
    KILN_TRY(kiln_kprep_alloc(p, sizeof *s, (void **)&s));
    s->to = kiln_attr_i(&p->kc, "to", 0);
    p->state = s;
    return KILN_OK;
}

static kiln_status bitcast_run(struct kiln_kctx *k)
{
    if (!k->state) return kiln_cpu_run_unprepared(k, bitcast_prepare, bitcast_run);
    const struct bitcast_state *ps = k->state;
    const struct kiln_tensor *x;
    KILN_TRY(kiln_in_req(k, 0, &x));
    int64_t to = ps->to;
    if (!kiln_dtype_valid((int)to))
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "attribute 'to' (%lld) is not a data type", (long long)to);
    kiln_dtype dt = (kiln_dtype)to;
    if (x->dtype == KILN_DTYPE_STRING || dt == KILN_DTYPE_STRING || sub_byte(x->dtype) || sub_byte(dt))
        return kiln_kfail(k, KILN_E_UNSUPPORTED, "BitCast from %s to %s is not supported",
                          kiln_dtype_name(x->dtype), kiln_dtype_name(dt));
    size_t from_sz = kiln_dtype_size(x->dtype), to_sz = kiln_dtype_size(dt);
    int64_t dims[KILN_MAX_RANK];
    int rank = x->rank;
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)rank);
    if (to_sz < from_sz) {
        if (rank + 1 > KILN_MAX_RANK) return kiln_kfail(k, KILN_E_LIMIT, "rank too large");
        dims[rank++] = (int64_t)(from_sz / to_sz);
    } else if (to_sz > from_sz) {
        if (rank == 0 || dims[rank - 1] != (int64_t)(to_sz / from_sz))
            return kiln_kfail(k, KILN_E_INVALID_ARG,
                              "casting %s to %s needs a last dim of %zu", kiln_dtype_name(x->dtype),
                              kiln_dtype_name(dt), to_sz / from_sz);
        rank--;
    }
    struct kiln_tensor *y;
    KILN_TRY(kiln_out_tensor(k, 0, dt, rank, dims, &y));
    size_t n = kiln_tensor_nbytes(x);
    if (n) memcpy(y->data, x->data, n);
    return KILN_OK;
}

const struct kiln_cpu_op kiln_cpu_ops_misc[] = {
    {"NonMaxSuppression", "", 10, 0, nms_run, nms_prepare, 0},
    {"BitCast", "", 26, 0, bitcast_run, bitcast_prepare, 0},
    {0},
};
