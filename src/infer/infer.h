/* infer.h: shape and type inference, the stage between the checker and the optimizer.
 *
 * kiln_infer_model() walks every graph in topological order and gives each value a
 * `struct kiln_vtype`: its type (element type, rank, dims), whether it depends on data, and
 * what is known of its contents (a whole constant, or the elements of a small integer
 * tensor as dims: the Shape -> Gather -> Concat -> Reshape arithmetic that exporters emit).
 * Results live in the model's inference arena (m->infer_arena), in g->vtypes[value id], until
 * the graph is relinked or inference runs again (each run replaces the last one's results).
 *
 * Dims. A `struct kiln_dim` (ir.h) is known (value >= 0), symbolic (value -1, param a
 * canonical expression over symbols: "N", "seq+1", "8*N", "N*seq", "(H-1)/2"... see sym.c)
 * or unknown (value -1, param NULL). Two symbolic dims are equal exactly when their
 * canonical texts are equal. Arithmetic goes through kiln_sym_*; a result that is not a
 * polynomial with integer coefficients becomes an opaque atom in parentheses.
 *
 * Per-op rules. Each op family is one file src/infer/shape_<family>.c exporting
 * `const struct kiln_infer_op kiln_infer_ops_<family>[]` (terminated by {0}); the
 * families are listed in src/infer/op_table.def. A rule reads its inputs' vtypes and the
 * node's attributes and sets its outputs' types through the kiln_ic_* helpers. A rule that
 * finds a contradiction (incompatible broadcast, wrong rank, a dim that must match and does
 * not) calls kiln_ic_problem() with a message and leaves the outputs it cannot know unset;
 * it returns a non-OK status only for NOMEM. A node without a rule whose inputs are all
 * constant is evaluated with its CPU kernel (when small; see KILN_INFER_FOLD_LIMIT); any
 * node whose inputs are all constant is evaluated that way too, before its rule.
 */
#ifndef KILN_INFER_H
#define KILN_INFER_H

#include "ir/ir.h"

/* Constants up to this many bytes are computed during inference (Shape arithmetic, folded
 * Constant subgraphs); larger outputs get only their type. */
#define KILN_INFER_FOLD_LIMIT ((size_t)1 << 16)
/* Small integer tensors (rank 0 or 1, at most this many elements) carry their elements as
 * dims (symbolic shape arithmetic). */
#define KILN_INFER_MAX_VALS 64

struct kiln_vtype {
    struct kiln_type type;  /* kind KILN_TYPE_NONE when nothing is known; rank -1: unknown rank */
    bool data_dependent;    /* some dim (or the rank) depends on the data, not only on shapes */
    /* Elements of a rank-0/1 integer tensor, as dims (known ints or symbolic), when known:
     * n_vals >= 0 entries; -1 when unknown. */
    int n_vals;
    struct kiln_dim *vals;
    /* The whole value, when it is a known constant (initializer, Constant, folded);
     * NULL otherwise. Borrowed from the model (initializers, Constant attributes) or in the
     * inference arena. */
    const struct kiln_tensor *konst;
};

struct kiln_infer; /* one inference run (private to infer.c) */

/* What a rule sees of one node. */
struct kiln_ictx {
    struct kiln_infer *inf;
    struct kiln_model *m;
    struct kiln_graph *g;
    const struct kiln_node *node;
    int opset;                          /* the node's resolved op version (since_version) */
    size_t n_in, n_out;
    const struct kiln_vtype *const *in; /* in[i]: NULL for an absent optional input */
    struct kiln_vtype *const *out;      /* out[i]: NULL for an unwanted output ("") */
};

struct kiln_infer_op {
    const char *name;   /* op_type */
    const char *domain; /* "" for ai.onnx */
    int since, until;   /* op versions handled, inclusive (until 0: no upper limit) */
    kiln_status (*infer)(struct kiln_ictx *c);
};

/* ------------------------------------------------------------------ running it */

/* Infers every graph of the model (subgraphs through their nodes' rules). Problems
 * (contradictions with declared types, rule problems) go to `problem` (may be NULL) as one
 * line each, naming the node; *n_problems counts them (may be NULL). Fails only on NOMEM
 * or a graph that is not linked/acyclic. */
