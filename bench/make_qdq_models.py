#!/usr/bin/python3
"""bench/make_qdq_models.py: statically quantized (QDQ) CNNs, written the way onnxruntime's
quantize_static(QuantFormat.QDQ, per_channel=True) writes them with its defaults (QUInt8
activations, QInt8 weights, MinMax calibration), with Debian's python3-onnx only (no
onnxruntime in Python here); the calibration runs the float model on kiln's Python module.

    PYTHONPATH=build/release/python /usr/bin/python3 bench/make_qdq_models.py \
        [--models DIR] [--out DIR] [--samples N]

Reads DIR/resnet50-opset17.onnx and DIR/mobilenet_v2-opset17.onnx (default
build/bench-models) and writes resnet50_qdq.onnx and mobilenet_v2_qdq.onnx into --out
(default build/bench-models-int8, which git ignores). What the graphs hold, as
quantize_static leaves them (onnxruntime/python/tools/quantization, qdq_quantizer.py):

  * every activation a quantized op reads or writes: QuantizeLinear -> DequantizeLinear with
    a uint8 zero point (asymmetric MinMax: the range widened to hold 0, scale = (max - min) /
    255, zero point = round(-min / scale)); one Q/DQ pair per tensor, shared by its readers;
  * Conv and Gemm weights: int8, symmetric per output channel (axis 0 of W, [M, C/g, kh, kw]
    and Gemm's transposed B [N, K]): scale = max|w| / 127, zero point 0, range [-127, 127],
    behind a DequantizeLinear; the bias int32 with scale x_scale * w_scale and zero point 0,
    behind a DequantizeLinear;
  * Relu and Clip after a Conv or Add are removed (QDQRemovableActivation: the producer writes
    the activation's output, and its QuantizeLinear takes the activation's range, whose
    saturation at the zero point / at 255 is the activation);
  * MaxPool's output reuses its input's scale and zero point (QDQDirect8BitOp);
  * Add (the residual) and GlobalAveragePool: Q/DQ on both inputs and the output;
  * Flatten is not quantized (its output is quantized as the Gemm's input);
  * the graph output gets Q -> DQ too, the DequantizeLinear keeping the output's name.

Calibration: --samples (default 4) inputs uniform in [-1, 1) (what bench/ort_run.js feeds,
fixed seed), every intermediate added as a graph output and run on kiln (no optimization).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QUANT_OPS = {"Conv", "Add", "MaxPool", "GlobalAveragePool", "Gemm"}
REMOVABLE = {"Relu", "Clip"}


def calibrate(model, samples, seed=1):
    """min/max of every node output over `samples` random inputs (kiln, no optimization)."""
    import kiln

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in have and n.op_type != "Constant":
                m.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    sess = kiln.InferenceSession(m.SerializeToString())
    inp = model.graph.input[0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    names = [o.name for o in m.graph.output]
    lo, hi = {}, {}
    for _ in range(samples):
        x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        for name, v in zip(names, sess.run(None, {inp.name: x})):
            v = np.asarray(v)
            if v.dtype != np.float32 or v.size == 0:
                continue
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    lo[inp.name] = -1.0
    hi[inp.name] = 1.0
    return lo, hi


def act_params(lo, hi):
    """uint8 asymmetric scale and zero point as onnxruntime's compute_scale_zp computes them."""
    rmin = np.float32(min(lo, 0.0))
    rmax = np.float32(max(hi, 0.0))
    scale = np.float32((rmax - rmin) / np.float32(255.0))
    if scale == 0:
        scale = np.float32(1.0)
    zp = int(np.clip(np.round(np.float32(0.0) - rmin / scale), 0, 255))
    return scale, zp


def weight_params(w):
    """int8 symmetric per-channel (axis 0) weights: (q, scale[M])."""
    flat = w.reshape(w.shape[0], -1).astype(np.float32)
    absmax = np.abs(flat).max(axis=1)
    scale = (absmax / np.float32(127.0)).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


