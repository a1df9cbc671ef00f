/* src/cpu/act.c: activation functions for the fused ops, and the GELU loops (act.h). */
#include <math.h>
#include <string.h>

#include "cpu/act.h"
#include "cpu/vmath.h"

#define ACT_CHUNK 256

bool kiln_act_parse(const char *name, const float *p, size_t np, const char *approximate,
                    struct kiln_act *out)
{
    static const struct {
        const char *name;
        enum kiln_act_kind kind;
        size_t max_params;
        float a, b;
    } table[] = {
        {"", KILN_ACT_NONE, 0, 0, 0},
        {"Relu", KILN_ACT_RELU, 0, 0, 0},
        {"Clip", KILN_ACT_CLIP, 2, -INFINITY, INFINITY},
        {"LeakyRelu", KILN_ACT_LEAKYRELU, 1, 0.01f, 0},
        {"Sigmoid", KILN_ACT_SIGMOID, 0, 0, 0},
        {"Tanh", KILN_ACT_TANH, 0, 0, 0},
        {"HardSigmoid", KILN_ACT_HARDSIGMOID, 2, 0.2f, 0.5f},
        {"HardSwish", KILN_ACT_HARDSWISH, 0, 0, 0},
        {"SiLU", KILN_ACT_SILU, 1, 1.0f, 0},
        {"Swish", KILN_ACT_SILU, 1, 1.0f, 0},
        {"Gelu", KILN_ACT_GELU, 0, 0, 0},
    };
    if (!name) name = "";
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].name, name) != 0) continue;
        if (np > table[i].max_params) return false;
        out->kind = table[i].kind;
        out->a = np > 0 ? p[0] : table[i].a;
        out->b = np > 1 ? p[1] : table[i].b;
        if (out->kind == KILN_ACT_GELU && approximate && strcmp(approximate, "none") != 0) {
            if (strcmp(approximate, "tanh") != 0) return false;
            out->kind = KILN_ACT_GELU_TANH;
        }
        return true;
    }
    return false;
}

void kiln_gelu_f32(const float *x, float *y, size_t n)
{
    float t[ACT_CHUNK];
    for (size_t i = 0; i < n; i += ACT_CHUNK) {
        size_t m = n - i < ACT_CHUNK ? n - i : ACT_CHUNK;
        for (size_t j = 0; j < m; j++) t[j] = x[i + j] * 0.70710678118654752440f;
        kiln_verf_f32(t, t, m);
        for (size_t j = 0; j < m; j++) y[i + j] = 0.5f * x[i + j] * (1.0f + t[j]);
    }
}

void kiln_gelu_tanh_f32(const float *x, float *y, size_t n)
{
    float t[ACT_CHUNK];
    for (size_t i = 0; i < n; i += ACT_CHUNK) {
        size_t m = n - i < ACT_CHUNK ? n - i : ACT_CHUNK;
        for (size_t j = 0; j < m; j++) {
            const float v = x[i + j];
            t[j] = 0.79788456080286535588f * (v + 0.044715f * v * v * v);
        }
        kiln_vtanh_f32(t, t, m);
        for (size_t j = 0; j < m; j++) y[i + j] = 0.5f * x[i + j] * (1.0f + t[j]);
    }
}

static inline float clamp01(float t)
{
    return t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
}

/* The activation of v[0..m) in place (m <= ACT_CHUNK). */
static void act_chunk(const struct kiln_act *a, float *v, size_t m)
{
    const float A = a->a, B = a->b;
    float t[ACT_CHUNK];
    switch (a->kind) {
    case KILN_ACT_NONE: break;
    case KILN_ACT_RELU:
        for (size_t j = 0; j < m; j++) v[j] = v[j] < 0.0f ? 0.0f : v[j];
        break;
    case KILN_ACT_CLIP:
        for (size_t j = 0; j < m; j++) {
            float w = v[j] < A ? A : v[j];
            v[j] = w > B ? B : w;
        }
        break;
    case KILN_ACT_LEAKYRELU:
        for (size_t j = 0; j < m; j++) v[j] = v[j] < 0.0f ? A * v[j] : v[j];
        break;
    case KILN_ACT_SIGMOID: kiln_vsigmoid_f32(v, v, m); break;
    case KILN_ACT_TANH: kiln_vtanh_f32(v, v, m); break;
    case KILN_ACT_HARDSIGMOID:
        for (size_t j = 0; j < m; j++) v[j] = clamp01(A * v[j] + B);
        break;
    case KILN_ACT_HARDSWISH:
        for (size_t j = 0; j < m; j++) v[j] = v[j] * clamp01((float)(1.0 / 6.0) * v[j] + 0.5f);
        break;
    case KILN_ACT_SILU:
        for (size_t j = 0; j < m; j++) t[j] = A == 1.0f ? v[j] : A * v[j];
        kiln_vsigmoid_f32(t, t, m);
        for (size_t j = 0; j < m; j++) v[j] = v[j] * t[j];
        break;
    case KILN_ACT_GELU: kiln_gelu_f32(v, v, m); break;
    case KILN_ACT_GELU_TANH: kiln_gelu_tanh_f32(v, v, m); break;
    }
}

void kiln_act_apply_f32(const struct kiln_act *a, const float *x, const float *z, float *y,
                        size_t n)
{
    if (a->kind == KILN_ACT_NONE && !z) {
        if (y != x) memmove(y, x, n * sizeof *y);
        return;
    }
    float buf[ACT_CHUNK];
    for (size_t i = 0; i < n; i += ACT_CHUNK) {
        size_t m = n - i < ACT_CHUNK ? n - i : ACT_CHUNK;
        for (size_t j = 0; j < m; j++) buf[j] = z ? x[i + j] + z[i + j] : x[i + j];
        act_chunk(a, buf, m);
        memcpy(y + i, buf, m * sizeof *y);
    }
}

/* Blocks of ACT_BLOCK elements, ACT_GRAIN blocks to a chunk (>= 16K elements). */
#define ACT_BLOCK 4096
#define ACT_GRAIN 4

struct act_job {
    const struct kiln_act *a;
    const float *x, *z;
    float *y;
    size_t n;
};

static void act_par_chunk(void *ctx, size_t b0, size_t b1, int worker)
{
    const struct act_job *j = ctx;
    (void)worker;
    size_t lo = b0 * ACT_BLOCK, hi = b1 * ACT_BLOCK < j->n ? b1 * ACT_BLOCK : j->n;
    kiln_act_apply_f32(j->a, j->x + lo, j->z ? j->z + lo : NULL, j->y + lo, hi - lo);
}

void kiln_act_apply_par(struct kiln_pool *pool, const struct kiln_act *a, const float *x,
                        const float *z, float *y, size_t n)
{
    struct act_job j = {a, x, z, y, n};
    kiln_pool_for(pool, (n + ACT_BLOCK - 1) / ACT_BLOCK, ACT_GRAIN, act_par_chunk, &j);
}
