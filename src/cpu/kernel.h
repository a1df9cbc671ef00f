/* kernel.h: the interface between the engine and CPU kernels.
 *
 * A kernel is a `struct kiln_cpu_op`: the op it implements, the range of op versions
 * (schema since_versions) it handles, an optional `prepare` and a `run` function.
 *
 * prepare (struct kiln_kprep) runs once per node when an engine is built or loaded, with
 * the node's inferred input and output types (dims may be symbolic) and its constant
 * inputs. It decodes the attributes into the kernel's own struct (allocated with
 * kiln_kprep_alloc, living as long as the engine), checks what can be checked ahead of
 * time, prepacks constant weights into blobs (kiln_kprep_blob: computed at build, stored in
 * the engine file and mapped back at load), chooses among its variants and names the one it
 * chose (p->kernel, shown by profiles and the build log). The struct reaches run as
 * k->state. A kernel without prepare reads its attributes at run time through kiln_attr_*.
 *
 * run (struct kiln_kctx) reads its inputs, allocates its outputs with kiln_out_tensor (which
 * fixes their shapes) and computes them. In an engine the output memory is planned: the
 * call hands out the tensor's place in the context's arena, so it does not allocate unless
 * the tensor's size is not known ahead (data-dependent outputs: NonZero, Unique, Loop's
 * scan outputs...), which is the one escape: such tensors come from the heap (recycled
 * through the context's cache). kiln_scratch takes from the context's scratch arena.
 *
 * Flags (KILN_OP_*) tell the memory planner what a kernel allows: KILN_OP_INPLACE, that
 * output 0 may occupy input 0's memory when both have the same size and input 0 dies at
 * this node (the kernel reads element i before writing element i, or copies with memmove,
 * or skips a copy onto itself); KILN_OP_INPLACE_FROM(i), the same for input i instead of
 * input 0 (a residual Z that the kernel adds in place, or copies aside first where it
 * cannot).
 *
 * Errors: a kernel returns a status made by kiln_kfail, whose message is prefixed with
 * "OpType node 'name' (opset N): ". Kernels never abort on bad input.
 *
 * Each op family lives in one file under src/cpu/ops/ and exports one table
 * `const struct kiln_cpu_op kiln_cpu_ops_<family>[]`, terminated by {0};
 * src/cpu/op_table.def lists the families.
 */
#ifndef KILN_CPU_KERNEL_H
#define KILN_CPU_KERNEL_H

#include "ir/ir.h"

struct kiln_exec;
struct kiln_vtype;
struct kiln_kprep;
struct kiln_scratch_arena;
struct kiln_limits;

struct kiln_kctx {
    const struct kiln_node *node;
    int opset;                     /* the node's resolved op version (schema since_version) */
    size_t n_in, n_out;            /* as written on the node */
    struct kiln_value *const *in;  /* in[i] NULL for an absent optional input */
    struct kiln_value **out;       /* filled by the kernel; the executor owns them after */
    kiln_err *err;
    struct kiln_exec *exec;        /* for subgraphs (If/Loop/Scan) */
    void *scratch;                 /* scratch blocks, freed after run returns */
    void *frame;                   /* the executor's frame (outer scope for subgraphs) */
    struct kiln_pool *pool;        /* the session's threads (base/pool.h); NULL: run inline */
    struct kiln_bcache *cache;     /* the session's recycled tensor memory (base/bcache.h); may be NULL */
    const void *state;             /* what prepare made (NULL when the op has no prepare) */
    /* Planned memory of the outputs (exec/plan.h), NULL when unplanned: out_mem[i] is the
     * place of output i in the context's arena, out_cap[i] its size in bytes, out_alias[i]
     * the input whose memory it shares (-1: none). */
    void *const *out_mem;
    const size_t *out_cap;
    const int *out_alias;
    struct kiln_value *const *out_vals;       /* wrappers for planned outputs */
    const struct kiln_limits *limits;         /* the engine's (NULL: none) */
    struct kiln_scratch_arena *scratch_arena; /* the context's; NULL: scratch from the heap */
};

#define KILN_OP_INPLACE 1u /* output 0 may share input 0's memory (see above) */
/* output 0 may share input i's memory (i < 16) */
#define KILN_OP_INPLACE_FROM(i) (KILN_OP_INPLACE | ((unsigned)(i) & 15u) << 4)
/* the input that output 0 may share, of flags with KILN_OP_INPLACE */
#define KILN_OP_INPLACE_INPUT(flags) ((size_t)((flags) >> 4 & 15u))

