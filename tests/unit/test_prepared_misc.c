/* test_prepared_misc.c: prepared kernels of the reduce, index, scan, ml, text and random
 * families (their attributes decoded, their tables built, once per node in prepare) run
 * through sessions.
 *
 * Each model's graph inputs have symbolic dims, so the engine prepares every node with types
 * whose dims are unknown; each session then runs two or three times with different input
 * shapes, and every output is compared with values worked out by hand. A state that kept
 * anything of the first run's shapes would give wrong results (or wrong errors) on the
 * next. Also covered: a shape-dependent error after a good run (a tree reading a feature X
 * lacks) leaves the session usable, a malformed attribute found by prepare is still reported
 * by run with its old message, and a seeded random op gives the same stream on every run.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kiln.h"
#include "test_model.h"
#include "test_support.h"

/* ------------------------------------------------------------------ helpers */

/* The session of model m (built, loaded and inferred into *r); NULL after a failed CHECK.
 * Free both with end_session. */
static kiln_session *session_of(struct model *m, struct run *r)
{
    kiln_err err = {0};
    kiln_session *s = NULL;
    if (!run(m, r)) return NULL;
    CHECK(kiln_session_create(r->km, NULL, &s, &err) == KILN_OK, "session: %s", err.msg);
    if (!s) done(r);
    return s;
}

static void end_session(kiln_session *s, struct run *r)
{
    kiln_session_free(s);
    done(r);
}

/* Runs s on inputs in[0..n_in) (freed here) with one output; NULL (and the status in *st,
 * the message in *err) when the run fails. */
static kiln_value *run_once(kiln_session *s, size_t n_in, struct kiln_value **in, kiln_status *st, kiln_err *err)
{
    kiln_value *out[1] = {NULL};
    *st = kiln_session_run(s, n_in, NULL, (const kiln_value *const *)in, 1, out, err);
    free_all(in, n_in);
    return *st ? NULL : out[0];
}

/* Runs s and checks that it succeeds; the output or NULL. */
static kiln_value *run_ok(kiln_session *s, size_t n_in, struct kiln_value **in, const char *what)
{
    kiln_err err = {0};
    kiln_status st;
    kiln_value *y = run_once(s, n_in, in, &st, &err);
    CHECK(st == KILN_OK, "%s: %s", what, err.msg);
    return y;
}

/* Checks that y (then freed) has shape dims[0..rank) and float32 values want[0..n). */
static void expect_f32(kiln_value *y, int rank, const int64_t *dims, const double *want, const char *what)
{
    if (!y) return;
    CHECK(kiln_value_dtype(y) == KILN_DTYPE_F32, "%s: dtype %d", what, (int)kiln_value_dtype(y));
    CHECK(same_shape(&y->t, rank, dims), "%s: wrong shape (rank %d)", what, kiln_value_rank(y));
    size_t n = 1;
    for (int d = 0; d < rank; d++) n *= (size_t)dims[d];
    if (kiln_value_dtype(y) == KILN_DTYPE_F32) close_to(y, want, n, 1e-6, what);
    kiln_value_free(y);
}

/* Checks that y (then freed) is an int64 tensor of shape [n] holding want[0..n). */
static void expect_i64(kiln_value *y, size_t n, const int64_t *want, const char *what)
{
    if (!y) return;
    int64_t d = (int64_t)n;
    bool ok = kiln_value_dtype(y) == KILN_DTYPE_I64 && same_shape(&y->t, 1, &d);
    CHECK(ok, "%s: not int64[%zu]", what, n);
    for (size_t i = 0; ok && i < n; i++)
        CHECK(((const int64_t *)y->t.data)[i] == want[i], "%s[%zu] = %lld; expected %lld", what, i,
              (long long)((const int64_t *)y->t.data)[i], (long long)want[i]);
    kiln_value_free(y);
}

static struct kiln_value *f32_of(int rank, const int64_t *dims, const double *x)
{
    return tensor_f64(KILN_DTYPE_F32, rank, dims, x);
}

/* ------------------------------------------------------------------ reduce, scan */

