/* file.c: engine files (docs/engine-format.md): kiln_engine_save, kiln_engine_load,
 * kiln_engine_verify, kiln_file_is_engine.
 *
 * Layout, every number little-endian:
 *
 *   0     header (KILN_EFILE_HEADER bytes): magic, format version, kiln version, CPU
 *         features, section table, header checksum
 *   4096  WEIGHTS  the optimized model's tensors, each at a 64-byte-aligned offset
 *         GRAPH    the optimized model as ONNX ModelProto bytes; its initializers are external
 *                  data at location "@engine" with offsets into WEIGHTS
 *         BLOBS    prepacked kernel data (kiln_kprep_blob), each 64-byte aligned
 *         META     the engine's tables: threads, limits, device, profiles with their
 *                  planned memory, each node's kernel variant, the blob index
 *
 * Loading maps the file; WEIGHTS and BLOBS are used in place (read-only pages of the page
 * cache, shared by every process running the engine); GRAPH is decoded (it is small: the
 * tensors are not in it); META is read; then the kernels' prepare runs again with each
 * node's saved variant and its blobs taken from the mapping instead of recomputed. Checks at
 * load: magic, format and kiln version, CPU features, section bounds, and the checksums of
 * the header, GRAPH and META. WEIGHTS and BLOBS carry checksums too, checked by
 * kiln_engine_verify (`kiln check ENGINE`): reading every weight byte would cost more than
 * the whole load otherwise does. BLOBS, read whole at every run, are advised huge pages
 * (MADV_HUGEPAGE: pages read from disk afterwards come as 2 MB pages where the file system
 * allows), as kiln_aligned_alloc gives large built blobs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpu/features.h"
#include "cpu/kernel.h"
#include "exec/engine.h"
#include "onnx/onnx.h"

#define KILN_EFILE_MAGIC "KILNENG\x1a"
#define KILN_EFILE_FORMAT 1u
#define KILN_EFILE_HEADER 4096u
#define KILN_EFILE_ALIGN 64u

enum { SEC_WEIGHTS, SEC_GRAPH, SEC_BLOBS, SEC_META, N_SECTIONS };
static const char *const sec_names[N_SECTIONS] = {"weights", "graph", "blobs", "meta"};

/* The header as laid out in the file (fixed offsets; 4096 bytes with padding). */
struct efile_header {
    char magic[8];
    uint32_t format;
    uint32_t header_bytes;
    char version[16];      /* "0.1.0" */
    uint64_t cpu_required; /* KILN_CPU_* the chosen kernels need */
    uint64_t cpu_build;    /* the building machine's */
    uint64_t file_bytes;
    struct {
        uint64_t offset, bytes, hash;
    } sec[N_SECTIONS];
    uint64_t header_hash;  /* of the bytes before this field */
};

/* ------------------------------------------------------------------ checksum */

/* A 64-bit hash in the manner of xxHash64 (four lanes of multiply-rotate over 32-byte
 * stripes, then a final mix): about 10 GB/s on one core. Written here because it is 40
 * lines and a dependency for it would not be. */
#define H_P1 11400714785074694791ull
#define H_P2 14029467366897019727ull
#define H_P3 1609587929392839161ull
#define H_P4 9650029242287828579ull
#define H_P5 2870177450012600261ull

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t hround(uint64_t acc, uint64_t in)
{
    return rotl64(acc + in * H_P2, 31) * H_P1;
}

static uint64_t hash64(const void *data, size_t n)
{
    const uint8_t *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = H_P1 + H_P2, v2 = H_P2, v3 = 0, v4 = 0 - H_P1;
        while (end - p >= 32) {
            v1 = hround(v1, rd64(p));
            v2 = hround(v2, rd64(p + 8));
            v3 = hround(v3, rd64(p + 16));
            v4 = hround(v4, rd64(p + 24));
            p += 32;
        }
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = (h ^ hround(0, v1)) * H_P1 + H_P4;
        h = (h ^ hround(0, v2)) * H_P1 + H_P4;
        h = (h ^ hround(0, v3)) * H_P1 + H_P4;
        h = (h ^ hround(0, v4)) * H_P1 + H_P4;
    } else {
        h = H_P5;
    }
    h += (uint64_t)n;
    while (end - p >= 8) {
        h ^= hround(0, rd64(p));
        h = rotl64(h, 27) * H_P1 + H_P4;
        p += 8;
    }
    while (p < end) {
        h ^= (*p++) * H_P5;
        h = rotl64(h, 11) * H_P1;
    }
    h ^= h >> 33;
    h *= H_P2;
    h ^= h >> 29;
    h *= H_P3;
    h ^= h >> 32;
    return h;
}

