/* src/cpu/act.c: activation functions for the fused ops, and the GELU loops (act.h). */
#include <math.h>
#include <string.h>

#include "cpu/act.h"
#include "cpu/eltwise.h"

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

/* Gelu is one of the element-wise loops (cpu/eltwise.h), the same expression the fused
 * activation computes (src/cpu/isa/eltwise_core.h). */
void kiln_gelu_f32(const float *x, float *y, size_t n)
{
    kiln_ew_unary_f32(KILN_EW_GELU, x, y, n, 0, 0);
}

void kiln_gelu_tanh_f32(const float *x, float *y, size_t n)
{
    kiln_ew_unary_f32(KILN_EW_GELU_TANH, x, y, n, 0, 0);
}

void kiln_act_apply_f32(const struct kiln_act *a, const float *x, const float *z, float *y,
                        size_t n)
{
    if (a->kind == KILN_ACT_NONE && !z) {
        if (y != x) memmove(y, x, n * sizeof *y);
        return;
    }
    KILN_ISA_DISPATCH(kiln_act_apply_f32_isa, (a, x, z, y, n));
}

/* Blocks of ACT_BLOCK elements, ACT_GRAIN blocks to a chunk (>= 16K elements; smaller
 * tensors run inline on the caller). Every element is computed alone, so the split does not
 * change results. */
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
