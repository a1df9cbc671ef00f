/* kiln.h: the public C API of kiln, an ONNX inference engine.
 *
 * This is the only public header. Handles are opaque. Every fallible function returns a
 * kiln_status and, when given a kiln_err, fills it with a one-line message that names what
 * is wrong (node, op type, tensor, expected versus got). The library never calls exit() or
 * abort() on bad input.
 *
 * Ownership: a function that creates an object says so ("free it with ..."). Strings and
 * arrays returned by query functions belong to the object they were queried from and live
 * as long as it does.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The shared library exports exactly the declarations of this header (it is built with
 * -fvisibility=hidden). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0

#if defined(__GNUC__)
#define KILN_NODISCARD __attribute__((warn_unused_result))
#else
#define KILN_NODISCARD
#endif

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_E_INVALID_MODEL, /* the file is malformed or violates the ONNX spec */
    KILN_E_UNSUPPORTED,   /* valid ONNX that kiln does not implement (op, opset, dtype, attr) */
    KILN_E_INVALID_ARG,   /* bad API use: wrong input name/shape/dtype at run time */
    KILN_E_NOMEM,
    KILN_E_IO,
    KILN_E_LIMIT,    /* a configured cap was hit (model size, rank, element count, run timeout) */
    KILN_E_DEVICE,   /* CUDA or driver error */
    KILN_E_INTERNAL, /* a bug in kiln; the message says where */
    KILN_E_CANCELLED, /* the run was stopped by kiln_run_options_cancel */
} kiln_status;

/* Error details. Pass one to any function taking `kiln_err *` (NULL is allowed and
 * discards the message). On failure `msg` holds one line without a trailing newline. */
typedef struct kiln_err {
    kiln_status status;
    char msg[1024];
} kiln_err;

/* A short constant name for a status ("invalid model", "out of memory", ...). */
const char *kiln_status_name(kiln_status st);

/* The version of the kiln library running ("0.1.0"); compare with KILN_VERSION_* to detect
 * a header/library mismatch. */
const char *kiln_version(void);

/* The instruction-set level kiln's CPU kernels run with in this process: "avx512", "avx2" or
 * "portable" (plain C). The best the CPU supports, unless the environment variable
 * KILN_CPU_ISA names a lower one (a higher one is capped); chosen once, at the first use. */
const char *kiln_cpu_isa(void);

/* Element types, numbered as onnx.proto's TensorProto.DataType. */
typedef enum kiln_dtype {
    KILN_DTYPE_UNDEFINED = 0,
    KILN_DTYPE_F32 = 1,
    KILN_DTYPE_U8 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_U16 = 4,
    KILN_DTYPE_I16 = 5,
    KILN_DTYPE_I32 = 6,
    KILN_DTYPE_I64 = 7,
    KILN_DTYPE_STRING = 8,
    KILN_DTYPE_BOOL = 9,
    KILN_DTYPE_F16 = 10,
    KILN_DTYPE_F64 = 11,
    KILN_DTYPE_U32 = 12,
    KILN_DTYPE_U64 = 13,
    KILN_DTYPE_C64 = 14,
    KILN_DTYPE_C128 = 15,
    KILN_DTYPE_BF16 = 16,
    KILN_DTYPE_F8E4M3FN = 17,
    KILN_DTYPE_F8E4M3FNUZ = 18,
    KILN_DTYPE_F8E5M2 = 19,
    KILN_DTYPE_F8E5M2FNUZ = 20,
    KILN_DTYPE_U4 = 21,
    KILN_DTYPE_I4 = 22,
    KILN_DTYPE_F4E2M1 = 23,
    KILN_DTYPE_F8E8M0 = 24,
    KILN_DTYPE_U2 = 25,
    KILN_DTYPE_I2 = 26,
    KILN_DTYPE_COUNT_
} kiln_dtype;

/* "float32", "int64", "float8e4m3fn", ... ; "undefined" for unknown values. */
const char *kiln_dtype_name(kiln_dtype dt);

/* ------------------------------------------------------------------------------------------
 * Values: tensors, sequences of tensors and optionals, as graph inputs and outputs.
 *
 * In memory every element takes whole bytes: float16/bfloat16 take 2, the float8 types 1,
 * and the 4-bit and 2-bit types are unpacked to one byte per element (sign-extended for
 * int4/int2). A string tensor's data is an array of `char *`, each NUL-terminated.
 * ---------------------------------------------------------------------------------------- */
typedef struct kiln_value kiln_value;

typedef enum kiln_value_kind {
    KILN_VALUE_TENSOR = 1,
    KILN_VALUE_SEQUENCE = 2,
    KILN_VALUE_OPTIONAL = 3,
} kiln_value_kind;

/* On KILN_OK, *out is a new tensor value with zero-filled data (empty strings for
 * KILN_DTYPE_STRING); free it with kiln_value_free(). dims may be NULL when rank is 0. */
KILN_NODISCARD kiln_status kiln_value_create_tensor(kiln_dtype dt, int rank, const int64_t *dims,
                                                    kiln_value **out, kiln_err *err);
