/* shape_rnn.c: shape and type rules for RNN (1, 7, 14, 22), GRU (1, 3, 7, 14, 22) and LSTM
 * (1, 7, 14, 22).
 *
 * X is [seq, batch, input] (layout 0) or [batch, seq, input] (layout 1, opset 14+). With
 * D = 2 for direction "bidirectional" (else 1) and H = hidden_size (else R's last dim, else
 * W[1] / gates with gates 1, 3, 4 for RNN, GRU, LSTM):
 *   Y          [seq, D, batch, H]   (layout 1: [batch, seq, D, H])
 *   Y_h, Y_c   [D, batch, H]        (layout 1: [batch, D, H])
 * all of X's element type. Contradictions reported: W's first dim vs D, W's second vs
 * gates * H, X's input size vs W's last dim.
 */
#include "infer/shape_nn.h"

static kiln_status rnn_infer(struct kiln_ictx *c)
{
    const char *op = c->node->op_type;
    int64_t gates = !strcmp(op, "LSTM") ? 4 : !strcmp(op, "GRU") ? 3 : 1;
    static const size_t ins[] = {0, 1, 2};
    kiln_dtype dt = kiln_infer_dtype_of(c, 3, ins);
    int rx = -1, rw = -1, rr = -1;
    const struct kiln_dim *x = NULL, *w = NULL, *r = NULL;
    kiln_infer_shape_of(c, 0, &rx, &x);
    kiln_infer_shape_of(c, 1, &rw, &w);
    kiln_infer_shape_of(c, 2, &rr, &r);
    if ((x && rx != 3) || (w && rw != 3) || (r && rr != 3)) {
        kiln_ic_problem(c, "inputs X, W, R have %d, %d, %d dims; expected 3 each", rx, rw, rr);
        return KILN_OK;
    }
    int64_t layout = c->opset >= 14 ? kiln_ic_attr_i(c, "layout", 0) : 0;
    const char *dir = kiln_ic_attr_s(c, "direction", "forward");
    struct kiln_dim D = kiln_dim_int(!strcmp(dir, "bidirectional") ? 2 : 1);
    if (strcmp(dir, "forward") && strcmp(dir, "reverse") && strcmp(dir, "bidirectional")) {
        kiln_ic_problem(c, "direction '%s' is not one of forward, reverse, bidirectional", dir);
        return KILN_OK;
    }
    struct kiln_dim H = kiln_dim_unknown();
    if (kiln_ic_attr_has(c, "hidden_size"))
        H = kiln_dim_int(kiln_ic_attr_i(c, "hidden_size", 0));
    else if (r)
        H = r[2];
    else if (w && kiln_dim_known(w[1]) && w[1].value % gates == 0)
        H = kiln_dim_int(w[1].value / gates);
    if (w) {
        struct kiln_dim gh = kiln_sym_mul(c->inf, H, kiln_dim_int(gates));
        if (kiln_dim_ne(w[0], D) || kiln_dim_ne(w[1], gh)) {
            kiln_ic_problem(c, "input W is [%lld, %lld, ...]; expected [%lld, %lld * hidden_size %lld, ...]",
                            (long long)w[0].value, (long long)w[1].value, (long long)D.value,
                            (long long)gates, (long long)H.value);
            return KILN_OK;
        }
        if (x && kiln_dim_ne(x[2], w[2])) {
            kiln_ic_problem(c, "input X has input size %lld but W has %lld", (long long)x[2].value,
                            (long long)w[2].value);
            return KILN_OK;
        }
    }
    struct kiln_dim seq = x ? x[layout ? 1 : 0] : kiln_dim_unknown();
    struct kiln_dim batch = x ? x[layout ? 0 : 1] : kiln_dim_unknown();
    struct kiln_dim y[4], yh[3];
    if (layout) {
        y[0] = batch, y[1] = seq, y[2] = D, y[3] = H;
        yh[0] = batch, yh[1] = D, yh[2] = H;
    } else {
        y[0] = seq, y[1] = D, y[2] = batch, y[3] = H;
        yh[0] = D, yh[1] = batch, yh[2] = H;
    }
    KILN_TRY(kiln_ic_set_tensor(c, 0, dt, 4, y));
    for (size_t o = 1; o < c->n_out && o < 3; o++) KILN_TRY(kiln_ic_set_tensor(c, o, dt, 3, yh));
    return KILN_OK;
}

const struct kiln_infer_op kiln_infer_ops_rnn[] = {
    {"RNN", "", 1, 0, rnn_infer},
    {"GRU", "", 1, 0, rnn_infer},
    {"LSTM", "", 1, 0, rnn_infer},
    {0},
};
