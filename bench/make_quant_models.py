#!/usr/bin/python3
"""bench/make_quant_models.py: dynamically quantized benchmark models, written the way
onnxruntime's quantize_dynamic writes them, with Debian's python3-onnx only (no onnxruntime
in Python here):

    /usr/bin/python3 bench/make_quant_models.py [--out DIR]

Writes into DIR (default build/bench-models-int8, which git ignores):

  mlp_int8.onnx   a BERT-sized feed-forward stack: input "x" float[128, 768] (128 tokens),
                  4 blocks of 768 -> 3072 -> 768 (Relu between), every MatMul quantized:
                  DynamicQuantizeLinear on the activation, MatMulInteger with int8 weights
                  (zero point 0, as quantize_dynamic's default QInt8), Cast to float, Mul by
                  the product of the two scales, Add bias.
  mlp_u8_int8.onnx  the same with uint8 weights and a non-zero weight zero point (QUInt8).
  conv_int8.onnx  a ConvInteger CNN block: input "x" float[1, 64, 56, 56], 3 layers of 3x3
                  64 -> 64 convolutions (pads 1) with uint8 weights and their zero point,
                  Cast, Mul by the scales, Add bias [64, 1, 1], Relu.

Weights are random (fixed seed); the scales are what quantize_dynamic computes from them.

And dynamic quantizations of the model set (bench/make_models.py; --models DIR, default
build/bench-models), the graph rewritten exactly as onnxruntime.quantization.quantize_dynamic
(ONNXQuantizer in IntegerOps mode) rewrites it with its defaults (weight_type QInt8,
per_channel False, reduce_range False, MatMulConstBOnly) and the op_types_to_quantize given:

  resnet50_dynq.onnx, mobilenet_v2_dynq.onnx   op_types_to_quantize ["Conv", "MatMul"]
  bert_dynq.onnx, bert_dyn_dynq.onnx (+ .shapes)  op_types_to_quantize ["MatMul"]

And weight-only quantization as transformer exporters write it (opset 21, int4 blocks along
K; python3-onnx 1.12 has no int4, so these are written without onnx.checker):

  mlp_wo_int4.onnx       x float[1, 1, 1024] (one token, as in decoding), 4 blocks of
                         1024 -> 4096 -> 1024 (Relu between); each weight W [K, N] is
                         DequantizeLinear(W_q int4, scale float[K / 32, N], zero point int4,
                         axis 0, block_size 32) -> MatMul(x, W) (+ Add bias).
  mlp_wo_int4_m128.onnx  the same with x float[1, 128, 1024] (a prompt of 128 tokens).

quantize_dynamic's default list (every IntegerOps operator) also takes Gather (the embedding
tables, as uint8 + DequantizeLinear); the BERT files leave it out, as a MatMul-only
quantization. The rewrite, per node in graph order:
  - the float input x of a quantized node becomes DynamicQuantizeLinear(x) -> (x_quantized,
    x_scale, x_zero_point), one per tensor however many nodes read it;
  - the constant weight W (an initializer) becomes W_quantized int8 with zero point 0 and
    scale max(|W|) / 127 (symmetric, range [-127, 127], numpy's round half to even);
  - MatMul(x, W) -> MatMulInteger(xq, Wq, xzp, Wzp) -> Cast(float) -> Mul(., Mul(x_scale,
    W_scale)); MatMul whose B is not a constant stays float;
  - Conv(x, W[, b]) -> ConvInteger(xq, Wq, xzp, Wzp; Conv's attributes) -> Cast -> Mul(.,
    Mul(x_scale, W_scale)) [-> Add(., Reshape(b, [1, -1, 1, 1]))].
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, base, arr):
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(arr, nm))
        return nm

    def node(self, op, ins, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=self.name("n"), **attrs))
        return outs if n_out > 1 else outs[0]


def quantize_weights(w, signed):
    """Per-tensor weight quantization as quantize_dynamic does it (symmetric for int8,
    asymmetric min/max for uint8)."""
    if signed:
        scale = max(float(np.abs(w).max()), 1e-8) / 127.0
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        return q, np.float32(scale), np.int8(0)
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    q = np.clip(np.rint(w / scale) + zp, 0, 255).astype(np.uint8)
    return q, np.float32(scale), np.uint8(zp)


def dyn_quant_op(g, x, w, bias, signed, op, **attrs):
    """x -> DynamicQuantizeLinear -> op(x_q, W_q, x_zp, W_zp) -> Cast -> Mul(scales) -> Add."""
    q, s, zp = quantize_weights(w, signed)
    xq, xs, xz = g.node("DynamicQuantizeLinear", [x], 3)
    y = g.node(op, [xq, g.init("w_q", q), xz, g.init("w_zp", np.array(zp))], **attrs)
    yf = g.node("Cast", [y], to=TensorProto.FLOAT)
    scale = g.node("Mul", [xs, g.init("w_scale", np.array(s, dtype=np.float32))])
    return g.node("Add", [g.node("Mul", [yf, scale]), g.init("bias", bias)])


def save(g, x_shape, out_name, y, path):
    g.nodes.append(helper.make_node("Identity", [y], [out_name], name="out"))
    graph = helper.make_graph(g.nodes, os.path.basename(path)[:-5],
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, x_shape)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print("wrote", path)


def mlp(path, signed, seed):
    rng = np.random.default_rng(seed)
    g = Graph()
    x = "x"
    for _ in range(4):
        w1 = (rng.standard_normal((768, 3072)) * 0.036).astype(np.float32)
        w2 = (rng.standard_normal((3072, 768)) * 0.018).astype(np.float32)
        h = dyn_quant_op(g, x, w1, (rng.standard_normal(3072) * 0.1).astype(np.float32), signed, "MatMulInteger")
        h = g.node("Relu", [h])
        x = dyn_quant_op(g, h, w2, (rng.standard_normal(768) * 0.1).astype(np.float32), signed, "MatMulInteger")
    save(g, [128, 768], "y", x, path)


def conv(path, seed):
    rng = np.random.default_rng(seed)
    g = Graph()
    x = "x"
    for _ in range(3):
        w = (rng.standard_normal((64, 64, 3, 3)) * 0.06).astype(np.float32)
        b = (rng.standard_normal((64, 1, 1)) * 0.1).astype(np.float32)
        x = g.node("Relu", [dyn_quant_op(g, x, w, b, False, "ConvInteger", pads=[1, 1, 1, 1])])
    save(g, [1, 64, 56, 56], "y", x, path)


def ort_weight_int8(w):
    """quantize_dynamic's QInt8 weight (quant_utils.quantize_data, symmetric): float32
    arithmetic, zero point 0, values in [-127, 127]."""
    w = w.astype(np.float32)
    rmin, rmax = min(np.float32(w.min()), np.float32(0)), max(np.float32(w.max()), np.float32(0))
    absmax = np.float32(max(abs(rmin), abs(rmax)))
    scale = np.float32((absmax - (-absmax)) / np.float32(254))
    if scale == 0:
        scale = np.float32(1.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_dynamic(model, op_types):
    """The graph rewrite of ONNXQuantizer (IntegerOps, dynamic) for op_types (module doc)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes, new_inits, dql, wq = [], [], {}, {}

    def activation(x):
        if x not in dql:
            outs = [x + "_quantized", x + "_scale", x + "_zero_point"]
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [x], outs, x + "_QuantizeLinear"))
            dql[x] = outs
        return dql[x]

    def weight(name):
        if name not in wq:
            q, scale = ort_weight_int8(numpy_helper.to_array(inits[name]))
            names = [name + "_quantized", name + "_zero_point", name + "_scale"]
            new_inits.append(numpy_helper.from_array(q, names[0]))
            new_inits.append(numpy_helper.from_array(np.array(0, dtype=np.int8), names[1]))
            new_inits.append(numpy_helper.from_array(np.array(scale, dtype=np.float32), names[2]))
            wq[name] = names
        return wq[name]

    for node in graph.node:
        kind = node.op_type
        if kind not in op_types or kind not in ("MatMul", "Conv") or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        xq, xs, xz = activation(node.input[0])
        w, wz, ws = weight(node.input[1])
        base = node.name + "_quant" if node.name else node.output[0]
        qout = node.output[0] + "_output_quantized"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = "MatMulInteger" if kind == "MatMul" else "ConvInteger"
        new_nodes.append(helper.make_node(op, [xq, w, xz, wz], [qout], base, **attrs))
        cast = qout + "_cast_output"
        new_nodes.append(helper.make_node("Cast", [qout], [cast], qout + "_cast", to=TensorProto.FLOAT))
        smul = base + "_scales_mul"
        new_nodes.append(helper.make_node("Mul", [xs, ws], [smul + ":0"], smul))
        has_bias = kind == "Conv" and len(node.input) > 2 and node.input[2]
        scaled = node.output[0] + "quant_scaled_output" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("Mul", [cast, smul + ":0"], [scaled], base + "_output_scale_mul"))
        if has_bias:
            out = node.output[0]
            shape = out + "_bias_reshape_shape"
            rank = len(inits[node.input[1]].dims)
            new_inits.append(numpy_helper.from_array(np.array([1, -1] + [1] * (rank - 2), dtype=np.int64), shape))
            new_nodes.append(helper.make_node("Reshape", [node.input[2], shape], [out + "_bias_reshape_output"]))
            new_nodes.append(helper.make_node("Add", [scaled, out + "_bias_reshape_output"], [out], out + "_bias_add"))
    used = {i for n in new_nodes for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    del graph.value_info[:]
    return model


INT4, OPSET_WO = 22, 21


def int4_tensor(name, q):
    """A TensorProto of INT4 (data_type 22): two values a byte, the first in the low nibble."""
    flat = (q.astype(np.int16).reshape(-1) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    t = TensorProto()
    t.name, t.data_type = name, INT4
    t.dims.extend(q.shape)
    t.raw_data = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    return t


def wo_weight(g, w, block=32):
    """W -> DequantizeLinear(int4 blocks of `block` rows, asymmetric, axis 0): its output name."""
    K, N = w.shape
    nb = (K + block - 1) // block
    wp = np.zeros((nb * block, N), np.float32)
    wp[:K] = w
    blocks = wp.reshape(nb, block, N)
    lo, hi = np.minimum(blocks.min(axis=1), 0), np.maximum(blocks.max(axis=1), 0)
    scale = np.maximum((hi - lo) / 15.0, 1e-8).astype(np.float32)
    zp = np.clip(np.rint(-8 - lo / scale), -8, 7).astype(np.int8)
    q = np.clip(np.rint(blocks / scale[:, None, :]) + zp[:, None, :], -8, 7).astype(np.int8).reshape(nb * block, N)[:K]
    qn, zn = g.name("w_q"), g.name("w_zp")
    g.inits.append(int4_tensor(qn, q))
    g.inits.append(int4_tensor(zn, zp))
    sn = g.init("w_scale", scale)
    return g.node("DequantizeLinear", [qn, sn, zn], axis=0, block_size=block)


def mlp_wo(path, M, seed):
    rng = np.random.default_rng(seed)
    g = Graph()
    x = "x"
    for _ in range(4):
        w1 = (rng.standard_normal((1024, 4096)) * 0.03).astype(np.float32)
        w2 = (rng.standard_normal((4096, 1024)) * 0.015).astype(np.float32)
        h = g.node("Add", [g.node("MatMul", [x, wo_weight(g, w1)]), g.init("b", (rng.standard_normal(4096) * 0.1).astype(np.float32))])
        h = g.node("Relu", [h])
        x = g.node("Add", [g.node("MatMul", [h, wo_weight(g, w2)]), g.init("b", (rng.standard_normal(1024) * 0.1).astype(np.float32))])
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    shape = [1, M, 1024]
    graph = helper.make_graph(g.nodes, os.path.basename(path)[:-5], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET_WO)], producer_name="kiln-bench")
    model.ir_version = 10
    onnx.save(model, path)
    print("wrote", path)


