/* config.c: Triton's model configuration (config.pbtxt, ModelConfig of Triton's
 * model_config.proto) for the fields kiln serve uses, and auto-completion from the model.
 *
 * Known fields with bad values fail the load; unknown fields are reported and ignored, so a
 * config written for Triton (with fields kiln does not use) still loads. Auto-completion
 * follows Triton's for ONNX models: absent inputs/outputs come from the model; an absent
 * max_batch_size becomes the default (4, --backend-config default-max-batch-size) when every
 * input and output has a dynamic first dim, else 0; dims exclude the batch dim when
 * max_batch_size > 0.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

struct cfg_reader {
    sv_warn_fn warn;
    void *user;
    char *err;
    size_t err_size;
};

static bool bad(struct cfg_reader *r, const struct pbtxt_field *f, const char *fmt, ...)
{
    int o = snprintf(r->err, r->err_size, "line %d, field '%s': ", f ? f->line : 0, f ? f->name : "");
    if (o >= 0 && (size_t)o < r->err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + o, r->err_size - (size_t)o, fmt, ap);
        va_end(ap);
    }
    return false;
}

static void unknown(struct cfg_reader *r, const char *where, const struct pbtxt_field *f)
{
    if (!r->warn) return;
    char b[256];
    snprintf(b, sizeof b, "line %d: field '%s%s%s' is not used by kiln serve; ignored", f->line, where,
             where[0] ? "." : "", f->name);
    r->warn(r->user, b);
}

static bool want_scalar(struct cfg_reader *r, const struct pbtxt_field *f)
{
    if (f->msg) return bad(r, f, "expected a value, got a message");
    return true;
}

/* A string; any_bytes: control characters allowed (a parameter's value), else refused (a
 * name or a file name, which end up in one-line messages and logs). */
static bool get_text(struct cfg_reader *r, const struct pbtxt_field *f, bool any_bytes, char **out)
{
    if (!want_scalar(r, f)) return false;
    if (!f->quoted) return bad(r, f, "expected a quoted string, got '%s'", f->text);
    if (strlen(f->text) != f->text_len) return bad(r, f, "the string holds a NUL byte");
    for (const unsigned char *c = (const unsigned char *)f->text; !any_bytes && *c; c++)
        if (*c < 0x20 || *c == 0x7f) return bad(r, f, "the string holds control character 0x%02x", *c);
    char *d = strdup(f->text);
    if (!d) return bad(r, f, "out of memory");
    free(*out);
    *out = d;
    return true;
}

static bool get_string(struct cfg_reader *r, const struct pbtxt_field *f, char **out)
{
    return get_text(r, f, false, out);
}

static bool get_int(struct cfg_reader *r, const struct pbtxt_field *f, int64_t lo, int64_t hi, int64_t *out)
{
    if (!want_scalar(r, f)) return false;
    if (f->quoted) return bad(r, f, "expected an integer, got a string");
    char *end;
    errno = 0;
    long long v = strtoll(f->text, &end, 0);
    if (errno || end == f->text || *end) return bad(r, f, "expected an integer, got '%s'", f->text);
    if (v < lo || v > hi) return bad(r, f, "%lld is out of range [%lld, %lld]", v, (long long)lo, (long long)hi);
    *out = v;
    return true;
}

static bool get_bool(struct cfg_reader *r, const struct pbtxt_field *f, bool *out)
{
    if (!want_scalar(r, f)) return false;
    if (!f->quoted && (strcmp(f->text, "true") == 0 || strcmp(f->text, "True") == 0 || strcmp(f->text, "1") == 0))
        *out = true;
    else if (!f->quoted && (strcmp(f->text, "false") == 0 || strcmp(f->text, "False") == 0 || strcmp(f->text, "0") == 0))
        *out = false;
    else return bad(r, f, "expected true or false, got '%s'", f->text);
    return true;
}

static bool get_ident(struct cfg_reader *r, const struct pbtxt_field *f, const char **out)
{
    if (!want_scalar(r, f)) return false;
    if (f->quoted) return bad(r, f, "expected an enum name, got a string");
    *out = f->text;
    return true;
}

