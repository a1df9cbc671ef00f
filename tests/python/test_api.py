"""The rest of the API: session options, profiling, run options (terminate, timeout),
engines (kiln.build, loading .kiln files), kiln.optimize / kiln.convert, the benchmark
helper, OrtValue, zero-copy inputs, version and ISA queries."""
import json
import os
import resource
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import NODE, make_model
from test_threads import slow_model

import kiln

ATOL = 1e-4


def test_version_and_isa():
    assert kiln.__version__ == kiln.get_version_string()
    assert [int(p) for p in kiln.__version__.split(".")] >= [0, 1, 0]
    assert kiln.cpu_isa() in ("avx512", "avx2", "portable")
    assert kiln.get_device() == "CPU"
    assert kiln.get_available_providers() == ["CPUExecutionProvider"]


def test_other_providers_warn_and_fall_back(demo):
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider"):
        s = kiln.InferenceSession(demo[0], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert s.get_providers() == ["CPUExecutionProvider"]


def test_threads_option(demo):
    for n in (1, 2):
        so = kiln.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 4  # accepted, ignored
        s = kiln.InferenceSession(demo[0], so)
        assert s.threads == n
        np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)


def test_session_config_entries(demo):
    so = kiln.SessionOptions()
    so.add_session_config_entry("kiln.max_memory_bytes", "64")
    assert so.get_session_config_entry("kiln.max_memory_bytes") == "64"
    s = kiln.InferenceSession(demo[0], so)
    with pytest.raises(kiln.Fail, match="64"):  # the planned arena exceeds 64 bytes
        s.run(None, {"image": demo[1]})
    so = kiln.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with pytest.warns(RuntimeWarning, match="allow_spinning"):
        kiln.InferenceSession(demo[0], so)
    with pytest.raises(kiln.InvalidArgument):
        so.get_session_config_entry("nope")


def test_profiling(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    so = kiln.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = "prof"
    s = kiln.InferenceSession(demo[0], so)
    for _ in range(3):
        s.run(None, {"image": demo[1]})
    entries = s.profile()
    assert entries and all(e["calls"] == 3 for e in entries if e["depth"] == 0)
    path = s.end_profiling()
    assert os.path.basename(path).startswith("prof_") and path.endswith(".json")
    events = json.load(open(path))
    assert len(events) >= 3 * len(entries) and {e["ph"] for e in events} == {"X"}
    cats = {e["cat"] for e in events}
    # The op types run (the optimizer may have rewritten the CNN to channels-last forms).
    assert "Gemm" in cats and any(c.startswith("MaxPool") for c in cats), cats
    assert kiln.InferenceSession(demo[0]).end_profiling() == ""


def test_optimized_model_filepath(demo, tmp_path):
    so = kiln.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = kiln.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    kiln.InferenceSession(demo[0], so)
    s = kiln.InferenceSession(str(tmp_path / "opt.onnx"))
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)
    so.optimized_model_filepath = str(tmp_path / "opt.kiln")  # kiln: an engine file
    kiln.InferenceSession(demo[0], so)
    s = kiln.InferenceSession(str(tmp_path / "opt.kiln"))
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)


def test_run_options_terminate_and_timeout():
    so = kiln.SessionOptions()
    so.intra_op_num_threads = 1
    s = kiln.InferenceSession(slow_model(), so)
    x = np.ones((512, 512), np.float32)
    ro = kiln.RunOptions()
    ro.terminate = True
    assert ro.terminate
    with pytest.raises(kiln.Fail, match="cancelled"):
        s.run(None, {"x": x}, ro)
    ro.terminate = False
    assert s.run(None, {"x": x}, ro)[0].shape == (512, 512)
    ro.timeout = 0.001
    assert ro.timeout == 0.001
    with pytest.raises(kiln.Fail, match="timeout"):
        s.run(None, {"x": x}, ro)
    # terminate from another thread while the run is in progress
    ro = kiln.RunOptions()
    timer = threading.Timer(0.02, lambda: setattr(ro, "terminate", True))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(kiln.Fail, match="cancelled"):
        s.run(None, {"x": x}, ro)
    timer.join()
    assert time.perf_counter() - t0 < 30


