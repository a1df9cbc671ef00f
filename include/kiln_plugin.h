/* kiln_plugin.h: the C ABI for custom operators in plugins (docs/plugins.md).
 *
 * A plugin is a shared library that exports one function, KILN_PLUGIN_REGISTER
 * (`kiln_plugin_register`). kiln_plugin_load() (kiln.h) or `kiln --plugin LIB.so` opens the
 * library and calls it once with a registry handle and kiln's function table; the function
 * declares ops with api->register_op, each by (domain, op type, version range, backend) with
 * its functions: a shape-and-type function, an optional prepare/release pair, run, and
 * optional scratch and prepack hooks. A model whose nodes use such an op then loads, checks,
 * infers shapes and runs as if kiln had the op built in.
 *
 *     #include "kiln_plugin.h"
 *     static const kiln_plugin_api *K;    // kiln's functions, valid for the process
 *     static const kiln_plugin_op swish = {
 *         .abi_version = KILN_PLUGIN_ABI_VERSION, .domain = "com.example", .op_type = "Swish",
 *         .since = 1, .infer = swish_infer, .prepare = swish_prepare, .run = swish_run,
 *     };
 *     KILN_PLUGIN_EXPORT int KILN_PLUGIN_REGISTER(kiln_plugin_registry *r,
 *                                                 const kiln_plugin_api *api)
 *     {
 *         K = api;
 *         return api->register_op(r, &swish) == KILN_OK ? 0 : 1;
 *     }
 *
 * Linking. A plugin does not link against kiln: every kiln function it may call is in the
 * kiln_plugin_api table it receives (the kiln executable and most programs link kiln
 * statically, so there would be no kiln symbols to resolve against, and a plugin that
 * linked its own copy of libkiln would register into a registry nobody reads). The plugin
 * includes kiln.h only for its types (kiln_status, kiln_dtype, kiln_err); it must not call
 * the functions declared there.
 *
 * Versioning. KILN_PLUGIN_ABI_VERSION names the layout of every struct and of the function
 * table below. Each kiln_plugin_op carries the version the plugin was compiled with, and
 * register_op refuses one that differs from kiln's (KILN_E_UNSUPPORTED, naming both). The
 * first four members of kiln_plugin_api (abi_version, size, register_op, registry_error)
 * keep their place in every version, so a plugin can always read kiln's version and
 * report a mismatch. Within one ABI version members are only ever appended.
 *
 * Ownership. Every pointer kiln hands a callback (node, tensors, types, strings, dims) is
 * borrowed and valid only during that call, except where a function says otherwise.
 * Strings a plugin passes to kiln are copied; the kiln_plugin_op struct itself is copied
 * by register_op. Plugins are never unloaded: the library stays mapped until the process
 * exits, so functions and `user` pointers stay valid for the life of the process.
 *
 * Thread safety. kiln may call every callback of an op from several threads at once: infer
 * and prepare for different models or engines, run for different contexts of one engine
 * (sharing one prepared state, which run receives read-only). Callbacks must be reentrant;
 * a plugin that keeps mutable global data guards it itself. The functions of the table
 * are thread-safe in the same sense: each may be called on any thread with the handles
 * the current callback received.
 *
 * Errors. A callback that fails returns a kiln_status other than KILN_OK and writes a
 * one-line message into the kiln_err it was given (err->msg, NUL-terminated; kiln adds
 * the node: "Swish node 'n3' (opset 1): <message>"). A callback never aborts the process
 * on bad input. Functions of the table that fail (output allocation, scratch) write their
 * own message into the run's kiln_err; return their status as it is.
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. Bumped on any incompatible change. */
#define KILN_PLUGIN_ABI_VERSION 1u

/* The registration function every plugin exports, by name. */
#define KILN_PLUGIN_REGISTER        kiln_plugin_register
#define KILN_PLUGIN_REGISTER_SYMBOL "kiln_plugin_register"

/* Exports a symbol from a library built with -fvisibility=hidden. */
#if defined(__GNUC__)
#define KILN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KILN_PLUGIN_EXPORT
#endif

/* The most dims a tensor has (kiln's own limit: kiln refuses larger ranks before a plugin
 * sees them). */
#define KILN_PLUGIN_MAX_RANK 16

/* Opaque handles, each valid only during the callback that received it. */
typedef struct kiln_plugin_registry kiln_plugin_registry; /* the plugin being registered */
typedef struct kiln_plugin_node kiln_plugin_node;         /* a node: name, arity, attributes */
typedef struct kiln_plugin_prep kiln_plugin_prep;         /* a node being prepared */
typedef struct kiln_plugin_kernel kiln_plugin_kernel;     /* a node being run */