void kiln_value_free(kiln_value *v); /* NULL is fine */

/* A tensor value that borrows `data` instead of owning a copy (zero-copy inputs, e.g. from
 * language bindings): `bytes` must equal numel times the element size (for
 * KILN_DTYPE_STRING: numel * sizeof(char *), an array of NUL-terminated strings, also
 * borrowed). data may be NULL only when bytes is 0. The memory must stay valid and unchanged
 * while the value is in use; kiln_value_free frees the value only, never `data`. Runs read
 * inputs in place and never write them. KILN_E_INVALID_ARG for a bad dtype, a negative dim
 * or a size mismatch; KILN_E_LIMIT beyond rank 16 or the element limit. */
KILN_NODISCARD kiln_status kiln_value_wrap_tensor(kiln_dtype dt, int rank, const int64_t *dims,
                                                  void *data, size_t bytes, kiln_value **out,
                                                  kiln_err *err);
/* A new empty sequence whose tensors have element type elem_dtype; free it with
 * kiln_value_free (which frees its items). */
KILN_NODISCARD kiln_status kiln_value_create_sequence(kiln_dtype elem_dtype, kiln_value **out,
                                                      kiln_err *err);
/* Appends tensor `item` to sequence `seq`; ownership of item moves into seq, also on failure
 * (where it is freed). KILN_E_INVALID_ARG when seq is not a sequence, item not a tensor, or
 * its element type is not the sequence's. */
KILN_NODISCARD kiln_status kiln_value_sequence_append(kiln_value *seq, kiln_value *item,
                                                      kiln_err *err);

kiln_value_kind kiln_value_kind_of(const kiln_value *v);
/* Tensor queries; valid for KILN_VALUE_TENSOR only. */
kiln_dtype kiln_value_dtype(const kiln_value *v);
int kiln_value_rank(const kiln_value *v);
const int64_t *kiln_value_dims(const kiln_value *v);
size_t kiln_value_numel(const kiln_value *v);
void *kiln_value_data(kiln_value *v);
/* Sequence queries: element count and element i (borrowed); for an optional, count is 0
 * (none) or 1 and element 0 is the contained value. elem_dtype is the declared element
 * type of a sequence (useful when it is empty). */
size_t kiln_value_count(const kiln_value *v);
const kiln_value *kiln_value_item(const kiln_value *v, size_t i);
kiln_dtype kiln_value_elem_dtype(const kiln_value *v);

/* Reads a value from a file: a NumPy array (.npy, by its magic bytes) or else an ONNX
 * TensorProto, SequenceProto or OptionalProto. `kind` says which protobuf message the file
 * holds (the wire format cannot tell a one-element sequence from an optional); 0 guesses
 * (TensorProto unless the bytes only parse as a SequenceProto). On KILN_OK *out is new;
 * free it with kiln_value_free(). */
KILN_NODISCARD kiln_status kiln_value_read_file(const char *path, kiln_value_kind kind,
                                                kiln_value **out, kiln_err *err);
/* Writes v as a TensorProto / SequenceProto / OptionalProto (the layout of the ONNX test
 * data), named `name` (may be NULL). Writes to a temporary file and renames, so a failure
 * leaves nothing half-written. */
KILN_NODISCARD kiln_status kiln_value_write_pb(const kiln_value *v, const char *name,
                                               const char *path, kiln_err *err);
/* Writes a tensor value as NumPy .npy (version 1.0); sequences are refused. */
KILN_NODISCARD kiln_status kiln_value_write_npy(const kiln_value *v, const char *path, kiln_err *err);

/* ------------------------------------------------------------------------------------------
 * Models
 * ---------------------------------------------------------------------------------------- */
typedef struct kiln_model kiln_model;

/* Loads an ONNX model file. The file is memory-mapped and weights point into the mapping;
 * external data is resolved relative to the model's folder. On KILN_OK *out is a new model;
 * free it with kiln_model_free(). A model that loads may still fail kiln_model_check().
 * A model importing an opset newer than kiln knows for a domain kiln covers (ai.onnx,
 * ai.onnx.ml, ai.onnx.preview.training, ...) is refused with KILN_E_UNSUPPORTED: "model
 * 'm.onnx' imports opset ai.onnx 999; kiln knows ai.onnx up to 28"; so is creating a session
 * for one (a model changed through the API). Other domains are not judged. */
KILN_NODISCARD kiln_status kiln_model_load_file(const char *path, kiln_model **out, kiln_err *err);
/* Loads a model from memory (copied; external data is resolved relative to `dir`, which
 * may be NULL to refuse external data). */
KILN_NODISCARD kiln_status kiln_model_load_buffer(const void *buf, size_t len, const char *dir,
                                                  kiln_model **out, kiln_err *err);
void kiln_model_free(kiln_model *m); /* NULL is fine */

