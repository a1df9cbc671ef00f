/* fuse_util.h: helpers the extended (fusion) passes share: reading float constants, adding
 * float32 initializers, recognizing activation nodes, and replacing a chain of nodes by one
 * new node. Private to src/opt/pass_fuse_*.c and pass_push_transpose.c.
 */
#ifndef KILN_OPT_FUSE_UTIL_H
#define KILN_OPT_FUSE_UTIL_H

#include "opt/opt.h"

/* The tensor of `name` when it is a constant: an initializer (queued ones included) that is
 * not an overridable input, or a value shape inference knows entirely (a Constant node's
 * output, a folded one); NULL otherwise. */
const struct kiln_tensor *fu_const(const struct kiln_opt *o, const struct kiln_graph *g,
                                   const char *name);
/* fu_const when the element type is float32. */
const struct kiln_tensor *fu_const_f32(const struct kiln_opt *o, const struct kiln_graph *g,
                                       const char *name);
/* Whether `name` is a constant (any float or integer type) whose every element equals v
 * within |x - v| <= tol * |v| (tol 0: exactly). False for non-constants and empty tensors. */
bool fu_const_all(const struct kiln_opt *o, const struct kiln_graph *g, const char *name,
                  double v, double tol);
/* Queues a float32 initializer of shape dims[0..rank) holding data (copied); *name is its
 * name, made from base. */
KILN_NODISCARD kiln_status fu_add_f32(struct kiln_opt *o, struct kiln_graph *g, const char *base,
                                      int rank, const int64_t *dims, const float *data,
                                      const char **name);
/* Sets the run's error to out of memory and returns KILN_E_NOMEM. */
kiln_status fu_nomem(struct kiln_opt *o);
/* A kiln_malloc'd float copy of a float32 constant's data (numel(t) floats, at least one);
 * NULL with KILN_E_NOMEM set in the run's error. Free with kiln_free. */
float *fu_copy_f32(struct kiln_opt *o, const struct kiln_tensor *t);
/* Input index (0 or 1) of binary node n that is not `x`, when exactly one of its first two
 * inputs is x; -1 otherwise. */
int fu_other(const struct kiln_node *n, const char *x);
/* The model's ai.onnx opset. */
int64_t fu_opset(const struct kiln_opt *o);
/* Node i of g is live, in domain `domain` ("" = ai.onnx) with op type `op`. */
bool fu_is(const struct kiln_opt *o, const struct kiln_graph *g, int i, const char *domain,
           const char *op);
/* Inferred element type of `name` is float32 (false when unknown). */
bool fu_is_f32(const struct kiln_graph *g, const char *name);
/* Output 0 of node i of g, when it has exactly one use, by a live node: that node's index;
 * -1 otherwise (also for graph outputs). */
int fu_next(const struct kiln_opt *o, const struct kiln_graph *g, size_t i);

/* Whether the matched nodes[0..n) of g are self-contained: every output of theirs other than
 * keep[0..n_keep) is used only by inputs of these nodes (and is no graph output), so that
 * removing them all leaves no reader behind. */
bool fu_closed(const struct kiln_graph *g, const size_t *nodes, size_t n, const char *const *keep,
               size_t n_keep);

/* An activation the fused ops take (cpu/act.h): the op name, parameters and approximation. */
struct fu_act {
    const char *name; /* "" for none */
    float p[2];
    size_t np;
    const char *approx; /* Gelu: "none" or "tanh"; NULL otherwise */
};
/* Whether node i is an activation the fused ops can absorb whose input is `x` (output 0
 * then is the activation's result): Relu, LeakyRelu, Sigmoid, Tanh, HardSigmoid, HardSwish,
 * Clip with constant bounds, Gelu / kiln.Gelu. SiLU (Mul(x, Sigmoid(x))) is matched by
 * fu_match_silu. */
bool fu_activation(const struct kiln_opt *o, const struct kiln_graph *g, size_t i, const char *x,
                   struct fu_act *a);
/* SiLU on x: x has exactly two uses, Sigmoid node *sig (whose only use is the Mul) and Mul
 * node *mul with inputs {x, sigmoid}. */
bool fu_match_silu(const struct kiln_opt *o, const struct kiln_graph *g, const char *x,
                   size_t *sig, size_t *mul);

/* Queues a node replacing nodes[0..n) of g (all removed): op in domain (a "kiln" op
 * requires the kiln opset), named after nodes[0], inputs ins[0..n_in), outputs outs[0..n_out)
 * (normally the last node's output names, which the removed nodes no longer define), with
 * src's attributes copied when src is not NULL. Notes the fusion. *out: the new node. */
KILN_NODISCARD kiln_status fu_replace(struct kiln_opt *o, struct kiln_graph *g, const size_t *nodes,
                                      size_t n, const char *op, const char *domain, size_t n_in,
                                      const char *const *ins, size_t n_out,
                                      const char *const *outs, const struct kiln_node *src,
                                      struct kiln_node **out);
/* Union-find over node indices (the layout passes' regions): the root of i in the parent
 * array p, halving the path on the way. */
size_t fu_find(size_t *p, size_t i);

/* Sets the activation attributes of a fused node (nothing for none). */
KILN_NODISCARD kiln_status fu_set_act(struct kiln_opt *o, struct kiln_node *n, const struct fu_act *a);
/* An INTS attribute of n absent or all equal to v. */
bool fu_ints_all(const struct kiln_node *n, const char *name, int64_t v);
/* A Transpose's permutation into perm (*rank entries), validated as a permutation of
 * 0..rank-1; an absent perm (reverse the dims) needs the input's rank from shape inference. */
bool fu_transpose_perm(const struct kiln_graph *g, const struct kiln_node *n, int64_t *perm, size_t *rank);
/* The inferred shape of `name` into d when it is float32 of rank 4 with every dim known. */
bool fu_shape4(const struct kiln_graph *g, const char *name, int64_t d[4]);
/* The activation attributes of a fused op n (activation, activation_params, approximate) as a
 * fu_act (name "" when it has none). */
void fu_node_act(const struct kiln_node *n, struct fu_act *a);

#endif
