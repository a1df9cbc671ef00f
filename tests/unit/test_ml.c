/* test_ml.c: the ai.onnx.ml kernels (src/cpu/ops/ml.c) and the ai.onnx.preview.training
 * optimizers (src/cpu/ops/training.c) on small cases evaluated by hand.
 *
 * Covers: tree ensembles in both encodings (v1/v3 TreeEnsembleRegressor/Classifier with
 * (treeid, nodeid) nodes, v5 TreeEnsemble with leaf arrays and BRANCH_MEMBER), every
 * aggregate function, NaN routing, the binary classifier convention; linear and SVM models;
 * LabelEncoder (v1, v2, v4 tensors, NaN keys, repeated keys, defaults); the small feature
 * ops; Adagrad, Adam and Momentum (standard, nesterov, several tensors). Hostile attributes
 * (cycles, ids out of range, mismatched lengths, features beyond X) must give a status with
 * a message, never a crash or a hang; every allocation failing in turn must give NOMEM.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernel.h"
#include "test_support.h"

#define ML "ai.onnx.ml"
#define TR "ai.onnx.preview.training"
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

#define AINTS(name, ...) attr_ints(name, (const int64_t[]){__VA_ARGS__}, N_OF(((const int64_t[]){__VA_ARGS__})))
#define AFLOATS(name, ...) attr_floats(name, (const float[]){__VA_ARGS__}, N_OF(((const float[]){__VA_ARGS__})))
#define ASTRS(name, ...) attr_strs(name, (const char *const[]){__VA_ARGS__}, N_OF(((const char *const[]){__VA_ARGS__})))

/* ------------------------------------------------------------------ values */

static struct kiln_value *f32m(int64_t rows, int64_t cols, const float *data)
{
    int64_t d[2] = {rows, cols};
    return tensor_of(KILN_DTYPE_F32, 2, d, data);
}

/* ------------------------------------------------------------------ harness */

#define MAX_IO 12

struct call {
    const char *op, *domain;
    int opset;
    const struct kiln_attr *attrs;
    size_t n_attr;
    struct kiln_value *in[MAX_IO];
    size_t n_in, n_out;
    struct kiln_value *out[MAX_IO];
    kiln_err err;
    kiln_status st;
};

/* Runs the call's op; on failure out[] is cleared. Inputs stay owned by the call. */
static kiln_status run(struct call *c)
{
    for (size_t i = 0; i < MAX_IO; i++) kiln_value_free(c->out[i]), c->out[i] = NULL;
    memset(&c->err, 0, sizeof c->err);
    return c->st = run_node(c->domain, c->op, c->opset, c->attrs, c->n_attr, c->in, c->n_in, c->out,
                            c->n_out, &c->err);
}

static void done(struct call *c)
{
    for (size_t i = 0; i < MAX_IO; i++) {
        kiln_value_free(c->in[i]);
        kiln_value_free(c->out[i]);
        c->in[i] = c->out[i] = NULL;
    }
}

static double outv(const struct call *c, size_t o, size_t i) { return kiln_tensor_get_f64(&c->out[o]->t, i); }
static const char *sat(const struct call *c, size_t o, size_t i) { return ((char **)c->out[o]->t.data)[i]; }

/* Output o is dtype dt with the given shape and values within tol (NaN equals NaN). */
static void expect_out(const struct call *c, size_t o, kiln_dtype dt, int rank, const int64_t *dims,
                       const double *want, size_t n, double tol, int line)
{
    if (c->st || !c->out[o]) {
        test_fail(__FILE__, line, NULL, "%s failed: %s", c->op, c->err.msg);
        return;
    }
    const struct kiln_tensor *t = &c->out[o]->t;
    bool shape_ok = t->rank == rank && kiln_tensor_numel(t) == n;
    for (int i = 0; shape_ok && i < rank; i++) shape_ok = t->dims[i] == dims[i];
    if (t->dtype != dt || !shape_ok) {
        test_fail(__FILE__, line, NULL, "%s output %zu is %s rank %d numel %zu", c->op, o,
                  kiln_dtype_name(t->dtype), t->rank, kiln_tensor_numel(t));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double g = outv(c, o, i);
        bool ok = (isnan(want[i]) && isnan(g)) || fabs(g - want[i]) <= tol * (1 + fabs(want[i]));
        if (!ok)
            test_fail(__FILE__, line, NULL, "%s output %zu [%zu] = %.9g; expected %.9g", c->op, o, i, g,
                      want[i]);
    }
}
#define EXPECT(c, o, dt, rank, dims, ...)                                                      \
    expect_out(c, o, dt, rank, (const int64_t[])dims, (const double[]){__VA_ARGS__},           \
               N_OF(((const double[]){__VA_ARGS__})), 1e-6, __LINE__)
#define D(...) {__VA_ARGS__}

static void expect_fail(struct call *c, kiln_status st, const char *needle, int line)
{
    kiln_status got = run(c);
    if (got != st || !strstr(c->err.msg, needle) || !strstr(c->err.msg, c->op)) {
        test_fail(__FILE__, line, NULL, "%s gave status %d '%s'; expected %d with '%s'", c->op, got,
                  c->err.msg, st, needle);
    }
}
#define EXPECT_FAIL(c, st, needle) expect_fail(c, st, needle, __LINE__)

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* ------------------------------------------------------------------ tree ensembles */

/* Two trees by hand (node ids out of order in tree 1, two votes on one leaf):
 *   tree 0: x0 <= 0.5 (NaN goes true) ? [t0 += 1] : [t0 += 2]
 *   tree 1: x1 > 3 ? [t0 += 20, t1 += 5] : [t0 += 10]
 * base_values [100, 200]. */
