/* pbwire.h: internal header of src/onnx: the bounded protobuf wire reader/writer and the
 * decoders shared between the model loader, the value reader and the NumPy reader.
 *
 * Follows the protobuf wire format (protobuf.dev/programming-guides/encoding): keys are
 * varints (field << 3 | wire type); wire types 0 (varint), 1 (fixed64), 2 (length-delimited)
 * and 5 (fixed32) are accepted, the deprecated groups (3, 4) and 6, 7 are refused.
 *
 * Nothing here allocates per field: a field's bytes are a (pointer, length) slice of the
 * caller's buffer. Errors name the message path ("ModelProto.graph.node[3].attribute[0]")
 * and the field number, which the decoder keeps in a small stack in `struct pb_ctx`.
 */
#ifndef KILN_ONNX_PBWIRE_H
#define KILN_ONNX_PBWIRE_H

#include "ir/ir.h"

/* Deepest message nesting accepted (a graph inside a node attribute inside a graph ...
 * takes three levels per subgraph). Deeper input is refused as hostile. */
#define PB_MAX_DEPTH 64

enum pb_wire { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

struct pb_reader {
    const uint8_t *p, *end;
};

struct pb_field {
    uint32_t num;
    enum pb_wire wire;
    uint64_t u;           /* VARINT, I64, I32: the value (fixed32 zero-extended) */
    const uint8_t *data;  /* LEN: the bytes */
    size_t len;
};

struct pb_frame {
    const char *type;  /* message type being decoded: "NodeProto" */
    const char *field; /* name of the field in the parent holding it ("node"); NULL at root */
    int64_t index;     /* index in a repeated parent field, -1 for a singular one */
    uint32_t cur;      /* field number being read right now (for messages) */
};

/* Decoding context: error sink and the path of messages being decoded. */
struct pb_ctx {
    kiln_err *err;
    int depth; /* frames in use */
    struct pb_frame stack[PB_MAX_DEPTH + 1];
};

void kiln_pb_ctx_init(struct pb_ctx *c, kiln_err *err, const char *root_type);
/* Enters a sub-message; fails with KILN_E_LIMIT past PB_MAX_DEPTH. */
KILN_NODISCARD kiln_status kiln_pb_push(struct pb_ctx *c, const char *field, int64_t index,
                                   const char *type);
void kiln_pb_pop(struct pb_ctx *c);
/* Sets c->err to "<path> (<Type> field N): <message>" and returns st. */
kiln_status kiln_pb_fail(struct pb_ctx *c, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);
/* Writes the current path ("ModelProto.graph.node[3]") into buf; returns buf. */
const char *kiln_pb_path(const struct pb_ctx *c, char *buf, size_t size);

static inline void pb_reader_init(struct pb_reader *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->end = len ? p + len : p; /* NULL + 0 is undefined in C */
}
static inline bool pb_more(const struct pb_reader *r) { return r->p < r->end; }

/* Reads the next field of the current message. Never reads past r->end; rejects varints
 * longer than 10 bytes, field number 0, wire types other than 0/1/2/5 and lengths past the
 * end. Records the field number in the top frame for error messages. */
KILN_NODISCARD kiln_status kiln_pb_next(struct pb_ctx *c, struct pb_reader *r, struct pb_field *f);
/* Reads one varint from [*p, end); false on truncation or > 10 bytes. */
bool kiln_pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out);

/* Field-type checks with messages naming the field; `what` is the field's name. */
KILN_NODISCARD kiln_status kiln_pb_want(struct pb_ctx *c, const struct pb_field *f, enum pb_wire w,
                                   const char *what);
/* Counts the elements of a repeated scalar field occurrence: 1 for an unpacked varint /
 * fixed value, else the number in the packed run (fails on a malformed run). `fixed` is 0
 * for varint elements, 4 or 8 for fixed32/fixed64 elements. */
KILN_NODISCARD kiln_status kiln_pb_count_packed(struct pb_ctx *c, const struct pb_field *f, int fixed,
                                           const char *what, size_t *n);
/* Appends the elements of a repeated scalar field occurrence (packed or not) to out[*i...]
 * as raw 64-bit values (varint as is, fixed32 zero-extended, fixed64 as bits); `cap` bounds
 * *i. */
KILN_NODISCARD kiln_status kiln_pb_read_packed(struct pb_ctx *c, const struct pb_field *f, int fixed,
                                          const char *what, uint64_t *out, size_t cap, size_t *i);

/* ------------------------------------------------------------------ writer */

