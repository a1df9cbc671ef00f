/* test_infer_rules_c.c: the shape-inference rules of the nn, ml, sequence and control-flow
 * families (src/infer/shape_{conv,pool,gemm,rnn,attention,vision,scan,ml,seq,control}.c).
 *
 * Small models are written as ModelProto bytes (the builder of support/test_model.h, with
 * graph-valued attributes for If/Loop/Scan bodies), loaded with
 * kiln_model_load_buffer and inferred with kiln_infer_model; inferred types are compared as
 * text (kiln_vtype_str: "float32[N,8,H,W]", "?" for an unknown dim). Symbolic inputs must
 * give symbolic outputs through the dim arithmetic; contradictions must come out as
 * problems. A few real ONNX node-test models are inferred too (their declared output types
 * ignored: only the rules speak).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kiln.h"
#include "test_model.h"
#include "test_support.h"

/* ------------------------------------------------------------------ registry */

/* Every op of the CPU families these rules cover has a rule at every version kiln runs. */
extern const struct kiln_cpu_op kiln_cpu_ops_conv[], kiln_cpu_ops_pool[], kiln_cpu_ops_gemm[],
    kiln_cpu_ops_nn_extra[], kiln_cpu_ops_rnn[], kiln_cpu_ops_vision[], kiln_cpu_ops_image[],
    kiln_cpu_ops_ml[], kiln_cpu_ops_sequence[], kiln_cpu_ops_control[], kiln_cpu_ops_scan[];

static void test_registry(void)
{
    const struct kiln_cpu_op *const fams[] = {
        kiln_cpu_ops_conv,     kiln_cpu_ops_pool,    kiln_cpu_ops_gemm,  kiln_cpu_ops_nn_extra,
        kiln_cpu_ops_rnn,      kiln_cpu_ops_vision,  kiln_cpu_ops_image, kiln_cpu_ops_ml,
        kiln_cpu_ops_sequence, kiln_cpu_ops_control, kiln_cpu_ops_scan,
    };
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++)
        for (const struct kiln_cpu_op *op = fams[f]; op->name; op++) {
            int last = op->until ? op->until : 26;
            for (int v = op->since; v <= last; v++)
                CHECK(kiln_infer_find_op(op->domain, op->name, v) != NULL, "no rule for %s '%s' version %d",
                      op->domain, op->name, v);
        }
    CHECK(kiln_infer_find_op("", "Col2Im", 18) != NULL, "no rule for Col2Im");
}

/* ------------------------------------------------------------------ conv and pool */

static void test_conv(void)
{
    struct model m = fresh(17);
    struct run r;
    static const int64_t p1[] = {1, 1, 1, 1}, s2[] = {2, 2};
    input(&m, "X", KILN_DTYPE_F32, "N,3,H,W");
    input(&m, "W", KILN_DTYPE_F32, "8,3,3,3");
    input(&m, "B", KILN_DTYPE_F32, "8");
    input(&m, "K", KILN_DTYPE_F32, "1,3,32,30");
    struct pb *n = node("Conv", "X,W,B", "Y");
    at_ints(n, "pads", 4, p1);
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    n = node("Conv", "K,W", "YK");
    at_ints(n, "pads", 4, p1);
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    n = node("Conv", "X,W", "YS"); /* SAME_UPPER: ceil(H / 2) */
    at_s(n, "auto_pad", "SAME_UPPER");
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    n = node("Conv", "X,W", "YV"); /* stride 1 VALID: H - 2 */
    at_s(n, "auto_pad", "VALID");
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[N,8,(H-1)/2+1,(W-1)/2+1]");
    EXPECT_TYPE(&r, "YK", "float32[1,8,16,15]");
    EXPECT_TYPE(&r, "YS", "float32[N,8,(H+1)/2,(W+1)/2]");
    EXPECT_TYPE(&r, "YV", "float32[N,8,H-2,W-2]");
    done(&r);

    /* groups and dilations; channel mismatch; ConvTranspose */
    m = fresh(17);
    static const int64_t d2[] = {2, 2}, op1[] = {1, 1}, os[] = {10, 8};
    input(&m, "X", KILN_DTYPE_F32, "2,4,10,10");
    input(&m, "Wg", KILN_DTYPE_F32, "6,2,3,3");
    input(&m, "Wt", KILN_DTYPE_F32, "4,3,3,3");
    input(&m, "Wbad", KILN_DTYPE_F32, "6,3,3,3");
    n = node("Conv", "X,Wg", "G");
    at_i(n, "group", 2);
    at_ints(n, "dilations", 2, d2);
    end_node(&m, n, NULL);
    n = node("ConvTranspose", "X,Wt", "T");
    at_ints(n, "strides", 2, s2);
    at_ints(n, "output_padding", 2, op1);
    end_node(&m, n, NULL);
    n = node("ConvTranspose", "X,Wt", "TS");
    at_ints(n, "strides", 2, s2);
    at_s(n, "auto_pad", "SAME_UPPER");
    at_i(n, "group", 1);
    end_node(&m, n, NULL);
    n = node("ConvTranspose", "X,Wt", "TO");
    at_ints(n, "strides", 2, s2);
    at_ints(n, "output_shape", 2, os);
    end_node(&m, n, NULL);
    end_node(&m, node("Conv", "X,Wbad", "Bad"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "G", "float32[2,6,6,6]");
    EXPECT_TYPE(&r, "T", "float32[2,3,22,22]"); /* 2 * 9 + 1 + 3 */
    EXPECT_TYPE(&r, "TS", "float32[2,3,20,20]");
    EXPECT_TYPE(&r, "TO", "float32[2,3,10,8]");
    EXPECT_TYPE(&r, "Bad", "unknown");
    EXPECT_PROBLEM(&r, "channels");
    done(&r);

    /* ConvTranspose on a symbolic size: 2 * (H - 1) + 3 */
    m = fresh(17);
    input(&m, "X", KILN_DTYPE_F32, "N,4,H,8");
    input(&m, "Wt", KILN_DTYPE_F32, "4,3,3,3");
    n = node("ConvTranspose", "X,Wt", "T");
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "T", "float32[N,3,2*H+1,17]");
    done(&r);
}

