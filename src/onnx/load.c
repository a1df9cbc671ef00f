/* load.c: ModelProto bytes -> kiln IR (struct kiln_model, ir.h).
 *
 * Follows onnx/onnx.proto (IR version 11): ModelProto, GraphProto, NodeProto, AttributeProto,
 * ValueInfoProto, TypeProto, TensorShapeProto, FunctionProto, OperatorSetIdProto,
 * StringStringEntryProto; TensorProto is tensor_pb.c's. Fields kiln has no use for
 * (training_info, quantization_annotation, overloads, metadata_props below the model) are
 * skipped, as are unknown fields, which is what protobuf's own parsers do.
 *
 * Each message is read twice: a first pass counts the repeated fields, so every array is
 * allocated once at its final size in the model arena; the second pass fills it. Names are
 * copied (they must be NUL-terminated); tensor data is borrowed from the mapping where
 * possible (tensor_pb.c). External data files are mapped once each (m->ext) and tensors
 * point into them; paths are confined to the model's folder.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"

/* Mapped external data files of one load: realpaths parallel to m->ext. */
struct ext_table {
    char **paths;
    char *root; /* realpath of m->dir, computed on first use */
};

struct loader {
    struct pb_ctx c;
    struct kiln_model *m;
    struct kiln_arena *a;
    struct tpb_sink sink;
    struct ext_table ext;
};

#define NFIELDS 32

static kiln_status oom(struct loader *L)
{
    return kiln_pb_fail(&L->c, KILN_E_NOMEM, "out of memory");
}

/* Counts occurrences of fields 1..NFIELDS-1 (others are not counted). */
static kiln_status count_fields(struct loader *L, const uint8_t *p, size_t len, size_t *counts)
{
    struct pb_reader r;
    struct pb_field f;
    memset(counts, 0, NFIELDS * sizeof *counts);
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num < NFIELDS) counts[f.num]++;
    }
    L->c.stack[L->c.depth - 1].cur = 0;
    return KILN_OK;
}

static kiln_status str(struct loader *L, const struct pb_field *f, const char *what,
                       const char **out)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, what));
    char *s = kiln_arena_strndup(L->a, (const char *)f->data, f->len);
    if (!s) return oom(L);
    *out = s;
    return KILN_OK;
}

static kiln_status varint(struct loader *L, const struct pb_field *f, const char *what,
                          int64_t *out)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_VARINT, what));
    *out = (int64_t)f->u;
    return KILN_OK;
}

static void *arr(struct loader *L, size_t n, size_t size)
{
    if (!n) return NULL;
    return kiln_arena_array(L->a, n, size);
}

#define ARR(L, ptr, n) ((ptr) = arr((L), (n), sizeof *(ptr)), ((n) && !(ptr)) ? oom(L) : KILN_OK)

static const char *norm_domain(const char *d) { return strcmp(d, "ai.onnx") ? d : ""; }

/* ------------------------------------------------------------------ types */

static kiln_status decode_type(struct loader *L, const uint8_t *p, size_t len,
                               struct kiln_type *t);

static kiln_status elem_type(struct loader *L, const struct pb_field *f, kiln_dtype *out)
{
    int64_t v;
    KILN_TRY(varint(L, f, "elem_type", &v));
    if (v != 0 && !kiln_dtype_valid((int)v))
        return kiln_pb_fail(&L->c, KILN_E_UNSUPPORTED, "element type %lld is not known to kiln",
                       (long long)v);
    *out = (kiln_dtype)v;
    return KILN_OK;
}

static kiln_status decode_dim(struct loader *L, const uint8_t *p, size_t len, struct kiln_dim *d)
{
    struct pb_reader r;
    struct pb_field f;
    d->value = -1;
    d->param = NULL;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num == 1) {
            KILN_TRY(varint(L, &f, "dim_value", &d->value));
            if (d->value < 0)
                return kiln_pb_fail(&L->c, KILN_E_INVALID_MODEL, "dim_value %lld is negative",
                               (long long)d->value);
            d->param = NULL;
        } else if (f.num == 2) {
            KILN_TRY(str(L, &f, "dim_param", &d->param));
            d->value = -1;
        }
    }
    return KILN_OK;
}

static kiln_status decode_shape(struct loader *L, const uint8_t *p, size_t len,
                                struct kiln_type *t)
{
    size_t counts[NFIELDS];
    KILN_TRY(count_fields(L, p, len, counts));
    if (counts[1] > KILN_MAX_RANK)
        return kiln_pb_fail(&L->c, KILN_E_LIMIT, "shape has %zu dims; the limit is %d", counts[1],
                       KILN_MAX_RANK);
    t->rank = (int)counts[1];
    KILN_TRY(ARR(L, t->dims, counts[1]));
    struct pb_reader r;
    struct pb_field f;
    size_t i = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num != 1) continue;
        KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "dim"));
        KILN_TRY(kiln_pb_push(&L->c, "dim", (int64_t)i, "TensorShapeProto.Dimension"));
        KILN_TRY(decode_dim(L, f.data, f.len, &t->dims[i++]));
        kiln_pb_pop(&L->c);
    }
    return KILN_OK;
}

