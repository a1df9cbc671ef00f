/* tensor_pb.c: TensorProto and SparseTensorProto <-> struct kiln_tensor.
 *
 * Follows onnx/onnx.proto (TensorProto, IR version 11): data comes from raw_data (fixed-width
 * little-endian; 4-bit types two per byte low nibble first, 2-bit types four per byte from
 * the LSB), from the typed repeated fields (float_data, int32_data, string_data,
 * int64_data, double_data, uint64_data; packed or not), or from external data
 * (data_location = EXTERNAL, resolved by load.c). In memory every element takes whole
 * bytes (kiln.h): sub-byte types are unpacked, int4/int2 sign-extended.
 *
 * The element count must match the dims exactly: a short initializer is a broken model, and
 * guessing (padding, broadcasting a single value) would hide it. Data is borrowed from the
 * mapped file when the sink allows it and the bytes are aligned to the element size;
 * otherwise it is copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln's tensor decoder assumes a little-endian host (ONNX raw_data is little-endian)"
#endif

enum { TP_DIMS = 1, TP_DATA_TYPE = 2, TP_SEGMENT = 3, TP_FLOAT = 4, TP_INT32 = 5,
       TP_STRING = 6, TP_INT64 = 7, TP_NAME = 8, TP_RAW = 9, TP_DOUBLE = 10, TP_UINT64 = 11,
       TP_DOC = 12, TP_EXTERNAL = 13, TP_LOCATION = 14 };

/* Elements packed per byte in raw_data / int32_data: 2 for the 4-bit types, 4 for the 2-bit
 * types, 0 for whole-byte types. */
static int sub_per_byte(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_U4: case KILN_DTYPE_I4: case KILN_DTYPE_F4E2M1: return 2;
    case KILN_DTYPE_U2: case KILN_DTYPE_I2: return 4;
    default: return 0;
    }
}

/* The typed field that carries dt, and how many field entries one element takes (as
 * numerator/denominator: complex 2/1, 4-bit 1/2, 2-bit 1/4). */
static int typed_field(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: case KILN_DTYPE_C64: return TP_FLOAT;
    case KILN_DTYPE_F64: case KILN_DTYPE_C128: return TP_DOUBLE;
    case KILN_DTYPE_I64: return TP_INT64;
    case KILN_DTYPE_U32: case KILN_DTYPE_U64: return TP_UINT64;
    case KILN_DTYPE_STRING: return TP_STRING;
    default: return TP_INT32;
    }
}

static const char *field_name(int f)
{
    switch (f) {
    case TP_FLOAT: return "float_data";
    case TP_INT32: return "int32_data";
    case TP_STRING: return "string_data";
    case TP_INT64: return "int64_data";
    case TP_DOUBLE: return "double_data";
    case TP_UINT64: return "uint64_data";
    default: return "data";
    }
}

static int field_fixed(int f) { return f == TP_FLOAT ? 4 : f == TP_DOUBLE ? 8 : 0; }

/* Entries of the typed field that numel elements take. */
static size_t typed_count(kiln_dtype dt, size_t numel)
{
    int per = sub_per_byte(dt);
    if (per) return numel / (size_t)per + (numel % (size_t)per != 0);
    if (dt == KILN_DTYPE_C64 || dt == KILN_DTYPE_C128) return numel * 2;
    return numel;
}

static size_t raw_bytes(kiln_dtype dt, size_t numel)
{
    if (sub_per_byte(dt)) return typed_count(dt, numel);
    return numel * kiln_dtype_size(dt); /* numel <= 2^40, size <= 16: no overflow */
}

/* Unpacks the sub-byte elements of one packed byte into dst[k..] (at most numel). */
static void unpack_byte(kiln_dtype dt, uint8_t byte, uint8_t *dst, size_t k, size_t numel)
{
    int per = sub_per_byte(dt), bits = 8 / per;
    uint8_t mask = (uint8_t)((1u << bits) - 1);
    bool sign = dt == KILN_DTYPE_I4 || dt == KILN_DTYPE_I2;
    for (int j = 0; j < per && k + (size_t)j < numel; j++) {
        uint8_t v = (byte >> (j * bits)) & mask;
        if (sign && (v >> (bits - 1))) v |= (uint8_t)~mask; /* sign-extend */
        dst[k + (size_t)j] = v;
    }
}

static void *sink_alloc(const struct tpb_sink *s, size_t n)
{
    if (s->arena) return kiln_arena_alloc(s->arena, n);
    return kiln_malloc(n);
}

static char *sink_strndup(const struct tpb_sink *s, const uint8_t *p, size_t n)
{
    if (s->arena) return kiln_arena_strndup(s->arena, (const char *)p, n);
    size_t total;
    if (!kiln_add_size(n, 1, &total)) return NULL;
    char *d = kiln_malloc(total);
    if (!d) return NULL;
    if (n) memcpy(d, p, n);
    d[n] = 0;
    return d;
}

