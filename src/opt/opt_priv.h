/* opt_priv.h: the optimizer run's state, shared by optimize.c (the manager) and edit.c (the
 * editing API of opt.h). Passes do not include this. */
#ifndef KILN_OPT_PRIV_H
#define KILN_OPT_PRIV_H

#include "opt/opt.h"

/* A set of strings (borrowed), open addressing. */
struct opt_nameset {
    size_t cap, n; /* cap: power of two or 0 */
    const char **slots;
};
bool opt_nameset_has(const struct opt_nameset *s, const char *name);
/* false on NOMEM */
bool opt_nameset_add(struct opt_nameset *s, const char *name);
void opt_nameset_free(struct opt_nameset *s);

/* Edits pending for one graph (the one the running pass edits). */
struct opt_pending {
    struct kiln_graph *g;
    size_t n_nodes, n_inits; /* sizes of g's arrays when the edit began */
    uint8_t *node_removed, *init_removed;
    size_t n_node_removed, n_init_removed;
    struct kiln_node **new_nodes; /* arena nodes; the array is kiln_malloc'd */
    size_t n_new, cap_new;
    struct kiln_initializer *new_inits; /* kiln_malloc'd array, contents in the arena */
    size_t n_new_inits, cap_new_inits;
    bool renamed; /* names were rewritten (relink needed even without other edits) */
    bool misuse;  /* an edit named a graph other than g: the commit fails */
};

struct kiln_opt {
    struct kiln_model *m;
    kiln_optimize_options opt;
    size_t fold_limit;
    kiln_err *err;
    const struct kiln_pass *pass; /* running pass (report prefix) */
    struct opt_pending pend;
    struct opt_nameset names; /* every name of the model, and each one handed out */
    unsigned long name_counter;
    size_t n_notes;
};

/* Starts editing g (allocates its removal flags); pending edits of another graph must have
 * been committed. */
KILN_NODISCARD kiln_status opt_begin(struct kiln_opt *o, struct kiln_graph *g);
void opt_pending_free(struct opt_pending *p);
/* Collects every name of every graph of the model into o->names. */
KILN_NODISCARD kiln_status opt_collect_names(struct kiln_opt *o);
/* Relinks the whole model (problems recorded as kiln_model_link does), sorts graphs whose
 * node order is not topological, and infers shapes again. A link error afterwards means a
 * pass broke the graph: KILN_E_INTERNAL naming it. */
KILN_NODISCARD kiln_status opt_relink(struct kiln_opt *o);

#endif
