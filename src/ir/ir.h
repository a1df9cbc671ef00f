/* ir.h: kiln's in-memory model: tensors, runtime values and the graph IR.
 *
 * The decoder (src/onnx) builds these from ONNX bytes; the checker (src/check) validates
 * them; the executor (src/exec) runs them. All IR memory (names, arrays, attribute data)
 * lives in the model's arena; initializer data points into the mapped file where its
 * alignment allows, else into the arena.
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "base/base.h"

/* Largest rank kiln accepts anywhere; a model or input exceeding it gets KILN_E_LIMIT. */
#define KILN_MAX_RANK 16
/* Largest element count of one tensor (2^40): anything larger is refused as hostile. */
#define KILN_MAX_NUMEL (UINT64_C(1) << 40)

/* ---------------------------------------------------------------------------- dtypes */

/* Bytes one element takes in memory (see kiln.h: sub-byte types take 1); 0 for
 * UNDEFINED and unknown values; sizeof(char *) for STRING. */
size_t kiln_dtype_size(kiln_dtype dt);
bool kiln_dtype_valid(int dt); /* a value of kiln_dtype other than UNDEFINED */
bool kiln_dtype_is_float(kiln_dtype dt); /* f16 bf16 f32 f64 and the float8/float4 types */
bool kiln_dtype_is_int(kiln_dtype dt);   /* signed or unsigned integer, any width */
bool kiln_dtype_is_signed(kiln_dtype dt);

/* Scalar conversions for the narrow float types (round to nearest even; NaN kept;
 * `saturate` as ONNX Cast's attribute). */
float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_f16(float f);
float kiln_bf16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float f);

/* ---------------------------------------------------------------------------- tensors */

enum {
    KILN_TENSOR_OWNS_DATA = 1u << 0,    /* data is kiln_malloc'd and freed with the tensor */
    KILN_TENSOR_OWNS_STRINGS = 1u << 1, /* each string is kiln_malloc'd, freed with it */
};

struct kiln_tensor {
    kiln_dtype dtype;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    void *data; /* numel * kiln_dtype_size(dtype) bytes; may be NULL when numel == 0 */
    unsigned flags;
};

/* Element count (product of dims; 1 for rank 0). */
size_t kiln_tensor_numel(const struct kiln_tensor *t);
size_t kiln_tensor_nbytes(const struct kiln_tensor *t);
/* Sets dtype/shape and allocates zero-filled owned data (string entries become ""). Fails
 * with KILN_E_LIMIT for rank > KILN_MAX_RANK or numel > KILN_MAX_NUMEL, KILN_E_INVALID_ARG
 * for negative dims. */
KILN_NODISCARD kiln_status kiln_tensor_alloc(struct kiln_tensor *t, kiln_dtype dt, int rank,
                                             const int64_t *dims, kiln_err *err);
/* kiln_tensor_alloc taking the data from `cache` (base/bcache.h) when it holds a block that
 * fits; cache may be NULL. zero: zero-filled; else the contents are unspecified (the caller
 * writes every element; string tensors are always initialized). */
struct kiln_bcache;
KILN_NODISCARD kiln_status kiln_tensor_alloc_cached(struct kiln_tensor *t, kiln_dtype dt, int rank,
                                                    const int64_t *dims, struct kiln_bcache *cache,
                                                    bool zero, kiln_err *err);
/* Deep copy into dst (which must be empty/fini'd). */
KILN_NODISCARD kiln_status kiln_tensor_copy(struct kiln_tensor *dst, const struct kiln_tensor *src,
                                            kiln_err *err);
/* Frees owned data and strings; leaves t zeroed. */
void kiln_tensor_fini(struct kiln_tensor *t);
/* Shape as text "[2,3,4]" into buf; returns buf. */
const char *kiln_shape_str(int rank, const int64_t *dims, char *buf, size_t size);

/* ---------------------------------------------------------------------------- runtime values */

/* A value at run time (graph inputs, outputs and every intermediate). kiln.h's kiln_value
 * is this struct. */
