/* value.c: kiln_value_wrap_tensor and the sequence builders (kiln.h): values made by API
 * clients. A wrapped tensor is an ordinary tensor value without KILN_TENSOR_OWNS_DATA (and
 * without KILN_TENSOR_OWNS_STRINGS), so kiln_value_free leaves the caller's memory alone. */
#include "ir/ir.h"

kiln_status kiln_value_wrap_tensor(kiln_dtype dt, int rank, const int64_t *dims, void *data,
                                   size_t bytes, kiln_value **out, kiln_err *err)
{
    if (!out) return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: no output pointer");
    *out = NULL;
    if (!kiln_dtype_valid((int)dt))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: element type %d is not valid", (int)dt);
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_err_set(err, KILN_E_LIMIT, "wrap tensor: rank %d exceeds the limit %d", rank,
                            KILN_MAX_RANK);
    if (rank > 0 && !dims) return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: rank %d without dims", rank);
    uint64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: dim %d is %lld; expected >= 0", i,
                                (long long)dims[i]);
        if (dims[i] && numel > KILN_MAX_NUMEL / (uint64_t)dims[i])
            return kiln_err_set(err, KILN_E_LIMIT, "wrap tensor: more than %llu elements",
                                (unsigned long long)KILN_MAX_NUMEL);
        numel *= (uint64_t)dims[i];
    }
    size_t elem = dt == KILN_DTYPE_STRING ? sizeof(char *) : kiln_dtype_size(dt);
    size_t want;
    if (!kiln_mul_size((size_t)numel, elem, &want) || want != bytes)
        return kiln_err_set(err, KILN_E_INVALID_ARG,
                            "wrap tensor: %zu bytes given; a %s tensor of %llu elements takes %llu",
                            bytes, kiln_dtype_name(dt), (unsigned long long)numel,
                            (unsigned long long)numel * elem);
    if (bytes && !data) return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: data is NULL");
    if (dt == KILN_DTYPE_STRING) {
        char *const *s = data;
        for (size_t i = 0; i < (size_t)numel; i++)
            if (!s[i]) return kiln_err_set(err, KILN_E_INVALID_ARG, "wrap tensor: string %zu is NULL", i);
    }
    struct kiln_value *v = kiln_value_new(KILN_VALUE_TENSOR);
    if (!v) return kiln_err_set(err, KILN_E_NOMEM, "out of memory wrapping a tensor");
    v->t.dtype = dt;
    v->t.rank = rank;
    for (int i = 0; i < rank; i++) v->t.dims[i] = dims[i];
    v->t.data = data;
    v->t.flags = 0; /* borrowed: neither the data nor the strings are freed */
    *out = v;
    return KILN_OK;
}

kiln_status kiln_value_create_sequence(kiln_dtype elem_dtype, kiln_value **out, kiln_err *err)
{
    if (!out) return kiln_err_set(err, KILN_E_INVALID_ARG, "sequence: no output pointer");
    *out = NULL;
    if (!kiln_dtype_valid((int)elem_dtype))
        return kiln_err_set(err, KILN_E_INVALID_ARG, "sequence: element type %d is not valid",
                            (int)elem_dtype);
    struct kiln_value *v = kiln_value_new(KILN_VALUE_SEQUENCE);
    if (!v) return kiln_err_set(err, KILN_E_NOMEM, "out of memory creating a sequence");
    v->elem_dtype = elem_dtype;
    *out = v;
    return KILN_OK;
}

kiln_status kiln_value_sequence_append(kiln_value *seq, kiln_value *item, kiln_err *err)
{
    kiln_status st = KILN_OK;
    if (!seq || seq->kind != KILN_VALUE_SEQUENCE)
        st = kiln_err_set(err, KILN_E_INVALID_ARG, "sequence append: not a sequence");
    else if (!item || item->kind != KILN_VALUE_TENSOR)
        st = kiln_err_set(err, KILN_E_INVALID_ARG, "sequence append: the item is not a tensor");
    else if (item->t.dtype != seq->elem_dtype)
        st = kiln_err_set(err, KILN_E_INVALID_ARG, "sequence append: a %s tensor in a sequence of %s",
                          kiln_dtype_name(item->t.dtype), kiln_dtype_name(seq->elem_dtype));
    if (st) {
        kiln_value_free(item);
        return st;
    }
    return kiln_value_append(seq, item, err);
}
