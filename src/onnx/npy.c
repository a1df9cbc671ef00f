/* npy.c: NumPy .npy files <-> tensor values.
 *
 * Follows the NPY format description (numpy.lib.format, versions 1.0, 2.0 and 3.0): the magic
 * "\x93NUMPY", a version, a little-endian header length (2 bytes in 1.0, 4 in 2.0/3.0) and a
 * Python dict literal with 'descr', 'fortran_order' and 'shape', then C-ordered data.
 * Big-endian data ('>') is byte-swapped; Fortran order and object/structured dtypes are
 * refused. We write version 1.0 with the header padded to a multiple of 64 bytes.
 */
#include <stdio.h>
#include <string.h>

#include "onnx/pbwire.h"

static const struct {
    const char *code; /* descr without the byte-order character */
    kiln_dtype dt;
} npy_types[] = {
    {"f4", KILN_DTYPE_F32}, {"f8", KILN_DTYPE_F64}, {"f2", KILN_DTYPE_F16},
    {"i1", KILN_DTYPE_I8},  {"i2", KILN_DTYPE_I16}, {"i4", KILN_DTYPE_I32},
    {"i8", KILN_DTYPE_I64}, {"u1", KILN_DTYPE_U8},  {"u2", KILN_DTYPE_U16},
    {"u4", KILN_DTYPE_U32}, {"u8", KILN_DTYPE_U64}, {"b1", KILN_DTYPE_BOOL},
    {"c8", KILN_DTYPE_C64}, {"c16", KILN_DTYPE_C128},
};

bool kiln_npy_is(const uint8_t *buf, size_t len)
{
    return len >= 6 && !memcmp(buf, "\x93NUMPY", 6);
}

struct hdr {
    const char *p, *end;
};

static void skip_ws(struct hdr *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static bool eat(struct hdr *h, char ch)
{
    skip_ws(h);
    if (h->p < h->end && *h->p == ch) {
        h->p++;
        return true;
    }
    return false;
}

/* A quoted Python string into out (max size-1 chars). */
static bool parse_str(struct hdr *h, char *out, size_t size)
{
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return false;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (n + 1 >= size) return false;
        out[n++] = *h->p++;
    }
    if (h->p >= h->end) return false;
    h->p++;
    out[n] = 0;
    return true;
}

static bool parse_word(struct hdr *h, const char *w)
{
    skip_ws(h);
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n)) return false;
    h->p += n;
    return true;
}

static bool parse_shape(struct hdr *h, int *rank, int64_t *dims, kiln_err *err, kiln_status *st)
{
    if (!eat(h, '(')) return false;
    *rank = 0;
    for (;;) {
        if (eat(h, ')')) return true;
        skip_ws(h);
        int64_t v = 0;
        const char *start = h->p;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return false;
            v = v * 10 + (*h->p++ - '0');
        }
        if (h->p == start) return false;
        if (h->p < h->end && *h->p == 'L') h->p++; /* Python 2 longs */
        if (*rank >= KILN_MAX_RANK) {
            *st = kiln_err_set(err, KILN_E_LIMIT, ".npy shape has more than %d dims",
                               KILN_MAX_RANK);
            return false;
        }
        dims[(*rank)++] = v;
        if (!eat(h, ',')) return eat(h, ')');
    }
}

