/* schema.h: which ONNX ops exist, in which versions (from the ONNX operator changelog).
 *
 * One table (schema_table.def) lists, per op and domain, every version in which the op's
 * schema changed. Resolving a node means picking the largest such version that is <= the
 * model's imported opset for the node's domain, as onnx.checker and ONNX Runtime do.
 */
#ifndef KILN_OPS_SCHEMA_H
#define KILN_OPS_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

struct kiln_op_schema {
    const char *domain;  /* "" for ai.onnx, "ai.onnx.ml", "ai.onnx.preview.training", ... */
    const char *name;
    int n_versions;
    const int *versions; /* ascending since_versions */
    int deprecated_since; /* 0 if never deprecated */
};

/* The schema of (domain, op_type), or NULL if kiln does not know the op. domain "" and
 * "ai.onnx" are the same. */
const struct kiln_op_schema *kiln_schema_find(const char *domain, const char *op_type);

/* The since_version selected by an imported opset `opset`: the largest listed version
 * <= opset. Returns 0 when the op did not exist yet at `opset` (or is unknown), and -1
 * when it is deprecated/removed at `opset`. */
int kiln_schema_resolve(const char *domain, const char *op_type, int64_t opset);

/* The newest opset kiln knows for a domain ("" -> e.g. 23); 0 if the domain is unknown. */
int kiln_schema_latest(const char *domain);

/* Refuses an opset import newer than kiln knows, for a domain kiln knows (other domains are
 * not ours to judge and pass): KILN_E_UNSUPPORTED with "<who> imports opset ai.onnx 999;
 * kiln knows ai.onnx up to 28" in *err (who is e.g. "model 'a.onnx'"). Such a model would
 * otherwise resolve every node to the newest schema kiln knows, silently running semantics
 * the model's producer did not ask for. */
kiln_status kiln_schema_check_import(const char *who, const char *domain, int64_t version,
                                     kiln_err *err);

#endif
