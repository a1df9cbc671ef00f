/* plugin.h: the registry of ops declared by plugins (include/kiln_plugin.h), as the rest of
 * kiln sees it.
 *
 * kiln_plugin_load (kiln.h) opens a shared library and lets it declare ops; the registry
 * keeps them for the life of the process (append-only, never unloaded). The stages consult
 * it through these hooks:
 *   - kernels: kiln_cpu_find_op / kiln_cpu_has_op (cpu/kernel.c) fall back to
 *     kiln_plugin_cpu_op / kiln_plugin_declares, whose kiln_cpu_op calls the plugin;
 *   - shape inference: a node without a rule of kiln's own gets its outputs' types from the
 *     plugin's shape function (kiln_plugin_infer, from infer/infer.c);
 *   - loading and checking: kiln_plugin_check_ops refuses a model whose op nobody knows
 *     (api/model.c), kiln_op_known answers the checker.
 * Lookups take no lock: entries are published with a release store and never change.
 */
#ifndef KILN_PLUGIN_PLUGIN_H
#define KILN_PLUGIN_PLUGIN_H

#include "ir/ir.h"

struct kiln_cpu_op;
struct kiln_ictx;

/* The CPU kernel of the op a loaded plugin declares for backend "cpu" at op version
 * `version` (domain "" and "ai.onnx" are one); NULL when none does. */
const struct kiln_cpu_op *kiln_plugin_cpu_op(const char *domain, const char *op_type, int version);
/* Whether a loaded plugin declares (domain, op_type) at some version for `backend` (NULL:
 * for any backend). */
bool kiln_plugin_declares(const char *domain, const char *op_type, const char *backend);

/* Shape inference of node c->node by the plugin that declares its op at its version:
 * *handled false when none does (nothing changed). The plugin's failures become problems
 * of the node (kiln_ic_problem); the status is KILN_E_NOMEM or KILN_OK. */
KILN_NODISCARD kiln_status kiln_plugin_infer(struct kiln_ictx *c, bool *handled, kiln_err *err);

/* Whether kiln can tell what op (domain, op_type) is for model m: a domain kiln knows
 * (ai.onnx, ai.onnx.ml, ..., kiln: the checker judges those against the schema table), a
 * model-local function, one of kiln's kernels, or an op a loaded plugin declares. */
bool kiln_op_known(const struct kiln_model *m, const char *domain, const char *op_type);

/* KILN_E_UNSUPPORTED, naming the first node (of every graph, subgraph and model-local
 * function) whose op is not known (kiln_op_known): "<who>: node 'n3' (MyRelu): op 'MyRelu'
 * of domain 'com.example' is not known to kiln and no loaded plugin declares it (kiln
 * --plugin LIB.so)". KILN_OK when every op is known. */
KILN_NODISCARD kiln_status kiln_plugin_check_ops(const struct kiln_model *m, const char *who, kiln_err *err);

#endif