static void test_tree_regressor(void)
{
    static const float x[] = {0.2f, 4, 0.9f, 1, NAN, 3};
    for (int opset = 1; opset <= 3; opset += 2)
        for (int agg = 0; agg < 4; agg++) {
            static const char *const aggs[] = {"SUM", "AVERAGE", "MIN", "MAX"};
            struct kiln_attr at[] = {
                AINTS("nodes_treeids", 0, 0, 0, 1, 1, 1),
                AINTS("nodes_nodeids", 0, 1, 2, 0, 2, 1),
                AINTS("nodes_featureids", 0, 0, 0, 1, 0, 0),
                ASTRS("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"),
                AFLOATS("nodes_values", 0.5f, 0, 0, 3, 0, 0),
                AINTS("nodes_truenodeids", 1, 0, 0, 2, 0, 0),
                AINTS("nodes_falsenodeids", 2, 0, 0, 1, 0, 0),
                AINTS("nodes_missing_value_tracks_true", 1, 0, 0, 0, 0, 0),
                AINTS("target_treeids", 0, 0, 1, 1, 1),
                AINTS("target_nodeids", 1, 2, 1, 2, 2),
                AINTS("target_ids", 0, 0, 0, 0, 1),
                AFLOATS("target_weights", 1, 2, 10, 20, 5),
                AFLOATS("base_values", 100, 200),
                attr_i("n_targets", 2),
                attr_s("aggregate_function", aggs[agg]),
            };
            struct call c = {.op = "TreeEnsembleRegressor", .domain = ML, .opset = opset, .attrs = at,
                             .n_attr = N_OF(at), .n_in = 1, .n_out = 1};
            c.in[0] = f32m(3, 2, x);
            run(&c);
            if (agg == 0) EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(3, 2), 121, 205, 112, 200, 111, 200);
            if (agg == 1) EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(3, 2), 110.5, 202.5, 106, 200, 105.5, 200);
            if (agg == 2) EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(3, 2), 101, 205, 102, 200, 101, 200);
            if (agg == 3) EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(3, 2), 120, 205, 110, 200, 110, 200);
            done(&c);
        }

    /* v3: double thresholds and weights through the *_as_tensor attributes win over floats. */
    static const double vals[] = {0.5, 0, 0, 3, 0, 0}, w[] = {1.25, 2, 10, 20, 5};
    struct kiln_tensor tv, tw;
    struct kiln_attr at[] = {
        AINTS("nodes_treeids", 0, 0, 0, 1, 1, 1),
        AINTS("nodes_nodeids", 0, 1, 2, 0, 2, 1),
        AINTS("nodes_featureids", 0, 0, 0, 1, 0, 0),
        ASTRS("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"),
        AFLOATS("nodes_values", 99, 99, 99, 99, 99, 99),
        attr_t("nodes_values_as_tensor", &tv, KILN_DTYPE_F64, vals, 6),
        AINTS("nodes_truenodeids", 1, 0, 0, 2, 0, 0),
        AINTS("nodes_falsenodeids", 2, 0, 0, 1, 0, 0),
        AINTS("target_treeids", 0, 0, 1, 1, 1),
        AINTS("target_nodeids", 1, 2, 1, 2, 2),
        AINTS("target_ids", 0, 0, 0, 0, 1),
        attr_t("target_weights_as_tensor", &tw, KILN_DTYPE_F64, w, 5),
        attr_i("n_targets", 2),
        attr_s("post_transform", "LOGISTIC"),
    };
    struct call c = {.op = "TreeEnsembleRegressor", .domain = ML, .opset = 3, .attrs = at, .n_attr = N_OF(at),
                     .n_in = 1, .n_out = 1};
    c.in[0] = f32m(1, 2, x);
    run(&c);
    EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(1, 2), sigm(21.25), sigm(5));
    done(&c);
}

/* The same shapes of tree in the v5 encoding, plus a set-membership node:
 *   tree 0 (root 0): x0 <= 0.5 ? leaf0 [t0 += 1] : leaf1 [t0 += 2]
 *   tree 1 (root 1): x1 in {1, 3} ? leaf2 [t1 += 10] : node 2
 *   node 2: x0 > 0 ? leaf3 [t1 += 20] : leaf4 [t0 += 7] */
static void test_tree_ensemble5(void)
{
    static const uint8_t modes[] = {0, 6, 3};
    static const float splits[] = {0.5f, 0, 0}, mem[] = {1, 3, NAN}, lw[] = {1, 2, 10, 20, 7};
    static const float x[] = {0.2f, 3, 0.9f, 2, -1, 2};
    for (int agg = 0; agg < 4; agg++)
        for (int post = 0; post < 3; post += 2) {
            struct kiln_tensor t1, t2, t3, t4;
            struct kiln_attr at[] = {
                AINTS("nodes_featureids", 0, 1, 0),
                attr_t("nodes_modes", &t1, KILN_DTYPE_U8, modes, 3),
                attr_t("nodes_splits", &t2, KILN_DTYPE_F32, splits, 3),
                attr_t("membership_values", &t3, KILN_DTYPE_F32, mem, 3),
                AINTS("nodes_truenodeids", 0, 2, 3),
                AINTS("nodes_trueleafs", 1, 1, 1),
                AINTS("nodes_falsenodeids", 1, 2, 4),
                AINTS("nodes_falseleafs", 1, 0, 1),
                AINTS("leaf_targetids", 0, 0, 1, 1, 0),
                attr_t("leaf_weights", &t4, KILN_DTYPE_F32, lw, 5),
                AINTS("tree_roots", 0, 1),
                attr_i("n_targets", 2),
                attr_i("aggregate_function", agg),
                attr_i("post_transform", post),
            };
            struct call c = {.op = "TreeEnsemble", .domain = ML, .opset = 5, .attrs = at, .n_attr = N_OF(at),
                             .n_in = 1, .n_out = 1};
            c.in[0] = f32m(3, 2, x);
            run(&c);
            double want[4][6] = {{0.5, 5, 1, 10, 4, 0}, {1, 10, 2, 20, 8, 0}, {1, 10, 2, 20, 1, 0}, {1, 10, 2, 20, 7, 0}};
            double *w = want[agg];
            if (post == 2)
                for (int i = 0; i < 6; i++) w[i] = sigm(w[i]);
            expect_out(&c, 0, KILN_DTYPE_F32, 2, (const int64_t[]){3, 2}, w, 6, 1e-6, __LINE__);
            done(&c);
        }

    /* double input keeps double output; a leaf-only tree (both branches the same leaf) never
     * reads its feature, even one past the end of X. */
    static const uint8_t m1[] = {0};
    static const double s1[] = {0}, w1[] = {2.5};
    static const double xd[] = {1, 2};
    struct kiln_tensor t1, t2, t3;
    struct kiln_attr at[] = {
        AINTS("nodes_featureids", 9), attr_t("nodes_modes", &t1, KILN_DTYPE_U8, m1, 1),
        attr_t("nodes_splits", &t2, KILN_DTYPE_F64, s1, 1), AINTS("nodes_truenodeids", 0),
        AINTS("nodes_trueleafs", 1), AINTS("nodes_falsenodeids", 0), AINTS("nodes_falseleafs", 1),
        AINTS("leaf_targetids", 0), attr_t("leaf_weights", &t3, KILN_DTYPE_F64, w1, 1), AINTS("tree_roots", 0, 0),
        attr_i("n_targets", 1),
    };
    struct call c = {.op = "TreeEnsemble", .domain = ML, .opset = 5, .attrs = at, .n_attr = N_OF(at), .n_in = 1,
                     .n_out = 1};
    c.in[0] = tensor_of(KILN_DTYPE_F64, 2, (const int64_t[]){2, 1}, xd);
    run(&c);
    EXPECT(&c, 0, KILN_DTYPE_F64, 2, D(2, 1), 5, 5);
    done(&c);
}

