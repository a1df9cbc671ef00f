/* model_json.c: the JSON documents that describe a model: KServe v2 model metadata, Triton's
 * model configuration (ModelConfig in protobuf's JSON mapping, the fields kiln serve knows)
 * and Triton's statistics extension (server/docs/protocol/extension_statistics.md).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h"

static json_t *dims_json(int rank, const int64_t *dims, bool batch)
{
    json_t *a = json_array();
    if (a && batch) json_array_append_new(a, json_integer(-1));
    for (int i = 0; a && i < rank; i++) json_array_append_new(a, json_integer(dims[i]));
    return a;
}

static json_t *tensors_meta(const struct sv_io *list, size_t n, bool batch)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:o}", "name", list[i].name, "datatype",
                                           sv_dtype_kserve(list[i].dtype), "shape",
                                           dims_json(list[i].rank, list[i].dims, batch)));
    return a;
}

char *sv_model_metadata_json(const struct sv_model *m, const char *const *versions, size_t n_versions)
{
    const struct sv_config *c = &m->cfg;
    json_t *vs = json_array();
    for (size_t i = 0; vs && i < n_versions; i++) json_array_append_new(vs, json_string(versions[i]));
    bool batch = c->max_batch_size > 0;
    json_t *o = json_pack("{s:s,s:o,s:s,s:o,s:o}", "name", m->name, "versions", vs, "platform",
                          c->platform ? c->platform : c->backend, "inputs", tensors_meta(c->inputs, c->n_inputs, batch),
                          "outputs", tensors_meta(c->outputs, c->n_outputs, batch));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static json_t *io_config(const struct sv_io *list, size_t n, bool input)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const struct sv_io *io = &list[i];
        json_t *o = json_pack("{s:s,s:s,s:o}", "name", io->name, "data_type", sv_dtype_config(io->dtype), "dims",
                              dims_json(io->rank, io->dims, false));
        if (!o) continue;
        if (io->has_reshape)
            json_object_set_new(o, "reshape", json_pack("{s:o}", "shape", dims_json(io->reshape_rank, io->reshape, false)));
        if (input) json_object_set_new(o, "optional", json_boolean(io->optional));
        json_array_append_new(a, o);
    }
    return a;
}

/* A ModelQueuePolicy as Triton's JSON shows it. */
static json_t *queue_policy_json(const struct sv_queue_policy *p)
{
    return json_pack("{s:s,s:I,s:b,s:i}", "timeout_action", p->timeout_delay ? "DELAY" : "REJECT",
                     "default_timeout_microseconds", (json_int_t)p->default_timeout_us, "allow_timeout_override",
                     p->allow_timeout_override, "max_queue_size", (int)p->max_queue_size);
}

char *sv_model_config_json(const struct sv_model *m)
{
    const struct sv_config *c = &m->cfg;
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:o,s:o}", "name", m->name, "platform", c->platform ? c->platform : "",
                          "backend", c->backend ? c->backend : "", "max_batch_size", (json_int_t)c->max_batch_size,
                          "input", io_config(c->inputs, c->n_inputs, true), "output",
                          io_config(c->outputs, c->n_outputs, false));
    if (!o) return NULL;
    if (c->default_model_filename)
        json_object_set_new(o, "default_model_filename", json_string(c->default_model_filename));
    json_t *vp;
    if (c->version_policy == SV_VERSIONS_ALL) vp = json_pack("{s:{}}", "all");
    else if (c->version_policy == SV_VERSIONS_SPECIFIC) {
        json_t *v = json_array();
        for (size_t i = 0; v && i < c->n_versions; i++) json_array_append_new(v, json_integer(c->versions[i]));
        vp = json_pack("{s:{s:o}}", "specific", "versions", v);
    } else {
        vp = json_pack("{s:{s:I}}", "latest", "num_versions", (json_int_t)c->latest_versions);
    }
    json_object_set_new(o, "version_policy", vp);
    json_object_set_new(o, "instance_group", json_pack("[{s:s,s:i,s:s}]", "name", m->name, "count",
                                                       c->instance_count, "kind", "KIND_CPU"));
    if (c->dynamic_batching) {
        json_t *pref = json_array();
        for (int i = 0; pref && i < c->n_preferred; i++) json_array_append_new(pref, json_integer(c->preferred[i]));
        json_t *db = json_pack("{s:o,s:I,s:b,s:o,s:I,s:I}", "preferred_batch_size", pref,
                               "max_queue_delay_microseconds", (json_int_t)c->max_queue_delay_us, "preserve_ordering",
                               c->preserve_ordering, "default_queue_policy", queue_policy_json(&c->queue),
                               "priority_levels", (json_int_t)c->priority_levels, "default_priority_level",
                               (json_int_t)c->default_priority_level);
        if (db && c->n_level_policies) {
            json_t *lp = json_object();
            for (size_t i = 0; lp && i < c->n_level_policies; i++) {
                char key[24];
                snprintf(key, sizeof key, "%llu", (unsigned long long)c->level_policies[i].level);
                json_object_set_new(lp, key, queue_policy_json(&c->level_policies[i].policy));
            }
            json_object_set_new(db, "priority_queue_policy", lp);
        }
        json_object_set_new(o, "dynamic_batching", db);
    }
    json_t *params = json_object();
    for (size_t i = 0; params && i < c->n_params; i++)
        json_object_set_new(params, c->param_keys[i], json_pack("{s:s}", "string_value", c->param_values[i]));
    json_object_set_new(o, "parameters", params);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