/* ReduceSum-11 with axes [1] (an attribute until opset 13), keepdims 0, on X [N, F]. */
static void test_reduce_sum(void)
{
    struct model m = fresh(11);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,F");
    struct pb *n = node("ReduceSum", "X", "Y");
    const int64_t axes[] = {1};
    at_ints(n, "axes", 1, axes);
    at_i(n, "keepdims", 0);
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {2, 3}, d2[] = {3, 2}, o1[] = {2}, o2[] = {3};
    const double x1[] = {1, 2, 3, 4, 5, 6}, w1[] = {6, 15};
    const double x2[] = {1, -1, 2, 5, 0.5, 0.25}, w2[] = {0, 7, 0.75};
    struct kiln_value *in[1] = {f32_of(2, d1, x1)};
    expect_f32(run_ok(s, 1, in, "ReduceSum [2,3]"), 1, o1, w1, "ReduceSum [2,3]");
    in[0] = f32_of(2, d2, x2);
    expect_f32(run_ok(s, 1, in, "ReduceSum [3,2]"), 1, o2, w2, "ReduceSum [3,2]");
    end_session(s, &r);
}

/* ArgMax-12 on the last axis with select_last_index, keepdims 1, on X of unknown shape. */
static void test_argmax(void)
{
    struct model m = fresh(13);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, NULL);
    struct pb *n = node("ArgMax", "X", "Y");
    at_i(n, "axis", -1);
    at_i(n, "select_last_index", 1);
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {2, 3}, d2[] = {4};
    const double x1[] = {1, 3, 3, 7, 0, 7}, x2[] = {2, 9, 9, 1};
    struct kiln_value *in[1] = {f32_of(2, d1, x1)};
    kiln_value *y = run_ok(s, 1, in, "ArgMax [2,3]");
    if (y) {
        const int64_t dy[] = {2, 1};
        CHECK(same_shape(&y->t, 2, dy), "ArgMax [2,3]: shape");
        CHECK(((int64_t *)y->t.data)[0] == 2 && ((int64_t *)y->t.data)[1] == 2, "ArgMax [2,3]: %lld %lld",
              (long long)((int64_t *)y->t.data)[0], (long long)((int64_t *)y->t.data)[1]);
        kiln_value_free(y);
    }
    in[0] = f32_of(1, d2, x2);
    y = run_ok(s, 1, in, "ArgMax [4]");
    if (y) {
        const int64_t dy[] = {1};
        CHECK(same_shape(&y->t, 1, dy) && ((int64_t *)y->t.data)[0] == 2, "ArgMax [4]: last of the two 9s");
        kiln_value_free(y);
    }
    end_session(s, &r);
}

/* CumSum-14 exclusive and reversed along axis 1 (an initializer): y[j] = sum of x[k > j]. */
static void test_cumsum(void)
{
    struct model m = fresh(14);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,F");
    const int64_t one = 1;
    init_i64(&m, "axis", -1, &one);
    struct pb *n = node("CumSum", "X,axis", "Y");
    at_i(n, "exclusive", 1);
    at_i(n, "reverse", 1);
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {1, 3}, d2[] = {3, 2};
    const double x1[] = {1, 2, 3}, w1[] = {5, 3, 0};
    const double x2[] = {1, 1, 2, 4, 3, 9}, w2[] = {1, 0, 4, 0, 9, 0};
    struct kiln_value *in[1] = {f32_of(2, d1, x1)};
    expect_f32(run_ok(s, 1, in, "CumSum [1,3]"), 2, d1, w1, "CumSum [1,3]");
    in[0] = f32_of(2, d2, x2);
    expect_f32(run_ok(s, 1, in, "CumSum [3,2]"), 2, d2, w2, "CumSum [3,2]");
    end_session(s, &r);
}

/* Einsum-12 "ij,jk->ik" (parsed once in prepare) as matrix products of two sizes; then an
 * equation with a bad character, which prepare finds and run reports as it always did. */
