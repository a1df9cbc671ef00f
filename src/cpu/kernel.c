/* kernel.c: the kernel context helpers (inputs, attributes, outputs, scratch, errors) and
 * the CPU op registry built from op_table.def. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu/kernel.h"

/* ------------------------------------------------------------------ registry */

#define KILN_CPU_FAMILY(f) extern const struct kiln_cpu_op kiln_cpu_ops_##f[];
#include "cpu/op_table.def"
#undef KILN_CPU_FAMILY

static const struct kiln_cpu_op *const families[] = {
#define KILN_CPU_FAMILY(f) kiln_cpu_ops_##f,
#include "cpu/op_table.def"
#undef KILN_CPU_FAMILY
};

static bool same_domain(const char *a, const char *b)
{
    if (!a || strcmp(a, "ai.onnx") == 0) a = "";
    if (!b || strcmp(b, "ai.onnx") == 0) b = "";
    return strcmp(a, b) == 0;
}

const struct kiln_cpu_op *kiln_cpu_find_op(const char *domain, const char *op_type, int version)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_cpu_op *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && same_domain(op->domain, domain) &&
                version >= op->since && (op->until == 0 || version <= op->until))
                return op;
    return NULL;
}

bool kiln_cpu_has_op(const char *domain, const char *op_type)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const struct kiln_cpu_op *op = families[f]; op->name; op++)
            if (strcmp(op->name, op_type) == 0 && same_domain(op->domain, domain)) return true;
    return false;
}

/* ------------------------------------------------------------------ errors */

kiln_status kiln_kfail(struct kiln_kctx *k, kiln_status st, const char *fmt, ...)
{
    char lb[300], msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_err_set(k->err, st, "%s (opset %d): %s", kiln_node_label(k->node, lb, sizeof lb),
                        k->opset, msg);
}

/* ------------------------------------------------------------------ inputs */

const struct kiln_value *kiln_in_value(const struct kiln_kctx *k, size_t i)
{
    return i < k->n_in ? k->in[i] : NULL;
}

const struct kiln_tensor *kiln_in(const struct kiln_kctx *k, size_t i)
{
    const struct kiln_value *v = kiln_in_value(k, i);
    return v && v->kind == KILN_VALUE_TENSOR ? &v->t : NULL;
}

kiln_status kiln_in_req(struct kiln_kctx *k, size_t i, const struct kiln_tensor **t)
{
    const struct kiln_value *v = kiln_in_value(k, i);
    *t = NULL;
    if (!v) return kiln_kfail(k, KILN_E_INVALID_MODEL, "required input %zu is missing", i);
    if (v->kind != KILN_VALUE_TENSOR)
        return kiln_kfail(k, KILN_E_INVALID_ARG, "input %zu ('%s') is a %s; expected a tensor", i,
                          i < k->node->n_in ? k->node->inputs[i] : "",
                          v->kind == KILN_VALUE_SEQUENCE ? "sequence" : "optional");
    *t = &v->t;
    return KILN_OK;
}