static void sink_free_str(const struct tpb_sink *s, char *p)
{
    if (!s->arena) kiln_free(p);
}

/* Releases what kiln_tpb_decode put into t. */
static void tensor_drop(const struct tpb_sink *s, struct kiln_tensor *t)
{
    if (!s->arena) kiln_tensor_fini(t);
    memset(t, 0, sizeof *t);
}

static kiln_status nomem(struct pb_ctx *c, const char *what, size_t n)
{
    return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
}

/* Parses a decimal external_data value ("offset", "length"). */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

struct ext_info {
    char location[4096];
    bool has_location, has_offset, has_length;
    uint64_t offset, length;
};

/* Decodes one StringStringEntryProto of external_data into e. */
static kiln_status decode_ext_entry(struct pb_ctx *c, const uint8_t *p, size_t len,
                                    struct ext_info *e)
{
    struct pb_reader r;
    struct pb_field f;
    const uint8_t *key = NULL, *val = NULL;
    size_t klen = 0, vlen = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(c, &r, &f));
        if (f.num == 1 || f.num == 2) {
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, f.num == 1 ? "key" : "value"));
            if (f.num == 1) key = f.data, klen = f.len;
            else val = f.data, vlen = f.len;
        }
    }
    c->stack[c->depth - 1].cur = 0;
    if (!key) return KILN_OK;
    char vbuf[64];
    if (klen == 8 && !memcmp(key, "location", 8)) {
        if (vlen >= sizeof e->location || (val && memchr(val, 0, vlen)))
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "external data location is too long or "
                                                    "holds a NUL byte");
        if (vlen) memcpy(e->location, val, vlen);
        e->location[vlen] = 0;
        e->has_location = true;
    } else if ((klen == 6 && !memcmp(key, "offset", 6)) ||
               (klen == 6 && !memcmp(key, "length", 6))) {
        bool is_off = key[0] == 'o';
        if (vlen >= sizeof vbuf)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "external data %s is not a number",
                           is_off ? "offset" : "length");
        if (vlen) memcpy(vbuf, val, vlen);
        vbuf[vlen] = 0;
        uint64_t v;
        if (!parse_u64(vbuf, &v))
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "external data %s '%s' is not a number",
                           is_off ? "offset" : "length", vbuf);
        if (is_off) e->offset = v, e->has_offset = true;
        else e->length = v, e->has_length = true;
    }
    /* "checksum" and unknown keys are ignored: verifying a SHA-1 of gigabytes at load
     * time would defeat mmap. */
    return KILN_OK;
}

/* Copies or borrows `n` raw little-endian bytes of whole-byte elements into t. */
static kiln_status take_raw(struct pb_ctx *c, const struct tpb_sink *s, struct kiln_tensor *t,
                            const uint8_t *p, size_t n, size_t numel, bool may_borrow,
                            const char *label)
{
    int per = sub_per_byte(t->dtype);
    if (!numel) return KILN_OK;
    if (!per) {
        size_t esz = kiln_dtype_size(t->dtype);
        size_t align = esz > 8 ? 8 : esz;
        if (may_borrow && ((uintptr_t)p % align) == 0) {
            t->data = (void *)p; /* borrowed: the mapping outlives the model's tensors */
            return KILN_OK;
        }
        t->data = sink_alloc(s, n);
        if (!t->data) return nomem(c, label, n);
        if (!s->arena) t->flags = KILN_TENSOR_OWNS_DATA;
        memcpy(t->data, p, n);
        return KILN_OK;
    }
    uint8_t *d = sink_alloc(s, numel);
    if (!d) return nomem(c, label, numel);
    t->data = d;
    if (!s->arena) t->flags = KILN_TENSOR_OWNS_DATA;
    for (size_t i = 0; i < n; i++) unpack_byte(t->dtype, p[i], d, i * (size_t)per, numel);
    return KILN_OK;
}

/* Iterates the elements of one occurrence of a repeated scalar field. */
struct elems {
    const uint8_t *p, *end;
    int fixed;
    bool single_left;
    uint64_t single;
};

static void elems_init(struct elems *e, const struct pb_field *f, int fixed)
{
    e->fixed = fixed;
    if (f->wire == PB_LEN) {
        e->p = f->data;
        e->end = f->len ? f->data + f->len : f->data;
        e->single_left = false;
    } else {
        e->p = e->end = NULL;
        e->single_left = true;
        e->single = f->u;
    }
}

/* 1: got a value; 0: done; -1: malformed varint. */
static int elems_next(struct elems *e, uint64_t *v)
{
    if (e->single_left) {
        e->single_left = false;
        *v = e->single;
        return 1;
    }
    if (e->p >= e->end) return 0;
    if (e->fixed) {
        uint64_t x = 0;
        for (int i = e->fixed - 1; i >= 0; i--) x = (x << 8) | e->p[i];
        e->p += e->fixed;
        *v = x;
        return 1;
    }
    return kiln_pb_read_varint(&e->p, e->end, v) ? 1 : -1;
}