/* Hostile v5 and v1 trees: every one must fail cleanly with a message. */
static void test_tree_hostile(void)
{
    static const uint8_t modes[] = {0, 0};
    static const float splits[] = {0, 0}, lw[] = {1, 2};
    static const float x[] = {1, 2};
    struct {
        int64_t feat[2], tid[2], tleaf[2], fid[2], fleaf[2], ltgt[2], root;
        const char *needle;
        kiln_status st;
    } cases[] = {
        {{0, 0}, {0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 0}, 0, "cycle", KILN_E_INVALID_MODEL}, /* node 0 -> node 0 */
        {{0, 0}, {1, 0}, {0, 0}, {1, 0}, {0, 1}, {0, 0}, 0, "cycle", KILN_E_INVALID_MODEL}, /* 0 -> 1 -> 0 */
        {{0, 0}, {5, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 0}, 0, "out of range", KILN_E_INVALID_MODEL},
        {{0, 0}, {0, 0}, {1, 1}, {7, 0}, {1, 1}, {0, 0}, 0, "out of range", KILN_E_INVALID_MODEL},
        {{0, 0}, {-1, 0}, {1, 1}, {1, 0}, {1, 1}, {0, 0}, 0, "out of range", KILN_E_INVALID_MODEL},
        {{0, 0}, {0, 0}, {1, 1}, {1, 1}, {1, 1}, {0, 3}, 0, "target id 3", KILN_E_INVALID_MODEL},
        {{0, 0}, {0, 0}, {1, 1}, {1, 1}, {1, 1}, {0, 0}, 2, "tree_roots", KILN_E_INVALID_MODEL},
        {{5, 0}, {0, 0}, {1, 1}, {1, 1}, {1, 1}, {0, 0}, 0, "feature 5", KILN_E_INVALID_ARG},
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        struct kiln_tensor t1, t2, t3;
        struct kiln_attr at[] = {
            attr_ints("nodes_featureids", cases[i].feat, 2), attr_t("nodes_modes", &t1, KILN_DTYPE_U8, modes, 2),
            attr_t("nodes_splits", &t2, KILN_DTYPE_F32, splits, 2), attr_ints("nodes_truenodeids", cases[i].tid, 2),
            attr_ints("nodes_trueleafs", cases[i].tleaf, 2), attr_ints("nodes_falsenodeids", cases[i].fid, 2),
            attr_ints("nodes_falseleafs", cases[i].fleaf, 2), attr_ints("leaf_targetids", cases[i].ltgt, 2),
            attr_t("leaf_weights", &t3, KILN_DTYPE_F32, lw, 2), attr_ints("tree_roots", &cases[i].root, 1),
            attr_i("n_targets", 2),
        };
        struct call c = {.op = "TreeEnsemble", .domain = ML, .opset = 5, .attrs = at, .n_attr = N_OF(at),
                         .n_in = 1, .n_out = 1};
        c.in[0] = f32m(1, 2, x);
        EXPECT_FAIL(&c, cases[i].st, cases[i].needle);
        done(&c);
    }
    /* mismatched lengths, a member node without its NaN-terminated set, a bad mode */
    {
        static const uint8_t m6[] = {6, 0};
        static const float mv[] = {1, 2};
        struct kiln_tensor t1, t2, t3, t4;
        struct kiln_attr at[] = {
            AINTS("nodes_featureids", 0, 0), attr_t("nodes_modes", &t1, KILN_DTYPE_U8, m6, 2),
            attr_t("nodes_splits", &t2, KILN_DTYPE_F32, splits, 2), AINTS("nodes_truenodeids", 0, 0),
            AINTS("nodes_trueleafs", 1, 1), AINTS("nodes_falsenodeids", 1, 1), AINTS("nodes_falseleafs", 1, 1),
            AINTS("leaf_targetids", 0, 0), attr_t("leaf_weights", &t3, KILN_DTYPE_F32, lw, 2), AINTS("tree_roots", 0),
            attr_t("membership_values", &t4, KILN_DTYPE_F32, mv, 2),
        };
        struct call c = {.op = "TreeEnsemble", .domain = ML, .opset = 5, .attrs = at, .n_attr = N_OF(at),
                         .n_in = 1, .n_out = 1};
        c.in[0] = f32m(1, 2, x);
        EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "NaN-terminated");
        at[7] = AINTS("leaf_targetids", 0);
        EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "leaf_weights");
        at[4] = AINTS("nodes_trueleafs", 1);
        EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "nodes_trueleafs has 1 entries; expected 2");
        done(&c);
    }
    /* v1: a branch to a node id the tree lacks, a duplicate node id, a cycle, a vote on a
     * missing node, a class id beyond the labels. */
    struct {
        int64_t nodeid1, tid0, vnode, cid;
        const char *needle;
    } v1[] = {
        {1, 4, 1, 0, "does not have"},
        {0, 1, 1, 0, "twice"},
        {1, 0, 1, 0, "cycle"},
        {1, 1, 6, 0, "does not exist"},
        {1, 1, 1, 2, "out of range"},
    };
    for (size_t i = 0; i < N_OF(v1); i++) {
        struct kiln_attr at[] = {
            AINTS("nodes_treeids", 0, 0, 0),
            attr_ints("nodes_nodeids", (const int64_t[]){0, v1[i].nodeid1, 2}, 3),
            AINTS("nodes_featureids", 0, 0, 0),
            ASTRS("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"),
            AFLOATS("nodes_values", 0, 0, 0),
            attr_ints("nodes_truenodeids", (const int64_t[]){v1[i].tid0, 0, 0}, 3),
            AINTS("nodes_falsenodeids", 2, 0, 0),
            AINTS("class_treeids", 0),
            attr_ints("class_nodeids", &v1[i].vnode, 1),
            attr_ints("class_ids", &v1[i].cid, 1),
            AFLOATS("class_weights", 1),
            AINTS("classlabels_int64s", 0, 1),
        };
        struct call c = {.op = "TreeEnsembleClassifier", .domain = ML, .opset = 1, .attrs = at, .n_attr = N_OF(at),
                         .n_in = 1, .n_out = 2};
        c.in[0] = f32m(1, 2, x);
        EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, v1[i].needle);
        done(&c);
    }
}

