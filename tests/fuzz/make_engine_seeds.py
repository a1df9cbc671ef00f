#!/usr/bin/env python3
"""make_engine_seeds.py: writes the seed inputs of the engine fuzz target
(tests/fuzz/corpus/engine/seed_*.kiln): small models, each built into an engine file by
`kiln build`, chosen so that the kernels that keep prepacked blobs and saved variants are in
the corpus (convolutions NCHW and channels-last, depthwise, transposed, the GEMM with constant
weights, the LSTM, a transformer block with LayerNorm and GELU), with a dynamic model built
with a profile and one built for 2 threads.

Needs the onnx Python module (Debian: python3-onnx) and a kiln build.

Usage: python3 tests/fuzz/make_engine_seeds.py [KILN]   (default build/release/kiln)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus", "engine")
rng = np.random.default_rng(7)


def init(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def models():
    yield "conv_relu", model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])], [init("w", 4, 3, 3, 3), init("b", 4)]), []
    yield "conv_chain", model(
        [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["a", "s", "bb", "m", "v"], ["n"]),
         helper.make_node("Clip", ["n", "lo", "hi"], ["r"]),
         helper.make_node("Conv", ["r", "wd"], ["d"], pads=[1, 1, 1, 1], group=8),
         helper.make_node("Conv", ["d", "w2"], ["p"]),
         helper.make_node("Add", ["p", "x"], ["y"])],
        [vi("x", [1, 8, 6, 6])], [vi("y", [1, 8, 6, 6])],
        [init("w1", 8, 8, 3, 3), init("s", 8), init("bb", 8), init("m", 8),
         numpy_helper.from_array(np.ones(8, np.float32), "v"),
         numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi"),
         init("wd", 8, 1, 3, 3), init("w2", 8, 8, 1, 1)]), []
    yield "convt", model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
        [vi("x", [1, 4, 4, 4])], [vi("y", [1, 2, 8, 8])], [init("w", 4, 2, 4, 4)]), []
    yield "gemm", model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        [vi("x", [2, 16])], [vi("y", [2, 8])], [init("w", 24, 16), init("b", 24), init("w2", 24, 8)]), []
    yield "lstm", model(
        [helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "h", "c"], hidden_size=4)],
        [vi("x", [3, 1, 5])], [vi("y", [3, 1, 1, 4]), vi("h", [1, 1, 4]), vi("c", [1, 1, 4])],
        [init("w", 1, 16, 5), init("r", 1, 16, 4), init("b", 1, 32)]), []
    yield "block", model(
        [helper.make_node("LayerNormalization", ["x", "g", "be"], ["n"], axis=-1),
         helper.make_node("MatMul", ["n", "w1"], ["m"]),
         helper.make_node("Add", ["m", "b1"], ["a"]),
         helper.make_node("Div", ["a", "sq2"], ["d"]),  # GELU as PyTorch exports it
         helper.make_node("Erf", ["d"], ["e"]),
         helper.make_node("Add", ["e", "one"], ["e1"]),
         helper.make_node("Mul", ["a", "e1"], ["ae"]),
         helper.make_node("Mul", ["ae", "half"], ["ge"]),
         helper.make_node("MatMul", ["ge", "w2"], ["o"]),
         helper.make_node("Add", ["o", "x"], ["y"])],
        [vi("x", [1, 4, 16])], [vi("y", [1, 4, 16])],
        [init("g", 16), init("be", 16), init("w1", 16, 32), init("b1", 32), init("w2", 32, 16),
         numpy_helper.from_array(np.float32(2 ** 0.5), "sq2"), numpy_helper.from_array(np.float32(1), "one"),
         numpy_helper.from_array(np.float32(0.5), "half")]), []
    yield "dynamic", model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Softmax", ["m"], ["y"], axis=-1)],
        [vi("x", ["n", 8])], [vi("y", ["n", 6])], [init("w", 8, 6)]), \
        ["--profile", "x=min:1x8,opt:2x8,max:4x8"]
    yield "threads2", model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["y"])],
        [vi("x", [1, 4, 10, 10])], [vi("y", [1, 8, 1, 1])], [init("w", 8, 4, 3, 3)]), ["--threads", "2"]


def main():
    kiln = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "release", "kiln")
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, m, opts in models():
            src = os.path.join(tmp, name + ".onnx")
            save(m, src)
            dst = os.path.join(OUT, "seed_" + name + ".kiln")
            subprocess.run([kiln, "build", src, "-o", dst, *opts], check=True)
            print(f"{dst}: {os.path.getsize(dst)} bytes")


if __name__ == "__main__":
    main()