/* Stores typed-field entry number k (value v) into t's data. */
static void store_typed(struct kiln_tensor *t, size_t k, uint64_t v, size_t numel)
{
    uint8_t *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: case KILN_DTYPE_C64: case KILN_DTYPE_I32: case KILN_DTYPE_U32: {
        uint32_t x = (uint32_t)v;
        memcpy(d + k * 4, &x, 4);
        break;
    }
    case KILN_DTYPE_F64: case KILN_DTYPE_C128: case KILN_DTYPE_I64: case KILN_DTYPE_U64:
        memcpy(d + k * 8, &v, 8);
        break;
    case KILN_DTYPE_I16: case KILN_DTYPE_U16: case KILN_DTYPE_F16: case KILN_DTYPE_BF16: {
        uint16_t x = (uint16_t)v;
        memcpy(d + k * 2, &x, 2);
        break;
    }
    case KILN_DTYPE_BOOL:
        d[k] = v != 0;
        break;
    default:
        if (sub_per_byte(t->dtype))
            unpack_byte(t->dtype, (uint8_t)v, d, k * (size_t)sub_per_byte(t->dtype), numel);
        else
            d[k] = (uint8_t)v; /* int8, uint8, float8 bit patterns */
        break;
    }
}

static const char *dims_str(int rank, const int64_t *dims, char *buf, size_t size)
{
    return kiln_shape_str(rank, dims, buf, size);
}

