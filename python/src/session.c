/* session.c: kiln._kiln.Session and kiln._kiln.RunOptions.
 *
 * A Session is a kiln engine (an engine file loaded, or a model built by kiln_builder at the
 * requested optimization level) and a kiln_session over it. kiln_session_run may be called
 * from several threads at once on one session (src/api/session.c gives a busy session's
 * second caller a context of its own), so run() holds no lock of its own: it converts the
 * feed with the GIL held, releases the GIL for the run, and converts the outputs after.
 */
#include "kiln_py.h"

#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    kiln_engine *e;
    kiln_session *s;
    const kiln_model *m; /* the session's model (the engine's) */
    size_t n_in, n_out;
    const char **in_names;     /* the model's strings */
    kiln_value_kind *in_kind;
    kiln_dtype *in_elem;
    PyObject *in_index;  /* dict: input name -> index */
    PyObject *out_index; /* dict: output name -> index */
    PyObject *out_names; /* tuple of str */
    int profile;
} Session;

/* ------------------------------------------------------------------ creation */

/* The build log on stderr: nothing at verbose -1, fallback nodes at 0, everything above. */
static void build_log(void *user, const char *msg)
{
    int verbose = *(const int *)user;
    if (verbose >= 0 && (verbose > 0 || strncmp(msg, "fallback:", 9) == 0)) fprintf(stderr, "kiln: %s\n", msg);
}

static int build_engine(PyObject *src, int threads, int level, const uint64_t limits[2], int max_depth,
                        uint64_t memory_limit, int tune, int *verbose, kiln_engine **e)
{
    kiln_err err = {0};
    kiln_builder *b = NULL;
    kiln_model *m = NULL;
    kiln_status st = kiln_builder_create(&b, &err);
    if (st == KILN_OK) {
        kiln_builder_set_opt_level(b, (kiln_opt_level)level);
        st = kiln_builder_set_threads(b, threads, &err);
    }
    if (st) {
        kiln_builder_free(b);
        kiln_py_raise(&err);
        return -1;
    }
    kiln_builder_set_limits(b, limits[0], limits[1], max_depth);
    kiln_builder_set_memory_limit(b, memory_limit);
    kiln_builder_set_tune(b, tune);
    kiln_builder_set_log(b, build_log, verbose, *verbose > 0);
    if (PyObject_CheckBuffer(src)) {
        if (kiln_py_load_model(src, &m)) {
            kiln_builder_free(b);
            return -1;
        }
        Py_BEGIN_ALLOW_THREADS
        st = kiln_builder_build(b, m, e, &err);
        Py_END_ALLOW_THREADS
        kiln_model_free(m); /* the engine owns its own copy */
    } else {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(src, &path)) {
            kiln_builder_free(b);
            return -1;
        }
        const char *p = PyBytes_AS_STRING(path);
        Py_BEGIN_ALLOW_THREADS
        st = kiln_file_is_engine(p) ? kiln_engine_load(p, e, &err) : kiln_builder_build_file(b, p, e, &err);
        Py_END_ALLOW_THREADS
        Py_DECREF(path);
    }
    kiln_builder_free(b);
    if (st) {
        kiln_py_raise(&err);
        return -1;
    }
    return 0;
}

