/* eval.h: evaluates one node on the CPU outside a session, for the stages that compute
 * constants ahead of time (shape inference's shape arithmetic, the optimizer's constant
 * folding). */
#ifndef KILN_EXEC_EVAL_H
#define KILN_EXEC_EVAL_H

#include "ir/ir.h"

/* Whether kiln_eval_node can evaluate node n of model m: it has a CPU kernel at its
 * resolved version, no subgraph attribute, and is deterministic (not a random op). */
bool kiln_eval_can(const struct kiln_model *m, const struct kiln_node *n);

/* Runs node n (of model m) on in[0..n->n_in) (NULL for absent inputs); out[0..n->n_out)
 * receive new values (NULL for unwanted outputs), owned by the caller. On failure nothing is
 * returned and err says why (the kernel's message). One thread. */
KILN_NODISCARD kiln_status kiln_eval_node(const struct kiln_model *m, const struct kiln_node *n,
                                          const struct kiln_value *const *in, struct kiln_value **out,
                                          kiln_err *err);

/* Runs kernel `op` on node n at op version `opset`: its prepare first (with the inputs'
 * concrete types, every input treated as a constant), then run, on `pool` (NULL: inline).
 * The outputs as kiln_eval_node's. For tests and kiln_eval_node. */
struct kiln_cpu_op;
struct kiln_pool;
KILN_NODISCARD kiln_status kiln_eval_kernel(const struct kiln_cpu_op *op, const struct kiln_node *n, int opset,
                                            const struct kiln_value *const *in, struct kiln_value **out,
                                            struct kiln_pool *pool, kiln_err *err);

#endif