def test_build_and_load_engine(demo, tmp_path):
    path = tmp_path / "digits.kiln"
    assert kiln.build(demo[0], path, threads=1) == str(path)
    s = kiln.InferenceSession(str(path))
    assert [i.name for i in s.get_inputs()] == ["image"]
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)
    # a fixed shape, and a profile
    kiln.build(demo[0], tmp_path / "fixed.kiln", shapes={"image": (16, 1, 8, 8)})
    s = kiln.InferenceSession(str(tmp_path / "fixed.kiln"))
    assert s.get_inputs()[0].shape == [16, 1, 8, 8]
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)
    with pytest.raises(kiln.InvalidArgument):
        s.run(None, {"image": demo[1][:3]})
    kiln.build(open(demo[0], "rb").read(), tmp_path / "prof.kiln",
               profiles={"image": ((1, 1, 8, 8), (8, 1, 8, 8), (16, 1, 8, 8))}, level="layout")
    s = kiln.InferenceSession(str(tmp_path / "prof.kiln"))
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1][:5]})[0], demo[2][:5], rtol=0, atol=ATOL)
    with pytest.raises(kiln.InvalidArgument, match="image"):
        s.run(None, {"image": np.zeros((17, 1, 8, 8), np.float32)})
    with pytest.raises(kiln.NotImplemented):
        kiln.build(demo[0], tmp_path / "x.kiln", precision="fp16")  # fp32 must be allowed today
    with pytest.raises(kiln.InvalidArgument):
        kiln.build(demo[0], tmp_path / "x.kiln", precision="fp7")
    s = kiln.InferenceSession(demo[0])
    s.save_engine(tmp_path / "saved.kiln")
    np.testing.assert_allclose(kiln.InferenceSession(str(tmp_path / "saved.kiln")).run(
        ["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)


def test_optimize_and_convert(demo, tmp_path):
    out = tmp_path / "o.onnx"
    assert kiln.optimize(demo[0], out, level="extended", keep_fused=False) is None
    import onnx
    m = onnx.load(str(out))
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    s = kiln.InferenceSession(str(out))
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)
    data, lines = kiln.optimize(open(demo[0], "rb").read(), None, level="basic", report=True)
    assert isinstance(data, bytes) and lines and all(isinstance(x, str) for x in lines)
    kiln.convert(demo[0], tmp_path / "c.onnx", opset=17)
    m = onnx.load(str(tmp_path / "c.onnx"))
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    s = kiln.InferenceSession(str(tmp_path / "c.onnx"))
    np.testing.assert_allclose(s.run(["logits"], {"image": demo[1]})[0], demo[2], rtol=0, atol=ATOL)
    with pytest.raises(kiln.KilnError):
        kiln.convert(demo[0], tmp_path / "bad.onnx", opset=3)
    with pytest.raises(kiln.InvalidArgument):
        kiln.optimize(demo[0], None, level="fastest")


def test_benchmark(demo):
    s = kiln.InferenceSession(demo[0])
    r = kiln.benchmark(s, {"image": demo[1]}, runs=20, warmup=2)
    assert r["runs"] == 20 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
    assert r["python_median_ms"] > 0 and "python_overhead_us" in r
    with pytest.raises(kiln.InvalidArgument):
        kiln.benchmark(s, {"image": demo[1]}, runs=0)


def test_ortvalue(demo):
    v = kiln.OrtValue.ortvalue_from_numpy(demo[1])
    assert v.numpy() is demo[1] and v.shape() == [16, 1, 8, 8] and v.data_type() == "tensor(float)"
    assert v.element_type() is np.float32 and v.is_tensor() and v.has_value()
    z = kiln.OrtValue.ortvalue_from_shape_and_type([2, 3], np.int64)
    z.update_inplace(np.ones((2, 3), np.int64))
    assert z.numpy().sum() == 6
    with pytest.raises(kiln.InvalidArgument):
        kiln.OrtValue.ortvalue_from_numpy(demo[1], "cuda", 0)


def test_zero_copy_inputs():
    """A contiguous input is read in place: feeding 256 MiB adds far less than 256 MiB to the
    peak RSS, while a non-contiguous view of it is copied (documented) and adds about that."""
    from onnx import TensorProto, helper

    m = make_model([helper.make_node("ReduceMax", ["x"], ["y"], keepdims=0)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], opset=13)
    s = kiln.InferenceSession(m)
    x = np.ones((8192, 8192), np.float32)  # 256 MiB, touched
    x[5, 7] = 3
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert s.run(None, {"x": x})[0] == 3
    peak1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak1 - peak0 < 64 * 1024, f"peak RSS grew {peak1 - peak0} KiB for a contiguous input"
    assert s.run(None, {"x": x.T})[0] == 3  # transposed: copied
    peak2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak2 - peak1 > 200 * 1024


def test_string_inputs_of_every_numpy_flavour(node_tests):
    s = kiln.InferenceSession(str(NODE / "test_string_concat" / "model.onnx"))
    names = [i.name for i in s.get_inputs()]
    for a, b in ((np.array(["ab", "é"], dtype=object), np.array(["c", "d"], dtype=object)),
                 (np.array(["ab", "é"]), np.array(["c", "d"])),  # '<U' arrays
                 (np.array([b"ab", "é".encode()], dtype=object), np.array([b"c", b"d"]))):
        (out,) = s.run(None, dict(zip(names, (a, b))))
        assert out.dtype == object and list(out) == ["abc", "éd"]
    with pytest.raises(kiln.InvalidArgument, match="flat index 1"):
        s.run(None, dict(zip(names, (np.array(["a", 3], dtype=object), np.array(["c", "d"], dtype=object)))))


def test_metadata_map():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "graph_x",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, producer_name="maker", doc_string="a doc", domain="dom", model_version=5,
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"author": "me", "k": "v"})
    meta = kiln.InferenceSession(m.SerializeToString()).get_modelmeta()
    assert (meta.producer_name, meta.graph_name, meta.domain, meta.description, meta.version) == \
        ("maker", "graph_x", "dom", "a doc", 5)
    assert meta.custom_metadata_map == {"author": "me", "k": "v"}


def test_node_arg_shapes():
    from onnx import TensorProto, helper

    m = make_model([helper.make_node("Identity", ["x"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", None, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)])
    s = kiln.InferenceSession(m)
    (i,) = s.get_inputs()
    assert (i.name, i.type, i.shape) == ("x", "tensor(float16)", ["batch", None, 3])
    assert s.get_outputs()[0].type == "tensor(float16)"
    x = np.arange(6, dtype=np.float16).reshape(1, 2, 3)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], x)


def test_threads_warning_free(demo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kiln.InferenceSession(demo[0], providers=["CPUExecutionProvider"])
