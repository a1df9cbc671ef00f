/* fuzz_value.c: fuzz target for the value decoders and encoders.
 *
 * Input: the bytes of a value file as kiln_value_read_file takes it: an ONNX TensorProto,
 * SequenceProto or OptionalProto (onnx/onnx.proto), or a NumPy .npy array (format 1.0-3.0).
 * The target decodes the bytes with every kind (0 = guess, tensor, sequence, optional)
 * through kiln_onnx_decode_value, and once more through kiln_value_read_file on an
 * in-memory file, which must agree with the direct decode. Every value that decodes is
 * encoded again (kiln_onnx_encode_value, and .npy for tensors of a NumPy type) and decoded
 * again: the round trip must give an equal value (kind, element types, shape, bits of
 * every element, strings byte for byte).
 */
#define _GNU_SOURCE /* memfd_create */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "onnx/onnx.h"
#include "onnx/pbwire.h"

/* Deep equality; `why` receives the first difference. */
static bool value_eq(const struct kiln_value *a, const struct kiln_value *b, char *why,
                     size_t size)
{
    if (a->kind != b->kind) {
        snprintf(why, size, "kind %d vs %d", (int)a->kind, (int)b->kind);
        return false;
    }
    if (a->kind == KILN_VALUE_TENSOR) {
        const struct kiln_tensor *x = &a->t, *y = &b->t;
        if (x->dtype != y->dtype || x->rank != y->rank) {
            snprintf(why, size, "dtype/rank %d/%d vs %d/%d", (int)x->dtype, x->rank,
                     (int)y->dtype, y->rank);
            return false;
        }
        for (int i = 0; i < x->rank; i++)
            if (x->dims[i] != y->dims[i]) {
                snprintf(why, size, "dim %d: %lld vs %lld", i, (long long)x->dims[i],
                         (long long)y->dims[i]);
                return false;
            }
        size_t n = kiln_tensor_numel(x);
        if (!n) return true;
        if (x->dtype == KILN_DTYPE_STRING) {
            char *const *s = x->data, *const *t = y->data;
            for (size_t i = 0; i < n; i++)
                if (strcmp(s[i] ? s[i] : "", t[i] ? t[i] : "")) {
                    snprintf(why, size, "string %zu differs", i);
                    return false;
                }
            return true;
        }
        if (memcmp(x->data, y->data, kiln_tensor_nbytes(x))) {
            snprintf(why, size, "data differs");
            return false;
        }
        return true;
    }
    if (a->count != b->count || a->elem_dtype != b->elem_dtype ||
        (a->kind == KILN_VALUE_OPTIONAL && a->elem_kind != b->elem_kind)) {
        snprintf(why, size, "count/elem_dtype/elem_kind %zu/%d/%d vs %zu/%d/%d", a->count,
                 (int)a->elem_dtype, (int)a->elem_kind, b->count, (int)b->elem_dtype,
                 (int)b->elem_kind);
        return false;
    }
    for (size_t i = 0; i < a->count; i++)
        if (!value_eq(a->items[i], b->items[i], why, size)) return false;
    return true;
}

/* Strings a decoded string tensor holds must be NUL-terminated and readable. */
static void touch(const struct kiln_value *v)
{
    volatile size_t sink = 0;
    if (v->kind == KILN_VALUE_TENSOR) {
        size_t n = kiln_tensor_numel(&v->t);
        if (n && v->t.dtype == KILN_DTYPE_STRING) {
            char *const *s = v->t.data;
            for (size_t i = 0; i < n; i++) sink += s[i] ? strlen(s[i]) : 0;
        } else if (n) {
            const uint8_t *d = v->t.data;
            sink += d[0] + d[kiln_tensor_nbytes(&v->t) - 1];
        }
    }
    for (size_t i = 0; i < v->count; i++) touch(v->items[i]);
    (void)sink;
}