static void test_pool(void)
{
    struct model m = fresh(22);
    struct run r;
    static const int64_t k3[] = {3, 3}, s2[] = {2, 2}, k2[] = {2, 2};
    input(&m, "X", KILN_DTYPE_F32, "1,3,32,31");
    input(&m, "S", KILN_DTYPE_F16, "N,3,H,W");
    struct pb *n = node("MaxPool", "X", "Y,I");
    at_ints(n, "kernel_shape", 2, k3);
    at_ints(n, "strides", 2, s2);
    at_i(n, "ceil_mode", 1);
    end_node(&m, n, NULL);
    n = node("AveragePool", "S", "A");
    at_ints(n, "kernel_shape", 2, k2);
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    n = node("AveragePool", "S", "AS");
    at_ints(n, "kernel_shape", 2, k3);
    at_ints(n, "strides", 2, s2);
    at_s(n, "auto_pad", "SAME_LOWER");
    end_node(&m, n, NULL);
    end_node(&m, node("GlobalAveragePool", "S", "G"), NULL);
    n = node("LpPool", "X", "L");
    at_ints(n, "kernel_shape", 2, k2);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[1,3,16,15]");
    EXPECT_TYPE(&r, "I", "int64[1,3,16,15]");
    EXPECT_TYPE(&r, "A", "float16[N,3,(H-2)/2+1,(W-2)/2+1]");
    EXPECT_TYPE(&r, "AS", "float16[N,3,(H+1)/2,(W+1)/2]");
    EXPECT_TYPE(&r, "G", "float16[N,3,1,1]");
    EXPECT_TYPE(&r, "L", "float32[1,3,31,30]");
    done(&r);

    /* ceil mode drops a last window that would start in the end padding */
    m = fresh(22);
    static const int64_t pads[] = {0, 0, 1, 1};
    input(&m, "X", KILN_DTYPE_F32, "1,1,4,4");
    n = node("MaxPool", "X", "Y");
    at_ints(n, "kernel_shape", 2, k2);
    at_ints(n, "strides", 2, s2);
    at_ints(n, "pads", 4, pads);
    at_i(n, "ceil_mode", 1);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "float32[1,1,2,2]");
    done(&r);
}

/* ------------------------------------------------------------------ gemm, rnn, attention */

