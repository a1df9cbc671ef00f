#!/usr/bin/env python3
"""make_bad_models.py: writes the small hand-made ONNX models of tests/data/ that the CLI
tests (tests/cli/) use for error paths, encoding the protobuf bytes directly (standard
library only, so the files can be regenerated anywhere).

Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto,
ValueInfoProto, TypeProto). Each model is valid protobuf and, but for its one defect,
a valid ONNX model:

  bad_cycle.onnx          Add(X, c) -> a, Relu(a) -> c: the nodes form a cycle
  bad_short_init.onnx     initializer W declares dims [2,3] (6 floats) but holds 4
  bad_missing_input.onnx  Relu reads 'nope', which no input, initializer or node defines
  bad_opset_999.onnx      Relu(X) -> Y importing ai.onnx opset 999, newer than kiln knows
  long_loop.onnx          Y = Loop(M = 2^62, cond = true, X float32[1]) whose body passes X
                          through (Identity): runs for ever in practice; the --timeout test
  good_add.onnx           a valid model for contrast: C = Add(A, W), A float32[N,3],
                          W an initializer float32[3] = [1, 2, 3]; also declares W as an
                          input with a default (IR 3 style), which kiln.h hides
  good_gemms.onnx         work large enough to be split across threads (tests/cli/
                          test_threads.sh): Y = Relu(Conv(X[1,16,32,32], W[32,16,3,3],
                          B[32], pads 1)), Z = MatMul(A[192,96], V[96,128]) and
                          S = Softmax(Z + Z); weights pseudo-random
  good_gemms_X.npy, good_gemms_A.npy   its inputs (pseudo-random, fixed seed)

Usage: python3 tests/data/make_bad_models.py   (writes next to this script)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FLOAT, INT64, BOOL = 1, 7, 9


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1  # negative int64 values are encoded as 10-byte two's complement
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_varint(field, n):
    return key(field, 0) + varint(n)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def tensor_type(elem, dims):
    """TypeProto{tensor_type{elem_type, shape{dim...}}}; a str dim is a dim_param."""
    shape = b"".join(f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_varint(1, d)) for d in dims)
    return f_bytes(1, f_varint(1, elem) + f_bytes(2, shape))


def value_info(name, elem, dims):
    return f_bytes(1, name) + f_bytes(2, tensor_type(elem, dims))


def node(op, inputs, outputs, name):
    return (b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
            + f_bytes(3, name) + f_bytes(4, op))


def tensor(name, elem, dims, raw):
    return b"".join(f_varint(1, d) for d in dims) + f_varint(2, elem) + f_bytes(8, name) + f_bytes(9, raw)


def graph(name, nodes, inputs, outputs, inits=()):
    return (b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, name)
            + b"".join(f_bytes(5, t) for t in inits)
            + b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs))


def model(g, opset=13, ir=7, meta=()):
    opset_id = f_bytes(1, "") + f_varint(2, opset)
    return (f_varint(1, ir) + f_bytes(2, "make_bad_models.py") + f_bytes(3, "1")
            + f_varint(5, 42) + f_bytes(7, g) + f_bytes(8, opset_id)
            + b"".join(f_bytes(14, f_bytes(1, k) + f_bytes(2, v)) for k, v in meta))


def attr_ints(name, xs):
    """AttributeProto{name, type INTS (7), ints}."""
    return f_bytes(1, name) + f_varint(20, 7) + b"".join(f_varint(8, x) for x in xs)


def node_attrs(op, inputs, outputs, name, attrs):
    return node(op, inputs, outputs, name) + b"".join(f_bytes(5, a) for a in attrs)


def attr_graph(name, g):
    """AttributeProto{name, g, type GRAPH (5)}."""
    return f_bytes(1, name) + f_bytes(6, g) + f_varint(20, 5)


def pseudo_random(n, seed):
    """n floats in [-1, 1) from a 64-bit xorshift: reproducible without numpy."""
    x, out = seed, []
    for _ in range(n):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        out.append((x >> 11) / float(1 << 53) * 2.0 - 1.0)
    return struct.pack("<%df" % n, *out)


def npy(dims, raw):
    """A NumPy .npy (version 1.0) holding little-endian float32 data."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % (
        "".join("%d, " % d for d in dims) if len(dims) == 1 else ", ".join(map(str, dims)))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + raw


