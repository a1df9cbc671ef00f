/* test_infer_rules_b.c: the shape-inference rules of the elementwise, reduce, norm, quant and
 * misc families (src/infer/shape_{elementwise,reduce,norm,quant,misc}.c).
 *
 * Each case is a small model written as ModelProto bytes (the builder of support/test_model.h):
 * graph inputs with symbolic dims, int64 initializers, one or a few nodes. It is loaded with
 * kiln_model_load_buffer, inferred with kiln_infer_model, and the inferred type of a value
 * is compared as text (kiln_vtype_str: "float32[N,3,4]", "?" for an unknown dim,
 * " (data-dependent)" appended when it is). Graph outputs are declared without types, so
 * what is compared is what the rules inferred. Contradictions must come out as problems.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "kiln.h"
#include "test_model.h"
#include "test_support.h"

/* Values as text: "[2*N,3]" from vals. */
static const char *vals_of(const struct run *r, const char *name)
{
    static char buf[512];
    const struct kiln_vtype *v = kiln_infer_lookup(((struct kiln_model *)r->km)->graph, name);
    if (!v || v->n_vals < 0) return "(none)";
    size_t l = 0;
    buf[l++] = '[';
    for (int i = 0; i < v->n_vals && l < sizeof buf - 40; i++) {
        const struct kiln_dim d = v->vals[i];
        int64_t x;
        if (kiln_dim_int_value(d, &x))
            l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%lld", i ? "," : "", (long long)x);
        else
            l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%s", i ? "," : "", d.param ? d.param : "?");
    }
    snprintf(buf + l, sizeof buf - l, "]");
    return buf;
}

/* ------------------------------------------------------------------ elementwise */

