/* test_serve_pbtxt.c: kiln serve's protobuf text format reader (tools/serve/pbtxt.c) and
 * model configuration (tools/serve/config.c): a full Triton config.pbtxt read field by field,
 * the syntax variants (lists with and without ':', '<>' messages, separators, comments,
 * escapes), errors with their line and column, the limits (depth, size), every truncated
 * prefix and 20000 random mutations of a valid config (each must parse or fail cleanly,
 * under ASan in the sanitizer build), and auto-completion against the demo model.
 */
#include <stdlib.h>
#include <string.h>

#include "pbtxt.h"
#include "serve.h"
#include "test_support.h"

static const char full_config[] =
    "# a Triton config\n"
    "name: \"digits\"\n"
    "platform: 'onnxruntime_onnx'\n"
    "max_batch_size: 16\n"
    "input [\n"
    "  { name: \"image\" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] },\n"
    "  { name: \"extra\", data_type: TYPE_STRING, dims: [-1], optional: true }\n"
    "]\n"
    "output { name: \"logits\" data_type: TYPE_FP32 dims: 10 reshape: < shape: [ 2, 5 ] > };\n"
    "dynamic_batching {\n"
    "  preferred_batch_size: [ 4, 8 ]\n"
    "  max_queue_delay_microseconds: 100\n"
    "  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 5000\n"
    "                         allow_timeout_override: true max_queue_size: 7 }\n"
    "}\n"
    "instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 } ]\n"
    "version_policy: { specific: { versions: [1, 3] } }\n"
    "parameters { key: \"k\" value: { string_value: \"a\\tb\\x41\\101\" } }\n"
    "model_warmup { name: \"w\" }\n";

static int warnings;
static void count_warning(void *user, const char *msg)
{
    (void)user;
    CHECK(strstr(msg, "not used by kiln serve") != NULL, "warning text: %s", msg);
    warnings++;
}

/* Priority levels (Triton's dynamic_batching.priority_levels): the request's priority maps to
 * a level as Triton's InferenceRequest::SetPriority does, and each level has its queue policy
 * (priority_queue_policy, else default_queue_policy). */
static void test_priority_config(void)
{
    static const char text[] = "dynamic_batching {\n"
                               "  preserve_ordering: true\n"
                               "  priority_levels: 3 default_priority_level: 2\n"
                               "  default_queue_policy { max_queue_size: 5 }\n"
                               "  priority_queue_policy { key: 3 value: { timeout_action: DELAY "
                               "default_timeout_microseconds: 100 } }\n"
                               "  priority_queue_policy [ { key: 1, value: { max_queue_size: 9 } } ]\n"
                               "}\n";
    struct pbtxt_msg *m = NULL;
    char err[512];
    CHECK(pbtxt_parse(text, strlen(text), &m, err, sizeof err) == 0, "parse: %s", err);
    if (!m) return;
    struct sv_config c;
    bool ok = sv_config_from_pbtxt(m, &c, NULL, NULL, err, sizeof err);
    CHECK(ok, "priority config: %s", err);
    if (ok) {
        CHECK(c.preserve_ordering && c.priority_levels == 3 && c.default_priority_level == 2, "levels");
        CHECK(c.n_level_policies == 2 && c.level_policies[0].level == 1 && c.level_policies[1].level == 3,
              "level policies sorted by level");
        const uint64_t asked[] = {0, 1, 2, 3, 4, 1000};
        const uint64_t level[] = {2, 1, 2, 3, 2, 2}; /* 0 and > priority_levels: the default */
        for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++)
            CHECK(sv_config_priority(&c, asked[i]) == level[i], "priority %llu -> level %llu, want %llu",
                  (unsigned long long)asked[i], (unsigned long long)sv_config_priority(&c, asked[i]),
                  (unsigned long long)level[i]);
        CHECK(sv_config_queue_policy(&c, 1)->max_queue_size == 9, "level 1: its own policy");
        CHECK(sv_config_queue_policy(&c, 2) == &c.queue && c.queue.max_queue_size == 5, "level 2: the default");
        const struct sv_queue_policy *p3 = sv_config_queue_policy(&c, 3);
        CHECK(p3->timeout_delay && p3->default_timeout_us == 100 && p3->max_queue_size == 0,
              "level 3: DELAY after 100 us, unbounded");
        sv_config_fini(&c);
    }
    pbtxt_free(m);
}