static void test_matmul_gemm(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "A", KILN_DTYPE_F32, "B,S,64");
    input(&m, "W", KILN_DTYPE_F32, "64,32");
    input(&m, "V", KILN_DTYPE_F32, "64");
    input(&m, "P", KILN_DTYPE_F32, "1,H,32,7");
    input(&m, "Q", KILN_DTYPE_F32, "5,1,S,32");
    end_node(&m, node("MatMul", "A,W", "Y"), NULL);
    end_node(&m, node("MatMul", "A,V", "YV"), NULL);
    end_node(&m, node("MatMul", "V,W", "VW"), NULL);
    end_node(&m, node("MatMul", "V,V", "VV"), NULL);
    end_node(&m, node("MatMul", "Q,P", "QP"), NULL);
    end_node(&m, node("MatMul", "W,W", "Bad"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "float32[B,S,32]");
    EXPECT_TYPE(&r, "YV", "float32[B,S]");
    EXPECT_TYPE(&r, "VW", "float32[32]");
    EXPECT_TYPE(&r, "VV", "float32[]");
    EXPECT_TYPE(&r, "QP", "float32[5,H,S,7]");
    EXPECT_PROBLEM(&r, "inner dims");
    done(&r);

    m = fresh(13);
    input(&m, "A", KILN_DTYPE_F32, "K,M");
    input(&m, "B", KILN_DTYPE_F32, "N,K");
    input(&m, "C", KILN_DTYPE_F32, "N");
    input(&m, "D", KILN_DTYPE_F32, "3,4");
    input(&m, "E", KILN_DTYPE_F32, "5,6");
    struct pb *n = node("Gemm", "A,B,C", "Y");
    at_i(n, "transA", 1);
    at_i(n, "transB", 1);
    end_node(&m, n, NULL);
    end_node(&m, node("Gemm", "D,E", "Bad"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "float32[M,N]");
    EXPECT_TYPE(&r, "Bad", "unknown");
    EXPECT_PROBLEM(&r, "K = 4");
    done(&r);
}

static void test_rnn(void)
{
    struct model m = fresh(14);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "T,B,10");
    input(&m, "W", KILN_DTYPE_F32, "2,80,10");
    input(&m, "R", KILN_DTYPE_F32, "2,80,20");
    input(&m, "XB", KILN_DTYPE_F32, "B,T,10");
    input(&m, "WG", KILN_DTYPE_F32, "1,60,10");
    input(&m, "RG", KILN_DTYPE_F32, "1,60,20");
    struct pb *n = node("LSTM", "X,W,R", "Y,Yh,Yc");
    at_s(n, "direction", "bidirectional");
    at_i(n, "hidden_size", 20);
    end_node(&m, n, NULL);
    n = node("GRU", "XB,WG,RG", "G,Gh");
    at_i(n, "layout", 1);
    end_node(&m, n, NULL);
    n = node("RNN", "X,WG,RG", "Bad");
    at_i(n, "hidden_size", 20);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "float32[T,2,B,20]");
    EXPECT_TYPE(&r, "Yh", "float32[2,B,20]");
    EXPECT_TYPE(&r, "Yc", "float32[2,B,20]");
    EXPECT_TYPE(&r, "G", "float32[B,T,1,20]");
    EXPECT_TYPE(&r, "Gh", "float32[B,1,20]");
    EXPECT_PROBLEM(&r, "input W");
    done(&r);
}

