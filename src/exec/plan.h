/* plan.h: the memory planner.
 *
 * Every intermediate tensor of the main graph whose size follows from the input shapes
 * (known dims, or symbolic dims that are polynomials over the inputs' symbols) gets an
 * offset in one arena. Lifetimes come from the execution order: a tensor lives from the
 * node that produces it to its last consumer (implicit inputs of subgraphs included). Two
 * tensors whose lifetimes overlap never overlap in memory; the others share it. Placement
 * is greedy by size with best fit: the largest tensors first, each into the smallest gap
 * between already-placed tensors that live at the same time, else above them all. A node
 * whose kernel allows it (KILN_OP_INPLACE, KILN_OP_INPLACE_FROM) writes output 0 over input 0
 * (or the input the flag names) when that input dies there and both have the same size: the
 * two share one block. Offsets are multiples of
 * KILN_PLAN_ALIGN.
 *
 * Not planned (they come from the heap at run time, the documented escape): graph outputs
 * (they leave with the caller), strings, sequences and optionals, tensors whose size depends
 * on data (a symbol that no input binds), and everything inside subgraphs.
 *
 * Sizes are worked out per set of symbol values: at build time for each optimization
 * profile's largest shapes (which sizes the arena), and in a context whenever a run's input
 * shapes bind the symbols to new values (a few microseconds; no rebuild).
 */
#ifndef KILN_EXEC_PLAN_H
#define KILN_EXEC_PLAN_H

#include "ir/ir.h"

#define KILN_PLAN_ALIGN 64

struct kiln_egraph;

/* What the planner knows of the main graph, made once per engine. */
struct kiln_plan_info {
    size_t n_values;
    int *first, *last;           /* per value: order position of its producer, of its last use */
    bool *plannable;
    int *alias;                  /* per value: the value it may overwrite in place, -1 */
    int *alias_pos;              /* per value: that value's input position on the producer */
    kiln_dtype *dtype;
    int *rank;
    const struct kiln_dim **dims; /* per value: rank dims (known or symbolic) */
    /* Symbols: the names of the main-graph inputs' symbolic dims, and where each is read
     * (every occurrence: graph input index and dim; all must agree) */
    size_t n_syms, n_occ;
    const char **sym;
    int *occ_sym, *occ_input, *occ_dim;
};

struct kiln_plan {
    size_t n_values;
    size_t arena_bytes;  /* the arena this plan needs */
    size_t sum_bytes;    /* the sum of the planned tensors' sizes (no sharing) */
    size_t n_planned;
    size_t *off;         /* per value: its offset in the arena */
    size_t *cap;         /* per value: its size in bytes; 0 when not planned */
    int *alias;          /* per value: the input position of its producer it shares memory
                          * with (-1: none) */
};

/* Builds pi for eg's graph from its inferred types (src/infer), in the engine's arena. */
KILN_NODISCARD kiln_status kiln_plan_info_init(struct kiln_plan_info *pi, struct kiln_arena *a,
                                               const struct kiln_egraph *eg, kiln_err *err);

/* The symbols' values from the inputs bound to the main graph (bound[i] for graph input i,
 * NULL when absent): false when an input binds a symbol to two values or is missing (the
 * run then goes unplanned). sym_values has pi->n_syms entries. */
bool kiln_plan_bind(const struct kiln_plan_info *pi, const struct kiln_graph *g,
                    const struct kiln_value *const *bound, int64_t *sym_values);
/* The same from shapes: dims[i] (rank[i] entries) for graph input i. */
bool kiln_plan_bind_shapes(const struct kiln_plan_info *pi, const int *rank,
                           const int64_t (*dims)[KILN_MAX_RANK], int64_t *sym_values);

/* Plans for the given symbol values. out's arrays are new (kiln_plan_free). */
KILN_NODISCARD kiln_status kiln_plan_make(const struct kiln_plan_info *pi, const int64_t *sym_values,
                                          struct kiln_plan *out, kiln_err *err);
void kiln_plan_free(struct kiln_plan *p);

#endif