static void test_full_config(void)
{
    struct pbtxt_msg *m = NULL;
    char err[512];
    CHECK(pbtxt_parse(full_config, strlen(full_config), &m, err, sizeof err) == 0, "parse: %s", err);
    if (!m) return;
    struct sv_config c;
    warnings = 0;
    bool ok = sv_config_from_pbtxt(m, &c, count_warning, NULL, err, sizeof err);
    CHECK(ok, "config: %s", err);
    CHECK(warnings == 1, "one unknown field (model_warmup), got %d warnings", warnings);
    if (ok) {
        CHECK(strcmp(c.name, "digits") == 0 && strcmp(c.platform, "onnxruntime_onnx") == 0, "name, platform");
        CHECK(c.max_batch_size == 16 && c.has_max_batch_size, "max_batch_size %lld", (long long)c.max_batch_size);
        CHECK(c.n_inputs == 2 && strcmp(c.inputs[0].name, "image") == 0 && c.inputs[0].dtype == KILN_DTYPE_F32 &&
                  c.inputs[0].rank == 3 && c.inputs[0].dims[2] == 8,
              "input 0");
        CHECK(c.inputs[1].dtype == KILN_DTYPE_STRING && c.inputs[1].optional && c.inputs[1].dims[0] == -1, "input 1");
        CHECK(c.n_outputs == 1 && c.outputs[0].rank == 1 && c.outputs[0].dims[0] == 10 && c.outputs[0].has_reshape &&
                  c.outputs[0].reshape_rank == 2 && c.outputs[0].reshape[1] == 5,
              "output with reshape");
        CHECK(c.dynamic_batching && c.n_preferred == 2 && c.preferred[1] == 8 && c.max_queue_delay_us == 100,
              "dynamic_batching");
        CHECK(c.queue.timeout_delay && c.queue.default_timeout_us == 5000 && c.queue.allow_timeout_override &&
                  c.queue.max_queue_size == 7,
              "queue policy");
        CHECK(c.priority_levels == 0 && !c.preserve_ordering && sv_config_priority(&c, 3) == 0 &&
                  sv_config_queue_policy(&c, 0) == &c.queue,
              "no priority levels: every request at level 0 under the default policy");
        CHECK(c.instance_count == 3, "instance groups add up: %d", c.instance_count);
        CHECK(c.version_policy == SV_VERSIONS_SPECIFIC && c.n_versions == 2 && c.versions[1] == 3, "version_policy");
        CHECK(c.n_params == 1 && strcmp(c.param_keys[0], "k") == 0 && strcmp(c.param_values[0], "a\tbAA") == 0,
              "parameters with escapes: '%s'", c.n_params ? c.param_values[0] : "");
        sv_config_fini(&c);
    }
    pbtxt_free(m);
}

/* Parses text; expects failure with `want` in the message. */
static void expect_parse_error(const char *text, size_t len, const char *want)
{
    struct pbtxt_msg *m = NULL;
    char err[512] = "";
    int rc = pbtxt_parse(text, len, &m, err, sizeof err);
    CHECK(rc == -1 && m == NULL, "'%.40s' should fail", text);
    CHECK(strstr(err, want) != NULL, "'%.40s': message '%s' lacks '%s'", text, err, want);
    pbtxt_free(m);
}

static void expect_config_error(const char *text, const char *want)
{
    struct pbtxt_msg *m = NULL;
    char err[512] = "";
    if (pbtxt_parse(text, strlen(text), &m, err, sizeof err) != 0) {
        CHECK(0, "'%s' should parse: %s", text, err);
        return;
    }
    struct sv_config c;
    bool ok = sv_config_from_pbtxt(m, &c, NULL, NULL, err, sizeof err);
    CHECK(!ok, "'%s' should be refused", text);
    CHECK(strstr(err, want) != NULL, "'%s': message '%s' lacks '%s'", text, err, want);
    if (ok) sv_config_fini(&c);
    pbtxt_free(m);
}