static bool has_npy_type(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: case KILN_DTYPE_F64: case KILN_DTYPE_F16: case KILN_DTYPE_I8:
    case KILN_DTYPE_I16: case KILN_DTYPE_I32: case KILN_DTYPE_I64: case KILN_DTYPE_U8:
    case KILN_DTYPE_U16: case KILN_DTYPE_U32: case KILN_DTYPE_U64: case KILN_DTYPE_BOOL:
    case KILN_DTYPE_C64: case KILN_DTYPE_C128: return true;
    default: return false;
    }
}

static void round_trip(const struct kiln_value *v, kiln_value_kind kind)
{
    kiln_err err;
    char why[200];
    struct kiln_buf b = {0};
    memset(&err, 0, sizeof err);
    kiln_status st = kiln_onnx_encode_value(v, "x", &b, &err);
    FUZZ_CHECK(st == KILN_OK, "encode failed: %s", err.msg);
    struct kiln_value *w = NULL;
    st = kiln_onnx_decode_value(b.data, b.len, kind ? kind : v->kind, &w, &err);
    FUZZ_CHECK(st == KILN_OK, "decoding the encoding failed: %s", err.msg);
    FUZZ_CHECK(value_eq(v, w, why, sizeof why), "protobuf round trip differs: %s", why);
    kiln_value_free(w);
    kiln_buf_free(&b);

    if (v->kind != KILN_VALUE_TENSOR || !has_npy_type(v->t.dtype)) return;
    memset(&b, 0, sizeof b);
    st = kiln_npy_encode(v, &b, &err);
    FUZZ_CHECK(st == KILN_OK, "npy encode failed: %s", err.msg);
    st = kiln_onnx_decode_value(b.data, b.len, 0, &w, &err);
    FUZZ_CHECK(st == KILN_OK, "decoding the .npy encoding failed: %s", err.msg);
    FUZZ_CHECK(value_eq(v, w, why, sizeof why), ".npy round trip differs: %s", why);
    kiln_value_free(w);
    kiln_buf_free(&b);
}

/* kiln_value_read_file on an in-memory file holding the bytes must agree with `direct`
 * (the result of decoding them with kind 0). */
static void via_file(const uint8_t *data, size_t size, kiln_status direct_st,
                     const struct kiln_value *direct)
{
    int fd = memfd_create("fuzz_value", MFD_CLOEXEC);
    if (fd < 0) return; /* no memfd here: the direct path was still fuzzed */
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        FUZZ_CHECK(w > 0, "write to memfd");
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    kiln_value *v = NULL;
    kiln_err err;
    memset(&err, 0, sizeof err);
    kiln_status st = kiln_value_read_file(path, 0, &v, &err);
    close(fd);
    if (st == KILN_E_IO) return; /* /proc not mounted */
    FUZZ_CHECK(st == direct_st, "read_file gives %d, decode gives %d (%s)", (int)st,
               (int)direct_st, err.msg);
    if (st) {
        FUZZ_CHECK(fuzz_msg_ok(&err), "read_file failed without a message");
        return;
    }
    char why[200];
    FUZZ_CHECK(value_eq(direct, v, why, sizeof why), "read_file differs: %s", why);
    kiln_value_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const kiln_value_kind kinds[] = {0, KILN_VALUE_TENSOR, KILN_VALUE_SEQUENCE,
                                            KILN_VALUE_OPTIONAL};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        struct kiln_value *v = NULL;
        kiln_err err;
        memset(&err, 0, sizeof err);
        kiln_status st = kiln_onnx_decode_value(data, size, kinds[k], &v, &err);
        if (st) {
            FUZZ_CHECK(fuzz_msg_ok(&err), "decode (kind %d) failed without a message",
                       (int)kinds[k]);
            FUZZ_CHECK(v == NULL, "failed decode left a value");
        } else {
            FUZZ_CHECK(v != NULL, "decode succeeded without a value");
            touch(v);
            round_trip(v, kinds[k]);
        }
        if (kinds[k] == 0) via_file(data, size, st, v);
        kiln_value_free(v);
    }
    return 0;
}