struct kiln_value {
    kiln_value_kind kind;
    struct kiln_tensor t; /* TENSOR */
    /* SEQUENCE: items[0..count) (each a TENSOR value, or nested); OPTIONAL: count 0 (none)
     * or 1. elem_dtype: element type of a sequence's tensors (known even when empty). */
    struct kiln_value **items;
    size_t count, cap;
    kiln_dtype elem_dtype;
    /* OPTIONAL only: the kind of the contained value (TENSOR or SEQUENCE), known even when
     * none. */
    kiln_value_kind elem_kind;
};

/* kiln_value_new_tensor taking its data from `cache` when it can (see kiln_tensor_alloc_cached). */
KILN_NODISCARD kiln_status kiln_value_new_tensor_cached(kiln_dtype dt, int rank, const int64_t *dims,
                                                        struct kiln_bcache *cache, bool zero,
                                                        struct kiln_value **out, kiln_err *err);
/* kiln_value_free, giving an owned non-string tensor's data to `cache` (may be NULL). */
void kiln_value_release(struct kiln_value *v, struct kiln_bcache *cache);
/* New empty values. kiln_value_new_tensor allocates like kiln_tensor_alloc. */
KILN_NODISCARD kiln_status kiln_value_new_tensor(kiln_dtype dt, int rank, const int64_t *dims,
                                                 struct kiln_value **out, kiln_err *err);
struct kiln_value *kiln_value_new(kiln_value_kind kind); /* NULL on NOMEM */
/* Appends `item` (ownership moves in, also on failure, where it is freed). */
KILN_NODISCARD kiln_status kiln_value_append(struct kiln_value *seq, struct kiln_value *item,
                                             kiln_err *err);
KILN_NODISCARD kiln_status kiln_value_clone(const struct kiln_value *v, struct kiln_value **out,
                                            kiln_err *err);

/* ---------------------------------------------------------------------------- graph IR */

struct kiln_graph;
struct kiln_model;

/* A dimension: value >= 0 is known; value == -1 is unknown, symbolic when param != NULL. */
struct kiln_dim {
    int64_t value;
    const char *param;
};

enum kiln_type_kind {
    KILN_TYPE_NONE = 0, /* no type given */
    KILN_TYPE_TENSOR,
    KILN_TYPE_SEQUENCE,
    KILN_TYPE_MAP,
    KILN_TYPE_OPTIONAL,
    KILN_TYPE_SPARSE_TENSOR,
};

/* A TypeProto. */
struct kiln_type {
    enum kiln_type_kind kind;
    kiln_dtype elem;          /* TENSOR/SPARSE_TENSOR: element type; MAP: key type */
    int rank;                 /* TENSOR: -1 when the shape is absent */
    struct kiln_dim *dims;    /* rank entries */
    struct kiln_type *inner;  /* SEQUENCE/OPTIONAL: element type; MAP: value type */
    const char *denotation;
};

struct kiln_value_info {
    const char *name;
    struct kiln_type type;
    const char *doc;
};

/* AttributeProto.AttributeType numbering. */
enum kiln_attr_type {
    KILN_ATTR_UNDEFINED = 0,
    KILN_ATTR_FLOAT = 1,
    KILN_ATTR_INT = 2,
    KILN_ATTR_STRING = 3,
    KILN_ATTR_TENSOR = 4,
    KILN_ATTR_GRAPH = 5,
    KILN_ATTR_FLOATS = 6,
    KILN_ATTR_INTS = 7,
    KILN_ATTR_STRINGS = 8,
    KILN_ATTR_TENSORS = 9,
    KILN_ATTR_GRAPHS = 10,
    KILN_ATTR_SPARSE_TENSOR = 11,
    KILN_ATTR_SPARSE_TENSORS = 12,
    KILN_ATTR_TYPE_PROTO = 13,
    KILN_ATTR_TYPE_PROTOS = 14,
};

