/* test_onnx_values.c: value files: TensorProto (every data field and data type, packed and
 * unpacked), SequenceProto, OptionalProto and NumPy .npy, decoding, encoding and the
 * atomic file writers (src/onnx/tensor_pb.c, npy.c, api.c, src/base/file.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"
#include "test_support.h"

static void put_dims(struct kiln_buf *b, int rank, const int64_t *dims, kiln_dtype dt)
{
    for (int i = 0; i < rank; i++) kiln_pb_put_uint(b, 1, (uint64_t)dims[i]);
    kiln_pb_put_uint(b, 2, (uint64_t)dt);
}

/* A packed repeated varint field. */
static void put_packed(struct kiln_buf *b, uint32_t num, const int64_t *v, size_t n)
{
    struct kiln_buf p = {0};
    for (size_t i = 0; i < n; i++) kiln_pb_put_varint(&p, (uint64_t)v[i]);
    kiln_pb_put_bytes(b, num, p.data, p.len);
    kiln_buf_free(&p);
}

static struct kiln_value *decode(struct kiln_buf *b, kiln_value_kind kind, kiln_err *err,
                                 kiln_status *st)
{
    struct kiln_value *v = NULL;
    *st = kiln_onnx_decode_value(b->data, b->len, kind, &v, err);
    kiln_buf_free(b);
    return v;
}

