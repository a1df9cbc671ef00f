/* engine.h: the runtime's own structures: an engine (immutable, shared by any number of
 * contexts) and an execution context (one arena, one frame store, per-run state).
 *
 * An engine holds the model it runs (optimized by the builder, or borrowed as given), per
 * node of every graph the kernel chosen for it and what that kernel's prepare made, the
 * optimization profiles, and what the memory planner needs (exec/plan.h): per value of the
 * main graph its size as dims that may be symbolic. Nothing in an engine changes after it
 * is built or loaded, so contexts on many threads read it without locks.
 *
 * Built by src/engine/builder.c, written and mapped back by src/engine/file.c, run by
 * src/exec/exec.c.
 */
#ifndef KILN_EXEC_ENGINE_H
#define KILN_EXEC_ENGINE_H

#include <stdatomic.h>

#include "backend/backend.h"
#include "cpu/kernel.h"
#include "exec/plan.h"

/* Blobs made by prepare (kernel.h, kiln_kprep_blob). */
struct kiln_eblob {
    uint32_t graph, node, key;
    size_t bytes;
    void *data;
    bool owned; /* kiln_aligned_alloc'd (built); false: inside the engine file's mapping */
};

/* Where prepare's results go: the engine's arena and blob list. */
struct kiln_prep_store {
    struct kiln_arena *arena;
    struct kiln_eblob *blobs;
    size_t n_blobs, cap_blobs;
    uint32_t graph, node; /* the node being prepared */
    bool loading;         /* blobs come from a file; a missing one is an error */
    /* Loading: called with each blob a kernel takes, before its data is read (engine/file.c
     * moves it out of the file mapping there), or NULL. */
    void (*fetch)(void *ctx, struct kiln_eblob *b);
    void *fetch_ctx;
};

struct kiln_enode {
    const struct kiln_cpu_op *op;
    const struct kiln_backend *be;
    const void *state;
    const char *kernel; /* prepare's name for its variant; NULL: the op's only kernel */
    int variant;
    size_t prof_id;     /* its profile entry (exec/profile.h) when profiling */
};

struct kiln_egraph {
    const struct kiln_graph *g;
    struct kiln_enode *nodes; /* per node index (not order) */
};

/* One optimization profile: per main-graph input (kiln_model_input_name order) the bounds
 * of each dim; rank -1 for inputs the profile does not constrain. */
struct kiln_eprofile {
    char *name;
    size_t n_inputs;
    int *rank;
    int64_t (*min)[KILN_MAX_RANK], (*opt)[KILN_MAX_RANK], (*max)[KILN_MAX_RANK];
    size_t arena_bytes;    /* the plan at the profile's max shapes */
    size_t sum_bytes;      /* the sum of the planned intermediates at max shapes */
};

/* Limits checked while running (kiln.h's kiln_session_options / builder). 0: none. */
struct kiln_limits {
    uint64_t max_tensor_bytes;
    uint64_t max_memory_bytes; /* arena + heap tensors of one run */
    int max_depth;             /* subgraph nesting; 0 gives KILN_DEFAULT_MAX_DEPTH */
};
#define KILN_DEFAULT_MAX_DEPTH 64

struct kiln_engine {
    struct kiln_model *model; /* owned when owns_model */
    bool owns_model;
    struct kiln_arena arena;  /* states, tables, names */
    struct kiln_prep_store store;
    size_t n_graphs;
    struct kiln_egraph *graphs;
    int threads;              /* per context (0: one per CPU) */
    struct kiln_limits limits;
    size_t n_profiles;
    struct kiln_eprofile *profiles;
    struct kiln_plan_info pinfo; /* what the planner needs of the main graph */
    size_t arena_bytes;          /* the largest planned arena over the profiles (0: none) */
    size_t scratch_bytes;        /* the largest scratch a prepared kernel declared */
    size_t n_nodes_all;          /* nodes of every graph (each node's prof_id is its index) */
    struct kiln_mapping file;    /* the engine file, when loaded from one */
    void *blob_copy;             /* where the file's used blobs were copied (huge pages), or NULL */
    uint64_t cpu_features;       /* what its kernels need (kiln_cpu_features bits) */
    const struct kiln_backend *device; /* the configured device */
    int tune;                    /* time kernel variants while preparing */
    bool static_planned;         /* no profiles and no symbols: planned at build */
    size_t static_sum_bytes;
    /* Loading: the variants saved per node, in prepare order (NULL when building) */
    const int32_t *load_variants;
    size_t n_load_variants, next_variant;
    atomic_int refs;             /* contexts and sessions holding it, plus its owner */
};