static void test_errors(void)
{
    expect_parse_error("name: \"abc", 10, "string not closed");
    expect_parse_error("name: \"a\nb\"", 11, "line 1");
    expect_parse_error("input { name: \"x\"", 17, "expected '}'");
    expect_parse_error("name \"x\"", 8, "expected ':' or '{'");
    expect_parse_error("name: ", 6, "expected a value");
    expect_parse_error("name: }", 7, "expected a value");
    expect_parse_error("a: [1, 2", 8, "expected ',' or ']'");
    expect_parse_error("a: \"\\q\"", 7, "unknown escape");
    expect_parse_error("a: \"\\777\"", 9, "octal");
    expect_parse_error("a: 1\n  ?", 8, "line 2, column 3");
    expect_parse_error("a: 1\0b: 2", 9, "byte 0x00");
    /* Nesting: 32 levels parse, 33 do not. */
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 33; i++) deep[n++] = 'a', deep[n++] = '{';
    for (int i = 0; i < 33; i++) deep[n++] = '}';
    expect_parse_error(deep, n, "nested deeper than 32");
    struct pbtxt_msg *m = NULL;
    char err[256];
    CHECK(pbtxt_parse(deep + 2, n - 3, &m, err, sizeof err) == 0, "32 levels parse: %s", err);
    pbtxt_free(m);
    /* Size limit. */
    size_t big = PBTXT_MAX_INPUT + 1;
    char *b = malloc(big);
    if (b) {
        memset(b, ' ', big);
        expect_parse_error(b, big, "limit");
        free(b);
    }
    /* Values of known fields. */
    expect_config_error("max_batch_size: -1", "out of range");
    expect_config_error("dynamic_batching { priority_levels: 2 }", "default_priority_level 0 must be in [1, priority_levels 2]");
    expect_config_error("dynamic_batching { priority_levels: 2 default_priority_level: 3 }", "must be in [1");
    expect_config_error("dynamic_batching { default_priority_level: 1 }", "needs priority_levels");
    expect_config_error("dynamic_batching { priority_levels: 2 default_priority_level: 1 "
                        "priority_queue_policy { key: 3 value: { max_queue_size: 1 } } }",
                        "priority_queue_policy for level 3: priority_levels is 2");
    expect_config_error("dynamic_batching { priority_levels: 2 default_priority_level: 1 "
                        "priority_queue_policy { value: { max_queue_size: 1 } } }", "needs a key");
    expect_config_error("dynamic_batching { priority_levels: 2 default_priority_level: 1 "
                        "priority_queue_policy { key: 1 value: {} } priority_queue_policy { key: 1 value: {} } }",
                        "priority level 1 has two policies");
    expect_config_error("dynamic_batching { priority_queue_policy { key: 0 value: {} } }", "out of range");
    expect_config_error("dynamic_batching { preserve_ordering: maybe }", "expected true or false");
    expect_config_error("max_batch_size: 1.5", "expected an integer");
    expect_config_error("max_batch_size: \"4\"", "expected an integer");
    expect_config_error("name: digits", "quoted string");
    expect_config_error("input { name: \"x\" data_type: TYPE_FLOAT32 }", "unknown or unsupported data type");
    expect_config_error("input { data_type: TYPE_FP32 }", "needs a name");
    expect_config_error("input { name: \"x\" }", "needs a data_type");
    expect_config_error("input: 3", "expected a message");
    expect_config_error("instance_group { kind: KIND_GPU }", "KIND_CPU");
    expect_config_error("platform: \"tensorflow_savedmodel\"", "not served by kiln");
    expect_config_error("dynamic_batching { default_queue_policy { timeout_action: DROP } }", "REJECT or DELAY");
    expect_config_error("version_policy { newest { } }", "latest, all or specific");
    expect_config_error("input { name: \"x\" data_type: TYPE_FP32 dims: [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1] }",
                        "more than 16 dims");
    expect_config_error("input { name: \"x\" data_type: TYPE_FP32 optional: maybe }", "true or false");
}

/* Every prefix of a valid config, and random mutations of it, parse or fail cleanly; a
 * failure always has a message. ASan (the sanitizer build) catches any read past the end:
 * each input is copied into a buffer of exactly its length. */
static void test_truncation_and_mutation(void)
{
    size_t len = strlen(full_config);
    int parsed = 0, failed = 0;
    for (size_t k = 0; k <= len; k++) {
        char *buf = malloc(k ? k : 1);
        memcpy(buf, full_config, k);
        struct pbtxt_msg *m = NULL;
        char err[256] = "";
        if (pbtxt_parse(buf, k, &m, err, sizeof err) == 0) {
            parsed++;
            struct sv_config c;
            if (sv_config_from_pbtxt(m, &c, NULL, NULL, err, sizeof err)) sv_config_fini(&c);
        } else {
            failed++;
            CHECK(err[0] != 0, "prefix %zu failed without a message", k);
        }
        pbtxt_free(m);
        free(buf);
    }
    CHECK(parsed > 0 && failed > 0, "prefixes: %d parsed, %d failed", parsed, failed);
    rng_seed(42);
    static const char alphabet[] = "{}[]<>:;,\"'\\#\n -0123456789abcxyz_\x01\xff";
    for (int it = 0; it < 20000; it++) {
        char *buf = malloc(len);
        memcpy(buf, full_config, len);
        int edits = 1 + rng_int(4);
        size_t n = len;
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rng_int((int)n);
            buf[at] = alphabet[rng_int((int)sizeof alphabet - 1)];
        }
        if (rng_int(4) == 0) n = (size_t)rng_int((int)len) + 1;
        struct pbtxt_msg *m = NULL;
        char err[256] = "";
        if (pbtxt_parse(buf, n, &m, err, sizeof err) == 0) {
            struct sv_config c;
            if (sv_config_from_pbtxt(m, &c, NULL, NULL, err, sizeof err)) sv_config_fini(&c);
            else CHECK(err[0] != 0, "mutation %d: config refused without a message", it);
        } else {
            CHECK(err[0] != 0 && m == NULL, "mutation %d failed without a message", it);
        }
        pbtxt_free(m);
        free(buf);
    }
}