kiln_status kiln_tpb_decode(struct pb_ctx *c, const struct tpb_sink *s, const uint8_t *p,
                            size_t len, const char *kind, struct kiln_tensor *t, char **name_out,
                            char **doc_out)
{
    struct pb_reader r;
    struct pb_field f;
    size_t n_dims = 0, counts[16] = {0};
    int64_t data_type = 0, location = 0;
    const uint8_t *name = NULL, *doc = NULL, *raw = NULL;
    size_t name_len = 0, doc_len = 0, raw_len = 0;
    bool has_raw = false, has_name = false, has_doc = false;
    size_t n_ext = 0;
    kiln_status st;

    memset(t, 0, sizeof *t);
    if (name_out) *name_out = NULL;
    if (doc_out) *doc_out = NULL;

    /* Pass 1: scalars, slices and counts. */
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(c, &r, &f));
        size_t n;
        switch (f.num) {
        case TP_DIMS:
            KILN_TRY(kiln_pb_count_packed(c, &f, 0, "dims", &n));
            n_dims += n;
            break;
        case TP_DATA_TYPE:
            KILN_TRY(kiln_pb_want(c, &f, PB_VARINT, "data_type"));
            data_type = (int64_t)f.u;
            break;
        case TP_SEGMENT:
            return kiln_pb_fail(c, KILN_E_UNSUPPORTED, "segmented tensors are not supported");
        case TP_FLOAT: case TP_INT32: case TP_INT64: case TP_DOUBLE: case TP_UINT64:
            KILN_TRY(kiln_pb_count_packed(c, &f, field_fixed((int)f.num), field_name((int)f.num), &n));
            counts[f.num] += n;
            break;
        case TP_STRING:
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, "string_data"));
            counts[TP_STRING]++;
            break;
        case TP_NAME:
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, "name"));
            name = f.data, name_len = f.len, has_name = true;
            break;
        case TP_RAW:
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, "raw_data"));
            raw = f.data, raw_len = f.len, has_raw = true;
            break;
        case TP_DOC:
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, "doc_string"));
            doc = f.data, doc_len = f.len, has_doc = true;
            break;
        case TP_EXTERNAL:
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, "external_data"));
            n_ext++;
            break;
        case TP_LOCATION:
            KILN_TRY(kiln_pb_want(c, &f, PB_VARINT, "data_location"));
            location = (int64_t)f.u;
            break;
        default:
            break; /* unknown fields and metadata_props are skipped */
        }
    }
    c->stack[c->depth - 1].cur = 0;

    /* A label for messages: "initializer 'w'" (or just the kind when unnamed). */
    char label[200];
    if (has_name && name_len)
        snprintf(label, sizeof label, "%s '%.*s'", kind, (int)(name_len > 120 ? 120 : name_len),
                 (const char *)name);
    else
        snprintf(label, sizeof label, "%s", kind);

    if (!kiln_dtype_valid((int)data_type))
        return kiln_pb_fail(c, data_type > 0 && data_type < 64 ? KILN_E_UNSUPPORTED
                                                          : KILN_E_INVALID_MODEL,
                       "%s has data_type %lld, which kiln does not know", label,
                       (long long)data_type);
    if (n_dims > KILN_MAX_RANK)
        return kiln_pb_fail(c, KILN_E_LIMIT, "%s has %zu dims; the limit is %d", label, n_dims,
                       KILN_MAX_RANK);

    /* Dims (second pass over field 1 only). */
    uint64_t dims_u[KILN_MAX_RANK];
    size_t nd = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(c, &r, &f));
        if (f.num == TP_DIMS) KILN_TRY(kiln_pb_read_packed(c, &f, 0, "dims", dims_u, KILN_MAX_RANK, &nd));
    }
    c->stack[c->depth - 1].cur = 0;
    t->dtype = (kiln_dtype)data_type;
    t->rank = (int)nd;
    uint64_t numel64 = 1;
    bool too_big = false;
    for (size_t i = 0; i < nd; i++) {
        t->dims[i] = (int64_t)dims_u[i];
        if (t->dims[i] < 0) {
            char sb[300];
            memset(t, 0, sizeof *t);
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has a negative dim in %s", label,
                           dims_str((int)nd, (const int64_t *)dims_u, sb, sizeof sb));
        }
        /* A dim past the limit is refused even when another dim is 0: kernels multiply dims
         * (strides, sizes) before they see the zero, and int64 overflow there is UB. */
        if ((uint64_t)t->dims[i] > KILN_MAX_NUMEL ||
            (t->dims[i] && numel64 > KILN_MAX_NUMEL / (uint64_t)t->dims[i]))
            too_big = true;
        else numel64 *= (uint64_t)t->dims[i];
    }
    char dimsb[300];
    dims_str(t->rank, t->dims, dimsb, sizeof dimsb);
    if (too_big) {
        memset(t, 0, sizeof *t);
        return kiln_pb_fail(c, KILN_E_LIMIT,
                            "%s declares dims %s: over 2^40 elements, or a dim over 2^40", label,
                            dimsb);
    }
    size_t numel = (size_t)numel64;
    kiln_dtype dt = t->dtype;
    const char *dtn = kiln_dtype_name(dt);

    /* Name and doc first, so the caller has them even for empty tensors. */
    char *name_copy = NULL, *doc_copy = NULL;
    if (name_out && has_name) {
        name_copy = sink_strndup(s, name, name_len);
        if (!name_copy) goto oom_strings;
    }
    if (doc_out && has_doc) {
        doc_copy = sink_strndup(s, doc, doc_len);
        if (!doc_copy) goto oom_strings;
    }

    if (location == 1) {
        /* EXTERNAL */
        if (dt == KILN_DTYPE_STRING) {
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s: string tensors cannot use external data",
                         label);
            goto fail;
        }
        struct ext_info *e = kiln_calloc(1, sizeof *e);
        if (!e) {
            st = nomem(c, label, sizeof *e);
            goto fail;
        }
        size_t k = 0;
        st = KILN_OK;
        pb_reader_init(&r, p, len);
        while (st == KILN_OK && pb_more(&r)) {
            st = kiln_pb_next(c, &r, &f);
            if (st || f.num != TP_EXTERNAL) continue;
            st = kiln_pb_push(c, "external_data", (int64_t)k++, "StringStringEntryProto");
            if (st) break;
            st = decode_ext_entry(c, f.data, f.len, e);
            kiln_pb_pop(c);
        }
        c->stack[c->depth - 1].cur = 0;
        if (st == KILN_OK && !e->has_location)
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has external data without a location",
                         label);
        const uint8_t *ext = NULL;
        size_t need = raw_bytes(dt, numel);
        if (st == KILN_OK)
            st = kiln_onnx_external(c, s, label, e->location, e->has_offset, e->offset,
                                    e->has_length, e->length, need, &ext);
        kiln_free(e);
        if (st) goto fail;
        st = take_raw(c, s, t, ext, need, numel, s->arena != NULL, label);
        if (st) goto fail;
        goto done;
    } else if (location != 0) {
        st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has data_location %lld; expected 0 or 1", label,
                     (long long)location);
        goto fail;
    }

    if (has_raw) {
        if (dt == KILN_DTYPE_STRING) {
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s: string tensors cannot use raw_data", label);
            goto fail;
        }
        size_t need = raw_bytes(dt, numel);
        if (raw_len != need) {
            size_t esz = kiln_dtype_size(dt);
            if (!sub_per_byte(dt) && raw_len % esz == 0)
                st = kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                             "%s has %zu %s values; its dims %s need %zu", label, raw_len / esz,
                             dtn, dimsb, numel);
            else
                st = kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                             "%s has %zu bytes of raw_data; its dims %s of %s need %zu bytes",
                             label, raw_len, dimsb, dtn, need);
            goto fail;
        }
        bool borrow = s->arena && s->borrow_lo && raw >= s->borrow_lo && raw < s->borrow_hi;
        st = take_raw(c, s, t, raw, raw_len, numel, borrow, label);
        if (st) goto fail;
        goto done;
    }

    /* Typed fields: the one matching dt must hold exactly the elements; others must be
     * empty. */
    int want = typed_field(dt);
    for (int fnum = TP_FLOAT; fnum <= TP_UINT64; fnum++) {
        if (fnum == TP_NAME || fnum == TP_RAW || fnum == want || !counts[fnum]) continue;
        st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s is %s but holds %zu entries in %s", label, dtn,
                     counts[fnum], field_name(fnum));
        goto fail;
    }
    size_t need = typed_count(dt, numel);
    if (counts[want] != need) {
        if (dt == KILN_DTYPE_C64 || dt == KILN_DTYPE_C128 || sub_per_byte(dt))
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                         "%s has %zu entries in %s; its dims %s of %s need %zu", label,
                         counts[want], field_name(want), dimsb, dtn, need);
        else
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has %zu %s values; its dims %s need %zu",
                         label, counts[want], dtn, dimsb, numel);
        goto fail;
    }
    if (!numel) goto done;

    size_t nbytes = numel * kiln_dtype_size(dt);
    t->data = sink_alloc(s, nbytes);
    if (!t->data) {
        st = nomem(c, label, nbytes);
        goto fail;
    }
    if (!s->arena) t->flags = KILN_TENSOR_OWNS_DATA;
    if (dt == KILN_DTYPE_STRING) {
        memset(t->data, 0, nbytes); /* NULL entries are safe to free on failure */
        if (!s->arena) t->flags |= KILN_TENSOR_OWNS_STRINGS;
    }
    size_t k = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        st = kiln_pb_next(c, &r, &f);
        if (st) goto fail;
        if ((int)f.num != want) continue;
        if (dt == KILN_DTYPE_STRING) {
            char *str = sink_strndup(s, f.data, f.len);
            if (!str) {
                st = nomem(c, label, f.len);
                goto fail;
            }
            ((char **)t->data)[k++] = str;
            continue;
        }
        struct elems e;
        uint64_t v;
        int got;
        elems_init(&e, &f, field_fixed(want));
        while ((got = elems_next(&e, &v)) == 1) {
            if (k >= need) break; /* cannot happen: counted in pass 1 */
            store_typed(t, k++, v, numel);
        }
        if (got < 0) {
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s: malformed varint in %s", label,
                         field_name(want));
            goto fail;
        }
    }
    c->stack[c->depth - 1].cur = 0;

