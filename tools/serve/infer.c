/* infer.c: the KServe v2 inference request and response
 * (kserve.github.io/website docs: "Open Inference Protocol", REST section) with Triton's
 * binary tensor data extension (server/docs/protocol/extension_binary_data.md).
 *
 * A request is JSON, or, when the Inference-Header-Content-Length header is present, that
 * many bytes of JSON followed by the binary data of the inputs that carry
 * parameters.binary_data_size, in the order the inputs are listed. Every check happens
 * before the request is queued, and each failure is a 400 naming the input and what was
 * expected: unknown or repeated names, datatypes, shapes, batch sizes, element counts and
 * binary sizes that do not add up.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"

void sv_response_error(struct sv_response *resp, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(resp->body);
    json_t *o = json_pack("{s:s}", "error", msg);
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!resp->body) resp->body = strdup("{\"error\":\"out of memory\"}");
    resp->len = resp->body ? strlen(resp->body) : 0;
    resp->status = status;
    resp->json_len = 0;
}

void sv_response_json(struct sv_response *resp, char *s)
{
    free(resp->body);
    resp->body = NULL;
    if (!s) {
        sv_response_error(resp, 500, "out of memory");
        return;
    }
    resp->body = s;
    resp->len = strlen(s);
    resp->status = 200;
    resp->json_len = 0;
}

/* ------------------------------------------------------------------ JSON tensor data */

struct flat {
    kiln_dtype dt;
    void *data;
    size_t n, k; /* elements expected, written */
    const char **strs;
    size_t *lens;
    char *err;
    size_t err_size;
    const char *name;
};

static bool int_in(json_int_t v, json_int_t lo, json_int_t hi) { return v >= lo && v <= hi; }

/* Writes one JSON scalar as element f->k. */
static bool put_elem(struct flat *f, json_t *j)
{
    size_t k = f->k;
    if (f->dt == KILN_DTYPE_STRING) {
        if (!json_is_string(j)) goto type;
        f->strs[k] = json_string_value(j);
        f->lens[k] = json_string_length(j);
        return true;
    }
    if (f->dt == KILN_DTYPE_BOOL) {
        if (!json_is_boolean(j)) goto type;
        ((unsigned char *)f->data)[k] = json_is_true(j);
        return true;
    }
    if (f->dt == KILN_DTYPE_F32 || f->dt == KILN_DTYPE_F64) {
        if (!json_is_number(j)) goto type;
        double v = json_number_value(j);
        if (f->dt == KILN_DTYPE_F32) ((float *)f->data)[k] = (float)v;
        else ((double *)f->data)[k] = v;
        return true;
    }
    if (!json_is_integer(j)) goto type;
    json_int_t v = json_integer_value(j);
    switch (f->dt) {
    case KILN_DTYPE_I8: if (!int_in(v, INT8_MIN, INT8_MAX)) goto range; ((int8_t *)f->data)[k] = (int8_t)v; break;
    case KILN_DTYPE_I16: if (!int_in(v, INT16_MIN, INT16_MAX)) goto range; ((int16_t *)f->data)[k] = (int16_t)v; break;
    case KILN_DTYPE_I32: if (!int_in(v, INT32_MIN, INT32_MAX)) goto range; ((int32_t *)f->data)[k] = (int32_t)v; break;
    case KILN_DTYPE_I64: ((int64_t *)f->data)[k] = v; break;
    case KILN_DTYPE_U8: if (!int_in(v, 0, UINT8_MAX)) goto range; ((uint8_t *)f->data)[k] = (uint8_t)v; break;
    case KILN_DTYPE_U16: if (!int_in(v, 0, UINT16_MAX)) goto range; ((uint16_t *)f->data)[k] = (uint16_t)v; break;
    case KILN_DTYPE_U32: if (!int_in(v, 0, UINT32_MAX)) goto range; ((uint32_t *)f->data)[k] = (uint32_t)v; break;
    case KILN_DTYPE_U64: if (v < 0) goto range; ((uint64_t *)f->data)[k] = (uint64_t)v; break;
    default:
        snprintf(f->err, f->err_size, "input '%s': %s data cannot be given as JSON; use binary data", f->name,
                 sv_dtype_kserve(f->dt));
        return false;
    }
    return true;
range:
    snprintf(f->err, f->err_size, "input '%s': element %zu (%lld) is out of range for %s", f->name, k, (long long)v,
             sv_dtype_kserve(f->dt));
    return false;
type:
    snprintf(f->err, f->err_size, "input '%s': element %zu is not a %s value", f->name, k,
             f->dt == KILN_DTYPE_STRING ? "string (BYTES)" : f->dt == KILN_DTYPE_BOOL ? "boolean (BOOL)"
             : (f->dt == KILN_DTYPE_F32 || f->dt == KILN_DTYPE_F64) ? "number" : "integer");
    return false;
}

