/* profile.h: per-node timing for sessions created with options.profile (exec/profile.c).
 *
 * The executor registers every node once, at session creation (kiln_prof_add), and, only
 * when profiling is on, runs each node through kiln_prof_run, which times the kernel call
 * and records the outputs' shapes and one trace event. */
#ifndef KILN_EXEC_PROFILE_H
#define KILN_EXEC_PROFILE_H

#include "cpu/kernel.h"

struct kiln_prof;

/* A new, empty profile; NULL on NOMEM. */
struct kiln_prof *kiln_prof_create(void);
void kiln_prof_free(struct kiln_prof *p); /* NULL is fine */

/* Registers node n run by `op` on `backend` (its prepared variant's name, or NULL) as entry
 * number *index. prefix: the enclosing node's entry
 * name ("" in the main graph); depth 0 in the main graph. node_index names an unnamed node. */
kiln_status kiln_prof_add(struct kiln_prof *p, const char *prefix, int depth, const struct kiln_node *n,
                          size_t node_index, const struct kiln_cpu_op *op, const char *backend,
                          const char *variant, size_t *index, kiln_err *err);
/* Entry i's full name (for the prefix of its subgraphs' nodes). */
const char *kiln_prof_name(const struct kiln_prof *p, size_t i);

/* Runs op on k, timing it as entry i. */
kiln_status kiln_prof_run(struct kiln_prof *p, size_t i, const struct kiln_cpu_op *op, struct kiln_kctx *k);

#endif