static void test_attention(void)
{
    struct model m = fresh(23);
    struct run r;
    input(&m, "Q", KILN_DTYPE_F32, "B,S,64");
    input(&m, "K", KILN_DTYPE_F32, "B,L,32");
    input(&m, "V", KILN_DTYPE_F32, "B,L,48");
    input(&m, "PK", KILN_DTYPE_F32, "B,2,P,16");
    input(&m, "PV", KILN_DTYPE_F32, "B,2,P,24");
    struct pb *n = node("Attention", "Q,K,V,,PK,PV", "Y,PKo,PVo,QK");
    at_i(n, "q_num_heads", 4);
    at_i(n, "kv_num_heads", 2);
    end_node(&m, n, NULL);
    input(&m, "X", KILN_DTYPE_F16, "B,4,S,16");
    input(&m, "cos", KILN_DTYPE_F16, "P,8");
    end_node(&m, node("RotaryEmbedding", "X,cos,cos", "RX"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[B,S,96]");
    EXPECT_TYPE(&r, "PKo", "float32[B,2,L+P,16]");
    EXPECT_TYPE(&r, "PVo", "float32[B,2,L+P,24]");
    EXPECT_TYPE(&r, "QK", "float32[B,4,S,L+P]");
    EXPECT_TYPE(&r, "RX", "float16[B,4,S,16]");
    done(&r);
}

/* ------------------------------------------------------------------ vision and scan ops */

static void test_vision_scan(void)
{
    struct model m = fresh(20);
    struct run r;
    static const int64_t k2[] = {2}, sz[] = {2, 3, 5, 6};
    input(&m, "X", KILN_DTYPE_F32, "N,C,H,W");
    input(&m, "rois", KILN_DTYPE_F32, "R,4");
    input(&m, "bi", KILN_DTYPE_I64, "R");
    struct pb *n = node("RoiAlign", "X,rois,bi", "RA");
    at_i(n, "output_height", 7);
    at_i(n, "output_width", 5);
    end_node(&m, n, NULL);
    init_i64(&m, "k", 1, k2);
    end_node(&m, node("TopK", "X,k", "TV,TI"), NULL);
    input(&m, "theta", KILN_DTYPE_F32, "2,2,3");
    init_i64(&m, "size", 4, sz);
    end_node(&m, node("AffineGrid", "theta,size", "grid"), NULL);
    input(&m, "A", KILN_DTYPE_F32, "B,I,J");
    input(&m, "Bm", KILN_DTYPE_F32, "B,J,K");
    n = node("Einsum", "A,Bm", "E");
    at_s(n, "equation", "bij,bjk->bik");
    end_node(&m, n, NULL);
    n = node("Einsum", "A", "Et");
    at_s(n, "equation", "...ij");
    end_node(&m, n, NULL);
    n = node("Einsum", "A,Bm", "Ei");
    at_s(n, "equation", "bij,bjk");
    end_node(&m, n, NULL);
    input(&m, "M", KILN_DTYPE_F64, "4,D,D");
    end_node(&m, node("Det", "M", "det"), NULL);
    input(&m, "sig", KILN_DTYPE_F32, "1,L,1");
    n = node("DFT", "sig", "F");
    at_i(n, "onesided", 1);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "RA", "float32[R,C,7,5]");
    EXPECT_TYPE(&r, "TV", "float32[N,C,H,2]");
    EXPECT_TYPE(&r, "TI", "int64[N,C,H,2]");
    EXPECT_TYPE(&r, "grid", "float32[2,5,6,2]");
    EXPECT_TYPE(&r, "E", "float32[B,I,K]");
    EXPECT_TYPE(&r, "Et", "float32[B,I,J]");
    EXPECT_TYPE(&r, "Ei", "float32[I,K]"); /* implicit: b is used twice, so summed */
    EXPECT_TYPE(&r, "det", "float64[4]");
    EXPECT_TYPE(&r, "F", "float32[1,L/2+1,2]");
    done(&r);
}

/* ------------------------------------------------------------------ ml */

static void test_ml(void)
{
    struct model m = fresh(17);
    m.ml_opset = 3;
    struct run r;
    static const char *const labels[] = {"cat", "dog", "eel"};
    static const float coef[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    input(&m, "X", KILN_DTYPE_F32, "N,4");
    struct pb *n = node("LinearClassifier", "X", "L,S");
    at_strs(n, "classlabels_strings", 3, labels);
    at_floats(n, "coefficients", 12, coef);
    end_node(&m, n, "ai.onnx.ml");
    n = node("LinearRegressor", "X", "LR");
    at_i(n, "targets", 3);
    at_floats(n, "coefficients", 12, coef);
    end_node(&m, n, "ai.onnx.ml");
    n = node("Scaler", "X", "SC");
    end_node(&m, n, "ai.onnx.ml");
    input(&m, "T", KILN_DTYPE_STRING, "N");
    n = node("CategoryMapper", "T", "CM");
    end_node(&m, n, "ai.onnx.ml");
    n = node("OneHotEncoder", "T", "OH");
    at_strs(n, "cats_strings", 3, labels);
    end_node(&m, n, "ai.onnx.ml");
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "L", "string[N]");
    EXPECT_TYPE(&r, "S", "float32[N,3]");
    EXPECT_TYPE(&r, "LR", "float32[N,3]");
    EXPECT_TYPE(&r, "SC", "float32[N,4]");
    EXPECT_TYPE(&r, "CM", "int64[N]");
    EXPECT_TYPE(&r, "OH", "float32[N,3]");
    done(&r);
}

/* ------------------------------------------------------------------ sequences */

static void test_sequence(void)
{
    struct model m = fresh(17);
    struct run r;
    static const int64_t zero[] = {0}, two[] = {2};
    input(&m, "A", KILN_DTYPE_F32, "N,3");
    input(&m, "B", KILN_DTYPE_F32, "N,4");
    end_node(&m, node("SequenceConstruct", "A,B", "S"), NULL);
    init_i64(&m, "i0", -1, zero);
    end_node(&m, node("SequenceAt", "S,i0", "At"), NULL);
    input(&m, "p", KILN_DTYPE_I64, "");
    end_node(&m, node("SequenceAt", "S,p", "Ap"), NULL);
    end_node(&m, node("SequenceLength", "S", "Len"), NULL);
    struct pb *n = node("ConcatFromSequence", "S", "Cat");
    at_i(n, "axis", 1);
    end_node(&m, n, NULL);
    n = node("SplitToSequence", "B", "Sp");
    at_i(n, "axis", 1);
    at_i(n, "keepdims", 0);
    end_node(&m, n, NULL);
    init_i64(&m, "two", -1, two);
    n = node("SplitToSequence", "B,two", "Sp2");
    at_i(n, "axis", 1);
    end_node(&m, n, NULL);
    end_node(&m, node("SequenceEmpty", "", "E"), NULL);
    end_node(&m, node("SequenceInsert", "E,A", "EI"), NULL);
    end_node(&m, node("Optional", "A", "O"), NULL);
    end_node(&m, node("OptionalGetElement", "O", "OG"), NULL);
    end_node(&m, node("OptionalHasElement", "O", "OH"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "S", "seq(float32[N,?])");
    EXPECT_TYPE(&r, "At", "float32[N,3]"); /* element 0, a known position */
    EXPECT_TYPE(&r, "Ap", "float32[N,?]"); /* any element */
    EXPECT_TYPE(&r, "Len", "int64[]");
    const struct kiln_vtype *len = kiln_infer_lookup(((struct kiln_model *)r.km)->graph, "Len");
    CHECK(len && len->n_vals == 1 && len->vals[0].value == 2, "Len: its value 2 is not known");
    EXPECT_TYPE(&r, "Cat", "float32[N,7]"); /* the elements are known: 3 + 4 */
    EXPECT_TYPE(&r, "Sp", "seq(float32[N])");
    EXPECT_TYPE(&r, "Sp2", "seq(float32[N,2])");
    EXPECT_TYPE(&r, "E", "seq(float32)");
    EXPECT_TYPE(&r, "EI", "seq(float32[N,3])");
    EXPECT_TYPE(&r, "O", "optional(float32[N,3])");
    EXPECT_TYPE(&r, "OG", "float32[N,3]");
    EXPECT_TYPE(&r, "OH", "bool[]");
    done(&r);
}

/* ------------------------------------------------------------------ control flow */

/* Branches that disagree on a dim merge to unknown there. */
static void test_if(void)
{
    struct model th = fresh(17), el = fresh(17), m = fresh(17);
    struct run r;
    end_node(&th, node("Relu", "X", "t"), NULL);
    output(&th, "t");
    struct pb *n = node("Concat", "X,X", "e");
    at_i(n, "axis", 0);
    end_node(&el, n, NULL);
    output(&el, "e");
    input(&m, "X", KILN_DTYPE_F32, "N,4");
    input(&m, "c", KILN_DTYPE_BOOL, "");
    n = node("If", "c", "Y");
    at_g(n, "then_branch", &th);
    at_g(n, "else_branch", &el);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[?,4]");
    done(&r);
}

static void test_loop_scan(void)
{
    /* Loop with a constant trip count and no cond: scan outputs [5, ...]; the carried value
     * keeps its shape. */
    struct model body = fresh(17), m = fresh(17);
    struct run r;
    static const int64_t five[] = {5};
    input(&body, "i", KILN_DTYPE_I64, "");
    input(&body, "cin", KILN_DTYPE_BOOL, "");
    input(&body, "acc", KILN_DTYPE_F32, NULL);
    end_node(&body, node("Identity", "cin", "cout"), NULL);
    end_node(&body, node("Add", "acc,X", "acc2"), NULL);
    end_node(&body, node("Relu", "acc2", "s"), NULL);
    output(&body, "cout");
    output(&body, "acc2");
    output(&body, "s");
    input(&m, "X", KILN_DTYPE_F32, "N,3");
    init_i64(&m, "M", -1, five);
    struct pb *n = node("Loop", "M,,X", "Y,S");
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[N,3]");
    EXPECT_TYPE(&r, "S", "float32[5,N,3]");
    done(&r);

    /* a symbolic trip count (Shape arithmetic) gives a symbolic scan length */
    body = fresh(17);
    m = fresh(17);
    input(&body, "i", KILN_DTYPE_I64, "");
    input(&body, "cin", KILN_DTYPE_BOOL, "");
    end_node(&body, node("Identity", "cin", "cout"), NULL);
    end_node(&body, node("Relu", "X", "s"), NULL);
    output(&body, "cout");
    output(&body, "s");
    input(&m, "X", KILN_DTYPE_F32, "N,3");
    n = node("Shape", "X", "MN");
    at_i(n, "end", 1);
    end_node(&m, n, NULL);
    n = node("Loop", "MN,", "S");
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "S", "float32[N,N,3]");
    done(&r);

    /* a constant true cond that the body hands back: still counted */
    body = fresh(17);
    m = fresh(17);
    input(&body, "i", KILN_DTYPE_I64, "");
    input(&body, "cin", KILN_DTYPE_BOOL, "");
    end_node(&body, node("Identity", "cin", "cout"), NULL);
    end_node(&body, node("Relu", "X", "s"), NULL);
    output(&body, "cout");
    output(&body, "s");
    input(&m, "X", KILN_DTYPE_F32, "N,3");
    init_i64(&m, "M", -1, five);
    struct pb t = {0}; /* a bool scalar initializer "t" = true */
    pb_int(&t, 2, KILN_DTYPE_BOOL);
    pb_int(&t, 5, 1);
    pb_str(&t, 8, "t");
    pb_msg(&m.graph, 5, &t);
    n = node("Loop", "M,t", "S");
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "S", "float32[5,N,3]");
    done(&r);

    /* a cond input: the iteration count is data-dependent; a carried value that grows
     * each iteration gets an unknown dim */
    body = fresh(17);
    m = fresh(17);
    input(&body, "i", KILN_DTYPE_I64, "");
    input(&body, "cin", KILN_DTYPE_BOOL, "");
    input(&body, "acc", KILN_DTYPE_F32, NULL);
    end_node(&body, node("Identity", "cin", "cout"), NULL);
    n = node("Concat", "acc,X", "acc2");
    at_i(n, "axis", 0);
    end_node(&body, n, NULL);
    end_node(&body, node("Identity", "X", "s"), NULL);
    output(&body, "cout");
    output(&body, "acc2");
    output(&body, "s");
    input(&m, "X", KILN_DTYPE_F32, "N,3");
    input(&m, "c", KILN_DTYPE_BOOL, "");
    n = node("Loop", ",c,X", "Y,S");
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float32[?,3]");
    const char *s = type_of(&r, "S");
    CHECK(strncmp(s, "float32[Loop_", 13) == 0 && strstr(s, ",N,3] (data-dependent)"), "S: inferred %s", s);
    done(&r);

    /* Scan: state [2], scan input [N, T, 3] along axis 1, output axis 1 */
    body = fresh(17);
    m = fresh(17);
    static const int64_t ax1[] = {1};
    input(&body, "st", KILN_DTYPE_F32, NULL);
    input(&body, "x", KILN_DTYPE_F32, NULL);
    end_node(&body, node("Identity", "st", "st2"), NULL);
    end_node(&body, node("Relu", "x", "y"), NULL);
    output(&body, "st2");
    output(&body, "y");
    input(&m, "S0", KILN_DTYPE_F32, "2");
    input(&m, "X", KILN_DTYPE_F32, "N,T,3");
    n = node("Scan", "S0,X", "SF,Y");
    at_i(n, "num_scan_inputs", 1);
    at_ints(n, "scan_input_axes", 1, ax1);
    at_ints(n, "scan_output_axes", 1, ax1);
    at_g(n, "body", &body);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "SF", "float32[2]");
    EXPECT_TYPE(&r, "Y", "float32[N,T,3]");
    done(&r);
}