/* Walks nested arrays in row-major order (the JSON parser bounds the depth). */
static bool flatten(struct flat *f, json_t *j)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) if (!flatten(f, e)) return false;
        return true;
    }
    if (f->k >= f->n) {
        snprintf(f->err, f->err_size, "input '%s': data has more elements than its shape's %zu", f->name, f->n);
        return false;
    }
    if (!put_elem(f, j)) return false;
    f->k++;
    return true;
}

static bool tensor_from_json(const char *name, kiln_dtype dt, int rank, const int64_t *dims, json_t *data,
                             size_t max_elems, struct sv_tensor *t, char *err, size_t err_size)
{
    if (!sv_tensor_create(name, dt, rank, dims, max_elems, t, err, err_size)) return false;
    struct flat f = {.dt = dt, .data = kiln_value_data(t->v), .n = kiln_value_numel(t->v), .err = err,
                     .err_size = err_size, .name = name};
    bool ok = true;
    if (dt == KILN_DTYPE_STRING) {
        f.strs = calloc(f.n ? f.n : 1, sizeof *f.strs);
        f.lens = calloc(f.n ? f.n : 1, sizeof *f.lens);
        if (!f.strs || !f.lens) ok = (snprintf(err, err_size, "out of memory"), false);
    }
    if (ok) ok = flatten(&f, data);
    if (ok && f.k != f.n)
        ok = (snprintf(err, err_size, "input '%s': data has %zu elements; its shape needs %zu", name, f.k, f.n), false);
    if (ok && dt == KILN_DTYPE_STRING) ok = sv_tensor_set_strings(t, f.strs, f.lens, f.n, err, err_size);
    free(f.strs);
    free(f.lens);
    if (!ok) sv_tensor_fini(t);
    return ok;
}

/* ------------------------------------------------------------------ the request */

static void dims_text(char *buf, size_t size, int rank, const int64_t *dims, bool batch)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    if (batch && o < size) o += (size_t)snprintf(buf + o, size - o, "-1%s", rank ? "," : "");
    for (int i = 0; i < rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%lld%s", (long long)dims[i], i + 1 < rank ? "," : "");
    if (o < size) snprintf(buf + o, size - o, "]");
}

struct req_output {
    size_t cfg_index;
    bool binary;
    int64_t classify; /* classification extension: the top K per row; 0: the tensor itself */
};


static const struct sv_io *find_io(const struct sv_io *list, size_t n, const char *name, size_t *index)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, name) == 0) {
            *index = i;
            return &list[i];
        }
    return NULL;
}

