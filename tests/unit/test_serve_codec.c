/* test_serve_codec.c: kiln serve's binary tensor codec (tools/serve/codec.c, Triton's
 * binary tensor data extension): the datatype names, fixed-size tensors decoded exactly,
 * BOOL bytes normalized, BYTES elements (4-byte little-endian length + data) decoded and
 * re-encoded, and every malformed buffer refused with a message naming the input: wrong
 * sizes, every truncated prefix of a BYTES buffer, trailing bytes, lengths past the end
 * (0xffffffff included), negative dims, element counts over the limit or overflowing.
 * Buffers are allocated at their exact size so that ASan catches any over-read. Also the
 * classification extension's top-k strings (tools/serve/classify.c): order, ties, NaN, labels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "test_support.h"

static void test_dtypes(void)
{
    static const kiln_dtype all[] = {KILN_DTYPE_BOOL, KILN_DTYPE_U8, KILN_DTYPE_U16, KILN_DTYPE_U32,
                                     KILN_DTYPE_U64, KILN_DTYPE_I8, KILN_DTYPE_I16, KILN_DTYPE_I32,
                                     KILN_DTYPE_I64, KILN_DTYPE_F16, KILN_DTYPE_F32, KILN_DTYPE_F64,
                                     KILN_DTYPE_STRING, KILN_DTYPE_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *k = sv_dtype_kserve(all[i]), *c = sv_dtype_config(all[i]);
        CHECK(k && c && sv_dtype_from_kserve(k) == all[i] && sv_dtype_from_config(c) == all[i], "%s round trip",
              kiln_dtype_name(all[i]));
    }
    CHECK(strcmp(sv_dtype_kserve(KILN_DTYPE_STRING), "BYTES") == 0 &&
              strcmp(sv_dtype_config(KILN_DTYPE_STRING), "TYPE_STRING") == 0,
          "strings are BYTES / TYPE_STRING");
    CHECK(sv_dtype_kserve(KILN_DTYPE_C64) == NULL && sv_dtype_from_kserve("FP8") == KILN_DTYPE_UNDEFINED &&
              sv_dtype_from_config("FP32") == KILN_DTYPE_UNDEFINED,
          "unknown names");
    CHECK(sv_dtype_size(KILN_DTYPE_F16) == 2 && sv_dtype_size(KILN_DTYPE_I64) == 8 &&
              sv_dtype_size(KILN_DTYPE_STRING) == 0,
          "element sizes");
}

/* Decodes `len` bytes copied into an exact-size buffer. */
static bool decode(kiln_dtype dt, int rank, const int64_t *dims, const void *bytes, size_t len, size_t max_elems,
                   struct sv_tensor *t, char *err, size_t size)
{
    unsigned char *buf = malloc(len ? len : 1);
    if (len) memcpy(buf, bytes, len);
    bool ok = sv_tensor_from_binary("in0", dt, rank, dims, buf, len, max_elems, t, err, size);
    free(buf); /* the tensor must not point into the request buffer */
    return ok;
}