/* One tree, x0 <= 0: leaf 1 votes class0 += 2, class1 += 1; leaf 2 votes class2 += 3. */
static void test_tree_classifier(void)
{
    static const float x[] = {-1, 1};
    struct kiln_attr at[] = {
        AINTS("nodes_treeids", 0, 0, 0), AINTS("nodes_nodeids", 0, 1, 2), AINTS("nodes_featureids", 0, 0, 0),
        ASTRS("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"), AFLOATS("nodes_values", 0, 0, 0),
        AINTS("nodes_truenodeids", 1, 0, 0), AINTS("nodes_falsenodeids", 2, 0, 0),
        AINTS("class_treeids", 0, 0, 0), AINTS("class_nodeids", 1, 1, 2), AINTS("class_ids", 0, 1, 2),
        AFLOATS("class_weights", 2, 1, 3), AINTS("classlabels_int64s", 10, 20, 30), attr_s("post_transform", "SOFTMAX"),
    };
    struct call c = {.op = "TreeEnsembleClassifier", .domain = ML, .opset = 3, .attrs = at, .n_attr = N_OF(at),
                     .n_in = 1, .n_out = 2};
    c.in[0] = f32m(2, 1, x);
    run(&c);
    double e1 = exp(-1), e2 = exp(-2), e3 = exp(-3);
    EXPECT(&c, 0, KILN_DTYPE_I64, 1, D(2), 10, 30);
    EXPECT(&c, 1, KILN_DTYPE_F32, 2, D(2, 3), 1 / (1 + e1 + e2), e1 / (1 + e1 + e2), e2 / (1 + e1 + e2),
           e3 / (1 + 2 * e3), e3 / (1 + 2 * e3), 1 / (1 + 2 * e3));
    done(&c);

    /* Binary: every vote on class 0 is the positive-class score s; LOGISTIC of [-s, s]. */
    struct kiln_attr bt[] = {
        AINTS("nodes_treeids", 0, 0, 0), AINTS("nodes_nodeids", 0, 1, 2), AINTS("nodes_featureids", 0, 0, 0),
        ASTRS("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"), AFLOATS("nodes_values", 0, 0, 0),
        AINTS("nodes_truenodeids", 1, 0, 0), AINTS("nodes_falsenodeids", 2, 0, 0),
        AINTS("class_treeids", 0, 0), AINTS("class_nodeids", 1, 2), AINTS("class_ids", 0, 0),
        AFLOATS("class_weights", 0.8f, -0.4f), ASTRS("classlabels_strings", "neg", "pos"),
        attr_s("post_transform", "LOGISTIC"),
    };
    struct call b = {.op = "TreeEnsembleClassifier", .domain = ML, .opset = 1, .attrs = bt, .n_attr = N_OF(bt),
                     .n_in = 1, .n_out = 2};
    b.in[0] = f32m(2, 1, x);
    run(&b);
    CHECK(!b.st && b.out[0]->t.dtype == KILN_DTYPE_STRING && strcmp(sat(&b, 0, 0), "pos") == 0 &&
              strcmp(sat(&b, 0, 1), "neg") == 0, "binary tree labels: %s", b.err.msg);
    EXPECT(&b, 1, KILN_DTYPE_F32, 2, D(2, 2), sigm(-0.8), sigm(0.8), sigm(0.4), sigm(-0.4));
    done(&b);
}

/* ------------------------------------------------------------------ linear models */