bool sv_request_input(struct sv_model *m, struct sv_request *r, bool *seen, const char *name, const char *dtname,
                      int rank, const int64_t *dims, struct sv_input_slot *slot, struct sv_response *resp)
{
    const struct sv_config *c = &m->cfg;
    size_t ci;
    const struct sv_io *io = find_io(c->inputs, c->n_inputs, name, &ci);
    if (!io)
        return sv_response_error(resp, 400, "unexpected inference input '%s' for model '%s'", name, m->name), false;
    if (seen[ci]) return sv_response_error(resp, 400, "input '%s' is given twice", name), false;
    seen[ci] = true;
    if (!dtname) return sv_response_error(resp, 400, "input '%s' has no 'datatype' string", name), false;
    if (sv_dtype_from_kserve(dtname) != io->dtype)
        return sv_response_error(resp, 400, "inference input '%s' data-type is '%s', but model '%s' expects '%s'", name,
                                 dtname, m->name, sv_dtype_kserve(io->dtype)),
               false;
    if (rank > SV_MAX_RANK)
        return sv_response_error(resp, 400, "input '%s': the shape has %d dims; at most %d are allowed", name, rank,
                                 SV_MAX_RANK),
               false;
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0) return sv_response_error(resp, 400, "input '%s': shape entries must be integers >= 0", name), false;
    bool batched = c->max_batch_size > 0;
    char want[256], got[256];
    dims_text(want, sizeof want, io->rank, io->dims, batched);
    dims_text(got, sizeof got, rank, dims, false);
    bool shape_ok = rank == io->rank + (batched ? 1 : 0);
    for (int i = 0; shape_ok && i < io->rank; i++) {
        int64_t cd = io->dims[i], rd = dims[i + (batched ? 1 : 0)];
        if (cd >= 0 && cd != rd) shape_ok = false;
    }
    if (!shape_ok)
        return sv_response_error(resp, 400, "unexpected shape for input '%s' for model '%s'. Expected %s, got %s", name,
                                 m->name, want, got),
               false;
    int64_t batch = batched ? dims[0] : 1;
    if (batched && (batch < 1 || batch > c->max_batch_size))
        return sv_response_error(resp, 400,
                                 "inference request batch-size %lld for input '%s' is out of range [1, %lld] for "
                                 "model '%s'",
                                 (long long)batch, name, (long long)c->max_batch_size, m->name),
               false;
    if (r->batch && r->batch != batch)
        return sv_response_error(resp, 400, "input '%s' has batch size %lld; an earlier input has %lld", name,
                                 (long long)batch, (long long)r->batch),
               false;
    r->batch = batch;
    /* The tensor the model gets: reshape replaces the dims past the batch dim. */
    slot->rank = rank;
    memcpy(slot->dims, dims, sizeof(int64_t) * (size_t)rank);
    if (io->has_reshape) {
        slot->rank = (batched ? 1 : 0) + io->reshape_rank;
        if (slot->rank > SV_MAX_RANK) return sv_response_error(resp, 400, "input '%s': reshape too deep", name), false;
        for (int i = 0; i < io->reshape_rank; i++) slot->dims[i + (batched ? 1 : 0)] = io->reshape[i];
    }
    slot->dtype = io->dtype;
    slot->t = &r->in[io->model_index];
    return true;
}