class Builder:
    def __init__(self, model):
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.new_inits, self.nodes = [], []
        self.qdq = {}  # float tensor -> its DequantizeLinear output

    def init(self, name, arr):
        self.new_inits.append(numpy_helper.from_array(arr, name))
        return name

    def qdq_pair(self, tensor, scale, zp, out_name=None):
        if tensor in self.qdq:
            return self.qdq[tensor]
        s = self.init(tensor + "_scale", np.array(scale, dtype=np.float32))
        z = self.init(tensor + "_zero_point", np.array(zp, dtype=np.uint8))
        q = tensor + "_QuantizeLinear_Output"
        dq = out_name or tensor + "_DequantizeLinear_Output"
        self.nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q], name=tensor + "_QuantizeLinear"))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [dq], name=tensor + "_DequantizeLinear"))
        self.qdq[tensor] = dq
        return dq

    def weight(self, name, x_scale, bias=None):
        w = numpy_helper.to_array(self.inits[name])
        q, scale = weight_params(w)
        wq = self.init(name + "_quantized", q)
        ws = self.init(name + "_scale", scale)
        wz = self.init(name + "_zero_point", np.zeros(len(scale), dtype=np.int8))
        wd = name + "_DequantizeLinear_Output"
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, ws, wz], [wd], name=name + "_DequantizeLinear", axis=0))
        if bias is None:
            return wd, None
        b = numpy_helper.to_array(self.inits[bias]).astype(np.float32)
        bs = (np.float32(x_scale) * scale).astype(np.float32)
        bq = np.round(b.astype(np.float64) / bs.astype(np.float64)).astype(np.int32)
        bqn = self.init(bias + "_quantized", bq)
        bsn = self.init(bias + "_quantized_scale", bs)
        bzn = self.init(bias + "_quantized_zero_point", np.zeros(len(bs), dtype=np.int32))
        bd = bias + "_quantized_DequantizeLinear_Output"
        self.nodes.append(helper.make_node("DequantizeLinear", [bqn, bsn, bzn], [bd], name=bias + "_DequantizeLinear", axis=0))
        return wd, bd


def quantize(model, lo, hi):
    g = model.graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    # Removable activations: the producer writes the activation's output directly.
    rename, drop = {}, set()
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type not in REMOVABLE:
            continue
        p = producer.get(n.input[0])
        if p is None or p.op_type not in ("Conv", "Add") or len(consumers[n.input[0]]) != 1 or n.input[0] in outputs:
            continue
        rename[n.input[0]] = n.output[0]
        drop.add(n.name or id(n))
    b = Builder(model)
    params = {}

    def qparams(t):
        if t not in params:
            params[t] = act_params(lo[t], hi[t])
        return params[t]

    final = {}
    for n in g.node:
        if (n.name or id(n)) in drop or n.op_type == "Constant" and all(
                c.op_type in REMOVABLE for c in consumers.get(n.output[0], [])):
            continue
        ins = [rename.get(i, i) for i in n.input]
        outs = [rename.get(o, o) for o in n.output]
        if n.op_type in QUANT_OPS:
            if n.op_type == "MaxPool":
                params[outs[0]] = qparams(ins[0])
            xs = []
            for k, t in enumerate(ins):
                if t in b.inits or t == "" or (n.op_type in ("Conv", "Gemm") and k > 0):
                    xs.append(t)
                    continue
                xs.append(b.qdq_pair(t, *qparams(t)))
            if n.op_type in ("Conv", "Gemm"):
                wd, bd = b.weight(ins[1], qparams(ins[0])[0], ins[2] if len(ins) > 2 else None)
                xs[1] = wd
                if bd:
                    xs[2] = bd
            out = outs[0]
            inner = out + "_prequant" if out in outputs else out
            node = helper.make_node(n.op_type, xs, [inner], name=n.name)
            node.attribute.extend(n.attribute)
            b.nodes.append(node)
            if out in outputs:
                final[inner] = out
                b.qdq_pair(inner, *act_params(lo[out], hi[out]), out_name=out)
            else:
                b.qdq_pair(out, *qparams(out))
            continue
        node = helper.make_node(n.op_type, ins, outs, name=n.name)
        node.attribute.extend(n.attribute)
        b.nodes.append(node)
    # Readers of a quantized tensor read its DequantizeLinear output.
    for node in b.nodes:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, t in enumerate(node.input):
            if t in b.qdq and not t.endswith("_DequantizeLinear_Output"):
                node.input[k] = b.qdq[t]
    # Flatten before Gemm: its output feeds a Q/DQ pair (the Gemm's input) already.
    used = {i for n in b.nodes for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    graph = helper.make_graph(b.nodes, g.name + "_qdq", list(g.input), list(g.output), keep + b.new_inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="kiln make_qdq_models.py")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="build/bench-models")
    ap.add_argument("--out", default="build/bench-models-int8")
    ap.add_argument("--samples", type=int, default=4)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in ("resnet50", "mobilenet_v2"):
        model = onnx.load(os.path.join(a.models, f"{name}-opset17.onnx"))
        lo, hi = calibrate(model, a.samples)
        q = quantize(model, lo, hi)
        path = os.path.join(a.out, f"{name}_qdq.onnx")
        onnx.save(q, path)
        ops = {}
        for n in q.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        print(f"{path}: {sum(ops.values())} nodes {dict(sorted(ops.items()))}")


if __name__ == "__main__":
    main()