static int index_names(Session *self)
{
    const kiln_model *m = self->m;
    self->n_in = kiln_model_input_count(m);
    self->n_out = kiln_model_output_count(m);
    self->in_names = PyMem_Calloc(self->n_in + 1, sizeof *self->in_names);
    self->in_kind = PyMem_Calloc(self->n_in + 1, sizeof *self->in_kind);
    self->in_elem = PyMem_Calloc(self->n_in + 1, sizeof *self->in_elem);
    self->in_index = PyDict_New();
    self->out_index = PyDict_New();
    self->out_names = PyTuple_New((Py_ssize_t)self->n_out);
    if (!self->in_names || !self->in_kind || !self->in_elem) {
        PyErr_NoMemory();
        return -1;
    }
    if (!self->in_index || !self->out_index || !self->out_names) return -1;
    for (size_t i = 0; i < self->n_in; i++) {
        self->in_names[i] = kiln_model_input_name(m, i);
        self->in_kind[i] = kiln_model_input_kind(m, i);
        self->in_elem[i] = kiln_model_input_dtype(m, i);
        PyObject *k = PyUnicode_FromString(self->in_names[i]), *v = PyLong_FromSize_t(i);
        int rc = k && v ? PyDict_SetItem(self->in_index, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc) return -1;
    }
    for (size_t i = 0; i < self->n_out; i++) {
        PyObject *k = PyUnicode_FromString(kiln_model_output_name(m, i)), *v = PyLong_FromSize_t(i);
        int rc = k && v ? PyDict_SetItem(self->out_index, k, v) : -1;
        Py_XDECREF(v);
        if (rc) {
            Py_XDECREF(k);
            return -1;
        }
        PyTuple_SET_ITEM(self->out_names, (Py_ssize_t)i, k);
    }
    return 0;
}

/* Session(model, threads=0, level=3, profile=False, optimized_path=None, max_tensor_bytes=0,
 *         max_memory_bytes=0, max_depth=0, memory_limit=0, tune=False, verbose=0) */
static int session_init(Session *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model", "threads", "level", "profile", "optimized_path", "max_tensor_bytes",
                             "max_memory_bytes", "max_depth", "memory_limit", "tune", "verbose", NULL};
    PyObject *src, *opt_path = Py_None;
    int threads = 0, level = KILN_OPT_LAYOUT, profile = 0, max_depth = 0, tune = 0, verbose = 0;
    unsigned long long limits[3] = {0, 0, 0};
    if (self->s) {
        PyErr_SetString(PyExc_RuntimeError, "Session is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iipOKKiKpi", kwlist, &src, &threads, &level, &profile,
                                     &opt_path, &limits[0], &limits[1], &max_depth, &limits[2], &tune, &verbose))
        return -1;
    if (level < KILN_OPT_NONE || level > KILN_OPT_LAYOUT) {
        kiln_py_raisef(KILN_E_INVALID_ARG, "session: optimization level %d; expected 0 (none) to 3 (layout)", level);
        return -1;
    }
    uint64_t lim[2] = {limits[0], limits[1]};
    if (build_engine(src, threads, level, lim, max_depth, limits[2], tune, &verbose, &self->e)) return -1;
    kiln_session_options o = {.threads = threads, .profile = profile};
    kiln_err err = {0};
    if (kiln_session_create_from_engine(self->e, &o, &self->s, &err)) {
        kiln_py_raise(&err);
        return -1;
    }
    self->m = kiln_session_model(self->s);
    self->profile = profile;
    if (opt_path != Py_None) {
        PyObject *p = NULL;
        if (!PyUnicode_FSConverter(opt_path, &p)) return -1;
        const char *ps = PyBytes_AS_STRING(p);
        size_t len = strlen(ps);
        kiln_status st = len > 5 && strcmp(ps + len - 5, ".kiln") == 0 ? kiln_engine_save(self->e, ps, &err)
                                                                     : kiln_model_save(self->m, ps, NULL, &err);
        Py_DECREF(p);
        if (st) {
            kiln_py_raise(&err);
            return -1;
        }
    }
    return index_names(self);
}