/* A SparseTensorProto: values (1-D, NNZ) and indices (int64, [NNZ] linear or [NNZ, rank]). */
struct kiln_sparse_tensor {
    const char *name;
    struct kiln_tensor values, indices;
    int rank;
    int64_t dims[KILN_MAX_RANK];
};

struct kiln_attr {
    const char *name;
    const char *ref_attr_name; /* inside functions; NULL otherwise */
    const char *doc;
    enum kiln_attr_type type;
    float f;
    int64_t i;
    const char *s; /* NUL-terminated copy; s_len bytes (may contain NUL) */
    size_t s_len;
    struct kiln_tensor *t;
    struct kiln_graph *g;
    struct kiln_sparse_tensor *sp;
    struct kiln_type *tp;
    /* list types: n entries in the array matching the type */
    size_t n;
    float *floats;
    int64_t *ints;
    const char **strings;
    size_t *string_lens;
    struct kiln_tensor *tensors;
    struct kiln_graph **graphs;
    struct kiln_sparse_tensor *sparses;
    struct kiln_type *types;
    const char *t_name; /* TENSOR: the TensorProto's name ("" when absent), kept for writing */
};

struct kiln_node {
    const char *name;    /* "" when absent */
    const char *op_type;
    const char *domain;  /* "" for the default ai.onnx domain ("ai.onnx" is normalized to "") */
    const char *doc;
    size_t n_in, n_out, n_attr;
    const char **inputs;  /* "" marks an absent optional input */
    const char **outputs; /* "" marks an output that is not wanted */
    struct kiln_attr *attrs;
    /* Filled by kiln_graph_link: */
    int since;     /* op version selected by the model's opset import; 0 if unknown */
    int *in_ids;   /* value ids (kiln_graph.values); -1 for absent */
    int *out_ids;
    /* Values of this graph that the node's subgraphs read from the outer scope (they order
     * the node after their producers and keep them alive while it runs). */
    size_t n_implicit;
    int *implicit_ids;
};

enum kiln_def_kind {
    KILN_DEF_NONE = 0,  /* never defined (an error the checker reports) */
    KILN_DEF_INPUT,     /* graph input */
    KILN_DEF_INIT,      /* initializer (also possibly declared as an input: a default) */
    KILN_DEF_NODE,      /* output of node `producer` */
    KILN_DEF_OUTER,     /* defined in an enclosing graph (subgraphs only) */
};

/* A value name in a graph, after linking. */
struct kiln_graph_value {
    const char *name;
    enum kiln_def_kind def;
    int producer;          /* node index for KILN_DEF_NODE, input index for KILN_DEF_INPUT,
                              initializer index for KILN_DEF_INIT, else -1 */
    int n_consumers;
    int *consumers;        /* node indices, in node order; a node consuming twice appears twice */
    const struct kiln_value_info *info; /* declared type (input, output or value_info) or NULL */
};

struct kiln_initializer {
    const char *name;
    const char *doc;
    struct kiln_tensor t; /* flags == 0: data borrowed from the mapping or the arena */
};

struct kiln_graph {
    const char *name;
    const char *doc;
    size_t n_nodes, n_inputs, n_outputs, n_value_info, n_inits, n_sparse_inits;
    struct kiln_node *nodes;
    struct kiln_value_info *inputs, *outputs, *value_info;
    struct kiln_initializer *inits;
    struct kiln_sparse_tensor *sparse_inits;
    struct kiln_graph *parent; /* enclosing graph for subgraphs; NULL for the main graph */
    struct kiln_model *model;
    /* Filled by kiln_graph_link: */
    size_t n_values;
    struct kiln_graph_value *values;
    int *order;      /* n_nodes node indices in topological order (valid if `acyclic`) */
    bool acyclic;
    bool sorted;     /* the file's node order is already topological */
    bool linked;
    /* Filled by shape inference (src/infer/infer.h), per value id; NULL until then and
     * after every relink. */
    struct kiln_vtype *vtypes;
    /* Value ids in the order kiln_model_value_name lists them (inputs, initializers, then
     * node outputs in topological order); filled with vtypes, valid while vtypes is. */
    int *vorder;
    size_t n_vorder;
    /* Filled by the optimizer's layout pass (level layout; src/opt/layout.h), per value id:
     * the memory layout the engine builder should give the value (a kiln_layout mark).
     * NULL when the pass has not run, and after every relink (ids change). Never written to
     * ONNX. */
    uint8_t *layout;
};

