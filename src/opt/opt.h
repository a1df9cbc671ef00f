/* opt.h: the graph optimizer's pass interface and graph-editing API (docs/optimizer.md).
 *
 * kiln_model_optimize (optimize.c) runs the passes listed in pass_table.def, in that order,
 * over the main graph and every subgraph, repeating the list until no pass changes anything
 * (or KILN_OPT_MAX_ROUNDS rounds). Each pass is one file src/opt/pass_<name>.c exporting
 * `const struct kiln_pass kiln_pass_<name>`.
 *
 * How a pass edits a graph. The IR (ir/ir.h) is arrays in the model's arena with values named
 * by strings, so a pass does not change g->nodes directly; it
 *   - marks nodes removed (kiln_opt_remove_node), initializers removed
 *     (kiln_opt_remove_init),
 *   - queues new nodes and initializers (kiln_opt_add_node, kiln_opt_add_init), allocated in
 *     the model's arena,
 *   - rewires consumers by name (kiln_opt_replace_uses, kiln_opt_set_input), which takes
 *     effect at once in the node input lists,
 * and the edits become the graph at kiln_opt_commit: removed entries are dropped, queued
 * ones appended, nodes put back in topological order, the whole model relinked
 * (kiln_graph_link) and its shapes inferred again (kiln_infer_model). The manager commits
 * after every pass run that left edits pending; a pass that wants to see its own edits
 * (links, inferred shapes) commits itself, after which node indices change.
 *
 * Between commits the link data (g->values, producers, consumers, in_ids) and the inferred
 * types describe the graph as of the last commit; the query helpers below read it. Node
 * indices are stable until the next commit. Names in node input lists are current (renames
 * apply at once), so a pass that rewrites several overlapping patterns in one run reads
 * names from the nodes, and skips nodes already removed (kiln_opt_live). When in doubt do
 * one rewrite per value and let the next round find the rest.
 *
 * Failure. Every edit function fails only with KILN_E_NOMEM (or KILN_E_INTERNAL for a
 * misuse, with a message; kiln_opt_replace_uses also with KILN_E_INVALID_MODEL when a
 * subgraph shadows the new name, which kiln_opt_can_replace checks first), and a pass
 * returns the first failure. kiln_model_optimize keeps
 * a snapshot of the model's graphs, taken before the first pass, and puts it back on any
 * failure, so the model is never left half-changed. What this asks of a pass: change the
 * model only through this API or by writing into the fields of existing nodes, attributes,
 * initializers and graph input/output/value_info entries (the snapshot covers those), never
 * into tensor data or name strings in place.
 *
 * Values all passes may rely on: the model linked without errors (no undefined or doubly
 * defined values, no cycles) before the first pass; it need not pass kiln_model_check, so
 * passes check arity and attribute types before they read them.
 */
#ifndef KILN_OPT_H
#define KILN_OPT_H

#include "infer/infer.h"
#include "ir/ir.h"

/* Rounds over the pass list before the manager stops looking for a fixed point. */
#define KILN_OPT_MAX_ROUNDS 8
/* Default of kiln_optimize_options.fold_limit_bytes. */
#define KILN_OPT_FOLD_LIMIT_DEFAULT ((size_t)1 << 20)

struct kiln_opt; /* one optimizer run (private to optimize.c / edit.c) */

struct kiln_pass {
    const char *name;     /* as in --passes and reports: "fold_constants" */
    kiln_opt_level level; /* the lowest level that runs it */
    bool needs_kiln_ops;  /* creates domain "kiln" ops: skipped unless keep_fused */
    const char *doc;      /* one line: what it rewrites */
    /* An analysis: it never edits the graph (only fields such as g->layout that the writer
     * skips). The manager runs it once, after the fixed point, over every graph; an analysis
     * that leaves edits pending fails the run with KILN_E_INTERNAL. */
    bool analysis;
    /* Rewrites g (the main graph or a subgraph; the manager visits each). Sets *changed when
     * it edited anything (the manager then commits and runs another round). Returns
     * KILN_OK, or the failure of an edit function (err already set through
     * kiln_opt_err). Must not fail on a graph it does not understand: it leaves such nodes
     * alone. */
    kiln_status (*run)(struct kiln_opt *o, struct kiln_graph *g, bool *changed);
};

/* The passes, in running order (pass_table.def). */
const struct kiln_pass *const *kiln_opt_passes(size_t *n);
const struct kiln_pass *kiln_opt_find_pass(const char *name);

/* ------------------------------------------------------------------ the run */

struct kiln_model *kiln_opt_model(const struct kiln_opt *o);
bool kiln_opt_keep_fused(const struct kiln_opt *o);
size_t kiln_opt_fold_limit(const struct kiln_opt *o); /* bytes; the default resolved */
kiln_err *kiln_opt_err(struct kiln_opt *o);           /* where a pass writes its failure */

/* One report line (kiln_optimize_options.report), prefixed with the running pass's name:
 * "fold_constants: ..." . Does nothing without a report callback. */
