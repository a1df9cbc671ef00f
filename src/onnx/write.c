/* write.c: kiln IR (struct kiln_model, ir.h) -> ModelProto bytes; the inverse of load.c.
 *
 * Follows onnx/onnx.proto (IR version 11), which is proto2: repeated scalars are written
 * unpacked, as protobuf's own serializers write them. Everything load.c keeps is written
 * back (see docs/onnx-loading.md, "Writing"): ModelProto (ir_version, opset_import,
 * producer, domain, model_version, doc_string, metadata_props, functions), GraphProto
 * (nodes, initializers, sparse initializers, inputs, outputs, value_info, doc strings),
 * NodeProto with every attribute type (subgraphs recursively), TypeProto (tensor,
 * sequence, map, optional, sparse tensor; dim_value / dim_param; denotation) and
 * FunctionProto. Tensors go through tensor_pb.c (sub-byte types are repacked there).
 *
 * Nested messages are written in place: the length prefix is reserved as one byte and
 * widened after the message is complete (a memmove of its bytes), so the model exists
 * once in memory, whatever its nesting.
 *
 * External data: a tensor whose packed bytes number at least the threshold goes to one
 * data file next to the model, at an offset aligned to KILN_EXT_ALIGN bytes, with
 * data_location EXTERNAL and the location/offset/length entries. Both files are written
 * to temporary names and renamed only when both are complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"

/* Protobuf refuses messages of 2 GiB and more (its sizes are int32). */
#define PB_MAX_MESSAGE ((size_t)INT32_MAX)
/* Offsets of tensors in the external data file are multiples of this (SIMD-friendly, and
 * the loader borrows aligned data instead of copying it). */
#define KILN_EXT_ALIGN 64
/* Nesting deeper than the loader accepts would write a file that cannot be read back. */
#define MAX_GRAPH_DEPTH (PB_MAX_DEPTH / 3)

struct writer {
    struct kiln_buf b;
    kiln_err *err;
    /* external data (threshold 0: none) */
    size_t threshold;
    const char *ext_location; /* relative to the model's folder */
    const char *ext_final;    /* its path */
    char *ext_tmp;            /* temporary file being written; NULL until the first tensor */
    int ext_fd;
    uint64_t ext_off;
    int depth;
};

/* ------------------------------------------------------------------ wire helpers */

/* Starts a length-delimited field; returns the offset of its first content byte. */
static size_t msg_begin(struct writer *w, uint32_t num)
{
    kiln_pb_put_key(&w->b, num, PB_LEN);
    uint8_t zero = 0;
    kiln_buf_append(&w->b, &zero, 1);
    return w->b.len;
}

/* Ends the field msg_begin started: writes its length, widening the prefix if needed. */
static void msg_end(struct writer *w, size_t start)
{
    if (w->b.failed) return;
    size_t n = w->b.len - start;
    uint8_t tmp[10];
    size_t k = 0;
    uint64_t v = n;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[k++] = byte | (v ? 0x80 : 0);
    } while (v);
    if (k > 1) {
        static const uint8_t pad[10];
        kiln_buf_append(&w->b, pad, k - 1);
        if (w->b.failed) return;
        memmove(w->b.data + start + k - 1, w->b.data + start, n);
    }
    memcpy(w->b.data + start - 1, tmp, k);
}

static void put_str(struct writer *w, uint32_t num, const char *s)
{
    pb_put_str(&w->b, num, s ? s : "");
}

/* Writes a string field only when it is set and non-empty (proto2 optional). */
static void put_opt_str(struct writer *w, uint32_t num, const char *s)
{
    if (s && s[0]) pb_put_str(&w->b, num, s);
}

static void put_float(struct writer *w, uint32_t num, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint8_t le[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16), (uint8_t)(bits >> 24)};
    kiln_pb_put_key(&w->b, num, PB_I32);
    kiln_buf_append(&w->b, le, 4);
}

static kiln_status oom(struct writer *w)
{
    return kiln_err_set(w->err, KILN_E_NOMEM, "out of memory writing the model (%zu bytes so far)", w->b.len);
}