/* Validates the model (graph structure, ops against the imported opsets, attributes,
 * declarations) and, when the structure is sound, infers shapes and reports contradictions
 * with the declared types (see kiln_model_infer_shapes). Calls `problem` once per problem
 * found, with a one-line message; returns the number of problems (0 = valid). `problem` may
 * be NULL. The inferred types are kept in the model (its inference results replace earlier
 * ones), so do not check a model while another thread checks, optimizes or creates a session
 * on it. */
typedef void (*kiln_problem_fn)(void *user, const char *message);
size_t kiln_model_check(const kiln_model *m, kiln_problem_fn problem, void *user);

/* Model metadata. Strings are never NULL ("" when absent). */
int64_t kiln_model_ir_version(const kiln_model *m);
int64_t kiln_model_version(const kiln_model *m);
const char *kiln_model_producer(const kiln_model *m);         /* producer_name */
const char *kiln_model_producer_version(const kiln_model *m);
const char *kiln_model_domain(const kiln_model *m);
const char *kiln_model_doc(const kiln_model *m);
const char *kiln_model_graph_name(const kiln_model *m);
size_t kiln_model_opset_count(const kiln_model *m);
void kiln_model_opset(const kiln_model *m, size_t i, const char **domain, int64_t *version);
size_t kiln_model_metadata_count(const kiln_model *m);
void kiln_model_metadata(const kiln_model *m, size_t i, const char **key, const char **value);

/* Graph inputs (initializers excluded) and outputs, in declaration order. */
size_t kiln_model_input_count(const kiln_model *m);
size_t kiln_model_output_count(const kiln_model *m);
const char *kiln_model_input_name(const kiln_model *m, size_t i);
const char *kiln_model_output_name(const kiln_model *m, size_t i);
/* The declared kind (tensor, sequence, optional); 0 when the type is missing or a map. */
kiln_value_kind kiln_model_input_kind(const kiln_model *m, size_t i);
kiln_value_kind kiln_model_output_kind(const kiln_model *m, size_t i);
/* The declared type as text: "float32[N,3,224,224]", "seq(int64[?])", "optional(...)",
 * "?" for an unknown dim, "unknown" for a missing type. Returns the length it needed
 * (snprintf-style). */
size_t kiln_model_input_type(const kiln_model *m, size_t i, char *buf, size_t size);
size_t kiln_model_output_type(const kiln_model *m, size_t i, char *buf, size_t size);
/* The same declared types, structured. For a sequence or optional they describe the tensor
 * type inside (seq(float32[N,3]) gives float32, rank 2). dtype: KILN_DTYPE_UNDEFINED when
 * unknown, not a tensor inside, or i out of range. rank: -1 when no shape is declared (or
 * out of range). dim: the size (>= 0), or -1 when symbolic or unknown, or d out of range;
 * *param (when param is not NULL) gets the symbolic name, "" when there is none. */
kiln_dtype kiln_model_input_dtype(const kiln_model *m, size_t i);
kiln_dtype kiln_model_output_dtype(const kiln_model *m, size_t i);
int kiln_model_input_rank(const kiln_model *m, size_t i);
int kiln_model_output_rank(const kiln_model *m, size_t i);
int64_t kiln_model_input_dim(const kiln_model *m, size_t i, int d, const char **param);
int64_t kiln_model_output_dim(const kiln_model *m, size_t i, int d, const char **param);

/* Nodes of the main graph, in file order. */
size_t kiln_model_node_count(const kiln_model *m);
void kiln_model_node(const kiln_model *m, size_t i, const char **name, const char **op_type,
                     const char **domain);
/* Parameters: number of initializer elements and their bytes in memory (main graph). */
void kiln_model_params(const kiln_model *m, uint64_t *count, uint64_t *bytes);

/* ------------------------------------------------------------------------------------------
 * Compile stage, part 1: shape inference, the graph optimizer, the ONNX writer, opset
 * conversion and drawing. These functions change or read the model in place; a session
 * created afterwards runs the changed graph.
 * ---------------------------------------------------------------------------------------- */

/* Fixes graph input `name` to a concrete shape (rank dims, each >= 0), replacing its
 * declared dims (symbolic or not). The element type is kept. Fails with KILN_E_INVALID_ARG
 * when there is no such input or the shape contradicts a known declared dim. */
KILN_NODISCARD kiln_status kiln_model_set_input_shape(kiln_model *m, const char *name, int rank,
                                                      const int64_t *dims, kiln_err *err);

/* Infers the type and shape of every value of every graph (docs/shape-inference.md).
 * Symbolic dims are carried through arithmetic ("N", "seq+1", "8*N"); outputs whose shape
 * depends on data get fresh unknown dims. A contradiction between a declared type
 * (value_info, graph outputs) and the inferred one is a problem reported by
 * kiln_model_check, not a failure here; this fails only on NOMEM or a model that does not
 * link. Run by kiln_model_check and kiln_model_optimize; calling it again re-infers. */
KILN_NODISCARD kiln_status kiln_model_infer_shapes(kiln_model *m, kiln_err *err);