/* TypeProto.Tensor / TypeProto.SparseTensor. */
static kiln_status decode_tensor_type(struct loader *L, const uint8_t *p, size_t len,
                                      struct kiln_type *t)
{
    struct pb_reader r;
    struct pb_field f;
    t->rank = -1;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num == 1) {
            KILN_TRY(elem_type(L, &f, &t->elem));
        } else if (f.num == 2) {
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "shape"));
            KILN_TRY(kiln_pb_push(&L->c, "shape", -1, "TensorShapeProto"));
            KILN_TRY(decode_shape(L, f.data, f.len, t));
            kiln_pb_pop(&L->c);
        }
    }
    return KILN_OK;
}

/* A nested TypeProto field (sequence/optional elem_type, map value_type) into *out. */
static kiln_status inner_type(struct loader *L, const struct pb_field *f, const char *what,
                              struct kiln_type **out)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, what));
    struct kiln_type *in = kiln_arena_alloc(L->a, sizeof *in);
    if (!in) return oom(L);
    KILN_TRY(kiln_pb_push(&L->c, what, -1, "TypeProto"));
    KILN_TRY(decode_type(L, f->data, f->len, in));
    kiln_pb_pop(&L->c);
    *out = in;
    return KILN_OK;
}

/* TypeProto.Sequence / TypeProto.Optional (field 1: elem_type) and TypeProto.Map. */
static kiln_status decode_wrapper(struct loader *L, const uint8_t *p, size_t len,
                                  struct kiln_type *t, bool map)
{
    struct pb_reader r;
    struct pb_field f;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (map && f.num == 1) KILN_TRY(elem_type(L, &f, &t->elem));
        else if (map && f.num == 2) KILN_TRY(inner_type(L, &f, "value_type", &t->inner));
        else if (!map && f.num == 1) KILN_TRY(inner_type(L, &f, "elem_type", &t->inner));
    }
    return KILN_OK;
}

static kiln_status decode_type(struct loader *L, const uint8_t *p, size_t len, struct kiln_type *t)
{
    struct pb_reader r;
    struct pb_field f;
    memset(t, 0, sizeof *t);
    t->rank = -1;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        static const struct { uint32_t num; enum kiln_type_kind kind; const char *name, *type; }
        kinds[] = {
            {1, KILN_TYPE_TENSOR, "tensor_type", "TypeProto.Tensor"},
            {4, KILN_TYPE_SEQUENCE, "sequence_type", "TypeProto.Sequence"},
            {5, KILN_TYPE_MAP, "map_type", "TypeProto.Map"},
            {8, KILN_TYPE_SPARSE_TENSOR, "sparse_tensor_type", "TypeProto.SparseTensor"},
            {9, KILN_TYPE_OPTIONAL, "optional_type", "TypeProto.Optional"},
        };
        if (f.num == 6) {
            KILN_TRY(str(L, &f, "denotation", &t->denotation));
            continue;
        }
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            if (kinds[k].num != f.num) continue;
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, kinds[k].name));
            const char *den = t->denotation;
            memset(t, 0, sizeof *t); /* a oneof: the last one set wins */
            t->denotation = den;
            t->rank = -1;
            t->kind = kinds[k].kind;
            KILN_TRY(kiln_pb_push(&L->c, kinds[k].name, -1, kinds[k].type));
            if (t->kind == KILN_TYPE_TENSOR || t->kind == KILN_TYPE_SPARSE_TENSOR)
                KILN_TRY(decode_tensor_type(L, f.data, f.len, t));
            else
                KILN_TRY(decode_wrapper(L, f.data, f.len, t, t->kind == KILN_TYPE_MAP));
            kiln_pb_pop(&L->c);
        }
    }
    return KILN_OK;
}

static kiln_status decode_value_info(struct loader *L, const uint8_t *p, size_t len,
                                     struct kiln_value_info *vi)
{
    struct pb_reader r;
    struct pb_field f;
    vi->name = "";
    vi->doc = "";
    vi->type.kind = KILN_TYPE_NONE;
    vi->type.rank = -1;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num == 1) {
            KILN_TRY(str(L, &f, "name", &vi->name));
        } else if (f.num == 2) {
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "type"));
            KILN_TRY(kiln_pb_push(&L->c, "type", -1, "TypeProto"));
            KILN_TRY(decode_type(L, f.data, f.len, &vi->type));
            kiln_pb_pop(&L->c);
        } else if (f.num == 3) {
            KILN_TRY(str(L, &f, "doc_string", &vi->doc));
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ tensors */

static kiln_status tensor_field(struct loader *L, const struct pb_field *f, const char *field,
                                int64_t index, const char *kind, struct kiln_tensor *t,
                                const char **name, const char **doc)
{
    char *nm = NULL, *dc = NULL;
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, field));
    KILN_TRY(kiln_pb_push(&L->c, field, index, "TensorProto"));
    KILN_TRY(kiln_tpb_decode(&L->c, &L->sink, f->data, f->len, kind, t, name ? &nm : NULL,
                             doc ? &dc : NULL));
    kiln_pb_pop(&L->c);
    if (name) *name = nm ? nm : "";
    if (doc) *doc = dc ? dc : "";
    return KILN_OK;
}