/* ------------------------------------------------------------------ META encoding */

static void put_u32(struct kiln_buf *b, uint32_t v)
{
    kiln_buf_append(b, &v, 4);
}

static void put_u64(struct kiln_buf *b, uint64_t v)
{
    kiln_buf_append(b, &v, 8);
}

static void put_str(struct kiln_buf *b, const char *s)
{
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    put_u32(b, n);
    if (n) kiln_buf_append(b, s, n);
}

struct rd {
    const uint8_t *p, *end;
    bool bad;
};

static uint32_t get_u32(struct rd *r)
{
    uint32_t v = 0;
    if (r->end - r->p < 4) r->bad = true;
    else memcpy(&v, r->p, 4), r->p += 4;
    return v;
}

static uint64_t get_u64(struct rd *r)
{
    uint64_t v = 0;
    if (r->end - r->p < 8) r->bad = true;
    else memcpy(&v, r->p, 8), r->p += 8;
    return v;
}

static char *get_str(struct rd *r, struct kiln_arena *a)
{
    uint32_t n = get_u32(r);
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    char *s = kiln_arena_strndup(a, (const char *)r->p, n);
    if (!s) r->bad = true;
    r->p += n;
    return s;
}

/* Each node's variant, in kiln_engine_prepare's order (main graph nodes by index, each
 * node's subgraphs right after it). */
static void put_variants(struct kiln_buf *b, const struct kiln_engine *e, const struct kiln_graph *g, uint32_t *count)
{
    const struct kiln_egraph *eg = NULL;
    for (size_t i = 0; i < e->n_graphs && !eg; i++)
        if (e->graphs[i].g == g) eg = &e->graphs[i];
    for (size_t i = 0; i < g->n_nodes; i++) {
        put_u32(b, (uint32_t)(eg ? eg->nodes[i].variant : -1));
        (*count)++;
        const struct kiln_node *n = &g->nodes[i];
        for (size_t k = 0; k < n->n_attr; k++) {
            const struct kiln_attr *a = &n->attrs[k];
            if (a->type == KILN_ATTR_GRAPH && a->g) put_variants(b, e, a->g, count);
            if (a->type == KILN_ATTR_GRAPHS)
                for (size_t j = 0; j < a->n; j++)
                    if (a->graphs[j]) put_variants(b, e, a->graphs[j], count);
        }
    }
}

static void put_meta(struct kiln_buf *b, const struct kiln_engine *e, const uint64_t *blob_off)
{
    put_u32(b, (uint32_t)e->threads);
    put_u32(b, (uint32_t)e->tune);
    put_u64(b, e->limits.max_tensor_bytes);
    put_u64(b, e->limits.max_memory_bytes);
    put_u32(b, (uint32_t)e->limits.max_depth);
    put_str(b, e->device ? e->device->name : "cpu");
    put_u64(b, e->arena_bytes);
    put_u64(b, e->scratch_bytes);
    put_u32(b, e->static_planned);
    put_u64(b, e->static_sum_bytes);
    put_u32(b, (uint32_t)e->n_profiles);
    for (size_t p = 0; p < e->n_profiles; p++) {
        const struct kiln_eprofile *ep = &e->profiles[p];
        put_str(b, ep->name);
        put_u32(b, (uint32_t)ep->n_inputs);
        for (size_t i = 0; i < ep->n_inputs; i++) {
            put_u32(b, (uint32_t)ep->rank[i]);
            for (int d = 0; d < ep->rank[i]; d++) {
                put_u64(b, (uint64_t)ep->min[i][d]);
                put_u64(b, (uint64_t)ep->opt[i][d]);
                put_u64(b, (uint64_t)ep->max[i][d]);
            }
        }
        put_u64(b, ep->arena_bytes);
        put_u64(b, ep->sum_bytes);
    }
    size_t at = b->len;
    uint32_t nv = 0;
    put_u32(b, 0);
    put_variants(b, e, e->model->graph, &nv);
    if (b->data) memcpy(b->data + at, &nv, 4);
    put_u32(b, (uint32_t)e->store.n_blobs);
    for (size_t i = 0; i < e->store.n_blobs; i++) {
        const struct kiln_eblob *bl = &e->store.blobs[i];
        put_u32(b, bl->graph);
        put_u32(b, bl->node);
        put_u32(b, bl->key);
        put_u64(b, blob_off[i]);
        put_u64(b, bl->bytes);
    }
}

