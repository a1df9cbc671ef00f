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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "build", "bench-models-int8"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mlp(os.path.join(a.out, "mlp_int8.onnx"), True, 1)
    mlp(os.path.join(a.out, "mlp_u8_int8.onnx"), False, 2)
    conv(os.path.join(a.out, "conv_int8.onnx"), 3)


if __name__ == "__main__":
    main()
