/* kiln_py.h: what the files of the Python extension (kiln._kiln) share.
 *
 * The extension is a client of include/kiln.h only. module.c holds the module, the exception
 * classes and the model tools (build, optimize, convert); values.c converts between NumPy
 * arrays and kiln values; session.c the Session and RunOptions types. */
#ifndef KILN_PY_H
#define KILN_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL kiln_py_ARRAY_API
#ifndef KILN_PY_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "kiln.h"

/* Objects kept alive while a run reads their memory (converted arrays, feed keys): a small
 * inline store that grows on the heap. */
struct kiln_py_keep {
    PyObject **objs;
    size_t n, cap;
    PyObject *inline_objs[16];
};
void kiln_py_keep_init(struct kiln_py_keep *k);
int kiln_py_keep_add(struct kiln_py_keep *k, PyObject *o); /* steals o; -1 with an exception */
void kiln_py_keep_release(struct kiln_py_keep *k);

/* Raises the exception class for err->status with err->msg as its text; returns NULL. */
PyObject *kiln_py_raise(const kiln_err *err);
/* Raises class `st` with a formatted message; returns NULL. */
PyObject *kiln_py_raisef(kiln_status st, const char *fmt, ...);
int kiln_py_add_exceptions(PyObject *module);

/* "tensor(float)" style element names: "float", "int64", "string", ... */
const char *kiln_py_onnx_type_name(kiln_dtype dt);

/* NumPy -> kiln. `obj` (an array or anything np.asarray takes; for a sequence input a list
 * of them) becomes a value borrowing the array's memory when it is C-contiguous, aligned and
 * in native byte order, and a copy otherwise; every object whose memory the value reads is
 * added to `keep`. want_kind is the declared kind (0: unknown), want_elem the declared
 * element type of a sequence (KILN_DTYPE_UNDEFINED: from its items). `what` names the value
 * in messages ("input 'x'"). Returns -1 with an exception set. */
int kiln_py_to_value(PyObject *obj, kiln_value_kind want_kind, kiln_dtype want_elem, const char *what,
                     struct kiln_py_keep *keep, kiln_value **out);
/* kiln -> NumPy. Takes ownership of v (freed on every path): a numeric tensor becomes an
 * array viewing v's memory (freed with the array), a string tensor an object array of str,
 * a sequence a list, an optional None or its value. NULL with an exception set. */
PyObject *kiln_py_from_value(kiln_value *v, const char *what);
/* The same for a value that stays owned by someone else (copies). */
PyObject *kiln_py_from_value_copy(const kiln_value *v, const char *what);

/* A model from a path (str, bytes path or os.PathLike) or from bytes-like contents. */
int kiln_py_load_model(PyObject *src, kiln_model **out);

extern PyTypeObject kiln_py_session_type;
extern PyTypeObject kiln_py_run_options_type;

typedef struct {
    PyObject_HEAD
    kiln_run_options *ro;
    double timeout;
} kiln_py_run_options;

#endif /* KILN_PY_H */
