/* values.c: NumPy arrays <-> kiln values.
 *
 * Inputs: a C-contiguous, aligned, native-byte-order array is wrapped in place
 * (kiln_value_wrap_tensor borrows its memory: zero copy); any other array, and anything
 * np.asarray accepts, is first converted to one (a copy). Read-only arrays are fine: runs
 * never write their inputs. Strings (object arrays of str or bytes, and 'U'/'S' arrays) are
 * passed as an array of UTF-8 pointers into the Python objects, kept alive for the run.
 *
 * Outputs: a numeric tensor becomes an array viewing the kiln value's memory, owned by a
 * capsule that frees the value when the array goes (zero copy); strings become object arrays
 * of str; sequences lists; optionals None or their value. Element types NumPy lacks
 * (bfloat16, the float8 and 4/2-bit types) are refused with NotImplemented.
 */
#include "kiln_py.h"

#include <string.h>

void kiln_py_keep_init(struct kiln_py_keep *k)
{
    k->objs = k->inline_objs;
    k->n = 0;
    k->cap = sizeof k->inline_objs / sizeof k->inline_objs[0];
}

int kiln_py_keep_add(struct kiln_py_keep *k, PyObject *o)
{
    if (k->n == k->cap) {
        size_t cap = k->cap * 2;
        PyObject **objs = PyMem_Malloc(cap * sizeof *objs);
        if (!objs) {
            Py_DECREF(o);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(objs, k->objs, k->n * sizeof *objs);
        if (k->objs != k->inline_objs) PyMem_Free(k->objs);
        k->objs = objs;
        k->cap = cap;
    }
    k->objs[k->n++] = o;
    return 0;
}

void kiln_py_keep_release(struct kiln_py_keep *k)
{
    for (size_t i = 0; i < k->n; i++) Py_DECREF(k->objs[i]);
    if (k->objs != k->inline_objs) PyMem_Free(k->objs);
    kiln_py_keep_init(k);
}

/* ------------------------------------------------------------------ element types */

static const char *const onnx_names[KILN_DTYPE_COUNT_] = {
    [KILN_DTYPE_F32] = "float",          [KILN_DTYPE_U8] = "uint8",
    [KILN_DTYPE_I8] = "int8",            [KILN_DTYPE_U16] = "uint16",
    [KILN_DTYPE_I16] = "int16",          [KILN_DTYPE_I32] = "int32",
    [KILN_DTYPE_I64] = "int64",          [KILN_DTYPE_STRING] = "string",
    [KILN_DTYPE_BOOL] = "bool",          [KILN_DTYPE_F16] = "float16",
    [KILN_DTYPE_F64] = "double",         [KILN_DTYPE_U32] = "uint32",
    [KILN_DTYPE_U64] = "uint64",         [KILN_DTYPE_C64] = "complex64",
    [KILN_DTYPE_C128] = "complex128",    [KILN_DTYPE_BF16] = "bfloat16",
    [KILN_DTYPE_F8E4M3FN] = "float8e4m3fn", [KILN_DTYPE_F8E4M3FNUZ] = "float8e4m3fnuz",
    [KILN_DTYPE_F8E5M2] = "float8e5m2",  [KILN_DTYPE_F8E5M2FNUZ] = "float8e5m2fnuz",
    [KILN_DTYPE_U4] = "uint4",           [KILN_DTYPE_I4] = "int4",
    [KILN_DTYPE_F4E2M1] = "float4e2m1",  [KILN_DTYPE_F8E8M0] = "float8e8m0",
    [KILN_DTYPE_U2] = "uint2",           [KILN_DTYPE_I2] = "int2",
};

const char *kiln_py_onnx_type_name(kiln_dtype dt)
{
    return (unsigned)dt < KILN_DTYPE_COUNT_ && onnx_names[dt] ? onnx_names[dt] : "undefined";
}

/* The NumPy type of a kiln element type; -1 when NumPy has none. */
static int npy_type_of(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DTYPE_F32: return NPY_FLOAT32;
    case KILN_DTYPE_F64: return NPY_FLOAT64;
    case KILN_DTYPE_F16: return NPY_FLOAT16;
    case KILN_DTYPE_I8: return NPY_INT8;
    case KILN_DTYPE_I16: return NPY_INT16;
    case KILN_DTYPE_I32: return NPY_INT32;
    case KILN_DTYPE_I64: return NPY_INT64;
    case KILN_DTYPE_U8: return NPY_UINT8;
    case KILN_DTYPE_U16: return NPY_UINT16;
    case KILN_DTYPE_U32: return NPY_UINT32;
    case KILN_DTYPE_U64: return NPY_UINT64;
    case KILN_DTYPE_BOOL: return NPY_BOOL;
    case KILN_DTYPE_C64: return NPY_COMPLEX64;
    case KILN_DTYPE_C128: return NPY_COMPLEX128;
    case KILN_DTYPE_STRING: return NPY_OBJECT;
    default: return -1;
    }
}

