#!/usr/bin/env python3
"""make_seeds.py: writes the hand-made seed inputs of the fuzz corpus (files named hand_*),
encoding the protobuf and .npy bytes directly (standard library only).

They cover what the ONNX node-test models copied as seed_* do not: sparse initializers and
sparse Constant values, external-data references (refused when loading from memory, but
parsed), model-local functions, every typed data field of TensorProto, every attribute
type, map/optional/sparse type declarations, and for the value target .npy files of each
version and byte order plus nested SequenceProto/OptionalProto messages.

Field numbers follow onnx/onnx.proto; the .npy layout follows numpy.lib.format.

Usage: python3 tests/fuzz/make_seeds.py   (writes into tests/fuzz/corpus/{load,value}/)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FLOAT, UINT8, INT8, INT32, INT64, STRING, BOOL, FLOAT16, DOUBLE, UINT32, UINT64 = 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13
COMPLEX64, BFLOAT16, UINT4, INT4 = 14, 16, 21, 22


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
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


def f_fixed32(field, x):
    return key(field, 5) + struct.pack("<f", x)


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return key(field, 2) + varint(len(data)) + data


def packed_varints(field, xs):
    return f_bytes(field, b"".join(varint(x) for x in xs))


def shape(dims):
    return b"".join(f_bytes(1, f_bytes(2, d) if isinstance(d, str) else f_varint(1, d)) for d in dims)


def tensor_type(elem, dims=None):
    body = f_varint(1, elem) + (f_bytes(2, shape(dims)) if dims is not None else b"")
    return f_bytes(1, body)


def value_info(name, type_proto):
    return f_bytes(1, name) + f_bytes(2, type_proto)


def node(op, inputs, outputs, name="", attrs=(), domain=None):
    return (b"".join(f_bytes(1, i) for i in inputs) + b"".join(f_bytes(2, o) for o in outputs)
            + f_bytes(3, name) + f_bytes(4, op) + b"".join(f_bytes(5, a) for a in attrs)
            + (f_bytes(7, domain) if domain is not None else b""))


def tensor(name, elem, dims, raw=None, typed=()):
    """TensorProto; typed: (field, payload) pairs written as length-delimited fields (packed
    repeated values), or (None, bytes) appended as they are."""
    body = b"".join(f_varint(1, d) for d in dims) + f_varint(2, elem) + f_bytes(8, name)
    if raw is not None:
        body += f_bytes(9, raw)
    for field, payload in typed:
        body += payload if field is None else f_bytes(field, payload)
    return body


def graph(name, nodes, inputs, outputs, inits=(), sparse=(), value_infos=()):
    return (b"".join(f_bytes(1, n) for n in nodes) + f_bytes(2, name)
            + b"".join(f_bytes(5, t) for t in inits)
            + b"".join(f_bytes(11, v) for v in inputs) + b"".join(f_bytes(12, v) for v in outputs)
            + b"".join(f_bytes(13, v) for v in value_infos)
            + b"".join(f_bytes(15, s) for s in sparse))


def model(g, opsets=(("", 17),), ir=8, functions=(), meta=()):
    return (f_varint(1, ir) + f_bytes(2, "make_seeds.py") + f_bytes(7, g)
            + b"".join(f_bytes(8, f_bytes(1, d) + f_varint(2, v)) for d, v in opsets)
            + b"".join(f_bytes(14, f_bytes(1, k) + f_bytes(2, v)) for k, v in meta)
            + b"".join(f_bytes(25, fn) for fn in functions))


def floats(*xs):
    return struct.pack("<%df" % len(xs), *xs)


def sparse_tensor(values, indices, dims):
    return f_bytes(1, values) + f_bytes(2, indices) + b"".join(f_varint(3, d) for d in dims)


def attr(name, type_, payload):
    return f_bytes(1, name) + f_varint(20, type_) + payload


def load_seeds():
    x23 = value_info("X", tensor_type(FLOAT, [2, 3]))
    y23 = value_info("Y", tensor_type(FLOAT, [2, 3]))
    sp = sparse_tensor(tensor("W", FLOAT, [2], floats(5, 7)),
                       tensor("", INT64, [2], struct.pack("<2q", 1, 5)), [2, 3])
    seeds = {}
    seeds["hand_sparse_initializer.onnx"] = model(graph(
        "sparse_init", [node("Add", ["X", "W"], ["Y"], "add")], [x23], [y23], sparse=[sp]))
    seeds["hand_constant_sparse.onnx"] = model(graph(
        "constant_sparse",
        [node("Constant", [], ["C"], "c", [f_bytes(1, "sparse_value") + f_varint(20, 11)
                                          + f_bytes(22, sp)]),
         node("Add", ["X", "C"], ["Y"], "add")], [x23], [y23]))
    ext = tensor("W", FLOAT, [2, 3], typed=[
        (None, f_varint(14, 1)),
        (13, f_bytes(1, "location") + f_bytes(2, "weights.bin")),
        (13, f_bytes(1, "offset") + f_bytes(2, "0")),
        (13, f_bytes(1, "length") + f_bytes(2, "24"))])
    seeds["hand_external_data.onnx"] = model(graph(
        "external", [node("Add", ["X", "W"], ["Y"], "add")], [x23], [y23], inits=[ext]))
    fn = (f_bytes(1, "AddTwice") + f_bytes(4, "a") + f_bytes(4, "b") + f_bytes(5, "c")
          + f_bytes(7, node("Add", ["a", "b"], ["t"])) + f_bytes(7, node("Add", ["t", "b"], ["c"]))
          + f_bytes(9, f_bytes(1, "") + f_varint(2, 17)) + f_bytes(10, "local"))
    seeds["hand_function.onnx"] = model(graph(
        "function", [node("AddTwice", ["X", "X"], ["Y"], "f", domain="local")], [x23], [y23]),
        opsets=(("", 17), ("local", 1)), functions=[fn])
    typed = [
        tensor("f", FLOAT, [3], typed=[(4, floats(1.5, -2, 3))]),
        tensor("i8", INT8, [3], typed=[(5, b"".join(varint(v) for v in (1, -1 & 0xFFFFFFFF, 127)))]),
        tensor("b", BOOL, [2], typed=[(5, varint(1) + varint(0))]),
        tensor("h", FLOAT16, [2], typed=[(5, varint(0x3C00) + varint(0xC000))]),
        tensor("bf", BFLOAT16, [1], typed=[(5, varint(0x3F80))]),
        tensor("u4", UINT4, [3], typed=[(5, varint(0x21) + varint(0x3))]),
        tensor("i4", INT4, [3], raw=bytes([0xF7, 0x08])),
        tensor("l", INT64, [2], typed=[(7, varint(5) + varint(-3 & (2**64 - 1)))]),
        tensor("d", DOUBLE, [1], typed=[(10, struct.pack("<d", 2.25))]),
        tensor("u32", UINT32, [2], typed=[(11, varint(7) + varint(2**32 - 1))]),
        tensor("s", STRING, [2], typed=[(None, f_bytes(6, "ab") + f_bytes(6, ""))]),
        tensor("c", COMPLEX64, [1], typed=[(4, floats(1, 2))]),
    ]
    outs = []
    nodes = []
    names = ["f", "i8", "b", "h", "bf", "u4", "i4", "l", "d", "u32", "s", "c"]
    elems = [FLOAT, INT8, BOOL, FLOAT16, BFLOAT16, UINT4, INT4, INT64, DOUBLE, UINT32, STRING, COMPLEX64]
    for n, e in zip(names, elems):
        nodes.append(node("Identity", [n], ["o_" + n]))
        outs.append(value_info("o_" + n, tensor_type(e)))
    seeds["hand_typed_fields.onnx"] = model(graph("typed", nodes, [], outs, inits=typed))
    sub = graph("body", [node("Identity", ["X"], ["Z"])], [], [value_info("Z", tensor_type(FLOAT))])
    attrs = [
        attr("f", 1, f_fixed32(2, 0.5)), attr("i", 2, f_varint(3, -7 & (2**64 - 1))),
        attr("s", 3, f_bytes(4, "str")), attr("t", 4, f_bytes(5, typed[0])),
        attr("g", 5, f_bytes(6, sub)), attr("floats", 6, f_bytes(7, floats(1, 2, 3))),
        attr("ints", 7, packed_varints(8, [1, 2, 3])), attr("strings", 8, f_bytes(9, "a") + f_bytes(9, "bc")),
        attr("tensors", 9, f_bytes(10, typed[1]) + f_bytes(10, typed[2])),
        attr("graphs", 10, f_bytes(11, sub) + f_bytes(11, sub)),
        attr("sparse", 11, f_bytes(22, sp)), attr("sparses", 12, f_bytes(23, sp)),
        attr("tp", 13, f_bytes(14, tensor_type(FLOAT, [1, "N"]))),
        attr("tps", 14, f_bytes(15, tensor_type(INT64)) + f_bytes(15, tensor_type(UINT8, []))),
        f_bytes(1, "implied") + f_varint(3, 4),  # no type field: INT implied
        f_bytes(1, "ref") + f_varint(20, 2) + f_bytes(21, "outer"),
    ]
    seq_t = f_bytes(4, f_bytes(1, tensor_type(FLOAT, [2])))
    opt_t = f_bytes(9, f_bytes(1, seq_t))
    map_t = f_bytes(5, f_varint(1, INT64) + f_bytes(2, tensor_type(FLOAT)))
    sparse_t = f_bytes(8, f_varint(1, FLOAT) + f_bytes(2, shape([3, 4])))
    seeds["hand_all_attrs.onnx"] = model(graph(
        "attrs", [node("NoSuchOp", ["X"], ["Y"], "n", attrs, domain="ai.onnx")],
        [x23, value_info("S", seq_t), value_info("O", opt_t), value_info("M", map_t),
         value_info("P", sparse_t), value_info("U", b"")],
        [y23], value_infos=[value_info("Y", tensor_type(FLOAT, ["batch", 3]))]),
        meta=[("k", "v"), ("", "")])
    return seeds


def npy(descr, shape_, data, version=1, fortran=False):
    shp = "(" + "".join("%d," % d for d in shape_) + ")" if len(shape_) != 1 else "(%d,)" % shape_[0]
    if not shape_:
        shp = "()"
    hdr = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shp)
    hdr = hdr.encode() + b"\n"
    lenfmt = "<H" if version == 1 else "<I"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(hdr)) + hdr + data


def value_seeds():
    seeds = {
        "hand_f32_v1.npy": npy("<f4", [2, 3], floats(1, 2, 3, 4, 5, 6)),
        "hand_i64_v2.npy": npy("<i8", [2], struct.pack("<2q", -1, 9), version=2),
        "hand_bool_v3.npy": npy("|b1", [3], bytes([1, 0, 1]), version=3),
        "hand_f8_bigendian.npy": npy(">f8", [1], struct.pack(">d", 1.25)),
        "hand_c8_scalar.npy": npy("<c8", [], floats(1, -1)),
        "hand_empty.npy": npy("<u2", [0, 3], b""),
        "hand_fortran.npy": npy("<f4", [1], floats(1), fortran=True),
    }
    t = tensor("t", FLOAT, [2], floats(1, 2))
    seq = f_varint(2, 1) + f_bytes(3, t) + f_bytes(3, t)
    seq_of_seq = f_bytes(1, "ss") + f_varint(2, 3) + f_bytes(5, seq) + f_bytes(5, f_varint(2, 1))
    opt_seq = f_bytes(1, "o") + f_varint(2, 3) + f_bytes(5, seq)
    opt_none = f_bytes(1, "none") + f_varint(2, 3)
    seeds["hand_seq_of_seq.pb"] = seq_of_seq
    seeds["hand_optional_seq.pb"] = opt_seq
    seeds["hand_optional_none_seq.pb"] = opt_none
    seeds["hand_typed_u4.pb"] = tensor("u4", UINT4, [3], typed=[(5, varint(0x21) + varint(0x3))])
    seeds["hand_typed_strings.pb"] = tensor("s", STRING, [2], typed=[(None, f_bytes(6, "ab") + f_bytes(6, "c"))])
    seeds["hand_typed_u32.pb"] = tensor("u", UINT32, [2], typed=[(11, varint(7) + varint(2**32 - 1))])
    seeds["hand_typed_c64.pb"] = tensor("c", COMPLEX64, [1], typed=[(4, floats(1, 2))])
    return seeds


def main():
    for sub, seeds in (("load", load_seeds()), ("value", value_seeds())):
        d = os.path.join(HERE, "corpus", sub)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            print("wrote", os.path.join("corpus", sub, name))


if __name__ == "__main__":
    main()
