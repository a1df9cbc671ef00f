/* tensor_util.c: helpers for the shape/data-movement kernels (see tensor_ops.h; the ones
 * every kernel family uses are in cpu/tensor_util.h): reading shape-like integer inputs, an
 * N-d strided copy that every view-like op (Transpose, Slice, Expand, Tile, DepthToSpace, ...) reduces to, and string
 * ownership for STRING tensors, whose data is an array of `char *`.
 */
#include <stdint.h>
#include <string.h>

#include "cpu/ops/tensor_ops.h"

kiln_status kiln_tops_read_ints(struct kiln_kctx *k, const struct kiln_tensor *t, const char *what,
                                int64_t *v, size_t cap, size_t *n)
{
    *n = 0;
    if (!kiln_dtype_is_int(t->dtype))
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' is %s; expected an integer tensor",
                          what, kiln_dtype_name(t->dtype));
    if (t->rank > 1)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' has rank %d; expected 0 or 1", what,
                          t->rank);
    size_t cnt = kiln_tensor_numel(t);
    if (cnt > cap)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input '%s' has %zu entries; at most %zu allowed",
                          what, cnt, cap);
    for (size_t i = 0; i < cnt; i++) v[i] = kiln_tensor_get_i64(t, i);
    *n = cnt;
    return KILN_OK;
}

void kiln_tops_strides(int rank, const int64_t *dims, int64_t *strides)
{
    int64_t s = 1;
    for (int a = rank - 1; a >= 0; a--) {
        strides[a] = s;
        s *= dims[a];
    }
}

/* Copies n elements spaced `step` apart in src to contiguous dst. Typed loops for the common
 * element sizes keep the inner loop free of memcpy calls. */
static void copy_run(unsigned char *dst, const unsigned char *src, int64_t n, int64_t step,
                     size_t esz)
{
    if (step == 1) {
        memcpy(dst, src, (size_t)n * esz);
        return;
    }
    switch (esz) {
    case 1:
        for (int64_t i = 0; i < n; i++) dst[i] = src[i * step];
        break;
    case 2: {
        uint16_t *d = (uint16_t *)dst;
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * step];
        break;
    }
    case 4: {
        uint32_t *d = (uint32_t *)dst;
        const uint32_t *s = (const uint32_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * step];
        break;
    }
    case 8: {
        uint64_t *d = (uint64_t *)dst;
        const uint64_t *s = (const uint64_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * step];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) memcpy(dst + (size_t)i * esz, src + i * step * (int64_t)esz, esz);
    }
}

/* dst [R, C] (row-major) = the [R, C] matrix at src whose rows are contiguous columns:
 * element (i, j) at src[i + j * step]. A transpose done in 16x16 tiles, so both sides touch
 * whole cache lines: the element-by-element gather read one float per cache line (the
 * NCHW <-> NHWC conversions around kiln.ConvNhwc regions took 0.25 ms for 600 KB). */
#define TILED_T(T)                                                                              \
    do {                                                                                       \
        T *d_ = (T *)(void *)dst;                                                                      \
        const T *s_ = (const T *)(const void *)src;                                                                \
        for (int64_t i0 = 0; i0 < R; i0 += 16)                                                 \
            for (int64_t j0 = 0; j0 < C; j0 += 16) {                                           \
                int64_t i1 = i0 + 16 < R ? i0 + 16 : R, j1 = j0 + 16 < C ? j0 + 16 : C;        \
                for (int64_t i = i0; i < i1; i++)                                              \
                    for (int64_t j = j0; j < j1; j++) d_[i * C + j] = s_[i + j * step];        \
            }                                                                                  \
    } while (0)

static void tiled_transpose(void *dst, const void *src, size_t esz, int64_t R, int64_t C,
                            int64_t step)
{
    switch (esz) {
    case 1: TILED_T(uint8_t); break;
    case 2: TILED_T(uint16_t); break;
    case 8: TILED_T(uint64_t); break;
    default: TILED_T(uint32_t); break; /* 4: the caller passes only 1, 2, 4 and 8 */
    }
}
#undef TILED_T

/* tiled_transpose's case with few columns (C < 16, 4-byte elements): column by column, so
 * src is read front to back and each dst row gets its C elements from C streams (NCHW ->
 * NHWC of an image with 3 channels took 1.7 ns per element as one 3-element run per pixel). */
static void narrow_transpose(void *dst, const void *src, int64_t R, int64_t C, int64_t step)
{
    uint32_t *d = dst;
    const uint32_t *s = src;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) d[i * C + j] = s[i + j * step];
}