/* Inputs given as constants (or shape arithmetic) give exact sizes. */
static void test_value_inputs(void)
{
    struct model m = fresh(18);
    struct run r;
    static const int64_t ten[] = {10}, four[] = {4}, mel[] = {8, 16, 8000}, os[] = {1, 2, 9, 9};
    static const int64_t k2[] = {2, 2}, s2[] = {2, 2};
    init_i64(&m, "ten", -1, ten);
    end_node(&m, node("HannWindow", "ten", "win"), NULL);
    struct pb *n = node("BlackmanWindow", "ten", "winD");
    at_i(n, "output_datatype", KILN_DTYPE_F64);
    end_node(&m, n, NULL);
    init_i64(&m, "nmel", -1, mel);
    init_i64(&m, "dftl", -1, mel + 1);
    init_i64(&m, "rate", -1, mel + 2);
    input(&m, "lo", KILN_DTYPE_F32, "");
    end_node(&m, node("MelWeightMatrix", "nmel,dftl,rate,lo,lo", "mel"), NULL);
    input(&m, "sig", KILN_DTYPE_F32, "B,T,1");
    init_i64(&m, "step", -1, four);
    end_node(&m, node("STFT", "sig,step,,dftl", "spec"), NULL);
    /* TopK with k from shape arithmetic: the size of X's dim 1, a symbol */
    input(&m, "X", KILN_DTYPE_F32, "N,C,W");
    n = node("Shape", "X", "k");
    at_i(n, "start", 1);
    at_i(n, "end", 2);
    end_node(&m, n, NULL);
    n = node("TopK", "X,k", "tv,ti");
    at_i(n, "axis", 2);
    end_node(&m, n, NULL);
    input(&m, "U", KILN_DTYPE_F32, "1,2,4,4");
    input(&m, "I", KILN_DTYPE_I64, "1,2,4,4");
    init_i64(&m, "os", 4, os);
    n = node("MaxUnpool", "U,I,os", "un");
    at_ints(n, "kernel_shape", 2, k2);
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    n = node("MaxUnpool", "U,I", "und");
    at_ints(n, "kernel_shape", 2, k2);
    at_ints(n, "strides", 2, s2);
    end_node(&m, n, NULL);
    end_node(&m, node("CumSum", "X,ten", "cs"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "win", "float32[10]");
    EXPECT_TYPE(&r, "winD", "float64[10]");
    EXPECT_TYPE(&r, "mel", "float32[9,8]");
    EXPECT_TYPE(&r, "spec", "float32[B,(T-16)/4+1,9,2]");
    EXPECT_TYPE(&r, "tv", "float32[N,C,C]");
    EXPECT_TYPE(&r, "ti", "int64[N,C,C]");
    EXPECT_TYPE(&r, "un", "float32[1,2,9,9]");
    EXPECT_TYPE(&r, "und", "float32[1,2,8,8]");
    EXPECT_TYPE(&r, "cs", "float32[N,C,W]");
    done(&r);
}

static void test_more_nn(void)
{
    struct model m = fresh(27);
    struct run r;
    input(&m, "q", KILN_DTYPE_F32, "B,T,64");
    input(&m, "k", KILN_DTYPE_F32, "B,T,32");
    input(&m, "v", KILN_DTYPE_F32, "B,T,48");
    struct pb *n = node("LinearAttention", "q,k,v", "o,st");
    at_i(n, "q_num_heads", 4);
    at_i(n, "kv_num_heads", 2);
    at_s(n, "update_rule", "linear");
    end_node(&m, n, NULL);
    input(&m, "x", KILN_DTYPE_F16, "B,C,L");
    input(&m, "w", KILN_DTYPE_F16, "C,1,4");
    end_node(&m, node("CausalConvWithState", "x,w", "y,ps"), NULL);
    input(&m, "col", KILN_DTYPE_F32, "N,12,L");
    static const int64_t img[] = {5, 5}, blk[] = {2, 3};
    init_i64(&m, "img", 2, img);
    init_i64(&m, "blk", 2, blk);
    end_node(&m, node("Col2Im", "col,img,blk", "im"), NULL);
    input(&m, "X4", KILN_DTYPE_F32, "N,3,H,W");
    input(&m, "W4", KILN_DTYPE_F32, "8,3,3,3");
    input(&m, "off", KILN_DTYPE_F32, "N,18,H,W");
    static const int64_t p1[] = {1, 1, 1, 1};
    n = node("DeformConv", "X4,W4,off", "dc");
    at_ints(n, "pads", 4, p1);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "o", "float32[B,T,96]");
    EXPECT_TYPE(&r, "st", "float32[B,2,16,24]");
    EXPECT_TYPE(&r, "y", "float16[B,C,L]");
    EXPECT_TYPE(&r, "ps", "float16[B,C,3]");
    EXPECT_TYPE(&r, "im", "float32[N,2,5,5]");
    EXPECT_TYPE(&r, "dc", "float32[N,8,H,W]");
    done(&r);
}