static bool want_msg(struct cfg_reader *r, const struct pbtxt_field *f)
{
    if (!f->msg) return bad(r, f, "expected a message { ... }, got '%s'", f->text);
    return true;
}

static bool is(const struct pbtxt_field *f, const char *name) { return strcmp(f->name, name) == 0; }

static bool read_dims(struct cfg_reader *r, const struct pbtxt_field *f, int *rank, int64_t *dims)
{
    if (*rank >= SV_MAX_RANK) return bad(r, f, "more than %d dims", SV_MAX_RANK);
    return get_int(r, f, -1, INT64_MAX, &dims[(*rank)++]);
}

static bool read_io(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_io **list, size_t *n,
                    bool is_input)
{
    if (!want_msg(r, f)) return false;
    if (*n >= 4096) return bad(r, f, "more than 4096 entries");
    struct sv_io *l = realloc(*list, (*n + 1) * sizeof *l);
    if (!l) return bad(r, f, "out of memory");
    *list = l;
    struct sv_io *io = &l[(*n)++];
    memset(io, 0, sizeof *io);
    const char *where = is_input ? "input" : "output";
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        const char *id = NULL;
        if (is(g, "name")) {
            if (!get_string(r, g, &io->name)) return false;
        } else if (is(g, "data_type")) {
            if (!get_ident(r, g, &id)) return false;
            io->dtype = sv_dtype_from_config(id);
            if (!io->dtype) return bad(r, g, "unknown or unsupported data type '%s'", id);
        } else if (is(g, "dims")) {
            if (!read_dims(r, g, &io->rank, io->dims)) return false;
        } else if (is(g, "reshape")) {
            if (!want_msg(r, g)) return false;
            io->has_reshape = true;
            for (size_t k = 0; k < g->msg->n; k++) {
                if (is(&g->msg->fields[k], "shape")) {
                    if (!read_dims(r, &g->msg->fields[k], &io->reshape_rank, io->reshape)) return false;
                } else {
                    unknown(r, "reshape", &g->msg->fields[k]);
                }
            }
        } else if (is(g, "optional") && is_input) {
            if (!get_bool(r, g, &io->optional)) return false;
        } else if (is(g, "label_filename") && !is_input) {
            if (!get_string(r, g, &io->label_filename)) return false;
            if (!io->label_filename[0] || io->label_filename[0] == '.' || strchr(io->label_filename, '/'))
                return bad(r, g, "'%s' must be a plain file name in the model folder", io->label_filename);
        } else {
            unknown(r, where, g);
        }
    }
    if (!io->name || !io->name[0]) return bad(r, f, "an %s needs a name", where);
    if (!io->dtype) return bad(r, f, "%s '%s' needs a data_type", where, io->name);
    return true;
}

static bool read_queue_policy(struct cfg_reader *r, const struct pbtxt_field *f, const char *where,
                              struct sv_queue_policy *p)
{
    if (!want_msg(r, f)) return false;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        int64_t v;
        const char *id = NULL;
        if (is(g, "timeout_action")) {
            if (!get_ident(r, g, &id)) return false;
            if (strcmp(id, "REJECT") == 0) p->timeout_delay = false;
            else if (strcmp(id, "DELAY") == 0) p->timeout_delay = true;
            else return bad(r, g, "expected REJECT or DELAY, got '%s'", id);
        } else if (is(g, "default_timeout_microseconds")) {
            if (!get_int(r, g, 0, INT64_MAX / 1000, &v)) return false;
            p->default_timeout_us = (uint64_t)v;
        } else if (is(g, "allow_timeout_override")) {
            if (!get_bool(r, g, &p->allow_timeout_override)) return false;
        } else if (is(g, "max_queue_size")) {
            if (!get_int(r, g, 0, INT32_MAX, &p->max_queue_size)) return false;
        } else {
            unknown(r, where, g);
        }
    }
    return true;
}

