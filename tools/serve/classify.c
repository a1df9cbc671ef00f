/* classify.c: Triton's classification extension
 * (server/docs/protocol/extension_classification.md): an output requested with
 * "parameters": {"classification": K} comes back as BYTES, K strings per batch row, the
 * row's K largest values in descending order as "<value>:<index>", or
 * "<value>:<index>:<label>" when the output has a label file (config label_filename, one
 * label per line). Values print as C's "%f" (Triton's std::to_string); equal values keep
 * index order.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static bool elem_f64(kiln_dtype dt, const void *data, size_t i, double *out)
{
    switch (dt) {
    case KILN_DTYPE_F32: *out = ((const float *)data)[i]; return true;
    case KILN_DTYPE_F64: *out = ((const double *)data)[i]; return true;
    case KILN_DTYPE_I8: *out = ((const int8_t *)data)[i]; return true;
    case KILN_DTYPE_I16: *out = ((const int16_t *)data)[i]; return true;
    case KILN_DTYPE_I32: *out = ((const int32_t *)data)[i]; return true;
    case KILN_DTYPE_I64: *out = (double)((const int64_t *)data)[i]; return true;
    case KILN_DTYPE_U8: case KILN_DTYPE_BOOL: *out = ((const uint8_t *)data)[i]; return true;
    case KILN_DTYPE_U16: *out = ((const uint16_t *)data)[i]; return true;
    case KILN_DTYPE_U32: *out = ((const uint32_t *)data)[i]; return true;
    case KILN_DTYPE_U64: *out = (double)((const uint64_t *)data)[i]; return true;
    default: return false;
    }
}

bool sv_classify_supported(kiln_dtype dt)
{
    const double zero = 0;
    double d;
    return elem_f64(dt, &zero, 0, &d);
}

struct scored {
    double v;
    size_t i;
};

/* Descending by value, NaN last, ties by index. */
static int cmp_scored(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    bool xn = isnan(x->v), yn = isnan(y->v);
    if (xn != yn) return xn ? 1 : -1;
    if (!xn && x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

bool sv_classify(kiln_dtype dt, const void *data, size_t first, size_t count, size_t rows, size_t k,
                 char *const *labels, size_t n_labels, char ***out_ptrs, char **out_buf, char *err, size_t err_size)
{
    *out_ptrs = NULL;
    *out_buf = NULL;
    size_t per_row = rows ? count / rows : 0;
    if (k == 0 || k > per_row) {
        snprintf(err, err_size, "classification %zu is out of range [1, %zu] (the values per batch row)", k, per_row);
        return false;
    }
    if (!rows) return (*out_ptrs = calloc(1, sizeof(char *))) && (*out_buf = calloc(1, 1));
    /* The top k of every row first, then the strings at their exact total size. */
    struct scored *sc = malloc(per_row * sizeof *sc);
    struct scored *top = malloc(rows * k * sizeof *top);
    char **ptrs = malloc(rows * k * sizeof *ptrs);
    if (!sc || !top || !ptrs) goto nomem;
    size_t total = 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < per_row; i++) {
            sc[i].i = i;
            if (!elem_f64(dt, data, first + r * per_row + i, &sc[i].v)) sc[i].v = NAN;
        }
        qsort(sc, per_row, sizeof *sc, cmp_scored);
        memcpy(top + r * k, sc, k * sizeof *sc);
        for (size_t j = 0; j < k; j++) {
            const struct scored *t = &top[r * k + j];
            int n = t->i < n_labels ? snprintf(NULL, 0, "%f:%zu:%s", t->v, t->i, labels[t->i])
                                    : snprintf(NULL, 0, "%f:%zu", t->v, t->i);
            total += (size_t)(n < 0 ? 0 : n) + 1;
        }
    }
    char *buf = malloc(total ? total : 1), *p = buf;
    if (!buf) goto nomem;
    for (size_t j = 0; j < rows * k; j++) {
        const struct scored *t = &top[j];
        size_t room = total - (size_t)(p - buf);
        int n = t->i < n_labels ? snprintf(p, room, "%f:%zu:%s", t->v, t->i, labels[t->i])
                                : snprintf(p, room, "%f:%zu", t->v, t->i);
        ptrs[j] = p;
        p += (size_t)(n < 0 ? 0 : n) + 1;
    }
    free(sc);
    free(top);
    *out_ptrs = ptrs;
    *out_buf = buf;
    return true;
nomem:
    free(sc), free(top), free(ptrs);
    snprintf(err, err_size, "out of memory");
    return false;
}
