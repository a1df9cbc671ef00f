/* float8.h: scalar conversions for ONNX's narrow float types (float8e4m3fn, float8e4m3fnuz,
 * float8e5m2, float8e5m2fnuz, float4e2m1, float8e8m0) and double -> float16/bfloat16.
 *
 * Follows the ONNX Cast spec (opsets 19..25): round to nearest even; the `saturate` tables
 * for the four float8 types; float4e2m1 always saturates (it has no Inf/NaN); float8e8m0
 * (a bare power-of-two exponent, bias 127, 0xFF = NaN) rounds by `round_mode`.
 *
 * All values are bit patterns in the low bits of the integer (float4e2m1 in 4 bits, as kiln
 * keeps sub-byte types unpacked, one byte per element).
 */
#ifndef KILN_CPU_FLOAT8_H
#define KILN_CPU_FLOAT8_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"

/* Rounding for conversions to float8e8m0 (Cast's round_mode attribute). */
enum kiln_e8m0_round {
    KILN_E8M0_UP = 0,  /* any value above a power of two goes to the next one ("up") */
    KILN_E8M0_DOWN,    /* truncate to the power of two below */
    KILN_E8M0_NEAREST, /* nearest in value; 1.5 * 2^k (the midpoint) goes up */
};

/* True for the six types handled here (the float8 family, float4e2m1, float8e8m0). */
bool kiln_f8_is_narrow(kiln_dtype dt);

/* Decodes bit pattern v of narrow type dt (kiln_f8_is_narrow) to float; exact (every
 * value of these types is a float, 2^-127 for e8m0 code 0 included). NaN encodings give
 * NaN, e5m2's Inf gives Inf. */
float kiln_f8_to_f32(kiln_dtype dt, uint8_t v);

/* Encodes x as narrow type dt, rounding to nearest even (e8m0: by `rm`). `saturate` as
 * Cast's attribute: true maps out-of-range values and +-Inf to +-max; false maps them to
 * Inf (e5m2) or NaN (the others; e8m0 also maps 0 and values below 2^-127 to NaN).
 * float4e2m1 ignores `saturate` (always clamps to +-6) and maps NaN to 0x8, as the ONNX
 * reference data does. NaN in gives the type's NaN (0x7F/0xFF, 0x7E/0xFE for e5m2, 0x80
 * for the fnuz types, 0xFF for e8m0). -0 stays -0 except in the fnuz types and e8m0. */
uint8_t kiln_f8_from_f64(kiln_dtype dt, double x, bool saturate, enum kiln_e8m0_round rm);

/* double -> float16 / bfloat16 bits, rounding once (to nearest even) straight from double,
 * so no double rounding through float32. Overflow gives Inf; NaN gives a quiet NaN. */
uint16_t kiln_f64_to_f16(double x);
uint16_t kiln_f64_to_bf16(double x);

#endif
