/* infer_priv.h: what the files of the inference stage share (sym.c, infer.c, api.c) and
 * what the unit tests reach: the run state behind `struct kiln_infer`. Not for rule files,
 * which see only infer.h. */
#ifndef KILN_INFER_PRIV_H
#define KILN_INFER_PRIV_H

#include "infer/infer.h"

/* kiln_infer_model_ex flags. */
enum {
    /* Ignore declared value_info and graph-output types of node outputs: the result is
     * what the rules alone infer (the shape conformance harness compares that). */
    KILN_INFER_IGNORE_DECLARED = 1u << 0,
};

struct kiln_infer {
    struct kiln_model *m;
    struct kiln_arena *arena; /* where results live: the run's new inference arena */
    unsigned flags;
    kiln_problem_fn problem;
    void *user;
    size_t n_problems;
    bool nomem;    /* an allocation failed; the run fails at its end */
    size_t n_values; /* kiln_infer_model_values: known main-graph input tensors */
    const char *const *value_names;
    const struct kiln_value *const *values;
    int depth;     /* subgraph nesting */
    unsigned long fresh; /* counter behind kiln_sym_fresh */
    size_t eval_bytes;   /* inputs + outputs of the nodes evaluated so far (capped) */
    /* Hashes of the problems reported (a subgraph inferred again, as Loop bodies are until
     * their carried types settle, must not repeat its problems). */
    uint64_t *seen;
    size_t n_seen, cap_seen;
    /* Interned symbolic texts (open addressing; the strings live in the arena). */
    const char **intern;
    size_t n_intern, cap_intern;
};

/* A run state for m (no graph is touched); free with kiln_infer_fini. */
void kiln_infer_init(struct kiln_infer *inf, struct kiln_model *m);
void kiln_infer_fini(struct kiln_infer *inf);

/* kiln_infer_model with flags (KILN_INFER_*). */
KILN_NODISCARD kiln_status kiln_infer_model_ex(struct kiln_model *m, unsigned flags,
                                               kiln_problem_fn problem, void *user,
                                               size_t *n_problems, kiln_err *err);
/* kiln_infer_model_ex where the main graph's inputs names[0..n) hold the tensors values[k]
 * (copied; at most KILN_INFER_FOLD_LIMIT bytes each, larger ones give only their type): they
 * are constants for this run, as if they were initializers. */
KILN_NODISCARD kiln_status kiln_infer_model_values(struct kiln_model *m, unsigned flags, size_t n,
                                                   const char *const *names,
                                                   const struct kiln_value *const *values,
                                                   kiln_problem_fn problem, void *user,
                                                   size_t *n_problems, kiln_err *err);

/* The canonical form of a declared dim_param: an identifier ([A-Za-z_][A-Za-z0-9_]*) stays
 * as it is, anything else becomes an opaque atom "(text)"; "" gives unknown. */
struct kiln_dim kiln_sym_declared(struct kiln_infer *inf, const char *param);
/* Interns text in the run's arena; NULL on NOMEM (and inf->nomem set). */
const char *kiln_sym_intern(struct kiln_infer *inf, const char *s, size_t n);

#endif /* KILN_INFER_PRIV_H */