/* Auto-completion and checks against the demo model (image float32[N,1,8,8] -> logits
 * float32[N,10], label int64[N]) and a fixed-shape model (test_add: [3,4,5]). */
static bool complete(const char *text, const kiln_model *model, struct sv_config *c, char *err, size_t size)
{
    struct pbtxt_msg *m = NULL;
    memset(c, 0, sizeof *c);
    if (pbtxt_parse(text, strlen(text), &m, err, size) != 0) return false;
    bool ok = sv_config_from_pbtxt(m, c, NULL, NULL, err, size) && sv_config_complete(c, model, "digits", 4, err, size);
    pbtxt_free(m);
    return ok;
}

static void test_complete(void)
{
    kiln_model *digits = NULL, *add = NULL;
    kiln_err ke = {0};
    if (kiln_model_load_file(KILN_SOURCE_DIR "/demo/digits_cnn.onnx", &digits, &ke) != KILN_OK ||
        kiln_model_load_file(KILN_ONNX_TESTS "/node/test_add/model.onnx", &add, &ke) != KILN_OK) {
        CHECK(0, "loading the test models: %s", ke.msg);
        kiln_model_free(digits);
        return;
    }
    struct sv_config c;
    char err[512] = "";
    CHECK(complete("", digits, &c, err, sizeof err), "empty config: %s", err);
    CHECK(c.max_batch_size == 4 && c.dynamic_batching && c.n_inputs == 1 && c.inputs[0].rank == 3 &&
              c.inputs[0].dims[0] == 1 && c.n_outputs == 2 && c.outputs[1].rank == 0 &&
              c.outputs[1].dtype == KILN_DTYPE_I64 && c.instance_count == 1 && strcmp(c.name, "digits") == 0,
          "auto-completed digits config");
    sv_config_fini(&c);
    CHECK(complete("max_batch_size: 0", digits, &c, err, sizeof err) && c.inputs[0].rank == 4 &&
              c.inputs[0].dims[0] == -1,
          "max_batch_size 0 keeps the batch dim: %s", err);
    sv_config_fini(&c);
    CHECK(complete("output { name: \"label\" data_type: TYPE_INT64 dims: [] }", digits, &c, err, sizeof err) &&
              c.n_outputs == 1 && c.outputs[0].model_index == 1,
          "a subset of the outputs: %s", err);
    sv_config_fini(&c);
    struct {
        const char *text, *want;
    } bad[] = {
        {"name: \"other\"", "its folder is 'digits'"},
        {"input { name: \"image\" data_type: TYPE_FP32 dims: [1, 8, 9] }", "dim 2 is 9"},
        {"input { name: \"image\" data_type: TYPE_INT32 dims: [1, 8, 8] }", "says TYPE_INT32; the model has float32"},
        {"input { name: \"pixels\" data_type: TYPE_FP32 dims: [1, 8, 8] }", "does not have"},
        {"input { name: \"image\" data_type: TYPE_FP32 dims: [8, 8] }", "gives 2 dims"},
        {"max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }", "exceeds max_batch_size"},
        {"input { name: \"image\" data_type: TYPE_FP32 dims: [64] reshape { shape: [1, 8, 7] } }", "dim 2 is 7"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        bool ok = complete(bad[i].text, digits, &c, err, sizeof err);
        CHECK(!ok && strstr(err, bad[i].want), "'%s': '%s' lacks '%s'", bad[i].text, err, bad[i].want);
        sv_config_fini(&c);
    }
    CHECK(complete("", add, &c, err, sizeof err) && c.max_batch_size == 0 && c.inputs[0].rank == 3,
          "a fixed-shape model does not batch: %s", err);
    sv_config_fini(&c);
    CHECK(!complete("max_batch_size: 8", add, &c, err, sizeof err) && strstr(err, "dynamic first dim"),
          "max_batch_size on a fixed-shape model is refused: %s", err);
    sv_config_fini(&c);
    kiln_model_free(digits);
    kiln_model_free(add);
}

int main(void)
{
    test_full_config();
    test_priority_config();
    test_errors();
    test_truncation_and_mutation();
    test_complete();
    return test_summary("test_serve_pbtxt");
}
