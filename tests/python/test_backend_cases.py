"""ONNX backend test cases (onnx-tests/node) run with `import kiln as onnxruntime`, the way
onnxruntime's backend test runner does: read the model, bind the test_data_set_K inputs
(read with onnx.numpy_helper) to session.get_inputs() in order, run, compare every output.

The selection covers the element types NumPy has (float, double, float16, int8..int64,
uint8..uint64, bool, string) and sequences as inputs and outputs. Tolerance: the ONNX
backend tests' rtol 1e-3, atol 1e-7 for floating point; exact for integers, bools and
strings; the output's dtype must equal the reference's."""
import glob
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import kiln as onnxruntime

CASES = [
    # float
    "test_relu", "test_add", "test_conv_with_strides_padding", "test_softmax_axis_1",
    # double, float16
    "test_cast_FLOAT_to_DOUBLE", "test_max_float64", "test_max_float16", "test_cast_FLOAT16_to_FLOAT",
    "test_cast_FLOAT_to_FLOAT16",
    # signed and unsigned integers
    "test_max_int8", "test_equal_int8", "test_max_int16", "test_bitwise_and_i16_3d", "test_max_int32",
    "test_max_int64", "test_add_uint8", "test_max_uint8", "test_max_uint16", "test_equal_uint16",
    "test_max_uint32", "test_max_uint64", "test_bitwise_or_ui64_bcast_3v1d",
    # bool
    "test_and2d", "test_not_2d", "test_xor_bcast4v4d",
    # string
    "test_string_concat", "test_string_concat_utf8", "test_equal_string", "test_string_split_basic",
    "test_strnormalizer_export_monday_casesensintive_lower",
    # sequences (inputs and outputs)
    "test_sequence_insert_at_back", "test_split_to_sequence_1", "test_sequence_map_add_2_sequences",
    "test_sequence_map_identity_1_sequence", "test_sequence_map_extract_shapes",
]


def read_pb(path, seq):
    data = open(path, "rb").read()
    if seq:
        p = onnx.SequenceProto()
        p.ParseFromString(data)
        return numpy_helper.to_list(p)
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return numpy_helper.to_array(t)


def assert_same(got, want, what):
    if isinstance(want, list):
        assert isinstance(got, list), f"{what}: expected a list, got {type(got)}"
        assert len(got) == len(want), f"{what}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{what}[{i}]")
        return
    assert isinstance(got, np.ndarray), f"{what}: got {type(got)}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind == "O":
        assert got.dtype == object, what
        assert [str(x) for x in got.ravel()] == [str(x) for x in want.ravel()], what
    else:
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7, err_msg=what)
        else:
            np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("case", CASES)
def test_backend_case(node_tests, case):
    d = node_tests / case
    model_path = str(d / "model.onnx")
    sess = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    outputs = sess.get_outputs()
    sets = sorted(glob.glob(str(d / "test_data_set_*")))
    assert sets, f"{case}: no data sets"
    for ds in sets:
        feed = {}
        for i, inp in enumerate(inputs):
            feed[inp.name] = read_pb(os.path.join(ds, f"input_{i}.pb"), inp.type.startswith("seq("))
        got = sess.run(None, feed)
        assert len(got) == len(outputs)
        for k, out in enumerate(outputs):
            want = read_pb(os.path.join(ds, f"output_{k}.pb"), out.type.startswith("seq("))
            assert_same(got[k], want, f"{case} {os.path.basename(ds)} output '{out.name}'")


def test_selection_covers_the_dtypes(node_tests):
    """The cases above really have inputs or outputs of every type the module promises."""
    seen = set()
    for case in CASES:
        sess = onnxruntime.InferenceSession(str(node_tests / case / "model.onnx"))
        seen.update(a.type for a in sess.get_inputs() + sess.get_outputs())
    want = {f"tensor({t})" for t in ("float", "double", "float16", "int8", "int16", "int32", "int64", "uint8",
                                       "uint16", "uint32", "uint64", "bool", "string")}
    assert want <= seen, f"missing: {sorted(want - seen)}"
    assert any(t.startswith("seq(") for t in seen)