static kiln_status check(struct writer *w)
{
    if (w->b.failed) return oom(w);
    if (w->b.len > PB_MAX_MESSAGE)
        return kiln_err_set(w->err, KILN_E_LIMIT,
                            "the model takes over %zu bytes inline; protobuf limits a model to "
                            "2 GB: save it with an external data threshold",
                            PB_MAX_MESSAGE);
    return KILN_OK;
}

/* ------------------------------------------------------------------ external data */

static kiln_status ext_open(struct writer *w)
{
    size_t n = strlen(w->ext_final) + 16;
    w->ext_tmp = kiln_malloc(n);
    if (!w->ext_tmp) return oom(w);
    snprintf(w->ext_tmp, n, "%s.tmp.XXXXXX", w->ext_final);
    w->ext_fd = mkstemp(w->ext_tmp);
    if (w->ext_fd < 0) {
        kiln_status st = kiln_err_set(w->err, KILN_E_IO,
                                      "cannot create a temporary file for "
                                      "'%s': %s",
                                      w->ext_final, strerror(errno));
        kiln_free(w->ext_tmp);
        w->ext_tmp = NULL;
        return st;
    }
    return KILN_OK;
}

static kiln_status write_all(int fd, const void *data, size_t n, const char *path, kiln_err *err)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return KILN_OK;
}

/* Appends t's packed bytes to the data file at the next aligned offset; fills *x. */
static kiln_status ext_put(struct writer *w, const struct kiln_tensor *t, const char *label,
                           struct tpb_ext *x)
{
    if (!w->ext_tmp && w->ext_fd < 0) KILN_TRY(ext_open(w));
    static const uint8_t zeros[KILN_EXT_ALIGN];
    size_t pad = (size_t)(-w->ext_off % KILN_EXT_ALIGN);
    KILN_TRY(write_all(w->ext_fd, zeros, pad, w->ext_final, w->err));
    w->ext_off += pad;
    size_t n = kiln_tpb_raw_size(t);
    const void *bytes = t->data;
    uint8_t *packed = NULL;
    if (n != kiln_tensor_nbytes(t)) { /* sub-byte types: pack first */
        packed = kiln_malloc(n);
        if (!packed)
            return kiln_err_set(w->err, KILN_E_NOMEM, "out of memory packing %s (%zu bytes)", label, n);
        kiln_tpb_pack(t, packed);
        bytes = packed;
    }
    kiln_status st = write_all(w->ext_fd, bytes, n, w->ext_final, w->err);
    kiln_free(packed);
    if (st) return st;
    x->location = w->ext_location;
    x->offset = w->ext_off;
    x->length = n;
    w->ext_off += n;
    return KILN_OK;
}

/* ------------------------------------------------------------------ tensors, types */

/* A TensorProto as field `num`; `external_ok`: may go to the data file. */
static kiln_status put_tensor(struct writer *w, uint32_t num, const struct kiln_tensor *t, const char *name,
                              const char *doc, bool external_ok)
{
    char label[200];
    snprintf(label, sizeof label, "tensor '%.150s'", name && name[0] ? name : "(unnamed)");
    size_t raw = kiln_tpb_raw_size(t);
    struct tpb_ext x, *xp = NULL;
    if (external_ok && w->threshold && t->dtype != KILN_DTYPE_STRING && raw >= w->threshold) {
        KILN_TRY(ext_put(w, t, label, &x));
        xp = &x;
    } else if (raw > PB_MAX_MESSAGE) {
        return kiln_err_set(w->err, KILN_E_LIMIT,
                            "%s takes %zu bytes; protobuf limits a model to 2 GB inline: save "
                            "it with an external data threshold",
                            label, raw);
    }
    size_t at = msg_begin(w, num);
    kiln_status st = kiln_tpb_encode_full(t, name, doc, xp, &w->b, w->err);
    if (st) return st;
    msg_end(w, at);
    return check(w);
}

static void put_sparse(struct writer *w, uint32_t num, const struct kiln_sparse_tensor *sp, kiln_status *st)
{
    if (*st) return;
    size_t at = msg_begin(w, num);
    *st = put_tensor(w, 1, &sp->values, sp->name, NULL, false);
    if (!*st && sp->indices.dtype != KILN_DTYPE_UNDEFINED)
        *st = put_tensor(w, 2, &sp->indices, NULL, NULL, false);
    for (int i = 0; !*st && i < sp->rank; i++) kiln_pb_put_uint(&w->b, 3, (uint64_t)sp->dims[i]);
    msg_end(w, at);
}