/* Values of the main graph with their inferred types, in topological order (inputs and
 * initializers first); valid after kiln_model_infer_shapes until the model changes. The
 * type text is as kiln_model_input_type writes it ("float32[N,seq+1,768]"), with "?" for
 * unknown dims; data-dependent values end in " (data-dependent)". */
size_t kiln_model_value_count(const kiln_model *m);
const char *kiln_model_value_name(const kiln_model *m, size_t i);
size_t kiln_model_value_type(const kiln_model *m, size_t i, char *buf, size_t size);

typedef enum kiln_opt_level {
    KILN_OPT_NONE = 0,
    KILN_OPT_BASIC = 1,    /* constant folding, dead code, CSE, no-op removal */
    KILN_OPT_EXTENDED = 2, /* + BatchNorm folding, fusions (bias, activations, LayerNorm, GELU, attention) */
    KILN_OPT_LAYOUT = 3,   /* + layout marks for the engine builder (the ONNX is unchanged by them) */
} kiln_opt_level;

typedef struct kiln_optimize_options {
    kiln_opt_level level;
    /* Comma-separated pass names to run instead of the level's list (docs/optimizer.md);
     * NULL runs the level's. */
    const char *passes;
    /* Nonzero: fusions may produce kiln's own ops (domain "kiln"). Zero: the result uses
     * standard ONNX operators only, and fusions that need a kiln op are skipped. */
    int keep_fused;
    /* Constant folding leaves a node alone when its outputs would take more than this many
     * bytes beyond its inputs (so folding never bloats a model); 0 = the default, 1 MiB. */
    size_t fold_limit_bytes;
    /* Called with one line per change and per pass summary (node counts and op histogram
     * before and after, what fused into what); may be NULL. */
    kiln_problem_fn report;
    void *report_user;
} kiln_optimize_options;

/* Rewrites the model's graphs (and subgraphs) with the level's passes, run to a fixed
 * point; outputs stay equal within float rounding. opt may be NULL (extended, keep_fused). */
KILN_NODISCARD kiln_status kiln_model_optimize(kiln_model *m, const kiln_optimize_options *opt,
                                               kiln_err *err);

typedef struct kiln_save_options {
    /* Initializers of at least this many bytes go to an external data file next to the
     * model; 0 keeps every tensor inside the model (which protobuf limits to 2 GB). */
    size_t external_data_threshold;
    /* The external data file's name, relative to the model's folder; NULL gives
     * "<model file name>.data". */
    const char *external_data_name;
} kiln_save_options;

/* Writes the model as ONNX (names, metadata, doc strings and functions kept). Writes to
 * temporary files and renames, so a failure leaves nothing half-written. opt may be NULL. */
KILN_NODISCARD kiln_status kiln_model_save(const kiln_model *m, const char *path,
                                           const kiln_save_options *opt, kiln_err *err);
/* The model as ONNX bytes in a new buffer (external data is not used); free *buf with
 * kiln_buffer_free. */
KILN_NODISCARD kiln_status kiln_model_save_buffer(const kiln_model *m, void **buf, size_t *len,
                                                  kiln_err *err);
void kiln_buffer_free(void *buf);

/* Converts the model's default-domain opset to `opset` (7 up to the newest kiln knows),
 * rewriting the nodes whose signature changed. Fails with KILN_E_UNSUPPORTED naming the
 * first node that has no faithful conversion, leaving the model unchanged. */
KILN_NODISCARD kiln_status kiln_model_convert_opset(kiln_model *m, int64_t opset, kiln_err *err);

typedef enum kiln_draw_format {
    KILN_DRAW_SVG = 1,
    KILN_DRAW_HTML = 2, /* the SVG inside a standalone page with pan and zoom */
    KILN_DRAW_DOT = 3,  /* Graphviz source */
} kiln_draw_format;

/* Draws the main graph (subgraphs as clusters) to `path`: one box per node with its op
 * type and main attributes, inferred shapes on the edges, initializers folded into their
 * consumers. Needs kiln built with Graphviz for SVG and HTML (KILN_E_UNSUPPORTED otherwise). */
KILN_NODISCARD kiln_status kiln_model_draw(const kiln_model *m, const char *path,
                                           kiln_draw_format fmt, kiln_err *err);

/* ------------------------------------------------------------------------------------------
 * Sessions: run a model on the CPU.
 * ---------------------------------------------------------------------------------------- */
typedef struct kiln_session kiln_session;

typedef struct kiln_session_options {
    /* Threads a run may use, the calling thread included: 0 = one per CPU this process may
     * run on (sched_getaffinity), 1 = the calling thread only, up to 1024. The session keeps
     * threads - 1 worker threads, idle between runs. Large GEMMs (MatMul, Gemm, Conv) are
     * split across them; other kernels run on the calling thread. */
    int threads;
    /* 1: time every node of every run (kiln_session_profile_*); 0 (the default): off, which
     * costs one predictable branch per node. Zero-initialize the struct, so that fields
     * appended later keep their defaults. */
    int profile;
    /* Limits, each 0 for none. A run that would exceed one fails with KILN_E_LIMIT and a
     * message naming the node and the limit. max_tensor_bytes: the largest tensor a kernel
     * may allocate; max_memory_bytes: the planned arena of intermediate tensors (checked
     * when a run's shapes are planned); max_depth: how deep subgraphs (If, Loop, Scan) may
     * nest (0: 64). */
    uint64_t max_tensor_bytes;
    uint64_t max_memory_bytes;
    int max_depth;
} kiln_session_options;