static void test_einsum(void)
{
    struct model m = fresh(12);
    struct run r;
    input(&m, "A", KILN_DTYPE_F32, "M,K");
    input(&m, "B", KILN_DTYPE_F32, "K,N");
    struct pb *n = node("Einsum", "A,B", "Y");
    at_s(n, "equation", "ij,jk->ik");
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t a1[] = {2, 3}, b1[] = {3, 2}, y1[] = {2, 2};
    const double xa1[] = {1, 2, 3, 4, 5, 6}, xb1[] = {1, 0, 0, 1, 1, 1}, w1[] = {4, 5, 10, 11};
    const int64_t a2[] = {1, 2}, b2[] = {2, 3}, y2[] = {1, 3};
    const double xa2[] = {2, 1}, xb2[] = {1, 2, 3, 4, 5, 6}, w2[] = {6, 9, 12};
    struct kiln_value *in[2] = {f32_of(2, a1, xa1), f32_of(2, b1, xb1)};
    expect_f32(run_ok(s, 2, in, "Einsum 2x3 3x2"), 2, y1, w1, "Einsum 2x3 3x2");
    in[0] = f32_of(2, a2, xa2);
    in[1] = f32_of(2, b2, xb2);
    expect_f32(run_ok(s, 2, in, "Einsum 1x2 2x3"), 2, y2, w2, "Einsum 1x2 2x3");
    end_session(s, &r);

    m = fresh(12);
    input(&m, "A", KILN_DTYPE_F32, "M,K");
    n = node("Einsum", "A", "Y");
    at_s(n, "equation", "i#->i");
    end_node(&m, n, NULL);
    output(&m, "Y");
    s = session_of(&m, &r);
    if (!s) return;
    kiln_err err = {0};
    kiln_status st;
    for (int i = 0; i < 2; i++) { /* the kept failure is reported on every run */
        in[0] = f32_of(2, a1, xa1);
        kiln_value *y = run_once(s, 1, in, &st, &err);
        CHECK(!y && st == KILN_E_INVALID_ARG, "Einsum 'i#->i' ran (status %d)", (int)st);
        CHECK(strstr(err.msg, "Einsum node") && strstr(err.msg, "attribute 'equation' has character '#'"),
              "message: %s", err.msg);
        kiln_value_free(y);
    }
    end_session(s, &r);
}

/* ------------------------------------------------------------------ ml */

/* TreeEnsembleRegressor (ai.onnx.ml 3), compiled in prepare: tree 0 gives 1 when x0 <= 0.5
 * else 2; tree 1 gives 10 when x2 > 1 else 20; summed. Node 3 (tree 1's root) reads
 * feature 2, so an X of two features fails at run, and the session goes on working. */
static void test_tree_ensemble(void)
{
    struct model m = fresh(17);
    struct run r;
    m.ml_opset = 3;
    input(&m, "X", KILN_DTYPE_F32, "N,F");
    struct pb *n = node("TreeEnsembleRegressor", "X", "Y");
    const int64_t tree[] = {0, 0, 0, 1, 1, 1}, nid[] = {0, 1, 2, 0, 1, 2}, feat[] = {0, 0, 0, 2, 0, 0};
    const int64_t tid[] = {1, 0, 0, 1, 0, 0}, fid[] = {2, 0, 0, 2, 0, 0};
    const char *const modes[] = {"BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"};
    const float vals[] = {0.5f, 0, 0, 1.0f, 0, 0};
    const int64_t vt[] = {0, 0, 1, 1}, vn[] = {1, 2, 1, 2}, vid[] = {0, 0, 0, 0};
    const float vw[] = {1, 2, 10, 20};
    at_ints(n, "nodes_treeids", 6, tree);
    at_ints(n, "nodes_nodeids", 6, nid);
    at_ints(n, "nodes_featureids", 6, feat);
    at_ints(n, "nodes_truenodeids", 6, tid);
    at_ints(n, "nodes_falsenodeids", 6, fid);
    at_strs(n, "nodes_modes", 6, modes);
    at_floats(n, "nodes_values", 6, vals);
    at_ints(n, "target_treeids", 4, vt);
    at_ints(n, "target_nodeids", 4, vn);
    at_ints(n, "target_ids", 4, vid);
    at_floats(n, "target_weights", 4, vw);
    at_i(n, "n_targets", 1);
    at_s(n, "aggregate_function", "SUM");
    end_node(&m, n, "ai.onnx.ml");
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {2, 3}, o1[] = {2, 1}, d2[] = {3, 4}, o2[] = {3, 1}, d3[] = {1, 2};
    const double x1[] = {0, 0, 2, 1, 0, 0}, w1[] = {11, 22};
    const double x2[] = {0.5, 9, 1, 9, 0.6, 9, 1.5, 9, -1, 9, 0, 9}, w2[] = {21, 12, 21};
    const double x3[] = {0, 0};
    struct kiln_value *in[1] = {f32_of(2, d1, x1)};
    expect_f32(run_ok(s, 1, in, "trees [2,3]"), 2, o1, w1, "trees [2,3]");
    in[0] = f32_of(2, d2, x2);
    expect_f32(run_ok(s, 1, in, "trees [3,4]"), 2, o2, w2, "trees [3,4]");
    kiln_err err = {0};
    kiln_status st;
    in[0] = f32_of(2, d3, x3);
    kiln_value *y = run_once(s, 1, in, &st, &err);
    CHECK(!y && st == KILN_E_INVALID_ARG, "trees [1,2] ran (status %d)", (int)st);
    CHECK(strstr(err.msg, "tree node 3 reads feature 2; X has 2 features") != NULL, "message: %s", err.msg);
    kiln_value_free(y);
    in[0] = f32_of(2, d1, x1);
    expect_f32(run_ok(s, 1, in, "trees [2,3] again"), 2, o1, w1, "trees [2,3] again");
    end_session(s, &r);
}

