/* tensor.c: tensors and runtime values (struct kiln_value, the public kiln_value). */
#include <stdio.h>
#include <string.h>

#include "base/bcache.h"
#include "ir/ir.h"

static char empty_string[1];

size_t kiln_tensor_numel(const struct kiln_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= (size_t)t->dims[i];
    return n;
}

size_t kiln_tensor_nbytes(const struct kiln_tensor *t)
{
    return kiln_tensor_numel(t) * kiln_dtype_size(t->dtype);
}

const char *kiln_shape_str(int rank, const int64_t *dims, char *buf, size_t size)
{
    size_t o = 0;
    if (size == 0) return buf;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int i = 0; i < rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

kiln_status kiln_tensor_alloc(struct kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *dims,
                              kiln_err *err)
{
    return kiln_tensor_alloc_cached(t, dt, rank, dims, NULL, true, err);
}

kiln_status kiln_tensor_alloc_cached(struct kiln_tensor *t, kiln_dtype dt, int rank, const int64_t *dims,
                                     struct kiln_bcache *cache, bool zero, kiln_err *err)
{
    memset(t, 0, sizeof *t);
    if (!kiln_dtype_valid((int)dt))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "tensor element type %d is not valid", (int)dt);
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_err_set(err, KILN_E_LIMIT, "tensor rank %d exceeds the limit %d", rank,
                            KILN_MAX_RANK);
    uint64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) {
            char sb[256];
            return kiln_err_set(err, KILN_E_INVALID_ARG, "tensor shape %s has a negative dim",
                                kiln_shape_str(rank, dims, sb, sizeof sb));
        }
        if (dims[i] && numel > KILN_MAX_NUMEL / (uint64_t)dims[i]) {
            char sb[256];
            return kiln_err_set(err, KILN_E_LIMIT, "tensor shape %s exceeds %llu elements",
                                kiln_shape_str(rank, dims, sb, sizeof sb),
                                (unsigned long long)KILN_MAX_NUMEL);
        }
        numel *= (uint64_t)dims[i];
    }
    size_t bytes;
    if (!kiln_mul_size((size_t)numel, kiln_dtype_size(dt), &bytes))
        return kiln_err_set(err, KILN_E_LIMIT, "tensor of %llu elements is too large",
                            (unsigned long long)numel);
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    if (dt == KILN_DTYPE_STRING) zero = true;
    t->data = dt == KILN_DTYPE_STRING ? NULL : kiln_bcache_take(cache, bytes);
    if (!t->data) t->data = zero ? kiln_calloc(1, bytes) : kiln_malloc(bytes);
    else if (zero) memset(t->data, 0, bytes); /* reused memory: zero-filled like a fresh tensor */
#ifdef KILN_POISON_OUTPUTS
    /* Sanitizer builds: memory a kernel promised to overwrite starts as 0xFF bytes (NaN,
     * -1), so a kernel that leaves elements unwritten fails the conformance tests. */
    if (t->data && !zero) memset(t->data, 0xFF, bytes);
#endif
    if (!t->data)
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory allocating a %s tensor of %zu bytes",
                            kiln_dtype_name(dt), bytes);
    t->flags = KILN_TENSOR_OWNS_DATA;
    if (dt == KILN_DTYPE_STRING) {
        char **s = t->data;
        for (size_t i = 0; i < numel; i++) s[i] = empty_string;
        t->flags |= KILN_TENSOR_OWNS_STRINGS;
    }
    return KILN_OK;
}

void kiln_tensor_fini(struct kiln_tensor *t)
{
    if (t->dtype == KILN_DTYPE_STRING && (t->flags & KILN_TENSOR_OWNS_STRINGS) && t->data) {
        char **s = t->data;
        size_t n = kiln_tensor_numel(t);
        for (size_t i = 0; i < n; i++)
            if (s[i] != empty_string) kiln_free(s[i]);
    }
    if (t->flags & KILN_TENSOR_OWNS_DATA) kiln_free(t->data);
    memset(t, 0, sizeof *t);
}