static void test_typed_fields(void)
{
    kiln_err err = {0};
    kiln_status st;
    struct kiln_buf b = {0};
    struct kiln_value *v;

    /* float_data, unpacked (fixed32 each) and packed in one tensor */
    const int64_t d3[1] = {3};
    put_dims(&b, 1, d3, KILN_DTYPE_F32);
    float f0 = 1.5f, f12[2] = {-2.0f, 1e-3f};
    uint32_t bits;
    memcpy(&bits, &f0, 4);
    kiln_pb_put_key(&b, 4, PB_I32);
    kiln_buf_append(&b, &bits, 4);
    kiln_pb_put_bytes(&b, 4, f12, 8);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const float *f = v->t.data;
        CHECK(v->t.rank == 1 && f[0] == 1.5f && f[1] == -2.0f && f[2] == 1e-3f, "float_data");
        CHECK(v->t.flags & KILN_TENSOR_OWNS_DATA, "decoded values own their data");
    }
    kiln_value_free(v);

    /* int32_data carries float16 bits, int8 (negative: sign-extended varints), bool */
    const int64_t d2[1] = {2};
    int64_t h[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 */
    put_dims(&b, 1, d2, KILN_DTYPE_F16);
    put_packed(&b, 5, h, 2);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const uint16_t *u = v->t.data;
        CHECK(u[0] == 0x3c00 && u[1] == 0xc000, "float16 from int32_data");
    }
    kiln_value_free(v);
    int64_t i8[3] = {-128, 127, -1};
    put_dims(&b, 1, d3, KILN_DTYPE_I8);
    for (int i = 0; i < 3; i++) kiln_pb_put_uint(&b, 5, (uint64_t)i8[i]); /* unpacked */
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const int8_t *p = v->t.data;
        CHECK(p[0] == -128 && p[1] == 127 && p[2] == -1, "int8 from int32_data");
    }
    kiln_value_free(v);

    /* int4 packed two per int32_data entry, low nibble first, sign-extended; odd count */
    const int64_t d5[1] = {5};
    int64_t packed4[3] = {0x7f /* -1, 7 */, 0x28 /* -8, 2 */, 0x0e /* -2 */};
    put_dims(&b, 1, d5, KILN_DTYPE_I4);
    put_packed(&b, 5, packed4, 3);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const int8_t *p = v->t.data;
        CHECK(p[0] == -1 && p[1] == 7 && p[2] == -8 && p[3] == 2 && p[4] == -2,
              "int4: %d %d %d %d %d", p[0], p[1], p[2], p[3], p[4]);
    }
    kiln_value_free(v);
    /* uint4 from raw_data */
    put_dims(&b, 1, d3, KILN_DTYPE_U4);
    kiln_pb_put_bytes(&b, 9, "\xf1\x09", 2);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const uint8_t *p = v->t.data;
        CHECK(p[0] == 1 && p[1] == 15 && p[2] == 9, "uint4 raw");
    }
    kiln_value_free(v);
    /* int2: four per byte from the LSB: 0b11_10_01_00 = 0, 1, -2, -1 */
    const int64_t d4[1] = {4};
    put_dims(&b, 1, d4, KILN_DTYPE_I2);
    kiln_pb_put_bytes(&b, 9, "\xe4", 1);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        const int8_t *p = v->t.data;
        CHECK(p[0] == 0 && p[1] == 1 && p[2] == -2 && p[3] == -1, "int2 raw");
    }
    kiln_value_free(v);

    /* int64_data, double_data, uint64_data (uint32), complex64 float_data pairs */
    int64_t i64[2] = {-5, INT64_MAX};
    put_dims(&b, 1, d2, KILN_DTYPE_I64);
    put_packed(&b, 7, i64, 2);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && ((int64_t *)v->t.data)[0] == -5 &&
              ((int64_t *)v->t.data)[1] == INT64_MAX, "int64_data: %s", err.msg);
    kiln_value_free(v);
    double dd[2] = {3.25, -1e300};
    put_dims(&b, 1, d2, KILN_DTYPE_F64);
    kiln_pb_put_bytes(&b, 10, dd, sizeof dd);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && !memcmp(v->t.data, dd, sizeof dd), "double_data: %s", err.msg);
    kiln_value_free(v);
    int64_t u32[2] = {4000000000, 7};
    put_dims(&b, 1, d2, KILN_DTYPE_U32);
    put_packed(&b, 11, u32, 2);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && ((uint32_t *)v->t.data)[0] == 4000000000u, "uint64_data: %s", err.msg);
    kiln_value_free(v);
    float cpx[4] = {1, 2, 3, 4};
    put_dims(&b, 1, d2, KILN_DTYPE_C64);
    kiln_pb_put_bytes(&b, 4, cpx, sizeof cpx);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && !memcmp(v->t.data, cpx, sizeof cpx), "complex64: %s", err.msg);
    kiln_value_free(v);

    /* strings, including an empty one and one with a NUL inside */
    put_dims(&b, 1, d3, KILN_DTYPE_STRING);
    pb_put_str(&b, 6, "hello");
    pb_put_str(&b, 6, "");
    kiln_pb_put_bytes(&b, 6, "a\0b", 3);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK, "%s", err.msg);
    if (v) {
        char **s = v->t.data;
        CHECK(!strcmp(s[0], "hello") && !strcmp(s[1], "") && !strcmp(s[2], "a"), "strings");
        CHECK(v->t.flags & KILN_TENSOR_OWNS_STRINGS, "owned strings");
    }
    kiln_value_free(v);

    /* scalar (rank 0) from raw_data */
    float one = 42;
    put_dims(&b, 0, NULL, KILN_DTYPE_F32);
    kiln_pb_put_bytes(&b, 9, &one, 4);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && v->t.rank == 0 && *(float *)v->t.data == 42, "scalar: %s", err.msg);
    kiln_value_free(v);
    /* an empty tensor [0, 3] */
    const int64_t d03[2] = {0, 3};
    put_dims(&b, 2, d03, KILN_DTYPE_F32);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_OK && v->t.rank == 2 && kiln_tensor_numel(&v->t) == 0, "empty: %s", err.msg);
    kiln_value_free(v);
}