static kiln_status sparse_field(struct loader *L, const struct pb_field *f, const char *field,
                                int64_t index, struct kiln_sparse_tensor *sp)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, field));
    KILN_TRY(kiln_pb_push(&L->c, field, index, "SparseTensorProto"));
    KILN_TRY(kiln_tpb_decode_sparse(&L->c, &L->sink, f->data, f->len, sp));
    kiln_pb_pop(&L->c);
    return KILN_OK;
}

/* ------------------------------------------------------------------ graphs, nodes */

static kiln_status decode_graph(struct loader *L, const uint8_t *p, size_t len,
                                struct kiln_graph *g, struct kiln_graph *parent);

static kiln_status graph_field(struct loader *L, const struct pb_field *f, const char *field,
                               int64_t index, struct kiln_graph *parent, struct kiln_graph **out)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, field));
    struct kiln_graph *g = kiln_arena_alloc(L->a, sizeof *g);
    if (!g) return oom(L);
    KILN_TRY(kiln_pb_push(&L->c, field, index, "GraphProto"));
    KILN_TRY(decode_graph(L, f->data, f->len, g, parent));
    kiln_pb_pop(&L->c);
    *out = g;
    return KILN_OK;
}

enum {
    AT_NAME = 1, AT_F = 2, AT_I = 3, AT_S = 4, AT_T = 5, AT_G = 6, AT_FLOATS = 7, AT_INTS = 8,
    AT_STRINGS = 9, AT_TENSORS = 10, AT_GRAPHS = 11, AT_DOC = 13, AT_TP = 14, AT_TPS = 15,
    AT_TYPE = 20, AT_REF = 21, AT_SPARSE = 22, AT_SPARSES = 23,
};

/* The attribute type a set field implies (for old models that omit `type`). */
static enum kiln_attr_type attr_type_of_field(uint32_t num)
{
    switch (num) {
    case AT_F: return KILN_ATTR_FLOAT;
    case AT_I: return KILN_ATTR_INT;
    case AT_S: return KILN_ATTR_STRING;
    case AT_T: return KILN_ATTR_TENSOR;
    case AT_G: return KILN_ATTR_GRAPH;
    case AT_FLOATS: return KILN_ATTR_FLOATS;
    case AT_INTS: return KILN_ATTR_INTS;
    case AT_STRINGS: return KILN_ATTR_STRINGS;
    case AT_TENSORS: return KILN_ATTR_TENSORS;
    case AT_GRAPHS: return KILN_ATTR_GRAPHS;
    case AT_TP: return KILN_ATTR_TYPE_PROTO;
    case AT_TPS: return KILN_ATTR_TYPE_PROTOS;
    case AT_SPARSE: return KILN_ATTR_SPARSE_TENSOR;
    case AT_SPARSES: return KILN_ATTR_SPARSE_TENSORS;
    default: return KILN_ATTR_UNDEFINED;
    }
}

static kiln_status decode_attr(struct loader *L, const uint8_t *p, size_t len,
                               struct kiln_attr *at, struct kiln_graph *owner)
{
    struct pb_reader r;
    struct pb_field f;
    size_t n_floats = 0, n_ints = 0, counts[NFIELDS] = {0}, n;
    int64_t type = 0;