static void test_fixed(void)
{
    float x[6] = {1.5f, -2, 0, 3.25f, 1e30f, -0.0f};
    int64_t dims[2] = {2, 3};
    struct sv_tensor t;
    char err[512];
    CHECK(decode(KILN_DTYPE_F32, 2, dims, x, sizeof x, 100, &t, err, sizeof err), "FP32: %s", err);
    CHECK(t.v && kiln_value_numel(t.v) == 6 && memcmp(kiln_value_data(t.v), x, sizeof x) == 0 &&
              kiln_value_dims(t.v)[1] == 3,
          "FP32 values and shape");
    unsigned char out[24];
    CHECK(sv_binary_size(KILN_DTYPE_F32, kiln_value_data(t.v), 3, 3) == 12, "size of a row");
    sv_binary_write(KILN_DTYPE_F32, kiln_value_data(t.v), 3, 3, out);
    CHECK(memcmp(out, x + 3, 12) == 0, "writes the second row");
    sv_tensor_fini(&t);
    err[0] = 0;
    CHECK(!decode(KILN_DTYPE_F32, 2, dims, x, sizeof x - 4, 100, &t, err, sizeof err) && t.v == NULL &&
              strstr(err, "input 'in0': binary data has 20 bytes; its shape and datatype need 24"),
          "short buffer: %s", err);
    CHECK(!decode(KILN_DTYPE_F32, 2, dims, x, sizeof x, 5, &t, err, sizeof err) && strstr(err, "more than 5"),
          "element limit: %s", err);
    int64_t neg[2] = {2, -3};
    CHECK(!decode(KILN_DTYPE_F32, 2, neg, x, sizeof x, 100, &t, err, sizeof err) && strstr(err, "dim 1 is -3"),
          "negative dim: %s", err);
    int64_t huge[3] = {1ll << 40, 1ll << 40, 1ll << 40};
    CHECK(!decode(KILN_DTYPE_F32, 3, huge, x, sizeof x, SIZE_MAX, &t, err, sizeof err) && strstr(err, "more than"),
          "overflowing element count: %s", err);
    unsigned char b[4] = {0, 1, 2, 255};
    int64_t four = 4;
    CHECK(decode(KILN_DTYPE_BOOL, 1, &four, b, 4, 100, &t, err, sizeof err), "BOOL: %s", err);
    const unsigned char *bv = kiln_value_data(t.v);
    CHECK(bv[0] == 0 && bv[1] == 1 && bv[2] == 1 && bv[3] == 1, "BOOL bytes become 0/1");
    sv_tensor_fini(&t);
    int64_t zero = 0;
    CHECK(decode(KILN_DTYPE_I64, 1, &zero, NULL, 0, 100, &t, err, sizeof err) && kiln_value_numel(t.v) == 0,
          "an empty tensor: %s", err);
    sv_tensor_fini(&t);
    float cx[8] = {0};
    CHECK(!decode(KILN_DTYPE_C64, 1, &four, cx, sizeof cx, 100, &t, err, sizeof err) && strstr(err, "no binary form"),
          "complex has no binary form: %s", err);
}

/* Encodes strings in the binary format into buf; returns the byte count. */
static size_t encode_strings(const char *const *s, size_t n, unsigned char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = (uint32_t)strlen(s[i]);
        buf[o] = (unsigned char)l, buf[o + 1] = (unsigned char)(l >> 8);
        buf[o + 2] = (unsigned char)(l >> 16), buf[o + 3] = (unsigned char)(l >> 24);
        memcpy(buf + o + 4, s[i], l);
        o += 4 + l;
    }
    return o;
}

