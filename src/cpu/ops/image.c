/* src/cpu/ops/image.c: (placeholder, filled by its op family's work). */
#include "cpu/kernel.h"

const struct kiln_cpu_op kiln_cpu_ops_image[] = {
    {0},
};
