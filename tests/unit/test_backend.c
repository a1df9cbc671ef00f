/* test_backend.c: the backend interface (src/backend/backend.h) and the builder's node
 * assignment. A test backend "testdev" (host memory, the CPU's kernels for Add and Relu
 * only) is registered; an engine built for it runs Add and Relu there and every other node
 * on the CPU, the build log lists exactly those fallback nodes, and the outputs equal a
 * plain session's bit for bit (the same kernels run). An unknown device is refused with the
 * list of those available. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "test_support.h"
#include "test_text_model.h"

static const struct kiln_cpu_op *testdev_find(const char *domain, const char *op, int version, kiln_dtype dt)
{
    (void)dt;
    if (domain[0] || (strcmp(op, "Add") != 0 && strcmp(op, "Relu") != 0)) return NULL;
    return kiln_cpu_backend.find_op(domain, op, version, dt);
}

static struct kiln_backend testdev;

struct log {
    char text[4096];
    int fallbacks;
};

static void on_log(void *user, const char *line)
{
    struct log *l = user;
    if (strncmp(line, "fallback:", 9) == 0) l->fallbacks++;
    strncat(l->text, line, sizeof l->text - strlen(l->text) - 2);
    strcat(l->text, "\n");
}

static const char *backend_model =
    "opset 17\n"
    "input X f32 4,8\n"
    "output Y\n"
    "init W f32 8,8 rand\n"
    "init B f32 8 rand\n"
    "node MatMul X,W -> M\n"
    "node Add M,B -> A\n"
    "node Relu A -> R\n"
    "node Sigmoid R -> S\n"
    "node Add S,R -> Y\n";

static void test_fallback(void)
{
    testdev = kiln_cpu_backend;
    testdev.name = "testdev";
    testdev.find_op = testdev_find;
    kiln_err e = {0};
    CHECK(kiln_backend_register(&testdev, &e) == KILN_OK, "register: %s", e.msg);
    CHECK(kiln_backend_register(&testdev, &e) == KILN_E_INVALID_ARG && strstr(e.msg, "already registered"),
          "a second registration: %s", e.msg);
    CHECK(kiln_backend_find("testdev") == &testdev, "find testdev");
    const struct kiln_backend *const *list = kiln_backend_list();
    size_t n = 0;
    while (list[n]) n++;
    CHECK(n >= 2 && list[n - 1] == &kiln_cpu_backend, "the CPU stays last");

    rng_seed(7);
    struct buf b = {0};
    parse_model(backend_model, &b);
    kiln_model *m = NULL;
    CHECK(kiln_model_load_buffer(b.p, b.len, NULL, &m, &e) == KILN_OK, "load: %s", e.msg);
    free(b.p);
    if (!m) return;

    kiln_builder *bl = NULL;
    CHECK(kiln_builder_create(&bl, &e) == KILN_OK, "builder: %s", e.msg);
    CHECK(kiln_builder_set_device(bl, "nosuchdev", &e) == KILN_E_UNSUPPORTED &&
              strstr(e.msg, "'nosuchdev' is not built into this kiln (it has: testdev, cpu)"),
          "unknown device: %s", e.msg);
    CHECK(kiln_builder_set_device(bl, "testdev", &e) == KILN_OK, "set device: %s", e.msg);
    kiln_builder_set_opt_level(bl, KILN_OPT_NONE);
    struct log lg = {{0}, 0};
    kiln_builder_set_log(bl, on_log, &lg, 0);
    kiln_engine *en = NULL;
    CHECK(kiln_builder_build(bl, m, &en, &e) == KILN_OK, "build: %s", e.msg);
    if (en) {
        CHECK(lg.fallbacks == 2, "2 fallback lines (MatMul, Sigmoid), got %d:\n%s", lg.fallbacks, lg.text);
        CHECK(strstr(lg.text, "MatMul node 'n0'") && strstr(lg.text, "Sigmoid node 'n3'") &&
                  strstr(lg.text, "runs on cpu (testdev has no kernel for it)"),
              "the log names the fallback nodes:\n%s", lg.text);
        const kiln_model *em = kiln_engine_model(en);
        for (size_t i = 0; i < kiln_model_node_count(em); i++) {
            const char *be, *k, *var, *name, *op, *dom;
            kiln_model_node(em, i, &name, &op, &dom);
            kiln_engine_node_kernel(en, i, &be, &k, &var);
            bool dev = strcmp(op, "Add") == 0 || strcmp(op, "Relu") == 0;
            CHECK(be && strcmp(be, dev ? "testdev" : "cpu") == 0, "node %s (%s) on %s", name, op, be ? be : "?");
        }
        kiln_session *s1 = NULL, *s2 = NULL;
        CHECK(kiln_session_create_from_engine(en, NULL, &s1, &e) == KILN_OK, "session: %s", e.msg);
        CHECK(kiln_session_create(m, NULL, &s2, &e) == KILN_OK, "plain session: %s", e.msg);
        int64_t dims[2] = {4, 8};
        kiln_value *x = NULL, *y1 = NULL, *y2 = NULL;
        CHECK(kiln_value_create_tensor(KILN_DTYPE_F32, 2, dims, &x, &e) == KILN_OK, "input");
        float *xd = kiln_value_data(x);
        for (int i = 0; i < 32; i++) xd[i] = rng_f32();
        const kiln_value *in[1] = {x};
        CHECK(s1 && kiln_session_run(s1, 1, NULL, in, 1, &y1, &e) == KILN_OK, "run on testdev: %s", e.msg);
        CHECK(s2 && kiln_session_run(s2, 1, NULL, in, 1, &y2, &e) == KILN_OK, "run plain: %s", e.msg);
        if (y1 && y2)
            CHECK(memcmp(kiln_value_data(y1), kiln_value_data(y2), 32 * sizeof(float)) == 0,
                  "outputs equal bit for bit");
        kiln_value_free(x), kiln_value_free(y1), kiln_value_free(y2);
        kiln_session_free(s1), kiln_session_free(s2);
    }
    kiln_engine_free(en);
    kiln_builder_free(bl);
    kiln_model_free(m);
}

int main(void)
{
    test_fallback();
    return test_summary("test_backend");
}