static void put_type(struct writer *w, uint32_t num, const struct kiln_type *t);

/* TypeProto.Tensor / TypeProto.SparseTensor body. */
static void put_tensor_type(struct writer *w, const struct kiln_type *t)
{
    if (t->elem) kiln_pb_put_uint(&w->b, 1, (uint64_t)t->elem);
    if (t->rank < 0) return;
    size_t shape = msg_begin(w, 2);
    for (int i = 0; i < t->rank; i++) {
        size_t dim = msg_begin(w, 1);
        if (t->dims[i].value >= 0)
            kiln_pb_put_uint(&w->b, 1, (uint64_t)t->dims[i].value);
        else if (t->dims[i].param)
            put_str(w, 2, t->dims[i].param);
        msg_end(w, dim);
    }
    msg_end(w, shape);
}

static void put_type_body(struct writer *w, const struct kiln_type *t)
{
    static const uint32_t field[] = {
        [KILN_TYPE_TENSOR] = 1,   [KILN_TYPE_SEQUENCE] = 4,      [KILN_TYPE_MAP] = 5,
        [KILN_TYPE_OPTIONAL] = 9, [KILN_TYPE_SPARSE_TENSOR] = 8,
    };
    if (t->kind > KILN_TYPE_NONE && t->kind <= KILN_TYPE_SPARSE_TENSOR) {
        size_t at = msg_begin(w, field[t->kind]);
        switch (t->kind) {
        case KILN_TYPE_TENSOR:
        case KILN_TYPE_SPARSE_TENSOR:
            put_tensor_type(w, t);
            break;
        case KILN_TYPE_MAP:
            if (t->elem) kiln_pb_put_uint(&w->b, 1, (uint64_t)t->elem);
            if (t->inner) put_type(w, 2, t->inner);
            break;
        default: /* sequence, optional */
            if (t->inner) put_type(w, 1, t->inner);
            break;
        }
        msg_end(w, at);
    }
    put_opt_str(w, 6, t->denotation);
}

static void put_type(struct writer *w, uint32_t num, const struct kiln_type *t)
{
    size_t at = msg_begin(w, num);
    put_type_body(w, t);
    msg_end(w, at);
}

static void put_value_info(struct writer *w, uint32_t num, const struct kiln_value_info *vi)
{
    size_t at = msg_begin(w, num);
    put_str(w, 1, vi->name);
    if (vi->type.kind != KILN_TYPE_NONE || (vi->type.denotation && vi->type.denotation[0]))
        put_type(w, 2, &vi->type);
    put_opt_str(w, 3, vi->doc);
    msg_end(w, at);
}

/* ------------------------------------------------------------------ graphs, nodes */

static kiln_status put_graph(struct writer *w, uint32_t num, const struct kiln_graph *g);

enum {
    AT_NAME = 1,
    AT_F = 2,
    AT_I = 3,
    AT_S = 4,
    AT_T = 5,
    AT_G = 6,
    AT_FLOATS = 7,
    AT_INTS = 8,
    AT_STRINGS = 9,
    AT_TENSORS = 10,
    AT_GRAPHS = 11,
    AT_DOC = 13,
    AT_TP = 14,
    AT_TPS = 15,
    AT_TYPE = 20,
    AT_REF = 21,
    AT_SPARSE = 22,
    AT_SPARSES = 23,
};