/* Reads one entry of "inputs" into the request. Returns false with resp set. */
static bool parse_input(const struct sv_options *opt, struct sv_model *m, json_t *in, const char *bin, size_t bin_len,
                        size_t *bin_off, bool *seen, struct sv_request *r, struct sv_response *resp)
{
    if (!json_is_object(in)) return sv_response_error(resp, 400, "each entry of 'inputs' must be an object"), false;
    const char *name = json_string_value(json_object_get(in, "name"));
    const char *dtname = json_string_value(json_object_get(in, "datatype"));
    json_t *shape = json_object_get(in, "shape");
    if (!name) return sv_response_error(resp, 400, "an input has no 'name' string"), false;
    if (!json_is_array(shape) || json_array_size(shape) > SV_MAX_RANK)
        return sv_response_error(resp, 400, "input '%s': 'shape' must be an array of at most %d integers", name,
                                 SV_MAX_RANK),
               false;
    int rank = (int)json_array_size(shape);
    int64_t dims[SV_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return sv_response_error(resp, 400, "input '%s': shape entries must be integers >= 0", name), false;
        dims[i] = json_integer_value(d);
    }
    struct sv_input_slot slot;
    if (!sv_request_input(m, r, seen, name, dtname, rank, dims, &slot, resp)) return false;
    int mrank = slot.rank;
    const int64_t *mdims = slot.dims;
    char err[768];
    struct sv_tensor *t = slot.t;
    json_t *params = json_object_get(in, "parameters");
    json_t *bsize = params ? json_object_get(params, "binary_data_size") : NULL;
    json_t *data = json_object_get(in, "data");
    if (bsize) {
        if (!json_is_integer(bsize) || json_integer_value(bsize) < 0)
            return sv_response_error(resp, 400, "input '%s': binary_data_size must be an integer >= 0", name), false;
        if (data)
            return sv_response_error(resp, 400, "input '%s' has both 'data' and binary_data_size", name), false;
        unsigned long long size = (unsigned long long)json_integer_value(bsize);
        if (size > bin_len - *bin_off)
            return sv_response_error(resp, 400,
                                     "input '%s': binary_data_size is %llu but only %zu bytes of binary data remain",
                                     name, size, bin_len - *bin_off),
                   false;
        if (!sv_tensor_from_binary(name, slot.dtype, mrank, mdims, bin + *bin_off, (size_t)size, opt->max_elements, t,
                                   err, sizeof err))
            return sv_response_error(resp, 400, "%s", err), false;
        *bin_off += (size_t)size;
    } else {
        if (!data) return sv_response_error(resp, 400, "input '%s' has neither 'data' nor binary_data_size", name), false;
        if (!tensor_from_json(name, slot.dtype, mrank, mdims, data, opt->max_elements, t, err, sizeof err))
            return sv_response_error(resp, 400, "%s", err), false;
    }
    return true;
}

static bool parse_outputs(struct sv_model *m, json_t *outs, struct sv_decoded *p, struct sv_response *resp)
{
    const struct sv_config *c = &m->cfg;
    size_t n = outs ? json_array_size(outs) : c->n_outputs;
    if (outs && !json_is_array(outs)) return sv_response_error(resp, 400, "'outputs' must be an array"), false;
    p->outs = calloc(n ? n : 1, sizeof *p->outs);
    if (!p->outs) return sv_response_error(resp, 500, "out of memory"), false;
    if (!outs) {
        for (size_t i = 0; i < n; i++) p->outs[i] = (struct req_output){i, p->binary_all, 0};
        p->n_outs = n;
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(outs, i);
        const char *name = json_is_object(o) ? json_string_value(json_object_get(o, "name")) : NULL;
        if (!name) return sv_response_error(resp, 400, "each entry of 'outputs' needs a 'name' string"), false;
        size_t ci;
        if (!find_io(c->outputs, c->n_outputs, name, &ci))
            return sv_response_error(resp, 400, "unexpected inference output '%s' for model '%s'", name, m->name), false;
        for (size_t k = 0; k < p->n_outs; k++)
            if (p->outs[k].cfg_index == ci)
                return sv_response_error(resp, 400, "output '%s' is requested twice", name), false;
        bool binary = p->binary_all;
        json_t *params = json_object_get(o, "parameters");
        if (params && !json_is_object(params))
            return sv_response_error(resp, 400, "output '%s': 'parameters' must be an object", name), false;
        json_t *bd = params ? json_object_get(params, "binary_data") : NULL;
        if (bd) {
            if (!json_is_boolean(bd))
                return sv_response_error(resp, 400, "output '%s': binary_data must be true or false", name), false;
            binary = json_is_true(bd);
        }
        json_t *cl = params ? json_object_get(params, "classification") : NULL;
        int64_t classify = 0;
        if (cl) {
            if (!json_is_integer(cl) || json_integer_value(cl) < 1)
                return sv_response_error(resp, 400, "output '%s': classification must be an integer >= 1", name), false;
            if (!sv_classify_supported(c->outputs[ci].dtype))
                return sv_response_error(resp, 400, "output '%s': %s values cannot be classified", name,
                                         sv_dtype_kserve(c->outputs[ci].dtype)),
                       false;
            classify = json_integer_value(cl);
        }
        p->outs[p->n_outs++] = (struct req_output){ci, binary, classify};
    }
    return true;
}

/* ------------------------------------------------------------------ the response */