static void test_bytes(void)
{
    const char *s[4] = {"kiln", "", "\xc3\xa9t\xc3\xa9", "a longer string of text"};
    unsigned char buf[128];
    size_t len = encode_strings(s, 4, buf);
    int64_t dims[2] = {2, 2};
    struct sv_tensor t;
    char err[512];
    CHECK(decode(KILN_DTYPE_STRING, 2, dims, buf, len, 100, &t, err, sizeof err), "BYTES: %s", err);
    if (t.v) {
        char *const *e = kiln_value_data(t.v);
        for (int i = 0; i < 4; i++) CHECK(strcmp(e[i], s[i]) == 0, "element %d: '%s'", i, e[i]);
        CHECK(sv_binary_size(KILN_DTYPE_STRING, e, 0, 4) == len, "size of the encoding");
        unsigned char again[128];
        sv_binary_write(KILN_DTYPE_STRING, e, 0, 4, again);
        CHECK(memcmp(again, buf, len) == 0, "re-encoding gives the same bytes");
        CHECK(sv_binary_size(KILN_DTYPE_STRING, e, 2, 1) == 4 + strlen(s[2]), "size of one element");
    }
    sv_tensor_fini(&t); /* puts kiln's pointers back: no double free, no leak under ASan */
    /* Every shorter prefix is refused, with a message naming the input. */
    for (size_t k = 0; k < len; k++) {
        err[0] = 0;
        bool ok = decode(KILN_DTYPE_STRING, 2, dims, buf, k, 100, &t, err, sizeof err);
        CHECK(!ok && t.v == NULL && strstr(err, "input 'in0'"), "prefix of %zu bytes: %s", k, err);
        if (ok) sv_tensor_fini(&t);
    }
    unsigned char longer[130];
    memcpy(longer, buf, len);
    longer[len] = 'x';
    CHECK(!decode(KILN_DTYPE_STRING, 2, dims, longer, len + 1, 100, &t, err, sizeof err) &&
              strstr(err, "1 bytes after its 4 elements"),
          "trailing byte: %s", err);
    unsigned char bad[8] = {0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd'};
    int64_t one = 1;
    CHECK(!decode(KILN_DTYPE_STRING, 1, &one, bad, 8, 100, &t, err, sizeof err) &&
              strstr(err, "declares 4294967295 bytes but only 4 remain"),
          "a length past the end: %s", err);
    CHECK(!decode(KILN_DTYPE_STRING, 2, dims, bad, 8, 100, &t, err, sizeof err) && strstr(err, "at least 16"),
          "too few bytes for the element count: %s", err);
    /* A string set from JSON-like pieces. */
    CHECK(sv_tensor_create("in1", KILN_DTYPE_STRING, 1, &one, 10, &t, err, sizeof err), "create: %s", err);
    const char *piece = "abcdef";
    size_t plen = 3;
    CHECK(sv_tensor_set_strings(&t, &piece, &plen, 1, err, sizeof err) &&
              strcmp(((char *const *)kiln_value_data(t.v))[0], "abc") == 0,
          "set_strings copies the given length");
    sv_tensor_fini(&t);
}

/* Random buffers of random lengths as BYTES tensors: decode or a clean refusal, never a
 * crash or an over-read (ASan). */
static void test_random_bytes(void)
{
    rng_seed(9);
    for (int it = 0; it < 20000; it++) {
        size_t len = (size_t)rng_int(64);
        unsigned char *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(rng_int(4) == 0 ? rng_int(256) : rng_int(6));
        int64_t n = rng_int(5);
        struct sv_tensor t;
        char err[256] = "";
        bool ok = sv_tensor_from_binary("r", KILN_DTYPE_STRING, 1, &n, buf, len, 100, &t, err, sizeof err);
        if (ok) {
            char *const *e = kiln_value_data(t.v);
            CHECK(sv_binary_size(KILN_DTYPE_STRING, e, 0, (size_t)n) <= len, "decoded strings fit the buffer");
            sv_tensor_fini(&t);
        } else {
            CHECK(err[0] && t.v == NULL, "refusal %d has a message", it);
        }
        free(buf);
    }
}

/* The classification extension's top-k strings (tools/serve/classify.c). */
static void test_classify(void)
{
    float v[8] = {0.5f, 2.0f, 2.0f, -1.0f, /* row 1: a tie between indices 1 and 2 */
                  NAN, 3.0f, 1.0f, 0.25f}; /* row 2: NaN sorts last */
    char *labels[2] = {"zero", "one"};
    char **s = NULL, *buf = NULL, err[256] = "";
    CHECK(sv_classify(KILN_DTYPE_F32, v, 0, 8, 2, 3, labels, 2, &s, &buf, err, sizeof err), "classify: %s", err);
    if (s) {
        const char *want[6] = {"2.000000:1:one", "2.000000:2", "0.500000:0:zero", "3.000000:1:one", "1.000000:2",
                               "0.250000:3"};
        for (int i = 0; i < 6; i++) CHECK(strcmp(s[i], want[i]) == 0, "string %d: '%s', want '%s'", i, s[i], want[i]);
    }
    free(s), free(buf);
    int64_t iv[3] = {-5, 7, 7};
    CHECK(sv_classify(KILN_DTYPE_I64, iv, 0, 3, 1, 3, NULL, 0, &s, &buf, err, sizeof err) &&
              strcmp(s[0], "7.000000:1") == 0 && strcmp(s[2], "-5.000000:0") == 0,
          "int64 values");
    free(s), free(buf);
    CHECK(sv_classify(KILN_DTYPE_F32, v + 4, 0, 4, 1, 4, NULL, 0, &s, &buf, err, sizeof err) &&
              strcmp(s[3], "nan:0") == 0,
          "NaN last: '%s'", s ? s[3] : "");
    free(s), free(buf);
    CHECK(!sv_classify(KILN_DTYPE_F32, v, 0, 8, 2, 5, NULL, 0, &s, &buf, err, sizeof err) &&
              strstr(err, "out of range [1, 4]") && s == NULL,
          "k above the row: %s", err);
    CHECK(!sv_classify(KILN_DTYPE_F32, v, 0, 8, 2, 0, NULL, 0, &s, &buf, err, sizeof err), "k = 0");
    CHECK(sv_classify_supported(KILN_DTYPE_U16) && sv_classify_supported(KILN_DTYPE_BOOL) &&
              !sv_classify_supported(KILN_DTYPE_STRING) && !sv_classify_supported(KILN_DTYPE_F16),
          "supported types");
}

int main(void)
{
    test_classify();
    test_dtypes();
    test_fixed();
    test_bytes();
    test_random_bytes();
    return test_summary("test_serve_codec");
}
