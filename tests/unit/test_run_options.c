/* test_run_options.c: kiln_run_options (timeout and cancel) on a Loop that would run for
 * ever (tests/data/long_loop.onnx: trip count 2^62, an Identity body), from the calling
 * thread and from another one; invalid timeouts; a NULL options pointer; the session staying
 * usable after a stopped run. Under ASan nothing a stopped run made may leak; under TSan the
 * cancel from another thread must not race.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln.h"
#include "test_support.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static kiln_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/%s", KILN_SOURCE_DIR, name);
    kiln_model *m = NULL;
    kiln_err err = {0};
    if (kiln_model_load_file(path, &m, &err) != KILN_OK) CHECK(0, "load %s: %s", name, err.msg);
    return m;
}

static kiln_value *x1(void)
{
    int64_t dims[1] = {1};
    kiln_value *x = NULL;
    kiln_err err = {0};
    if (kiln_value_create_tensor(KILN_DTYPE_F32, 1, dims, &x, &err) != KILN_OK) {
        CHECK(0, "x: %s", err.msg);
        return NULL;
    }
    *(float *)kiln_value_data(x) = 1.5f;
    return x;
}

/* Runs the long loop under ro; returns the status, err filled, outputs checked NULL. */
static kiln_status run_loop(kiln_session *s, const kiln_run_options *ro, kiln_err *err)
{
    kiln_value *x = x1(), *y = (kiln_value *)1;
    const kiln_value *in[1] = {x};
    kiln_status st = kiln_session_run_with_options(s, ro, 1, NULL, in, 1, &y, err);
    CHECK(st == KILN_OK || y == NULL, "a stopped run left an output");
    kiln_value_free(y);
    kiln_value_free(x);
    return st;
}

static void test_timeout(int threads)
{
    kiln_model *m = load("long_loop.onnx");
    if (!m) return;
    kiln_session_options so = {.threads = threads};
    kiln_session *s = NULL;
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "session: %s", err.msg);
    kiln_run_options *ro = NULL;
    CHECK(kiln_run_options_create(&ro, &err) == KILN_OK, "create: %s", err.msg);
    CHECK(kiln_run_options_set_timeout(ro, 0.2, &err) == KILN_OK, "set_timeout: %s", err.msg);
    double t0 = now_s();
    kiln_status st = run_loop(s, ro, &err);
    double took = now_s() - t0;
    CHECK(st == KILN_E_LIMIT, "timeout run: %s (%s)", kiln_status_name(st), err.msg);
    CHECK(strstr(err.msg, "run exceeded its timeout of 0.2 s at ") != NULL, "message: %s", err.msg);
    CHECK(took >= 0.19 && took < 5, "the 0.2 s run took %.3f s", took);
    /* The same options serve again: the deadline counts from each run's start. */
    st = run_loop(s, ro, &err);
    CHECK(st == KILN_E_LIMIT, "second timeout run: %s", kiln_status_name(st));
    kiln_run_options_free(ro);
    kiln_session_free(s);
    kiln_model_free(m);
}

struct canceller {
    kiln_run_options *ro;
    double delay;
};

static void *cancel_later(void *p)
{
    struct canceller *c = p;
    struct timespec ts = {0, (long)(c->delay * 1e9)};
    nanosleep(&ts, NULL);
    kiln_run_options_cancel(c->ro);
    return NULL;
}

