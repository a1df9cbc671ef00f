/* repo.c: the model repository in Triton's layout (docs/serve.md):
 *
 *   <repo>/<name>/config.pbtxt          optional; auto-completed from the model
 *   <repo>/<name>/<version>/model.onnx  or model.kiln (an engine file), or the file
 *                                       default_model_filename names; a model.onnx folder
 *                                       holds model.onnx and its external data
 *
 * Names come from the folder (and from requests): sv_model_name_ok keeps them to one path
 * component of safe characters, so no request can reach outside the repository. Loads and
 * unloads are serialized; a reload builds the new versions before it swaps them in, and old
 * versions drain (finish every queued request) before they are freed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "serve.h"

enum entry_state { ENTRY_UNLOADED, ENTRY_READY, ENTRY_UNAVAILABLE };

struct sv_entry {
    char *name;
    struct sv_model **versions; /* ascending version order */
    size_t n_versions;
    enum entry_state state;
    char reason[768];
    uint64_t fingerprint; /* poll mode: the folder's contents when last loaded; 0: never */
};

#define CONFIG_MAX_BYTES (1u << 20)

/* snprintf for paths: false when the path does not fit (then it is not used). */
static bool path_fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool path_fmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= size) {
        buf[0] = 0;
        return false;
    }
    return true;
}

bool sv_model_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SV_NAME_MAX || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

void sv_model_unref(struct sv_model *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    sv_sched_stop(m);
    sv_sched_fini(m);
    kiln_engine_free(m->engine);
    free(m->in_names);
    sv_config_fini(&m->cfg);
    sv_stats_fini(&m->stats);
    free(m->name);
    free(m);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds the entry of `name`, adding it (unloaded) when add is set. Under r->mu. */
static struct sv_entry *find_entry(struct sv_repo *r, const char *name, bool add)
{
    for (size_t i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i].name, name) == 0) return &r->entries[i];
    if (!add) return NULL;
    if (r->n_entries == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct sv_entry *e = realloc(r->entries, cap * sizeof *e);
        if (!e) return NULL;
        r->entries = e;
        r->cap = cap;
    }
    struct sv_entry *e = &r->entries[r->n_entries];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return NULL;
    r->n_entries++;
    return e;
}

/* Adds an entry for every model folder of the repository (new folders show in the index). */
static void scan(struct sv_repo *r)
{
    DIR *d = opendir(r->opt->repository);
    if (!d) return;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d))) {
        if (!sv_model_name_ok(de->d_name)) continue;
        if (!path_fmt(path, sizeof path, "%s/%s", r->opt->repository, de->d_name) || !is_dir(path)) continue;
        pthread_mutex_lock(&r->mu);
        (void)find_entry(r, de->d_name, true);
        pthread_mutex_unlock(&r->mu);
    }
    closedir(d);
}

bool sv_repo_init(struct sv_repo *r, const struct sv_options *opt, char *err, size_t err_size)
{
    memset(r, 0, sizeof *r);
    r->opt = opt;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->load_mu, NULL);
    if (!is_dir(opt->repository)) {
        snprintf(err, err_size, "model repository '%s' is not a folder", opt->repository);
        return false;
    }
    scan(r);
    return true;
}