done:
    if (name_out) *name_out = name_copy;
    else sink_free_str(s, name_copy);
    if (doc_out) *doc_out = doc_copy;
    else sink_free_str(s, doc_copy);
    return KILN_OK;

oom_strings:
    st = nomem(c, label, name_len + doc_len);
fail:
    sink_free_str(s, name_copy);
    sink_free_str(s, doc_copy);
    tensor_drop(s, t);
    return st;
}

kiln_status kiln_tpb_decode_sparse(struct pb_ctx *c, const struct tpb_sink *s, const uint8_t *p,
                                   size_t len, struct kiln_sparse_tensor *sp)
{
    struct pb_reader r;
    struct pb_field f;
    uint64_t dims[KILN_MAX_RANK];
    size_t nd = 0, n;
    kiln_status st = KILN_OK;
    bool has_values = false, has_indices = false;
    char *name = NULL;

    memset(sp, 0, sizeof *sp);
    pb_reader_init(&r, p, len);
    while (st == KILN_OK && pb_more(&r)) {
        KILN_TRY(kiln_pb_next(c, &r, &f));
        switch (f.num) {
        case 1: case 2: {
            bool values = f.num == 1;
            KILN_TRY(kiln_pb_want(c, &f, PB_LEN, values ? "values" : "indices"));
            struct kiln_tensor *t = values ? &sp->values : &sp->indices;
            if (values ? has_values : has_indices) tensor_drop(s, t);
            st = kiln_pb_push(c, values ? "values" : "indices", -1, "TensorProto");
            if (st) break;
            char *nm = NULL;
            st = kiln_tpb_decode(c, s, f.data, f.len, values ? "sparse values" : "sparse indices",
                                 t, values ? &nm : NULL, NULL);
            kiln_pb_pop(c);
            if (st) break;
            if (values) {
                sink_free_str(s, name);
                name = nm;
                has_values = true;
            } else {
                has_indices = true;
            }
            break;
        }
        case 3:
            st = kiln_pb_count_packed(c, &f, 0, "dims", &n);
            if (st) break;
            if (nd + n > KILN_MAX_RANK) {
                st = kiln_pb_fail(c, KILN_E_LIMIT, "sparse tensor has more than %d dims",
                             KILN_MAX_RANK);
                break;
            }
            st = kiln_pb_read_packed(c, &f, 0, "dims", dims, KILN_MAX_RANK, &nd);
            break;
        default:
            break;
        }
    }
    c->stack[c->depth - 1].cur = 0;
    if (st == KILN_OK && !has_values)
        st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "sparse tensor has no values");
    if (st == KILN_OK && has_indices && sp->indices.dtype != KILN_DTYPE_I64)
        st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "sparse tensor indices are %s; expected int64",
                     kiln_dtype_name(sp->indices.dtype));
    for (size_t i = 0; st == KILN_OK && i < nd; i++) {
        if ((int64_t)dims[i] < 0)
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "sparse tensor has a negative dim");
        sp->dims[i] = (int64_t)dims[i];
    }
    if (st) {
        tensor_drop(s, &sp->values);
        tensor_drop(s, &sp->indices);
        sink_free_str(s, name);
        memset(sp, 0, sizeof *sp);
        return st;
    }
    sp->rank = (int)nd;
    sp->name = name ? name : (s->arena ? "" : NULL);
    return KILN_OK;
}