/* ------------------------------------------------------------------ saving */

static kiln_status write_at(int fd, const void *data, size_t n, const char *path, kiln_err *err)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return KILN_OK;
}

static kiln_status pad_to(int fd, uint64_t *pos, uint64_t align, const char *path, kiln_err *err)
{
    static const uint8_t zeros[KILN_EFILE_HEADER];
    uint64_t pad = (align - *pos % align) % align;
    *pos += pad;
    return write_at(fd, zeros, (size_t)pad, path, err);
}

/* Hashes n bytes of fd from offset off (reading it back). */
static kiln_status hash_range(const uint8_t *base, uint64_t off, uint64_t n, uint64_t *h)
{
    *h = hash64(base + off, (size_t)n);
    return KILN_OK;
}

kiln_status kiln_engine_save(const kiln_engine *e, const char *path, kiln_err *err)
{
    if (!e || !path) return kiln_err_set(err, KILN_E_INVALID_ARG, "engine save: no engine or path");
    size_t plen = strlen(path) + 16;
    char *tmp = kiln_malloc(plen);
    if (!tmp) return kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    snprintf(tmp, plen, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kiln_status st = kiln_err_set(err, KILN_E_IO, "cannot create a temporary file for '%s': %s", path,
                                      strerror(errno));
        kiln_free(tmp);
        return st;
    }
    struct efile_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, KILN_EFILE_MAGIC, 8);
    h.format = KILN_EFILE_FORMAT;
    h.header_bytes = KILN_EFILE_HEADER;
    snprintf(h.version, sizeof h.version, "%d.%d.%d", KILN_VERSION_MAJOR, KILN_VERSION_MINOR, KILN_VERSION_PATCH);
    h.cpu_required = e->cpu_features;
    h.cpu_build = kiln_cpu_features();
    void *graph = NULL;
    size_t graph_len = 0;
    uint64_t weights_len = 0, pos = 0;
    uint64_t *blob_off = kiln_calloc(e->store.n_blobs + 1, sizeof *blob_off);
    struct kiln_buf meta = {0};
    struct kiln_mapping map = {0};
    kiln_status st = blob_off ? KILN_OK : kiln_err_set(err, KILN_E_NOMEM, "out of memory");
    /* The header is written last; reserve its page. */
    if (!st) st = pad_to(fd, &pos, KILN_EFILE_HEADER, path, err);
    if (!st && pos == 0) {
        static const uint8_t zeros[KILN_EFILE_HEADER];
        st = write_at(fd, zeros, KILN_EFILE_HEADER, path, err);
        pos = KILN_EFILE_HEADER;
    }
    if (!st) st = kiln_onnx_write_engine(e->model, fd, path, 64, &graph, &graph_len, &weights_len, err);
    if (!st) {
        h.sec[SEC_WEIGHTS].offset = pos;
        h.sec[SEC_WEIGHTS].bytes = weights_len;
        pos += weights_len;
        st = pad_to(fd, &pos, KILN_EFILE_ALIGN, path, err);
    }
    if (!st) {
        h.sec[SEC_GRAPH].offset = pos;
        h.sec[SEC_GRAPH].bytes = graph_len;
        st = write_at(fd, graph, graph_len, path, err);
        pos += graph_len;
    }
    if (!st) st = pad_to(fd, &pos, KILN_EFILE_ALIGN, path, err);
    h.sec[SEC_BLOBS].offset = pos;
    for (size_t i = 0; !st && i < e->store.n_blobs; i++) {
        blob_off[i] = pos - h.sec[SEC_BLOBS].offset;
        st = write_at(fd, e->store.blobs[i].data, e->store.blobs[i].bytes, path, err);
        pos += e->store.blobs[i].bytes;
        if (!st) st = pad_to(fd, &pos, KILN_EFILE_ALIGN, path, err);
    }
    h.sec[SEC_BLOBS].bytes = pos - h.sec[SEC_BLOBS].offset;
    if (!st) {
        put_meta(&meta, e, blob_off);
        if (meta.failed) st = kiln_err_set(err, KILN_E_NOMEM, "out of memory writing the engine");
    }
    if (!st) {
        h.sec[SEC_META].offset = pos;
        h.sec[SEC_META].bytes = meta.len;
        st = write_at(fd, meta.data, meta.len, path, err);
        pos += meta.len;
    }
    h.file_bytes = pos;
    /* Checksums: read the sections back through a mapping of what was written. */
    if (!st && fsync(fd) != 0) st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (!st) st = kiln_map_file(tmp, &map, err);
    for (int s = 0; !st && s < N_SECTIONS; s++) st = hash_range(map.data, h.sec[s].offset, h.sec[s].bytes, &h.sec[s].hash);
    kiln_unmap(&map);
    if (!st) {
        h.header_hash = hash64(&h, offsetof(struct efile_header, header_hash));
        if (lseek(fd, 0, SEEK_SET) != 0) st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
        else st = write_at(fd, &h, sizeof h, path, err);
    }
    if (!st && (fchmod(fd, 0644) != 0 || fsync(fd) != 0))
        st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (close(fd) != 0 && !st) st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0) st = kiln_err_set(err, KILN_E_IO, "cannot write '%s': %s", path, strerror(errno));
    if (st) unlink(tmp);
    kiln_free(tmp);
    kiln_free(graph);
    kiln_free(blob_off);
    kiln_buf_free(&meta);
    return st;
}