    at->name = "";
    at->doc = "";
    /* Pass 1: counts (floats/ints may be packed) and the declared or implied type. */
    enum kiln_attr_type implied = KILN_ATTR_UNDEFINED;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num == AT_FLOATS) {
            KILN_TRY(kiln_pb_count_packed(&L->c, &f, 4, "floats", &n));
            n_floats += n;
        } else if (f.num == AT_INTS) {
            KILN_TRY(kiln_pb_count_packed(&L->c, &f, 0, "ints", &n));
            n_ints += n;
        } else if (f.num == AT_TYPE) {
            KILN_TRY(varint(L, &f, "type", &type));
        } else if (f.num == AT_NAME) {
            KILN_TRY(str(L, &f, "name", &at->name));
        } else if (f.num < NFIELDS) {
            counts[f.num]++;
        }
        if (implied == KILN_ATTR_UNDEFINED) implied = attr_type_of_field(f.num);
    }
    L->c.stack[L->c.depth - 1].cur = 0;
    if (type < 0 || type > KILN_ATTR_TYPE_PROTOS)
        return kiln_pb_fail(&L->c, KILN_E_INVALID_MODEL, "attribute '%s' has unknown type %lld",
                       at->name, (long long)type);
    at->type = type ? (enum kiln_attr_type)type : implied;

    /* Lists: allocate the one the type selects. */
    switch (at->type) {
    case KILN_ATTR_FLOATS: at->n = n_floats; KILN_TRY(ARR(L, at->floats, n_floats)); break;
    case KILN_ATTR_INTS: at->n = n_ints; KILN_TRY(ARR(L, at->ints, n_ints)); break;
    case KILN_ATTR_STRINGS:
        at->n = counts[AT_STRINGS];
        KILN_TRY(ARR(L, at->strings, at->n));
        KILN_TRY(ARR(L, at->string_lens, at->n));
        break;
    case KILN_ATTR_TENSORS: at->n = counts[AT_TENSORS]; KILN_TRY(ARR(L, at->tensors, at->n)); break;
    case KILN_ATTR_GRAPHS: at->n = counts[AT_GRAPHS]; KILN_TRY(ARR(L, at->graphs, at->n)); break;
    case KILN_ATTR_SPARSE_TENSORS:
        at->n = counts[AT_SPARSES];
        KILN_TRY(ARR(L, at->sparses, at->n));
        break;
    case KILN_ATTR_TYPE_PROTOS: at->n = counts[AT_TPS]; KILN_TRY(ARR(L, at->types, at->n)); break;
    default: break;
    }

    /* Pass 2: only the fields of the selected type are decoded; others are skipped. */
    size_t k = 0;
    enum kiln_attr_type ty = at->type;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        switch (f.num) {
        case AT_DOC: KILN_TRY(str(L, &f, "doc_string", &at->doc)); break;
        case AT_REF: KILN_TRY(str(L, &f, "ref_attr_name", &at->ref_attr_name)); break;
        case AT_F:
            if (ty != KILN_ATTR_FLOAT) break;
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_I32, "f"));
            {
                uint32_t bits = (uint32_t)f.u;
                memcpy(&at->f, &bits, 4);
            }
            break;
        case AT_I:
            if (ty == KILN_ATTR_INT) KILN_TRY(varint(L, &f, "i", &at->i));
            break;
        case AT_S:
            if (ty != KILN_ATTR_STRING) break;
            KILN_TRY(str(L, &f, "s", &at->s));
            at->s_len = f.len;
            break;
        case AT_T:
            if (ty != KILN_ATTR_TENSOR) break;
            at->t = kiln_arena_alloc(L->a, sizeof *at->t);
            if (!at->t) return oom(L);
            KILN_TRY(tensor_field(L, &f, "t", -1, "attribute tensor", at->t, &at->t_name, NULL));
            break;
        case AT_G:
            if (ty == KILN_ATTR_GRAPH) KILN_TRY(graph_field(L, &f, "g", -1, owner, &at->g));
            break;
        case AT_SPARSE:
            if (ty != KILN_ATTR_SPARSE_TENSOR) break;
            at->sp = kiln_arena_alloc(L->a, sizeof *at->sp);
            if (!at->sp) return oom(L);
            KILN_TRY(sparse_field(L, &f, "sparse_tensor", -1, at->sp));
            break;
        case AT_TP:
            if (ty != KILN_ATTR_TYPE_PROTO) break;
            KILN_TRY(inner_type(L, &f, "tp", &at->tp));
            break;
        case AT_FLOATS:
            if (ty != KILN_ATTR_FLOATS) break;
            {
                struct pb_field g = f;
                /* read into a uint64 staging slot per element: floats are few */
                uint64_t tmp[64];
                if (g.wire != PB_LEN) {
                    uint32_t bits = (uint32_t)g.u;
                    if (k < at->n) memcpy(&at->floats[k++], &bits, 4);
                    break;
                }
                for (size_t off = 0; off < g.len; off += 4 * 64) {
                    struct pb_field part = g;
                    part.data = g.data + off;
                    part.len = g.len - off < 4 * 64 ? g.len - off : 4 * 64;
                    size_t m = 0;
                    KILN_TRY(kiln_pb_read_packed(&L->c, &part, 4, "floats", tmp, 64, &m));
                    for (size_t j = 0; j < m && k < at->n; j++) {
                        uint32_t bits = (uint32_t)tmp[j];
                        memcpy(&at->floats[k++], &bits, 4);
                    }
                }
            }
            break;
        case AT_INTS:
            if (ty != KILN_ATTR_INTS) break;
            KILN_TRY(kiln_pb_read_packed(&L->c, &f, 0, "ints", (uint64_t *)at->ints, at->n, &k));
            break;
        case AT_STRINGS:
            if (ty != KILN_ATTR_STRINGS) break;
            KILN_TRY(kiln_pb_push(&L->c, "strings", (int64_t)k, "bytes"));
            KILN_TRY(str(L, &f, "strings", &at->strings[k]));
            kiln_pb_pop(&L->c);
            at->string_lens[k++] = f.len;
            break;
        case AT_TENSORS:
            if (ty != KILN_ATTR_TENSORS) break;
            KILN_TRY(tensor_field(L, &f, "tensors", (int64_t)k, "attribute tensor",
                                  &at->tensors[k], NULL, NULL));
            k++;
            break;
        case AT_GRAPHS:
            if (ty != KILN_ATTR_GRAPHS) break;
            KILN_TRY(graph_field(L, &f, "graphs", (int64_t)k, owner, &at->graphs[k]));
            k++;
            break;
        case AT_SPARSES:
            if (ty != KILN_ATTR_SPARSE_TENSORS) break;
            KILN_TRY(sparse_field(L, &f, "sparse_tensors", (int64_t)k, &at->sparses[k]));
            k++;
            break;
        case AT_TPS:
            if (ty != KILN_ATTR_TYPE_PROTOS) break;
            {
                struct kiln_type *tp;
                KILN_TRY(inner_type(L, &f, "type_protos", &tp));
                at->types[k++] = *tp;
            }
            break;
        default:
            break;
        }
    }
    return KILN_OK;
}