/* ------------------------------------------------------------------ encoder */

size_t kiln_tpb_raw_size(const struct kiln_tensor *t)
{
    if (t->dtype == KILN_DTYPE_STRING) return 0;
    return raw_bytes(t->dtype, kiln_tensor_numel(t));
}

void kiln_tpb_pack(const struct kiln_tensor *t, uint8_t *dst)
{
    size_t numel = kiln_tensor_numel(t);
    if (!numel || t->dtype == KILN_DTYPE_STRING) return;
    if (!sub_per_byte(t->dtype)) {
        memcpy(dst, t->data, kiln_tensor_nbytes(t));
        return;
    }
    int per = sub_per_byte(t->dtype), bits = 8 / per;
    size_t n = raw_bytes(t->dtype, numel);
    uint8_t mask = (uint8_t)((1u << bits) - 1);
    const uint8_t *src = t->data;
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = 0;
        for (int j = 0; j < per && i * (size_t)per + (size_t)j < numel; j++)
            byte |= (uint8_t)((src[i * (size_t)per + (size_t)j] & mask) << (j * bits));
        dst[i] = byte;
    }
}

static void put_entry(struct kiln_buf *b, const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    kiln_pb_put_key(b, TP_EXTERNAL, PB_LEN);
    /* StringStringEntryProto: key (1), value (2); both short, so each length is one byte */
    kiln_pb_put_varint(b, 2 + kl + 2 + vl + (kl >= 128) + (vl >= 128));
    pb_put_str(b, 1, key);
    pb_put_str(b, 2, value);
}

kiln_status kiln_tpb_encode_full(const struct kiln_tensor *t, const char *name, const char *doc,
                                 const struct tpb_ext *ext, struct kiln_buf *b, kiln_err *err)
{
    if (!kiln_dtype_valid((int)t->dtype))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "cannot encode a tensor of data type %d",
                            (int)t->dtype);
    for (int i = 0; i < t->rank; i++) kiln_pb_put_uint(b, TP_DIMS, (uint64_t)t->dims[i]);
    kiln_pb_put_uint(b, TP_DATA_TYPE, (uint64_t)t->dtype);
    if (name && name[0]) pb_put_str(b, TP_NAME, name);
    if (doc && doc[0]) pb_put_str(b, TP_DOC, doc);
    size_t numel = kiln_tensor_numel(t);
    if (ext) {
        if (t->dtype == KILN_DTYPE_STRING || strlen(ext->location) > 100)
            return kiln_err_set(err, KILN_E_INTERNAL, "tensor '%s': cannot use external data",
                                name ? name : "");
        char num[32];
        put_entry(b, "location", ext->location);
        snprintf(num, sizeof num, "%llu", (unsigned long long)ext->offset);
        put_entry(b, "offset", num);
        snprintf(num, sizeof num, "%llu", (unsigned long long)ext->length);
        put_entry(b, "length", num);
        kiln_pb_put_uint(b, TP_LOCATION, 1);
    } else if (t->dtype == KILN_DTYPE_STRING) {
        char *const *strs = t->data;
        for (size_t i = 0; i < numel; i++) pb_put_str(b, TP_STRING, strs[i] ? strs[i] : "");
    } else if (sub_per_byte(t->dtype)) {
        size_t n = raw_bytes(t->dtype, numel);
        kiln_pb_put_key(b, TP_RAW, PB_LEN);
        kiln_pb_put_varint(b, n);
        size_t at = b->len;
        /* grow by n bytes, then pack in place */
        for (size_t left = n; left && !b->failed;) {
            static const uint8_t zeros[256];
            size_t k = left < sizeof zeros ? left : sizeof zeros;
            kiln_buf_append(b, zeros, k);
            left -= k;
        }
        if (!b->failed) kiln_tpb_pack(t, b->data + at);
    } else {
        kiln_pb_put_bytes(b, TP_RAW, t->data, numel ? kiln_tensor_nbytes(t) : 0);
    }
    if (b->failed)
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory encoding a %s tensor",
                            kiln_dtype_name(t->dtype));
    return KILN_OK;
}