/* A session is an engine built at level KILN_OPT_NONE (the model as given, kernels
 * prepared, memory planned) and one execution context: kiln_session_create is
 * kiln_builder_build without optimization, and kiln_session_run is kiln_context_run. A
 * session keeps its arena of planned intermediates between runs and the memory of the
 * unplanned ones it freed (blocks of 64 KiB and more, up to 4 GiB in all), so repeated runs
 * allocate no tensor memory (only small per-run bookkeeping); kiln_session_free releases it. Creating a session runs shape inference
 * on `m` (kiln_model_infer_shapes), so do not use `m` from another thread meanwhile.
 *
 * On KILN_OK *out is a new session that borrows `m` (keep the model alive until the
 * session is freed); free it with kiln_session_free(). Fails with KILN_E_UNSUPPORTED naming
 * the first node whose op has no kernel. `opt` may be NULL. */
KILN_NODISCARD kiln_status kiln_session_create(const kiln_model *m, const kiln_session_options *opt,
                                               kiln_session **out, kiln_err *err);
void kiln_session_free(kiln_session *s); /* NULL is fine */
/* The threads a run of s uses, the calling one included (options.threads 0 resolved). */
int kiln_session_threads(const kiln_session *s);

/* Runs the graph. inputs[i] binds to graph input names[i] (names may be NULL to bind by
 * position, in kiln_model_input_name order). Every graph input must be bound, with the
 * declared element type and a shape that agrees with the declared one (symbolic dims bind
 * to any size), else KILN_E_INVALID_ARG before anything runs. On KILN_OK outputs[0..n_out)
 * receive new values in graph output order (n_out must equal kiln_model_output_count);
 * free each with kiln_value_free(). Inputs are not modified. */
KILN_NODISCARD kiln_status kiln_session_run(kiln_session *s, size_t n_in, const char *const *names,
                                            const kiln_value *const *inputs, size_t n_out,
                                            kiln_value **outputs, kiln_err *err);

/* Run options: a timeout and a cancel flag for kiln_session_run_with_options.
 *
 * The executor checks them before every node of every graph and subgraph, and before every
 * iteration of Loop and Scan (and of the other ops that run a subgraph per element), so a
 * run stops within about one node's time of the deadline or of the cancel: a single long
 * kernel (one huge MatMul) is not interrupted. A stopped run frees every value it made,
 * leaves outputs[] NULL and fails with
 *   KILN_E_LIMIT      "run exceeded its timeout of 2 s at Loop node 'x' iteration 12345"
 *   KILN_E_CANCELLED  "run cancelled at Add node 'y'"
 * The session stays usable. */
typedef struct kiln_run_options kiln_run_options;

/* A new set of run options: no timeout, not cancelled. Free with kiln_run_options_free. */
KILN_NODISCARD kiln_status kiln_run_options_create(kiln_run_options **out, kiln_err *err);
/* NULL is fine. Must not be called while a run uses `ro`. */
void kiln_run_options_free(kiln_run_options *ro);
/* The longest a run with these options may take, in seconds, counted from the start of each
 * kiln_session_run_with_options (monotonic clock); 0 = no timeout (the default). Negative,
 * NaN or infinite values are KILN_E_INVALID_ARG. Set it before the run, not during one. */
KILN_NODISCARD kiln_status kiln_run_options_set_timeout(kiln_run_options *ro, double seconds,
                                                        kiln_err *err);
/* Asks every run using `ro`, now or later, to stop: the flag stays set until
 * kiln_run_options_reset. Thread-safe and lock-free (one atomic store), so it may be called
 * from any thread, or from a signal handler, while a run is in progress. */
void kiln_run_options_cancel(kiln_run_options *ro);
/* Clears the cancel flag (atomic), so that `ro` can serve the next run. */
void kiln_run_options_reset(kiln_run_options *ro);
/* 1 when kiln_run_options_cancel was called since the last reset (atomic read). */
int kiln_run_options_cancelled(const kiln_run_options *ro);

/* kiln_session_run under run options `ro` (NULL: none, the same as kiln_session_run). The
 * options are only read, so one `ro` may serve several runs at once, on one session or
 * several; a cancel then stops them all. */
KILN_NODISCARD kiln_status kiln_session_run_with_options(kiln_session *s, const kiln_run_options *ro,
                                                         size_t n_in, const char *const *names,
                                                         const kiln_value *const *inputs,
                                                         size_t n_out, kiln_value **outputs,
                                                         kiln_err *err);

