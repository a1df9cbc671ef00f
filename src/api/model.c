/* model.c: the public entry points of kiln.h that read and write ONNX bytes: model loading
 * (kiln_model_load_file/_buffer, kiln_model_free) and value files (kiln_value_read_file,
 * kiln_value_write_pb, kiln_value_write_npy). The formats are onnx.proto's ModelProto,
 * TensorProto, SequenceProto and OptionalProto, and NumPy's .npy.
 */
#include <stdio.h>
#include <string.h>

#include "onnx/onnx.h"
#include "onnx/pbwire.h"
#include "ops/schema.h"
#include "plugin/plugin.h"

void kiln_model_free(kiln_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_ext; i++) kiln_unmap(&m->ext[i]);
    kiln_free(m->ext);
    kiln_unmap(&m->map);
    kiln_arena_free(&m->infer_arena);
    kiln_arena_free(&m->arena);
    kiln_free(m);
}

/* A short name for well-known non-ONNX files, to make "not a model" errors obvious. */
static const char *sniff(const uint8_t *p, size_t n)
{
    static const struct { const char *magic; size_t len; const char *what; } kinds[] = {
        {"\x89PNG\r\n\x1a\n", 8, "a PNG image"},
        {"\xff\xd8\xff", 3, "a JPEG image"},
        {"PK\x03\x04", 4, "a ZIP archive (a PyTorch checkpoint?)"},
        {"\x1f\x8b", 2, "a gzip file"},
        {"\x7f" "ELF", 4, "an ELF binary"},
        {"\x93NUMPY", 6, "a NumPy .npy array"},
        {"GGUF", 4, "a GGUF model"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (n >= kinds[i].len && !memcmp(p, kinds[i].magic, kinds[i].len)) return kinds[i].what;
    return NULL;
}

/* Decodes m->map into m and links it. `label` names the model in messages. */
static kiln_status load_mapped(struct kiln_model *m, const char *label, kiln_err *err)
{
    const char *what = sniff(m->map.data, m->map.size);
    if (what)
        return kiln_err_set(err, KILN_E_INVALID_MODEL, "model %s: the file is %s, not an ONNX "
                            "model", label, what);
    if (m->map.size == 0)
        return kiln_err_set(err, KILN_E_INVALID_MODEL,
                            "model %s: the file is empty, not an ONNX model", label);
    kiln_status st = kiln_onnx_load(m, m->map.data, m->map.size, err);
    if (st) {
        kiln_err_prefix(err, "model %s", label);
        return st;
    }
    /* Refused here rather than only at session creation: every op of such a model would
     * resolve to a schema older than the one its producer meant, so neither the checker's
     * per-node verdicts nor shape inference would mean anything. */
    char who[700];
    snprintf(who, sizeof who, "model %s", label);
    for (size_t i = 0; i < m->n_opsets; i++)
        KILN_TRY(kiln_schema_check_import(who, m->opsets[i].domain, m->opsets[i].version, err));
    /* An op of a domain kiln does not know, that no plugin declares, is refused here too:
     * nothing could check, infer or run it (src/plugin/plugin.h, docs/plugins.md). */
    KILN_TRY(kiln_plugin_check_ops(m, who, err));
    return kiln_model_link(m, err);
}

kiln_status kiln_model_load_file(const char *path, kiln_model **out, kiln_err *err)
{
    *out = NULL;
    struct kiln_model *m = kiln_calloc(1, sizeof *m);
    if (!m) return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
    kiln_status st = kiln_map_file(path, &m->map, err);
    if (st) {
        kiln_err_prefix(err, "model");
        goto fail;
    }
    const char *slash = strrchr(path, '/');
    m->dir = slash ? kiln_arena_strndup(&m->arena, path, slash == path ? 1 : (size_t)(slash - path))
                   : ".";
    if (!m->dir) {
        st = kiln_err_set(err, KILN_E_NOMEM, "out of memory loading '%s'", path);
        goto fail;
    }
    char label[600];
    snprintf(label, sizeof label, "'%s'", path);
    st = load_mapped(m, label, err);
    if (st) goto fail;
    *out = m;
    return KILN_OK;
fail:
    kiln_model_free(m);
    return st;
}

kiln_status kiln_model_load_buffer(const void *buf, size_t len, const char *dir, kiln_model **out,
                                   kiln_err *err)
{
    *out = NULL;
    struct kiln_model *m = kiln_calloc(1, sizeof *m);
    uint8_t *copy = m ? kiln_malloc(len) : NULL; /* kiln_malloc is 16-byte aligned */
    if (!copy) {
        kiln_free(m);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory copying a %zu-byte model", len);
    }
    if (len) memcpy(copy, buf, len);
    m->map = (struct kiln_mapping){.data = copy, .size = len, .mapped = false};
    kiln_status st = KILN_OK;
    if (dir) {
        m->dir = kiln_arena_strndup(&m->arena, dir, strlen(dir));
        if (!m->dir) {
            st = kiln_err_set(err, KILN_E_NOMEM, "out of memory");
            goto fail;
        }
    }
    st = load_mapped(m, "(from memory)", err);
    if (st) goto fail;
    *out = m;
    return KILN_OK;
fail:
    kiln_model_free(m);
    return st;
}

kiln_status kiln_onnx_load_engine(const uint8_t *buf, size_t len, const uint8_t *data, size_t data_len,
                                  struct kiln_model **out, kiln_err *err)
{
    *out = NULL;
    struct kiln_model *m = kiln_calloc(1, sizeof *m);
    uint8_t *copy = m ? kiln_malloc(len ? len : 1) : NULL;
    if (!copy) {
        kiln_free(m);
        return kiln_err_set(err, KILN_E_NOMEM, "out of memory loading an engine's graph (%zu bytes)", len);
    }
    if (len) memcpy(copy, buf, len);
    m->map = (struct kiln_mapping){.data = copy, .size = len, .mapped = false};
    m->engine_data = data;
    m->engine_data_len = data_len;
    kiln_status st = load_mapped(m, "(engine graph)", err);
    if (st) {
        kiln_model_free(m);
        return st;
    }
    *out = m;
    return KILN_OK;
}

kiln_status kiln_value_read_file(const char *path, kiln_value_kind kind, kiln_value **out,
                                 kiln_err *err)
{
    struct kiln_mapping map;
    *out = NULL;
    KILN_TRY(kiln_map_file(path, &map, err));
    kiln_status st = kiln_onnx_decode_value(map.data, map.size, kind, out, err);
    kiln_unmap(&map); /* decoded values own their memory */
    if (st) kiln_err_prefix(err, "'%s'", path);
    return st;
}

kiln_status kiln_value_write_pb(const kiln_value *v, const char *name, const char *path,
                                kiln_err *err)
{
    struct kiln_buf b = {0};
    kiln_status st = kiln_onnx_encode_value(v, name, &b, err);
    if (st == KILN_OK) st = kiln_write_file_atomic(path, b.data ? (const void *)b.data : "", b.len, err);
    kiln_buf_free(&b);
    return st;
}

kiln_status kiln_value_write_npy(const kiln_value *v, const char *path, kiln_err *err)
{
    struct kiln_buf b = {0};
    kiln_status st = kiln_npy_encode(v, &b, err);
    if (st == KILN_OK) st = kiln_write_file_atomic(path, b.data, b.len, err);
    kiln_buf_free(&b);
    return st;
}