/* Repeated string field into a fresh array (pass 1 counted n). */
static kiln_status decode_node(struct loader *L, const uint8_t *p, size_t len,
                               struct kiln_node *n, struct kiln_graph *owner)
{
    size_t counts[NFIELDS];
    KILN_TRY(count_fields(L, p, len, counts));
    n->name = "";
    n->op_type = "";
    n->domain = "";
    n->doc = "";
    n->n_in = counts[1];
    n->n_out = counts[2];
    n->n_attr = counts[5];
    KILN_TRY(ARR(L, n->inputs, n->n_in));
    KILN_TRY(ARR(L, n->outputs, n->n_out));
    KILN_TRY(ARR(L, n->attrs, n->n_attr));
    struct pb_reader r;
    struct pb_field f;
    size_t ni = 0, no = 0, na = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        switch (f.num) {
        case 1: KILN_TRY(str(L, &f, "input", &n->inputs[ni++])); break;
        case 2: KILN_TRY(str(L, &f, "output", &n->outputs[no++])); break;
        case 3: KILN_TRY(str(L, &f, "name", &n->name)); break;
        case 4: KILN_TRY(str(L, &f, "op_type", &n->op_type)); break;
        case 5:
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "attribute"));
            KILN_TRY(kiln_pb_push(&L->c, "attribute", (int64_t)na, "AttributeProto"));
            KILN_TRY(decode_attr(L, f.data, f.len, &n->attrs[na++], owner));
            kiln_pb_pop(&L->c);
            break;
        case 6: KILN_TRY(str(L, &f, "doc_string", &n->doc)); break;
        case 7:
            KILN_TRY(str(L, &f, "domain", &n->domain));
            n->domain = norm_domain(n->domain);
            break;
        default: break; /* overload, metadata_props, device_configurations */
        }
    }
    return KILN_OK;
}

static kiln_status value_infos(struct loader *L, const struct pb_field *f, const char *field,
                               size_t index, struct kiln_value_info *vi)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, field));
    KILN_TRY(kiln_pb_push(&L->c, field, (int64_t)index, "ValueInfoProto"));
    KILN_TRY(decode_value_info(L, f->data, f->len, vi));
    kiln_pb_pop(&L->c);
    return KILN_OK;
}