static kiln_status put_attr(struct writer *w, const struct kiln_attr *a)
{
    kiln_status st = KILN_OK;
    size_t at = msg_begin(w, 5);
    put_str(w, AT_NAME, a->name);
    put_opt_str(w, AT_DOC, a->doc);
    if (a->type != KILN_ATTR_UNDEFINED) kiln_pb_put_uint(&w->b, AT_TYPE, (uint64_t)a->type);
    if (a->ref_attr_name) {
        /* a reference to the calling node's attribute (inside functions): no value */
        put_str(w, AT_REF, a->ref_attr_name);
        msg_end(w, at);
        return check(w);
    }
    switch (a->type) {
    case KILN_ATTR_FLOAT:
        put_float(w, AT_F, a->f);
        break;
    case KILN_ATTR_INT:
        kiln_pb_put_uint(&w->b, AT_I, (uint64_t)a->i);
        break;
    case KILN_ATTR_STRING:
        kiln_pb_put_bytes(&w->b, AT_S, a->s ? a->s : "", a->s ? a->s_len : 0);
        break;
    case KILN_ATTR_TENSOR:
        if (a->t) st = put_tensor(w, AT_T, a->t, a->t_name, NULL, true);
        break;
    case KILN_ATTR_GRAPH:
        if (a->g) st = put_graph(w, AT_G, a->g);
        break;
    case KILN_ATTR_SPARSE_TENSOR:
        if (a->sp) put_sparse(w, AT_SPARSE, a->sp, &st);
        break;
    case KILN_ATTR_TYPE_PROTO:
        if (a->tp) put_type(w, AT_TP, a->tp);
        break;
    case KILN_ATTR_FLOATS:
        for (size_t i = 0; i < a->n; i++) put_float(w, AT_FLOATS, a->floats[i]);
        break;
    case KILN_ATTR_INTS:
        for (size_t i = 0; i < a->n; i++) kiln_pb_put_uint(&w->b, AT_INTS, (uint64_t)a->ints[i]);
        break;
    case KILN_ATTR_STRINGS:
        for (size_t i = 0; i < a->n; i++)
            kiln_pb_put_bytes(&w->b, AT_STRINGS, a->strings[i],
                              a->string_lens ? a->string_lens[i] : strlen(a->strings[i]));
        break;
    case KILN_ATTR_TENSORS:
        for (size_t i = 0; !st && i < a->n; i++)
            st = put_tensor(w, AT_TENSORS, &a->tensors[i], NULL, NULL, true);
        break;
    case KILN_ATTR_GRAPHS:
        for (size_t i = 0; !st && i < a->n; i++) st = put_graph(w, AT_GRAPHS, a->graphs[i]);
        break;
    case KILN_ATTR_SPARSE_TENSORS:
        for (size_t i = 0; i < a->n; i++) put_sparse(w, AT_SPARSES, &a->sparses[i], &st);
        break;
    case KILN_ATTR_TYPE_PROTOS:
        for (size_t i = 0; i < a->n; i++) put_type(w, AT_TPS, &a->types[i]);
        break;
    default:
        break;
    }
    if (st) return st;
    msg_end(w, at);
    return check(w);
}

static kiln_status put_node(struct writer *w, uint32_t num, const struct kiln_node *n)
{
    size_t at = msg_begin(w, num);
    for (size_t i = 0; i < n->n_in; i++) put_str(w, 1, n->inputs[i]);
    for (size_t i = 0; i < n->n_out; i++) put_str(w, 2, n->outputs[i]);
    put_opt_str(w, 3, n->name);
    put_str(w, 4, n->op_type);
    for (size_t i = 0; i < n->n_attr; i++) {
        kiln_status st = put_attr(w, &n->attrs[i]);
        if (st) {
            char lb[300];
            kiln_err_prefix(w->err, "%s", kiln_node_label(n, lb, sizeof lb));
            return st;
        }
    }
    put_opt_str(w, 6, n->doc);
    put_opt_str(w, 7, n->domain);
    msg_end(w, at);
    return check(w);
}

static kiln_status put_graph(struct writer *w, uint32_t num, const struct kiln_graph *g)
{
    if (++w->depth > MAX_GRAPH_DEPTH)
        return kiln_err_set(w->err, KILN_E_LIMIT,
                            "graph '%s': subgraphs nest deeper than %d "
                            "levels, which the loader refuses",
                            g->name, MAX_GRAPH_DEPTH);
    size_t at = msg_begin(w, num);
    for (size_t i = 0; i < g->n_nodes; i++) KILN_TRY(put_node(w, 1, &g->nodes[i]));
    put_str(w, 2, g->name);
    for (size_t i = 0; i < g->n_inits; i++)
        KILN_TRY(put_tensor(w, 5, &g->inits[i].t, g->inits[i].name, g->inits[i].doc, true));
    put_opt_str(w, 10, g->doc);
    for (size_t i = 0; i < g->n_inputs; i++) put_value_info(w, 11, &g->inputs[i]);
    for (size_t i = 0; i < g->n_outputs; i++) put_value_info(w, 12, &g->outputs[i]);
    for (size_t i = 0; i < g->n_value_info; i++) put_value_info(w, 13, &g->value_info[i]);
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < g->n_sparse_inits; i++) put_sparse(w, 15, &g->sparse_inits[i], &st);
    if (st) return st;
    msg_end(w, at);
    w->depth--;
    return check(w);
}