/* One priority_queue_policy map entry: { key: LEVEL value: { ModelQueuePolicy } }. */
static bool read_level_policy(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_config *c)
{
    if (!want_msg(r, f)) return false;
    if (c->n_level_policies >= SV_MAX_LEVEL_POLICIES)
        return bad(r, f, "more than %d priority_queue_policy entries", SV_MAX_LEVEL_POLICIES);
    struct sv_level_policy e = {0};
    bool has_key = false;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        int64_t v;
        if (is(g, "key")) {
            if (!get_int(r, g, 1, INT64_MAX, &v)) return false;
            e.level = (uint64_t)v;
            has_key = true;
        } else if (is(g, "value")) {
            if (!read_queue_policy(r, g, "dynamic_batching.priority_queue_policy.value", &e.policy)) return false;
        } else {
            unknown(r, "dynamic_batching.priority_queue_policy", g);
        }
    }
    if (!has_key) return bad(r, f, "a priority_queue_policy entry needs a key (its priority level)");
    size_t at = 0;
    while (at < c->n_level_policies && c->level_policies[at].level < e.level) at++;
    if (at < c->n_level_policies && c->level_policies[at].level == e.level)
        return bad(r, f, "priority level %llu has two policies", (unsigned long long)e.level);
    struct sv_level_policy *l = realloc(c->level_policies, (c->n_level_policies + 1) * sizeof *l);
    if (!l) return bad(r, f, "out of memory");
    c->level_policies = l;
    memmove(&l[at + 1], &l[at], (c->n_level_policies - at) * sizeof *l);
    l[at] = e;
    c->n_level_policies++;
    return true;
}

static bool read_batching(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_config *c)
{
    if (!want_msg(r, f)) return false;
    c->dynamic_batching = true;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        int64_t v;
        if (is(g, "preferred_batch_size")) {
            if (c->n_preferred >= 16) return bad(r, g, "more than 16 preferred sizes");
            if (!get_int(r, g, 1, INT32_MAX, &c->preferred[c->n_preferred++])) return false;
        } else if (is(g, "max_queue_delay_microseconds")) {
            if (!get_int(r, g, 0, 60000000, &v)) return false;
            c->max_queue_delay_us = (uint64_t)v;
        } else if (is(g, "preserve_ordering")) {
            if (!get_bool(r, g, &c->preserve_ordering)) return false;
        } else if (is(g, "priority_levels")) {
            if (!get_int(r, g, 0, INT64_MAX, &v)) return false;
            c->priority_levels = (uint64_t)v;
        } else if (is(g, "default_priority_level")) {
            if (!get_int(r, g, 0, INT64_MAX, &v)) return false;
            c->default_priority_level = (uint64_t)v;
        } else if (is(g, "default_queue_policy")) {
            if (!read_queue_policy(r, g, "dynamic_batching.default_queue_policy", &c->queue)) return false;
        } else if (is(g, "priority_queue_policy")) {
            if (!read_level_policy(r, g, c)) return false;
        } else {
            unknown(r, "dynamic_batching", g);
        }
    }
    /* Triton's checks (model_config_utils.cc): levels named by a default or a policy exist. */
    if (c->priority_levels) {
        if (c->default_priority_level < 1 || c->default_priority_level > c->priority_levels)
            return bad(r, f, "default_priority_level %llu must be in [1, priority_levels %llu]",
                       (unsigned long long)c->default_priority_level, (unsigned long long)c->priority_levels);
    } else if (c->default_priority_level) {
        return bad(r, f, "default_priority_level %llu needs priority_levels", (unsigned long long)c->default_priority_level);
    }
    for (size_t i = 0; i < c->n_level_policies; i++)
        if (c->level_policies[i].level > c->priority_levels)
            return bad(r, f, "priority_queue_policy for level %llu: priority_levels is %llu",
                       (unsigned long long)c->level_policies[i].level, (unsigned long long)c->priority_levels);
    return true;
}