/* Reads the model's config.pbtxt into a tree (*tree NULL when there is none). */
static bool read_config(const char *dir, struct pbtxt_msg **tree, char *err, size_t err_size)
{
    *tree = NULL;
    char path[4096];
    if (!path_fmt(path, sizeof path, "%s/config.pbtxt", dir))
        return snprintf(err, err_size, "config.pbtxt: path too long"), false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return true;
        return snprintf(err, err_size, "config.pbtxt: cannot open: %s", strerror(errno)), false;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    bool rerr = ferror(f);
    fclose(f);
    if (!buf) return snprintf(err, err_size, "out of memory"), false;
    if (rerr || n > CONFIG_MAX_BYTES) {
        free(buf);
        return snprintf(err, err_size, "config.pbtxt: %s", rerr ? "read error" : "larger than 1 MiB"), false;
    }
    char perr[512];
    int rc = pbtxt_parse(buf, n, tree, perr, sizeof perr);
    free(buf);
    if (rc) return snprintf(err, err_size, "config.pbtxt: %s", perr), false;
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The numeric version folders of dir, ascending, into a new array. */
static bool list_versions(const char *dir, int64_t **out, size_t *n, char *err, size_t err_size)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return snprintf(err, err_size, "cannot open the model folder: %s", strerror(errno)), false;
    struct dirent *de;
    size_t cap = 0;
    bool ok = true;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        size_t len = strlen(s);
        if (len == 0 || len > 18 || s[0] == '0') continue;
        if (strspn(s, "0123456789") != len) continue;
        char path[4096];
        if (!path_fmt(path, sizeof path, "%s/%s", dir, s) || !is_dir(path)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            int64_t *v = realloc(*out, cap * sizeof *v);
            if (!v) {
                ok = false;
                snprintf(err, err_size, "out of memory");
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = strtoll(s, NULL, 10);
    }
    closedir(d);
    if (ok && *n) qsort(*out, *n, sizeof **out, cmp_i64);
    return ok;
}

#define LABELS_MAX_BYTES (16u << 20)

/* Reads an output's label file (dir/label_filename, one label per line, "\r\n" allowed):
 * io->labels[0] is the block that holds them all. */
static bool read_labels(const char *dir, struct sv_io *io, char *err, size_t err_size)
{
    char path[4200];
    if (!path_fmt(path, sizeof path, "%s/%s", dir, io->label_filename))
        return snprintf(err, err_size, "label file path too long"), false;
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, err_size, "output '%s': label file '%s': %s", io->name, io->label_filename,
                            strerror(errno)), false;
    char *buf = malloc(LABELS_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, LABELS_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || n > LABELS_MAX_BYTES) {
        free(buf);
        return snprintf(err, err_size, "output '%s': label file '%s' %s", io->name, io->label_filename,
                        buf ? "is larger than 16 MiB" : ": out of memory"), false;
    }
    buf[n] = 0;
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    io->labels = calloc(lines, sizeof *io->labels);
    if (!io->labels) {
        free(buf);
        return snprintf(err, err_size, "out of memory"), false;
    }
    io->labels[0] = buf;
    for (char *p = buf;;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[len - 1] = 0;
        if (!nl && p >= buf + n) break; /* no empty label after a final newline */
        io->labels[io->n_labels++] = p;
        if (!nl) break;
        p = nl + 1;
    }
    return true;
}

static void warn_config(void *user, const char *message)
{
    fprintf(stderr, "kiln serve: model '%s': config.pbtxt %s\n", (const char *)user, message);
}

/* The model file of one version folder. */
static bool model_path(const char *vdir, const struct sv_config *cfg, char *path, size_t size, char *err,
                       size_t err_size)
{
    const char *file = cfg->default_model_filename;
    bool is_kiln = (cfg->platform && strcmp(cfg->platform, "kiln") == 0) ||
                   (cfg->backend && strcmp(cfg->backend, "kiln") == 0);
    if (file && (!file[0] || file[0] == '.' || strchr(file, '/')))
        return snprintf(err, err_size, "default_model_filename '%s' must be a plain file name", file), false;
    if (!file) {
        file = is_kiln ? "model.kiln" : "model.onnx";
        path_fmt(path, size, "%s/%s", vdir, file);
        if (!is_kiln && !is_file(path) && !is_dir(path)) {
            char alt[4096];
            if (path_fmt(alt, sizeof alt, "%s/model.kiln", vdir) && is_file(alt)) file = "model.kiln";
        }
    }
    if (!path_fmt(path, size, "%s/%s", vdir, file)) return snprintf(err, err_size, "path too long"), false;
    if (is_dir(path) && !path_fmt(path, size, "%s/%s/model.onnx", vdir, file)) /* a folder with external data */
        return snprintf(err, err_size, "path too long"), false;
    if (!is_file(path)) return snprintf(err, err_size, "version folder has no %s", file), false;
    return true;
}

