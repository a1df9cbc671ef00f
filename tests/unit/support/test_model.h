/* tests/unit/support/test_model.h: small ModelProto builders for the shape-inference tests,
 * written once (test_infer_rules_b.c and test_infer_rules_c.c use them).
 *
 * On the protobuf encoder of test_pb.h, struct model builds one GraphProto: graph inputs with symbolic dims, outputs declared by name only,
 * int64 initializers, nodes with attributes (graph-valued ones for If/Loop/Scan bodies).
 * run() wraps it into a ModelProto (ir_version 8; opset imports ai.onnx, then ai.onnx.ml and
 * ai.onnx.preview.training where set), loads it with kiln_model_load_buffer and runs
 * kiln_infer_model, collecting the problems it reports; type_of() gives a value's inferred
 * type as kiln_vtype_str text ("float32[N,3,4]", "?" for an unknown dim).
 */
#ifndef KILN_TEST_MODEL_H
#define KILN_TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kiln.h"
#include "test_pb.h"
#include "test_support.h"

/* ------------------------------------------------------------------ model builder */

struct model {
    struct pb graph;
    int opset;          /* ai.onnx */
    int ml_opset;       /* ai.onnx.ml; 0: not imported */
    int training_opset; /* ai.onnx.preview.training; 0: not imported */
};

/* An empty model importing ai.onnx at `opset`. */
struct model fresh(int opset);

/* A graph input of element type dt; shape: NULL for no shape, "" for rank 0, else
 * comma-separated dims: digits (known), "?" (unknown) or a name (symbolic). */
void input(struct model *m, const char *name, kiln_dtype dt, const char *shape);
/* An output declared by name only (no type). */
void output(struct model *m, const char *name);
/* A 1-D int64 initializer (rank 0 when n is negative: one element). */
void init_i64(struct model *m, const char *name, int n, const int64_t *v);

/* Attributes, encoded into a node under construction. */
void at_i(struct pb *n, const char *name, int64_t v);
void at_s(struct pb *n, const char *name, const char *v);
void at_ints(struct pb *n, const char *name, int k, const int64_t *v);
void at_strs(struct pb *n, const char *name, int k, const char *const *v);
void at_floats(struct pb *n, const char *name, int k, const float *v);
/* A graph-valued attribute: body's graph (named after the attribute). */
void at_g(struct pb *n, const char *name, struct model *body);

/* Starts a node: inputs and outputs comma-separated ("" entries allowed: "X,,Z"). Add
 * attributes to the returned pb (one static buffer: one node at a time), then end_node. */
struct pb *node(const char *op, const char *ins, const char *outs);
/* Appends node n to m's graph, in `domain` when not NULL. */
void end_node(struct model *m, struct pb *n, const char *domain);

/* ------------------------------------------------------------------ running inference */

struct run {
    kiln_model *km;
    size_t n_problems;
    char problems[2048]; /* the problems' messages, joined by " | " */
};

/* Loads m and infers it into *r. false (after a failed CHECK) when it does not load or
 * inference fails; on true, free *r with done. */
bool run(struct model *m, struct run *r);
void done(struct run *r);
/* Value `name`'s inferred type as text (a static buffer), "(no value)" when there is none. */
const char *type_of(const struct run *r, const char *name);

/* Checks value `name`'s inferred type as text. */
#define EXPECT_TYPE(r, name, want)                                                                           \
    do {                                                                                                     \
        const char *got_ = type_of(r, name);                                                                 \
        CHECK(strcmp(got_, want) == 0, "%s: inferred %s, expected %s", name, got_, want);                    \
    } while (0)

#define EXPECT_CLEAN(r) CHECK((r)->n_problems == 0, "unexpected problems: %s", (r)->problems)
#define EXPECT_PROBLEM(r, needle)                                                                            \
    CHECK((r)->n_problems > 0 && strstr((r)->problems, needle), "expected a problem with '%s'; got '%s'",    \
          needle, (r)->problems)

#endif
