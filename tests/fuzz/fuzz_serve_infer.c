/* fuzz_serve_infer.c: fuzz target for `kiln serve`'s inference request decoder.
 *
 * Input: one flag byte, then (when bit 1 of it is set) a 4-byte little-endian
 * Inference-Header-Content-Length, then the request body: KServe v2 JSON, followed by the
 * binary tensor data of the binary extension when the header length is given. Bit 0 picks
 * the model description the body is decoded against: the digits demo model with
 * max_batch_size 16 and dynamic batching with three priority levels, a default timeout that
 * requests may shorten, and a policy of its own for level 1, or the same model without
 * batching and with its input given as 64 flat floats reshaped to [1, 8, 8]. The body goes through
 * sv_infer_decode (tools/serve/infer.c), the part of sv_infer before a request is queued:
 * JSON parse, inputs (JSON data or binary), shapes and types against the configuration,
 * requested outputs and parameters. Limits are the server's defaults but --max-json-bytes
 * and --max-elements are small, so that the limit paths are reached.
 *
 * Invariants checked: a refused request has a 4xx status (500 only for out of memory) and a
 * JSON body {"error": "<message>"}; an accepted one has every model input filled, a batch
 * size within max_batch_size (1 without batching), a priority level within the model's
 * levels (0 without levels) with that level's queue policy, and a deadline no later than
 * the policy's default timeout allows (a request's timeout may only shorten it). Everything is freed (LeakSanitizer).
 *
 * The decoder never reaches the scheduler, the statistics or the server's log: those are
 * stubs here that fail the target when called.
 */
#include <jansson.h>

#include "fuzz_serve.h"
#include "infer.h"

bool sv_verbose;
void sv_log(const char *fmt, ...)
{
    FUZZ_CHECK(0, "sv_log(\"%s\") called while decoding", fmt);
}
void sv_stats_request(struct sv_stats *s, bool ok, uint64_t request_ns, uint64_t queue_ns, uint64_t compute_ns)
{
    (void)s, (void)ok, (void)request_ns, (void)queue_ns, (void)compute_ns;
    FUZZ_CHECK(0, "sv_stats_request called while decoding");
}
void sv_stats_exec(struct sv_stats *s, int64_t rows)
{
    (void)s, (void)rows;
    FUZZ_CHECK(0, "sv_stats_exec called while decoding");
}

static const char *const configs[2] = {
    "max_batch_size: 16\n"
    "input [ { name: \"image\" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]\n"
    "dynamic_batching { preferred_batch_size: [ 8, 16 ] priority_levels: 3 default_priority_level: 2\n"
    "  default_queue_policy { default_timeout_microseconds: 1000000 allow_timeout_override: true }\n"
    "  priority_queue_policy { key: 1 value: { max_queue_size: 4 } } }\n",
    "max_batch_size: 0\n"
    "input { name: \"image\" data_type: TYPE_FP32 dims: [ 64 ] reshape: { shape: [ 1, 1, 8, 8 ] } }\n",
};

/* The model description of configs[k] on the digits engine, made once (as repo.c's
 * load_version, without the scheduler). */
static struct sv_model *fuzz_model(int k)
{
    static struct sv_model models[2];
    struct sv_model *m = &models[k];
    if (m->m) return m;
    char err[768];
    struct pbtxt_msg *tree = NULL;
    FUZZ_CHECK(pbtxt_parse(configs[k], strlen(configs[k]), &tree, err, sizeof err) == 0, "%s", err);
    FUZZ_CHECK(sv_config_from_pbtxt(tree, &m->cfg, NULL, NULL, err, sizeof err), "%s", err);
    pbtxt_free(tree);
    m->name = k ? "digits_flat" : "digits";
    m->version = 1;
    snprintf(m->version_str, sizeof m->version_str, "1");
    m->engine = fuzz_digits_engine();
    m->m = kiln_engine_model(m->engine);
    FUZZ_CHECK(sv_config_complete(&m->cfg, m->m, m->name, 4, err, sizeof err), "%s", err);
    return m;
}

static void check_refusal(const struct sv_response *resp)
{
    FUZZ_CHECK((resp->status >= 400 && resp->status < 500) || resp->status == 500, "status %d", resp->status);
    FUZZ_CHECK(resp->body && resp->len == strlen(resp->body) && !resp->json_len, "error body");
    json_error_t je;
    json_t *doc = json_loadb(resp->body, resp->len, 0, &je);
    FUZZ_CHECK(doc, "error body is not JSON: %s", resp->body);
    const char *msg = json_string_value(json_object_get(doc, "error"));
    /* Not required to be one line: it may quote a name the client sent (JSON escapes it). */
    FUZZ_CHECK(msg && msg[0], "error message of '%s'", resp->body);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t flags = data[0];
    size_t at = 1;
    long long header_len = -1;
    if (flags & 2) {
        if (size < 5) return 0;
        header_len = (long long)data[1] | (long long)data[2] << 8 | (long long)data[3] << 16 |
                     (long long)data[4] << 24;
        at = 5;
    }
    struct sv_model *m = fuzz_model(flags & 1);
    struct sv_options opt = {0};
    opt.max_json_bytes = 32u << 10;
    opt.max_elements = 4096;
    /* The body in a buffer of its own size, so that ASan sees any read past its end. */
    size_t len = size - at;
    char *body = malloc(len ? len : 1);
    FUZZ_CHECK(body, "out of memory");
    if (len) memcpy(body, data + at, len);
    struct sv_decoded d;
    struct sv_response resp = {0};
    uint64_t t0 = sv_now_ns();
    if (!sv_infer_decode(&opt, m, body, len, header_len, -1, &d, &resp)) {
        check_refusal(&resp);
    } else {
        FUZZ_CHECK(!resp.body && d.r, "an accepted request has a response or no request");
        int64_t max = m->cfg.max_batch_size > 0 ? m->cfg.max_batch_size : 1;
        FUZZ_CHECK(d.r->batch >= 1 && d.r->batch <= max, "batch %lld of %lld",
                   (long long)d.r->batch, (long long)max);
        for (size_t i = 0; i < kiln_model_input_count(m->m); i++)
            FUZZ_CHECK(d.r->in[i].v, "input %zu not filled", i);
        const struct sv_config *c = &m->cfg;
        FUZZ_CHECK(c->priority_levels ? d.r->priority >= 1 && d.r->priority <= c->priority_levels
                                      : d.r->priority == 0,
                   "priority level %llu of %llu", (unsigned long long)d.r->priority,
                   (unsigned long long)c->priority_levels);
        FUZZ_CHECK(d.r->policy == sv_config_queue_policy(c, d.r->priority), "the level's queue policy");
        uint64_t def = d.r->policy->default_timeout_us;
        FUZZ_CHECK(!def || (d.r->deadline_ns && d.r->deadline_ns >= t0 && d.r->deadline_ns <= sv_now_ns() + def * 1000),
                   "a deadline past the default timeout");
    }
    sv_decoded_fini(&d);
    free(resp.body);
    free(body);
    return 0;
}
