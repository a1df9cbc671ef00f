/* convert.c: upward opset conversion of the default ONNX domain (placeholder). */
#include "ir/ir.h"

kiln_status kiln_model_convert_opset(kiln_model *m, int64_t opset, kiln_err *err)
{
    (void)m;
    return kiln_err_set(err, KILN_E_UNSUPPORTED, "opset conversion to %lld is not implemented",
                        (long long)opset);
}