def floats(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def main():
    models = {
        "bad_cycle.onnx": graph(
            "cycle",
            [node("Add", ["X", "c"], ["a"], "add"), node("Relu", ["a"], ["c"], "relu")],
            [value_info("X", FLOAT, [2])], [value_info("a", FLOAT, [2])]),
        "bad_short_init.onnx": graph(
            "short_init",
            [node("Add", ["X", "W"], ["Y"], "add")],
            [value_info("X", FLOAT, [2, 3])], [value_info("Y", FLOAT, [2, 3])],
            [tensor("W", FLOAT, [2, 3], floats(1, 2, 3, 4))]),
        "bad_missing_input.onnx": graph(
            "missing_input",
            [node("Relu", ["nope"], ["Y"], "relu")],
            [value_info("X", FLOAT, [2])], [value_info("Y", FLOAT, [2])]),
        "bad_opset_999.onnx": graph(
            "opset_999",
            [node("Relu", ["X"], ["Y"], "relu")],
            [value_info("X", FLOAT, [2])], [value_info("Y", FLOAT, [2])]),
        "long_loop.onnx": graph(
            "long_loop",
            [node_attrs("Loop", ["M", "C", "X"], ["Y"], "loop", [attr_graph("body", graph(
                "body",
                [node("Identity", ["c_in"], ["c_out"], "keep_going"),
                 node("Identity", ["v_in"], ["v_out"], "pass")],
                [value_info("i", INT64, []), value_info("c_in", BOOL, []),
                 value_info("v_in", FLOAT, [1])],
                [value_info("c_out", BOOL, []), value_info("v_out", FLOAT, [1])]))])],
            [value_info("X", FLOAT, [1])], [value_info("Y", FLOAT, [1])],
            [tensor("M", INT64, [], struct.pack("<q", 1 << 62)), tensor("C", BOOL, [], b"\x01")]),
        "good_add.onnx": graph(
            "good_add",
            [node("Add", ["A", "W"], ["C"], "add")],
            [value_info("A", FLOAT, ["N", 3]), value_info("W", FLOAT, [3])],
            [value_info("C", FLOAT, ["N", 3])],
            [tensor("W", FLOAT, [3], floats(1, 2, 3))]),
        "good_gemms.onnx": graph(
            "good_gemms",
            [node_attrs("Conv", ["X", "W", "B"], ["C"], "conv", [attr_ints("pads", [1, 1, 1, 1])]),
             node("Relu", ["C"], ["Y"], "relu"),
             node("MatMul", ["A", "V"], ["Z"], "matmul"),
             node("Add", ["Z", "Z"], ["Z2"], "add"),
             node("Softmax", ["Z2"], ["S"], "softmax")],
            [value_info("X", FLOAT, [1, 16, 32, 32]), value_info("A", FLOAT, [192, 96])],
            [value_info("Y", FLOAT, [1, 32, 32, 32]), value_info("Z", FLOAT, [192, 128]),
             value_info("S", FLOAT, [192, 128])],
            [tensor("W", FLOAT, [32, 16, 3, 3], pseudo_random(32 * 16 * 9, 1)),
             tensor("B", FLOAT, [32], pseudo_random(32, 2)),
             tensor("V", FLOAT, [96, 128], pseudo_random(96 * 128, 3))]),
    }
    for name, g in models.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(model(g, opset=999 if name == "bad_opset_999.onnx" else 13,
                          meta=[("purpose", "kiln cli tests")] if name.startswith("good") else ()))
        print("wrote", name)
    for name, dims, seed in (("good_gemms_X.npy", [1, 16, 32, 32], 4), ("good_gemms_A.npy", [192, 96], 5)):
        n = 1
        for d in dims:
            n *= d
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(npy(dims, pseudo_random(n, seed)))
        print("wrote", name)


if __name__ == "__main__":
    main()