static kiln_status decode_graph(struct loader *L, const uint8_t *p, size_t len,
                                struct kiln_graph *g, struct kiln_graph *parent)
{
    size_t counts[NFIELDS];
    KILN_TRY(count_fields(L, p, len, counts));
    g->name = "";
    g->doc = "";
    g->parent = parent;
    g->model = L->m;
    g->n_nodes = counts[1];
    g->n_inits = counts[5];
    g->n_inputs = counts[11];
    g->n_outputs = counts[12];
    g->n_value_info = counts[13];
    g->n_sparse_inits = counts[15];
    KILN_TRY(ARR(L, g->nodes, g->n_nodes));
    KILN_TRY(ARR(L, g->inits, g->n_inits));
    KILN_TRY(ARR(L, g->inputs, g->n_inputs));
    KILN_TRY(ARR(L, g->outputs, g->n_outputs));
    KILN_TRY(ARR(L, g->value_info, g->n_value_info));
    KILN_TRY(ARR(L, g->sparse_inits, g->n_sparse_inits));
    struct pb_reader r;
    struct pb_field f;
    size_t i_node = 0, i_init = 0, i_in = 0, i_out = 0, i_vi = 0, i_sp = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        switch (f.num) {
        case 1:
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "node"));
            KILN_TRY(kiln_pb_push(&L->c, "node", (int64_t)i_node, "NodeProto"));
            KILN_TRY(decode_node(L, f.data, f.len, &g->nodes[i_node++], g));
            kiln_pb_pop(&L->c);
            break;
        case 2: KILN_TRY(str(L, &f, "name", &g->name)); break;
        case 5: {
            struct kiln_initializer *in = &g->inits[i_init];
            KILN_TRY(tensor_field(L, &f, "initializer", (int64_t)i_init, "initializer", &in->t,
                                  &in->name, &in->doc));
            i_init++;
            break;
        }
        case 10: KILN_TRY(str(L, &f, "doc_string", &g->doc)); break;
        case 11: KILN_TRY(value_infos(L, &f, "input", i_in, &g->inputs[i_in])); i_in++; break;
        case 12: KILN_TRY(value_infos(L, &f, "output", i_out, &g->outputs[i_out])); i_out++; break;
        case 13:
            KILN_TRY(value_infos(L, &f, "value_info", i_vi, &g->value_info[i_vi]));
            i_vi++;
            break;
        case 15:
            KILN_TRY(sparse_field(L, &f, "sparse_initializer", (int64_t)i_sp,
                                  &g->sparse_inits[i_sp]));
            i_sp++;
            break;
        default: break; /* quantization_annotation, metadata_props */
        }
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ model */

static kiln_status decode_opset(struct loader *L, const uint8_t *p, size_t len,
                                struct kiln_opset *o)
{
    struct pb_reader r;
    struct pb_field f;
    o->domain = "";
    o->version = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        if (f.num == 1) {
            KILN_TRY(str(L, &f, "domain", &o->domain));
            o->domain = norm_domain(o->domain);
        } else if (f.num == 2) {
            KILN_TRY(varint(L, &f, "version", &o->version));
        }
    }
    return KILN_OK;
}

static kiln_status opset_field(struct loader *L, const struct pb_field *f, size_t i,
                               struct kiln_opset *o)
{
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, "opset_import"));
    KILN_TRY(kiln_pb_push(&L->c, "opset_import", (int64_t)i, "OperatorSetIdProto"));
    KILN_TRY(decode_opset(L, f->data, f->len, o));
    kiln_pb_pop(&L->c);
    return KILN_OK;
}

static kiln_status decode_kv(struct loader *L, const struct pb_field *f, size_t i,
                             struct kiln_kv *kv)
{
    struct pb_reader r;
    struct pb_field g;
    kv->key = kv->value = "";
    KILN_TRY(kiln_pb_want(&L->c, f, PB_LEN, "metadata_props"));
    KILN_TRY(kiln_pb_push(&L->c, "metadata_props", (int64_t)i, "StringStringEntryProto"));
    pb_reader_init(&r, f->data, f->len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &g));
        if (g.num == 1) KILN_TRY(str(L, &g, "key", &kv->key));
        else if (g.num == 2) KILN_TRY(str(L, &g, "value", &kv->value));
    }
    kiln_pb_pop(&L->c);
    return KILN_OK;
}

static kiln_status decode_function(struct loader *L, const uint8_t *p, size_t len,
                                   struct kiln_function *fn)
{
    size_t counts[NFIELDS];
    KILN_TRY(count_fields(L, p, len, counts));
    fn->name = fn->domain = fn->overload = fn->doc = "";
    fn->n_in = counts[4];
    fn->n_out = counts[5];
    fn->n_attr_names = counts[6];
    fn->n_nodes = counts[7];
    fn->n_opsets = counts[9];
    KILN_TRY(ARR(L, fn->inputs, fn->n_in));
    KILN_TRY(ARR(L, fn->outputs, fn->n_out));
    KILN_TRY(ARR(L, fn->attr_names, fn->n_attr_names));
    KILN_TRY(ARR(L, fn->nodes, fn->n_nodes));
    KILN_TRY(ARR(L, fn->opsets, fn->n_opsets));
    struct pb_reader r;
    struct pb_field f;
    size_t ii = 0, io = 0, ia = 0, in = 0, iop = 0;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        switch (f.num) {
        case 1: KILN_TRY(str(L, &f, "name", &fn->name)); break;
        case 4: KILN_TRY(str(L, &f, "input", &fn->inputs[ii++])); break;
        case 5: KILN_TRY(str(L, &f, "output", &fn->outputs[io++])); break;
        case 6: KILN_TRY(str(L, &f, "attribute", &fn->attr_names[ia++])); break;
        case 7:
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "node"));
            KILN_TRY(kiln_pb_push(&L->c, "node", (int64_t)in, "NodeProto"));
            KILN_TRY(decode_node(L, f.data, f.len, &fn->nodes[in++], NULL));
            kiln_pb_pop(&L->c);
            break;
        case 8: KILN_TRY(str(L, &f, "doc_string", &fn->doc)); break;
        case 9: KILN_TRY(opset_field(L, &f, iop, &fn->opsets[iop])); iop++; break;
        case 10:
            KILN_TRY(str(L, &f, "domain", &fn->domain));
            fn->domain = norm_domain(fn->domain);
            break;
        case 13: KILN_TRY(str(L, &f, "overload", &fn->overload)); break;
        default: break; /* attribute_proto (defaults), value_info, metadata_props */
        }
    }
    return KILN_OK;
}