kiln_status kiln_npy_decode(const uint8_t *buf, size_t len, struct kiln_value **out, kiln_err *err)
{
    *out = NULL;
    if (!kiln_npy_is(buf, len) || len < 10)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "not a .npy file (bad magic or truncated)");
    int major = buf[6];
    size_t hlen, off;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return kiln_err_set(err, KILN_E_INVALID_ARG, ".npy header is truncated");
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
        off = 12;
    } else {
        return kiln_err_set(err, KILN_E_UNSUPPORTED, ".npy version %d.%d is not supported", major,
                            buf[7]);
    }
    if (hlen > len - off)
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            ".npy header of %zu bytes runs past the end of the file", hlen);
    struct hdr h = {(const char *)buf + off, (const char *)buf + off + hlen};
    char descr[16] = "", key[32];
    bool fortran = false, has_descr = false, has_shape = false;
    int rank = 0;
    int64_t dims[KILN_MAX_RANK];
    kiln_status st = KILN_E_INVALID_ARG;
    if (!eat(&h, '{')) goto bad;
    while (!eat(&h, '}')) {
        if (!parse_str(&h, key, sizeof key) || !eat(&h, ':')) goto bad;
        if (!strcmp(key, "descr")) {
            if (!parse_str(&h, descr, sizeof descr)) {
                return kiln_err_set(err, KILN_E_UNSUPPORTED,
                                    ".npy descr is not a simple type string (structured dtypes "
                                    "are not supported)");
            }
            has_descr = true;
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_word(&h, "True")) fortran = true;
            else if (!parse_word(&h, "False")) goto bad;
        } else if (!strcmp(key, "shape")) {
            if (!parse_shape(&h, &rank, dims, err, &st)) {
                if (st != KILN_E_INVALID_ARG) return st;
                goto bad;
            }
            has_shape = true;
        } else {
            goto bad;
        }
        if (!eat(&h, ',')) {
            if (!eat(&h, '}')) goto bad;
            break;
        }
    }
    if (!has_descr || !has_shape) goto bad;
    if (fortran)
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            ".npy array is in Fortran order; save it C-ordered "
                            "(np.ascontiguousarray)");
    char order = descr[0];
    if (order != '<' && order != '|' && order != '=' && order != '>')
        return kiln_err_set(err, KILN_E_UNSUPPORTED, ".npy dtype '%s' is not supported", descr);
    kiln_dtype dt = KILN_DTYPE_UNDEFINED;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (!strcmp(descr + 1, npy_types[i].code)) dt = npy_types[i].dt;
    if (!dt) return kiln_err_set(err, KILN_E_UNSUPPORTED, ".npy dtype '%s' is not supported", descr);

    /* Check the size before allocating: a hostile header may declare terabytes. */
    size_t esz = kiln_dtype_size(dt), nbytes = esz, have = len - off - hlen;
    bool overflow = false;
    for (int i = 0; i < rank; i++) {
        /* As for TensorProto dims: one past 2^40 is refused even beside a 0. */
        if ((uint64_t)dims[i] > KILN_MAX_NUMEL) {
            char sb[300];
            return kiln_err_set(err, KILN_E_LIMIT, ".npy shape %s has a dim larger than 2^40",
                                kiln_shape_str(rank, dims, sb, sizeof sb));
        }
        if (!kiln_mul_size(nbytes, (size_t)dims[i], &nbytes)) overflow = true;
    }
    if (overflow || have != nbytes) {
        char sb[300];
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            ".npy data has %zu bytes; shape %s of %s needs %zu", have,
                            kiln_shape_str(rank, dims, sb, sizeof sb), kiln_dtype_name(dt), nbytes);
    }
    struct kiln_value *v;
    KILN_TRY(kiln_value_new_tensor(dt, rank, dims, &v, err));
    if (nbytes) memcpy(v->t.data, buf + off + hlen, nbytes);
    size_t comp = dt == KILN_DTYPE_C64 ? 4 : dt == KILN_DTYPE_C128 ? 8 : esz;
    if (order == '>' && comp > 1) {
        uint8_t *d = v->t.data;
        for (size_t i = 0; i + comp <= nbytes; i += comp)
            for (size_t a = 0, b = comp - 1; a < b; a++, b--) {
                uint8_t tmp = d[i + a];
                d[i + a] = d[i + b];
                d[i + b] = tmp;
            }
    }
    *out = v;
    return KILN_OK;
bad:
    return kiln_err_set(err, KILN_E_INVALID_ARG, ".npy header is malformed: '%.*s'",
                        (int)(hlen > 200 ? 200 : hlen), (const char *)buf + off);
}

kiln_status kiln_npy_encode(const struct kiln_value *v, struct kiln_buf *b, kiln_err *err)
{
    if (v->kind != KILN_VALUE_TENSOR)
        return kiln_err_set(err, KILN_E_INVALID_ARG, ".npy holds tensors only; this value is a %s",
                            v->kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
    const char *code = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dt == v->t.dtype) code = npy_types[i].code;
    if (!code)
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "%s tensors have no .npy dtype",
                            kiln_dtype_name(v->t.dtype));
    char hdr[1024];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
                     kiln_dtype_size(v->t.dtype) == 1 ? '|' : '<', code);
    for (int i = 0; i < v->t.rank; i++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld%s", (long long)v->t.dims[i],
                      v->t.rank == 1 ? "," : i + 1 < v->t.rank ? ", " : "");
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    /* Pad with spaces and a final newline so data starts at a multiple of 64. */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff),
                       (uint8_t)(hlen >> 8)};
    kiln_buf_append(b, pre, 10);
    kiln_buf_append(b, hdr, (size_t)n);
    for (size_t i = 0; i < pad; i++) kiln_buf_append(b, " ", 1);
    kiln_buf_append(b, "\n", 1);
    if (kiln_tensor_numel(&v->t)) kiln_buf_append(b, v->t.data, kiln_tensor_nbytes(&v->t));
    if (b->failed) return kiln_err_set(err, KILN_E_NOMEM, "out of memory encoding .npy");
    return KILN_OK;
}