static void test_cancel(int threads)
{
    kiln_model *m = load("long_loop.onnx");
    if (!m) return;
    kiln_session_options so = {.threads = threads};
    kiln_session *s = NULL;
    kiln_err err = {0};
    CHECK(kiln_session_create(m, &so, &s, &err) == KILN_OK, "session: %s", err.msg);
    kiln_run_options *ro = NULL;
    CHECK(kiln_run_options_create(&ro, &err) == KILN_OK, "create: %s", err.msg);
    CHECK(!kiln_run_options_cancelled(ro), "a new ro is cancelled");

    /* From another thread, while the loop runs (a 60 s timeout as a safety net). */
    CHECK(kiln_run_options_set_timeout(ro, 60, &err) == KILN_OK, "set_timeout: %s", err.msg);
    struct canceller c = {ro, 0.1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, cancel_later, &c) == 0, "pthread_create");
    double t0 = now_s();
    kiln_status st = run_loop(s, ro, &err);
    double took = now_s() - t0;
    pthread_join(th, NULL);
    CHECK(st == KILN_E_CANCELLED, "cancelled run: %s (%s)", kiln_status_name(st), err.msg);
    CHECK(strncmp(err.msg, "run cancelled at ", 17) == 0, "message: %s", err.msg);
    CHECK(took < 30, "the cancelled run took %.3f s", took);
    CHECK(kiln_run_options_cancelled(ro), "the flag was cleared");

    /* Still set: the next run stops before its first node. */
    st = run_loop(s, ro, &err);
    CHECK(st == KILN_E_CANCELLED && strcmp(err.msg, "run cancelled at Loop node 'loop'") == 0,
          "pre-cancelled run: %s (%s)", kiln_status_name(st), err.msg);

    /* Reset, and the session runs again (stopped by a short timeout this time). */
    kiln_run_options_reset(ro);
    CHECK(!kiln_run_options_cancelled(ro), "reset did not clear");
    CHECK(kiln_run_options_set_timeout(ro, 0.05, &err) == KILN_OK, "set_timeout: %s", err.msg);
    st = run_loop(s, ro, &err);
    CHECK(st == KILN_E_LIMIT, "after reset: %s (%s)", kiln_status_name(st), err.msg);
    kiln_run_options_free(ro);
    kiln_session_free(s);
    kiln_model_free(m);
}

static void test_args(void)
{
    kiln_run_options *ro = NULL;
    kiln_err err = {0};
    CHECK(kiln_run_options_create(&ro, &err) == KILN_OK, "create: %s", err.msg);
    CHECK(kiln_run_options_set_timeout(ro, -1, &err) == KILN_E_INVALID_ARG, "timeout -1 taken");
    CHECK(strstr(err.msg, "timeout -1 s") != NULL, "message: %s", err.msg);
    CHECK(kiln_run_options_set_timeout(ro, NAN, &err) == KILN_E_INVALID_ARG, "timeout NaN taken");
    CHECK(kiln_run_options_set_timeout(ro, INFINITY, &err) == KILN_E_INVALID_ARG, "timeout inf taken");
    CHECK(kiln_run_options_set_timeout(ro, 0, &err) == KILN_OK, "timeout 0 refused");
    CHECK(strcmp(kiln_status_name(KILN_E_CANCELLED), "cancelled") == 0, "status name");
    kiln_run_options_cancel(NULL);
    kiln_run_options_reset(NULL);
    CHECK(!kiln_run_options_cancelled(NULL), "NULL is cancelled");

    /* A model that finishes: with NULL options, and with options never triggered. */
    kiln_model *m = load("good_add.onnx");
    if (!m) {
        kiln_run_options_free(ro);
        return;
    }
    kiln_session *s = NULL;
    CHECK(kiln_session_create(m, NULL, &s, &err) == KILN_OK, "session: %s", err.msg);
    int64_t dims[2] = {2, 3};
    kiln_value *a = NULL, *c = NULL;
    CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, dims, &a, &err) == KILN_OK, "a: %s", err.msg);
    memset(kiln_value_data(a), 0, 6 * sizeof(float));
    const char *names[1] = {"A"};
    const kiln_value *in[1] = {a};
    CHECK(kiln_session_run_with_options(s, NULL, 1, names, in, 1, &c, &err) == KILN_OK,
          "run with NULL options: %s", err.msg);
    kiln_value_free(c);
    c = NULL;
    CHECK(kiln_run_options_set_timeout(ro, 60, &err) == KILN_OK, "set_timeout: %s", err.msg);
    CHECK(kiln_session_run_with_options(s, ro, 1, names, in, 1, &c, &err) == KILN_OK,
          "run with a 60 s timeout: %s", err.msg);
    CHECK(c && ((const float *)kiln_value_data(c))[2] == 3.0f, "wrong result");
    kiln_value_free(c);
    kiln_value_free(a);
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_run_options_free(ro);
    kiln_run_options_free(NULL);
}

int main(void)
{
    test_args();
    test_timeout(1);
    test_timeout(2);
    test_cancel(1);
    test_cancel(2);
    return test_summary("test_run_options");
}