void kiln_opt_note(struct kiln_opt *o, const char *fmt, ...) KILN_PRINTF(2, 3);
/* Reports that nodes[0..n) of g (before removal) became `into`: "fused Conv 'c1' +
 * BatchNormalization 'bn1' -> Conv 'c1'". */
void kiln_opt_note_fused(struct kiln_opt *o, const struct kiln_graph *g, const size_t *nodes, size_t n,
                         const struct kiln_node *into);

/* ------------------------------------------------------------------ queries (as of the last commit) */

/* Node `i` of g is not marked removed in this pass run (queued nodes are not in g->nodes). */
bool kiln_opt_live(const struct kiln_opt *o, const struct kiln_graph *g, size_t i);
/* Index of the node of g producing `name`, or -1 (a graph input, initializer, outer value,
 * or unknown). */
int kiln_opt_producer(const struct kiln_graph *g, const char *name);
/* Uses of `name` in g: node inputs, implicit uses by subgraphs, and graph outputs of g
 * (each occurrence counts). 0 for unknown names. */
int kiln_opt_uses(const struct kiln_graph *g, const char *name);
bool kiln_opt_is_graph_output(const struct kiln_graph *g, const char *name);
bool kiln_opt_is_graph_input(const struct kiln_graph *g, const char *name);
/* The node of g that is the one and only use of `name` (one node input; no subgraph
 * reference, no graph output), or -1. */
int kiln_opt_single_consumer(const struct kiln_graph *g, const char *name);
/* The tensor of `name` when it is a constant: an initializer of g or of an enclosing graph
 * that is not also a graph input (an input's default can be overridden), and dense. NULL
 * otherwise (also for "", the absent input). */
const struct kiln_tensor *kiln_opt_const(const struct kiln_graph *g, const char *name);
/* A constant with exactly one element of a numeric type (float, int, bool), as a double. */
bool kiln_opt_const_scalar(const struct kiln_graph *g, const char *name, double *out);
/* Inferred type of `name` (looked up through enclosing graphs); NULL when unknown. */
const struct kiln_vtype *kiln_opt_vtype(const struct kiln_graph *g, const char *name);
/* The inferred tensor type of `name` when element type and rank are known; dims may be
 * symbolic or unknown (kiln_dim_known). */
bool kiln_opt_tensor_type(const struct kiln_graph *g, const char *name, kiln_dtype *dt, int *rank,
                          const struct kiln_dim **dims);
/* The inferred shape of `name` when every dim is known: copies rank dims into dims[]. */
bool kiln_opt_static_shape(const struct kiln_graph *g, const char *name, int *rank,
                           int64_t dims[KILN_MAX_RANK]);
/* Whether nodes a and b compute the same thing from the same inputs: same op, domain,
 * attributes (values compared, subgraph attributes never equal), inputs and output count. */
bool kiln_opt_same_node(const struct kiln_node *a, const struct kiln_node *b);
/* Node n is in the default domain with op type `op` (and live). */
bool kiln_opt_is_op(const struct kiln_opt *o, const struct kiln_graph *g, size_t n, const char *op);

/* Chains. Starting at node `first` (op ops[0]), follows output 0 through single consumers:
 * node k+1 must be the only use of node k's output 0 (kiln_opt_single_consumer), be live,
 * in the default domain with op ops[k+1]. ops is NULL-terminated; on a match idx[0..n)
 * receives the node indices (idx must hold as many as ops has entries). The last node's
 * outputs may have any uses. */
bool kiln_opt_match_chain(const struct kiln_opt *o, const struct kiln_graph *g, size_t first,
                          const char *const *ops, size_t *idx);
/* The producer of node n's input k when it is a live node of default-domain op `op` (NULL:
 * any op) whose output feeds only this input; -1 otherwise. */
int kiln_opt_input_from(const struct kiln_opt *o, const struct kiln_graph *g, size_t n, size_t k,
                        const char *op);

/* Attributes of any node, with defaults when absent or of another type. */
int64_t kiln_opt_attr_i(const struct kiln_node *n, const char *name, int64_t def);
float kiln_opt_attr_f(const struct kiln_node *n, const char *name, float def);
const char *kiln_opt_attr_s(const struct kiln_node *n, const char *name, const char *def);
/* INTS attribute: true with its entries (*v may be NULL when *count is 0); false when absent
 * or of another type. */
bool kiln_opt_attr_ints(const struct kiln_node *n, const char *name, const int64_t **v, size_t *count);
bool kiln_opt_attr_floats(const struct kiln_node *n, const char *name, const float **v, size_t *count);
/* Whether any attribute of n holds a subgraph. */
bool kiln_opt_has_subgraph(const struct kiln_node *n);

/* ------------------------------------------------------------------ edits */

/* A name unique in the whole model (every graph, and names handed out before), made from
 * `base` ("" or NULL: "opt"): base itself when free, else base_1, base_2, ... In the arena. */
KILN_NODISCARD kiln_status kiln_opt_unique_name(struct kiln_opt *o, const char *base, const char **out);