/* ------------------------------------------------------------------------------------------
 * Engines: build once (optimize, prepare kernels, plan memory), save, load in milliseconds,
 * run from many threads.
 *
 *   kiln_builder  configuration + kiln_builder_build(model) -> kiln_engine
 *   kiln_engine   immutable and shared; kiln_engine_save / kiln_engine_load (engine files,
 *                 docs/engine-format.md)
 *   kiln_context  one per thread: an arena of planned intermediates and per-run state;
 *                 kiln_context_run (blocking) and kiln_context_enqueue (asynchronous)
 *
 * Thread safety: builders are used by one thread at a time. An engine is immutable: any
 * number of threads may create contexts on it and query it at once. A context runs one
 * thing at a time (one kiln_context_run, or the queue of its enqueued runs); use one context
 * per thread. The engine stays alive while contexts use it, so kiln_engine_free may come
 * before the contexts' kiln_context_free.
 * ---------------------------------------------------------------------------------------- */
typedef struct kiln_builder kiln_builder;
typedef struct kiln_engine kiln_engine;
typedef struct kiln_context kiln_context;

/* Precisions a builder may choose per node (a mask). fp32 is what kiln computes in today;
 * the others are accepted for engines to come and refused now with KILN_E_UNSUPPORTED. */
typedef enum kiln_precision {
    KILN_PRECISION_FP32 = 1,
    KILN_PRECISION_FP16 = 2,
    KILN_PRECISION_BF16 = 4,
    KILN_PRECISION_INT8 = 8,
} kiln_precision;

/* A builder with the defaults: device "cpu", fp32, KILN_OPT_EXTENDED with fused ops,
 * threads 0 (one per CPU), no memory limit, no profiles, no tuning. */
KILN_NODISCARD kiln_status kiln_builder_create(kiln_builder **out, kiln_err *err);
void kiln_builder_free(kiln_builder *b); /* NULL is fine */
/* The device the engine runs on: "cpu" (a backend name; nodes it cannot run fall back to
 * the CPU, listed in the build log). KILN_E_UNSUPPORTED for a backend this kiln lacks. */
KILN_NODISCARD kiln_status kiln_builder_set_device(kiln_builder *b, const char *device, kiln_err *err);
/* The precisions allowed (kiln_precision bits); must include KILN_PRECISION_FP32 today. */
KILN_NODISCARD kiln_status kiln_builder_set_precisions(kiln_builder *b, unsigned mask, kiln_err *err);
void kiln_builder_set_opt_level(kiln_builder *b, kiln_opt_level level);
/* Threads per context (0: one per CPU, 1 to 1024). */
KILN_NODISCARD kiln_status kiln_builder_set_threads(kiln_builder *b, int threads, kiln_err *err);
/* The most bytes of planned intermediates a profile may need (0: no limit); the build fails
 * with KILN_E_LIMIT naming the profile when its plan needs more. */
void kiln_builder_set_memory_limit(kiln_builder *b, uint64_t bytes);
/* 1: kernels with several variants time them on each node's shapes (the first profile's
 * opt shapes) and keep the fastest; the choice is saved in the engine. */
void kiln_builder_set_tune(kiln_builder *b, int tune);
/* Run-time limits of the engine's contexts (see kiln_session_options). */
void kiln_builder_set_limits(kiln_builder *b, uint64_t max_tensor_bytes, uint64_t max_memory_bytes,
                             int max_depth);
/* The build log: one line per event (fallback nodes, each profile's planned memory, each
 * node's kernel when verbose is 1). */
void kiln_builder_set_log(kiln_builder *b, kiln_problem_fn log, void *user, int verbose);
/* Adds input `input`'s bounds to profile `profile` (created on first use; profiles are
 * tried in the order created). min <= opt <= max per dim, each rank entries; a dim the
 * model fixes must be that value. A run whose inputs no profile admits fails with
 * KILN_E_INVALID_ARG naming the input, dim and bounds. Inputs a profile leaves out are
 * not constrained by it. */
KILN_NODISCARD kiln_status kiln_builder_add_profile(kiln_builder *b, const char *profile, const char *input,
                                                    int rank, const int64_t *min, const int64_t *opt,
                                                    const int64_t *max, kiln_err *err);
/* Builds an engine for m (m is not changed: the builder optimizes its own copy, which
 * limits m to what fits one protobuf, 2 GB; use kiln_builder_build_file for larger ones).
 * *out: free with kiln_engine_free. */
KILN_NODISCARD kiln_status kiln_builder_build(kiln_builder *b, const kiln_model *m, kiln_engine **out,
                                              kiln_err *err);
/* Loads the model at path (external data and all) and builds an engine owning it. */
KILN_NODISCARD kiln_status kiln_builder_build_file(kiln_builder *b, const char *path, kiln_engine **out,
                                                   kiln_err *err);