struct kiln_opset {
    const char *domain; /* "" for ai.onnx */
    int64_t version;
};

struct kiln_kv {
    const char *key, *value;
};

/* A model-local function (FunctionProto). */
struct kiln_function {
    const char *name, *domain, *overload, *doc;
    size_t n_in, n_out, n_attr_names, n_nodes, n_opsets;
    const char **inputs, **outputs, **attr_names;
    struct kiln_node *nodes;
    struct kiln_opset *opsets;
};

struct kiln_model {
    struct kiln_arena arena;
    /* Shape inference results (src/infer: vtypes, symbols, folded constants); each run
     * builds a new one and frees the last, so re-inferring does not grow the model. */
    struct kiln_arena infer_arena;
    struct kiln_mapping map;       /* the model file (kept mapped: weights point into it) */
    size_t n_ext;                  /* external data files, mapped */
    struct kiln_mapping *ext;
    const char *dir;               /* folder of the model file, for external data; may be NULL */
    /* An engine file's weight section (src/engine/file.c): external data at location
     * KILN_ENGINE_DATA_LOCATION resolves into it; NULL otherwise. Owned by the engine. */
    const uint8_t *engine_data;
    size_t engine_data_len;
    int64_t ir_version, model_version;
    const char *producer_name, *producer_version, *domain, *doc;
    size_t n_opsets, n_meta, n_functions;
    struct kiln_opset *opsets;
    struct kiln_kv *meta;
    struct kiln_function *functions;
    struct kiln_graph *graph;
    /* Structural problems found by kiln_model_link (undefined/doubly defined values,
     * cycles), one message each; the checker reports them, sessions refuse to start. */
    size_t n_link_problems;
    const char **link_problems;
    size_t n_link_errors; /* of those, the ones that make the graph unrunnable (all but
                             "not topologically sorted in the file") */
};

/* Links the main graph (kiln_graph_link) and records its problems in m->link_problems.
 * Called by the loader after decoding. Fails only on NOMEM. */
KILN_NODISCARD kiln_status kiln_model_link(struct kiln_model *m, kiln_err *err);

/* The opset version imported for `domain` ("" / "ai.onnx" are the same), or -1. */
int64_t kiln_model_opset_for(const struct kiln_model *m, const char *domain);

/* Builds values/consumers/ids/order for g and every subgraph (recursively), resolving each
 * node's `since` through the op schema table. Never fails on a bad graph: problems
 * (undefined or doubly defined values, cycles) are reported through `problem` when it is
 * not NULL and counted in *n_problems. Fails only on NOMEM. */
KILN_NODISCARD kiln_status kiln_graph_link(struct kiln_graph *g, kiln_problem_fn problem,
                                           void *user, size_t *n_problems, kiln_err *err);
/* Finds a value by name in g (not in enclosing graphs); -1 if absent. */
int kiln_graph_find(const struct kiln_graph *g, const char *name);

/* Whether `name` is an initializer (dense or sparse) of g: a graph input with that name
 * has a default and need not be bound. O(1) once g is linked (hash lookup), else a scan. */
bool kiln_graph_is_initializer(const struct kiln_graph *g, const char *name);

/* Attribute lookup on a node; NULL when absent. */
const struct kiln_attr *kiln_node_attr(const struct kiln_node *n, const char *name);

/* "OpType node 'name'" (or "OpType node #i" when unnamed) into buf; returns buf. */
const char *kiln_node_label(const struct kiln_node *n, char *buf, size_t size);

/* Declared type as text (see kiln_model_input_type). */
size_t kiln_type_str(const struct kiln_type *t, char *buf, size_t size);

#endif /* KILN_IR_H */