static void put_opset(struct writer *w, uint32_t num, const struct kiln_opset *o)
{
    size_t at = msg_begin(w, num);
    put_str(w, 1, o->domain);
    kiln_pb_put_uint(&w->b, 2, (uint64_t)o->version);
    msg_end(w, at);
}

static kiln_status put_function(struct writer *w, const struct kiln_function *f)
{
    size_t at = msg_begin(w, 25);
    put_str(w, 1, f->name);
    for (size_t i = 0; i < f->n_in; i++) put_str(w, 4, f->inputs[i]);
    for (size_t i = 0; i < f->n_out; i++) put_str(w, 5, f->outputs[i]);
    for (size_t i = 0; i < f->n_attr_names; i++) put_str(w, 6, f->attr_names[i]);
    for (size_t i = 0; i < f->n_nodes; i++) KILN_TRY(put_node(w, 7, &f->nodes[i]));
    put_opt_str(w, 8, f->doc);
    for (size_t i = 0; i < f->n_opsets; i++) put_opset(w, 9, &f->opsets[i]);
    put_opt_str(w, 10, f->domain);
    put_opt_str(w, 13, f->overload);
    msg_end(w, at);
    return check(w);
}

static kiln_status put_model(struct writer *w, const struct kiln_model *m)
{
    if (!m->graph) return kiln_err_set(w->err, KILN_E_INVALID_ARG, "the model has no graph");
    if (m->ir_version) kiln_pb_put_uint(&w->b, 1, (uint64_t)m->ir_version);
    put_opt_str(w, 2, m->producer_name);
    put_opt_str(w, 3, m->producer_version);
    put_opt_str(w, 4, m->domain);
    if (m->model_version) kiln_pb_put_uint(&w->b, 5, (uint64_t)m->model_version);
    put_opt_str(w, 6, m->doc);
    KILN_TRY(put_graph(w, 7, m->graph));
    for (size_t i = 0; i < m->n_opsets; i++) put_opset(w, 8, &m->opsets[i]);
    for (size_t i = 0; i < m->n_meta; i++) {
        size_t at = msg_begin(w, 14);
        put_str(w, 1, m->meta[i].key);
        put_str(w, 2, m->meta[i].value);
        msg_end(w, at);
    }
    for (size_t i = 0; i < m->n_functions; i++) KILN_TRY(put_function(w, &m->functions[i]));
    return check(w);
}

/* ------------------------------------------------------------------ entry points */

kiln_status kiln_model_save_buffer(const kiln_model *m, void **buf, size_t *len, kiln_err *err)
{
    *buf = NULL;
    *len = 0;
    struct writer w = {.err = err, .ext_fd = -1};
    kiln_status st = put_model(&w, m);
    if (st) {
        kiln_buf_free(&w.b);
        return st;
    }
    *buf = w.b.data;
    *len = w.b.len;
    return KILN_OK;
}

void kiln_buffer_free(void *buf)
{
    kiln_free(buf);
}

/* Writes data to a new temporary file next to path; *tmp_out receives its name (free with
 * kiln_free; the caller renames or unlinks it). */
static kiln_status write_temp(const char *path, const void *data, size_t n, char **tmp_out, kiln_err *err)
{
    *tmp_out = NULL;
    size_t plen = strlen(path) + 16;
    char *tmp = kiln_malloc(plen);
    if (!tmp) return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    snprintf(tmp, plen, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kiln_status st = kiln_err_set(err, KILN_E_IO, "cannot create a temporary file for '%s': %s", path,
                                      strerror(errno));
        kiln_free(tmp);
        return st;
    }
    kiln_status st = write_all(fd, data, n, path, err);
    if (!st && fchmod(fd, 0644) != 0)
        st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (!st && fsync(fd) != 0)
        st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (close(fd) != 0 && !st)
        st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (st) {
        unlink(tmp);
        kiln_free(tmp);
        return st;
    }
    *tmp_out = tmp;
    return KILN_OK;
}

