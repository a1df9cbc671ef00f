/* src/cpu/isa/nms.c: NonMaxSuppression's overlap test (contract in nms_isa.h).
 *
 * One branch-free loop over blocks of 64 boxes, with an early exit between blocks: a
 * candidate suppressed by an early (high-score) selection stops early, and the rest runs as
 * vector code. fminf / fmaxf are written as selects that give the other operand for a NaN,
 * as libm's do; they may pick the other zero of -0 and +0, which never changes a decision (a
 * zero height or width gives IoU 0 either way, and a nonzero one is the same whichever zero
 * was subtracted).
 */
#if defined(__GNUC__) && !defined(__clang__)
/* -O3 and no trapping math so that gcc vectorizes the selects (see vmath.c); no contraction,
 * because a fused (aa + area) - ih * iw would round differently from the scalar IoU that
 * NonMaxSuppression has always computed. */
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=off")
#endif

#include "cpu/nms_isa.h"

static inline float nms_min(float a, float b)
{
    return a < b || b != b ? a : b;
}

static inline float nms_max(float a, float b)
{
    return a > b || b != b ? a : b;
}

int KILN_ISA_FN(kiln_nms_overlaps_isa)(float ay1, float ax1, float ay2, float ax2, float aa,
                                       const float *y1, const float *x1, const float *y2,
                                       const float *x2, const float *area, size_t n, float th)
{
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    for (size_t j0 = 0; j0 < n; j0 += 64) {
        size_t m = n - j0 < 64 ? n - j0 : 64;
        const float *by1 = y1 + j0, *bx1 = x1 + j0, *by2 = y2 + j0, *bx2 = x2 + j0, *ba = area + j0;
        int hit = 0;
        for (size_t j = 0; j < m; j++) {
            float ih = nms_min(ay2, by2[j]) - nms_max(ay1, by1[j]);
            float iw = nms_min(ax2, bx2[j]) - nms_max(ax1, bx1[j]);
            float inter = ih * iw;
            float uni = aa + ba[j] - inter;
            float q = inter / uni;
            float v = (!(ih <= 0) & !(iw <= 0) & (uni > 0)) ? q : 0.0f;
            hit |= !(v <= th);
        }
        if (hit) return 1;
    }
    return 0;
}