uint64_t sv_config_priority(const struct sv_config *c, uint64_t requested)
{
    if (!c->priority_levels) return 0;
    return requested == 0 || requested > c->priority_levels ? c->default_priority_level : requested;
}

const struct sv_queue_policy *sv_config_queue_policy(const struct sv_config *c, uint64_t level)
{
    size_t lo = 0, hi = c->n_level_policies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->level_policies[mid].level < level) lo = mid + 1;
        else hi = mid;
    }
    if (lo < c->n_level_policies && c->level_policies[lo].level == level) return &c->level_policies[lo].policy;
    return &c->queue;
}

static bool read_instance_group(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_config *c)
{
    if (!want_msg(r, f)) return false;
    int64_t count = 1;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        const char *id = NULL;
        if (is(g, "count")) {
            if (!get_int(r, g, 1, 64, &count)) return false;
        } else if (is(g, "kind")) {
            if (!get_ident(r, g, &id)) return false;
            if (strcmp(id, "KIND_CPU") != 0 && strcmp(id, "KIND_AUTO") != 0)
                return bad(r, g, "kind '%s' is not supported; kiln serve runs KIND_CPU instances", id);
        } else {
            unknown(r, "instance_group", g);
        }
    }
    c->instance_count += (int)count;
    if (c->instance_count > 64) return bad(r, f, "more than 64 instances in all");
    return true;
}

static bool read_version_policy(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_config *c)
{
    if (!want_msg(r, f)) return false;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        if (!want_msg(r, g)) return false;
        if (is(g, "latest")) {
            c->version_policy = SV_VERSIONS_LATEST;
            for (size_t k = 0; k < g->msg->n; k++) {
                if (!is(&g->msg->fields[k], "num_versions")) {
                    unknown(r, "version_policy.latest", &g->msg->fields[k]);
                    continue;
                }
                if (!get_int(r, &g->msg->fields[k], 1, 1000, &c->latest_versions)) return false;
            }
        } else if (is(g, "all")) {
            c->version_policy = SV_VERSIONS_ALL;
        } else if (is(g, "specific")) {
            c->version_policy = SV_VERSIONS_SPECIFIC;
            for (size_t k = 0; k < g->msg->n; k++) {
                const struct pbtxt_field *h = &g->msg->fields[k];
                if (!is(h, "versions")) {
                    unknown(r, "version_policy.specific", h);
                    continue;
                }
                if (c->n_versions >= 1000) return bad(r, h, "more than 1000 versions");
                int64_t *v = realloc(c->versions, (c->n_versions + 1) * sizeof *v);
                if (!v) return bad(r, h, "out of memory");
                c->versions = v;
                if (!get_int(r, h, 1, INT64_MAX, &v[c->n_versions++])) return false;
            }
        } else {
            return bad(r, g, "expected latest, all or specific");
        }
    }
    return true;
}

static bool read_parameter(struct cfg_reader *r, const struct pbtxt_field *f, struct sv_config *c)
{
    if (!want_msg(r, f)) return false;
    char *key = NULL, *value = NULL;
    for (size_t i = 0; i < f->msg->n; i++) {
        const struct pbtxt_field *g = &f->msg->fields[i];
        if (is(g, "key")) {
            if (!get_string(r, g, &key)) goto fail;
        } else if (is(g, "value")) {
            /* value { string_value: "..." } */
            if (!want_msg(r, g)) goto fail;
            for (size_t k = 0; k < g->msg->n; k++) {
                if (is(&g->msg->fields[k], "string_value")) {
                    if (!get_text(r, &g->msg->fields[k], true, &value)) goto fail;
                } else {
                    unknown(r, "parameters.value", &g->msg->fields[k]);
                }
            }
        } else {
            unknown(r, "parameters", g);
        }
    }
    if (!key) {
        bad(r, f, "a parameter needs a key");
        goto fail;
    }
    char **k2 = realloc(c->param_keys, (c->n_params + 1) * sizeof *k2);
    if (k2) c->param_keys = k2;
    char **v2 = realloc(c->param_values, (c->n_params + 1) * sizeof *v2);
    if (v2) c->param_values = v2;
    if (!k2 || !v2) {
        bad(r, f, "out of memory");
        goto fail;
    }
    c->param_keys[c->n_params] = key;
    c->param_values[c->n_params++] = value ? value : strdup("");
    if (!c->param_values[c->n_params - 1]) return bad(r, f, "out of memory");
    return true;
fail:
    free(key);
    free(value);
    return false;
}