bool sv_output_classify(const struct sv_model *m, const struct sv_request *r, const struct sv_io *io, int64_t k,
                        struct sv_out_view *v, struct sv_response *resp)
{
    bool batched = m->cfg.max_batch_size > 0;
    size_t rows = batched ? (size_t)r->batch : 1;
    char err[256];
    if (!sv_classify(v->dt, v->data, v->first, v->count, rows, (size_t)k, io->labels, io->n_labels, &v->class_ptrs,
                     &v->class_buf, err, sizeof err)) {
        sv_response_error(resp, 400, "output '%s': %s", io->name, err);
        return false;
    }
    v->dt = KILN_DTYPE_STRING;
    v->data = v->class_ptrs;
    v->first = 0;
    v->count = rows * (size_t)k;
    v->rank = 0;
    if (batched) v->dims[v->rank++] = (int64_t)rows;
    v->dims[v->rank++] = k;
    return true;
}

void sv_output_view(const struct sv_model *m, const struct sv_request *r, size_t cfg_index, struct sv_out_view *v)
{
    const struct sv_io *io = &m->cfg.outputs[cfg_index];
    kiln_value *val = r->result->outs[io->model_index];
    bool batched = m->cfg.max_batch_size > 0;
    v->dt = kiln_value_dtype(val);
    v->rank = kiln_value_rank(val);
    if (v->rank > SV_MAX_RANK) v->rank = SV_MAX_RANK;
    memcpy(v->dims, kiln_value_dims(val), (size_t)v->rank * sizeof(int64_t));
    v->data = kiln_value_data(val);
    size_t numel = kiln_value_numel(val);
    if (batched) {
        size_t per_row = v->dims[0] ? numel / (size_t)v->dims[0] : 0;
        v->first = (size_t)r->row0 * per_row;
        v->count = (size_t)r->batch * per_row;
        v->dims[0] = r->batch;
    } else {
        v->first = 0;
        v->count = numel;
    }
    if (io->has_reshape) { /* report the configured dims */
        int o = batched ? 1 : 0;
        v->rank = o + io->rank;
        for (int i = 0; i < io->rank; i++) v->dims[o + i] = io->dims[i];
    }
}

static json_t *json_elem(kiln_dtype dt, const void *data, size_t i)
{
    switch (dt) {
    case KILN_DTYPE_BOOL: return json_boolean(((const unsigned char *)data)[i]);
    case KILN_DTYPE_I8: return json_integer(((const int8_t *)data)[i]);
    case KILN_DTYPE_I16: return json_integer(((const int16_t *)data)[i]);
    case KILN_DTYPE_I32: return json_integer(((const int32_t *)data)[i]);
    case KILN_DTYPE_I64: return json_integer(((const int64_t *)data)[i]);
    case KILN_DTYPE_U8: return json_integer(((const uint8_t *)data)[i]);
    case KILN_DTYPE_U16: return json_integer(((const uint16_t *)data)[i]);
    case KILN_DTYPE_U32: return json_integer(((const uint32_t *)data)[i]);
    case KILN_DTYPE_U64: {
        uint64_t v = ((const uint64_t *)data)[i];
        return v > INT64_MAX ? NULL : json_integer((json_int_t)v);
    }
    case KILN_DTYPE_F32: return json_real(((const float *)data)[i]); /* NULL for NaN and inf */
    case KILN_DTYPE_F64: return json_real(((const double *)data)[i]);
    case KILN_DTYPE_STRING: {
        const char *s = ((char *const *)data)[i];
        return json_string(s ? s : ""); /* NULL when not UTF-8 */
    }
    default: return NULL;
    }
}