void kiln_engine_free(kiln_engine *e); /* NULL is fine; contexts keep it alive */
/* Writes an engine file (written to a temporary file and renamed: nothing half-written). */
KILN_NODISCARD kiln_status kiln_engine_save(const kiln_engine *e, const char *path, kiln_err *err);
/* Maps an engine file. Refuses, naming what differs, a file that is not an engine, one
 * written by another kiln version, one built for CPU features this CPU lacks, and one whose
 * header or graph checksum does not match. The weights' checksum is checked by
 * kiln_engine_verify (reading every byte; loading does not, to stay in milliseconds). The
 * prepacked weights of a large engine (16 MB or more) are copied into memory in huge pages,
 * which the runs stream faster than the file's page-cache pages (tens of milliseconds more
 * per 100 MB; KILN_ENGINE_BLOBS=map in the environment keeps them mapped, shared between
 * processes; docs/engine-format.md). */
KILN_NODISCARD kiln_status kiln_engine_load(const char *path, kiln_engine **out, kiln_err *err);
/* Checks every checksum of an engine file, weights included. */
KILN_NODISCARD kiln_status kiln_engine_verify(const char *path, kiln_err *err);
/* 1 when the file at path starts like an engine file (its magic), 0 otherwise. */
int kiln_file_is_engine(const char *path);
/* The model the engine runs (optimized), for the kiln_model_* queries; owned by e. */
const kiln_model *kiln_engine_model(const kiln_engine *e);
int kiln_engine_threads(const kiln_engine *e);
/* Profiles: count, name, and per profile the planned arena and the sum of the planned
 * intermediates at its largest shapes. Without profiles, a model whose shapes are all
 * fixed reports one unnamed entry; a dynamic one none (it plans at its first run). */
size_t kiln_engine_profile_count(const kiln_engine *e);
const char *kiln_engine_profile_name(const kiln_engine *e, size_t i);
void kiln_engine_profile_memory(const kiln_engine *e, size_t i, uint64_t *arena_bytes, uint64_t *sum_bytes);
/* The backend, kernel and variant of node i of the main graph ("cpu", "Conv v11+",
 * "im2col+sgemm" or NULL); i < kiln_model_node_count(kiln_engine_model(e)). */
void kiln_engine_node_kernel(const kiln_engine *e, size_t i, const char **backend, const char **kernel,
                             const char **variant);

/* A session over an engine (a loaded engine file, or one built with a builder): one context
 * on e behind the kiln_session_* calls; holds a reference to e. Of opt (may be NULL) only
 * profile applies; threads must be 0 or the engine's (KILN_E_INVALID_ARG otherwise); the
 * limits are the engine's. */
KILN_NODISCARD kiln_status kiln_session_create_from_engine(kiln_engine *e, const kiln_session_options *opt,
                                                           kiln_session **out, kiln_err *err);
/* The model a session runs (the engine's for kiln_session_create_from_engine). */
const kiln_model *kiln_session_model(const kiln_session *s);

/* A context on e (holds a reference to e). */
KILN_NODISCARD kiln_status kiln_context_create(kiln_engine *e, kiln_context **out, kiln_err *err);
void kiln_context_free(kiln_context *c); /* NULL is fine; waits for its enqueued runs */
/* As kiln_session_run_with_options (ro may be NULL). Inputs are read in place. */
KILN_NODISCARD kiln_status kiln_context_run(kiln_context *c, const kiln_run_options *ro, size_t n_in,
                                            const char *const *names, const kiln_value *const *inputs,
                                            size_t n_out, kiln_value **outputs, kiln_err *err);
/* IO binding: output i of later runs goes into buf (bytes long, caller-owned), and the value
 * that run returns for it views buf (kiln_value_free frees only the view). A run whose
 * output does not fit fails with KILN_E_INVALID_ARG. buf NULL: back to kiln-owned outputs. */
KILN_NODISCARD kiln_status kiln_context_bind_output(kiln_context *c, size_t i, void *buf, size_t bytes,
                                                    kiln_err *err);
/* The planned arena of the context's last run, in bytes. */
uint64_t kiln_context_arena_bytes(const kiln_context *c);

/* Asynchronous runs. kiln_context_enqueue queues a run on c's worker thread (started on
 * first use) and returns at once; runs of one context go in order. inputs must stay valid
 * and outputs[] writable until the run completes. On completion `done` (may be NULL) is
 * called on the worker thread with the run's status and message, then the event is
 * signalled. *ev (may be NULL if not wanted) receives a handle: wait on it, then free it. */
typedef struct kiln_event kiln_event;
typedef void (*kiln_done_fn)(void *user, kiln_status status, const char *message);
KILN_NODISCARD kiln_status kiln_context_enqueue(kiln_context *c, const kiln_run_options *ro, size_t n_in,
                                                const char *const *names, const kiln_value *const *inputs,
                                                size_t n_out, kiln_value **outputs, kiln_done_fn done,
                                                void *user, kiln_event **ev, kiln_err *err);
/* Waits until the run completes; returns its status (its message in err). */
KILN_NODISCARD kiln_status kiln_event_wait(kiln_event *ev, kiln_err *err);
/* 1 when the run has completed (does not wait). */
int kiln_event_done(kiln_event *ev);
void kiln_event_free(kiln_event *ev); /* waits for the run first; NULL is fine */