struct kiln_cpu_op {
    const char *name;   /* op_type */
    const char *domain; /* "" for ai.onnx */
    int since, until;   /* op versions handled, inclusive (until: 0 = no upper limit) */
    kiln_status (*run)(struct kiln_kctx *k);
    kiln_status (*prepare)(struct kiln_kprep *p); /* NULL: nothing to prepare */
    unsigned flags;                               /* KILN_OP_* */
};

/* ------------------------------------------------------------------ prepare */

/* One blob of prepacked data: computed by prepare at build, saved in the engine file,
 * mapped (read-only) at load. */
struct kiln_kblob {
    uint32_t key;     /* the kernel's own number for it, unique per node */
    size_t bytes;
    void *data;       /* 64-byte aligned */
};

struct kiln_kprep {
    struct kiln_kctx kc;                    /* node, opset, n_in, n_out, err: for kiln_attr_*
                                             * and kiln_kfail (in/out/exec are NULL) */
    const struct kiln_vtype *const *in;     /* inferred input types; in[i] NULL: absent or unknown */
    const struct kiln_vtype *const *out;    /* inferred output types; NULL entries likewise */
    int threads;                            /* the engine's threads per context */
    int tune;                               /* 1: time the variants on these shapes, keep
                                             * the fastest */
    int variant;                            /* >= 0: the variant to take (a loaded engine,
                                             * or --tune's choice); -1: choose */
    /* Set by prepare: */
    void *state;                            /* given to run as k->state */
    const char *kernel;                     /* the chosen variant's name (static string) */
    int chosen;                             /* the chosen variant's number (0 when one) */
    size_t scratch_bytes;                   /* scratch run needs at most (0: unknown) */
    uint64_t cpu_features;                  /* KILN_CPU_* (cpu/features.h) the chosen
                                             * variant needs; recorded in engine files */
    /* Private to the engine: */
    struct kiln_prep_store *store;
};

/* Defines `static kiln_status fn(struct kiln_kprep *p)` that allocates a state of type T and
 * fills it with `decode` (kiln_status decode(struct kiln_kctx *, T *), which reads the
 * attributes and reports bad ones with kiln_kfail). */
#define KILN_PREPARE_WITH(fn, T, decode)                                                       \
    static kiln_status fn(struct kiln_kprep *p)                                                \
    {                                                                                          \
        T *s_;                                                                                 \
        KILN_TRY(kiln_kprep_alloc(p, sizeof *s_, (void **)&s_));                               \
        KILN_TRY((decode)(&p->kc, s_));                                                        \
        p->state = s_;                                                                         \
        return KILN_OK;                                                                        \
    }

/* In run: s = the prepared state, or, when the kernel runs without prepare (k->state NULL),
 * tmp decoded now by the same function, so both paths give the same values and errors. */
#define KILN_STATE_OR_DECODE(k, decode, tmp, s)                                                \
    do {                                                                                       \
        (s) = (k)->state;                                                                      \
        if (!(s)) {                                                                            \
            KILN_TRY((decode)((k), &(tmp)));                                                   \
            (s) = &(tmp);                                                                      \
        }                                                                                      \
    } while (0)

/* Runs `prepare` for k's node on the spot (attributes only: no inferred types, no constants)
 * into memory that lives for this one call, then `run` with its state: for kernels called
 * without prepare (k->state NULL). Engines and kiln_eval_node always prepare first. */
KILN_NODISCARD kiln_status kiln_cpu_run_unprepared(struct kiln_kctx *k, kiln_status (*prepare)(struct kiln_kprep *),
                                                   kiln_status (*run)(struct kiln_kctx *));
/* Keeps a failed check of prepare (status st, message e->msg) for run to report at the same
 * point as before prepare existed: *msg a copy in prepare's memory, KILN_OK returned (out of
 * memory is prepare's own failure). Run reports it with kiln_err_set(k->err, st, "%s", msg). */
KILN_NODISCARD kiln_status kiln_cpu_prep_keep(struct kiln_kprep *p, kiln_status st, const kiln_err *e,
                                              const char **msg);

