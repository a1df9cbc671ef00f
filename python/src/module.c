/* module.c: the kiln._kiln module: exception classes, model tools (build, optimize,
 * convert), value files, plugins and version queries. kiln/__init__.py builds the
 * onnxruntime-shaped API on top. */
#define KILN_PY_IMPORT_ARRAY
#include "kiln_py.h"

#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------------ exceptions */

/* Class names follow onnxruntime's; each kiln status maps to one. */
static PyObject *exc_base;
static PyObject *exc_by_status[KILN_E_CANCELLED + 1];

static const struct {
    const char *name;
    int status; /* -1: defined for onnxruntime compatibility, never raised */
    const char *doc;
} exc_table[] = {
    {"InvalidGraph", KILN_E_INVALID_MODEL, "The model is malformed or breaks the ONNX spec."},
    {"NotImplemented", KILN_E_UNSUPPORTED, "Valid ONNX that kiln does not implement."},
    {"InvalidArgument", KILN_E_INVALID_ARG, "Bad API use: wrong input name, type or shape."},
    {"RuntimeException", KILN_E_NOMEM, "Out of memory, or a bug in kiln (the message says which)."},
    {"NoSuchFile", KILN_E_IO, "A file could not be read or written."},
    {"Fail", KILN_E_LIMIT, "A limit was hit (a run's timeout, a size cap), or a run was cancelled."},
    {"EPFail", KILN_E_DEVICE, "A device (backend) error."},
    {"InvalidProtobuf", -1, "onnxruntime's name; kiln raises InvalidGraph."},
    {"NoModel", -1, "onnxruntime's name; never raised by kiln."},
    {"ModelLoaded", -1, "onnxruntime's name; never raised by kiln."},
    {"EngineError", -1, "onnxruntime's name; never raised by kiln."},
};

int kiln_py_add_exceptions(PyObject *m)
{
    exc_base = PyErr_NewExceptionWithDoc("kiln.KilnError",
                                         "Base class of kiln's errors; the text is kiln's one-line message.",
                                         PyExc_RuntimeError, NULL);
    if (!exc_base || PyModule_AddObjectRef(m, "KilnError", exc_base) < 0) return -1;
    for (size_t i = 0; i < sizeof exc_table / sizeof exc_table[0]; i++) {
        char qual[64];
        snprintf(qual, sizeof qual, "kiln.%s", exc_table[i].name);
        PyObject *e = PyErr_NewExceptionWithDoc(qual, exc_table[i].doc, exc_base, NULL);
        if (!e || PyModule_AddObjectRef(m, exc_table[i].name, e) < 0) {
            Py_XDECREF(e);
            return -1;
        }
        if (exc_table[i].status >= 0) exc_by_status[exc_table[i].status] = e; /* keeps the reference */
        else Py_DECREF(e);
    }
    exc_by_status[KILN_E_INTERNAL] = exc_by_status[KILN_E_NOMEM];
    exc_by_status[KILN_E_CANCELLED] = exc_by_status[KILN_E_LIMIT];
    return 0;
}

static PyObject *exc_class(kiln_status st)
{
    if ((unsigned)st <= KILN_E_CANCELLED && exc_by_status[st]) return exc_by_status[st];
    return exc_base;
}

PyObject *kiln_py_raise(const kiln_err *err)
{
    PyErr_SetString(exc_class(err->status), err->msg[0] ? err->msg : kiln_status_name(err->status));
    return NULL;
}

PyObject *kiln_py_raisef(kiln_status st, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    PyErr_SetString(exc_class(st), buf);
    return NULL;
}

/* ------------------------------------------------------------------ models */

int kiln_py_load_model(PyObject *src, kiln_model **out)
{
    kiln_err err = {0};
    kiln_status st;
    *out = NULL;
    if (PyObject_CheckBuffer(src)) {
        Py_buffer view;
        if (PyObject_GetBuffer(src, &view, PyBUF_SIMPLE) < 0) return -1;
        Py_BEGIN_ALLOW_THREADS
        st = kiln_model_load_buffer(view.buf, (size_t)view.len, NULL, out, &err);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
    } else {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(src, &path)) return -1;
        Py_BEGIN_ALLOW_THREADS
        st = kiln_model_load_file(PyBytes_AS_STRING(path), out, &err);
        Py_END_ALLOW_THREADS
        Py_DECREF(path);
    }
    if (st) {
        kiln_py_raise(&err);
        return -1;
    }
    return 0;
}