/* The kiln element type of a NumPy dtype, by kind and size (so that long and longlong both
 * map to int64); KILN_DTYPE_STRING for object, str and bytes arrays; UNDEFINED otherwise. */
static kiln_dtype kiln_type_of(const PyArray_Descr *d)
{
    int size = (int)d->elsize;
    switch (d->kind) {
    case 'f': return size == 4 ? KILN_DTYPE_F32 : size == 8 ? KILN_DTYPE_F64 : size == 2 ? KILN_DTYPE_F16 : 0;
    case 'i':
        return size == 1 ? KILN_DTYPE_I8 : size == 2 ? KILN_DTYPE_I16 : size == 4 ? KILN_DTYPE_I32
             : size == 8 ? KILN_DTYPE_I64 : 0;
    case 'u':
        return size == 1 ? KILN_DTYPE_U8 : size == 2 ? KILN_DTYPE_U16 : size == 4 ? KILN_DTYPE_U32
             : size == 8 ? KILN_DTYPE_U64 : 0;
    case 'b': return KILN_DTYPE_BOOL;
    case 'c': return size == 8 ? KILN_DTYPE_C64 : size == 16 ? KILN_DTYPE_C128 : 0;
    case 'O': case 'U': case 'S': return KILN_DTYPE_STRING;
    default: return KILN_DTYPE_UNDEFINED;
    }
}

/* ------------------------------------------------------------------ NumPy -> kiln */

static int dims_of(PyArrayObject *a, const char *what, int64_t *dims)
{
    int nd = PyArray_NDIM(a);
    if (nd > 16) {
        kiln_py_raisef(KILN_E_LIMIT, "%s: rank %d exceeds kiln's limit of 16", what, nd);
        return -1;
    }
    for (int i = 0; i < nd; i++) dims[i] = (int64_t)PyArray_DIM(a, i);
    return nd;
}

/* A string tensor: an array of UTF-8 pointers (kept in a bytes object) into the items of
 * an object array (kept too). */
static int strings_to_value(PyArrayObject *a, const char *what, struct kiln_py_keep *keep, kiln_value **out)
{
    PyArrayObject *o = (PyArrayObject *)PyArray_FromAny((PyObject *)a, PyArray_DescrFromType(NPY_OBJECT), 0, 0,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST,
                                                        NULL);
    if (!o || kiln_py_keep_add(keep, (PyObject *)o)) return -1;
    npy_intp n = PyArray_SIZE(o);
    PyObject *ptrs = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((size_t)n * sizeof(char *)) + 1);
    if (!ptrs || kiln_py_keep_add(keep, ptrs)) return -1;
    const char **p = (const char **)(void *)PyBytes_AS_STRING(ptrs);
    PyObject **items = (PyObject **)PyArray_DATA(o);
    for (npy_intp i = 0; i < n; i++) {
        PyObject *it = items[i];
        if (PyUnicode_Check(it)) {
            p[i] = PyUnicode_AsUTF8(it); /* cached in the str object, which o holds */
            if (!p[i]) return -1;
        } else if (PyBytes_Check(it)) {
            p[i] = PyBytes_AS_STRING(it);
        } else {
            kiln_py_raisef(KILN_E_INVALID_ARG, "%s: a string tensor holds a %s at flat index %zd; expected str or bytes",
                           what, Py_TYPE(it)->tp_name, (Py_ssize_t)i);
            return -1;
        }
    }
    int64_t dims[16];
    int nd = dims_of(o, what, dims);
    if (nd < 0) return -1;
    kiln_err err = {0};
    if (kiln_value_wrap_tensor(KILN_DTYPE_STRING, nd, dims, (void *)p, (size_t)n * sizeof(char *), out, &err)) {
        kiln_py_raise(&err);
        return -1;
    }
    return 0;
}