static kiln_status decode_model(struct loader *L, const uint8_t *p, size_t len)
{
    struct kiln_model *m = L->m;
    size_t counts[NFIELDS];
    KILN_TRY(count_fields(L, p, len, counts));
    m->producer_name = m->producer_version = m->domain = m->doc = "";
    m->n_opsets = counts[8];
    m->n_meta = counts[14];
    m->n_functions = counts[25];
    KILN_TRY(ARR(L, m->opsets, m->n_opsets));
    KILN_TRY(ARR(L, m->meta, m->n_meta));
    KILN_TRY(ARR(L, m->functions, m->n_functions));
    struct pb_reader r;
    struct pb_field f;
    size_t iop = 0, im = 0, ifn = 0;
    bool has_graph = false;
    pb_reader_init(&r, p, len);
    while (pb_more(&r)) {
        KILN_TRY(kiln_pb_next(&L->c, &r, &f));
        switch (f.num) {
        case 1: KILN_TRY(varint(L, &f, "ir_version", &m->ir_version)); break;
        case 2: KILN_TRY(str(L, &f, "producer_name", &m->producer_name)); break;
        case 3: KILN_TRY(str(L, &f, "producer_version", &m->producer_version)); break;
        case 4: KILN_TRY(str(L, &f, "domain", &m->domain)); break;
        case 5: KILN_TRY(varint(L, &f, "model_version", &m->model_version)); break;
        case 6: KILN_TRY(str(L, &f, "doc_string", &m->doc)); break;
        case 7:
            /* Protobuf merges repeated occurrences of a message field; a second graph is
             * so unusual that refusing it is clearer. */
            if (has_graph)
                return kiln_pb_fail(&L->c, KILN_E_INVALID_MODEL, "the model has two graphs");
            KILN_TRY(graph_field(L, &f, "graph", -1, NULL, &m->graph));
            has_graph = true;
            break;
        case 8: KILN_TRY(opset_field(L, &f, iop, &m->opsets[iop])); iop++; break;
        case 14: KILN_TRY(decode_kv(L, &f, im, &m->meta[im])); im++; break;
        case 25:
            KILN_TRY(kiln_pb_want(&L->c, &f, PB_LEN, "functions"));
            KILN_TRY(kiln_pb_push(&L->c, "functions", (int64_t)ifn, "FunctionProto"));
            KILN_TRY(decode_function(L, f.data, f.len, &m->functions[ifn++]));
            kiln_pb_pop(&L->c);
            break;
        default: break; /* training_info, configuration, unknown */
        }
    }
    L->c.stack[0].cur = 0;
    if (!has_graph)
        return kiln_pb_fail(&L->c, KILN_E_INVALID_MODEL,
                       "no graph (field 7): this is not an ONNX model or it is truncated");
    return KILN_OK;
}

/* ------------------------------------------------------------------ external data */