/* ------------------------------------------------------------------ loading */

void kiln_engine_file_seal(uint8_t *buf, size_t n)
{
    struct efile_header h;
    if (n < sizeof h) return;
    memcpy(&h, buf, sizeof h);
    h.file_bytes = n;
    for (int s = 0; s < N_SECTIONS; s++)
        if (h.sec[s].offset <= n && h.sec[s].bytes <= n - h.sec[s].offset)
            h.sec[s].hash = hash64(buf + h.sec[s].offset, (size_t)h.sec[s].bytes);
    h.header_hash = hash64(&h, offsetof(struct efile_header, header_hash));
    memcpy(buf, &h, sizeof h);
}

int kiln_file_is_engine(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char m[8];
    ssize_t n = read(fd, m, 8);
    close(fd);
    return n == 8 && memcmp(m, KILN_EFILE_MAGIC, 8) == 0;
}

/* Header checks shared by load and verify: *h points into map. */
static kiln_status check_header(const struct kiln_mapping *map, const char *path, const struct efile_header **hp,
                                kiln_err *err)
{
    *hp = NULL;
    if (map->size < sizeof(struct efile_header) || memcmp(map->data, KILN_EFILE_MAGIC, 8) != 0)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "'%s' is not a kiln engine file (no engine magic)", path);
    const struct efile_header *h = (const struct efile_header *)map->data;
    char mine[16];
    snprintf(mine, sizeof mine, "%d.%d.%d", KILN_VERSION_MAJOR, KILN_VERSION_MINOR, KILN_VERSION_PATCH);
    char theirs[17];
    memcpy(theirs, h->version, 16);
    theirs[16] = 0;
    for (size_t i = 0; theirs[i]; i++)
        if ((unsigned char)theirs[i] < 32 || (unsigned char)theirs[i] > 126) theirs[i] = '?';
    if (h->format != KILN_EFILE_FORMAT || strcmp(theirs, mine) != 0)
        return kiln_err_set(err, KILN_E_INVALID_MODEL,
                            "engine '%s' was built by kiln %s (engine format %u); this is kiln %s (format %u): "
                            "rebuild it with `kiln build`", path, theirs, h->format, mine, KILN_EFILE_FORMAT);
    if (hash64(h, offsetof(struct efile_header, header_hash)) != h->header_hash)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is corrupted: its header checksum does not match",
                            path);
    if (h->file_bytes != map->size)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is %zu bytes; its header says %llu (truncated?)",
                            path, map->size, (unsigned long long)h->file_bytes);
    for (int s = 0; s < N_SECTIONS; s++)
        if (h->sec[s].offset < KILN_EFILE_HEADER || h->sec[s].offset > map->size ||
            h->sec[s].bytes > map->size - h->sec[s].offset || h->sec[s].offset % KILN_EFILE_ALIGN)
            return kiln_err_set(err, KILN_E_INVALID_MODEL,
                                "engine '%s' is corrupted: its %s section lies outside the file or in its header", path,
                                sec_names[s]);
    uint64_t have = kiln_cpu_features();
    if (h->cpu_required & ~have) {
        char need[256], lack[256];
        kiln_cpu_features_str(h->cpu_required, need, sizeof need);
        kiln_cpu_features_str(h->cpu_required & ~have, lack, sizeof lack);
        return kiln_err_set(err, KILN_E_UNSUPPORTED,
                            "engine '%s' was built for a CPU with %s; this CPU lacks %s: rebuild the engine here",
                            path, need, lack);
    }
    *hp = h;
    return KILN_OK;
}