static int tensor_to_value(PyObject *obj, const char *what, struct kiln_py_keep *keep, kiln_value **out)
{
    PyArrayObject *a;
    if (PyArray_Check(obj)) {
        Py_INCREF(obj);
        a = (PyArrayObject *)obj;
    } else {
        a = (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
        if (!a) return -1;
    }
    if (kiln_py_keep_add(keep, (PyObject *)a)) return -1;
    PyArray_Descr *d = PyArray_DESCR(a);
    kiln_dtype dt = kiln_type_of(d);
    if (dt == KILN_DTYPE_UNDEFINED) {
        PyObject *s = PyObject_Str((PyObject *)d);
        kiln_py_raisef(KILN_E_INVALID_ARG, "%s: NumPy dtype %s has no ONNX element type", what,
                       s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        return -1;
    }
    if (dt == KILN_DTYPE_STRING) return strings_to_value(a, what, keep, out);
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a)) {
        /* Documented: such arrays are copied into a contiguous native one first. */
        a = (PyArrayObject *)PyArray_FromAny((PyObject *)a, PyArray_DescrFromType(d->type_num), 0, 0,
                                             NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, NULL);
        if (!a || kiln_py_keep_add(keep, (PyObject *)a)) return -1;
    }
    int64_t dims[16];
    int nd = dims_of(a, what, dims);
    if (nd < 0) return -1;
    kiln_err err = {0};
    if (kiln_value_wrap_tensor(dt, nd, dims, PyArray_DATA(a), (size_t)PyArray_NBYTES(a), out, &err)) {
        kiln_py_raise(&err);
        return -1;
    }
    return 0;
}

static int sequence_to_value(PyObject *obj, kiln_dtype elem, const char *what, struct kiln_py_keep *keep,
                             kiln_value **out)
{
    PyObject *items = PySequence_Fast(obj, "a sequence input takes a list of arrays");
    if (!items || kiln_py_keep_add(keep, items)) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    kiln_value **vals = PyMem_Calloc((size_t)n + 1, sizeof *vals);
    if (!vals) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (tensor_to_value(PySequence_Fast_GET_ITEM(items, i), what, keep, &vals[i])) goto done;
    if (elem == KILN_DTYPE_UNDEFINED) elem = n ? kiln_value_dtype(vals[0]) : KILN_DTYPE_F32;
    kiln_err err = {0};
    kiln_value *seq = NULL;
    if (kiln_value_create_sequence(elem, &seq, &err)) {
        kiln_py_raise(&err);
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        kiln_status st = kiln_value_sequence_append(seq, vals[i], &err);
        vals[i] = NULL; /* moved in, also on failure */
        if (st) {
            kiln_value_free(seq);
            kiln_py_raisef(st, "%s: item %zd: %s", what, i, err.msg);
            goto done;
        }
    }
    *out = seq;
    rc = 0;
done:
    for (Py_ssize_t i = 0; i < n; i++) kiln_value_free(vals[i]);
    PyMem_Free(vals);
    return rc;
}

int kiln_py_to_value(PyObject *obj, kiln_value_kind want_kind, kiln_dtype want_elem, const char *what,
                     struct kiln_py_keep *keep, kiln_value **out)
{
    *out = NULL;
    if (want_kind == KILN_VALUE_SEQUENCE) {
        if (PyArray_Check(obj) || !PySequence_Check(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj)) {
            kiln_py_raisef(KILN_E_INVALID_ARG, "%s: expected a sequence (a list of arrays), got a %s", what,
                           Py_TYPE(obj)->tp_name);
            return -1;
        }
        return sequence_to_value(obj, want_elem, what, keep, out);
    }
    if (obj == Py_None) {
        kiln_py_raisef(KILN_E_INVALID_ARG, "%s: None is not a tensor", what);
        return -1;
    }
    return tensor_to_value(obj, what, keep, out);
}

