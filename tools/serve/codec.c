/* codec.c: KServe v2 datatypes and Triton's binary tensor data format
 * (github.com/triton-inference-server/server docs/protocol/extension_binary_data.md).
 *
 * A tensor in binary form is its elements in row-major order, little-endian, with no
 * padding; BOOL is one byte per element; BYTES elements are each a 4-byte little-endian
 * length followed by that many bytes. kiln's in-memory layout is the same for every fixed
 * size type (this code runs on little-endian hosts only, which serve.c checks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

struct dtype_names {
    kiln_dtype dt;
    const char *kserve, *config;
    size_t size;
};

static const struct dtype_names dtypes[] = {
    {KILN_DTYPE_BOOL, "BOOL", "TYPE_BOOL", 1},     {KILN_DTYPE_U8, "UINT8", "TYPE_UINT8", 1},
    {KILN_DTYPE_U16, "UINT16", "TYPE_UINT16", 2},  {KILN_DTYPE_U32, "UINT32", "TYPE_UINT32", 4},
    {KILN_DTYPE_U64, "UINT64", "TYPE_UINT64", 8},  {KILN_DTYPE_I8, "INT8", "TYPE_INT8", 1},
    {KILN_DTYPE_I16, "INT16", "TYPE_INT16", 2},    {KILN_DTYPE_I32, "INT32", "TYPE_INT32", 4},
    {KILN_DTYPE_I64, "INT64", "TYPE_INT64", 8},    {KILN_DTYPE_F16, "FP16", "TYPE_FP16", 2},
    {KILN_DTYPE_F32, "FP32", "TYPE_FP32", 4},      {KILN_DTYPE_F64, "FP64", "TYPE_FP64", 8},
    {KILN_DTYPE_STRING, "BYTES", "TYPE_STRING", 0}, {KILN_DTYPE_BF16, "BF16", "TYPE_BF16", 2},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static const struct dtype_names *find_dt(kiln_dtype dt)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dt == dt) return &dtypes[i];
    return NULL;
}

const char *sv_dtype_kserve(kiln_dtype dt)
{
    const struct dtype_names *d = find_dt(dt);
    return d ? d->kserve : NULL;
}

const char *sv_dtype_config(kiln_dtype dt)
{
    const struct dtype_names *d = find_dt(dt);
    return d ? d->config : NULL;
}

kiln_dtype sv_dtype_from_kserve(const char *name)
{
    for (size_t i = 0; name && i < N_DTYPES; i++)
        if (strcmp(dtypes[i].kserve, name) == 0) return dtypes[i].dt;
    return KILN_DTYPE_UNDEFINED;
}

kiln_dtype sv_dtype_from_config(const char *name)
{
    for (size_t i = 0; name && i < N_DTYPES; i++)
        if (strcmp(dtypes[i].config, name) == 0) return dtypes[i].dt;
    return KILN_DTYPE_UNDEFINED;
}

size_t sv_dtype_size(kiln_dtype dt)
{
    const struct dtype_names *d = find_dt(dt);
    return d ? d->size : 0;
}

bool sv_numel(int rank, const int64_t *dims, size_t max_elems, size_t *out, char *err, size_t err_size)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) {
            snprintf(err, err_size, "dim %d is %lld; dims must be >= 0", i, (long long)dims[i]);
            return false;
        }
        if ((uint64_t)dims[i] > SIZE_MAX || __builtin_mul_overflow(n, (size_t)dims[i], &n) || n > max_elems) {
            snprintf(err, err_size, "the shape has more than %zu elements (the limit, --max-tensor-elements)",
                     max_elems);
            return false;
        }
    }
    *out = n;
    return true;
}

void sv_tensor_fini(struct sv_tensor *t)
{
    if (t->v && t->saved) {
        /* Put kiln's own pointers back, so that freeing the value frees none of ours. */
        memcpy(kiln_value_data(t->v), t->saved, kiln_value_numel(t->v) * sizeof(char *));
    }
    kiln_value_free(t->v);
    free(t->saved);
    free(t->strings);
    memset(t, 0, sizeof *t);
}

bool sv_tensor_create(const char *name, kiln_dtype dt, int rank, const int64_t *dims, size_t max_elems,
                      struct sv_tensor *t, char *err, size_t err_size)
{
    memset(t, 0, sizeof *t);
    char why[160];
    size_t n;
    if (!sv_numel(rank, dims, max_elems, &n, why, sizeof why)) {
        snprintf(err, err_size, "input '%s': %s", name, why);
        return false;
    }
    kiln_err ke = {0};
    if (kiln_value_create_tensor(dt, rank, dims, &t->v, &ke) != KILN_OK) {
        snprintf(err, err_size, "input '%s': %s", name, ke.msg);
        return false;
    }
    if (dt == KILN_DTYPE_STRING && n) {
        t->saved = malloc(n * sizeof(char *));
        if (!t->saved) {
            sv_tensor_fini(t);
            snprintf(err, err_size, "out of memory");
            return false;
        }
        memcpy(t->saved, kiln_value_data(t->v), n * sizeof(char *));
    }
    return true;
}