struct kiln_scratch_arena {
    uint8_t *base;
    size_t size, used;
    size_t want;               /* the largest total asked for (the next run's size) */
};

struct kiln_context {
    struct kiln_engine *e;
    struct kiln_pool *pool;     /* NULL when threads == 1 */
    struct kiln_bcache *cache;  /* heap tensors (unplanned) recycled between runs */
    struct kiln_scratch_arena scratch;
    uint8_t *arena;             /* planned intermediates */
    size_t arena_size;
    struct kiln_plan plan;      /* for the sizes bound last */
    bool plan_valid;
    int64_t *bound;             /* the symbol values the plan was made for */
    struct kiln_value *vstore;  /* value wrappers for planned tensors, per main-graph value */
    int profile;                /* the profile selected by the last run's input shapes */
    /* IO binding: per main-graph output, a caller buffer (NULL: kiln allocates) */
    void **out_buf;
    size_t *out_buf_bytes;
    struct kiln_async *async;   /* enqueue's worker (api/context.c); NULL until used */
    struct kiln_prof *prof;     /* per-node times (exec/profile.h); NULL unless profiling */
    bool prof_borrowed;         /* prof is another context's (a session's extra contexts) */
};

/* Engine lifetime (exec.c): a reference per context and session. */
void kiln_engine_retain(struct kiln_engine *e);
void kiln_engine_release(struct kiln_engine *e);

/* A new engine (one reference) running m; owns m when owns (freed on failure too). */
KILN_NODISCARD kiln_status kiln_engine_new(struct kiln_model *m, bool owns, int threads, struct kiln_engine **out,
                                           kiln_err *err);
struct kiln_builder;
/* Infers shapes, takes b's profiles, prepares and plans (b may be NULL: no profiles, no log). */
KILN_NODISCARD kiln_status kiln_engine_finish(const struct kiln_builder *b, struct kiln_engine *e, kiln_err *err);

/* Resolves every node of every graph to a kernel and prepares it (builder and loader), in
 * one fixed order (main graph nodes by index, each node's subgraphs right after it).
 * Each node's prof_id is its index in that order. */
KILN_NODISCARD kiln_status kiln_engine_prepare(struct kiln_engine *e, kiln_err *err);

/* Engine files (engine/file.c), for the fuzz target and tests: makes the n bytes of buf,
 * an engine file's image, pass the load's size and checksum checks (file size, each section
 * within the file, the header), so that what lies behind them is reached. */
void kiln_engine_file_seal(uint8_t *buf, size_t n);

/* kiln.h's run options. `cancelled` is the only field written during a run. */
struct kiln_run_options {
    atomic_int cancelled;
    double timeout_s; /* 0 = none */
};

/* Contexts (exec.c): a new one holds a reference to e. */
KILN_NODISCARD kiln_status kiln_context_new(struct kiln_engine *e, struct kiln_context **out, kiln_err *err);
void kiln_context_delete(struct kiln_context *c); /* NULL is fine */

/* Turns on per-node timing for c's runs (profile entries for every node of every graph). */
KILN_NODISCARD kiln_status kiln_context_profile_on(struct kiln_context *c, kiln_err *err);

/* Which profile admits the bound inputs (-1 when the engine has none); an error naming the
 * input, dim and bounds when none does. */
KILN_NODISCARD kiln_status kiln_engine_check_profiles(const struct kiln_engine *e,
                                                      const struct kiln_value *const *bound, int *profile,
                                                      kiln_err *err);

/* Runs the main graph in context c (exec.c). */
KILN_NODISCARD kiln_status kiln_context_run_graph(struct kiln_context *c, const struct kiln_run_options *ro,
                                                  size_t n_in, const char *const *names,
                                                  const struct kiln_value *const *inputs, size_t n_out,
                                                  struct kiln_value **outputs, kiln_err *err);

#endif