static void test_tensor_errors(void)
{
    kiln_err err = {0};
    kiln_status st;
    struct kiln_buf b = {0};
    struct kiln_value *v;
    const int64_t d22[2] = {2, 2};
    int64_t three[3] = {1, 2, 3};
    pb_put_str(&b, 8, "x");
    put_dims(&b, 2, d22, KILN_DTYPE_I64);
    put_packed(&b, 7, three, 3);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && v == NULL, "short int64_data");
    CHECK(strstr(err.msg, "tensor 'x' has 3 int64 values; its dims [2,2] need 4"), "%s", err.msg);
    /* the wrong typed field for the data type */
    put_dims(&b, 1, d22, KILN_DTYPE_F32);
    put_packed(&b, 7, three, 2);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "int64_data"), "%s", err.msg);
    /* raw_data of a length that is not a multiple of the element size */
    put_dims(&b, 1, d22, KILN_DTYPE_F32);
    kiln_pb_put_bytes(&b, 9, "abcdef", 6);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "6 bytes of raw_data"), "%s", err.msg);
    /* unknown data type, negative dim */
    kiln_pb_put_uint(&b, 2, 99);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st != KILN_OK && strstr(err.msg, "data_type 99"), "%s", err.msg);
    kiln_pb_put_uint(&b, 1, (uint64_t)-2);
    kiln_pb_put_uint(&b, 2, 1);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "negative dim"), "%s", err.msg);
    /* external data in a value file is refused */
    kiln_pb_put_uint(&b, 1, 1);
    kiln_pb_put_uint(&b, 2, 1);
    kiln_pb_put_uint(&b, 14, 1);
    struct kiln_buf e = {0};
    pb_put_str(&e, 1, "location");
    pb_put_str(&e, 2, "w.bin");
    kiln_pb_put_bytes(&b, 13, e.data, e.len);
    kiln_buf_free(&e);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "external data"), "%s", err.msg);
    /* a packed varint run that ends mid-varint */
    kiln_pb_put_uint(&b, 2, 7);
    kiln_pb_put_bytes(&b, 7, "\x81", 1);
    v = decode(&b, KILN_VALUE_TENSOR, &err, &st);
    CHECK(st == KILN_E_INVALID_MODEL && strstr(err.msg, "inside a varint"), "%s", err.msg);
    (void)v;
}

static bool same_value(const struct kiln_value *a, const struct kiln_value *b)
{
    if (a->kind != b->kind || a->count != b->count) return false;
    if (a->kind == KILN_VALUE_TENSOR) {
        if (a->t.dtype != b->t.dtype || a->t.rank != b->t.rank) return false;
        if (memcmp(a->t.dims, b->t.dims, (size_t)a->t.rank * sizeof(int64_t))) return false;
        size_t n = kiln_tensor_numel(&a->t);
        if (a->t.dtype == KILN_DTYPE_STRING) {
            for (size_t i = 0; i < n; i++)
                if (strcmp(((char **)a->t.data)[i], ((char **)b->t.data)[i])) return false;
            return true;
        }
        return !n || !memcmp(a->t.data, b->t.data, kiln_tensor_nbytes(&a->t));
    }
    if (a->elem_dtype != b->elem_dtype) return false;
    if (a->kind == KILN_VALUE_OPTIONAL && a->elem_kind != b->elem_kind) return false;
    for (size_t i = 0; i < a->count; i++)
        if (!same_value(a->items[i], b->items[i])) return false;
    return true;
}

/* Every data type survives encode -> decode (sub-byte types are repacked). */
static void test_roundtrip_dtypes(void)
{
    for (int dt = 1; dt < KILN_DTYPE_COUNT_; dt++) {
        const int64_t dims[2] = {3, 3};
        struct kiln_value *v = NULL, *w = NULL;
        kiln_err err = {0};
        kiln_status st = kiln_value_new_tensor((kiln_dtype)dt, 2, dims, &v, &err);
        CHECK(st == KILN_OK, "%s", err.msg);
        if (st) continue;
        size_t esz = kiln_dtype_size((kiln_dtype)dt);
        uint8_t *d = v->t.data;
        for (size_t i = 0; i < 9; i++) {
            if (dt == KILN_DTYPE_STRING) {
                char *s = kiln_malloc(8);
                snprintf(s, 8, "s%zu", i);
                ((char **)d)[i] = s;
                continue;
            }
            for (size_t j = 0; j < esz; j++) d[i * esz + j] = (uint8_t)(i * 37 + j * 11 + 1);
            /* in memory, sub-byte values are unpacked and (int4/int2) sign-extended */
            if (dt == KILN_DTYPE_U4 || dt == KILN_DTYPE_F4E2M1) d[i] &= 0xf;
            if (dt == KILN_DTYPE_I4) d[i] = (uint8_t)((int8_t)(d[i] << 4) >> 4);
            if (dt == KILN_DTYPE_U2) d[i] &= 3;
            if (dt == KILN_DTYPE_I2) d[i] = (uint8_t)((int8_t)(d[i] << 6) >> 6);
            if (dt == KILN_DTYPE_BOOL) d[i] &= 1;
        }
        struct kiln_buf b = {0};
        st = kiln_onnx_encode_value(v, "t", &b, &err);
        CHECK(st == KILN_OK, "%s", err.msg);
        st = kiln_onnx_decode_value(b.data, b.len, KILN_VALUE_TENSOR, &w, &err);
        CHECK(st == KILN_OK, "%s: %s", kiln_dtype_name((kiln_dtype)dt), err.msg);
        if (w) CHECK(same_value(v, w), "%s round trip", kiln_dtype_name((kiln_dtype)dt));
        if (dt == KILN_DTYPE_I4) CHECK(b.len < 30, "int4 is packed on the wire (%zu bytes)", b.len);
        kiln_buf_free(&b);
        kiln_value_free(v);
        kiln_value_free(w);
    }
}