kiln_status kiln_tpb_encode(const struct kiln_tensor *t, const char *name, struct kiln_buf *b,
                            kiln_err *err)
{
    return kiln_tpb_encode_full(t, name, NULL, NULL, b, err);
}

/* ------------------------------------------------------------------ values */

/* SequenceProto.DataType / OptionalProto.DataType */
enum { PB_ELEM_TENSOR = 1, PB_ELEM_SPARSE = 2, PB_ELEM_SEQUENCE = 3, PB_ELEM_MAP = 4,
       PB_ELEM_OPTIONAL = 5 };

static kiln_status decode_any(struct pb_ctx *c, const uint8_t *p, size_t len,
                              kiln_value_kind kind, struct kiln_value **out);

static kiln_status decode_tensor_value(struct pb_ctx *c, const uint8_t *p, size_t len,
                                       struct kiln_value **out)
{
    struct tpb_sink s = {0}; /* owned memory, no borrowing, no external data */
    struct kiln_value *v = kiln_value_new(KILN_VALUE_TENSOR);
    if (!v) return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory");
    kiln_status st = kiln_tpb_decode(c, &s, p, len, "tensor", &v->t, NULL, NULL);
    if (st) {
        kiln_value_free(v);
        return st;
    }
    *out = v;
    return KILN_OK;
}

static kiln_value_kind kind_of_elem(int64_t e)
{
    switch (e) {
    case PB_ELEM_TENSOR: return KILN_VALUE_TENSOR;
    case PB_ELEM_SEQUENCE: return KILN_VALUE_SEQUENCE;
    case PB_ELEM_OPTIONAL: return KILN_VALUE_OPTIONAL;
    default: return (kiln_value_kind)0;
    }
}

/* Decodes a SequenceProto (seq = true) or OptionalProto into *out. */
static kiln_status decode_container(struct pb_ctx *c, const uint8_t *p, size_t len, bool seq,
                                    struct kiln_value **out)
{
    struct pb_reader r;
    struct pb_field f;
    kiln_status st = KILN_OK;
    int64_t elem = 0;
    size_t k = 0;
    struct kiln_value *v = kiln_value_new(seq ? KILN_VALUE_SEQUENCE : KILN_VALUE_OPTIONAL);
    if (!v) return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory");
    const char *tname = seq ? "SequenceProto" : "OptionalProto";
    pb_reader_init(&r, p, len);
    while (st == KILN_OK && pb_more(&r)) {
        st = kiln_pb_next(c, &r, &f);
        if (st) break;
        kiln_value_kind ik = 0;
        const char *fname = NULL, *ftype = NULL;
        switch (f.num) {
        case 2:
            st = kiln_pb_want(c, &f, PB_VARINT, "elem_type");
            elem = (int64_t)f.u;
            continue;
        case 3: ik = KILN_VALUE_TENSOR; fname = seq ? "tensor_values" : "tensor_value";
                ftype = "TensorProto"; break;
        case 5: ik = KILN_VALUE_SEQUENCE; fname = seq ? "sequence_values" : "sequence_value";
                ftype = "SequenceProto"; break;
        case 7: ik = KILN_VALUE_OPTIONAL; fname = seq ? "optional_values" : "optional_value";
                ftype = "OptionalProto"; break;
        case 4: case 6:
            st = kiln_pb_fail(c, KILN_E_UNSUPPORTED, "%s holds %s, which kiln does not support",
                         tname, f.num == 4 ? "sparse tensors" : "maps");
            continue;
        default:
            continue;
        }
        st = kiln_pb_want(c, &f, PB_LEN, fname);
        if (st) break;
        if (!seq && k) {
            st = kiln_pb_fail(c, KILN_E_INVALID_MODEL, "OptionalProto holds more than one value");
            break;
        }
        st = kiln_pb_push(c, fname, seq ? (int64_t)k : -1, ftype);
        if (st) break;
        struct kiln_value *item = NULL;
        st = decode_any(c, f.data, f.len, ik, &item);
        kiln_pb_pop(c);
        if (st) break;
        k++;
        st = kiln_value_append(v, item, c->err);
    }
    c->stack[c->depth - 1].cur = 0;
    if (st == KILN_OK) {
        for (size_t i = 0; i < v->count; i++) {
            const struct kiln_value *it = v->items[i];
            kiln_dtype d = it->kind == KILN_VALUE_TENSOR ? it->t.dtype : it->elem_dtype;
            if (seq && i && d != v->elem_dtype && v->elem_dtype) {
                st = kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                             "sequence mixes %s and %s elements",
                             kiln_dtype_name(v->elem_dtype), kiln_dtype_name(d));
                break;
            }
            v->elem_dtype = d;
        }
        if (!seq) v->elem_kind = v->count ? v->items[0]->kind : kind_of_elem(elem);
    }
    if (st) {
        kiln_value_free(v);
        return st;
    }
    *out = v;
    return KILN_OK;
}