/* ------------------------------------------------------------------ kiln -> NumPy */

static void capsule_free(PyObject *cap)
{
    kiln_value_free(PyCapsule_GetPointer(cap, "kiln_value"));
}

static int npy_type_or_raise(kiln_dtype dt, const char *what)
{
    int t = npy_type_of(dt);
    if (t < 0)
        kiln_py_raisef(KILN_E_UNSUPPORTED, "%s has element type %s, which NumPy lacks", what,
                       kiln_py_onnx_type_name(dt));
    return t;
}

static PyObject *strings_from_value(const kiln_value *v, npy_intp *dims, int nd)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_OBJECT);
    if (!a) return NULL;
    char *const *s = kiln_value_data((kiln_value *)v);
    PyObject **items = (PyObject **)PyArray_DATA(a);
    size_t n = kiln_value_numel(v);
    for (size_t i = 0; i < n; i++) {
        PyObject *str = PyUnicode_DecodeUTF8(s[i], (Py_ssize_t)strlen(s[i]), "surrogateescape");
        if (!str) {
            Py_DECREF(a);
            return NULL;
        }
        Py_XSETREF(items[i], str);
    }
    return (PyObject *)a;
}

/* A tensor: zero copy when `own` (v is then consumed), else a copy. */
static PyObject *tensor_from_value(kiln_value *v, int own, const char *what)
{
    kiln_dtype dt = kiln_value_dtype(v);
    int t = npy_type_or_raise(dt, what);
    PyObject *r = NULL;
    if (t < 0) goto done;
    int nd = kiln_value_rank(v);
    npy_intp dims[16];
    for (int i = 0; i < nd; i++) dims[i] = (npy_intp)kiln_value_dims(v)[i];
    size_t n = kiln_value_numel(v);
    if (dt == KILN_DTYPE_STRING) {
        r = strings_from_value(v, dims, nd);
    } else if (!own || n == 0) {
        r = PyArray_SimpleNew(nd, dims, t);
        if (r && n) memcpy(PyArray_DATA((PyArrayObject *)r), kiln_value_data(v), (size_t)PyArray_NBYTES((PyArrayObject *)r));
    } else {
        PyObject *cap = PyCapsule_New(v, "kiln_value", capsule_free);
        if (!cap) goto done;
        r = PyArray_SimpleNewFromData(nd, dims, t, kiln_value_data(v));
        if (!r || PyArray_SetBaseObject((PyArrayObject *)r, cap) < 0) {
            Py_XDECREF(r);
            PyCapsule_SetDestructor(cap, NULL); /* v is freed below */
            Py_DECREF(cap);
            r = NULL;
            goto done;
        }
        return r; /* v now belongs to the array */
    }
done:
    if (own) kiln_value_free(v);
    return r;
}

static PyObject *from_value(const kiln_value *v, const char *what)
{
    switch (kiln_value_kind_of(v)) {
    case KILN_VALUE_TENSOR: return tensor_from_value((kiln_value *)v, 0, what);
    case KILN_VALUE_OPTIONAL:
        if (kiln_value_count(v) == 0) Py_RETURN_NONE;
        return from_value(kiln_value_item(v, 0), what);
    case KILN_VALUE_SEQUENCE: {
        size_t n = kiln_value_count(v);
        PyObject *list = PyList_New((Py_ssize_t)n);
        for (size_t i = 0; list && i < n; i++) {
            PyObject *it = from_value(kiln_value_item(v, i), what);
            if (!it) Py_CLEAR(list);
            else PyList_SET_ITEM(list, (Py_ssize_t)i, it);
        }
        return list;
    }
    }
    return kiln_py_raisef(KILN_E_UNSUPPORTED, "%s: a value of kind %d", what, (int)kiln_value_kind_of(v));
}

PyObject *kiln_py_from_value_copy(const kiln_value *v, const char *what)
{
    return from_value(v, what);
}

PyObject *kiln_py_from_value(kiln_value *v, const char *what)
{
    if (kiln_value_kind_of(v) == KILN_VALUE_TENSOR) return tensor_from_value(v, 1, what);
    PyObject *r = from_value(v, what);
    kiln_value_free(v);
    return r;
}