static kiln_status check_section(const struct kiln_mapping *map, const struct efile_header *h, int s, const char *path,
                                 kiln_err *err)
{
    if (hash64(map->data + h->sec[s].offset, (size_t)h->sec[s].bytes) != h->sec[s].hash)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is corrupted: its %s section's checksum does not match",
                            path, sec_names[s]);
    return KILN_OK;
}

kiln_status kiln_engine_verify(const char *path, kiln_err *err)
{
    struct kiln_mapping map;
    KILN_TRY(kiln_map_file(path, &map, err));
    const struct efile_header *h;
    kiln_status st = check_header(&map, path, &h, err);
    for (int s = 0; !st && s < N_SECTIONS; s++) st = check_section(&map, h, s, path, err);
    kiln_unmap(&map);
    return st;
}

static kiln_status read_meta(struct kiln_engine *e, const struct efile_header *h, const char *path, int32_t **variants,
                             kiln_err *err)
{
    const uint8_t *base = e->file.data;
    struct rd r = {base + h->sec[SEC_META].offset, base + h->sec[SEC_META].offset + h->sec[SEC_META].bytes, false};
    uint32_t threads = get_u32(&r), tune = get_u32(&r);
    e->limits.max_tensor_bytes = get_u64(&r);
    e->limits.max_memory_bytes = get_u64(&r);
    uint32_t depth = get_u32(&r);
    /* as kiln_builder_set_threads and kiln_builder_set_limits allow */
    if (!r.bad && (threads > 1024 || tune > INT32_MAX || depth > INT32_MAX))
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is corrupted: its tables give %u threads, tune %u, "
                            "depth %u (at most 1024 threads)", path, threads, tune, depth);
    e->threads = (int)threads, e->tune = (int)tune, e->limits.max_depth = (int)depth;
    char *dev = get_str(&r, &e->arena);
    e->device = dev ? kiln_backend_find(dev) : NULL;
    if (!r.bad && !e->device)
        return kiln_err_set(err, KILN_E_UNSUPPORTED, "engine '%s' was built for device '%s', which this kiln lacks", path,
                            dev);
    e->arena_bytes = get_u64(&r);
    e->scratch_bytes = get_u64(&r);
    e->static_planned = get_u32(&r) != 0;
    e->static_sum_bytes = get_u64(&r);
    uint32_t np = get_u32(&r);
    size_t ni_model = e->model->graph->n_inputs;
    if (!r.bad && np > 4096) r.bad = true;
    if (!r.bad && np) {
        e->profiles = kiln_arena_array(&e->arena, np, sizeof *e->profiles);
        if (!e->profiles) return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
    }
    for (uint32_t p = 0; p < np && !r.bad; p++) {
        struct kiln_eprofile *ep = &e->profiles[p];
        memset(ep, 0, sizeof *ep);
        ep->name = get_str(&r, &e->arena);
        uint32_t ni = get_u32(&r);
        if (r.bad || ni != ni_model) {
            r.bad = true;
            break;
        }
        ep->n_inputs = ni;
        ep->rank = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->rank);
        ep->min = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->min);
        ep->opt = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->opt);
        ep->max = kiln_arena_array(&e->arena, ni + 1, sizeof *ep->max);
        if (!ep->rank || !ep->min || !ep->opt || !ep->max)
            return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
        for (uint32_t i = 0; i < ni && !r.bad; i++) {
            ep->rank[i] = (int)get_u32(&r);
            if (ep->rank[i] > KILN_MAX_RANK || ep->rank[i] < -1) r.bad = true;
            for (int d = 0; d < ep->rank[i] && !r.bad; d++) {
                ep->min[i][d] = (int64_t)get_u64(&r);
                ep->opt[i][d] = (int64_t)get_u64(&r);
                ep->max[i][d] = (int64_t)get_u64(&r);
            }
        }
        ep->arena_bytes = get_u64(&r);
        ep->sum_bytes = get_u64(&r);
    }
    e->n_profiles = r.bad ? 0 : np;
    uint32_t nv = get_u32(&r);
    if (!r.bad && (size_t)(r.end - r.p) / 4 < nv) r.bad = true;
    if (!r.bad) {
        *variants = kiln_arena_array(&e->arena, (size_t)nv + 1, sizeof **variants);
        if (!*variants) return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
        for (uint32_t i = 0; i < nv; i++) (*variants)[i] = (int32_t)get_u32(&r);
        e->n_load_variants = nv;
    }
    uint32_t nb = get_u32(&r);
    if (!r.bad && (size_t)(r.end - r.p) / 28 < nb) r.bad = true;
    if (!r.bad && nb) {
        e->store.blobs = kiln_calloc(nb, sizeof *e->store.blobs);
        if (!e->store.blobs) return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
        e->store.cap_blobs = nb;
    }
    for (uint32_t i = 0; i < nb && !r.bad; i++) {
        struct kiln_eblob *b = &e->store.blobs[i];
        b->graph = get_u32(&r);
        b->node = get_u32(&r);
        b->key = get_u32(&r);
        uint64_t off = get_u64(&r), bytes = get_u64(&r);
        if (off > h->sec[SEC_BLOBS].bytes || bytes > h->sec[SEC_BLOBS].bytes - off || off % KILN_EFILE_ALIGN) {
            r.bad = true;
            break;
        }
        b->data = (void *)(base + h->sec[SEC_BLOBS].offset + off);
        b->bytes = (size_t)bytes;
        b->owned = false;
        e->store.n_blobs++;
    }
    if (r.bad || r.p != r.end)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is corrupted: its tables do not parse", path);
    return KILN_OK;
}