/* An element type and shape, as shape functions see them. */
typedef struct kiln_plugin_type {
    /* KILN_DTYPE_UNDEFINED when unknown (inputs) or to leave unknown (outputs). */
    kiln_dtype dtype;
    /* Number of dims; -1 when unknown (dims then unused). At most KILN_PLUGIN_MAX_RANK. */
    int rank;
    /* dims[0..rank): >= 0 a known size; -1 unknown; <= -2 a symbolic size (a batch size
     * "N", a sequence length): equal values stand for the same, unknown, size. Copy a
     * symbolic dim from an input to an output to keep the symbol ("float32[N,3]" in,
     * "float32[N,3]" out); never compute with one (any value < 0 on an output that no input
     * carries is taken as unknown). */
    int64_t dims[KILN_PLUGIN_MAX_RANK];
} kiln_plugin_type;

/* A tensor as run sees it: dense, row-major, every element taking whole bytes
 * (kiln.h, "Values": float16/bfloat16 are uint16_t bit patterns, 4-bit types one byte per
 * element, strings `char *` each). */
typedef struct kiln_plugin_tensor {
    kiln_dtype dtype;
    int rank;
    const int64_t *dims; /* rank entries, all >= 0; borrowed */
    size_t count;        /* number of elements (the product of dims; 1 for rank 0) */
    /* The elements. Inputs: read-only (other nodes may read the same memory). Outputs:
     * writable, count elements. NULL only when count is 0. */
    void *data;
} kiln_plugin_tensor;

/* ---------------------------------------------------------------------------------------
 * The callbacks of an op. `user` is kiln_plugin_op.user, passed through unchanged.
 * ------------------------------------------------------------------------------------- */

/* Shape and type function (required). Given the node and its inputs' types (in[i] for
 * input i, dtype UNDEFINED and rank -1 for an absent optional input or one whose type is
 * not known; api->node_input_name tells which), sets out[j] for each output j: kiln
 * initializes every out[j] to unknown (dtype UNDEFINED, rank -1), so an output left alone
 * stays unknown. Called when a model is checked, optimized, or built into a session.
 * Returns KILN_OK; any other status (with a message in err) reports the node as a problem
 * of the model (kiln check lists it; the outputs stay unknown) without failing inference.
 * Must not keep any pointer it received. */
typedef kiln_status (*kiln_plugin_infer_fn)(void *user, const kiln_plugin_node *node, size_t n_in,
                                            const kiln_plugin_type *in, size_t n_out, kiln_plugin_type *out,
                                            kiln_err *err);

/* Prepare (optional): called once per node when a session or engine is built (and when
 * kiln evaluates a node ahead of time). Decodes and checks attributes, looks at the
 * inferred input types, and may set *state to anything of its own (NULL is fine), which
 * every run of the node receives and `release` frees. On failure it returns a status with
 * a message (the session is not created) and must leave *state NULL, having freed what it
 * made itself. */
typedef kiln_status (*kiln_plugin_prepare_fn)(void *user, const kiln_plugin_prep *p, void **state,
                                              kiln_err *err);

/* Release (optional): frees a state that prepare set (never called with NULL). Called once,
 * when the session or engine that prepared the node is freed, on the thread freeing it. */
typedef void (*kiln_plugin_release_fn)(void *user, void *state);

/* Run (required): computes the node's outputs from its inputs. Reads input i with
 * api->kernel_input, allocates each wanted output with api->kernel_output (which fixes its
 * type and shape) and fills it. `state` is what prepare set (NULL without prepare); several
 * runs of one node may be in progress at once on different threads, so run must not write
 * to it. Returning KILN_OK with a wanted output not allocated is an error kiln reports.
 * Must not keep any pointer it received beyond the call. */
typedef kiln_status (*kiln_plugin_run_fn)(void *user, kiln_plugin_kernel *k, const void *state,
                                          kiln_err *err);

/* Scratch size (optional): the most bytes of scratch one run of the node will ask for
 * (api->kernel_scratch), from the prepared state and inferred types; kiln reserves that
 * much in each context ahead of the first run, so run does not allocate. 0: unknown or none
 * (scratch then comes from the heap). */
typedef size_t (*kiln_plugin_scratch_fn)(void *user, const kiln_plugin_prep *p, const void *state);

/* Prepack (optional, both or neither): data computed once from the node's constant inputs
 * (api->prep_const_input), such as weights in a kernel-friendly layout. prepack_size says how
 * many bytes it takes (0: nothing to pack for this node); prepack fills dst (bytes long,
 * 64-byte aligned, zero-filled) when an engine is built. The data is saved in engine files
 * and mapped back when one is loaded, without calling prepack again, so it must depend only
 * on the node, its constant inputs and the plugin's version. Run reads it with
 * api->kernel_packed. */
typedef kiln_status (*kiln_plugin_prepack_size_fn)(void *user, const kiln_plugin_prep *p, const void *state,
                                                   size_t *bytes, kiln_err *err);
