/* kernel.h: the interface between the executor and CPU kernels.
 *
 * A kernel is a `struct kiln_cpu_op`: the op it implements, the range of op versions
 * (schema since_versions) it handles, and a `run` function. `run` reads its inputs and
 * attributes through the kiln_kctx, checks them, allocates its outputs with
 * kiln_kctx_out_tensor (which fixes their shapes) and computes them. A later planner will
 * hand out planned memory behind the same calls, so kernels need not change.
 *
 * Errors: a kernel returns a status made by kiln_kfail, whose message is prefixed with
 * "OpType node 'name' (opset N): ". Kernels never abort on bad input.
 *
 * Each op family lives in one file under src/cpu/ops/ and exports one table
 * `const struct kiln_cpu_op kiln_cpu_ops_<family>[]`, terminated by an entry with
 * name == NULL; src/cpu/op_table.def lists the families.
 */
#ifndef KILN_CPU_KERNEL_H
#define KILN_CPU_KERNEL_H

#include "ir/ir.h"

struct kiln_exec;

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
};

struct kiln_cpu_op {
    const char *name;   /* op_type */
    const char *domain; /* "" for ai.onnx */
    int since, until;   /* op versions handled, inclusive (until: 0 = no upper limit) */
    kiln_status (*run)(struct kiln_kctx *k);
};

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

/* Scratch memory for this run (zero-filled, 16-byte aligned); freed when run returns. NULL +
 * status on failure. */
KILN_NODISCARD kiln_status kiln_scratch(struct kiln_kctx *k, size_t bytes, void **p);
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

/* The kernel for an op at a resolved version; NULL if none. */
const struct kiln_cpu_op *kiln_cpu_find_op(const char *domain, const char *op_type, int version);
/* Whether any kernel exists for (domain, op_type) at some version. */
bool kiln_cpu_has_op(const char *domain, const char *op_type);

#endif