static struct kiln_value *small_tensor(float base, int64_t n)
{
    struct kiln_value *v;
    kiln_err err;
    if (kiln_value_new_tensor(KILN_DTYPE_F32, 1, &n, &v, &err)) return NULL;
    for (int64_t i = 0; i < n; i++) ((float *)v->t.data)[i] = base + (float)i;
    return v;
}

static void test_sequences_optionals(void)
{
    kiln_err err = {0};
    kiln_status st;
    struct kiln_value *seq = kiln_value_new(KILN_VALUE_SEQUENCE);
    CHECK(kiln_value_append(seq, small_tensor(1, 2), &err) == KILN_OK, "append");
    CHECK(kiln_value_append(seq, small_tensor(10, 3), &err) == KILN_OK, "append");
    seq->elem_dtype = KILN_DTYPE_F32;
    struct kiln_buf b = {0};
    CHECK(kiln_onnx_encode_value(seq, "s", &b, &err) == KILN_OK, "%s", err.msg);
    struct kiln_value *v = NULL;
    st = kiln_onnx_decode_value(b.data, b.len, KILN_VALUE_SEQUENCE, &v, &err);
    CHECK(st == KILN_OK && same_value(seq, v), "sequence round trip: %s", err.msg);
    kiln_value_free(v);
    /* kind 0 guesses a sequence */
    st = kiln_onnx_decode_value(b.data, b.len, 0, &v, &err);
    CHECK(st == KILN_OK && v->kind == KILN_VALUE_SEQUENCE && v->count == 2, "guess: %s", err.msg);
    kiln_value_free(v);
    kiln_buf_free(&b);

    /* an empty sequence also guesses right, and keeps nothing */
    struct kiln_value *empty = kiln_value_new(KILN_VALUE_SEQUENCE);
    CHECK(kiln_onnx_encode_value(empty, NULL, &b, &err) == KILN_OK, "%s", err.msg);
    st = kiln_onnx_decode_value(b.data, b.len, 0, &v, &err);
    CHECK(st == KILN_OK && v->kind == KILN_VALUE_SEQUENCE && v->count == 0, "empty seq: %s",
          err.msg);
    kiln_value_free(v);
    kiln_buf_free(&b);

    /* nested: a sequence of sequences inside an optional */
    struct kiln_value *outer = kiln_value_new(KILN_VALUE_SEQUENCE);
    CHECK(kiln_value_append(outer, seq, &err) == KILN_OK, "nest");
    outer->elem_dtype = KILN_DTYPE_F32;
    struct kiln_value *opt = kiln_value_new(KILN_VALUE_OPTIONAL);
    CHECK(kiln_value_append(opt, outer, &err) == KILN_OK, "opt");
    opt->elem_kind = KILN_VALUE_SEQUENCE;
    opt->elem_dtype = KILN_DTYPE_F32;
    CHECK(kiln_onnx_encode_value(opt, "o", &b, &err) == KILN_OK, "%s", err.msg);
    st = kiln_onnx_decode_value(b.data, b.len, KILN_VALUE_OPTIONAL, &v, &err);
    CHECK(st == KILN_OK && same_value(opt, v), "optional(seq(seq)) round trip: %s", err.msg);
    kiln_value_free(v);
    kiln_buf_free(&b);
    kiln_value_free(opt);

    /* an empty optional of a tensor: none, elem_kind TENSOR */
    pb_put_str(&b, 1, "o");
    kiln_pb_put_uint(&b, 2, 1);
    st = kiln_onnx_decode_value(b.data, b.len, KILN_VALUE_OPTIONAL, &v, &err);
    CHECK(st == KILN_OK && v->count == 0 && v->elem_kind == KILN_VALUE_TENSOR, "none: %s",
          err.msg);
    kiln_value_free(v);
    kiln_value_free(empty);
    kiln_buf_free(&b);
}