static void session_dealloc(Session *self)
{
    kiln_session_free(self->s);
    kiln_engine_free(self->e);
    PyMem_Free(self->in_names);
    PyMem_Free(self->in_kind);
    PyMem_Free(self->in_elem);
    Py_XDECREF(self->in_index);
    Py_XDECREF(self->out_index);
    Py_XDECREF(self->out_names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(Session *self)
{
    if (self->s) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Session is not initialized");
    return -1;
}

/* ------------------------------------------------------------------ feeds */

struct feed {
    size_t n;
    const char **names;
    kiln_value **vals;
    const char *inline_names[16];
    kiln_value *inline_vals[16];
    struct kiln_py_keep keep;
};

static void feed_free(struct feed *f)
{
    for (size_t i = 0; i < f->n; i++) kiln_value_free(f->vals[i]);
    if (f->names != f->inline_names) PyMem_Free(f->names);
    if (f->vals != f->inline_vals) PyMem_Free(f->vals);
    kiln_py_keep_release(&f->keep);
}

static int feed_from_dict(Session *self, PyObject *dict, struct feed *f)
{
    f->n = 0;
    f->names = f->inline_names;
    f->vals = f->inline_vals;
    kiln_py_keep_init(&f->keep);
    if (!PyDict_Check(dict)) {
        PyErr_Format(PyExc_TypeError, "input_feed must be a dict of input name to array, not %s",
                     Py_TYPE(dict)->tp_name);
        return -1;
    }
    size_t n = (size_t)PyDict_Size(dict);
    if (n > 16) {
        f->names = PyMem_Calloc(n, sizeof *f->names);
        f->vals = PyMem_Calloc(n, sizeof *f->vals);
        if (!f->names || !f->vals) {
            PyErr_NoMemory();
            return -1;
        }
    }
    /* First take references to every key and value without running any Python code, so
     * that the conversions below (which may: np.asarray calls __array__) cannot change the
     * dict under PyDict_Next; the references also keep the arrays alive while the run reads
     * them, whatever other threads do to the dict. */
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (PyDict_Next(dict, &pos, &key, &val)) {
        Py_INCREF(key);
        if (kiln_py_keep_add(&f->keep, key)) return -1;
        Py_INCREF(val);
        if (kiln_py_keep_add(&f->keep, val)) return -1;
    }
    for (size_t j = 0; j < n; j++) {
        key = f->keep.objs[2 * j];
        val = f->keep.objs[2 * j + 1];
        if (!PyUnicode_Check(key)) {
            PyErr_Format(PyExc_TypeError, "input_feed keys must be input names (str), not %s", Py_TYPE(key)->tp_name);
            return -1;
        }
        PyObject *ix = PyDict_GetItemWithError(self->in_index, key);
        if (!ix) {
            if (PyErr_Occurred()) return -1;
            kiln_py_raisef(KILN_E_INVALID_ARG, "run: the model has no input named '%s'", PyUnicode_AsUTF8(key));
            return -1;
        }
        size_t i = PyLong_AsSize_t(ix);
        char what[300];
        snprintf(what, sizeof what, "input '%s'", self->in_names[i]);
        f->names[f->n] = self->in_names[i];
        f->vals[f->n] = NULL;
        if (kiln_py_to_value(val, self->in_kind[i], self->in_elem[i], what, &f->keep, &f->vals[f->n])) return -1;
        f->n++;
    }
    return 0;
}

/* Output indices for output_names (None or empty: all). */
static Py_ssize_t *pick_outputs(Session *self, PyObject *names, Py_ssize_t *count)
{
    if (names == Py_None || (PySequence_Check(names) && PySequence_Size(names) == 0)) {
        Py_ssize_t *ix = PyMem_Calloc(self->n_out + 1, sizeof *ix);
        if (!ix) return (Py_ssize_t *)PyErr_NoMemory();
        for (size_t i = 0; i < self->n_out; i++) ix[i] = (Py_ssize_t)i;
        *count = (Py_ssize_t)self->n_out;
        return ix;
    }
    if (PyUnicode_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "output_names must be a list of names (or None), not a str");
        return NULL;
    }
    PyObject *f = PySequence_Fast(names, "output_names must be a list of names (or None)");
    if (!f) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    Py_ssize_t *ix = PyMem_Calloc((size_t)n + 1, sizeof *ix);
    if (!ix) {
        Py_DECREF(f);
        return (Py_ssize_t *)PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *name = PySequence_Fast_GET_ITEM(f, j);
        PyObject *v = PyUnicode_Check(name) ? PyDict_GetItemWithError(self->out_index, name) : NULL;
        if (!v) {
            if (!PyErr_Occurred()) {
                if (PyUnicode_Check(name))
                    kiln_py_raisef(KILN_E_INVALID_ARG, "run: the model has no output named '%s'", PyUnicode_AsUTF8(name));
                else
                    PyErr_Format(PyExc_TypeError, "output names must be str, not %s", Py_TYPE(name)->tp_name);
            }
            PyMem_Free(ix);
            Py_DECREF(f);
            return NULL;
        }
        ix[j] = (Py_ssize_t)PyLong_AsSize_t(v);
    }
    Py_DECREF(f);
    *count = n;
    return ix;
}

static const kiln_run_options *run_options_of(PyObject *ro)
{
    if (ro == Py_None) return NULL;
    if (!PyObject_TypeCheck(ro, &kiln_py_run_options_type)) {
        PyErr_Format(PyExc_TypeError, "run_options must be a kiln RunOptions, not %s", Py_TYPE(ro)->tp_name);
        return NULL;
    }
    return ((kiln_py_run_options *)ro)->ro;
}

/* ------------------------------------------------------------------ run */

static PyObject *session_run(Session *self, PyObject *args)
{
    PyObject *names, *dict, *ro_obj = Py_None;
    if (ready(self) || !PyArg_ParseTuple(args, "OO|O", &names, &dict, &ro_obj)) return NULL;
    const kiln_run_options *ro = run_options_of(ro_obj);
    if (!ro && PyErr_Occurred()) return NULL;
    Py_ssize_t n_pick = 0;
    Py_ssize_t *pick = pick_outputs(self, names, &n_pick);
    if (!pick) return NULL;
    struct feed f;
    PyObject *result = NULL;
    kiln_value *inline_outs[16] = {0}, **outs = inline_outs;
    PyObject *inline_objs[16] = {0}, **objs = inline_objs;
    if (self->n_out > 16) {
        outs = PyMem_Calloc(self->n_out, sizeof *outs);
        objs = PyMem_Calloc(self->n_out, sizeof *objs);
        if (!outs || !objs) {
            PyErr_NoMemory();
            goto done_nofeed;
        }
    }
    if (feed_from_dict(self, dict, &f)) goto done;
    kiln_err err = {0};
    kiln_status st;
    Py_BEGIN_ALLOW_THREADS
    st = kiln_session_run_with_options(self->s, ro, f.n, f.names, (const kiln_value *const *)f.vals, self->n_out,
                                       outs, &err);
    Py_END_ALLOW_THREADS
    if (st) {
        kiln_py_raise(&err);
        goto done;
    }
    result = PyList_New(n_pick);
    for (Py_ssize_t j = 0; result && j < n_pick; j++) {
        Py_ssize_t i = pick[j];
        if (!objs[i]) {
            char what[300];
            snprintf(what, sizeof what, "output '%s'", kiln_model_output_name(self->m, (size_t)i));
            objs[i] = kiln_py_from_value(outs[i], what);
            outs[i] = NULL;
            if (!objs[i]) {
                Py_CLEAR(result);
                break;
            }
        }
        Py_INCREF(objs[i]);
        PyList_SET_ITEM(result, j, objs[i]);
    }
done:
    feed_free(&f);
done_nofeed:
    if (outs) for (size_t i = 0; i < self->n_out; i++) kiln_value_free(outs[i]);
    if (objs) for (size_t i = 0; i < self->n_out; i++) Py_XDECREF(objs[i]);
    if (outs != inline_outs) PyMem_Free(outs);
    if (objs != inline_objs) PyMem_Free(objs);
    PyMem_Free(pick);
    return result;
}

/* bench(feed, runs, warmup): the feed converted once, then `runs` timed kiln_session_run
 * calls (outputs freed outside the clock, like kiln bench), the GIL released throughout.
 * Returns the per-run times in milliseconds. */
static PyObject *session_bench(Session *self, PyObject *args)
{
    PyObject *dict;
    int runs = 100, warmup = 10;
    if (ready(self) || !PyArg_ParseTuple(args, "O|ii", &dict, &runs, &warmup)) return NULL;
    if (runs < 1 || warmup < 0) return kiln_py_raisef(KILN_E_INVALID_ARG, "bench: runs must be >= 1 and warmup >= 0");
    struct feed f;
    PyObject *result = NULL;
    double *ms = PyMem_Calloc((size_t)runs, sizeof *ms);
    kiln_value **outs = PyMem_Calloc(self->n_out + 1, sizeof *outs);
    if (!ms || !outs) {
        PyMem_Free(ms);
        PyMem_Free(outs);
        return PyErr_NoMemory();
    }
    if (feed_from_dict(self, dict, &f)) goto done;
    kiln_err err = {0};
    kiln_status st = KILN_OK;
    Py_BEGIN_ALLOW_THREADS
    for (int r = 0; st == KILN_OK && r < warmup + runs; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        st = kiln_session_run(self->s, f.n, f.names, (const kiln_value *const *)f.vals, self->n_out, outs, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r >= warmup) ms[r - warmup] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        for (size_t i = 0; i < self->n_out; i++) {
            kiln_value_free(outs[i]);
            outs[i] = NULL;
        }
    }
    Py_END_ALLOW_THREADS
    if (st) {
        kiln_py_raise(&err);
        goto done;
    }
    result = PyList_New(runs);
    for (int r = 0; result && r < runs; r++) {
        PyObject *x = PyFloat_FromDouble(ms[r]);
        if (!x) Py_CLEAR(result);
        else PyList_SET_ITEM(result, r, x);
    }
done:
    feed_free(&f);
    PyMem_Free(ms);
    PyMem_Free(outs);
    return result;
}

/* ------------------------------------------------------------------ queries */

static PyObject *type_text(const kiln_model *m, size_t i, int input)
{
    kiln_value_kind kind = input ? kiln_model_input_kind(m, i) : kiln_model_output_kind(m, i);
    kiln_dtype dt = input ? kiln_model_input_dtype(m, i) : kiln_model_output_dtype(m, i);
    char decl[64];
    (input ? kiln_model_input_type : kiln_model_output_type)(m, i, decl, sizeof decl);
    const char *el = kiln_py_onnx_type_name(dt);
    switch (kind) {
    case KILN_VALUE_TENSOR: return PyUnicode_FromFormat("tensor(%s)", el);
    case KILN_VALUE_SEQUENCE: return PyUnicode_FromFormat("seq(tensor(%s))", el);
    case KILN_VALUE_OPTIONAL:
        if (strncmp(decl, "optional(seq(", 13) == 0) return PyUnicode_FromFormat("optional(seq(tensor(%s)))", el);
        return PyUnicode_FromFormat("optional(tensor(%s))", el);
    }
    return PyUnicode_FromString("unknown");
}

static PyObject *shape_list(const kiln_model *m, size_t i, int input)
{
    kiln_value_kind kind = input ? kiln_model_input_kind(m, i) : kiln_model_output_kind(m, i);
    int rank = input ? kiln_model_input_rank(m, i) : kiln_model_output_rank(m, i);
    if (kind != KILN_VALUE_TENSOR || rank < 0) return PyList_New(0); /* as onnxruntime: [] */
    PyObject *l = PyList_New(rank);
    for (int d = 0; l && d < rank; d++) {
        const char *param = "";
        int64_t v = input ? kiln_model_input_dim(m, i, d, &param) : kiln_model_output_dim(m, i, d, &param);
        PyObject *x = v >= 0 ? PyLong_FromLongLong(v) : param && param[0] ? PyUnicode_FromString(param)
                                                                          : Py_NewRef(Py_None);
        if (!x) Py_CLEAR(l);
        else PyList_SET_ITEM(l, d, x);
    }
    return l;
}

/* [(name, type, shape, declared text)] of the inputs (input=1) or outputs. */
static PyObject *args_of(Session *self, int input)
{
    size_t n = input ? self->n_in : self->n_out;
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        const char *name = input ? kiln_model_input_name(self->m, i) : kiln_model_output_name(self->m, i);
        PyObject *t = Py_BuildValue("(sNN)", name, type_text(self->m, i, input), shape_list(self->m, i, input));
        if (!t) Py_CLEAR(l);
        else PyList_SET_ITEM(l, (Py_ssize_t)i, t);
    }
    return l;
}