/* Blobs sections from this size on are copied at load (blob_home). */
#define BLOB_COPY_MIN ((size_t)16 << 20)

/* Where the blobs a kernel takes at load are copied to (fetch_blob). */
struct blob_fetch {
    const struct kiln_mapping *map;
    const char *path;
    const uint8_t *sec; /* the BLOBS section in the mapping */
    size_t sec_off, sec_bytes;
    uint8_t *copy;      /* sec_bytes of kiln_aligned_alloc */
    size_t used;        /* bytes of copy taken, from its start, each blob 64-byte aligned */
};

/* A large BLOBS section gets a home of its own, memory of kiln_aligned_alloc (2 MB pages
 * where the system gives them) of the section's size, and each blob a kernel takes while
 * the engine is prepared is copied there, one after the other (fetch_blob); blobs no kernel
 * takes, and the spare ones (KILN_BLOB_SPARE: read by the run only for some shapes), stay in
 * the mapping, untouched until read, and the home's tail is never touched, so it costs no
 * memory (ResNet-50 built for 2 threads: its convolutions' whole-image weights for N > 1,
 * 50 of 170 MB of blobs, cost 50 MB of memory when copied). The prepacked weights are read
 * whole at every run, and page-cache pages come in 4 KB pages unless the file was read from
 * disk after the huge-page advice (an engine just written by `kiln build` is in the cache as
 * written, in small pages): ViT-B/16 at one thread ran at a median of 204-208 ms from the
 * mapping, 190-197 from memory (fastest runs level), its runs spread twice as wide. Read by
 * kiln_mapping_read (pread, the mapping's pages dropped from this process), so resident
 * memory does not hold a blob twice. NULL (the blobs stay in the mapping, advised huge
 * pages) for a small section, with KILN_ENGINE_BLOBS=map in the environment (processes that
 * share one engine's page cache), or when the memory cannot be had; KILN_ENGINE_BLOBS=copy
 * copies from any size (tests). */