static void test_linear(void)
{
    /* 3 classes over 2 features, softmax: x = [1, 1] scores [3, 0, 0]; x = [-2, 0] [-2, 3, -2]. */
    static const float x[] = {1, 1, -2, 0};
    struct kiln_attr at[] = {
        AFLOATS("coefficients", 1, 2, -1, 0, 0.5f, 0.5f), AFLOATS("intercepts", 0, 1, -1),
        ASTRS("classlabels_strings", "a", "b", "c"), attr_s("post_transform", "SOFTMAX"),
    };
    struct call c = {.op = "LinearClassifier", .domain = ML, .opset = 1, .attrs = at, .n_attr = N_OF(at),
                     .n_in = 1, .n_out = 2};
    c.in[0] = f32m(2, 2, x);
    run(&c);
    double e3 = exp(3), e5 = exp(-5);
    CHECK(!c.st && strcmp(sat(&c, 0, 0), "a") == 0 && strcmp(sat(&c, 0, 1), "b") == 0, "linear labels: %s", c.err.msg);
    EXPECT(&c, 1, KILN_DTYPE_F32, 2, D(2, 3), e3 / (e3 + 2), 1 / (e3 + 2), 1 / (e3 + 2), e5 / (1 + 2 * e5),
           1 / (1 + 2 * e5), e5 / (1 + 2 * e5));
    done(&c);

    /* One coefficient row and two labels: scores [-s, s]. s = x0 - x1 + 0.5. */
    static const float xb[] = {1, 3, 3, 1};
    struct kiln_attr bt[] = {AFLOATS("coefficients", 1, -1), AFLOATS("intercepts", 0.5f),
                             AINTS("classlabels_ints", 0, 1)};
    struct call b = {.op = "LinearClassifier", .domain = ML, .opset = 1, .attrs = bt, .n_attr = N_OF(bt),
                     .n_in = 1, .n_out = 2};
    b.in[0] = f32m(2, 2, xb);
    run(&b);
    EXPECT(&b, 0, KILN_DTYPE_I64, 1, D(2), 0, 1);
    EXPECT(&b, 1, KILN_DTYPE_F32, 2, D(2, 2), 1.5, -1.5, -2.5, 2.5);
    /* 3 coefficients cannot split into rows of 2 features */
    bt[0] = AFLOATS("coefficients", 1, -1, 2);
    EXPECT_FAIL(&b, KILN_E_INVALID_ARG, "3 coefficients");
    bt[0] = AFLOATS("coefficients", 1, -1);
    bt[1] = AFLOATS("intercepts", 1, 2);
    EXPECT_FAIL(&b, KILN_E_INVALID_MODEL, "intercepts");
    done(&b);

    /* LinearRegressor with 2 targets; int64 input. */
    static const int64_t xi[] = {1, 2};
    struct kiln_attr rt[] = {AFLOATS("coefficients", 1, 2, 3, 4), AFLOATS("intercepts", 0.5f, -1), attr_i("targets", 2)};
    struct call r = {.op = "LinearRegressor", .domain = ML, .opset = 1, .attrs = rt, .n_attr = N_OF(rt), .n_in = 1,
                     .n_out = 1};
    r.in[0] = tensor_of(KILN_DTYPE_I64, 2, (const int64_t[]){1, 2}, xi);
    run(&r);
    EXPECT(&r, 0, KILN_DTYPE_F32, 2, D(1, 2), 5.5, 10);
    rt[2] = attr_i("targets", 3);
    EXPECT_FAIL(&r, KILN_E_INVALID_ARG, "targets (3)");
    done(&r);
}

/* ------------------------------------------------------------------ SVM */

static void test_svm(void)
{
    /* Linear mode, 2 classes: scores rho + [x0, x1 - x0]. */
    static const float x[] = {2, 1, 0, 3};
    struct kiln_attr at[] = {AFLOATS("coefficients", 1, 0, -1, 1), AFLOATS("rho", 0.5f), AINTS("classlabels_ints", 5, 7)};
    struct call c = {.op = "SVMClassifier", .domain = ML, .opset = 1, .attrs = at, .n_attr = N_OF(at), .n_in = 1,
                     .n_out = 2};
    c.in[0] = f32m(2, 2, x);
    run(&c);
    EXPECT(&c, 0, KILN_DTYPE_I64, 1, D(2), 5, 7);
    EXPECT(&c, 1, KILN_DTYPE_F32, 2, D(2, 2), 2.5, -0.5, 0.5, 3.5);
    done(&c);

    /* SVC mode, RBF (gamma 1), one support vector per class at [0,0] and [1,1], dual
     * coefficients [1, -1]: s = K(x, sv0) - K(x, sv1); s > 0 votes class 0. */
    static const float xs[] = {0, 0, 1, 1};
    struct kiln_attr st[] = {
        AFLOATS("coefficients", 1, -1), AFLOATS("support_vectors", 0, 0, 1, 1), AINTS("vectors_per_class", 1, 1),
        AFLOATS("rho", 0), AFLOATS("kernel_params", 1, 0, 0), attr_s("kernel_type", "RBF"),
        AINTS("classlabels_ints", 4, 9),
    };
    struct call s = {.op = "SVMClassifier", .domain = ML, .opset = 1, .attrs = st, .n_attr = N_OF(st), .n_in = 1,
                     .n_out = 2};
    s.in[0] = f32m(2, 2, xs);
    run(&s);
    double v = 1 - exp(-2);
    EXPECT(&s, 0, KILN_DTYPE_I64, 1, D(2), 4, 9);
    EXPECT(&s, 1, KILN_DTYPE_F32, 2, D(2, 2), -v, v, v, -v);
    st[1] = AFLOATS("support_vectors", 0, 0, 1);
    EXPECT_FAIL(&s, KILN_E_INVALID_MODEL, "support_vectors");
    done(&s);

    /* SVMRegressor: RBF (gamma 0.5) with supports [0,0], [1,1] and coefficients [2, -1]. */
    static const float xr[] = {1, 0};
    struct kiln_attr rt[] = {
        AFLOATS("coefficients", 2, -1), AFLOATS("support_vectors", 0, 0, 1, 1), attr_i("n_supports", 2),
        AFLOATS("rho", 0.5f), AFLOATS("kernel_params", 0.5f, 0, 0), attr_s("kernel_type", "RBF"),
    };
    struct call r = {.op = "SVMRegressor", .domain = ML, .opset = 1, .attrs = rt, .n_attr = N_OF(rt), .n_in = 1,
                     .n_out = 1};
    r.in[0] = f32m(1, 2, xr);
    run(&r);
    EXPECT(&r, 0, KILN_DTYPE_F32, 2, D(1, 1), exp(-0.5) + 0.5);
    done(&r);
    struct kiln_attr lt[] = {AFLOATS("coefficients", 1, 2), AFLOATS("rho", -4), attr_i("one_class", 1)};
    struct call l = {.op = "SVMRegressor", .domain = ML, .opset = 1, .attrs = lt, .n_attr = N_OF(lt), .n_in = 1,
                     .n_out = 1};
    static const float xl[] = {1, 1, 1, 2};
    l.in[0] = f32m(2, 2, xl);
    run(&l);
    EXPECT(&l, 0, KILN_DTYPE_F32, 2, D(2, 1), -1, 1);
    done(&l);
}

/* ------------------------------------------------------------------ LabelEncoder */