static PyObject *session_inputs(Session *self, PyObject *unused)
{
    (void)unused;
    return ready(self) ? NULL : args_of(self, 1);
}

static PyObject *session_outputs(Session *self, PyObject *unused)
{
    (void)unused;
    return ready(self) ? NULL : args_of(self, 0);
}

static PyObject *session_meta(Session *self, PyObject *unused)
{
    (void)unused;
    if (ready(self)) return NULL;
    const kiln_model *m = self->m;
    PyObject *custom = PyDict_New();
    for (size_t i = 0; custom && i < kiln_model_metadata_count(m); i++) {
        const char *k, *v;
        kiln_model_metadata(m, i, &k, &v);
        PyObject *vs = PyUnicode_FromString(v);
        if (!vs || PyDict_SetItemString(custom, k, vs) < 0) Py_CLEAR(custom);
        Py_XDECREF(vs);
    }
    if (!custom) return NULL;
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:L,s:L,s:N}", "producer_name", kiln_model_producer(m),
                         "producer_version", kiln_model_producer_version(m), "graph_name",
                         kiln_model_graph_name(m), "domain", kiln_model_domain(m), "description",
                         kiln_model_doc(m), "version", (long long)kiln_model_version(m), "ir_version",
                         (long long)kiln_model_ir_version(m), "custom_metadata_map", custom);
}