/* The external data location must be a plain relative path the loader accepts. */
static kiln_status check_location(const char *loc, kiln_err *err)
{
    if (!loc[0] || loc[0] == '/' || strlen(loc) > 100)
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "external data name '%s' must be a relative "
                            "path of 1 to 100 bytes",
                            loc);
    for (const char *q = loc; *q;) {
        const char *e = strchr(q, '/');
        size_t n = e ? (size_t)(e - q) : strlen(q);
        if (n == 2 && q[0] == '.' && q[1] == '.')
            return kiln_err_set(err, KILN_E_INVALID_ARG,
                                "external data name '%s' leaves the "
                                "model's folder ('..')",
                                loc);
        q += n + (e != NULL);
    }
    return KILN_OK;
}

kiln_status kiln_model_save(const kiln_model *m, const char *path, const kiln_save_options *opt,
                            kiln_err *err)
{
    struct writer w = {.err = err, .ext_fd = -1};
    char *loc = NULL, *ext_path = NULL, *model_tmp = NULL;
    kiln_status st = KILN_OK;
    if (opt && opt->external_data_threshold) {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
        if (opt->external_data_name) {
            loc = kiln_strdup(opt->external_data_name);
        } else {
            size_t n = strlen(base) + 6;
            loc = kiln_malloc(n);
            if (loc) snprintf(loc, n, "%s.data", base);
        }
        if (!loc) {
            st = kiln_err_set(err, KILN_E_NOMEM, "out of memory");
            goto done;
        }
        st = check_location(loc, err);
        if (st) goto done;
        size_t n = dir_len + strlen(loc) + 1;
        ext_path = kiln_malloc(n);
        if (!ext_path) {
            st = kiln_err_set(err, KILN_E_NOMEM, "out of memory");
            goto done;
        }
        snprintf(ext_path, n, "%.*s%s", (int)dir_len, path, loc);
        w.threshold = opt->external_data_threshold;
        w.ext_location = loc;
        w.ext_final = ext_path;
    }
    st = put_model(&w, m);
    if (st) goto done;
    if (w.ext_tmp) {
        if (fchmod(w.ext_fd, 0644) != 0 || fsync(w.ext_fd) != 0)
            st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", ext_path, strerror(errno));
        if (close(w.ext_fd) != 0 && !st)
            st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", ext_path, strerror(errno));
        w.ext_fd = -1;
        if (st) goto done;
    }
    st = write_temp(path, w.b.data, w.b.len, &model_tmp, err);
    if (st) goto done;
    /* Both files are complete; the data file goes first so the new model never points at
     * an old one. */
    if (w.ext_tmp) {
        if (rename(w.ext_tmp, ext_path) != 0) {
            st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", ext_path, strerror(errno));
            goto done;
        }
        kiln_free(w.ext_tmp);
        w.ext_tmp = NULL;
    }
    if (rename(model_tmp, path) != 0) {
        st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
        goto done;
    }
    kiln_free(model_tmp);
    model_tmp = NULL;
done:
    if (w.ext_fd >= 0) close(w.ext_fd);
    if (w.ext_tmp) unlink(w.ext_tmp);
    if (model_tmp) unlink(model_tmp);
    kiln_free(w.ext_tmp);
    kiln_free(model_tmp);
    kiln_free(loc);
    kiln_free(ext_path);
    kiln_buf_free(&w.b);
    return st;
}

kiln_status kiln_onnx_write_engine(const struct kiln_model *m, int fd, const char *path, size_t threshold,
                                   void **buf, size_t *len, uint64_t *data_len, kiln_err *err)
{
    *buf = NULL;
    *len = 0;
    *data_len = 0;
    struct writer w = {.err = err, .ext_fd = fd, .threshold = threshold ? threshold : 1,
                       .ext_location = KILN_ENGINE_DATA_LOCATION, .ext_final = path};
    kiln_status st = put_model(&w, m);
    if (st) {
        kiln_buf_free(&w.b);
        return st;
    }
    *buf = w.b.data;
    *len = w.b.len;
    *data_len = w.ext_off;
    return KILN_OK;
}