int64_t kiln_tensor_get_i64(const struct kiln_tensor *t, size_t j)
{
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_I64: return ((const int64_t *)d)[j];
    case KILN_DTYPE_I32: return ((const int32_t *)d)[j];
    case KILN_DTYPE_I16: return ((const int16_t *)d)[j];
    case KILN_DTYPE_I8: case KILN_DTYPE_I4: case KILN_DTYPE_I2: return ((const int8_t *)d)[j];
    case KILN_DTYPE_U64: return (int64_t)((const uint64_t *)d)[j];
    case KILN_DTYPE_U32: return ((const uint32_t *)d)[j];
    case KILN_DTYPE_U16: return ((const uint16_t *)d)[j];
    case KILN_DTYPE_U8: case KILN_DTYPE_U4: case KILN_DTYPE_U2: case KILN_DTYPE_BOOL:
        return ((const uint8_t *)d)[j];
    default: {
        /* Float to int64 out of range (or NaN) is undefined behaviour in C; a hostile model
         * can feed any float where an op reads integers, so saturate and map NaN to 0. */
        double v = kiln_tensor_get_f64(t, j);
        if (v != v) return 0;
        if (v >= 9223372036854775808.0) return INT64_MAX;
        if (v < -9223372036854775808.0) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

double kiln_tensor_get_f64(const struct kiln_tensor *t, size_t j)
{
    const void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: return ((const float *)d)[j];
    case KILN_DTYPE_F64: return ((const double *)d)[j];
    case KILN_DTYPE_F16: return kiln_f16_to_f32(((const uint16_t *)d)[j]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(((const uint16_t *)d)[j]);
    case KILN_DTYPE_U64: return (double)((const uint64_t *)d)[j];
    default:
        if (kiln_dtype_is_int(t->dtype) || t->dtype == KILN_DTYPE_BOOL)
            return (double)kiln_tensor_get_i64(t, j);
        return NAN;
    }
}

static int64_t sat_i64(double v, double lo, double hi)
{
    if (isnan(v)) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

void kiln_tensor_set_f64(struct kiln_tensor *t, size_t j, double v)
{
    void *d = t->data;
    switch (t->dtype) {
    case KILN_DTYPE_F32: ((float *)d)[j] = (float)v; break;
    case KILN_DTYPE_F64: ((double *)d)[j] = v; break;
    case KILN_DTYPE_F16: ((uint16_t *)d)[j] = kiln_f32_to_f16((float)v); break;
    case KILN_DTYPE_BF16: ((uint16_t *)d)[j] = kiln_f32_to_bf16((float)v); break;
    case KILN_DTYPE_I64: ((int64_t *)d)[j] = sat_i64(v, -0x1p63, 0x1p63 - 1024); break;
    case KILN_DTYPE_I32: ((int32_t *)d)[j] = (int32_t)sat_i64(v, INT32_MIN, INT32_MAX); break;
    case KILN_DTYPE_I16: ((int16_t *)d)[j] = (int16_t)sat_i64(v, INT16_MIN, INT16_MAX); break;
    case KILN_DTYPE_I8: ((int8_t *)d)[j] = (int8_t)sat_i64(v, INT8_MIN, INT8_MAX); break;
    case KILN_DTYPE_I4: ((int8_t *)d)[j] = (int8_t)sat_i64(v, -8, 7); break;
    case KILN_DTYPE_I2: ((int8_t *)d)[j] = (int8_t)sat_i64(v, -2, 1); break;
    case KILN_DTYPE_U64:
        ((uint64_t *)d)[j] = isnan(v) || v <= 0 ? 0 : v >= 0x1p64 ? UINT64_MAX : (uint64_t)v;
        break;
    case KILN_DTYPE_U32: ((uint32_t *)d)[j] = (uint32_t)sat_i64(v, 0, UINT32_MAX); break;
    case KILN_DTYPE_U16: ((uint16_t *)d)[j] = (uint16_t)sat_i64(v, 0, UINT16_MAX); break;
    case KILN_DTYPE_U8: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, UINT8_MAX); break;
    case KILN_DTYPE_U4: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, 15); break;
    case KILN_DTYPE_U2: ((uint8_t *)d)[j] = (uint8_t)sat_i64(v, 0, 3); break;
    case KILN_DTYPE_BOOL: ((uint8_t *)d)[j] = v != 0; break;
    default: break;
    }
}

/* ------------------------------------------------------------------ attributes */

static const struct kiln_attr *attr_of(const struct kiln_kctx *k, const char *name,
                                       enum kiln_attr_type type)
{
    const struct kiln_attr *a = kiln_node_attr(k->node, name);
    return a && a->type == type ? a : NULL;
}

bool kiln_attr_has(const struct kiln_kctx *k, const char *name)
{
    return kiln_node_attr(k->node, name) != NULL;
}

int64_t kiln_attr_i(const struct kiln_kctx *k, const char *name, int64_t def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_INT);
    return a ? a->i : def;
}