static void test_label_encoder(void)
{
    /* float keys -> strings: a NaN key matches NaN input; the repeated key 1.5 maps to its
     * last value; unknown keys give default_string. */
    static const float xf[] = {1.5f, NAN, 2, 3};
    struct kiln_attr at[] = {AFLOATS("keys_floats", 1.5f, NAN, 2, 1.5f), ASTRS("values_strings", "a", "nan", "two", "A"),
                             attr_s("default_string", "?")};
    struct call c = {.op = "LabelEncoder", .domain = ML, .opset = 2, .attrs = at, .n_attr = N_OF(at), .n_in = 1,
                     .n_out = 1};
    c.in[0] = vec_of(KILN_DTYPE_F32, 4, xf);
    run(&c);
    CHECK(!c.st && strcmp(sat(&c, 0, 0), "A") == 0 && strcmp(sat(&c, 0, 1), "nan") == 0 &&
              strcmp(sat(&c, 0, 2), "two") == 0 && strcmp(sat(&c, 0, 3), "?") == 0,
          "float->string label encoder: %s", c.err.msg);
    at[1] = ASTRS("values_strings", "a", "nan", "two");
    EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "4 keys but 3 values");
    at[1] = AINTS("keys_int64s", 1, 2, 3, 4);
    EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "exactly one of keys_strings");
    done(&c);

    /* int64 -> float with the default default_float (-0.0). */
    static const int64_t xi[] = {-7, 3, 0};
    struct kiln_attr it[] = {AINTS("keys_int64s", 3, -7), AFLOATS("values_floats", 0.5f, 1.5f)};
    struct call i = {.op = "LabelEncoder", .domain = ML, .opset = 2, .attrs = it, .n_attr = N_OF(it), .n_in = 1,
                     .n_out = 1};
    i.in[0] = vec_of(KILN_DTYPE_I64, 3, xi);
    run(&i);
    EXPECT(&i, 0, KILN_DTYPE_F32, 1, D(3), 1.5, 0.5, 0);
    CHECK(!i.st && signbit(outv(&i, 0, 2)), "default_float is -0.0");
    done(&i);
    i.in[0] = vec_of(KILN_DTYPE_STRING, 1, (const char *const[]){"x"});
    EXPECT_FAIL(&i, KILN_E_INVALID_ARG, "keys are");
    done(&i);

    /* v4 tensors: int32 keys -> double values with a default_tensor. */
    static const int32_t kt[] = {4, 8}, xt[] = {8, 4, 5};
    static const double vt[] = {0.25, 0.75}, dt[] = {9};
    struct kiln_tensor t1, t2, t3;
    struct kiln_attr tt[] = {attr_t("keys_tensor", &t1, KILN_DTYPE_I32, kt, 2), attr_t("values_tensor", &t2, KILN_DTYPE_F64, vt, 2),
                             attr_t("default_tensor", &t3, KILN_DTYPE_F64, dt, 1)};
    struct call t = {.op = "LabelEncoder", .domain = ML, .opset = 4, .attrs = tt, .n_attr = N_OF(tt), .n_in = 1,
                     .n_out = 1};
    t.in[0] = vec_of(KILN_DTYPE_I32, 3, xt);
    run(&t);
    EXPECT(&t, 0, KILN_DTYPE_F64, 1, D(3), 0.75, 0.25, 9);
    done(&t);

    /* v1: strings -> index in classes_strings, and back. */
    struct kiln_attr ot[] = {ASTRS("classes_strings", "x", "y")};
    struct call o = {.op = "LabelEncoder", .domain = ML, .opset = 1, .attrs = ot, .n_attr = 1, .n_in = 1, .n_out = 1};
    o.in[0] = vec_of(KILN_DTYPE_STRING, 3, (const char *const[]){"y", "z", "x"});
    run(&o);
    EXPECT(&o, 0, KILN_DTYPE_I64, 1, D(3), 1, -1, 0);
    done(&o);
    o.in[0] = vec_of(KILN_DTYPE_I64, 2, (const int64_t[]){1, 5});
    run(&o);
    CHECK(!o.st && strcmp(sat(&o, 0, 0), "y") == 0 && strcmp(sat(&o, 0, 1), "_Unused") == 0, "v1 int->string");
    done(&o);
}

/* ------------------------------------------------------------------ feature ops */