bool sv_config_from_pbtxt(const struct pbtxt_msg *msg, struct sv_config *c, sv_warn_fn warn, void *user,
                          char *err, size_t err_size)
{
    memset(c, 0, sizeof *c);
    c->latest_versions = 1;
    struct cfg_reader r = {warn, user, err, err_size};
    for (size_t i = 0; i < msg->n; i++) {
        const struct pbtxt_field *f = &msg->fields[i];
        bool ok = true;
        if (is(f, "name")) ok = get_string(&r, f, &c->name);
        else if (is(f, "platform")) ok = get_string(&r, f, &c->platform);
        else if (is(f, "backend")) ok = get_string(&r, f, &c->backend);
        else if (is(f, "default_model_filename")) ok = get_string(&r, f, &c->default_model_filename);
        else if (is(f, "max_batch_size")) {
            ok = get_int(&r, f, 0, INT32_MAX, &c->max_batch_size);
            c->has_max_batch_size = true;
        } else if (is(f, "input")) ok = read_io(&r, f, &c->inputs, &c->n_inputs, true);
        else if (is(f, "output")) ok = read_io(&r, f, &c->outputs, &c->n_outputs, false);
        else if (is(f, "dynamic_batching")) ok = read_batching(&r, f, c);
        else if (is(f, "instance_group")) ok = read_instance_group(&r, f, c);
        else if (is(f, "version_policy")) ok = read_version_policy(&r, f, c);
        else if (is(f, "parameters")) ok = read_parameter(&r, f, c);
        else unknown(&r, "", f);
        if (!ok) {
            sv_config_fini(c);
            return false;
        }
    }
    const char *plat[] = {"onnxruntime_onnx", "onnxruntime", "kiln", "onnx"};
    bool plat_ok = !c->platform, back_ok = !c->backend;
    for (size_t i = 0; i < sizeof plat / sizeof plat[0]; i++) {
        if (c->platform && strcmp(c->platform, plat[i]) == 0) plat_ok = true;
        if (c->backend && strcmp(c->backend, plat[i]) == 0) back_ok = true;
    }
    if (!plat_ok || !back_ok) {
        snprintf(err, err_size, "%s '%s' is not served by kiln (it serves onnxruntime_onnx, onnxruntime and kiln)",
                 plat_ok ? "backend" : "platform", plat_ok ? c->backend : c->platform);
        sv_config_fini(c);
        return false;
    }
    return true;
}

static void io_fini(struct sv_io *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].name);
        free(l[i].label_filename);
        if (l[i].labels) free(l[i].labels[0]); /* one block holds every label */
        free(l[i].labels);
    }
    free(l);
}