void kiln_pb_put_varint(struct kiln_buf *b, uint64_t v);
void kiln_pb_put_key(struct kiln_buf *b, uint32_t num, enum pb_wire w);
void kiln_pb_put_uint(struct kiln_buf *b, uint32_t num, uint64_t v);
void kiln_pb_put_bytes(struct kiln_buf *b, uint32_t num, const void *p, size_t n);
static inline void pb_put_str(struct kiln_buf *b, uint32_t num, const char *s)
{
    kiln_pb_put_bytes(b, num, s, __builtin_strlen(s));
}

/* ------------------------------------------------------------------ tensor_pb.c */

/* Where decoded tensor data goes. */
struct tpb_sink {
    struct kiln_arena *arena; /* non-NULL: arrays and strings in the arena, flags 0; NULL:
                                 kiln_malloc, flags OWNS_DATA (+ OWNS_STRINGS) */
    const uint8_t *borrow_lo, *borrow_hi; /* raw_data inside [lo, hi) may be borrowed */
    struct kiln_model *model;             /* for external data (NULL refuses it) */
    void *ext_state;                      /* load.c's table of mapped external files */
};

/* Resolves external data for tensor `label`: returns a pointer to `need` bytes inside a
 * mapped file. Implemented by load.c. */
KILN_NODISCARD kiln_status kiln_onnx_external(struct pb_ctx *c, const struct tpb_sink *s,
                                              const char *label, const char *location,
                                              bool has_offset, uint64_t offset, bool has_length,
                                              uint64_t length, size_t need, const uint8_t **out);

/* Decodes a TensorProto from [p, p+len) into t (zeroed first). `*name` / `*doc` receive
 * the tensor's name and doc_string (arena copies with an arena sink, kiln_malloc'd copies
 * otherwise: the caller frees them; either may be NULL to discard). `kind` names the
 * tensor in size messages ("initializer", "tensor"). On failure t holds nothing. */
KILN_NODISCARD kiln_status kiln_tpb_decode(struct pb_ctx *c, const struct tpb_sink *s,
                                           const uint8_t *p, size_t len, const char *kind,
                                           struct kiln_tensor *t, char **name, char **doc);
/* Decodes a SparseTensorProto. */
KILN_NODISCARD kiln_status kiln_tpb_decode_sparse(struct pb_ctx *c, const struct tpb_sink *s,
                                                  const uint8_t *p, size_t len,
                                                  struct kiln_sparse_tensor *sp);
/* Encodes t as a TensorProto (dims, data_type, name, raw_data or string_data). */
KILN_NODISCARD kiln_status kiln_tpb_encode(const struct kiln_tensor *t, const char *name,
                                           struct kiln_buf *b, kiln_err *err);

/* Where an externally stored tensor's bytes are: a file relative to the model's folder
 * (at most 100 bytes), the byte offset and the byte count (kiln_tpb_raw_size). */
struct tpb_ext {
    const char *location;
    uint64_t offset, length;
};
/* kiln_tpb_encode with a doc_string (NULL or "" leaves it out) and, when ext is not NULL,
 * external data entries (location, offset, length) and data_location EXTERNAL instead of
 * raw_data: the caller writes kiln_tpb_pack's bytes at ext->offset. Strings cannot be
 * external (KILN_E_INTERNAL). Sub-byte types are packed as the decoder unpacks them. */
KILN_NODISCARD kiln_status kiln_tpb_encode_full(const struct kiln_tensor *t, const char *name,
                                                const char *doc, const struct tpb_ext *ext,
                                                struct kiln_buf *b, kiln_err *err);
/* Bytes of t's raw_data: packed for the 4- and 2-bit types; 0 for strings. */
size_t kiln_tpb_raw_size(const struct kiln_tensor *t);
/* Writes t's raw_data bytes (kiln_tpb_raw_size of them) to dst. */
void kiln_tpb_pack(const struct kiln_tensor *t, uint8_t *dst);

/* ------------------------------------------------------------------ npy.c */

/* True when buf starts with the NumPy magic "\x93NUMPY". */
bool kiln_npy_is(const uint8_t *buf, size_t len);
/* Decodes a .npy (v1/v2/v3) into a new tensor value. */
KILN_NODISCARD kiln_status kiln_npy_decode(const uint8_t *buf, size_t len, struct kiln_value **out,
                                           kiln_err *err);
/* Encodes a tensor value as .npy v1.0 into b. */
KILN_NODISCARD kiln_status kiln_npy_encode(const struct kiln_value *v, struct kiln_buf *b,
                                           kiln_err *err);

#endif /* KILN_ONNX_PBWIRE_H */