KILN_NODISCARD kiln_status kiln_infer_model(struct kiln_model *m, kiln_problem_fn problem, void *user,
                                            size_t *n_problems, kiln_err *err);
/* The inferred type of value `id` of g; NULL when g has not been inferred. */
const struct kiln_vtype *kiln_infer_value(const struct kiln_graph *g, int id);
/* By name, looking through enclosing graphs; NULL when unknown. */
const struct kiln_vtype *kiln_infer_lookup(const struct kiln_graph *g, const char *name);
/* The rule for an op at a resolved version; NULL if none. */
const struct kiln_infer_op *kiln_infer_find_op(const char *domain, const char *op_type, int version);
/* Type as text, as kiln_type_str writes it, with " (data-dependent)" when it is. */
size_t kiln_vtype_str(const struct kiln_vtype *t, char *buf, size_t size);

/* ------------------------------------------------------------------ symbolic dims */

static inline struct kiln_dim kiln_dim_int(int64_t v) { return (struct kiln_dim){.value = v}; }
static inline struct kiln_dim kiln_dim_unknown(void) { return (struct kiln_dim){.value = -1}; }
static inline bool kiln_dim_known(struct kiln_dim d) { return d.value >= 0; }
/* Known, or symbolic (not unknown). */
static inline bool kiln_dim_defined(struct kiln_dim d) { return d.value >= 0 || d.param; }
/* Equal: both known and equal, or both symbolic with the same canonical text. Unknown dims
 * are equal to nothing. */
bool kiln_dim_eq(struct kiln_dim a, struct kiln_dim b);
/* Definitely different: both known and different (symbols may stand for any size). */
bool kiln_dim_ne(struct kiln_dim a, struct kiln_dim b);

/* Arithmetic; an unknown operand gives unknown. Results are interned in the run's arena
 * (the run's arena via inf). On NOMEM they give unknown and the run fails at its end. */
