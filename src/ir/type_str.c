/* type_str.c: a TypeProto (struct kiln_type) as short text, for messages and `kiln info`.
 *
 * Grammar (onnx.proto TypeProto, printed the way ONNX's own tools abbreviate it):
 *   tensor    elem[d0,d1,...]  a dim is its value, its symbolic name, or "?" when unknown;
 *                              rank 0 is "elem[]"; no shape at all is plain "elem"
 *   sequence  seq(T)           optional  optional(T)
 *   map       map(K,V)         sparse    sparse(elem[...])
 *   missing   unknown
 */
#include <stdio.h>

#include "ir/ir.h"

/* snprintf-style appender: counts every byte it would write, writes what fits, keeps buf
 * NUL-terminated. */
struct tsbuf {
    char *buf;
    size_t size, len;
};

static void ts_put(struct tsbuf *b, const char *s)
{
    for (; *s; s++) {
        if (b->len + 1 < b->size) {
            b->buf[b->len] = *s;
            b->buf[b->len + 1] = 0;
        }
        b->len++;
    }
}

static void ts_shape(struct tsbuf *b, const struct kiln_type *t)
{
    char num[32];
    ts_put(b, kiln_dtype_name(t->elem));
    if (t->rank < 0) return;
    ts_put(b, "[");
    for (int i = 0; i < t->rank; i++) {
        if (i) ts_put(b, ",");
        const struct kiln_dim *d = &t->dims[i];
        if (d->value >= 0) {
            snprintf(num, sizeof num, "%lld", (long long)d->value);
            ts_put(b, num);
        } else if (d->param && d->param[0]) {
            ts_put(b, d->param);
        } else {
            ts_put(b, "?");
        }
    }
    ts_put(b, "]");
}

/* Depth-limited so a hostile, deeply nested TypeProto cannot overflow the stack here even if
 * the decoder let it through. */
static void ts_type(struct tsbuf *b, const struct kiln_type *t, int depth)
{
    if (!t || depth > 64) {
        ts_put(b, "unknown");
        return;
    }
    switch (t->kind) {
    case KILN_TYPE_TENSOR: ts_shape(b, t); return;
    case KILN_TYPE_SPARSE_TENSOR:
        ts_put(b, "sparse(");
        ts_shape(b, t);
        ts_put(b, ")");
        return;
    case KILN_TYPE_SEQUENCE:
        ts_put(b, "seq(");
        ts_type(b, t->inner, depth + 1);
        ts_put(b, ")");
        return;
    case KILN_TYPE_OPTIONAL:
        ts_put(b, "optional(");
        ts_type(b, t->inner, depth + 1);
        ts_put(b, ")");
        return;
    case KILN_TYPE_MAP:
        ts_put(b, "map(");
        ts_put(b, kiln_dtype_name(t->elem));
        ts_put(b, ",");
        ts_type(b, t->inner, depth + 1);
        ts_put(b, ")");
        return;
    case KILN_TYPE_NONE:
    default: ts_put(b, "unknown"); return;
    }
}

/* Contract: see ir.h. buf may be NULL when size is 0 (to measure). Returns the length the
 * full text needs, excluding the NUL; the text is truncated to size-1 bytes. */
size_t kiln_type_str(const struct kiln_type *t, char *buf, size_t size)
{
    struct tsbuf b = {buf, size, 0};
    if (buf && size) buf[0] = 0;
    else b.size = 0;
    ts_type(&b, t, 0);
    return b.len;
}