static void test_broadcast(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "A", KILN_DTYPE_F32, "N,1,4");
    input(&m, "B", KILN_DTYPE_F32, "3,1");
    end_node(&m, node("Add", "A,B", "C"), NULL);
    end_node(&m, node("Equal", "A,B", "E"), NULL);
    end_node(&m, node("Relu", "C", "R"), NULL);
    end_node(&m, node("IsNaN", "C", "I"), NULL);
    end_node(&m, node("Pow", "A,P", "W"), NULL);
    input(&m, "P", KILN_DTYPE_I64, "");
    output(&m, "R");
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "C", "float32[N,3,4]");
    EXPECT_TYPE(&r, "E", "bool[N,3,4]");
    EXPECT_TYPE(&r, "R", "float32[N,3,4]");
    EXPECT_TYPE(&r, "I", "bool[N,3,4]");
    EXPECT_TYPE(&r, "W", "float32[N,1,4]");
    done(&r);

    /* symbol against symbol, 1 against a symbol, and a mismatch */
    m = fresh(17);
    input(&m, "A", KILN_DTYPE_I32, "B,S,1");
    input(&m, "B", KILN_DTYPE_I32, "S,H");
    end_node(&m, node("Mul", "A,B", "C"), NULL);
    input(&m, "X", KILN_DTYPE_F32, "2,3");
    input(&m, "Y", KILN_DTYPE_F32, "4,3");
    end_node(&m, node("Sub", "X,Y", "Z"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "C", "int32[B,S,H]");
    EXPECT_PROBLEM(&r, "broadcast");
    done(&r);

    /* mixed element types are a problem; Pow's exponent may differ */
    m = fresh(17);
    input(&m, "A", KILN_DTYPE_F32, "2");
    input(&m, "B", KILN_DTYPE_F64, "2");
    end_node(&m, node("Add", "A,B", "C"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_PROBLEM(&r, "element types");
    done(&r);

    /* opset 6: B follows A (broadcast attribute) */
    m = fresh(6);
    input(&m, "A", KILN_DTYPE_F32, "2,3,4,5");
    input(&m, "B", KILN_DTYPE_F32, "3,4");
    struct pb *n = node("Add", "A,B", "C");
    at_i(n, "broadcast", 1);
    at_i(n, "axis", 1);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "C", "float32[2,3,4,5]");
    done(&r);
}

static void test_variadic_and_misc_unary(void)
{
    struct model m = fresh(13);
    struct run r;
    input(&m, "A", KILN_DTYPE_F32, "N,1");
    input(&m, "B", KILN_DTYPE_F32, "5");
    input(&m, "C", KILN_DTYPE_F32, "1,1,1");
    end_node(&m, node("Sum", "A,B,C", "S"), NULL);
    end_node(&m, node("Max", "A,B", "M"), NULL);
    end_node(&m, node("Mean", "A,B,C", "E"), NULL);
    input(&m, "lo", KILN_DTYPE_F32, "");
    end_node(&m, node("Clip", "A,lo,", "K"), NULL);
    input(&m, "slope", KILN_DTYPE_F32, "1");
    end_node(&m, node("PRelu", "A,slope", "P"), NULL);
    end_node(&m, node("Identity", "A", "I"), NULL);
    input(&m, "U", KILN_DTYPE_F32, NULL);
    end_node(&m, node("Sigmoid", "U", "US"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "S", "float32[1,N,5]");
    EXPECT_TYPE(&r, "M", "float32[N,5]");
    EXPECT_TYPE(&r, "E", "float32[1,N,5]");
    EXPECT_TYPE(&r, "K", "float32[N,1]");
    EXPECT_TYPE(&r, "P", "float32[N,1]");
    EXPECT_TYPE(&r, "I", "float32[N,1]");
    EXPECT_TYPE(&r, "US", "float32");
    done(&r);
}

static void test_cast(void)
{
    struct model m = fresh(21);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,4");
    input(&m, "L", KILN_DTYPE_F16, "1");
    struct pb *n = node("Cast", "X", "Y");
    at_i(n, "to", KILN_DTYPE_I8);
    end_node(&m, n, NULL);
    end_node(&m, node("CastLike", "X,L", "Z"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "int8[N,4]");
    EXPECT_TYPE(&r, "Z", "float16[N,4]");
    done(&r);

    m = fresh(1); /* opset 1: `to` is a type name */
    input(&m, "X", KILN_DTYPE_F32, "N");
    n = node("Cast", "X", "Y");
    at_s(n, "to", "DOUBLE");
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "float64[N]");
    done(&r);
}

/* Shape arithmetic: Shape -> Mul/Add/Div/Cast carries the elements as dims. */
static void test_vals(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,6");
    static const int64_t two[] = {2, 1}, half[] = {2};
    init_i64(&m, "two", 2, two);
    init_i64(&m, "half", 1, half);
    end_node(&m, node("Shape", "X", "s"), NULL);
    end_node(&m, node("Mul", "s,two", "m"), NULL);
    end_node(&m, node("Add", "m,s", "a"), NULL);
    end_node(&m, node("Div", "s,half", "d"), NULL);
    end_node(&m, node("Neg", "half", "ng"), NULL);
    static const int64_t minus1[] = {-1};
    init_i64(&m, "minus1", 1, minus1);
    end_node(&m, node("Add", "s,minus1", "dec"), NULL);
    end_node(&m, node("Sub", "s,s", "zero"), NULL);
    end_node(&m, node("Max", "s,minus1", "mx"), NULL);
    struct pb *rp = node("ReduceProd", "s", "numel");
    at_i(rp, "keepdims", 0);
    end_node(&m, rp, NULL);
    end_node(&m, node("ReduceSum", "s", "total"), NULL);
    struct pb *n = node("Cast", "a", "c");
    at_i(n, "to", KILN_DTYPE_I32);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "m", "int64[2]");
    const char *v = vals_of(&r, "m");
    CHECK(strcmp(v, "[2*N,6]") == 0, "vals of m: %s", v);
    v = vals_of(&r, "a");
    CHECK(strcmp(v, "[3*N,12]") == 0, "vals of a: %s", v);
    v = vals_of(&r, "c");
    CHECK(strcmp(v, "[3*N,12]") == 0, "vals of c: %s", v);
    v = vals_of(&r, "d");
    CHECK(strcmp(v, "[N/2,3]") == 0 || strcmp(v, "[(N)/2,3]") == 0, "vals of d: %s", v);
    v = vals_of(&r, "ng");
    CHECK(strcmp(v, "[-2]") == 0, "vals of ng: %s", v);
    v = vals_of(&r, "dec");
    CHECK(strcmp(v, "[N-1,5]") == 0, "vals of dec: %s", v);
    v = vals_of(&r, "zero");
    CHECK(strcmp(v, "[0,0]") == 0, "vals of zero: %s", v);
    v = vals_of(&r, "mx");
    CHECK(strcmp(v, "[N,6]") == 0, "vals of mx: %s", v);
    EXPECT_TYPE(&r, "numel", "int64[]");
    v = vals_of(&r, "numel");
    CHECK(strcmp(v, "[6*N]") == 0, "vals of numel: %s", v);
    EXPECT_TYPE(&r, "total", "int64[1]");
    v = vals_of(&r, "total");
    CHECK(strcmp(v, "[N+6]") == 0, "vals of total: %s", v);
    done(&r);
}

static void test_bitcast(void)
{
    struct model m = fresh(26);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,3");
    input(&m, "W", KILN_DTYPE_U8, "N,8");
    struct pb *n = node("BitCast", "X", "Y");
    at_i(n, "to", KILN_DTYPE_U8);
    end_node(&m, n, NULL);
    n = node("BitCast", "W", "Z");
    at_i(n, "to", KILN_DTYPE_F64);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "Y", "uint8[N,3,4]");
    EXPECT_TYPE(&r, "Z", "float64[N]");
    done(&r);
}