typedef kiln_status (*kiln_plugin_prepack_fn)(void *user, const kiln_plugin_prep *p, const void *state,
                                              void *dst, size_t bytes, kiln_err *err);

/* The body of a parallel loop (api->parallel_for): indices [begin, end); `worker` is 0 for
 * the calling thread, 1.. for the others (below api->kernel_threads). */
typedef void (*kiln_plugin_for_fn)(void *ctx, size_t begin, size_t end, int worker);

/* Op flags. */
#define KILN_PLUGIN_OP_INPLACE                                                                               \
    1u /* output 0 may share input 0's memory when both have the                                             \
        * same size (run reads element i before writing it) */

/* One op declaration. kiln copies it (and its strings) at register_op. */
typedef struct kiln_plugin_op {
    uint32_t abi_version; /* KILN_PLUGIN_ABI_VERSION, as the plugin was compiled */
    /* The op: nodes with this domain and op_type, at op versions since..until inclusive
     * (until 0: no upper limit). The version of a node is the model's opset import of its
     * domain (for ai.onnx and the other domains kiln knows: the op's since_version that
     * import selects). A plugin may not declare an op kiln has a kernel for at any of those
     * versions, nor one another plugin declares; in the domains kiln knows (ai.onnx, "",
     * ai.onnx.ml, ai.onnx.preview.training, ai.onnx.preview, kiln) only ops of the ONNX
     * schema, to fill in kernels kiln lacks. */
    const char *domain;
    const char *op_type;
    int since, until;
    /* Which backend this implementation runs on: "cpu" (NULL means "cpu"). Declarations for
     * a backend this kiln lacks are kept but never run. One op may have one declaration per
     * backend; they share the shape function of the first one declared. */
    const char *backend;
    void *user;                               /* passed to every callback */
    kiln_plugin_infer_fn infer;               /* required */
    kiln_plugin_prepare_fn prepare;           /* optional */
    kiln_plugin_release_fn release;           /* optional; frees prepare's state */
    kiln_plugin_run_fn run;                   /* required */
    kiln_plugin_scratch_fn scratch_size;      /* optional */
    kiln_plugin_prepack_size_fn prepack_size; /* optional, with prepack */
    kiln_plugin_prepack_fn prepack;           /* optional, with prepack_size */
    unsigned flags;                           /* KILN_PLUGIN_OP_* */
} kiln_plugin_op;

/* ---------------------------------------------------------------------------------------
 * kiln's functions, as one table (static, valid for the life of the process).
 * ------------------------------------------------------------------------------------- */
