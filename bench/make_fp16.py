#!/usr/bin/python3
"""bench/make_fp16.py: float16 versions of benchmark models, for the float16 speed check.

Run with Debian's Python and python3-onnx (apt-get install python3-onnx):

    /usr/bin/python3 bench/make_fp16.py [--out DIR] [MODEL.onnx...]

Without MODELs it converts resnet50, mobilenet_v2 and efficientnet_b0 (opset 17) of
build/bench-models (bench/make_models.py makes them). Each MODEL.onnx becomes
DIR/MODEL-fp16.onnx (DIR defaults to the model's folder): the conversion float16
converters (onnxconverter-common's float16 converter with keep_io_types) make:
  - every float32 initializer and Constant becomes float16, every float32 intermediate
    value float16 (value_info from ONNX shape inference on the float32 model, re-typed), and
    Cast(to=float) attributes inside the graph become Cast(to=float16);
  - the graph's inputs and outputs stay float32: a Cast to float16 after each float input
    and a Cast to float32 before each float output (so the benchmark inputs and the
    reference outputs of the float32 model apply unchanged);
  - inputs that ONNX types as float32 whatever the data type stay float32: Resize's roi
    and scales, Upsample's scales (a constant feeding only those keeps its type).
The weights are the float32 model's, rounded to float16 (round to nearest even). Running it
twice gives byte-identical files.
"""

import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = ["resnet50-opset17", "mobilenet_v2-opset17", "efficientnet_b0-opset17"]
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16

# (op, input index) whose type ONNX fixes to float32 (or an independent type parameter the
# converters leave as float32).
KEEP_F32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def convert(model):
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    # Values read only at keep-float32 positions keep their type.
    readers = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            if name:
                readers.setdefault(name, []).append((n.op_type, k))
    out_names = {o.name for o in g.output}

    def keep_f32(name):
        r = readers.get(name, [])
        return bool(r) and name not in out_names and all(x in KEEP_F32_INPUTS for x in r)

    for init in g.initializer:
        if init.data_type == F32 and not keep_f32(init.name):
            arr = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    for n in g.node:
        if n.op_type == "Constant" and not any(keep_f32(o) for o in n.output):
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == F32:
                    arr = numpy_helper.to_array(a.t).astype(np.float16)
                    a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
                elif a.name in ("value_float", "value_floats"):
                    sys.exit("make_fp16: Constant value_float(s) not handled")
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == F32:
                    a.i = F16
    for vi in g.value_info:
        t = vi.type.tensor_type
        if t.elem_type == F32 and not keep_f32(vi.name):
            t.elem_type = F16

    # Casts at the float inputs and outputs; the interface names stay.
    head, tail = [], []
    for inp in g.input:
        if inp.type.tensor_type.elem_type != F32:
            continue
        new = inp.name + "_fp16"
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == inp.name:
                    n.input[k] = new
        head.append(helper.make_node("Cast", [inp.name], [new], name=new + "_cast", to=F16))
        g.value_info.append(helper.make_tensor_value_info(new, F16, None))
    for out in g.output:
        if out.type.tensor_type.elem_type != F32:
            continue
        new = out.name + "_fp16"
        for n in g.node:
            for k, name in enumerate(n.output):
                if name == out.name:
                    n.output[k] = new
            for k, name in enumerate(n.input):
                if name == out.name:
                    n.input[k] = new
        tail.append(helper.make_node("Cast", [new], [out.name], name=new + "_cast", to=F32))
        g.value_info.append(helper.make_tensor_value_info(new, F16, None))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output folder (default: the model's)")
    ap.add_argument("models", nargs="*")
    args = ap.parse_args()
    models = args.models or [os.path.join(ROOT, "build", "bench-models", m + ".onnx") for m in DEFAULT]
    for path in models:
        m = onnx.load(path)
        out_dir = args.out or os.path.dirname(os.path.abspath(path))
        os.makedirs(out_dir, exist_ok=True)
        dst = os.path.join(out_dir, os.path.basename(path)[: -len(".onnx")] + "-fp16.onnx")
        onnx.save(convert(m), dst)
        print(dst)


if __name__ == "__main__":
    main()