static PyObject *session_write_trace(Session *self, PyObject *args)
{
    PyObject *p;
    if (ready(self) || !PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &p)) return NULL;
    kiln_err err = {0};
    kiln_status st = kiln_session_profile_write_trace(self->s, PyBytes_AS_STRING(p), &err);
    Py_DECREF(p);
    if (st) return kiln_py_raise(&err);
    kiln_session_profile_reset(self->s);
    Py_RETURN_NONE;
}

/* [dict(name, op_type, kernel, shapes, total_ms, calls, depth)] per node. */
static PyObject *session_profile(Session *self, PyObject *unused)
{
    (void)unused;
    if (ready(self)) return NULL;
    size_t n = kiln_session_profile_count(self->s);
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        kiln_profile_entry e;
        kiln_err err = {0};
        if (kiln_session_profile_entry(self->s, i, &e, &err)) {
            Py_DECREF(l);
            return kiln_py_raise(&err);
        }
        PyObject *d = Py_BuildValue("{s:s,s:s,s:s,s:s,s:d,s:K,s:i}", "name", e.name, "op_type", e.op_type, "kernel",
                                    e.kernel ? e.kernel : "", "shapes", e.shapes ? e.shapes : "", "total_ms",
                                    (double)e.total_ns * 1e-6, "calls", (unsigned long long)e.calls, "depth", e.depth);
        if (!d) Py_CLEAR(l);
        else PyList_SET_ITEM(l, (Py_ssize_t)i, d);
    }
    return l;
}

