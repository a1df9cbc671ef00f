/* src/cpu/rnn_isa.h: the hot loops of RNN/GRU/LSTM (src/cpu/ops/rnn.c), per instruction set
 * (src/cpu/isa/rnn.c, cpu/isa.h).
 *
 * The hidden units are cut into blocks of KILN_RNN_U. The recurrent weights of a block are
 * one panel [K rows][G * KILN_RNN_U columns] (G gates side by side, gate g's unit u at column
 * g * KILN_RNN_U + u), so the step's product h . R^T for the block is one pass over a
 * contiguous panel, and the gates of a unit land in the same block for the fused cell.
 *
 * gemv: out[j] = sum_q h[q] * panel[q * G * U + j] for j < G * U (G in 1..4), summed in q
 * order, in two partial sums (even and odd q) added at the end where the registers allow
 * (variants may differ in the last bits; each is deterministic).
 *
 * The cells apply the default activations (sigmoid for gates, tanh otherwise) to one block
 * of U units of one batch row. `px` is the projected input of the block (x . W^T plus the
 * biases that sum outside the gate products), `hr` what gemv gave; both in panel column
 * order. clip > 0 clamps every pre-activation to [-clip, clip] (NaN stays NaN).
 *   lstm: gates i, o, f, c; p (NULL: no peepholes) holds P_i, P_o, P_f for the block,
 *         U apart; c is updated in place; h gets o * tanh(c).
 *   gru_lbr (linear_before_reset = 1): gates z, r, h; rbh is the block's Rb_h;
 *         h = (1 - z) * tanh(px_h + r * (hr_h + rbh)) + z * hp.
 *   gru_zr (linear_before_reset = 0, first half): gates z, r; z out, rh = r * hp.
 *   gru_h (second half): one gate; h = (1 - z) * tanh(px + hr) + z * hp.
 *   rnn: one gate; h = tanh(px + hr).
 */
#ifndef KILN_CPU_RNN_ISA_H
#define KILN_CPU_RNN_ISA_H

#include <stdbool.h>
#include <stddef.h>

#include "cpu/isa.h"

#define KILN_RNN_U 16

KILN_ISA_DECLARE(void, kiln_rnn_gemv_isa, (const float *h, const float *panel, size_t K, int G, float *out));
KILN_ISA_DECLARE(void, kiln_rnn_lstm_cell_isa,
                 (const float *px, const float *hr, const float *p, float clip, bool input_forget,
                  float *c, float *h));
KILN_ISA_DECLARE(void, kiln_rnn_gru_lbr_cell_isa,
                 (const float *px, const float *hr, const float *rbh, float clip, const float *hp,
                  float *h));
KILN_ISA_DECLARE(void, kiln_rnn_gru_zr_cell_isa,
                 (const float *px, const float *hr, float clip, const float *hp, float *z, float *rh));
KILN_ISA_DECLARE(void, kiln_rnn_gru_h_cell_isa,
                 (const float *px, const float *hr, const float *z, float clip, const float *hp,
                  float *h));
KILN_ISA_DECLARE(void, kiln_rnn_rnn_cell_isa, (const float *px, const float *hr, float clip, float *h));

#endif