/* Saves m to `out_path`, or returns its bytes when out_path is None. */
static PyObject *save_or_bytes(kiln_model *m, PyObject *out_path)
{
    kiln_err err = {0};
    if (out_path == Py_None) {
        void *buf = NULL;
        size_t len = 0;
        if (kiln_model_save_buffer(m, &buf, &len, &err)) return kiln_py_raise(&err);
        PyObject *r = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
        kiln_buffer_free(buf);
        return r;
    }
    PyObject *p = NULL;
    if (!PyUnicode_FSConverter(out_path, &p)) return NULL;
    kiln_status st = kiln_model_save(m, PyBytes_AS_STRING(p), NULL, &err);
    Py_DECREF(p);
    if (st) return kiln_py_raise(&err);
    Py_RETURN_NONE;
}

static void collect_line(void *user, const char *msg)
{
    /* Called with the GIL held (optimize runs without releasing it when reporting). */
    PyObject *list = user, *s = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (s) {
        if (PyList_Append(list, s) < 0) PyErr_Clear();
        Py_DECREF(s);
    } else {
        PyErr_Clear();
    }
}

static PyObject *py_optimize(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"model", "out_path", "level", "keep_fused", "passes", "fold_limit_bytes", "report", NULL};
    PyObject *src, *out_path = Py_None, *report = Py_None;
    int level = KILN_OPT_EXTENDED, keep_fused = 1;
    const char *passes = NULL;
    Py_ssize_t fold_limit = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OipznO", kwlist, &src, &out_path, &level, &keep_fused,
                                     &passes, &fold_limit, &report))
        return NULL;
    (void)report;
    int want_report = report != Py_None && PyObject_IsTrue(report);
    if (level < KILN_OPT_NONE || level > KILN_OPT_LAYOUT)
        return kiln_py_raisef(KILN_E_INVALID_ARG, "optimize: level %d; expected 0 (none) to 3 (layout)", level);
    if (fold_limit < 0) return kiln_py_raisef(KILN_E_INVALID_ARG, "optimize: fold_limit_bytes is negative");
    kiln_model *m;
    if (kiln_py_load_model(src, &m)) return NULL;
    PyObject *lines = want_report ? PyList_New(0) : NULL;
    kiln_optimize_options o = {.level = (kiln_opt_level)level, .passes = passes, .keep_fused = keep_fused,
                               .fold_limit_bytes = (size_t)fold_limit,
                               .report = lines ? collect_line : NULL, .report_user = lines};
    kiln_err err = {0};
    kiln_status st;
    if (lines) {
        st = kiln_model_optimize(m, &o, &err);
    } else {
        Py_BEGIN_ALLOW_THREADS
        st = kiln_model_optimize(m, &o, &err);
        Py_END_ALLOW_THREADS
    }
    PyObject *r = st ? kiln_py_raise(&err) : save_or_bytes(m, out_path);
    kiln_model_free(m);
    if (r && lines) {
        PyObject *t = PyTuple_Pack(2, r, lines);
        Py_DECREF(r);
        r = t;
    }
    Py_XDECREF(lines);
    return r;
}

static PyObject *py_convert(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"model", "out_path", "opset", NULL};
    PyObject *src, *out_path;
    long long opset;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOL", kwlist, &src, &out_path, &opset)) return NULL;
    kiln_model *m;
    if (kiln_py_load_model(src, &m)) return NULL;
    kiln_err err = {0};
    kiln_status st = kiln_model_convert_opset(m, (int64_t)opset, &err);
    PyObject *r = st ? kiln_py_raise(&err) : save_or_bytes(m, out_path);
    kiln_model_free(m);
    return r;
}

/* ------------------------------------------------------------------ engines */