static void test_more_ml(void)
{
    struct model m = fresh(17);
    m.ml_opset = 3;
    struct run r;
    static const int64_t cls[] = {0, 1, 2}, vpc[] = {2, 1, 1}, ids[] = {0, 0};
    static const float coef[] = {1, 2, 3, 4, 5, 6, 7, 8}, sv[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const float rho[] = {0, 0, 0};
    input(&m, "X", KILN_DTYPE_F32, "N,2");
    struct pb *n = node("SVMClassifier", "X", "l,p");
    at_ints(n, "classlabels_ints", 3, cls);
    at_ints(n, "vectors_per_class", 3, vpc);
    at_floats(n, "support_vectors", 8, sv);
    at_floats(n, "coefficients", 8, coef);
    at_floats(n, "rho", 3, rho);
    end_node(&m, n, "ai.onnx.ml");
    n = node("TreeEnsembleClassifier", "X", "tl,tp");
    at_ints(n, "classlabels_int64s", 2, cls);
    at_ints(n, "class_ids", 2, ids);
    end_node(&m, n, "ai.onnx.ml");
    n = node("TreeEnsembleRegressor", "X", "tr");
    at_i(n, "n_targets", 3);
    end_node(&m, n, "ai.onnx.ml");
    input(&m, "A", KILN_DTYPE_F32, "N,3");
    static const int64_t dims[] = {2, 3};
    n = node("FeatureVectorizer", "X,A", "fv");
    at_ints(n, "inputdimensions", 2, dims);
    end_node(&m, n, "ai.onnx.ml");
    input(&m, "ix", KILN_DTYPE_I64, "4");
    end_node(&m, node("ArrayFeatureExtractor", "A,ix", "afe"), "ai.onnx.ml");
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "l", "int64[N]");
    EXPECT_TYPE(&r, "p", "float32[N,3]"); /* one score per class pair */
    EXPECT_TYPE(&r, "tl", "int64[N]");
    EXPECT_TYPE(&r, "tp", "float32[N,2]");
    EXPECT_TYPE(&r, "tr", "float32[N,3]");
    EXPECT_TYPE(&r, "fv", "float32[N,5]");
    EXPECT_TYPE(&r, "afe", "float32[N,4]");
    done(&r);
}