/* Builds the response of a completed request into resp. */
static void write_response(struct sv_model *m, struct sv_decoded *p, struct sv_response *resp)
{
    json_t *root = json_pack("{s:s,s:s}", "model_name", m->name, "model_version", m->version_str);
    json_t *outs = json_array();
    struct sv_out_view *views = calloc(p->n_outs ? p->n_outs : 1, sizeof *views);
    size_t bin_total = 0;
    bool fp64 = false;
    if (!root || !outs || !views) goto nomem;
    for (size_t k = 0; k < p->n_outs; k++) {
        sv_output_view(m, p->r, p->outs[k].cfg_index, &views[k]);
        if (p->outs[k].classify &&
            !sv_output_classify(m, p->r, &m->cfg.outputs[p->outs[k].cfg_index], p->outs[k].classify, &views[k], resp))
            goto out;
    }
    if (p->id) json_object_set_new(root, "id", json_string(p->id));
    json_object_set(root, "outputs", outs);
    for (size_t k = 0; k < p->n_outs; k++) {
        const struct sv_io *io = &m->cfg.outputs[p->outs[k].cfg_index];
        const struct sv_out_view v = views[k];
        json_t *shape = json_array();
        for (int i = 0; shape && i < v.rank; i++) json_array_append_new(shape, json_integer(v.dims[i]));
        json_t *o = json_pack("{s:s,s:s,s:o}", "name", io->name, "datatype", sv_dtype_kserve(v.dt), "shape", shape);
        if (!o) goto nomem;
        json_array_append_new(outs, o);
        if (p->outs[k].binary) {
            size_t b = sv_binary_size(v.dt, v.data, v.first, v.count);
            if (b == SIZE_MAX || __builtin_add_overflow(bin_total, b, &bin_total)) {
                sv_response_error(resp, 500, "output '%s' is too large", io->name);
                goto out;
            }
            json_object_set_new(o, "parameters", json_pack("{s:I}", "binary_data_size", (json_int_t)b));
            continue;
        }
        if (v.dt == KILN_DTYPE_F64) fp64 = true;
        json_t *data = json_array();
        if (!data) goto nomem;
        json_object_set_new(o, "data", data);
        for (size_t i = v.first; i < v.first + v.count; i++) {
            json_t *e = json_elem(v.dt, v.data, i);
            if (!e) {
                sv_response_error(resp, 400,
                                  "output '%s' element %zu (%s) cannot be written as JSON (NaN, infinity, a "
                                  "value above 2^63 or text that is not UTF-8); request it with binary_data",
                                  io->name, i - v.first, sv_dtype_kserve(v.dt));
                goto out;
            }
            if (json_array_append_new(data, e)) goto nomem;
        }
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(fp64 ? 17 : 9));
    if (!text) goto nomem;
    size_t jl = strlen(text);
    if (bin_total == 0) {
        sv_response_json(resp, text);
        goto out;
    }
    char *body = malloc(jl + bin_total);
    if (!body) {
        free(text);
        goto nomem;
    }
    memcpy(body, text, jl);
    free(text);
    unsigned char *dst = (unsigned char *)body + jl;
    for (size_t k = 0; k < p->n_outs; k++) {
        if (!p->outs[k].binary) continue;
        const struct sv_out_view v = views[k];
        sv_binary_write(v.dt, v.data, v.first, v.count, dst);
        dst += sv_binary_size(v.dt, v.data, v.first, v.count);
    }
    free(resp->body);
    resp->body = body;
    resp->len = jl + bin_total;
    resp->json_len = jl;
    resp->status = 200;
    goto out;
nomem:
    sv_response_error(resp, 500, "out of memory writing the response");
out:
    for (size_t k = 0; views && k < p->n_outs; k++) free(views[k].class_ptrs), free(views[k].class_buf);
    free(views);
    json_decref(outs);
    json_decref(root);
}