static void test_feature_ops(void)
{
    static const float x[] = {1, -3, 0, 0};
    const char *norms[] = {"L1", "L2", "MAX"};
    double r10 = sqrt(10);
    double want[3][4] = {{0.25, -0.75, 0, 0}, {1 / r10, -3 / r10, 0, 0}, {1.0 / 3, -1, 0, 0}};
    for (int i = 0; i < 3; i++) {
        struct kiln_attr at[] = {attr_s("norm", norms[i])};
        struct call c = {.op = "Normalizer", .domain = ML, .opset = 1, .attrs = at, .n_attr = 1, .n_in = 1, .n_out = 1};
        c.in[0] = f32m(2, 2, x);
        run(&c);
        expect_out(&c, 0, KILN_DTYPE_F32, 2, (const int64_t[]){2, 2}, want[i], 4, 1e-6, __LINE__);
        done(&c);
    }
    {
        struct kiln_attr at[] = {AFLOATS("offset", 1), AFLOATS("scale", 2, 0.5f)};
        struct call c = {.op = "Scaler", .domain = ML, .opset = 1, .attrs = at, .n_attr = 2, .n_in = 1, .n_out = 1};
        c.in[0] = f32m(1, 2, (const float[]){3, 5});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(1, 2), 4, 2);
        at[1] = AFLOATS("scale", 1, 2, 3);
        EXPECT_FAIL(&c, KILN_E_INVALID_ARG, "scale 3");
        done(&c);
    }
    {
        struct kiln_attr at[] = {attr_f("threshold", 1)};
        struct call c = {.op = "Binarizer", .domain = ML, .opset = 1, .attrs = at, .n_attr = 1, .n_in = 1, .n_out = 1};
        c.in[0] = vec_of(KILN_DTYPE_F64, 4, (const double[]){0.5, 1, 2, NAN});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F64, 1, D(4), 0, 0, 1, 0);
        done(&c);
    }
    {
        struct kiln_attr at[] = {AINTS("cats_int64s", 1, 3, 5), attr_i("zeros", 1)};
        struct call c = {.op = "OneHotEncoder", .domain = ML, .opset = 1, .attrs = at, .n_attr = 2, .n_in = 1,
                         .n_out = 1};
        c.in[0] = vec_of(KILN_DTYPE_I64, 3, (const int64_t[]){3, 5, 4});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(3, 3), 0, 1, 0, 0, 0, 1, 0, 0, 0);
        at[1] = attr_i("zeros", 0);
        EXPECT_FAIL(&c, KILN_E_INVALID_ARG, "element 2");
        done(&c);
    }
    {
        struct kiln_attr at[] = {AFLOATS("imputed_value_floats", 10, 20), attr_f("replaced_value_float", NAN)};
        struct call c = {.op = "Imputer", .domain = ML, .opset = 1, .attrs = at, .n_attr = 2, .n_in = 1, .n_out = 1};
        c.in[0] = f32m(2, 2, (const float[]){1, NAN, NAN, 4});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(2, 2), 1, 20, 10, 4);
        done(&c);
    }
    {
        struct kiln_attr at[] = {AINTS("inputdimensions", 2, 2)};
        struct call c = {.op = "FeatureVectorizer", .domain = ML, .opset = 1, .attrs = at, .n_attr = 1, .n_in = 2,
                         .n_out = 1};
        c.in[0] = f32m(2, 2, (const float[]){1, 2, 3, 4});
        c.in[1] = tensor_of(KILN_DTYPE_I64, 2, (const int64_t[]){2, 1}, (const int64_t[]){5, 6});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(2, 4), 1, 2, 5, 0, 3, 4, 6, 0);
        done(&c);
    }
    {
        struct kiln_attr at[] = {AINTS("cats_int64s", 1, 2), ASTRS("cats_strings", "one", "two")};
        struct call c = {.op = "CategoryMapper", .domain = ML, .opset = 1, .attrs = at, .n_attr = 2, .n_in = 1,
                         .n_out = 1};
        c.in[0] = vec_of(KILN_DTYPE_STRING, 2, (const char *const[]){"two", "zz"});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_I64, 1, D(2), 2, -1);
        at[0] = AINTS("cats_int64s", 1);
        EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "cats_int64s has 1");
        done(&c);
    }
    {
        struct call c = {.op = "ArrayFeatureExtractor", .domain = ML, .opset = 1, .n_in = 2, .n_out = 1};
        c.in[0] = f32m(2, 3, (const float[]){0, 1, 2, 3, 4, 5});
        c.in[1] = vec_of(KILN_DTYPE_I64, 2, (const int64_t[]){2, 0});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 2, D(2, 2), 2, 0, 5, 3);
        kiln_value_free(c.in[1]);
        c.in[1] = vec_of(KILN_DTYPE_I64, 1, (const int64_t[]){3});
        EXPECT_FAIL(&c, KILN_E_INVALID_ARG, "out of range");
        done(&c);
    }
}

/* ------------------------------------------------------------------ training ops */

static void test_training(void)
{
    /* Adagrad, R 0.1, T 2, decay 0.1: r = 0.1 / 1.2; h' = 0.25; x' = 1 - r * 0.5 / (0.5 + 1e-6). */
    {
        struct kiln_attr at[] = {attr_f("decay_factor", 0.1f)};
        struct call c = {.op = "Adagrad", .domain = TR, .opset = 1, .attrs = at, .n_attr = 1, .n_in = 5, .n_out = 2};
        c.in[0] = tensor_of(KILN_DTYPE_F32, 0, NULL, (const float[]){0.1f});
        c.in[1] = tensor_of(KILN_DTYPE_I64, 0, NULL, (const int64_t[]){2});
        c.in[2] = vec_of(KILN_DTYPE_F32, 1, (const float[]){1});
        c.in[3] = vec_of(KILN_DTYPE_F32, 1, (const float[]){0.5f});
        c.in[4] = vec_of(KILN_DTYPE_F32, 1, (const float[]){0});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F32, 1, D(1), 1 - 0.1 / 1.2 * 0.5 / 0.500001);
        EXPECT(&c, 1, KILN_DTYPE_F32, 1, D(1), 0.25);
        done(&c);
    }
    /* Adam with exact binary fractions: R 0.5, T 1, alpha 0.5, beta 0.75, epsilon 0,
     * norm_coefficient 0.25, norm_coefficient_post 0.5; x 1, g 2, v 0, h 0:
     * g = 2.25; v' = 1.125; h' = 0.25 * 2.25^2 = 1.265625; r' = 0.5 * sqrt(0.25) / 0.5 = 0.5;
     * x' = (1 - 0.5) * (1 - 0.5 * 1.125 / 1.125) = 0.25. */
    {
        struct kiln_attr at[] = {attr_f("alpha", 0.5f), attr_f("beta", 0.75f), attr_f("epsilon", 0),
                                 attr_f("norm_coefficient", 0.25f), attr_f("norm_coefficient_post", 0.5f)};
        struct call c = {.op = "Adam", .domain = TR, .opset = 1, .attrs = at, .n_attr = N_OF(at), .n_in = 6,
                         .n_out = 3};
        c.in[0] = tensor_of(KILN_DTYPE_F32, 0, NULL, (const float[]){0.5f});
        c.in[1] = tensor_of(KILN_DTYPE_I64, 0, NULL, (const int64_t[]){1});
        c.in[2] = vec_of(KILN_DTYPE_F64, 1, (const double[]){1});
        c.in[3] = vec_of(KILN_DTYPE_F64, 1, (const double[]){2});
        c.in[4] = vec_of(KILN_DTYPE_F64, 1, (const double[]){0});
        c.in[5] = vec_of(KILN_DTYPE_F64, 1, (const double[]){0});
        run(&c);
        EXPECT(&c, 0, KILN_DTYPE_F64, 1, D(1), 0.25);
        EXPECT(&c, 1, KILN_DTYPE_F64, 1, D(1), 1.125);
        EXPECT(&c, 2, KILN_DTYPE_F64, 1, D(1), 1.265625);
        /* a gradient whose shape differs from X's */
        kiln_value_free(c.in[3]);
        c.in[3] = vec_of(KILN_DTYPE_F64, 2, (const double[]){2, 2});
        EXPECT_FAIL(&c, KILN_E_INVALID_ARG, "G0 has shape [2]");
        done(&c);
    }
    /* Momentum, two tensors of different shapes; alpha 0.5, beta 0.4, R 0.1, x 1, g 1, v 2:
     * T 1: v' = 1.4; standard x' = 0.86, nesterov x' = 1 - 0.1 * (1 + 0.7) = 0.83.
     * T 0: beta counts as 1, v' = 2, standard x' = 0.8. */
    for (int mode = 0; mode < 3; mode++) {
        struct kiln_attr at[] = {attr_f("alpha", 0.5f), attr_f("beta", 0.4f), attr_f("norm_coefficient", 0),
                                 attr_s("mode", mode == 1 ? "nesterov" : "standard")};
        struct call c = {.op = "Momentum", .domain = TR, .opset = 1, .attrs = at, .n_attr = 4, .n_in = 8, .n_out = 4};
        c.in[0] = tensor_of(KILN_DTYPE_F64, 0, NULL, (const double[]){0.1});
        c.in[1] = tensor_of(KILN_DTYPE_I64, 0, NULL, (const int64_t[]){mode == 2 ? 0 : 1});
        c.in[2] = vec_of(KILN_DTYPE_F32, 1, (const float[]){1});
        c.in[3] = f32m(1, 2, (const float[]){1, 1});
        c.in[4] = vec_of(KILN_DTYPE_F32, 1, (const float[]){1});
        c.in[5] = f32m(1, 2, (const float[]){1, 1});
        c.in[6] = vec_of(KILN_DTYPE_F32, 1, (const float[]){2});
        c.in[7] = f32m(1, 2, (const float[]){2, 2});
        run(&c);
        double xn = mode == 0 ? 0.86 : mode == 1 ? 0.83 : 0.8, vn = mode == 2 ? 2 : 1.4;
        EXPECT(&c, 0, KILN_DTYPE_F32, 1, D(1), xn);
        EXPECT(&c, 1, KILN_DTYPE_F32, 2, D(1, 2), xn, xn);
        EXPECT(&c, 2, KILN_DTYPE_F32, 1, D(1), vn);
        EXPECT(&c, 3, KILN_DTYPE_F32, 2, D(1, 2), vn, vn);
        if (mode == 0) {
            kiln_value_free(c.in[5]);
            c.in[5] = vec_of(KILN_DTYPE_F32, 2, (const float[]){1, 1});
            EXPECT_FAIL(&c, KILN_E_INVALID_ARG, "G1 has shape [2]");
            at[3] = attr_s("mode", "heavy");
            EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "mode 'heavy'");
            at[3] = attr_s("mode", "standard");
            c.n_in = 7;
            EXPECT_FAIL(&c, KILN_E_INVALID_MODEL, "7 inputs");
            c.n_in = 8;
        }
        done(&c);
    }
}