/* Loads one version: the config (from tree or empty), the engine, the scheduler. */
static struct sv_model *load_version(struct sv_repo *r, const char *name, const char *dir,
                                     const struct pbtxt_msg *tree, int64_t version, bool warn, char *err,
                                     size_t err_size)
{
    struct sv_model *m = calloc(1, sizeof *m);
    if (!m) return snprintf(err, err_size, "out of memory"), NULL;
    atomic_init(&m->refs, 1);
    sv_stats_init(&m->stats);
    m->version = version;
    snprintf(m->version_str, sizeof m->version_str, "%lld", (long long)version);
    m->name = strdup(name);
    char vdir[4096], path[4200], why[768];
    kiln_err ke = {0};
    kiln_builder *b = NULL;
    if (!m->name) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    if (tree) {
        if (!sv_config_from_pbtxt(tree, &m->cfg, warn ? warn_config : NULL, (void *)name, why, sizeof why)) {
            snprintf(err, err_size, "config.pbtxt %s", why);
            goto fail;
        }
    } else {
        m->cfg.latest_versions = 1;
    }
    if (!path_fmt(vdir, sizeof vdir, "%s/%lld", dir, (long long)version)) {
        snprintf(err, err_size, "version %lld: path too long", (long long)version);
        goto fail;
    }
    if (!model_path(vdir, &m->cfg, path, sizeof path, why, sizeof why)) {
        snprintf(err, err_size, "version %lld: %s", (long long)version, why);
        goto fail;
    }
    if (kiln_file_is_engine(path)) {
        if (kiln_engine_load(path, &m->engine, &ke) != KILN_OK) goto kfail;
    } else {
        if (kiln_builder_create(&b, &ke) != KILN_OK) goto kfail;
        if (r->opt->threads && kiln_builder_set_threads(b, r->opt->threads, &ke) != KILN_OK) goto kfail;
        if (kiln_builder_build_file(b, path, &m->engine, &ke) != KILN_OK) goto kfail;
        kiln_builder_free(b);
        b = NULL;
    }
    m->m = kiln_engine_model(m->engine);
    if (!sv_config_complete(&m->cfg, m->m, name, r->opt->default_max_batch, why, sizeof why)) {
        snprintf(err, err_size, "version %lld: %s", (long long)version, why);
        goto fail;
    }
    for (size_t i = 0; i < m->cfg.n_outputs; i++)
        if (m->cfg.outputs[i].label_filename && !read_labels(dir, &m->cfg.outputs[i], why, sizeof why)) {
            snprintf(err, err_size, "%s", why);
            goto fail;
        }
    size_t n_in = kiln_model_input_count(m->m);
    m->in_names = calloc(n_in ? n_in : 1, sizeof *m->in_names);
    if (!m->in_names) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_in; i++) m->in_names[i] = kiln_model_input_name(m->m, i);
    if (!sv_sched_start(m, why, sizeof why)) {
        snprintf(err, err_size, "version %lld: %s", (long long)version, why);
        goto fail;
    }
    return m;
kfail:
    snprintf(err, err_size, "version %lld: %s", (long long)version, ke.msg);
fail:
    kiln_builder_free(b);
    sv_model_unref(m);
    return NULL;
}

/* Picks the versions the policy serves out of the available ones (ascending), in place. */
static bool select_versions(const struct sv_config *cfg, int64_t *v, size_t *n, char *err, size_t err_size)
{
    if (cfg->version_policy == SV_VERSIONS_ALL) return true;
    if (cfg->version_policy == SV_VERSIONS_LATEST) {
        size_t keep = (size_t)cfg->latest_versions < *n ? (size_t)cfg->latest_versions : *n;
        memmove(v, v + (*n - keep), keep * sizeof *v);
        *n = keep;
        return true;
    }
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_versions; i++) {
        size_t j = 0;
        while (j < *n && v[j] != cfg->versions[i]) j++;
        if (j == *n)
            return snprintf(err, err_size, "version_policy names version %lld, which has no folder",
                            (long long)cfg->versions[i]),
                   false;
    }
    for (size_t j = 0; j < *n; j++)
        for (size_t i = 0; i < cfg->n_versions; i++)
            if (v[j] == cfg->versions[i]) {
                v[k++] = v[j];
                break;
            }
    *n = k;
    return true;
}

/* Builds every served version of `name`; on success *out holds them. */
static bool build_versions(struct sv_repo *r, const char *name, struct sv_model ***out, size_t *n_out, char *err,
                           size_t err_size)
{
    *out = NULL;
    *n_out = 0;
    char dir[4096];
    if (!path_fmt(dir, sizeof dir, "%s/%s", r->opt->repository, name) || !is_dir(dir)) return snprintf(err, err_size, "no model folder '%s' in the repository", name), false;
    struct pbtxt_msg *tree = NULL;
    int64_t *versions = NULL;
    size_t n = 0;
    struct sv_config policy = {0};
    bool ok = read_config(dir, &tree, err, err_size) && list_versions(dir, &versions, &n, err, err_size);
    if (ok && tree) {
        char why[768];
        ok = sv_config_from_pbtxt(tree, &policy, NULL, NULL, why, sizeof why);
        if (!ok) snprintf(err, err_size, "config.pbtxt %s", why);
    } else {
        policy.latest_versions = 1;
    }
    if (ok) ok = select_versions(&policy, versions, &n, err, err_size);
    if (ok && n == 0) ok = (snprintf(err, err_size, "no version folder to serve (expected %s/1/model.onnx)", dir), false);
    struct sv_model **list = ok ? calloc(n, sizeof *list) : NULL;
    if (ok && !list) ok = (snprintf(err, err_size, "out of memory"), false);
    for (size_t i = 0; ok && i < n; i++) {
        list[i] = load_version(r, name, dir, tree, versions[i], i == 0, err, err_size);
        if (!list[i]) ok = false;
    }
    if (!ok && list)
        for (size_t i = 0; i < n; i++) sv_model_unref(list[i]);
    if (ok) {
        *out = list;
        *n_out = n;
    } else {
        free(list);
    }
    sv_config_fini(&policy);
    free(versions);
    pbtxt_free(tree);
    return ok;
}

