/* nms_isa.h: NonMaxSuppression's overlap test (src/cpu/isa/nms.c), per instruction set.
 *
 * kiln_nms_overlaps_isa: whether the box with corners (ay1, ax1, ay2, ax2) and area aa
 * overlaps one of the n boxes given as columns y1, x1, y2, x2, area[0..n) by more than th:
 * not IoU <= th, where IoU = inter / union, and 0 unless the intersection's height and width
 * are both positive (not <= 0) and the union (aa + area[j] - inter) is positive. Evaluated in
 * float32 exactly as written, with no fused multiply-add, so every variant decides alike
 * (src/cpu/ops/misc.c relies on it for identical outputs). Returns 1 or 0.
 */
#ifndef KILN_CPU_NMS_ISA_H
#define KILN_CPU_NMS_ISA_H

#include <stddef.h>

#include "cpu/isa.h"

KILN_ISA_DECLARE(int, kiln_nms_overlaps_isa,
                 (float ay1, float ax1, float ay2, float ax2, float aa, const float *y1,
                  const float *x1, const float *y2, const float *x2, const float *area, size_t n,
                  float th));

#endif
