#!/usr/bin/env python3
"""make_infer_seeds.py: writes hand-made fuzz seeds aimed at shape inference (files named
hand_infer_*) into tests/fuzz/corpus/load/, with make_seeds.py's protobuf encoder.

They hold what inference must survive cheaply: sizes at and beyond KILN_MAX_NUMEL, int64
extremes in Slice/Range/Pad, symbolic shape arithmetic that would blow up without the
caps, ranks beyond KILN_MAX_RANK, and declared types that contradict the inferred ones.
The graph input keeps a symbolic batch dim, so the fuzz target does not run the model.

Usage: python3 tests/fuzz/make_infer_seeds.py
"""
import os
import struct

from make_seeds import HERE, FLOAT, INT64, attr, f_bytes, f_varint, graph, model, node, tensor, \
    tensor_type, value_info

INTS = 7
I64_MAX, I64_MIN = (1 << 63) - 1, -(1 << 63)


def i64(name, values, dims=None):
    dims = [len(values)] if dims is None else dims
    return tensor(name, INT64, dims, raw=struct.pack("<%dq" % len(values), *values))


def ints_attr(name, xs):
    return attr(name, INTS, b"".join(f_varint(8, x) for x in xs))


def seeds():
    x = value_info("x", tensor_type(FLOAT, ["N", 3, "seq"]))
    huge = graph("huge", [
        node("ConstantOfShape", ["big"], ["c"], "cos"),
        node("Tile", ["c", "big"], ["t"], "tile"),
        node("Reshape", ["x", "bad_shape"], ["r"], "reshape"),
        node("Slice", ["x", "st", "en", "ax", "sp"], ["s"], "slice"),
        node("Range", ["lo", "hi", "one"], ["rg"], "range"),
        node("Pad", ["x", "pads"], ["p"], "pad"),
        node("Expand", ["x", "neg"], ["e"], "expand"),
        node("Unsqueeze", ["x", "many"], ["u"], "unsqueeze"),
    ], [x], [value_info("t", tensor_type(FLOAT)), value_info("p", tensor_type(FLOAT, [1, 2]))],
        inits=[i64("big", [1 << 40, 1 << 40, I64_MAX]), i64("bad_shape", [0, 0, 0, -1, -1]),
               i64("st", [I64_MIN, I64_MAX, -1]), i64("en", [I64_MAX, I64_MIN, I64_MIN]),
               i64("ax", [0, 1, 2]), i64("sp", [I64_MIN, -1, I64_MAX]),
               i64("lo", [I64_MIN], []), i64("hi", [I64_MAX], []), i64("one", [1], []),
               i64("pads", [I64_MAX, 0, -5, I64_MAX, 0, -5]), i64("neg", [-3, 3, 1]),
               i64("many", list(range(20)))])
    # Symbolic products squared again and again: capped, becomes unknown.
    y = value_info("y", tensor_type(FLOAT, ["a", "b", "c", "d", "e"]))
    nodes, prev = [node("Shape", ["y"], ["s0"], "shape")], "s0"
    for i in range(12):
        nodes.append(node("Mul", [prev, prev], ["m%d" % i], "mul%d" % i))
        nodes.append(node("Add", ["m%d" % i, prev], ["s%d" % (i + 1)], "add%d" % i))
        prev = "s%d" % (i + 1)
    nodes.append(node("Reshape", ["y", prev], ["z"], "reshape"))
    nodes.append(node("Concat", [prev] * 40, ["cc"], "concat", [attr("axis", 2, f_varint(3, 0))]))
    blowup = graph("blowup", nodes, [y], [value_info("z", tensor_type(FLOAT))])
    # Declared types that contradict what inference finds.
    contra = graph("contra", [
        node("Transpose", ["x"], ["t"], "t", [ints_attr("perm", [2, 0, 1])]),
        node("Flatten", ["x"], ["f"], "f"),
    ], [x], [value_info("t", tensor_type(FLOAT, [3, "N", 7, 9])), value_info("f", tensor_type(INT64, ["N", 5]))])
    return {
        "hand_infer_huge_sizes.onnx": model(huge, opsets=(("", 18),)),
        "hand_infer_symbolic_blowup.onnx": model(blowup, opsets=(("", 18),)),
        "hand_infer_contradictions.onnx": model(contra, opsets=(("", 18),)),
    }


def main():
    d = os.path.join(HERE, "corpus", "load")
    for name, data in seeds().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        print("wrote", os.path.join("corpus", "load", name))


if __name__ == "__main__":
    main()