/* Input i's contents when it is a constant (initializer or folded); NULL otherwise. */
const struct kiln_tensor *kiln_kprep_const(const struct kiln_kprep *p, size_t i);
/* Zero-filled memory living as long as the engine; NULL + status on failure. */
KILN_NODISCARD kiln_status kiln_kprep_alloc(struct kiln_kprep *p, size_t bytes, void **out);
/* A blob key with this bit names a blob the run reads only for some shapes (conv_nhwc's
 * whole convolution next to its slices, for N > 1 images): loading an engine leaves such a
 * blob in the file mapping, where its pages cost memory only once read, and copies the
 * others into memory of their own (engine/file.c). */
#define KILN_BLOB_SPARE 0x80000000u

/* Blob `key` of this node, of `bytes` bytes (64-byte aligned). *fill is true when the
 * caller must compute its contents now (building) and false when it comes filled from an
 * engine file (loading); its contents must not change after prepare returns. */
KILN_NODISCARD kiln_status kiln_kprep_blob(struct kiln_kprep *p, uint32_t key, size_t bytes,
                                           void **data, bool *fill);
/* Whether this node has blob `key` (from the engine file when loading, or made earlier in
 * this prepare), and its size: for kernels whose blob layout depends on the CPU (oneDNN's
 * packed weights), which check a loaded blob before taking it. */
bool kiln_kprep_blob_peek(const struct kiln_kprep *p, uint32_t key, size_t *bytes);
/* Whether p prepares an engine being loaded from a file (blobs can then only be read). */
bool kiln_kprep_loading(const struct kiln_kprep *p);
/* Makes the engine (or the ahead-of-time evaluation) that p prepares for call fn(arg) when
 * it frees what prepare made, before kiln_kprep_alloc's memory goes: for a state that owns
 * memory or handles of its own (a plugin's state, src/plugin). KILN_E_NOMEM on failure,
 * when fn will not be called. */
KILN_NODISCARD kiln_status kiln_kprep_on_free(struct kiln_kprep *p, void (*fn)(void *arg), void *arg);

#define KILN_OPSET_ANY 0

/* ------------------------------------------------------------------ errors */

/* The run's timeout and cancel flag (kiln_run_options), checked: KILN_OK to go on, else
 * KILN_E_LIMIT or KILN_E_CANCELLED with k->err naming k's node and `iteration` (< 0: none).
 * A clock read and an atomic load: cheap enough for every iteration of a kernel that runs
 * a subgraph per element (Loop, Scan, SequenceMap, ...). */
kiln_status kiln_kctx_check_cancel(struct kiln_kctx *k, int64_t iteration);

/* Sets k->err to "OpType node 'name' (opset N): <message>" and returns st. */
kiln_status kiln_kfail(struct kiln_kctx *k, kiln_status st, const char *fmt, ...) KILN_PRINTF(3, 4);

/* ------------------------------------------------------------------ inputs */

/* Input i as a tensor; NULL when absent (not given or "") or when it is not a tensor. */
const struct kiln_tensor *kiln_in(const struct kiln_kctx *k, size_t i);
/* Input i as a value (any kind); NULL when absent. */
const struct kiln_value *kiln_in_value(const struct kiln_kctx *k, size_t i);
/* Input i as a tensor, failing with a clear message when absent or not a tensor. */
KILN_NODISCARD kiln_status kiln_in_req(struct kiln_kctx *k, size_t i, const struct kiln_tensor **t);
/* Reads element j of an integer tensor (any int dtype) as int64. */
int64_t kiln_tensor_get_i64(const struct kiln_tensor *t, size_t j);
/* Reads element j of a numeric tensor (any int/float/bool dtype) as double. */
double kiln_tensor_get_f64(const struct kiln_tensor *t, size_t j);
/* Stores v into element j of a numeric tensor, converting (float types round; ints
 * truncate toward zero as C casts do, saturating on overflow for float -> int). */
void kiln_tensor_set_f64(struct kiln_tensor *t, size_t j, double v);

/* ------------------------------------------------------------------ attributes
 * Missing attributes give the default. A present attribute of the wrong type is an
 * error the checker reports; these accessors then also return the default. */
int64_t kiln_attr_i(const struct kiln_kctx *k, const char *name, int64_t def);
float kiln_attr_f(const struct kiln_kctx *k, const char *name, float def);
const char *kiln_attr_s(const struct kiln_kctx *k, const char *name, const char *def);
/* List attributes: returns the count, sets *v (NULL and 0 when absent). */
size_t kiln_attr_ints(const struct kiln_kctx *k, const char *name, const int64_t **v);
/* A 2-D geometry attribute (strides, dilations, kernel_shape of a 2-D convolution or pool)
 * into out[0..2): def for each when absent; fails naming the attribute when it has other
 * than 2 values or one is below min. */