static void free_request(struct sv_request *r, size_t n_in)
{
    if (!r) return;
    for (size_t i = 0; r->in && i < n_in; i++) sv_tensor_fini(&r->in[i]);
    free(r->in);
    sv_batch_result_unref(r->result);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void sv_request_free(struct sv_request *r)
{
    if (r) free_request(r, kiln_model_input_count(r->model->m));
}

struct sv_request *sv_request_new(struct sv_model *m, int client_fd)
{
    size_t n_in = kiln_model_input_count(m->m);
    struct sv_request *r = calloc(1, sizeof *r);
    if (r) r->in = calloc(n_in ? n_in : 1, sizeof *r->in);
    if (!r || !r->in) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    /* sv_request_wait's timed waits take sv_now_ns deadlines: the monotonic clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->model = m;
    r->client_fd = client_fd;
    r->priority = sv_config_priority(&m->cfg, 0);
    r->policy = sv_config_queue_policy(&m->cfg, r->priority);
    return r;
}

void sv_request_schedule(struct sv_request *r, uint64_t priority, bool has_timeout, uint64_t timeout_us,
                         uint64_t call_deadline_ns)
{
    const struct sv_config *c = &r->model->cfg;
    r->priority = sv_config_priority(c, priority);
    r->policy = sv_config_queue_policy(c, r->priority);
    uint64_t us = r->policy->default_timeout_us;
    /* Without a default, the request's timeout; with one, a shorter request timeout when the
     * policy allows overrides (Triton's allow_timeout_override). */
    if (has_timeout && timeout_us && (!us || (r->policy->allow_timeout_override && timeout_us < us))) us = timeout_us;
    r->deadline_ns = us ? sv_now_ns() + us * 1000 : 0;
    if (call_deadline_ns && (!r->deadline_ns || call_deadline_ns < r->deadline_ns)) r->deadline_ns = call_deadline_ns;
}

bool sv_request_inputs_complete(const struct sv_model *m, const bool *seen, size_t n_given, struct sv_response *resp)
{
    const struct sv_config *c = &m->cfg;
    for (size_t k = 0; k < c->n_inputs; k++)
        if (!seen[k])
            return sv_response_error(resp, 400, "expected %zu inputs but got %zu inputs for model '%s': '%s' is missing",
                                     c->n_inputs, n_given, m->name, c->inputs[k].name),
                   false;
    return true;
}

bool sv_request_run(struct sv_request *r, bool *unloading, struct sv_response *resp)
{
    *unloading = false;
    if (!sv_sched_submit(r)) {
        *unloading = r->unloading;
        sv_response_error(resp, r->http_status, "%s", r->msg);
        return false;
    }
    sv_request_wait(r);
    if (r->status != KILN_OK) {
        sv_response_error(resp, r->http_status ? r->http_status : 500, "%s", r->msg);
        return false;
    }
    return true;
}

/* Parses the request; false with resp set on a bad one. */
static bool parse_request(const struct sv_options *opt, struct sv_model *m, json_t *root, const char *bin,
                          size_t bin_len, struct sv_decoded *p, struct sv_response *resp)
{
    const struct sv_config *c = &m->cfg;
    if (!json_is_object(root)) return sv_response_error(resp, 400, "the request body must be a JSON object"), false;
    json_t *id = json_object_get(root, "id");
    if (id && !json_is_string(id)) return sv_response_error(resp, 400, "'id' must be a string"), false;
    p->id = json_string_value(id);
    json_t *params = json_object_get(root, "parameters");
    if (params && !json_is_object(params)) return sv_response_error(resp, 400, "'parameters' must be an object"), false;
    json_t *bdo = params ? json_object_get(params, "binary_data_output") : NULL;
    if (bdo && !json_is_boolean(bdo))
        return sv_response_error(resp, 400, "parameters.binary_data_output must be true or false"), false;
    p->binary_all = bdo && json_is_true(bdo);
    json_t *to = params ? json_object_get(params, "timeout") : NULL;
    if (to && (!json_is_integer(to) || json_integer_value(to) < 0 || json_integer_value(to) > INT64_MAX / 1000))
        return sv_response_error(resp, 400, "parameters.timeout must be an integer of microseconds >= 0"), false;
    json_t *prio = params ? json_object_get(params, "priority") : NULL;
    if (prio && (!json_is_integer(prio) || json_integer_value(prio) < 0))
        return sv_response_error(resp, 400, "parameters.priority must be an integer >= 0"), false;
    json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs)) return sv_response_error(resp, 400, "the request has no 'inputs' array"), false;
    bool *seen = calloc(c->n_inputs ? c->n_inputs : 1, sizeof *seen);
    struct sv_request *r = p->r;
    if (!seen) return sv_response_error(resp, 500, "out of memory"), false;
    size_t i, bin_off = 0;
    json_t *in;
    bool ok = true;
    json_array_foreach(inputs, i, in) if (!(ok = parse_input(opt, m, in, bin, bin_len, &bin_off, seen, r, resp))) break;
    if (ok) ok = sv_request_inputs_complete(m, seen, json_array_size(inputs), resp);
    free(seen);
    if (ok && bin_off != bin_len)
        ok = (sv_response_error(resp, 400,
                                "the request has %zu bytes of binary data after its JSON, but its inputs' "
                                "binary_data_size add up to %zu",
                                bin_len, bin_off),
              false);
    if (ok) ok = parse_outputs(m, json_object_get(root, "outputs"), p, resp);
    if (ok)
        sv_request_schedule(r, prio ? (uint64_t)json_integer_value(prio) : 0, to != NULL,
                            to ? (uint64_t)json_integer_value(to) : 0, 0);
    return ok;
}