static void drop_versions(struct sv_model **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sv_sched_stop(list[i]); /* drains: queued requests finish first */
        sv_model_unref(list[i]);
    }
    free(list);
}

bool sv_repo_load(struct sv_repo *r, const char *name, char *err, size_t err_size)
{
    if (!sv_model_name_ok(name)) return snprintf(err, err_size, "'%s' is not a valid model name", name), false;
    pthread_mutex_lock(&r->load_mu);
    struct sv_model **list = NULL;
    size_t n = 0;
    bool ok = build_versions(r, name, &list, &n, err, err_size);
    pthread_mutex_lock(&r->mu);
    struct sv_entry *e = find_entry(r, name, ok);
    struct sv_model **old = NULL;
    size_t n_old = 0;
    if (ok && !e) {
        ok = false;
        snprintf(err, err_size, "out of memory");
    }
    if (ok) {
        old = e->versions, n_old = e->n_versions;
        e->versions = list, e->n_versions = n;
        e->state = ENTRY_READY;
        e->reason[0] = 0;
        list = NULL;
    } else if (e && e->n_versions == 0) {
        e->state = ENTRY_UNAVAILABLE;
        snprintf(e->reason, sizeof e->reason, "%s", err);
    }
    pthread_mutex_unlock(&r->mu);
    if (list) drop_versions(list, n);
    drop_versions(old, n_old);
    pthread_mutex_unlock(&r->load_mu);
    if (ok) fprintf(stderr, "kiln serve: loaded model '%s' (%zu version%s)\n", name, n, n == 1 ? "" : "s");
    else fprintf(stderr, "kiln serve: model '%s' failed to load: %s\n", name, err);
    return ok;
}

bool sv_repo_load_all(struct sv_repo *r)
{
    scan(r);
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_entries;
    char **names = calloc(n ? n : 1, sizeof *names);
    for (size_t i = 0; names && i < n; i++) names[i] = strdup(r->entries[i].name);
    pthread_mutex_unlock(&r->mu);
    if (!names) return false;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        char err[1024];
        if (!names[i] || !sv_repo_load(r, names[i], err, sizeof err)) ok = false;
        free(names[i]);
    }
    free(names);
    return ok;
}

bool sv_repo_unload(struct sv_repo *r, const char *name, char *err, size_t err_size)
{
    pthread_mutex_lock(&r->load_mu);
    pthread_mutex_lock(&r->mu);
    struct sv_entry *e = sv_model_name_ok(name) ? find_entry(r, name, false) : NULL;
    struct sv_model **old = NULL;
    size_t n_old = 0;
    if (e && e->n_versions) {
        old = e->versions, n_old = e->n_versions;
        e->versions = NULL, e->n_versions = 0;
        e->state = ENTRY_UNLOADED;
        snprintf(e->reason, sizeof e->reason, "unloaded");
    }
    pthread_mutex_unlock(&r->mu);
    drop_versions(old, n_old);
    pthread_mutex_unlock(&r->load_mu);
    if (!old) return snprintf(err, err_size, "model '%s' is not loaded", name), false;
    fprintf(stderr, "kiln serve: unloaded model '%s'\n", name);
    return true;
}

struct sv_model *sv_repo_get(struct sv_repo *r, const char *name, int64_t version, bool *known)
{
    struct sv_model *m = NULL;
    *known = false;
    pthread_mutex_lock(&r->mu);
    struct sv_entry *e = find_entry(r, name, false);
    if (e) {
        *known = true;
        for (size_t i = e->n_versions; i-- > 0;)
            if (version == 0 || e->versions[i]->version == version) {
                m = e->versions[i];
                break;
            }
        if (m) atomic_fetch_add(&m->refs, 1);
    }
    pthread_mutex_unlock(&r->mu);
    return m;
}

void sv_repo_each(struct sv_repo *r, void (*fn)(void *user, struct sv_model *m), void *user)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_entries; i++)
        for (size_t k = 0; k < r->entries[i].n_versions; k++) fn(user, r->entries[i].versions[k]);
    pthread_mutex_unlock(&r->mu);
}