static uint8_t *blob_home(const struct kiln_engine *e, const struct efile_header *h)
{
    size_t n = (size_t)h->sec[SEC_BLOBS].bytes;
    const char *env = getenv("KILN_ENGINE_BLOBS");
    bool want = env && !strcmp(env, "map") ? false : env && !strcmp(env, "copy") ? n > 0 : n >= BLOB_COPY_MIN;
    uint8_t *copy = want && e->file.mapped ? kiln_aligned_alloc(KILN_EFILE_ALIGN, n) : NULL;
    /* In place: huge pages for the pages read from disk from now on (base/file.c). */
    if (!copy) kiln_mapping_advise_huge(&e->file, (size_t)h->sec[SEC_BLOBS].offset, n);
    return copy;
}

/* The store's fetch at load: copies blob b from the mapping to the next place in the home,
 * once. The blobs lie in the section without overlapping, so the home holds them all. */
static void fetch_blob(void *ctx, struct kiln_eblob *b)
{
    struct blob_fetch *f = ctx;
    const uint8_t *d = b->data;
    if (d < f->sec || d > f->sec + f->sec_bytes || (b->key & KILN_BLOB_SPARE)) return; /* copied already; spare */
    size_t n = (b->bytes + KILN_EFILE_ALIGN - 1) / KILN_EFILE_ALIGN * KILN_EFILE_ALIGN;
    if (n > f->sec_bytes - f->used) return; /* cannot happen for a valid table; stays in place */
    kiln_mapping_read(f->map, f->path, f->sec_off + (size_t)(d - f->sec), b->bytes, f->copy + f->used);
    b->data = f->copy + f->used;
    f->used += n;
}

kiln_status kiln_engine_load(const char *path, kiln_engine **out, kiln_err *err)
{
    if (!out) return kiln_err_set(err, KILN_E_INVALID_ARG, "engine load: no output pointer");
    *out = NULL;
    if (!path) return kiln_err_set(err, KILN_E_INVALID_ARG, "engine load: no path");
    struct kiln_mapping map;
    KILN_TRY(kiln_map_file(path, &map, err));
    const struct efile_header *h;
    kiln_status st = check_header(&map, path, &h, err);
    if (!st) st = check_section(&map, h, SEC_GRAPH, path, err);
    if (!st) st = check_section(&map, h, SEC_META, path, err);
    struct kiln_model *m = NULL;
    if (!st) {
        st = kiln_onnx_load_engine(map.data + h->sec[SEC_GRAPH].offset, (size_t)h->sec[SEC_GRAPH].bytes,
                                   map.data + h->sec[SEC_WEIGHTS].offset, (size_t)h->sec[SEC_WEIGHTS].bytes, &m, err);
        if (st) kiln_err_prefix(err, "engine '%s'", path);
    }
    if (st) {
        kiln_unmap(&map);
        return st;
    }
    struct kiln_engine *e;
    st = kiln_engine_new(m, true, 0, &e, err);
    if (st) {
        kiln_unmap(&map);
        return st;
    }
    e->file = map; /* the engine unmaps it after freeing the model that points into it */
    int32_t *variants = NULL;
    st = read_meta(e, h, path, &variants, err);
    /* The prepacked weights are read whole at every run: huge pages for them (ResNet-50 2-4%
     * faster at 1 thread, ViT-B/16 7%). */
    struct blob_fetch fetch = {&e->file, path, NULL, 0, 0, NULL, 0};
    if (!st && (e->blob_copy = blob_home(e, h))) {
        fetch.sec_off = (size_t)h->sec[SEC_BLOBS].offset, fetch.sec_bytes = (size_t)h->sec[SEC_BLOBS].bytes;
        fetch.sec = e->file.data + fetch.sec_off, fetch.copy = e->blob_copy;
        e->store.fetch = fetch_blob, e->store.fetch_ctx = &fetch;
    }
    if (!st) st = kiln_model_infer_shapes(e->model, err);
    if (!st) {
        e->load_variants = variants;
        e->store.loading = true;
        e->cpu_features = 0;
        st = kiln_engine_prepare(e, err);
        e->store.loading = false;
        e->load_variants = NULL;
        if (!st && e->next_variant != e->n_load_variants)
            st = kiln_err_set(err, KILN_E_INVALID_MODEL, "engine '%s' is corrupted: its kernel table has %zu nodes; the "
                              "graph has %zu", path, e->n_load_variants, e->next_variant);
    }
    e->store.fetch = NULL, e->store.fetch_ctx = NULL; /* fetch lives on this stack */
    if (st) {
        kiln_engine_release(e);
        return st;
    }
    *out = e;
    return KILN_OK;
}