/* LabelEncoder (ai.onnx.ml 2), keys sorted in prepare: "a" -> 3 (the last of the equal keys
 * wins), "b" -> 2, anything else -> default_int64. */
static void test_label_encoder(void)
{
    struct model m = fresh(17);
    struct run r;
    m.ml_opset = 2;
    input(&m, "X", KILN_DTYPE_STRING, "N");
    struct pb *n = node("LabelEncoder", "X", "Y");
    const char *const keys[] = {"a", "b", "a"};
    const int64_t vals[] = {1, 2, 3};
    at_strs(n, "keys_strings", 3, keys);
    at_ints(n, "values_int64s", 3, vals);
    at_i(n, "default_int64", -7);
    end_node(&m, n, "ai.onnx.ml");
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const char *const x1[] = {"a", "c"}, *const x2[] = {"b", "b", "a", "z"};
    const int64_t w1[] = {3, -7}, w2[] = {2, 2, 3, -7};
    struct kiln_value *in[1] = {vec_of(KILN_DTYPE_STRING, 2, x1)};
    expect_i64(run_ok(s, 1, in, "LabelEncoder [2]"), 2, w1, "LabelEncoder [2]");
    in[0] = vec_of(KILN_DTYPE_STRING, 4, x2);
    expect_i64(run_ok(s, 1, in, "LabelEncoder [4]"), 4, w2, "LabelEncoder [4]");
    end_session(s, &r);
}

/* ------------------------------------------------------------------ text */

/* TfIdfVectorizer-9 TF counts from the hash table of prepare: unigrams 2, 3, 5 and a repeat
 * of 2 (ordinal 3, column 5: never counted, the first equal n-gram takes the match),
 * bigrams (2,3) -> column 3 and (5,5) -> column 4, one skip allowed. */
static void test_tfidf(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "X", KILN_DTYPE_I64, "B,C");
    struct pb *n = node("TfIdfVectorizer", "X", "Y");
    const int64_t counts[] = {0, 4}, idx[] = {0, 1, 2, 5, 3, 4}, pool[] = {2, 3, 5, 2, 2, 3, 5, 5};
    at_i(n, "min_gram_length", 1);
    at_i(n, "max_gram_length", 2);
    at_i(n, "max_skip_count", 1);
    at_s(n, "mode", "TF");
    at_ints(n, "ngram_counts", 2, counts);
    at_ints(n, "ngram_indexes", 6, idx);
    at_ints(n, "pool_int64s", 8, pool);
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {1, 4}, o1[] = {1, 6}, d2[] = {2, 3}, o2[] = {2, 6};
    const int64_t x1[] = {2, 3, 5, 5}, x2[] = {5, 5, 5, 2, 3, 3};
    /* [2,3,5,5]: 2, 3, 5 x2; (2,3) next to each other, (5,5) once; skip 1: (2,5), (3,5).
     * [5,5,5]: 5 x3; (5,5) twice, and once with a skip. [2,3,3]: (2,3) adjacent and with a
     * skip. */
    const double w1[] = {1, 1, 2, 1, 1, 0};
    const double w2[] = {0, 0, 3, 0, 3, 0, 1, 2, 0, 2, 0, 0};
    struct kiln_value *in[1] = {tensor_of(KILN_DTYPE_I64, 2, d1, x1)};
    expect_f32(run_ok(s, 1, in, "TfIdf [1,4]"), 2, o1, w1, "TfIdf [1,4]");
    in[0] = tensor_of(KILN_DTYPE_I64, 2, d2, x2);
    expect_f32(run_ok(s, 1, in, "TfIdf [2,3]"), 2, o2, w2, "TfIdf [2,3]");
    end_session(s, &r);
}