bool sv_infer_decode(const struct sv_options *opt, struct sv_model *m, const char *body, size_t len,
                     long long header_len, int client_fd, struct sv_decoded *d, struct sv_response *resp)
{
    memset(d, 0, sizeof *d);
    resp->status = 0;
    if (header_len > (long long)len)
        return sv_response_error(resp, 400, "Inference-Header-Content-Length is %lld but the body has %zu bytes",
                                 header_len, len),
               false;
    size_t jlen = header_len >= 0 ? (size_t)header_len : len;
    if (jlen > opt->max_json_bytes)
        /* A parsed JSON number takes about 20 times its text: bound the parse, not just the body. */
        return sv_response_error(resp, 413,
                                 "the request's JSON has %zu bytes; the limit is %zu (--max-json-bytes): send large "
                                 "tensors as binary data (Inference-Header-Content-Length)",
                                 jlen, opt->max_json_bytes),
               false;
    json_error_t je;
    json_t *root = json_loadb(body, jlen, JSON_REJECT_DUPLICATES, &je);
    d->root = root;
    if (!root)
        return sv_response_error(resp, 400, "malformed JSON in the request: %s (line %d, column %d)", je.text, je.line,
                                 je.column),
               false;
    d->r = sv_request_new(m, client_fd);
    if (!d->r) return sv_response_error(resp, 500, "out of memory"), false;
    return parse_request(opt, m, root, body + jlen, len - jlen, d, resp);
}

void sv_decoded_fini(struct sv_decoded *d)
{
    sv_request_free(d->r);
    free(d->outs);
    json_decref(d->root);
    memset(d, 0, sizeof *d);
}

bool sv_infer(const struct sv_options *opt, struct sv_model *m, const char *body, size_t len, long long header_len,
              int client_fd, struct sv_response *resp)
{
    bool unloading = false;
    uint64_t t0 = sv_now_ns();
    struct sv_decoded p;
    if (!sv_infer_decode(opt, m, body, len, header_len, client_fd, &p, resp)) goto fail;
    struct sv_request *r = p.r;
    if (!sv_request_run(r, &unloading, resp)) goto fail;
    write_response(m, &p, resp);
    if (resp->status != 200) goto fail;
    sv_stats_request(&m->stats, true, sv_now_ns() - t0, r->queue_ns, r->compute_ns);
    if (sv_verbose)
        sv_log("infer model=%s version=%s batch=%lld status=200 queue_us=%llu compute_us=%llu total_us=%llu", m->name,
               m->version_str, (long long)r->batch, (unsigned long long)(r->queue_ns / 1000),
               (unsigned long long)(r->compute_ns / 1000), (unsigned long long)((sv_now_ns() - t0) / 1000));
    sv_decoded_fini(&p);
    return true;
fail:
    if (!unloading) sv_stats_request(&m->stats, false, sv_now_ns() - t0, 0, 0);
    if (sv_verbose) sv_log("infer model=%s version=%s status=%d", m->name, m->version_str, resp->status);
    sv_decoded_fini(&p);
    return !unloading;
}