kiln_status kiln_onnx_external(struct pb_ctx *c, const struct tpb_sink *s, const char *label,
                               const char *location, bool has_offset, uint64_t offset,
                               bool has_length, uint64_t length, size_t need,
                               const uint8_t **out)
{
    struct kiln_model *m = s->model;
    struct ext_table *ext = s->ext_state;
    if (m && m->engine_data && strcmp(location, KILN_ENGINE_DATA_LOCATION) == 0) {
        uint64_t off = has_offset ? offset : 0;
        if (has_length && length != need)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                                "%s: engine data length %llu does not match the %zu bytes its dims need",
                                label, (unsigned long long)length, need);
        if (off > m->engine_data_len || need > m->engine_data_len - off)
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                                "%s: engine data at offset %llu + %zu bytes runs past the weight section "
                                "(%zu bytes)", label, (unsigned long long)off, need, m->engine_data_len);
        *out = m->engine_data + off;
        return KILN_OK;
    }
    if (!m || !ext || !m->dir)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "%s uses external data '%s', but the model has no folder to resolve it "
                       "against (loaded from memory)", label, location);
    if (location[0] == '/')
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "%s: external data path '%s' is absolute; it must be relative to the "
                       "model's folder", label, location);
    /* Any ".." component is refused outright, even one that would stay inside. */
    for (const char *q = location; *q;) {
        const char *e = strchr(q, '/');
        size_t n = e ? (size_t)(e - q) : strlen(q);
        if (n == 2 && q[0] == '.' && q[1] == '.')
            return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                           "%s: external data path '%s' escapes the model's folder ('..')",
                           label, location);
        q += n + (e != NULL);
    }
    if (!location[0])
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL, "%s: external data location is empty", label);
    if (!ext->root) {
        char *root = realpath(m->dir, NULL);
        if (!root)
            return kiln_pb_fail(c, KILN_E_IO, "%s: cannot resolve the model's folder '%s': %s", label,
                           m->dir, strerror(errno));
        ext->root = kiln_strdup(root);
        free(root); /* realpath's buffer comes from malloc, not kiln_malloc */
        if (!ext->root) return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory");
    }
    size_t plen = strlen(m->dir) + strlen(location) + 2;
    char *joined = kiln_malloc(plen);
    if (!joined) return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory");
    snprintf(joined, plen, "%s/%s", m->dir, location);
    char *rp = realpath(joined, NULL);
    kiln_free(joined);
    if (!rp)
        return kiln_pb_fail(c, KILN_E_IO, "%s: cannot open external data file '%s': %s", label,
                       location, strerror(errno));
    size_t rl = strlen(ext->root);
    bool inside = !strncmp(rp, ext->root, rl) && (rp[rl] == '/' || (rl == 1 && rl > 0));
    if (!inside) {
        kiln_status st = kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                                 "%s: external data path '%s' resolves to '%s', outside the "
                                 "model's folder '%s'", label, location, rp, ext->root);
        free(rp);
        return st;
    }
    size_t idx = m->n_ext;
    for (size_t i = 0; i < m->n_ext; i++)
        if (!strcmp(ext->paths[i], rp)) idx = i;
    if (idx == m->n_ext) {
        char *keep = kiln_strdup(rp);
        struct kiln_mapping *maps = keep ? kiln_realloc(m->ext, (m->n_ext + 1) * sizeof *maps)
                                         : NULL;
        if (maps) m->ext = maps;
        char **paths = maps ? kiln_realloc(ext->paths, (m->n_ext + 1) * sizeof *paths) : NULL;
        if (!paths) {
            kiln_free(keep);
            free(rp);
            return kiln_pb_fail(c, KILN_E_NOMEM, "out of memory");
        }
        ext->paths = paths;
        kiln_err e2;
        kiln_status st = kiln_map_file(rp, &m->ext[m->n_ext], &e2);
        if (st) {
            kiln_free(keep);
            st = kiln_pb_fail(c, st, "%s: external data file '%s': %s", label, location, e2.msg);
            free(rp);
            return st;
        }
        ext->paths[m->n_ext++] = keep;
    }
    free(rp);
    const struct kiln_mapping *map = &m->ext[idx];
    uint64_t off = has_offset ? offset : 0;
    if (off > map->size)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "%s: external data offset %llu is past the end of '%s' (%zu bytes)", label,
                       (unsigned long long)off, location, map->size);
    if (has_length && length != need)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "%s: external data length %llu in '%s' does not match the %zu bytes its "
                       "dims need", label, (unsigned long long)length, location, need);
    if (need > map->size - off)
        return kiln_pb_fail(c, KILN_E_INVALID_MODEL,
                       "%s: external data at offset %llu + %zu bytes runs past the end of '%s' "
                       "(%zu bytes)", label, (unsigned long long)off, need, location, map->size);
    *out = map->data + off;
    return KILN_OK;
}

kiln_status kiln_onnx_load(struct kiln_model *m, const uint8_t *buf, size_t len, kiln_err *err)
{
    struct loader *L = kiln_calloc(1, sizeof *L);
    if (!L) return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading a model");
    kiln_pb_ctx_init(&L->c, err, "ModelProto");
    L->m = m;
    L->a = &m->arena;
    L->sink.arena = &m->arena;
    L->sink.borrow_lo = buf;
    L->sink.borrow_hi = len ? buf + len : buf;
    L->sink.model = m;
    L->sink.ext_state = &L->ext;
    kiln_status st = decode_model(L, buf, len);
    if (st == KILN_E_INVALID_MODEL && L->c.depth == 1 && err) {
        /* Failing on the outermost message's own fields usually means the bytes are not a
         * model at all, or were cut short. */
        size_t n = strlen(err->msg);
        if (!strstr(err->msg, "not an ONNX model"))
            snprintf(err->msg + n, sizeof err->msg - n,
                     " (not an ONNX model, or the file is truncated)");
    }
    for (size_t i = 0; i < m->n_ext; i++) kiln_free(L->ext.paths[i]);
    kiln_free(L->ext.paths);
    kiln_free(L->ext.root);
    kiln_free(L);
    return st;
}