/* ------------------------------------------------------------------ out of memory */

/* Fails each allocation of a run in turn: every run must end OK or NOMEM, without leaks
 * (ASan checks those). */
static void test_oom(void)
{
    static const uint8_t modes[] = {0, 6, 3};
    static const float splits[] = {0.5f, 0, 0}, mem[] = {1, 3, NAN}, lw[] = {1, 2, 10, 20, 7};
    struct kiln_tensor t1, t2, t3, t4;
    struct kiln_attr te[] = {
        AINTS("nodes_featureids", 0, 1, 0), attr_t("nodes_modes", &t1, KILN_DTYPE_U8, modes, 3),
        attr_t("nodes_splits", &t2, KILN_DTYPE_F32, splits, 3), attr_t("membership_values", &t3, KILN_DTYPE_F32, mem, 3),
        AINTS("nodes_truenodeids", 0, 2, 3), AINTS("nodes_trueleafs", 1, 1, 1), AINTS("nodes_falsenodeids", 1, 2, 4),
        AINTS("nodes_falseleafs", 1, 0, 1), AINTS("leaf_targetids", 0, 0, 1, 1, 0),
        attr_t("leaf_weights", &t4, KILN_DTYPE_F32, lw, 5), AINTS("tree_roots", 0, 1), attr_i("n_targets", 2),
    };
    struct kiln_attr le[] = {ASTRS("keys_strings", "a", "b"), ASTRS("values_strings", "x", "y")};
    struct call calls[] = {
        {.op = "TreeEnsemble", .domain = ML, .opset = 5, .attrs = te, .n_attr = N_OF(te), .n_in = 1, .n_out = 1},
        {.op = "LabelEncoder", .domain = ML, .opset = 2, .attrs = le, .n_attr = N_OF(le), .n_in = 1, .n_out = 1},
    };
    calls[0].in[0] = f32m(2, 2, (const float[]){0.2f, 3, 0.9f, 2});
    calls[1].in[0] = vec_of(KILN_DTYPE_STRING, 3, (const char *const[]){"a", "b", "c"});
    for (size_t i = 0; i < N_OF(calls); i++) {
        bool ok = false;
        for (long n = 1; n < 200 && !ok; n++) {
            kiln_alloc_fail_after(n);
            kiln_status st = run(&calls[i]);
            kiln_alloc_fail_after(0);
            CHECK(st == KILN_OK || st == KILN_E_NOMEM, "%s with allocation %ld failing: %s", calls[i].op, n,
                  calls[i].err.msg);
            ok = st == KILN_OK;
            if (!ok) CHECK(calls[i].out[0] == NULL, "%s left an output after failing", calls[i].op);
            kiln_value_free(calls[i].out[0]);
            calls[i].out[0] = NULL;
        }
        CHECK(ok, "%s never succeeded", calls[i].op);
        done(&calls[i]);
    }
}

int main(void)
{
    test_tree_regressor();
    test_tree_ensemble5();
    test_tree_hostile();
    test_tree_classifier();
    test_linear();
    test_svm();
    test_label_encoder();
    test_feature_ops();
    test_training();
    test_oom();
    return test_summary("test_ml");
}