static PyObject *session_save_engine(Session *self, PyObject *args)
{
    PyObject *p;
    if (ready(self) || !PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &p)) return NULL;
    kiln_err err = {0};
    kiln_status st = kiln_engine_save(self->e, PyBytes_AS_STRING(p), &err);
    Py_DECREF(p);
    if (st) return kiln_py_raise(&err);
    Py_RETURN_NONE;
}

static PyObject *session_threads(Session *self, void *closure)
{
    (void)closure;
    return ready(self) ? NULL : PyLong_FromLong(kiln_session_threads(self->s));
}

static PyObject *session_profiling(Session *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->profile);
}

static PyMethodDef session_methods[] = {
    {"run", (PyCFunction)session_run, METH_VARARGS, "run(output_names, input_feed, run_options=None) -> list"},
    {"bench", (PyCFunction)session_bench, METH_VARARGS, "bench(input_feed, runs=100, warmup=10) -> per-run ms"},
    {"inputs", (PyCFunction)session_inputs, METH_NOARGS, "[(name, type, shape)] of the graph inputs"},
    {"outputs", (PyCFunction)session_outputs, METH_NOARGS, "[(name, type, shape)] of the graph outputs"},
    {"meta", (PyCFunction)session_meta, METH_NOARGS, "the model's metadata as a dict"},
    {"write_trace", (PyCFunction)session_write_trace, METH_VARARGS, "write_trace(path): the profile as a Chrome trace; resets it"},
    {"profile", (PyCFunction)session_profile, METH_NOARGS, "per-node profile entries"},
    {"save_engine", (PyCFunction)session_save_engine, METH_VARARGS, "save_engine(path): writes the engine file"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef session_getset[] = {
    {"threads", (getter)session_threads, NULL, "threads a run uses", NULL},
    {"profiling", (getter)session_profiling, NULL, "whether the session profiles its runs", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject kiln_py_session_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kiln._kiln.Session",
    .tp_basicsize = sizeof(Session),
    .tp_dealloc = (destructor)session_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A kiln session (an engine and a session on it); use kiln.InferenceSession.",
    .tp_methods = session_methods,
    .tp_getset = session_getset,
    .tp_init = (initproc)session_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ run options */

static int run_options_init(kiln_py_run_options *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) return -1;
    if (self->ro) return 0;
    kiln_err err = {0};
    if (kiln_run_options_create(&self->ro, &err)) {
        kiln_py_raise(&err);
        return -1;
    }
    return 0;
}

static void run_options_dealloc(kiln_py_run_options *self)
{
    kiln_run_options_free(self->ro);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ro_get_terminate(kiln_py_run_options *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->ro && kiln_run_options_cancelled(self->ro));
}

static int ro_set_terminate(kiln_py_run_options *self, PyObject *v, void *closure)
{
    (void)closure;
    int t = v ? PyObject_IsTrue(v) : 0;
    if (t < 0 || !self->ro) return -1;
    if (t) kiln_run_options_cancel(self->ro);
    else kiln_run_options_reset(self->ro);
    return 0;
}

static PyObject *ro_get_timeout(kiln_py_run_options *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(self->timeout);
}

static int ro_set_timeout(kiln_py_run_options *self, PyObject *v, void *closure)
{
    (void)closure;
    double t = v ? PyFloat_AsDouble(v) : 0;
    if (t == -1 && PyErr_Occurred()) return -1;
    if (!self->ro) return -1;
    kiln_err err = {0};
    if (kiln_run_options_set_timeout(self->ro, t, &err)) {
        kiln_py_raise(&err);
        return -1;
    }
    self->timeout = t;
    return 0;
}

static PyGetSetDef run_options_getset[] = {
    {"terminate", (getter)ro_get_terminate, (setter)ro_set_terminate,
     "True stops every run using these options (now or later) until set back to False", NULL},
    {"timeout", (getter)ro_get_timeout, (setter)ro_set_timeout, "seconds a run may take; 0 = none", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject kiln_py_run_options_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kiln._kiln.RunOptions",
    .tp_basicsize = sizeof(kiln_py_run_options),
    .tp_dealloc = (destructor)run_options_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "kiln run options: terminate (cancel) and timeout.",
    .tp_getset = run_options_getset,
    .tp_init = (initproc)run_options_init,
    .tp_new = PyType_GenericNew,
};
