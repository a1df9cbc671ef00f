#!/usr/bin/python3
"""make_draw_models.py: writes tests/data/draw_fused_if.onnx, the model that
tests/unit/test_draw.c and tests/cli/test_graph.sh draw. Needs python3-onnx.

    X float32[1,3,8,8], cond bool[]
    Conv(X, W[4,3,3,3], B[4], pads 1)                     -> c      (initializers W, B)
    kiln.FusedConvRelu(c, W2[4,4,1,1], fused_ops "Conv + Relu") -> f (a fused op of kiln's domain)
    If(cond): then  Add(f, f) -> t    (reads f from the outer scope)
              else  Relu(f)   -> e    (reads f from the outer scope)
                                                          -> Y float32[1,4,8,8]
Five nodes in all (Conv, FusedConvRelu, If, Add, Relu), three initializers, one If with
two subgraphs.

Usage: /usr/bin/python3 tests/data/make_draw_models.py   (writes next to this script)
"""
import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "B")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "W2")
    y_info = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 8, 8])
    then_g = helper.make_graph([helper.make_node("Add", ["f", "f"], ["t"], name="then_add")], "then",
                               [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4, 8, 8])])
    else_g = helper.make_graph([helper.make_node("Relu", ["f"], ["e"], name="else_relu")], "else",
                               [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 4, 8, 8])])
    nodes = [
        helper.make_node("Conv", ["X", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("FusedConvRelu", ["c", "W2"], ["f"], name="fused", domain="kiln",
                         fused_ops="Conv + Relu"),
        helper.make_node("If", ["cond"], ["Y"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes, "draw_fused_if",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [y_info], [w, b, w2],
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("kiln", 1)],
                              producer_name="make_draw_models.py")
    model.ir_version = 8
    save(model, os.path.join(HERE, "draw_fused_if.onnx"))


if __name__ == "__main__":
    main()