KILN_NODISCARD kiln_status kiln_attr_pair(struct kiln_kctx *k, const char *name, int64_t def, int64_t min,
                                          int64_t out[2]);
/* The fused ops' activation attributes (activation, activation_params, approximate) into
 * *act (cpu/act.h); fails naming them when kiln does not know that activation. */
struct kiln_act;
KILN_NODISCARD kiln_status kiln_attr_act(struct kiln_kctx *k, struct kiln_act *act);
size_t kiln_attr_floats(const struct kiln_kctx *k, const char *name, const float **v);
size_t kiln_attr_strings(const struct kiln_kctx *k, const char *name, const char *const **v);
const struct kiln_tensor *kiln_attr_t(const struct kiln_kctx *k, const char *name);
const struct kiln_graph *kiln_attr_g(const struct kiln_kctx *k, const char *name);
bool kiln_attr_has(const struct kiln_kctx *k, const char *name);

/* ------------------------------------------------------------------ outputs */

/* Whether output i is wanted (present on the node and not ""). Kernels may skip
 * computing unwanted optional outputs, and must not allocate them. */
bool kiln_out_wanted(const struct kiln_kctx *k, size_t i);
/* Allocates output i as a zero-filled tensor of dtype/shape; *t points to it. */
KILN_NODISCARD kiln_status kiln_out_tensor(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                                           const int64_t *dims, struct kiln_tensor **t);
/* kiln_out_tensor without the zero fill, for kernels that write every element of the output
 * (string outputs are still initialized). Sanitizer builds (KILN_SANITIZE) fill it with 0xFF
 * bytes instead, so a kernel that skips elements fails the conformance tests there. */
KILN_NODISCARD kiln_status kiln_out_tensor_raw(struct kiln_kctx *k, size_t i, kiln_dtype dt, int rank,
                                               const int64_t *dims, struct kiln_tensor **t);
/* Sets output i to v (ownership moves in, also on failure). */
KILN_NODISCARD kiln_status kiln_out_value(struct kiln_kctx *k, size_t i, struct kiln_value *v);

/* ------------------------------------------------------------------ memory, subgraphs */

/* Scratch memory for this run (zero-filled, 64-byte aligned): from the context's scratch
 * arena, else the heap; released when run returns. NULL + status on failure. Call it from
 * the kernel's own thread (not from pool tasks). */
KILN_NODISCARD kiln_status kiln_scratch(struct kiln_kctx *k, size_t bytes, void **p);
/* kiln_scratch without the zero fill, for buffers the kernel writes before it reads them:
 * the fill costs a pass over memory on every run, on the calling thread (a pool worker then
 * finds the lines in the other core's cache). */
KILN_NODISCARD kiln_status kiln_scratch_raw(struct kiln_kctx *k, size_t bytes, void **p);
/* Frees every scratch block of k (the executor calls it after run; tests that call kernels
 * directly call it too). */
void kiln_kctx_free_scratch(struct kiln_kctx *k);

/* Runs subgraph g (an attribute of this node) with inputs bound to g's declared inputs in
 * order; values of enclosing graphs are visible to it. outputs[0..g->n_outputs) receive
 * new values, owned by the caller. */
KILN_NODISCARD kiln_status kiln_run_subgraph(struct kiln_kctx *k, const struct kiln_graph *g,
                                             size_t n_in, struct kiln_value *const *inputs,
                                             struct kiln_value **outputs);

/* ------------------------------------------------------------------ registry */

/* The kernel for an op at a resolved version; NULL if none. Kernels of loaded plugins
 * (src/plugin) count: they are looked up after kiln's own. */
const struct kiln_cpu_op *kiln_cpu_find_op(const char *domain, const char *op_type, int version);
/* Whether any kernel exists for (domain, op_type) at some version (plugins' included). */
bool kiln_cpu_has_op(const char *domain, const char *op_type);
/* Whether one of kiln's own kernels (not a plugin's) handles (domain, op_type) at some
 * version in since..until (until 0: no upper limit). */
bool kiln_cpu_builtin_overlaps(const char *domain, const char *op_type, int since, int until);

#endif