typedef struct kiln_plugin_api {
    /* --- fixed in every ABI version --- */
    uint32_t abi_version; /* kiln's KILN_PLUGIN_ABI_VERSION */
    uint32_t size;        /* sizeof(kiln_plugin_api) in kiln */
    /* Declares one op (see kiln_plugin_op). Checks the declaration (ABI version, names,
     * version range, required functions) and that nothing else declares the op: on failure
     * returns KILN_E_UNSUPPORTED (ABI) or KILN_E_INVALID_ARG with the reason, and the whole
     * load fails with that message even if the plugin ignores the status. The ops of a
     * plugin become visible together, when its register function has returned 0. Only
     * during KILN_PLUGIN_REGISTER. */
    kiln_status (*register_op)(kiln_plugin_registry *r, const kiln_plugin_op *op);
    /* Why the register function is about to return non-zero (it declines to load, e.g. for
     * a CPU it cannot run on): `message` becomes the load's error. Only during
     * KILN_PLUGIN_REGISTER. */
    void (*registry_error)(kiln_plugin_registry *r, const char *message);

    /* --- the node (infer, prepare, run) --- */
    const char *(*node_name)(const kiln_plugin_node *n); /* "" when unnamed */
    const char *(*node_op_type)(const kiln_plugin_node *n);
    const char *(*node_domain)(const kiln_plugin_node *n); /* "" for ai.onnx */
    int (*node_version)(const kiln_plugin_node *n);        /* the op version it resolved to */
    size_t (*node_input_count)(const kiln_plugin_node *n); /* as written on the node */
    size_t (*node_output_count)(const kiln_plugin_node *n);
    /* Input i's value name; "" for an absent optional input (and for i out of range). */
    const char *(*node_input_name)(const kiln_plugin_node *n, size_t i);
    /* Output i's value name; "" when the output is not wanted. */
    const char *(*node_output_name)(const kiln_plugin_node *n, size_t i);
    /* Attributes. attr_type gives the ONNX AttributeProto type of attribute `name` (1 FLOAT,
     * 2 INT, 3 STRING, 4 TENSOR, 6 FLOATS, 7 INTS, 8 STRINGS, ...), 0 when absent. The
     * getters return `def` (or 0 and NULL) when the attribute is absent or of another type;
     * list getters return the count and set *v; strings are NUL-terminated. Returned
     * pointers live as long as the model. */
    int (*attr_type)(const kiln_plugin_node *n, const char *name);
    int64_t (*attr_int)(const kiln_plugin_node *n, const char *name, int64_t def);
    float (*attr_float)(const kiln_plugin_node *n, const char *name, float def);
    const char *(*attr_string)(const kiln_plugin_node *n, const char *name, const char *def);
    size_t (*attr_ints)(const kiln_plugin_node *n, const char *name, const int64_t **v);
    size_t (*attr_floats)(const kiln_plugin_node *n, const char *name, const float **v);
    size_t (*attr_strings)(const kiln_plugin_node *n, const char *name, const char *const **v);
    /* A TENSOR attribute as a read-only view: 1 and *t filled, or 0 when absent. */
    int (*attr_tensor)(const kiln_plugin_node *n, const char *name, kiln_plugin_tensor *t);

    /* --- prepare, scratch_size, prepack --- */
    const kiln_plugin_node *(*prep_node)(const kiln_plugin_prep *p);
    /* Input i's / output j's inferred type: 1 and *t filled (dims as in kiln_plugin_type),
     * or 0 when absent or unknown. */
    int (*prep_input_type)(const kiln_plugin_prep *p, size_t i, kiln_plugin_type *t);
    int (*prep_output_type)(const kiln_plugin_prep *p, size_t j, kiln_plugin_type *t);
    /* Input i's contents when it is a constant (an initializer): 1 and a read-only view,
     * living as long as the session or engine; 0 otherwise. */
    int (*prep_const_input)(const kiln_plugin_prep *p, size_t i, kiln_plugin_tensor *t);
    /* The threads each run may use (api->parallel_for), the calling one included. */
    int (*prep_threads)(const kiln_plugin_prep *p);

    /* --- run --- */
    const kiln_plugin_node *(*kernel_node)(const kiln_plugin_kernel *k);
    /* Input i as a tensor view: 1, or 0 when absent or not a tensor (a sequence). */
    int (*kernel_input)(const kiln_plugin_kernel *k, size_t i, kiln_plugin_tensor *t);
    /* Whether output j is wanted; run must not allocate unwanted outputs. */
    int (*kernel_output_wanted)(const kiln_plugin_kernel *k, size_t j);
    /* Allocates output j (dtype, rank <= KILN_PLUGIN_MAX_RANK, dims >= 0) and fills *t with
     * its writable view. Its elements are zero unless flags has KILN_PLUGIN_OUTPUT_UNINIT
     * (for runs that write every element). kiln owns the memory. Fails (KILN_E_LIMIT,
     * KILN_E_NOMEM, KILN_E_INVALID_ARG for a bad dtype or shape; string outputs are
     * KILN_E_UNSUPPORTED) with the message in the run's err. Calling it twice for one output
     * replaces the first. */
    kiln_status (*kernel_output)(kiln_plugin_kernel *k, size_t j, kiln_dtype dtype, int rank,
                                 const int64_t *dims, unsigned flags, kiln_plugin_tensor *t);
    /* `bytes` of zero-filled scratch, 64-byte aligned, valid until run returns. */
    kiln_status (*kernel_scratch)(kiln_plugin_kernel *k, size_t bytes, void **p);
    /* The node's prepacked data (see prepack) and its size; NULL and 0 when none. */
    const void *(*kernel_packed)(const kiln_plugin_kernel *k, size_t *bytes);
    /* Threads this run may use through parallel_for, the calling one included (>= 1). */
    int (*kernel_threads)(const kiln_plugin_kernel *k);
    /* Runs fn over [0, n) in chunks of `grain` indices (0 counts as 1) on the session's
     * threads, returning when all are done. Chunks must be independent and write disjoint
     * memory; fn must not call the functions of this table. */
    void (*parallel_for)(kiln_plugin_kernel *k, size_t n, size_t grain, kiln_plugin_for_fn fn, void *ctx);
} kiln_plugin_api;

#define KILN_PLUGIN_OUTPUT_UNINIT 1u /* kernel_output: do not zero the elements */

/* The function a plugin exports under the name KILN_PLUGIN_REGISTER: declares its ops with
 * api->register_op and returns 0, or calls api->registry_error and returns non-zero to
 * decline (the load then fails and none of its ops is registered). Called once per process
 * for each library, under kiln's registry lock: it must not load other plugins. `r` is
 * valid only during the call; `api` for the life of the process (keep it). */
typedef int (*kiln_plugin_register_fn)(kiln_plugin_registry *r, const kiln_plugin_api *api);

#ifdef __cplusplus
}
#endif
#endif /* KILN_PLUGIN_H */