void sv_config_fini(struct sv_config *c)
{
    free(c->name);
    free(c->platform);
    free(c->backend);
    free(c->default_model_filename);
    io_fini(c->inputs, c->n_inputs);
    io_fini(c->outputs, c->n_outputs);
    free(c->versions);
    free(c->level_policies);
    for (size_t i = 0; i < c->n_params; i++) free(c->param_keys[i]), free(c->param_values[i]);
    free(c->param_keys);
    free(c->param_values);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ auto-complete */

struct model_io {
    size_t (*count)(const kiln_model *);
    const char *(*name)(const kiln_model *, size_t);
    kiln_dtype (*dtype)(const kiln_model *, size_t);
    int (*rank)(const kiln_model *, size_t);
    int64_t (*dim)(const kiln_model *, size_t, int, const char **);
};

static const struct model_io model_inputs = {kiln_model_input_count, kiln_model_input_name,
                                             kiln_model_input_dtype, kiln_model_input_rank, kiln_model_input_dim};
static const struct model_io model_outputs = {kiln_model_output_count, kiln_model_output_name,
                                              kiln_model_output_dtype, kiln_model_output_rank,
                                              kiln_model_output_dim};

/* 1 when every declared input and output has rank >= 1 and a dynamic first dim. */
static bool model_batchable(const kiln_model *m)
{
    const struct model_io *ios[2] = {&model_inputs, &model_outputs};
    for (int k = 0; k < 2; k++) {
        size_t n = ios[k]->count(m);
        for (size_t i = 0; i < n; i++)
            if (ios[k]->rank(m, i) < 1 || ios[k]->dim(m, i, 0, NULL) >= 0) return false;
    }
    return true;
}

static bool fill_from_model(const struct model_io *mio, const kiln_model *m, bool batched, struct sv_io **list,
                            size_t *n, char *err, size_t err_size)
{
    size_t count = mio->count(m);
    *list = calloc(count ? count : 1, sizeof **list);
    if (!*list) return snprintf(err, err_size, "out of memory"), false;
    for (size_t i = 0; i < count; i++) {
        struct sv_io *io = &(*list)[i];
        io->name = strdup(mio->name(m, i));
        if (!io->name) return snprintf(err, err_size, "out of memory"), false;
        (*n)++;
        io->dtype = mio->dtype(m, i);
        if (!sv_dtype_kserve(io->dtype))
            return snprintf(err, err_size, "'%s' has element type %s, which KServe v2 cannot carry", io->name,
                            kiln_dtype_name(io->dtype)),
                   false;
        int rank = mio->rank(m, i);
        if (rank < 0) return snprintf(err, err_size, "'%s' has no declared shape; give its dims in config.pbtxt",
                                      io->name), false;
        if (rank > SV_MAX_RANK) return snprintf(err, err_size, "'%s' has rank %d (limit %d)", io->name, rank, SV_MAX_RANK), false;
        for (int d = batched ? 1 : 0; d < rank; d++) io->dims[io->rank++] = mio->dim(m, i, d, NULL);
        io->model_index = i;
    }
    return true;
}

/* Checks configured entries against the model and links each to its model index. */
static bool match_model(const struct model_io *mio, const kiln_model *m, bool batched, struct sv_io *list, size_t n,
                        bool need_all, const char *what, char *err, size_t err_size)
{
    size_t count = mio->count(m);
    for (size_t i = 0; i < n; i++) {
        struct sv_io *io = &list[i];
        size_t k = 0;
        while (k < count && strcmp(mio->name(m, k), io->name) != 0) k++;
        if (k == count)
            return snprintf(err, err_size, "config.pbtxt names %s '%s', which the model does not have", what,
                            io->name),
                   false;
        for (size_t j = 0; j < i; j++)
            if (list[j].model_index == k)
                return snprintf(err, err_size, "config.pbtxt names %s '%s' twice", what, io->name), false;
        io->model_index = k;
        if (io->dtype != mio->dtype(m, k))
            return snprintf(err, err_size, "%s '%s': config.pbtxt says %s; the model has %s", what, io->name,
                            sv_dtype_config(io->dtype), kiln_dtype_name(mio->dtype(m, k))),
                   false;
        int mrank = mio->rank(m, k);
        if (mrank < 0) continue; /* the model does not say: trust the config */
        if (batched && (mrank < 1 || mio->dim(m, k, 0, NULL) >= 0))
            return snprintf(err, err_size,
                            "%s '%s': max_batch_size > 0 needs a dynamic first dim in the model (it has %lld)",
                            what, io->name, (long long)(mrank ? mio->dim(m, k, 0, NULL) : 0)),
                   false;
        const int64_t *dims = io->has_reshape ? io->reshape : io->dims;
        int rank = io->has_reshape ? io->reshape_rank : io->rank;
        if (rank + (batched ? 1 : 0) != mrank)
            return snprintf(err, err_size, "%s '%s': config.pbtxt gives %d dims%s; the model has %d", what, io->name,
                            rank, batched ? " plus the batch dim" : "", mrank),
                   false;
        for (int d = 0; d < rank; d++) {
            int64_t md = mio->dim(m, k, d + (batched ? 1 : 0), NULL);
            if (md >= 0 && dims[d] >= 0 && md != dims[d])
                return snprintf(err, err_size, "%s '%s': dim %d is %lld in config.pbtxt and %lld in the model",
                                what, io->name, d, (long long)dims[d], (long long)md),
                       false;
        }
        if (io->has_reshape) {
            size_t a = 1, b = 1;
            for (int d = 0; d < io->rank; d++) a *= io->dims[d] < 0 ? 0 : (size_t)io->dims[d];
            for (int d = 0; d < io->reshape_rank; d++) b *= io->reshape[d] < 0 ? 0 : (size_t)io->reshape[d];
            if (a != b || a == 0)
                return snprintf(err, err_size, "%s '%s': reshape needs fixed dims with equal element counts", what,
                                io->name),
                       false;
        }
    }
    if (need_all && n != count) {
        for (size_t k = 0; k < count; k++) {
            size_t i = 0;
            while (i < n && list[i].model_index != k) i++;
            if (i == n)
                return snprintf(err, err_size, "model %s '%s' is missing from config.pbtxt", what, mio->name(m, k)),
                       false;
        }
    }
    return true;
}

bool sv_config_complete(struct sv_config *c, const kiln_model *m, const char *name, int64_t default_max_batch,
                        char *err, size_t err_size)
{
    if (c->name && strcmp(c->name, name) != 0) {
        snprintf(err, err_size, "config.pbtxt names the model '%s'; its folder is '%s'", c->name, name);
        return false;
    }
    if (!c->name && !(c->name = strdup(name))) return snprintf(err, err_size, "out of memory"), false;
    if (!c->platform && !c->backend && !(c->platform = strdup("onnxruntime_onnx")))
        return snprintf(err, err_size, "out of memory"), false;
    if (!c->has_max_batch_size) {
        c->max_batch_size = model_batchable(m) ? default_max_batch : 0;
        c->has_max_batch_size = true;
        if (c->max_batch_size > 0 && !c->dynamic_batching) c->dynamic_batching = true; /* as Triton */
    }
    bool batched = c->max_batch_size > 0;
    if (c->n_inputs == 0) {
        if (!fill_from_model(&model_inputs, m, batched, &c->inputs, &c->n_inputs, err, err_size)) return false;
    } else if (!match_model(&model_inputs, m, batched, c->inputs, c->n_inputs, true, "input", err, err_size)) {
        return false;
    }
    if (c->n_outputs == 0) {
        if (!fill_from_model(&model_outputs, m, batched, &c->outputs, &c->n_outputs, err, err_size)) return false;
    } else if (!match_model(&model_outputs, m, batched, c->outputs, c->n_outputs, false, "output", err, err_size)) {
        return false;
    }
    if (batched) {
        /* A model whose config was written by hand may still not batch: check it too. */
        const struct model_io *ios[2] = {&model_inputs, &model_outputs};
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < ios[k]->count(m); i++) {
                int r = ios[k]->rank(m, i);
                if (r == 0 || (r > 0 && ios[k]->dim(m, i, 0, NULL) >= 0)) {
                    snprintf(err, err_size, "max_batch_size %lld needs a dynamic first dim on every input and "
                             "output; '%s' has %s", (long long)c->max_batch_size, ios[k]->name(m, i),
                             r == 0 ? "rank 0" : "a fixed first dim");
                    return false;
                }
            }
    }
    for (int i = 0; i < c->n_preferred; i++)
        if (c->preferred[i] > c->max_batch_size) {
            snprintf(err, err_size, "preferred_batch_size %lld exceeds max_batch_size %lld",
                     (long long)c->preferred[i], (long long)c->max_batch_size);
            return false;
        }
    if (c->instance_count == 0) c->instance_count = 1;
    return true;
}