struct kiln_dim kiln_sym_add(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
struct kiln_dim kiln_sym_sub(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
struct kiln_dim kiln_sym_mul(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
/* floor(a / b) and ceil(a / b); b known and > 0 folds exactly when it divides every
 * coefficient, else an opaque atom "(expr)/b". b symbolic: opaque atom too. */
struct kiln_dim kiln_sym_floordiv(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
struct kiln_dim kiln_sym_ceildiv(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
/* min/max of two dims (known: exact; equal: that dim; else an opaque atom). */
struct kiln_dim kiln_sym_min(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
struct kiln_dim kiln_sym_max(struct kiln_infer *inf, struct kiln_dim a, struct kiln_dim b);
/* An integer as a dim. Non-negative: known. Negative: value -1 with param the constant's
 * text ("-1"): the elements of small integer tensors (vals) may be negative (Reshape's -1,
 * Slice's starts), and that must not read as unknown. Such a dim is never a valid size. */
struct kiln_dim kiln_sym_int(struct kiln_infer *inf, int64_t v);
/* d as an integer when it is one (known, or a negative constant from kiln_sym_int). */
bool kiln_dim_int_value(struct kiln_dim d, int64_t *v);
/* The value of symbolic dim text (a polynomial over identifiers) with each identifier's value
 * from lookup(user, name, name_len, &value) (false: unbound). False when the text is not a
 * polynomial over identifiers (opaque atoms such as "(H-1)/2"), a symbol is unbound, or
 * the arithmetic overflows. */
typedef bool (*kiln_sym_lookup_fn)(void *user, const char *name, size_t len, int64_t *value);
bool kiln_sym_eval(const char *text, kiln_sym_lookup_fn lookup, void *user, int64_t *out);
/* A new symbol for a data-dependent size, unique in the model: "<prefix>_<n>" (e.g.
 * "NonZero_3"). Rules that produce one also set the output's data_dependent flag. */
struct kiln_dim kiln_sym_fresh(struct kiln_infer *inf, const char *prefix);

/* ------------------------------------------------------------------ helpers for rules */

/* Input i's vtype (NULL when absent); its tensor type when it is a tensor with a known
 * element type and rank (returns false otherwise: unknown rank, not a tensor, absent). */
const struct kiln_vtype *kiln_ic_in(const struct kiln_ictx *c, size_t i);
bool kiln_ic_in_tensor(const struct kiln_ictx *c, size_t i, kiln_dtype *dt, int *rank,
                       const struct kiln_dim **dims);
/* Input i's element type (UNDEFINED when unknown or absent), rank (-1 unknown). */
kiln_dtype kiln_ic_in_dtype(const struct kiln_ictx *c, size_t i);
int kiln_ic_in_rank(const struct kiln_ictx *c, size_t i);
/* Input i as a known constant tensor, NULL when not known. */
const struct kiln_tensor *kiln_ic_const(const struct kiln_ictx *c, size_t i);
/* Input i's elements as dims (a rank-0/1 integer tensor whose elements are known or
 * symbolic: a constant, or Shape arithmetic); false when not known. */
bool kiln_ic_vals(const struct kiln_ictx *c, size_t i, int *n, const struct kiln_dim **vals);
/* Input i as known integers (every element known, at most KILN_INFER_MAX_VALS... or a
 * constant of any size up to cap entries): copies into v[0..*n); false otherwise. */
bool kiln_ic_ints(const struct kiln_ictx *c, size_t i, int64_t *v, size_t cap, size_t *n);

/* Attributes (defaults when absent). */
int64_t kiln_ic_attr_i(const struct kiln_ictx *c, const char *name, int64_t def);
float kiln_ic_attr_f(const struct kiln_ictx *c, const char *name, float def);
const char *kiln_ic_attr_s(const struct kiln_ictx *c, const char *name, const char *def);
size_t kiln_ic_attr_ints(const struct kiln_ictx *c, const char *name, const int64_t **v);
bool kiln_ic_attr_has(const struct kiln_ictx *c, const char *name);

/* Output i's type: a tensor of dt with rank dims (rank -1: unknown rank, dims NULL; dims
 * copied). Unwanted outputs are ignored. dt UNDEFINED: element type unknown. */
KILN_NODISCARD kiln_status kiln_ic_set_tensor(struct kiln_ictx *c, size_t i, kiln_dtype dt, int rank,
                                              const struct kiln_dim *dims);
/* Output i gets input j's type (any kind: tensor, sequence, optional), without contents. */
KILN_NODISCARD kiln_status kiln_ic_set_like(struct kiln_ictx *c, size_t i, size_t j);
/* Output i gets type t (copied; any kind). */
KILN_NODISCARD kiln_status kiln_ic_set_type(struct kiln_ictx *c, size_t i, const struct kiln_type *t);
/* Output i's elements as dims (rank 0/1 integer outputs; shape arithmetic). */
KILN_NODISCARD kiln_status kiln_ic_set_vals(struct kiln_ictx *c, size_t i, int n,
                                            const struct kiln_dim *vals);
/* Marks output i as data-dependent (its shape comes from the data). */
void kiln_ic_data_dependent(struct kiln_ictx *c, size_t i);

/* Multidirectional (numpy) broadcast of inputs' shapes: the result rank and dims into
 * out[KILN_MAX_RANK]. False when a rank is unknown; reports a problem (and returns false)
 * for known dims that cannot broadcast. */
bool kiln_ic_broadcast(struct kiln_ictx *c, size_t n, const size_t *inputs, int *rank,
                       struct kiln_dim *out);

/* Reports a problem with this node: "OpType node 'name': <message>". */
void kiln_ic_problem(struct kiln_ictx *c, const char *fmt, ...) KILN_PRINTF(2, 3);

/* Infers subgraph sg (an attribute of this node) with its inputs typed as in_types (NULL
 * entries: unknown); afterwards sg->vtypes holds its values (read outputs with
 * kiln_infer_lookup(sg, sg->outputs[k].name)). */
KILN_NODISCARD kiln_status kiln_ic_subgraph(struct kiln_ictx *c, struct kiln_graph *sg, size_t n_in,
                                            const struct kiln_type *const *in_types);

/* Normalizes a possibly negative axis for rank r; false (and a problem) when out of range. */
bool kiln_ic_axis(struct kiln_ictx *c, int64_t axis, int rank, int *out);

#endif /* KILN_INFER_H */