/* ------------------------------------------------------------------ reduce */

static void test_reduce(void)
{
    struct model m = fresh(18);
    struct run r;
    static const int64_t ax[] = {-1}, ax2[] = {0, 2};
    input(&m, "X", KILN_DTYPE_F32, "N,S,8");
    init_i64(&m, "ax", 1, ax);
    init_i64(&m, "ax2", 2, ax2);
    end_node(&m, node("ReduceMean", "X,ax", "A"), NULL);
    struct pb *n = node("ReduceMax", "X,ax2", "B");
    at_i(n, "keepdims", 0);
    end_node(&m, n, NULL);
    end_node(&m, node("ReduceSum", "X", "C"), NULL); /* no axes: all */
    n = node("ReduceL2", "X", "D");
    at_i(n, "noop_with_empty_axes", 1);
    end_node(&m, n, NULL);
    input(&m, "dyn", KILN_DTYPE_I64, "1");
    end_node(&m, node("ReduceProd", "X,dyn", "E"), NULL); /* axes unknown, keepdims */
    n = node("ReduceMin", "X,dyn", "F");
    at_i(n, "keepdims", 0);
    end_node(&m, n, NULL);
    n = node("ArgMax", "X", "G");
    at_i(n, "axis", 1);
    at_i(n, "keepdims", 0);
    end_node(&m, n, NULL);
    end_node(&m, node("ArgMin", "X", "H"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "A", "float32[N,S,1]");
    EXPECT_TYPE(&r, "B", "float32[S]");
    EXPECT_TYPE(&r, "C", "float32[1,1,1]");
    EXPECT_TYPE(&r, "D", "float32[N,S,8]");
    EXPECT_TYPE(&r, "E", "float32[?,?,?]");
    EXPECT_TYPE(&r, "F", "float32[?,?]");
    EXPECT_TYPE(&r, "G", "int64[N,8]");
    EXPECT_TYPE(&r, "H", "int64[1,S,8]");
    done(&r);

    /* opset 11: axes as an attribute; an axis out of range is a problem */
    m = fresh(11);
    input(&m, "X", KILN_DTYPE_I32, "N,S");
    static const int64_t a1[] = {1}, bad[] = {2};
    n = node("ReduceSum", "X", "A");
    at_ints(n, "axes", 1, a1);
    end_node(&m, n, NULL);
    n = node("ReduceSum", "X", "B");
    at_ints(n, "axes", 1, bad);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "A", "int32[N,1]");
    CHECK(r.n_problems == 1, "expected one problem (axis 2 of rank 2); got %s", r.problems);
    done(&r);
}