kiln_status kiln_tensor_copy(struct kiln_tensor *dst, const struct kiln_tensor *src, kiln_err *err)
{
    KILN_TRY(kiln_tensor_alloc(dst, src->dtype, src->rank, src->dims, err));
    size_t n = kiln_tensor_numel(src);
    if (src->dtype == KILN_DTYPE_STRING) {
        char **d = dst->data;
        char *const *s = src->data;
        for (size_t i = 0; i < n; i++) {
            if (!s[i] || !s[i][0]) continue;
            d[i] = kiln_strdup(s[i]);
            if (!d[i]) {
                d[i] = empty_string;
                kiln_tensor_fini(dst);
                return kiln_err_set(err, KILN_E_NOMEM, "out of memory copying a string tensor");
            }
        }
    } else if (n) {
        memcpy(dst->data, src->data, kiln_tensor_nbytes(src));
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ values */

struct kiln_value *kiln_value_new(kiln_value_kind kind)
{
    struct kiln_value *v = kiln_calloc(1, sizeof *v);
    if (v) v->kind = kind;
    return v;
}

kiln_status kiln_value_new_tensor(kiln_dtype dt, int rank, const int64_t *dims,
                                  struct kiln_value **out, kiln_err *err)
{
    return kiln_value_new_tensor_cached(dt, rank, dims, NULL, true, out, err);
}

kiln_status kiln_value_new_tensor_cached(kiln_dtype dt, int rank, const int64_t *dims,
                                         struct kiln_bcache *cache, bool zero, struct kiln_value **out,
                                         kiln_err *err)
{
    *out = NULL;
    struct kiln_value *v = kiln_value_new(KILN_VALUE_TENSOR);
    if (!v) return kiln_err_set(err, KILN_E_NOMEM, "out of memory allocating a value");
    kiln_status st = kiln_tensor_alloc_cached(&v->t, dt, rank, dims, cache, zero, err);
    if (st) {
        kiln_free(v);
        return st;
    }
    *out = v;
    return KILN_OK;
}

void kiln_value_release(struct kiln_value *v, struct kiln_bcache *cache)
{
    if (v && cache && v->kind == KILN_VALUE_TENSOR && v->t.dtype != KILN_DTYPE_STRING &&
        (v->t.flags & KILN_TENSOR_OWNS_DATA) && v->t.data) {
        kiln_bcache_put(cache, v->t.data, kiln_tensor_nbytes(&v->t));
        v->t.data = NULL;
    }
    kiln_value_free(v);
}

void kiln_value_free(kiln_value *v)
{
    if (!v) return;
    kiln_tensor_fini(&v->t);
    for (size_t i = 0; i < v->count; i++) kiln_value_free(v->items[i]);
    kiln_free(v->items);
    kiln_free(v);
}

kiln_status kiln_value_append(struct kiln_value *seq, struct kiln_value *item, kiln_err *err)
{
    if (seq->count == seq->cap) {
        size_t cap = seq->cap ? seq->cap * 2 : 4;
        struct kiln_value **items = kiln_realloc(seq->items, cap * sizeof *items);
        if (!items) {
            kiln_value_free(item);
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory growing a sequence");
        }
        seq->items = items;
        seq->cap = cap;
    }
    seq->items[seq->count++] = item;
    return KILN_OK;
}

kiln_status kiln_value_clone(const struct kiln_value *v, struct kiln_value **out, kiln_err *err)
{
    *out = NULL;
    struct kiln_value *c = kiln_value_new(v->kind);
    if (!c) return kiln_err_set(err, KILN_E_NOMEM, "out of memory cloning a value");
    c->elem_dtype = v->elem_dtype;
    c->elem_kind = v->elem_kind;
    kiln_status st = KILN_OK;
    if (v->kind == KILN_VALUE_TENSOR) st = kiln_tensor_copy(&c->t, &v->t, err);
    for (size_t i = 0; st == KILN_OK && i < v->count; i++) {
        struct kiln_value *item;
        st = kiln_value_clone(v->items[i], &item, err);
        if (st == KILN_OK) st = kiln_value_append(c, item, err);
    }
    if (st) {
        kiln_value_free(c);
        return st;
    }
    *out = c;
    return KILN_OK;
}

/* ------------------------------------------------------------------ public accessors */

kiln_status kiln_value_create_tensor(kiln_dtype dt, int rank, const int64_t *dims, kiln_value **out,
                                     kiln_err *err)
{
    return kiln_value_new_tensor(dt, rank, dims, out, err);
}

kiln_value_kind kiln_value_kind_of(const kiln_value *v) { return v->kind; }
kiln_dtype kiln_value_dtype(const kiln_value *v) { return v->t.dtype; }
int kiln_value_rank(const kiln_value *v) { return v->t.rank; }
const int64_t *kiln_value_dims(const kiln_value *v) { return v->t.dims; }
size_t kiln_value_numel(const kiln_value *v) { return kiln_tensor_numel(&v->t); }
void *kiln_value_data(kiln_value *v) { return v->t.data; }
size_t kiln_value_count(const kiln_value *v) { return v->count; }
const kiln_value *kiln_value_item(const kiln_value *v, size_t i)
{
    return i < v->count ? v->items[i] : NULL;
}
kiln_dtype kiln_value_elem_dtype(const kiln_value *v) { return v->elem_dtype; }