static int dims_from(PyObject *seq, const char *what, int64_t *dims)
{
    PyObject *f = PySequence_Fast(seq, "dims must be a sequence of ints");
    if (!f) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    if (n > 16) {
        Py_DECREF(f);
        kiln_py_raisef(KILN_E_LIMIT, "%s: rank %zd exceeds kiln's limit of 16", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        dims[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(f, i));
        if (dims[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(f);
            return -1;
        }
    }
    Py_DECREF(f);
    return (int)n;
}

static void build_log(void *user, const char *msg)
{
    int verbose = *(const int *)user;
    if (verbose >= 0 && (verbose || strncmp(msg, "fallback:", 9) == 0)) fprintf(stderr, "kiln build: %s\n", msg);
}

/* build(model, path, shapes=[(name, dims)], profiles=[(profile, input, min, opt, max)],
 *       precisions=1, threads=0, level=2, memory_limit=0, tune=False, verbose=0)
 * verbose: -1 silent, 0 fallback lines only, 1 everything. */
static PyObject *py_build(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *kwlist[] = {"model", "path", "shapes", "profiles", "precisions", "threads", "level",
                             "memory_limit", "tune", "verbose", NULL};
    PyObject *src, *out_path, *shapes = Py_None, *profiles = Py_None;
    unsigned precisions = KILN_PRECISION_FP32;
    int threads = 0, level = KILN_OPT_EXTENDED, tune = 0, verbose = 0;
    unsigned long long mem_limit = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOIiiKpi", kwlist, &src, &out_path, &shapes, &profiles,
                                     &precisions, &threads, &level, &mem_limit, &tune, &verbose))
        return NULL;
    kiln_err err = {0};
    kiln_builder *b = NULL;
    kiln_model *m = NULL;
    kiln_engine *e = NULL;
    PyObject *path = NULL, *r = NULL;
    if (!PyUnicode_FSConverter(out_path, &path)) return NULL;
    if (kiln_builder_create(&b, &err)) goto kiln_fail;
    if (level < KILN_OPT_NONE || level > KILN_OPT_LAYOUT) {
        kiln_py_raisef(KILN_E_INVALID_ARG, "build: level %d; expected 0 (none) to 3 (layout)", level);
        goto done;
    }
    kiln_builder_set_opt_level(b, (kiln_opt_level)level);
    if (kiln_builder_set_precisions(b, precisions, &err) || kiln_builder_set_threads(b, threads, &err)) goto kiln_fail;
    kiln_builder_set_memory_limit(b, mem_limit);
    kiln_builder_set_tune(b, tune);
    kiln_builder_set_log(b, build_log, &verbose, verbose > 0);
    if (profiles != Py_None) {
        PyObject *f = PySequence_Fast(profiles, "profiles must be a list");
        if (!f) goto done;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(f); i++) {
            const char *prof, *input;
            PyObject *lo, *opt, *hi;
            int64_t d[3][16];
            int rk[3];
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(f, i), "ssOOO", &prof, &input, &lo, &opt, &hi) ||
                (rk[0] = dims_from(lo, input, d[0])) < 0 || (rk[1] = dims_from(opt, input, d[1])) < 0 ||
                (rk[2] = dims_from(hi, input, d[2])) < 0) {
                Py_DECREF(f);
                goto done;
            }
            if (rk[0] != rk[1] || rk[1] != rk[2]) {
                Py_DECREF(f);
                kiln_py_raisef(KILN_E_INVALID_ARG, "build: profile '%s' input '%s': min, opt and max have different ranks",
                               prof, input);
                goto done;
            }
            if (kiln_builder_add_profile(b, prof, input, rk[0], d[0], d[1], d[2], &err)) {
                Py_DECREF(f);
                goto kiln_fail;
            }
        }
        Py_DECREF(f);
    }
    if (kiln_py_load_model(src, &m)) goto done;
    if (shapes != Py_None) {
        PyObject *f = PySequence_Fast(shapes, "shapes must be a list of (name, dims)");
        if (!f) goto done;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(f); i++) {
            const char *name;
            PyObject *dims;
            int64_t d[16];
            int rk;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(f, i), "sO", &name, &dims) ||
                (rk = dims_from(dims, name, d)) < 0) {
                Py_DECREF(f);
                goto done;
            }
            if (kiln_model_set_input_shape(m, name, rk, d, &err)) {
                Py_DECREF(f);
                goto kiln_fail;
            }
        }
        Py_DECREF(f);
    }
    kiln_status st;
    Py_BEGIN_ALLOW_THREADS
    st = kiln_builder_build(b, m, &e, &err);
    if (st == KILN_OK) st = kiln_engine_save(e, PyBytes_AS_STRING(path), &err);
    Py_END_ALLOW_THREADS
    if (st) goto kiln_fail;
    r = Py_None;
    Py_INCREF(r);
    goto done;