/* ------------------------------------------------------------------ norm */

static void test_norm(void)
{
    struct model m = fresh(17);
    struct run r;
    input(&m, "X", KILN_DTYPE_F16, "N,S,D");
    input(&m, "W", KILN_DTYPE_F16, "D");
    struct pb *n = node("LayerNormalization", "X,W,W", "Y,Mean,Inv");
    at_i(n, "axis", -1);
    end_node(&m, n, NULL);
    end_node(&m, node("Softmax", "X", "SM"), NULL);
    input(&m, "C", KILN_DTYPE_F32, "C");
    input(&m, "I", KILN_DTYPE_F32, "N,C,H,W");
    n = node("BatchNormalization", "I,C,C,C,C", "BY,RM,RV");
    at_i(n, "training_mode", 1);
    end_node(&m, n, NULL);
    end_node(&m, node("Dropout", "I", "DY,DM"), NULL);
    input(&m, "lbl", KILN_DTYPE_I64, "N,H,W");
    n = node("SoftmaxCrossEntropyLoss", "I,lbl", "L,LP");
    at_s(n, "reduction", "none");
    end_node(&m, n, NULL);
    end_node(&m, node("NegativeLogLikelihoodLoss", "I,lbl", "NL"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Y", "float16[N,S,D]");
    EXPECT_TYPE(&r, "Mean", "float32[N,S,1]");
    EXPECT_TYPE(&r, "Inv", "float32[N,S,1]");
    EXPECT_TYPE(&r, "SM", "float16[N,S,D]");
    EXPECT_TYPE(&r, "BY", "float32[N,C,H,W]");
    EXPECT_TYPE(&r, "RM", "float32[C]");
    EXPECT_TYPE(&r, "DM", "bool[N,C,H,W]");
    EXPECT_TYPE(&r, "L", "float32[N,H,W]");
    EXPECT_TYPE(&r, "LP", "float32[N,C,H,W]");
    EXPECT_TYPE(&r, "NL", "float32[]");
    done(&r);
}

/* ------------------------------------------------------------------ quant */

static void test_quant(void)
{
    struct model m = fresh(21);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,K");
    input(&m, "s", KILN_DTYPE_F32, "");
    input(&m, "zp", KILN_DTYPE_I8, "");
    end_node(&m, node("QuantizeLinear", "X,s,zp", "Q"), NULL);
    end_node(&m, node("QuantizeLinear", "X,s", "Q8"), NULL);
    struct pb *n = node("QuantizeLinear", "X,s", "Q4");
    at_i(n, "output_dtype", KILN_DTYPE_I4);
    end_node(&m, n, NULL);
    input(&m, "hs", KILN_DTYPE_F16, "");
    end_node(&m, node("DequantizeLinear", "Q,hs,zp", "D"), NULL);
    end_node(&m, node("DynamicQuantizeLinear", "X", "DY,DS,DZ"), NULL);
    input(&m, "A", KILN_DTYPE_U8, "B,M,K");
    input(&m, "W", KILN_DTYPE_I8, "K,7");
    end_node(&m, node("MatMulInteger", "A,W", "MI"), NULL);
    input(&m, "yz", KILN_DTYPE_U8, "");
    end_node(&m, node("QLinearMatMul", "A,s,yz,W,s,zp,s,yz", "QM"), NULL);
    input(&m, "img", KILN_DTYPE_U8, "N,3,H,32");
    input(&m, "k", KILN_DTYPE_U8, "8,3,3,3");
    n = node("ConvInteger", "img,k", "CI");
    static const int64_t pads[] = {1, 1, 1, 1}, strides[] = {2, 2};
    at_ints(n, "pads", 4, pads);
    at_ints(n, "strides", 2, strides);
    end_node(&m, n, NULL);
    end_node(&m, node("QLinearConv", "img,s,yz,k,s,yz,s,yz", "QC"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "Q", "int8[N,K]");
    EXPECT_TYPE(&r, "Q8", "uint8[N,K]");
    EXPECT_TYPE(&r, "Q4", "int4[N,K]");
    EXPECT_TYPE(&r, "D", "float16[N,K]");
    EXPECT_TYPE(&r, "DY", "uint8[N,K]");
    EXPECT_TYPE(&r, "DS", "float32[]");
    EXPECT_TYPE(&r, "DZ", "uint8[]");
    EXPECT_TYPE(&r, "MI", "int32[B,M,7]");
    EXPECT_TYPE(&r, "QM", "uint8[B,M,7]");
    const char *ci = type_of(&r, "CI");
    CHECK(strncmp(ci, "int32[N,8,", 10) == 0 && strstr(ci, ",16]"), "CI: %s", ci);
    const char *qc = type_of(&r, "QC");
    CHECK(strncmp(qc, "uint8[N,8,", 10) == 0 && strstr(qc, ",30]"), "QC: %s", qc);
    done(&r);
}

/* ------------------------------------------------------------------ misc */

static void test_misc(void)
{
    struct model m = fresh(22);
    struct run r;
    input(&m, "boxes", KILN_DTYPE_F32, "1,B,4");
    input(&m, "scores", KILN_DTYPE_F32, "1,1,B");
    end_node(&m, node("NonMaxSuppression", "boxes,scores", "sel"), NULL);
    struct pb *n = node("RandomNormal", "", "rn");
    static const int64_t shape[] = {2, 5};
    at_ints(n, "shape", 2, shape);
    at_i(n, "dtype", KILN_DTYPE_F64);
    end_node(&m, n, NULL);
    input(&m, "p", KILN_DTYPE_F32, "N");
    n = node("Bernoulli", "p", "bern");
    at_i(n, "dtype", KILN_DTYPE_F64);
    end_node(&m, n, NULL);
    end_node(&m, node("RandomUniformLike", "p", "rul"), NULL);
    input(&m, "logits", KILN_DTYPE_F32, "N,10");
    n = node("Multinomial", "logits", "mult");
    at_i(n, "sample_size", 3);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    const char *sel = type_of(&r, "sel");
    CHECK(strncmp(sel, "int64[NonMaxSuppression_", 24) == 0 && strstr(sel, ",3] (data-dependent)"), "sel: %s",
          sel);
    EXPECT_TYPE(&r, "rn", "float64[2,5]");
    EXPECT_TYPE(&r, "bern", "float64[N]");
    EXPECT_TYPE(&r, "rul", "float32[N]");
    EXPECT_TYPE(&r, "mult", "int32[N,3]");
    done(&r);

    m = fresh(20);
    input(&m, "S", KILN_DTYPE_STRING, "N,2");
    input(&m, "T", KILN_DTYPE_STRING, "2");
    end_node(&m, node("StringConcat", "S,T", "cat"), NULL);
    end_node(&m, node("StringSplit", "S", "parts,count"), NULL);
    n = node("RegexFullMatch", "S", "match");
    at_s(n, "pattern", "a.*");
    end_node(&m, n, NULL);
    input(&m, "words", KILN_DTYPE_STRING, "1,C");
    end_node(&m, node("StringNormalizer", "words", "same"), NULL);
    n = node("StringNormalizer", "words", "fewer");
    static const char *const stop[] = {"the"};
    at_strs(n, "stopwords", 1, stop);
    end_node(&m, n, NULL);
    input(&m, "ids", KILN_DTYPE_I64, "N,C");
    n = node("TfIdfVectorizer", "ids", "tf");
    static const int64_t idx[] = {0, 1, 4}, counts[] = {0, 2}, pool[] = {1, 2, 3, 4};
    at_ints(n, "ngram_indexes", 3, idx);
    at_ints(n, "ngram_counts", 2, counts);
    at_ints(n, "pool_int64s", 4, pool);
    at_i(n, "min_gram_length", 1);
    at_i(n, "max_gram_length", 2);
    at_i(n, "max_skip_count", 0);
    at_s(n, "mode", "TF");
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "cat", "string[N,2]");
    const char *parts = type_of(&r, "parts");
    CHECK(strncmp(parts, "string[N,2,StringSplit_", 23) == 0 && strstr(parts, "(data-dependent)"),
          "parts: %s", parts);
    EXPECT_TYPE(&r, "count", "int64[N,2]");
    EXPECT_TYPE(&r, "match", "bool[N,2]");
    EXPECT_TYPE(&r, "same", "string[1,C]");
    const char *fewer = type_of(&r, "fewer");
    CHECK(strncmp(fewer, "string[1,StringNormalizer_", 26) == 0, "fewer: %s", fewer);
    EXPECT_TYPE(&r, "tf", "float32[N,5]");
    done(&r);
}

static void test_training(void)
{
    struct model m = fresh(18);
    struct run r;
    m.training_opset = 1;
    input(&m, "R", KILN_DTYPE_F32, "");
    input(&m, "T", KILN_DTYPE_I64, "");
    input(&m, "X1", KILN_DTYPE_F32, "N,3");
    input(&m, "X2", KILN_DTYPE_F64, "4");
    input(&m, "G1", KILN_DTYPE_F32, "N,3");
    input(&m, "G2", KILN_DTYPE_F64, "4");
    input(&m, "V1", KILN_DTYPE_F32, "N,3");
    input(&m, "V2", KILN_DTYPE_F64, "4");
    input(&m, "H1", KILN_DTYPE_F32, "N,3");
    input(&m, "H2", KILN_DTYPE_F64, "4");
    end_node(&m, node("Adam", "R,T,X1,X2,G1,G2,V1,V2,H1,H2", "X1n,X2n,V1n,V2n,H1n,H2n"),
             "ai.onnx.preview.training");
    end_node(&m, node("Adagrad", "R,T,X1,G1,H1", "aX,aH"), "ai.onnx.preview.training");
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "X1n", "float32[N,3]");
    EXPECT_TYPE(&r, "X2n", "float64[4]");
    EXPECT_TYPE(&r, "V2n", "float64[4]");
    EXPECT_TYPE(&r, "H1n", "float32[N,3]");
    EXPECT_TYPE(&r, "aH", "float32[N,3]");
    done(&r);
}

/* Contradictions come out as problems; unknown ranks stay unknown; old versions. */
static void test_problems_and_old_versions(void)
{
    struct model m = fresh(13);
    struct run r;
    input(&m, "X", KILN_DTYPE_F32, "N,C,4");
    input(&m, "bad_t", KILN_DTYPE_I64, "N,5");
    end_node(&m, node("NegativeLogLikelihoodLoss", "X,bad_t", "L"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_PROBLEM(&r, "target");
    done(&r);

    m = fresh(13);
    input(&m, "X", KILN_DTYPE_F32, "N,4");
    input(&m, "lo", KILN_DTYPE_F64, "");
    end_node(&m, node("Clip", "X,lo", "Y"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_PROBLEM(&r, "input 1");
    done(&r);

    m = fresh(21);
    input(&m, "q", KILN_DTYPE_U8, "N");
    input(&m, "s", KILN_DTYPE_F32, "");
    input(&m, "zp", KILN_DTYPE_I8, "");
    end_node(&m, node("DequantizeLinear", "q,s,zp", "Y"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_PROBLEM(&r, "zero point");
    done(&r);

    m = fresh(10);
    input(&m, "A", KILN_DTYPE_U8, "M,K");
    input(&m, "B", KILN_DTYPE_U8, "5,7");
    input(&m, "C", KILN_DTYPE_U8, "4,7");
    end_node(&m, node("MatMulInteger", "B,C", "Y"), NULL);
    end_node(&m, node("MatMulInteger", "A,C", "Z"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_PROBLEM(&r, "inner dims");
    EXPECT_TYPE(&r, "Z", "int32[M,7]");
    done(&r);

    m = fresh(21);
    input(&m, "X", KILN_DTYPE_F32, "N,6,8");
    input(&m, "c", KILN_DTYPE_F32, "6");
    input(&m, "c5", KILN_DTYPE_F32, "5");
    struct pb *gn = node("GroupNormalization", "X,c,c", "G");
    at_i(gn, "num_groups", 3);
    end_node(&m, gn, NULL);
    gn = node("GroupNormalization", "X,c,c", "G4");
    at_i(gn, "num_groups", 4);
    end_node(&m, gn, NULL);
    end_node(&m, node("InstanceNormalization", "X,c5,c5", "I"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_TYPE(&r, "G", "float32[N,6,8]");
    EXPECT_PROBLEM(&r, "num_groups 4");
    EXPECT_PROBLEM(&r, "5 values for 6 channels");
    CHECK(r.n_problems == 2, "expected 2 problems; got %s", r.problems);
    done(&r);

    /* unknown rank in, unknown rank out (element type kept) */
    m = fresh(18);
    input(&m, "U", KILN_DTYPE_F32, NULL);
    input(&m, "V", KILN_DTYPE_F32, "3");
    end_node(&m, node("Add", "U,V", "A"), NULL);
    end_node(&m, node("ReduceSum", "U", "R"), NULL);
    end_node(&m, node("ArgMax", "U", "G"), NULL);
    end_node(&m, node("Less", "U,V", "L"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "A", "float32");
    EXPECT_TYPE(&r, "R", "float32");
    EXPECT_TYPE(&r, "G", "int64");
    EXPECT_TYPE(&r, "L", "bool");
    done(&r);

    /* opset 7: Dropout's mask has X's type; opset 9 BatchNormalization's four statistics;
     * opset 11 Softmax takes axis = rank (coerced to 2-D) without complaint */
    m = fresh(9);
    input(&m, "X", KILN_DTYPE_F64, "N,C,8");
    input(&m, "c", KILN_DTYPE_F64, "C");
    end_node(&m, node("Dropout", "X", "DY,DM"), NULL);
    end_node(&m, node("BatchNormalization", "X,c,c,c,c", "Y,M,V,SM,SV"), NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "DM", "float64[N,C,8]");
    EXPECT_TYPE(&r, "SV", "float64[C]");
    done(&r);
    m = fresh(11);
    input(&m, "X", KILN_DTYPE_F32, "N,8");
    struct pb *n = node("Softmax", "X", "S");
    at_i(n, "axis", 2);
    end_node(&m, n, NULL);
    if (!run(&m, &r)) return;
    EXPECT_CLEAN(&r);
    EXPECT_TYPE(&r, "S", "float32[N,8]");
    done(&r);
}

/* Every rule of these families is registered for the versions the CPU kernels run. */
static void test_registry(void)
{
    static const struct {
        const char *domain, *op;
        int version;
    } ops[] = {
        {"", "Abs", 13},
        {"", "Gelu", 20},
        {"", "Swish", 24},
        {"", "Add", 14},
        {"", "BitShift", 11},
        {"", "Cast", 25},
        {"", "CastLike", 21},
        {"", "ReduceMax", 20},
        {"", "ArgMin", 13},
        {"", "Softmax", 13},
        {"", "LayerNormalization", 17},
        {"", "RMSNormalization", 23},
        {"", "QuantizeLinear", 25},
        {"", "DequantizeLinear", 25},
        {"", "QLinearMatMul", 21},
        {"", "NonMaxSuppression", 11},
        {"", "BitCast", 26},
        {"", "RandomNormal", 22},
        {"", "Multinomial", 22},
        {"", "TfIdfVectorizer", 9},
        {"", "StringSplit", 20},
        {"ai.onnx.preview.training", "Adam", 1},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        CHECK(kiln_infer_find_op(ops[i].domain, ops[i].op, ops[i].version) != NULL, "no rule for %s-%d",
              ops[i].op, ops[i].version);
}

int main(void)
{
    test_registry();
    test_broadcast();
    test_variadic_and_misc_unary();
    test_cast();
    test_vals();
    test_bitcast();
    test_reduce();
    test_norm();
    test_quant();
    test_misc();
    test_training();
    test_problems_and_old_versions();
    return test_summary("test_infer_rules_b");
}