def model_set(src, out):
    for name, dst, ops in (("resnet50-opset17", "resnet50_dynq", ["Conv", "MatMul"]),
                           ("mobilenet_v2-opset17", "mobilenet_v2_dynq", ["Conv", "MatMul"]),
                           ("bert-opset17", "bert_dynq", ["MatMul"]),
                           ("bert_dyn-opset17", "bert_dyn_dynq", ["MatMul"])):
        path = os.path.join(src, name + ".onnx")
        if not os.path.exists(path):
            print("skipped", path, "(missing)")
            continue
        model = quantize_dynamic(onnx.load(path), ops)
        onnx.checker.check_model(model)
        target = os.path.join(out, dst + ".onnx")
        onnx.save(model, target)
        shapes = os.path.join(src, name + ".shapes")
        if os.path.exists(shapes):
            with open(shapes) as f, open(os.path.join(out, dst + ".shapes"), "w") as g:
                g.write(f.read())
        print("wrote", target)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.join(os.path.dirname(__file__), "..", "build")
    ap.add_argument("--out", default=os.path.join(here, "bench-models-int8"))
    ap.add_argument("--models", default=os.path.join(here, "bench-models"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mlp(os.path.join(a.out, "mlp_int8.onnx"), True, 1)
    mlp(os.path.join(a.out, "mlp_u8_int8.onnx"), False, 2)
    conv(os.path.join(a.out, "conv_int8.onnx"), 3)
    mlp_wo(os.path.join(a.out, "mlp_wo_int4.onnx"), 1, 4)
    mlp_wo(os.path.join(a.out, "mlp_wo_int4_m128.onnx"), 128, 4)
    model_set(a.models, a.out)


if __name__ == "__main__":
    main()