char *sv_repo_index_json(struct sv_repo *r)
{
    scan(r);
    json_t *a = json_array();
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; a && i < r->n_entries; i++) {
        const struct sv_entry *e = &r->entries[i];
        if (e->n_versions == 0) {
            json_t *o = json_pack("{s:s}", "name", e->name);
            if (o && e->state != ENTRY_UNLOADED) json_object_set_new(o, "state", json_string("UNAVAILABLE"));
            if (o && e->reason[0]) {
                json_object_set_new(o, "state", json_string("UNAVAILABLE"));
                json_object_set_new(o, "reason", json_string(e->reason));
            }
            json_array_append_new(a, o);
        }
        for (size_t k = 0; k < e->n_versions; k++)
            json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "name", e->name, "version",
                                               e->versions[k]->version_str, "state", "READY"));
    }
    pthread_mutex_unlock(&r->mu);
    char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

/* ------------------------------------------------------------------ poll mode */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Hashes the names, types, sizes and modification times under path (depth levels deep,
 * names in sorted order, at most *budget entries in all). */
static uint64_t fingerprint_tree(const char *path, int depth, uint64_t h, size_t *budget)
{
    DIR *d = opendir(path);
    if (!d) return h;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) && *budget) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **g = realloc(names, cap * sizeof *g);
            if (!g) break;
            names = g;
        }
        if (!(names[n] = strdup(de->d_name))) break;
        n++;
        (*budget)--;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char sub[4096];
        struct stat st;
        h = fnv(h, names[i], strlen(names[i]) + 1);
        if (path_fmt(sub, sizeof sub, "%s/%s", path, names[i]) && stat(sub, &st) == 0) {
            int64_t f[4] = {(int64_t)st.st_mode, (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
                            (int64_t)st.st_mtim.tv_nsec};
            h = fnv(h, f, sizeof f);
            if (S_ISDIR(st.st_mode) && depth > 1) h = fingerprint_tree(sub, depth - 1, h, budget);
        }
        free(names[i]);
    }
    free(names);
    return h;
}

static uint64_t fingerprint(const char *dir)
{
    size_t budget = 100000;
    uint64_t h = fingerprint_tree(dir, 3, 0xcbf29ce484222325ull, &budget); /* NAME/VERSION/model.onnx/ */
    return h ? h : 1;
}

bool sv_repo_all_loaded(struct sv_repo *r)
{
    bool ok = true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i].state == ENTRY_UNAVAILABLE) ok = false;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void sv_repo_poll(struct sv_repo *r)
{
    scan(r);
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_entries;
    char **names = calloc(n ? n : 1, sizeof *names);
    uint64_t *fps = calloc(n ? n : 1, sizeof *fps);
    for (size_t i = 0; names && fps && i < n; i++) {
        names[i] = strdup(r->entries[i].name);
        fps[i] = r->entries[i].fingerprint;
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; names && fps && i < n; i++) {
        char dir[4096], err[1024];
        if (!names[i]) continue;
        if (!path_fmt(dir, sizeof dir, "%s/%s", r->opt->repository, names[i])) continue;
        uint64_t fp = is_dir(dir) ? fingerprint(dir) : 0;
        if (fp == fps[i]) continue;
        if (fp == 0) {
            (void)sv_repo_unload(r, names[i], err, sizeof err); /* the folder is gone */
        } else {
            /* A model still being copied in may fail now and load at a later poll, when its
             * files have changed again. */
            (void)sv_repo_load(r, names[i], err, sizeof err);
        }
        pthread_mutex_lock(&r->mu);
        struct sv_entry *e = find_entry(r, names[i], false);
        if (e) e->fingerprint = fp;
        if (e && fp == 0 && e->n_versions == 0) { /* forget a removed folder */
            free(e->name);
            size_t k = (size_t)(e - r->entries);
            memmove(e, e + 1, (r->n_entries - k - 1) * sizeof *e);
            r->n_entries--;
        }
        pthread_mutex_unlock(&r->mu);
    }
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
    free(fps);
}

void sv_repo_fini(struct sv_repo *r)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_entries; i++) {
        struct sv_entry *e = &r->entries[i];
        pthread_mutex_unlock(&r->mu);
        drop_versions(e->versions, e->n_versions);
        pthread_mutex_lock(&r->mu);
        e->versions = NULL;
        e->n_versions = 0;
        free(e->name);
    }
    free(r->entries);
    r->entries = NULL;
    r->n_entries = 0;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->load_mu);
}