/* ------------------------------------------------------------------------------------------
 * Profiling: per-node times of a session created with options.profile = 1.
 *
 * Every node of the model (subgraph nodes included) has one entry, in the order the session
 * resolved them (main graph first, each subgraph right after the node that holds it). A node
 * inside a subgraph is named after the enclosing node: "loop_node/body_node" (a node without
 * a name is "OpType#index"). Its time also counts in the enclosing node's time, so only the
 * entries with depth 0 add up to the run time.
 * ---------------------------------------------------------------------------------------- */
typedef struct kiln_profile_entry {
    const char *name;    /* node name, prefixed by the enclosing nodes' names */
    const char *op_type;
    const char *kernel;  /* the kernel that ran it: "cpu:Conv v11+" (op, first..last version) */
    const char *shapes;  /* output shapes of the last call: "float32[1,8,4,4]", "; " between */
    uint64_t total_ns;   /* summed over the calls since creation or the last reset */
    uint64_t calls;
    int depth;           /* 0: main graph; 1: a subgraph of a main-graph node; ... */
} kiln_profile_entry;

/* Number of profile entries: every node of every graph of the model; 0 when profiling is off
 * or s is NULL. */
size_t kiln_session_profile_count(const kiln_session *s);
/* Fills *out with entry i (< kiln_session_profile_count). The strings are the session's and
 * live as long as it does, except shapes, which the next run of s may replace: read entries
 * while no run of s is in flight (the counters themselves are read under the profile's lock).
 * KILN_E_INVALID_ARG when i is out of range or profiling is off. */
KILN_NODISCARD kiln_status kiln_session_profile_entry(const kiln_session *s, size_t i,
                                                      kiln_profile_entry *out, kiln_err *err);
/* Zeroes every entry's time and calls and drops the recorded trace events (e.g. after
 * warm-up runs); keeps the shapes. No-op when profiling is off or s is NULL. */
void kiln_session_profile_reset(kiln_session *s);
/* Writes the trace of the runs since creation or the last reset to `path` in the Chrome
 * trace event format (a JSON array of complete "X" events: name = node name, cat = op type,
 * ts and dur in microseconds from the first recorded node, pid 1, tid 1, args.shapes and
 * args.kernel), which Perfetto and chrome://tracing open. Nested subgraph events lie inside
 * their enclosing node's event; events of two threads running s at once share tid 1. At most
 * 4194304 events are kept; later ones are not recorded (the entries' totals still are).
 * Events are written in the order their nodes finished. KILN_E_INVALID_ARG when profiling is
 * off; KILN_E_IO when the file cannot be opened or written. */
KILN_NODISCARD kiln_status kiln_session_profile_write_trace(const kiln_session *s, const char *path,
                                                            kiln_err *err);

/* ------------------------------------------------------------------------------------------
 * Plugins: custom operators from shared libraries (kiln_plugin.h, docs/plugins.md).
 *
 * A plugin declares ops (domain, op type, version range) with a shape function, prepare,
 * run and optional hooks. Once loaded, a model using them loads, checks, infers shapes and
 * runs like one using built-in ops. Without it, loading a model whose op belongs to a
 * domain kiln does not know (not ai.onnx, ai.onnx.ml, ai.onnx.preview.training,
 * ai.onnx.preview or kiln) and is neither a model-local function nor declared by a loaded
 * plugin fails with KILN_E_UNSUPPORTED: "model 'm.onnx': node 'n3' (MyRelu): op 'MyRelu' of
 * domain 'com.example' is not known to kiln and no loaded plugin declares it (kiln --plugin
 * LIB.so)". Ops of the domains kiln knows keep their rules: the checker judges them against
 * the ONNX schema, and one without a kernel fails at session creation.
 *
 * The registry is process-wide and append-only: a plugin, once loaded, serves every model,
 * session and engine of the process, and is never unloaded.
 * ---------------------------------------------------------------------------------------- */

/* Loads the plugin at `path` (dlopen; a bare file name is looked for in the current folder,
 * then on the library search path) and calls its kiln_plugin_register, whose declarations
 * are then visible to every thread. Thread-safe: loads are serialized. Loading a library
 * that is already loaded does nothing. Fails, loading none of the plugin's ops, with
 *   KILN_E_IO           the file does not exist ("plugin 'x.so': cannot open: ...")
 *   KILN_E_INVALID_ARG  not a loadable library, no kiln_plugin_register function, or a bad
 *                       declaration: missing functions, a bad version range, an op that
 *                       kiln or another plugin already has ("duplicate op: ...")
 *   KILN_E_UNSUPPORTED  built for another plugin ABI version (naming both), or the plugin
 *                       declined to load (its message)
 *   KILN_E_NOMEM. */
KILN_NODISCARD kiln_status kiln_plugin_load(const char *path, kiln_err *err);

/* kiln_plugin_load(path, err), for code that sets up sessions: the plugin is loaded at
 * once, for the whole process (every session, not only those created with `o`); `o` is
 * not changed and may be NULL. */
KILN_NODISCARD kiln_status kiln_session_options_add_plugin(kiln_session_options *o, const char *path,
                                                           kiln_err *err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