bool sv_tensor_set_strings(struct sv_tensor *t, const char *const *data, const size_t *lens, size_t n,
                           char *err, size_t err_size)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (__builtin_add_overflow(total, lens[i] + 1, &total)) {
            snprintf(err, err_size, "string data too large");
            return false;
        }
    free(t->strings);
    t->strings = malloc(total ? total : 1);
    if (!t->strings) {
        snprintf(err, err_size, "out of memory");
        return false;
    }
    char **elems = kiln_value_data(t->v);
    char *p = t->strings;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, data[i], lens[i]);
        p[lens[i]] = 0;
        elems[i] = p;
        p += lens[i] + 1;
    }
    return true;
}

static uint32_t read_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* BYTES elements from the binary format into t (created with n elements). */
static bool strings_from_binary(const char *name, const unsigned char *buf, size_t len, size_t n,
                                struct sv_tensor *t, char *err, size_t err_size)
{
    /* First pass: validate the lengths, so that nothing is allocated for a bad buffer. */
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (len - off < 4) {
            snprintf(err, err_size, "input '%s': binary data ends inside the length of element %zu of %zu", name,
                     i, n);
            return false;
        }
        uint32_t l = read_le32(buf + off);
        off += 4;
        if (l > len - off) {
            snprintf(err, err_size,
                     "input '%s': element %zu declares %u bytes but only %zu remain in its binary data", name, i,
                     l, len - off);
            return false;
        }
        off += l;
    }
    if (off != len) {
        snprintf(err, err_size, "input '%s': binary data has %zu bytes after its %zu elements", name, len - off, n);
        return false;
    }
    /* Second pass: the strings, NUL-terminated, laid out in one block. */
    free(t->strings);
    t->strings = malloc(len - 4 * n + n + 1);
    if (!t->strings) {
        snprintf(err, err_size, "out of memory");
        return false;
    }
    char **elems = kiln_value_data(t->v);
    char *p = t->strings;
    off = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = read_le32(buf + off);
        off += 4;
        memcpy(p, buf + off, l);
        p[l] = 0;
        elems[i] = p;
        p += l + 1;
        off += l;
    }
    return true;
}

bool sv_tensor_from_binary(const char *name, kiln_dtype dt, int rank, const int64_t *dims, const void *buf,
                           size_t len, size_t max_elems, struct sv_tensor *t, char *err, size_t err_size)
{
    memset(t, 0, sizeof *t);
    size_t n;
    char why[160];
    if (!sv_numel(rank, dims, max_elems, &n, why, sizeof why)) {
        snprintf(err, err_size, "input '%s': %s", name, why);
        return false;
    }
    size_t es = sv_dtype_size(dt);
    if (dt != KILN_DTYPE_STRING) {
        if (es == 0) {
            snprintf(err, err_size, "input '%s': datatype %s has no binary form", name, kiln_dtype_name(dt));
            return false;
        }
        size_t want;
        if (__builtin_mul_overflow(n, es, &want) || want != len) {
            snprintf(err, err_size, "input '%s': binary data has %zu bytes; its shape and datatype need %zu", name,
                     len, n * es);
            return false;
        }
    } else if (len < 4 * n || (n && len / 4 < n)) {
        snprintf(err, err_size, "input '%s': binary data has %zu bytes; %zu BYTES elements need at least %zu", name,
                 len, n, 4 * n);
        return false;
    }
    if (!sv_tensor_create(name, dt, rank, dims, max_elems, t, err, err_size)) return false;
    bool ok = true;
    if (dt == KILN_DTYPE_STRING) ok = strings_from_binary(name, buf, len, n, t, err, err_size);
    else if (len) memcpy(kiln_value_data(t->v), buf, len);
    if (ok && dt == KILN_DTYPE_BOOL) {
        unsigned char *b = kiln_value_data(t->v);
        for (size_t i = 0; i < n; i++) b[i] = b[i] != 0; /* any nonzero byte is true */
    }
    if (!ok) sv_tensor_fini(t);
    return ok;
}

size_t sv_binary_size(kiln_dtype dt, const void *data, size_t first, size_t count)
{
    if (dt != KILN_DTYPE_STRING) {
        size_t b;
        if (__builtin_mul_overflow(count, sv_dtype_size(dt), &b)) return SIZE_MAX;
        return b;
    }
    char *const *s = data;
    size_t total = 0;
    for (size_t i = first; i < first + count; i++) {
        size_t l = s[i] ? strlen(s[i]) : 0;
        if (l > UINT32_MAX || __builtin_add_overflow(total, 4 + l, &total)) return SIZE_MAX;
    }
    return total;
}

void sv_binary_write(kiln_dtype dt, const void *data, size_t first, size_t count, unsigned char *dst)
{
    if (dt != KILN_DTYPE_STRING) {
        size_t es = sv_dtype_size(dt);
        if (count) memcpy(dst, (const unsigned char *)data + first * es, count * es);
        return;
    }
    char *const *s = data;
    for (size_t i = first; i < first + count; i++) {
        uint32_t l = s[i] ? (uint32_t)strlen(s[i]) : 0;
        dst[0] = (unsigned char)l, dst[1] = (unsigned char)(l >> 8);
        dst[2] = (unsigned char)(l >> 16), dst[3] = (unsigned char)(l >> 24);
        if (l) memcpy(dst + 4, s[i], l);
        dst += 4 + l;
    }
}