static void test_npy(void)
{
    kiln_err err = {0};
    kiln_status st;
    struct kiln_value *v = NULL;
    /* v1.0 by hand: shape (2,) int16 */
    static const char h1[] = "{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }";
    struct kiln_buf b = {0};
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, sizeof h1 - 1 + 1, 0};
    kiln_buf_append(&b, pre, 10);
    kiln_buf_append(&b, h1, sizeof h1 - 1);
    kiln_buf_append(&b, "\n", 1);
    int16_t vals[2] = {-7, 300};
    kiln_buf_append(&b, vals, 4);
    st = kiln_onnx_decode_value(b.data, b.len, 0, &v, &err);
    CHECK(st == KILN_OK && v->t.dtype == KILN_DTYPE_I16 && v->t.rank == 1 && v->t.dims[0] == 2 &&
              ((int16_t *)v->t.data)[1] == 300, "npy v1: %s", err.msg);
    kiln_value_free(v);
    kiln_buf_free(&b);
    /* v2.0, scalar float64, big-endian */
    static const char h2[] = "{'descr': '>f8', 'fortran_order': False, 'shape': ()}\n";
    uint8_t pre2[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, sizeof h2 - 1, 0, 0, 0};
    kiln_buf_append(&b, pre2, 12);
    kiln_buf_append(&b, h2, sizeof h2 - 1);
    kiln_buf_append(&b, "\x40\x09\x00\x00\x00\x00\x00\x00", 8); /* 3.125 */
    st = kiln_onnx_decode_value(b.data, b.len, KILN_VALUE_TENSOR, &v, &err);
    CHECK(st == KILN_OK && v->t.rank == 0 && *(double *)v->t.data == 3.125, "npy v2: %s", err.msg);
    kiln_value_free(v);
    kiln_buf_free(&b);
    /* Fortran order is refused */
    static const char h3[] = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n";
    pre[8] = sizeof h3 - 1;
    kiln_buf_append(&b, pre, 10);
    kiln_buf_append(&b, h3, sizeof h3 - 1);
    kiln_buf_append(&b, vals, 4);
    kiln_buf_append(&b, vals, 4);
    kiln_buf_append(&b, vals, 4);
    kiln_buf_append(&b, vals, 4);
    st = kiln_onnx_decode_value(b.data, b.len, 0, &v, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "Fortran"), "fortran: %s", err.msg);
    kiln_buf_free(&b);
    /* hostile shape: refused before allocating */
    static const char h4[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999,), }\n";
    pre[8] = sizeof h4 - 1;
    kiln_buf_append(&b, pre, 10);
    kiln_buf_append(&b, h4, sizeof h4 - 1);
    st = kiln_onnx_decode_value(b.data, b.len, 0, &v, &err);
    CHECK(st == KILN_E_INVALID_ARG && strstr(err.msg, "needs"), "huge npy: %s", err.msg);
    kiln_buf_free(&b);

    /* write_npy -> read_file, every supported dtype; data offset multiple of 64 */
    static const kiln_dtype dts[] = {KILN_DTYPE_F32, KILN_DTYPE_F64, KILN_DTYPE_F16,
                                     KILN_DTYPE_I8, KILN_DTYPE_I16, KILN_DTYPE_I32,
                                     KILN_DTYPE_I64, KILN_DTYPE_U8, KILN_DTYPE_U16,
                                     KILN_DTYPE_U32, KILN_DTYPE_U64, KILN_DTYPE_BOOL};
    char path[] = "/tmp/kiln_onnx_npy_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        const int64_t dims[3] = {2, 1, 3};
        struct kiln_value *a = NULL, *r = NULL;
        CHECK(kiln_value_new_tensor(dts[k], 3, dims, &a, &err) == KILN_OK, "%s", err.msg);
        uint8_t *d = a->t.data;
        for (size_t i = 0; i < kiln_tensor_nbytes(&a->t); i++) d[i] = (uint8_t)(i * 7 + 1);
        if (dts[k] == KILN_DTYPE_BOOL)
            for (size_t i = 0; i < 6; i++) d[i] &= 1;
        st = kiln_value_write_npy(a, path, &err);
        CHECK(st == KILN_OK, "%s", err.msg);
        struct stat sb;
        stat(path, &sb);
        CHECK((sb.st_size - (off_t)kiln_tensor_nbytes(&a->t)) % 64 == 0, "npy header padding");
        st = kiln_value_read_file(path, 0, &r, &err);
        CHECK(st == KILN_OK && same_value(a, r), "npy round trip %s: %s", kiln_dtype_name(dts[k]),
              err.msg);
        kiln_value_free(a);
        kiln_value_free(r);
    }
    /* a sequence cannot be written as .npy; bfloat16 has no .npy type */
    struct kiln_value *s = kiln_value_new(KILN_VALUE_SEQUENCE);
    st = kiln_value_write_npy(s, path, &err);
    CHECK(st == KILN_E_INVALID_ARG, "sequence to npy: %s", err.msg);
    kiln_value_free(s);
    const int64_t one = 1;
    CHECK(kiln_value_new_tensor(KILN_DTYPE_BF16, 1, &one, &s, &err) == KILN_OK, "bf16");
    st = kiln_value_write_npy(s, path, &err);
    CHECK(st == KILN_E_UNSUPPORTED && strstr(err.msg, "bfloat16"), "bf16 to npy: %s", err.msg);
    kiln_value_free(s);
    unlink(path);
}