/* ------------------------------------------------------------------ ONNX node tests */

/* Infers <node>/<cas>/model.onnx ignoring its declared value types and checks output 0. */
static void check_node_case(const char *cas, const char *want)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/node/%s/model.onnx", onnx_tests_dir(), cas);
    kiln_model *km = NULL;
    kiln_err err = {0};
    if (kiln_model_load_file(path, &km, &err) != KILN_OK) {
        printf("skip %s: %s\n", cas, err.msg);
        return;
    }
    struct kiln_model *m = (struct kiln_model *)km;
    size_t np = 0;
    if (kiln_infer_model(m, NULL, NULL, &np, &err) == KILN_OK) {
        const struct kiln_vtype *v = kiln_infer_lookup(m->graph, m->graph->outputs[0].name);
        char buf[256] = "(none)";
        if (v) kiln_vtype_str(v, buf, sizeof buf);
        CHECK(strcmp(buf, want) == 0, "%s: inferred %s, expected %s", cas, buf, want);
        CHECK(np == 0, "%s: %zu problems", cas, np);
    } else {
        CHECK(0, "%s: inference fails: %s", cas, err.msg);
    }
    kiln_model_free(km);
}

static void test_node_cases(void)
{
    check_node_case("test_conv_with_strides_and_asymmetric_padding", "float32[1,1,4,2]");
    check_node_case("test_convtranspose_pads", "float32[1,2,7,3]");
    check_node_case("test_gemm_all_attributes", "float32[3,5]");
    check_node_case("test_scan9_sum", "float32[2]");
    check_node_case("test_maxpool_2d_ceil_output_size_reduce_by_one", "float32[1,1,1,1]");
    check_node_case("test_lstm_batchwise", "float32[3,1,1,7]");
    check_node_case("test_einsum_batch_matmul", "float64[5,2,4]");
    check_node_case("test_sequence_map_identity_1_sequence", "seq(float32[N])");
}

int main(void)
{
    test_registry();
    test_conv();
    test_pool();
    test_matmul_gemm();
    test_rnn();
    test_attention();
    test_vision_scan();
    test_ml();
    test_sequence();
    test_if();
    test_loop_scan();
    test_value_inputs();
    test_more_nn();
    test_more_ml();
    test_node_cases();
    return test_summary("test_infer_rules_c");
}