void kiln_opt_remove_node(struct kiln_opt *o, struct kiln_graph *g, size_t i);
/* Removes initializer i of g (g->inits). Initializers that are also graph inputs must stay. */
void kiln_opt_remove_init(struct kiln_opt *o, struct kiln_graph *g, size_t i);

/* Queues a new node of g: op_type in `domain` ("" = ai.onnx), inputs[0..n_in) ("" for an
 * absent optional input) and outputs[0..n_out) copied into the arena. name NULL: a unique
 * name from op_type. On KILN_OK *out (may be NULL) is the queued node, valid until the
 * commit, to which attributes are added with kiln_opt_set_attr_*. The node's `since` is
 * resolved at the commit. */
KILN_NODISCARD kiln_status kiln_opt_add_node(struct kiln_opt *o, struct kiln_graph *g, const char *op_type,
                                             const char *domain, const char *name, size_t n_in,
                                             const char *const *inputs, size_t n_out,
                                             const char *const *outputs, struct kiln_node **out);
/* Queues a new initializer of g holding a copy of t (data copied into the arena), named
 * `name` when it is free in the model, else a unique name made from it; *out_name (may be
 * NULL) receives the name used. */
KILN_NODISCARD kiln_status kiln_opt_add_init(struct kiln_opt *o, struct kiln_graph *g, const char *name,
                                             const struct kiln_tensor *t, const char **out_name);

/* kiln_opt_const, also seeing the initializers queued in this run for g (by their current
 * name; such a pointer is valid until the next edit). */
const struct kiln_tensor *kiln_opt_const_pending(const struct kiln_opt *o, const struct kiln_graph *g,
                                                 const char *name);

/* Makes every use of value `old_name` in g read `new_name` instead: node inputs of g,
 * references from g's subgraphs (at any depth) that resolve to g's value, and subgraph
 * outputs naming it. When old_name is a graph output of g, the interface name must stay,
 * so instead new_name's definition is renamed to old_name (its producing node's output, or
 * the initializer) together with all its uses; that needs new_name defined in g by a node
 * or an initializer that is not a graph input and not a graph output itself
 * (kiln_opt_can_replace says whether it is). Either way, no subgraph that reads the value
 * may define the new name itself (shadowing; can_replace says no). The pass then removes
 * old_name's producer. */
bool kiln_opt_can_replace(const struct kiln_opt *o, const struct kiln_graph *g, const char *old_name,
                          const char *new_name);
KILN_NODISCARD kiln_status kiln_opt_replace_uses(struct kiln_opt *o, struct kiln_graph *g,
                                                 const char *old_name, const char *new_name);
/* Rewires input k of node `node` of g (an existing node or a queued one) to `name`. */
KILN_NODISCARD kiln_status kiln_opt_set_input(struct kiln_opt *o, struct kiln_node *node, size_t k,
                                              const char *name);

/* Adds or replaces an attribute of a node (existing or queued); the node gets a new
 * attribute array, values are copied into the arena. */
KILN_NODISCARD kiln_status kiln_opt_set_attr_i(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                               int64_t v);
KILN_NODISCARD kiln_status kiln_opt_set_attr_f(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                               float v);
KILN_NODISCARD kiln_status kiln_opt_set_attr_s(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                               const char *v);
KILN_NODISCARD kiln_status kiln_opt_set_attr_ints(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                                  const int64_t *v, size_t count);
KILN_NODISCARD kiln_status kiln_opt_set_attr_floats(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                                    const float *v, size_t count);
KILN_NODISCARD kiln_status kiln_opt_set_attr_t(struct kiln_opt *o, struct kiln_node *n, const char *name,
                                               const struct kiln_tensor *t);
/* Copies every attribute of src onto n (subgraph attributes are shared, not copied: the
 * source node must then be removed). */
KILN_NODISCARD kiln_status kiln_opt_copy_attrs(struct kiln_opt *o, struct kiln_node *n,
                                               const struct kiln_node *src);
void kiln_opt_remove_attr(struct kiln_node *n, const char *name);

/* Makes the model import `domain` at `version` (or higher) so that new nodes of that domain
 * resolve; no change when it already does. */
KILN_NODISCARD kiln_status kiln_opt_require_opset(struct kiln_opt *o, const char *domain, int64_t version);

/* A tensor in the arena (flags 0, borrowed by the model): dt, shape, zero-filled data. */
KILN_NODISCARD kiln_status kiln_opt_new_tensor(struct kiln_opt *o, kiln_dtype dt, int rank,
                                               const int64_t *dims, struct kiln_tensor *out);

/* Applies g's pending edits (see the top of this file) and relinks and re-infers the whole
 * model. Nothing to do: returns at once. On failure the model may be half-committed; the
 * manager restores its snapshot. */
KILN_NODISCARD kiln_status kiln_opt_commit(struct kiln_opt *o, struct kiln_graph *g);
/* Whether g has edits not committed yet. */
bool kiln_opt_pending(const struct kiln_opt *o, const struct kiln_graph *g);

#endif /* KILN_OPT_H */