kiln_fail:
    kiln_py_raise(&err);
done:
    kiln_engine_free(e);
    kiln_model_free(m);
    kiln_builder_free(b);
    Py_XDECREF(path);
    return r;
}

/* ------------------------------------------------------------------ values and the rest */

/* read_value(path, kind=0): a .npy or TensorProto/SequenceProto/OptionalProto file. */
static PyObject *py_read_value(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p;
    int kind = 0;
    if (!PyArg_ParseTuple(args, "O&|i", PyUnicode_FSConverter, &p, &kind)) return NULL;
    kiln_err err = {0};
    kiln_value *v = NULL;
    kiln_status st = kiln_value_read_file(PyBytes_AS_STRING(p), (kiln_value_kind)kind, &v, &err);
    Py_DECREF(p);
    if (st) return kiln_py_raise(&err);
    return kiln_py_from_value(v, "value");
}

/* write_pb(value, name, path, kind=0): a TensorProto (or SequenceProto for kind 2). */
static PyObject *py_write_pb(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj, *p;
    const char *name;
    int kind = 0;
    if (!PyArg_ParseTuple(args, "OzO&|i", &obj, &name, PyUnicode_FSConverter, &p, &kind)) return NULL;
    struct kiln_py_keep keep;
    kiln_py_keep_init(&keep);
    kiln_value *v = NULL;
    PyObject *r = NULL;
    if (kiln_py_to_value(obj, (kiln_value_kind)kind, KILN_DTYPE_UNDEFINED, name ? name : "value", &keep, &v) == 0) {
        kiln_err err = {0};
        if (kiln_value_write_pb(v, name, PyBytes_AS_STRING(p), &err)) kiln_py_raise(&err);
        else r = Py_NewRef(Py_None);
    }
    kiln_value_free(v);
    kiln_py_keep_release(&keep);
    Py_DECREF(p);
    return r;
}

static PyObject *py_load_plugin(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &p)) return NULL;
    kiln_err err = {0};
    kiln_status st = kiln_plugin_load(PyBytes_AS_STRING(p), &err);
    Py_DECREF(p);
    if (st) return kiln_py_raise(&err);
    Py_RETURN_NONE;
}

static PyObject *py_is_engine(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &p)) return NULL;
    int r = kiln_file_is_engine(PyBytes_AS_STRING(p));
    Py_DECREF(p);
    return PyBool_FromLong(r);
}

static PyObject *py_cpu_isa(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(kiln_cpu_isa());
}

static PyObject *py_version(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(kiln_version());
}

#define KW_FN(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef module_methods[] = {
    {"build", KW_FN(py_build), METH_VARARGS | METH_KEYWORDS, "Builds an engine file (see kiln.build)."},
    {"optimize", KW_FN(py_optimize), METH_VARARGS | METH_KEYWORDS, "Optimizes a model (see kiln.optimize)."},
    {"convert", KW_FN(py_convert), METH_VARARGS | METH_KEYWORDS, "Converts a model's opset (see kiln.convert)."},
    {"read_value", py_read_value, METH_VARARGS, "read_value(path, kind=0): a .npy or ONNX value file."},
    {"write_pb", py_write_pb, METH_VARARGS, "write_pb(value, name, path, kind=0): writes an ONNX value file."},
    {"load_plugin", py_load_plugin, METH_VARARGS, "load_plugin(path): loads a kiln plugin library."},
    {"is_engine", py_is_engine, METH_VARARGS, "is_engine(path): True when the file is a kiln engine."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS, "The instruction set kiln's CPU kernels use."},
    {"version", py_version, METH_NOARGS, "The kiln library version."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "kiln._kiln", "kiln's C extension; use the kiln package.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kiln(void);
PyMODINIT_FUNC PyInit__kiln(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (kiln_py_add_exceptions(m) < 0 || PyType_Ready(&kiln_py_session_type) < 0 ||
        PyType_Ready(&kiln_py_run_options_type) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&kiln_py_session_type) < 0 ||
        PyModule_AddObjectRef(m, "RunOptions", (PyObject *)&kiln_py_run_options_type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