void kiln_tops_strided_copy(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                            const int64_t *sstride)
{
    int64_t d[KILN_TOPS_MAX_RANK], s[KILN_TOPS_MAX_RANK], idx[KILN_TOPS_MAX_RANK];
    int r = 0;
    /* Drop unit dims and merge neighbours that are contiguous with each other in src, so
     * that the inner run is as long as possible. */
    for (int a = 0; a < rank; a++) {
        if (dims[a] == 0) return;
        if (dims[a] == 1) continue;
        if (r > 0 && s[r - 1] == sstride[a] * dims[a]) {
            d[r - 1] *= dims[a];
            s[r - 1] = sstride[a];
        } else {
            d[r] = dims[a];
            s[r] = sstride[a];
            r++;
        }
    }
    unsigned char *o = dst;
    const unsigned char *base = src;
    if (r == 0) {
        memcpy(o, base, esz);
        return;
    }
    int64_t n = d[r - 1], step = s[r - 1];
    /* The two innermost dims swapped (the outer one contiguous in src): tiled transposes,
     * one per index of the outer dims; otherwise one strided run per index of all but the
     * innermost. */
    bool tiled = r >= 2 && s[r - 2] == 1 && step > 1 && d[r - 2] >= 16 && n >= 16 &&
                 (esz == 1 || esz == 2 || esz == 4 || esz == 8);
    bool narrow = r >= 2 && s[r - 2] == 1 && step > 1 && d[r - 2] >= 16 && n < 16 && esz == 4;
    tiled = tiled || narrow;
    int outer = tiled ? r - 2 : r - 1;
    size_t block = (size_t)(tiled ? d[r - 2] * n : n) * esz;
    for (int a = 0; a < outer; a++) idx[a] = 0;
    int64_t off = 0;
    for (;;) {
        if (narrow)
            narrow_transpose(o, base + off * (int64_t)esz, d[r - 2], n, step);
        else if (tiled)
            tiled_transpose(o, base + off * (int64_t)esz, esz, d[r - 2], n, step);
        else
            copy_run(o, base + off * (int64_t)esz, n, step, esz);
        o += block;
        int a = outer - 1;
        for (; a >= 0; a--) {
            off += s[a];
            if (++idx[a] < d[a]) break;
            off -= s[a] * d[a];
            idx[a] = 0;
        }
        if (a < 0) break;
    }
}

char *kiln_tops_placeholder(const struct kiln_tensor *t)
{
    if (t->dtype != KILN_DTYPE_STRING || !t->data || kiln_tensor_numel(t) == 0) return NULL;
    return ((char **)t->data)[0];
}

kiln_status kiln_tops_own_strings(struct kiln_kctx *k, struct kiln_tensor *t, char *ph)
{
    if (t->dtype != KILN_DTYPE_STRING) return KILN_OK;
    char **e = t->data;
    size_t n = kiln_tensor_numel(t);
    for (size_t i = 0; i < n; i++) {
        const char *s = e[i];
        char *c = kiln_strdup(s ? s : "");
        if (!c) {
            for (size_t j = i; j < n; j++) e[j] = ph;
            return kiln_kfail(k, KILN_E_NOMEM, "out of memory copying %zu strings", n);
        }
        e[i] = c;
    }
    return KILN_OK;
}

kiln_status kiln_tops_out_copy(struct kiln_kctx *k, size_t i, const struct kiln_tensor *src,
                               int rank, const int64_t *dims)
{
    struct kiln_tensor *o;
    KILN_TRY(kiln_out_tensor(k, i, src->dtype, rank, dims, &o));
    size_t n = kiln_tensor_numel(o);
    if (n != kiln_tensor_numel(src))
        return kiln_kfail(k, KILN_E_INTERNAL, "copy of %zu elements into %zu", kiln_tensor_numel(src),
                          n);
    if (n == 0) return KILN_OK;
    if (o->data == src->data) return KILN_OK; /* in place (never strings: not planned) */
    char *ph = kiln_tops_placeholder(o);
    memcpy(o->data, src->data, n * kiln_dtype_size(src->dtype));
    return kiln_tops_own_strings(k, o, ph);
}

void kiln_tops_map_copy(void *dst, const void *src, size_t esz, int rank, const int64_t *dims,
                        const int64_t *const *maps, const int64_t *sstride, const void *cval)
{
    int64_t idx[KILN_TOPS_MAX_RANK] = {0};
    for (int a = 0; a < rank; a++)
        if (dims[a] == 0) return;
    unsigned char *out = dst;
    const unsigned char *in = src;
    if (rank == 0) {
        memcpy(out, in, esz);
        return;
    }
    int64_t inner = dims[rank - 1], is = sstride[rank - 1];
    const int64_t *last = maps[rank - 1];
    for (;;) {
        int64_t base = 0;
        bool constant = false;
        for (int a = 0; a < rank - 1; a++) {
            int64_t m = maps[a][idx[a]];
            if (m < 0) constant = true;
            base += m * sstride[a];
        }
        for (int64_t i = 0; i < inner; i++, out += esz) {
            int64_t m = constant ? -1 : last[i];
            const unsigned char *s = m < 0 ? (const unsigned char *)cval
                                           : in + (base + m * is) * (int64_t)esz;
            switch (esz) {
            case 1: *out = *s; break;
            case 2: memcpy(out, s, 2); break;
            case 4: memcpy(out, s, 4); break;
            case 8: memcpy(out, s, 8); break;
            default: memcpy(out, s, esz);
            }
        }
        int a = rank - 2;
        for (; a >= 0; a--) {
            if (++idx[a] < dims[a]) break;
            idx[a] = 0;
        }
        if (a < 0) break;
    }
}