static void test_files(void)
{
    kiln_err err = {0};
    char dir[] = "/tmp/kiln_onnx_files_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[4096];
    snprintf(path, sizeof path, "%s/out.pb", dir);
    struct kiln_value *v = small_tensor(0.5f, 5), *r = NULL;
    CHECK(kiln_value_write_pb(v, "y", path, &err) == KILN_OK, "%s", err.msg);
    CHECK(kiln_value_read_file(path, KILN_VALUE_TENSOR, &r, &err) == KILN_OK && same_value(v, r),
          "write_pb/read_file: %s", err.msg);
    kiln_value_free(r);
    /* overwrite in place; no temporary file is left behind */
    CHECK(kiln_value_write_pb(v, NULL, path, &err) == KILN_OK, "%s", err.msg);
    int entries = 0;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    if (p) {
        CHECK(fscanf(p, "%d", &entries) == 1, "ls");
        pclose(p);
    }
    CHECK(entries == 1, "%d files in the folder after two writes", entries);
    /* writing into a missing folder fails with IO and names the path */
    CHECK(kiln_value_write_pb(v, NULL, "/nonexistent/kiln/x.pb", &err) == KILN_E_IO &&
              strstr(err.msg, "/nonexistent/kiln/x.pb"), "%s", err.msg);
    kiln_value_free(v);

    /* an empty file maps to a valid zero-length buffer; decoding it as a tensor fails */
    snprintf(path, sizeof path, "%s/empty.pb", dir);
    FILE *f = fopen(path, "wb");
    fclose(f);
    struct kiln_mapping m;
    CHECK(kiln_map_file(path, &m, &err) == KILN_OK && m.size == 0 && m.data != NULL, "empty map");
    kiln_unmap(&m);
    CHECK(kiln_value_read_file(path, KILN_VALUE_TENSOR, &r, &err) == KILN_E_INVALID_MODEL &&
              strstr(err.msg, "empty.pb"), "%s", err.msg);
    unlink(path);
    CHECK(kiln_map_file(dir, &m, &err) == KILN_E_IO && strstr(err.msg, "not a regular file"),
          "%s", err.msg);
    snprintf(path, sizeof path, "%s/out.pb", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    test_typed_fields();
    test_tensor_errors();
    test_roundtrip_dtypes();
    test_sequences_optionals();
    test_npy();
    test_files();
    return test_summary("test_onnx_values");
}
