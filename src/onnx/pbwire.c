/* pbwire.c: kiln's bounded protobuf wire-format reader and a minimal writer.
 *
 * Follows the protobuf encoding guide (protobuf.dev/programming-guides/encoding). The reader
 * never reads outside [p, end): every length is compared against the bytes left before it
 * is used, varints stop after 10 bytes, and message nesting is capped at PB_MAX_DEPTH.
 * Errors carry the path of message types and field names from pb_ctx's stack.
 */
#include <stdio.h>
#include <string.h>

#include "onnx/pbwire.h"

void kiln_pb_ctx_init(struct pb_ctx *c, kiln_err *err, const char *root_type)
{
    c->err = err;
    c->depth = 1;
    c->stack[0] = (struct pb_frame){.type = root_type, .field = NULL, .index = -1, .cur = 0};
}

kiln_status kiln_pb_push(struct pb_ctx *c, const char *field, int64_t index, const char *type)
{
    if (c->depth > PB_MAX_DEPTH)
        return kiln_pb_fail(c, KILN_E_LIMIT, "messages nest deeper than %d levels", PB_MAX_DEPTH);
    c->stack[c->depth++] = (struct pb_frame){.type = type, .field = field, .index = index};
    return KILN_OK;
}

void kiln_pb_pop(struct pb_ctx *c)
{
    if (c->depth > 1) c->depth--;
}

const char *kiln_pb_path(const struct pb_ctx *c, char *buf, size_t size)
{
    size_t o = 0;
    if (!size) return buf;
    buf[0] = 0;
    for (int i = 0; i < c->depth && o < size; i++) {
        const struct pb_frame *fr = &c->stack[i];
        int n;
        if (i == 0)
            n = snprintf(buf + o, size - o, "%s", fr->type);
        else if (fr->index >= 0)
            n = snprintf(buf + o, size - o, ".%s[%lld]", fr->field, (long long)fr->index);
        else
            n = snprintf(buf + o, size - o, ".%s", fr->field);
        if (n < 0) break;
        o += (size_t)n;
    }
    return buf;
}

kiln_status kiln_pb_fail(struct pb_ctx *c, kiln_status st, const char *fmt, ...)
{
    char path[512], msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const struct pb_frame *top = &c->stack[c->depth - 1];
    kiln_pb_path(c, path, sizeof path);
    if (top->cur)
        return kiln_err_set(c->err, st, "%s (%s field %u): %s", path, top->type, top->cur, msg);
    return kiln_err_set(c->err, st, "%s (%s): %s", path, top->type, msg);
}

bool kiln_pb_read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return false;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return true;
        }
    }
    return false;
}

static uint64_t load_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

kiln_status kiln_pb_next(struct pb_ctx *c, struct pb_reader *r, struct pb_field *f)
{
    struct pb_frame *top = &c->stack[c->depth - 1];
    uint64_t key;
    top->cur = 0;
    if (!kiln_pb_read_varint(&r->p, r->end, &key))
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "bad field key: varint truncated or longer than 10 bytes");
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "bad field number %llu",
                       (unsigned long long)(key >> 3));
    f->num = (uint32_t)(key >> 3);
    f->wire = (enum pb_wire)(key & 7);
    f->data = NULL;
    f->len = 0;
    f->u = 0;
    top->cur = f->num;
    size_t left = (size_t)(r->end - r->p);
    switch ((int)f->wire) {
    case PB_VARINT:
        if (!kiln_pb_read_varint(&r->p, r->end, &f->u))
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "varint truncated or longer than 10 bytes");
        return KILN_OK;
    case PB_I64:
        if (left < 8)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "fixed64 runs past the end of the buffer");
        f->u = load_le(r->p, 8);
        r->p += 8;
        return KILN_OK;
    case PB_I32:
        if (left < 4)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "fixed32 runs past the end of the buffer");
        f->u = load_le(r->p, 4);
        r->p += 4;
        return KILN_OK;
    case PB_LEN: {
        uint64_t n;
        if (!kiln_pb_read_varint(&r->p, r->end, &n))
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "length varint truncated or longer than 10 bytes");
        left = (size_t)(r->end - r->p);
        if (n > left)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "length %llu runs past the end of the buffer (%zu bytes left)",
                           (unsigned long long)n, left);
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return KILN_OK;
    }
    default:
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "unsupported wire type %d", (int)f->wire);
    }
}

static const char *wire_name(enum pb_wire w)
{
    switch (w) {
    case PB_VARINT: return "varint";
    case PB_I64: return "fixed64";
    case PB_LEN: return "length-delimited";
    case PB_I32: return "fixed32";
    }
    return "?";
}

kiln_status kiln_pb_want(struct pb_ctx *c, const struct pb_field *f, enum pb_wire w, const char *what)
{
    if (f->wire == w) return KILN_OK;
    return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has wire type %s; expected %s", what,
                   wire_name(f->wire), wire_name(w));
}

kiln_status kiln_pb_count_packed(struct pb_ctx *c, const struct pb_field *f, int fixed,
                            const char *what, size_t *n)
{
    enum pb_wire single = fixed == 4 ? PB_I32 : fixed == 8 ? PB_I64 : PB_VARINT;
    if (f->wire == single) {
        *n = 1;
        return KILN_OK;
    }
    if (f->wire != PB_LEN)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s has wire type %s; expected %s or packed",
                       what, wire_name(f->wire), wire_name(single));
    if (fixed) {
        if (f->len % (size_t)fixed)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "packed %s has %zu bytes, not a multiple of %d", what, f->len, fixed);
        *n = f->len / (size_t)fixed;
        return KILN_OK;
    }
    /* Varints end at a byte without the continuation bit. */
    size_t count = 0;
    for (size_t i = 0; i < f->len; i++) count += !(f->data[i] & 0x80);
    if (f->len && (f->data[f->len - 1] & 0x80))
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "packed %s ends inside a varint", what);
    *n = count;
    return KILN_OK;
}

kiln_status kiln_pb_read_packed(struct pb_ctx *c, const struct pb_field *f, int fixed,
                           const char *what, uint64_t *out, size_t cap, size_t *i)
{
    if (f->wire != PB_LEN) {
        if (*i >= cap) return kiln_pb_fail(c, KILN_E_INTERNAL, "%s: count changed", what);
        out[(*i)++] = f->u;
        return KILN_OK;
    }
    const uint8_t *p = f->data, *end = f->data + f->len;
    while (p < end) {
        if (*i >= cap) return kiln_pb_fail(c, KILN_E_INTERNAL, "%s: count changed", what);
        if (fixed) {
            out[(*i)++] = load_le(p, fixed);
            p += fixed;
        } else if (!kiln_pb_read_varint(&p, end, &out[(*i)++])) {
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "packed %s holds a varint longer than 10 bytes", what);
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ writer */

void kiln_pb_put_varint(struct kiln_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    kiln_buf_append(b, tmp, n);
}

void kiln_pb_put_key(struct kiln_buf *b, uint32_t num, enum pb_wire w)
{
    kiln_pb_put_varint(b, ((uint64_t)num << 3) | (uint64_t)w);
}

void kiln_pb_put_uint(struct kiln_buf *b, uint32_t num, uint64_t v)
{
    kiln_pb_put_key(b, num, PB_VARINT);
    kiln_pb_put_varint(b, v);
}

void kiln_pb_put_bytes(struct kiln_buf *b, uint32_t num, const void *p, size_t n)
{
    kiln_pb_put_key(b, num, PB_LEN);
    kiln_pb_put_varint(b, n);
    kiln_buf_append(b, p, n);
}