/* StringNormalizer-10: stopwords matched without case (sorted once), then lowered. */
static void test_string_normalizer(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "X", KILN_DTYPE_STRING, "C");
    struct pb *n = node("StringNormalizer", "X", "Y");
    const char *const stop[] = {"the", "A", "of"};
    at_strs(n, "stopwords", 3, stop);
    at_s(n, "case_change_action", "LOWER");
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const char *const x1[] = {"The", "Cat", "a", "DOG"}, *const x2[] = {"OF", "Mice"};
    const char *const w1[] = {"cat", "dog"}, *const w2[] = {"mice"};
    const char *const *want[2] = {w1, w2};
    const size_t nw[2] = {2, 1};
    for (int t = 0; t < 2; t++) {
        struct kiln_value *in[1] = {t ? vec_of(KILN_DTYPE_STRING, 2, x2) : vec_of(KILN_DTYPE_STRING, 4, x1)};
        kiln_value *y = run_ok(s, 1, in, "StringNormalizer");
        if (!y) continue;
        int64_t d = (int64_t)nw[t];
        bool ok = kiln_value_dtype(y) == KILN_DTYPE_STRING && same_shape(&y->t, 1, &d);
        CHECK(ok, "StringNormalizer run %d: not string[%zu]", t, nw[t]);
        for (size_t i = 0; ok && i < nw[t]; i++)
            CHECK(strcmp(((char **)y->t.data)[i], want[t][i]) == 0, "StringNormalizer run %d [%zu]: '%s'", t, i,
                  ((char **)y->t.data)[i]);
        kiln_value_free(y);
    }
    end_session(s, &r);
}

/* ------------------------------------------------------------------ random */

/* RandomUniformLike-1 with a seed: every run restarts the stream from the seed (the state
 * prepare made is only read), so two runs of one shape agree and a larger shape starts with
 * the same values; all in [low, high). */
static void test_random_seeded(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,F");
    struct pb *n = node("RandomUniformLike", "X", "Y");
    /* seed, low and high: float attributes (AttributeProto f = 2), which test_model.h has
     * no helper for. */
    const char *const names[3] = {"seed", "low", "high"};
    const float fv[3] = {3.0f, -2.0f, 5.0f};
    for (int i = 0; i < 3; i++) {
        struct pb a = {0};
        pb_str(&a, 1, names[i]);
        pb_float(&a, 2, fv[i]);
        pb_int(&a, 20, KILN_ATTR_FLOAT);
        pb_msg(n, 5, &a);
    }
    end_node(&m, n, NULL);
    output(&m, "Y");
    kiln_session *s = session_of(&m, &r);
    if (!s) return;
    const int64_t d1[] = {2, 2}, d2[] = {3, 2};
    const double z[6] = {0};
    struct kiln_value *in[1] = {f32_of(2, d1, z)};
    kiln_value *y1 = run_ok(s, 1, in, "RandomUniformLike [2,2]");
    in[0] = f32_of(2, d1, z);
    kiln_value *y2 = run_ok(s, 1, in, "RandomUniformLike [2,2] again");
    in[0] = f32_of(2, d2, z);
    kiln_value *y3 = run_ok(s, 1, in, "RandomUniformLike [3,2]");
    if (y1 && y2 && y3) {
        const float *a1 = y1->t.data, *a2 = y2->t.data, *a3 = y3->t.data;
        CHECK(same_shape(&y3->t, 2, d2), "RandomUniformLike [3,2]: shape");
        CHECK(memcmp(a1, a2, 4 * sizeof *a1) == 0, "two runs with the same seed differ");
        CHECK(memcmp(a1, a3, 4 * sizeof *a1) == 0, "the [3,2] run does not start with the [2,2] values");
        bool distinct = false;
        for (int i = 0; i < 6; i++) {
            CHECK(a3[i] >= -2.0f && a3[i] < 5.0f, "value %d = %g outside [-2, 5)", i, (double)a3[i]);
            if (i && a3[i] != a3[0]) distinct = true;
        }
        CHECK(distinct, "all six values are equal");
    }
    kiln_value_free(y1);
    kiln_value_free(y2);
    kiln_value_free(y3);
    end_session(s, &r);
}

int main(void)
{
    test_reduce_sum();
    test_argmax();
    test_cumsum();
    test_einsum();
    test_tree_ensemble();
    test_label_encoder();
    test_tfidf();
    test_string_normalizer();
    test_random_seeded();
    return test_summary("test_prepared_misc");
}