float kiln_attr_f(const struct kiln_kctx *k, const char *name, float def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_FLOAT);
    return a ? a->f : def;
}

const char *kiln_attr_s(const struct kiln_kctx *k, const char *name, const char *def)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_STRING);
    return a && a->s ? a->s : def;
}

size_t kiln_attr_ints(const struct kiln_kctx *k, const char *name, const int64_t **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_INTS);
    *v = a ? a->ints : NULL;
    return a ? a->n : 0;
}

size_t kiln_attr_floats(const struct kiln_kctx *k, const char *name, const float **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_FLOATS);
    *v = a ? a->floats : NULL;
    return a ? a->n : 0;
}

size_t kiln_attr_strings(const struct kiln_kctx *k, const char *name, const char *const **v)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_STRINGS);
    *v = a ? a->strings : NULL;
    return a ? a->n : 0;
}

const struct kiln_tensor *kiln_attr_t(const struct kiln_kctx *k, const char *name)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_TENSOR);
    return a ? a->t : NULL;
}

const struct kiln_graph *kiln_attr_g(const struct kiln_kctx *k, const char *name)
{
    const struct kiln_attr *a = attr_of(k, name, KILN_ATTR_GRAPH);
    return a ? a->g : NULL;
}

/* ------------------------------------------------------------------ outputs */

bool kiln_out_wanted(const struct kiln_kctx *k, size_t i)
{
    return i < k->n_out && k->node->outputs[i][0] != 0;
}

kiln_status kiln_out_value(struct kiln_kctx *k, size_t i, struct kiln_value *v)
{
    if (i >= k->n_out) {
        kiln_value_free(v);
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output %zu is not declared (node has %zu)", i,
                          k->n_out);
    }
    kiln_value_free(k->out[i]);
    k->out[i] = v;
    return KILN_OK;
}

static kiln_status out_tensor(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank, const int64_t *dims,
                              bool zero, struct kiln_tensor **t)
{
    *t = NULL;
    if (i >= k->n_out)
        return kiln_kfail(k, KILN_E_INVALID_MODEL, "output %zu is not declared (node has %zu)", i,
                          k->n_out);
    struct kiln_value *v;
    kiln_err e;
    kiln_status st = kiln_value_new_tensor_cached(dt, rank, dims, k->cache, zero, &v, &e);
    if (st) return kiln_kfail(k, st, "output %zu: %s", i, e.msg);
    kiln_value_release(k->out[i], k->cache);
    k->out[i] = v;
    *t = &v->t;
    return KILN_OK;
}

kiln_status kiln_out_tensor(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                            const int64_t *dims, struct kiln_tensor **t)
{
    return out_tensor(k, i, dt, rank, dims, true, t);
}

kiln_status kiln_out_tensor_raw(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                                const int64_t *dims, struct kiln_tensor **t)
{
    return out_tensor(k, i, dt, rank, dims, false, t);
}

/* ------------------------------------------------------------------ scratch */

struct scratch_block {
    struct scratch_block *next;
    _Alignas(16) unsigned char data[]; /* malloc gives 16-byte alignment */
};

kiln_status kiln_scratch(struct kiln_kctx *k, size_t bytes, void **p)
{
    size_t total;
    *p = NULL;
    if (!kiln_add_size(sizeof(struct scratch_block), bytes, &total))
        return kiln_kfail(k, KILN_E_LIMIT, "scratch request of %zu bytes is too large", bytes);
    struct scratch_block *b = kiln_calloc(1, total);
    if (!b) return kiln_kfail(k, KILN_E_NOMEM, "out of memory for %zu bytes of scratch", bytes);
    b->next = k->scratch;
    k->scratch = b;
    *p = b->data;
    return KILN_OK;
}

/* Frees every scratch block of k (called by the executor after run). */
void kiln_kctx_free_scratch(struct kiln_kctx *k)
{
    struct scratch_block *b = k->scratch;
    while (b) {
        struct scratch_block *next = b->next;
        kiln_free(b);
        b = next;
    }
    k->scratch = NULL;
}
