/* tests/unit/support/test_model.c: the ModelProto builders of test_model.h. */
#include "test_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"

void at_floats(struct pb *n, const char *name, int k, const float *v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < k; i++) pb_float(&a, 7, v[i]);
    pb_int(&a, 20, KILN_ATTR_FLOATS);
    pb_msg(n, 5, &a);
}

/* ------------------------------------------------------------------ model builder */

/* A graph input of element type dt; shape: NULL for no shape, "" for rank 0, else
 * comma-separated dims: digits (known), "?" (unknown) or a name (symbolic). */
void input(struct model *m, const char *name, kiln_dtype dt, const char *shape)
{
    struct pb vi = {0}, tp = {0}, tt = {0}, sh = {0};
    pb_str(&vi, 1, name);
    pb_int(&tt, 1, dt);
    if (shape) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", shape);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
            struct pb dim = {0};
            if (tok[0] >= '0' && tok[0] <= '9')
                pb_int(&dim, 1, strtoll(tok, NULL, 10));
            else if (strcmp(tok, "?") != 0)
                pb_str(&dim, 2, tok);
            pb_msg(&sh, 1, &dim);
        }
        pb_msg(&tt, 2, &sh);
    }
    pb_msg(&tp, 1, &tt);
    pb_msg(&vi, 2, &tp);
    pb_msg(&m->graph, 11, &vi);
}

/* An output declared by name only (no type). */
void output(struct model *m, const char *name)
{
    struct pb vi = {0};
    pb_str(&vi, 1, name);
    pb_msg(&m->graph, 12, &vi);
}

/* A 1-D int64 initializer (rank 0 when n is negative: one element). */
void init_i64(struct model *m, const char *name, int n, const int64_t *v)
{
    struct pb t = {0};
    if (n >= 0) pb_int(&t, 1, n);
    pb_int(&t, 2, KILN_DTYPE_I64);
    for (int i = 0; i < (n < 0 ? 1 : n); i++) pb_int(&t, 7, v[i]);
    pb_str(&t, 8, name);
    pb_msg(&m->graph, 5, &t);
}

/* Attributes, encoded into a node under construction. */
void at_i(struct pb *n, const char *name, int64_t v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_int(&a, 3, v);
    pb_int(&a, 20, KILN_ATTR_INT);
    pb_msg(n, 5, &a);
}

void at_s(struct pb *n, const char *name, const char *v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_str(&a, 4, v);
    pb_int(&a, 20, KILN_ATTR_STRING);
    pb_msg(n, 5, &a);
}

void at_ints(struct pb *n, const char *name, int k, const int64_t *v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < k; i++) pb_int(&a, 8, v[i]);
    pb_int(&a, 20, KILN_ATTR_INTS);
    pb_msg(n, 5, &a);
}

void at_strs(struct pb *n, const char *name, int k, const char *const *v)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    for (int i = 0; i < k; i++) pb_str(&a, 9, v[i]);
    pb_int(&a, 20, KILN_ATTR_STRINGS);
    pb_msg(n, 5, &a);
}

/* Starts a node: inputs and outputs comma-separated ("" entries allowed: "X,,Z"). Add
 * attributes to the returned pb, then end_node. */
struct pb *node(const char *op, const char *ins, const char *outs)
{
    static struct pb n;
    memset(&n, 0, sizeof n);
    const char *lists[2] = {ins, outs};
    for (int l = 0; l < 2; l++) {
        const char *s = lists[l];
        while (s && *s) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            pb_bytes(&n, l == 0 ? 1 : 2, s, len);
            if (!e) break;
            s = e + 1;
            if (!*s) pb_bytes(&n, l == 0 ? 1 : 2, "", 0);
        }
    }
    pb_str(&n, 3, op);
    pb_str(&n, 4, op);
    return &n;
}

void end_node(struct model *m, struct pb *n, const char *domain)
{
    if (domain) pb_str(n, 7, domain);
    pb_msg(&m->graph, 1, n);
}

void at_g(struct pb *n, const char *name, struct model *body)
{
    struct pb a = {0};
    pb_str(&a, 1, name);
    pb_str(&body->graph, 2, name);
    pb_msg(&a, 6, &body->graph);
    pb_int(&a, 20, KILN_ATTR_GRAPH);
    pb_msg(n, 5, &a);
}

/* ------------------------------------------------------------------ running inference */

static void on_problem(void *user, const char *msg)
{
    struct run *r = user;
    size_t l = strlen(r->problems);
    snprintf(r->problems + l, sizeof r->problems - l, "%s%s", l ? " | " : "", msg);
}

bool run(struct model *m, struct run *r)
{
    struct pb mp = {0}, op = {0};
    memset(r, 0, sizeof *r);
    pb_int(&mp, 1, 8); /* ir_version */
    pb_str(&m->graph, 2, "g");
    pb_msg(&mp, 7, &m->graph);
    pb_int(&op, 2, m->opset);
    pb_msg(&mp, 8, &op);
    if (m->ml_opset) {
        struct pb t = {0};
        pb_str(&t, 1, "ai.onnx.ml");
        pb_int(&t, 2, m->ml_opset);
        pb_msg(&mp, 8, &t);
    }
    if (m->training_opset) {
        struct pb t = {0};
        pb_str(&t, 1, "ai.onnx.preview.training");
        pb_int(&t, 2, m->training_opset);
        pb_msg(&mp, 8, &t);
    }
    kiln_err err = {0};
    if (kiln_model_load_buffer(mp.data, mp.len, NULL, &r->km, &err) != KILN_OK) {
        CHECK(0, "model does not load: %s", err.msg);
        return false;
    }
    if (kiln_infer_model((struct kiln_model *)r->km, on_problem, r, &r->n_problems, &err) != KILN_OK) {
        CHECK(0, "inference fails: %s", err.msg);
        kiln_model_free(r->km);
        r->km = NULL;
        return false;
    }
    return true;
}

const char *type_of(const struct run *r, const char *name)
{
    static char buf[512];
    const struct kiln_vtype *v = kiln_infer_lookup(((struct kiln_model *)r->km)->graph, name);
    if (!v) return "(no value)";
    kiln_vtype_str(v, buf, sizeof buf);
    return buf;
}

void done(struct run *r)
{
    kiln_model_free(r->km);
}

struct model fresh(int opset)
{
    struct model m;
    memset(&m, 0, sizeof m);
    m.opset = opset;
    return m;
}