static kiln_status decode_any(struct pb_ctx *c, const uint8_t *p, size_t len,
                              kiln_value_kind kind, struct kiln_value **out)
{
    switch (kind) {
    case KILN_VALUE_TENSOR: return decode_tensor_value(c, p, len, out);
    case KILN_VALUE_SEQUENCE: return decode_container(c, p, len, true, out);
    case KILN_VALUE_OPTIONAL: return decode_container(c, p, len, false, out);
    }
    return kiln_pb_fail(c, KILN_E_INVALID_ARG, "unknown value kind %d", (int)kind);
}

kiln_status kiln_onnx_decode_value(const uint8_t *buf, size_t len, kiln_value_kind kind,
                                   struct kiln_value **out, kiln_err *err)
{
    struct pb_ctx c;
    *out = NULL;
    if (kiln_npy_is(buf, len)) {
        if (kind && kind != KILN_VALUE_TENSOR)
            return kiln_err_set(err, KILN_E_INVALID_ARG,
                                "a .npy file holds a tensor, not a %s",
                                kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
        return kiln_npy_decode(buf, len, out, err);
    }
    if (kind) {
        kiln_pb_ctx_init(&c, err, kind == KILN_VALUE_TENSOR     ? "TensorProto"
                             : kind == KILN_VALUE_SEQUENCE ? "SequenceProto"
                                                           : "OptionalProto");
        return decode_any(&c, buf, len, kind, out);
    }
    /* Guess: a TensorProto, unless the bytes only parse as a SequenceProto (its
     * tensor_values field 3 is TensorProto's unsupported `segment`, and an empty sequence
     * reads as a scalar tensor without data). */
    kiln_pb_ctx_init(&c, err, "TensorProto");
    kiln_status st = decode_tensor_value(&c, buf, len, out);
    if (st == KILN_OK || st == KILN_E_NOMEM) return st;
    kiln_err first = {0};
    if (err) first = *err;
    kiln_err e2;
    kiln_pb_ctx_init(&c, &e2, "SequenceProto");
    kiln_status st2 = decode_container(&c, buf, len, true, out);
    if (st2 == KILN_OK) {
        kiln_err_clear(err);
        return KILN_OK;
    }
    if (st2 == KILN_E_NOMEM) { /* not a verdict on the bytes */
        if (err) *err = e2;
        return st2;
    }
    if (err) *err = first;
    return st;
}

static kiln_status encode_any(const struct kiln_value *v, const char *name, struct kiln_buf *b,
                              kiln_err *err)
{
    if (v->kind == KILN_VALUE_TENSOR) return kiln_tpb_encode(&v->t, name, b, err);
    if (v->kind != KILN_VALUE_SEQUENCE && v->kind != KILN_VALUE_OPTIONAL)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "cannot encode a value of kind %d",
                            (int)v->kind);
    bool seq = v->kind == KILN_VALUE_SEQUENCE;
    if (!seq && v->count > 1)
        return kiln_err_set(err, KILN_E_INVALID_ARG, "an optional holds %zu values", v->count);
    if (name) pb_put_str(b, 1, name);
    kiln_value_kind ek = seq ? (v->count ? v->items[0]->kind : KILN_VALUE_TENSOR)
                             : (v->count ? v->items[0]->kind : v->elem_kind);
    /* An empty optional of unknown content (elem_kind 0) keeps elem_type UNDEFINED (0), so
     * that it decodes back as it was instead of turning into an optional tensor. */
    int64_t elem = ek == KILN_VALUE_SEQUENCE   ? PB_ELEM_SEQUENCE
                   : ek == KILN_VALUE_OPTIONAL ? PB_ELEM_OPTIONAL
                   : ek == KILN_VALUE_TENSOR   ? PB_ELEM_TENSOR
                                               : 0;
    kiln_pb_put_uint(b, 2, (uint64_t)elem);
    for (size_t i = 0; i < v->count; i++) {
        const struct kiln_value *it = v->items[i];
        struct kiln_buf sub = {0};
        kiln_status st = encode_any(it, NULL, &sub, err);
        if (st) {
            kiln_buf_free(&sub);
            return st;
        }
        uint32_t num = it->kind == KILN_VALUE_SEQUENCE ? 5 : it->kind == KILN_VALUE_OPTIONAL ? 7 : 3;
        kiln_pb_put_bytes(b, num, sub.data, sub.len);
        bool failed = sub.failed;
        kiln_buf_free(&sub);
        if (failed) return kiln_err_set(err, KILN_E_NOMEM, "out of memory encoding a value");
    }
    if (b->failed) return kiln_err_set(err, KILN_E_NOMEM, "out of memory encoding a value");
    return KILN_OK;
}

kiln_status kiln_onnx_encode_value(const struct kiln_value *v, const char *name,
                                   struct kiln_buf *b, kiln_err *err)
{
    return encode_any(v, name, b, err);
}
