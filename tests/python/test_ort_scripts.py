"""Scripts written the way onnxruntime's documentation writes them, run unchanged with
`import kiln as onnxruntime`: on the demo model (reference logits demo/test_logits.npy,
tolerance 1e-4 absolute, as scripts/demo.sh's model was checked) and with IO binding."""
import numpy as np

import kiln as onnxruntime

ATOL = 1e-4


def test_readme_style_script(demo):
    model, images, want = demo
    # --- as in onnxruntime's "Get started with ORT for Python" ---
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    result = session.run([output_name], {input_name: images})
    # ---
    assert input_name == "image"
    assert output_name == "logits"
    assert len(result) == 1
    np.testing.assert_allclose(result[0], want, rtol=0, atol=ATOL)
    assert result[0].dtype == np.float32 and result[0].shape == (16, 10)


def test_inspect_inputs_and_outputs(demo):
    model, images, want = demo
    sess = onnxruntime.InferenceSession(model)
    ins = sess.get_inputs()
    assert [(i.name, i.type, i.shape) for i in ins] == [("image", "tensor(float)", ["N", 1, 8, 8])]
    outs = sess.get_outputs()
    assert [(o.name, o.type, o.shape) for o in outs] == [("logits", "tensor(float)", ["N", 10]),
                                                       ("label", "tensor(int64)", ["N"])]
    assert sess.get_overridable_initializers() == []
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
    meta = sess.get_modelmeta()
    assert meta.producer_name == "pytorch"
    assert meta.graph_name == "torch_jit"
    assert isinstance(meta.custom_metadata_map, dict) and isinstance(meta.version, int)
    assert isinstance(meta.description, str) and isinstance(meta.domain, str)


def test_run_all_outputs_with_session_options(demo):
    model, images, want = demo
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    sess = onnxruntime.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    logits, label = sess.run(None, {sess.get_inputs()[0].name: images})
    np.testing.assert_allclose(logits, want, rtol=0, atol=ATOL)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, want.argmax(axis=1))


def test_every_optimization_level(demo):
    model, images, want = demo
    for level in (onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = onnxruntime.SessionOptions()
        so.graph_optimization_level = level
        sess = onnxruntime.InferenceSession(model, sess_options=so)
        (logits,) = sess.run(["logits"], {"image": images})
        np.testing.assert_allclose(logits, want, rtol=0, atol=ATOL, err_msg=str(level))


def test_model_from_bytes(demo):
    model, images, want = demo
    with open(model, "rb") as f:
        sess = onnxruntime.InferenceSession(f.read())
    np.testing.assert_allclose(sess.run(None, {"image": images})[0], want, rtol=0, atol=ATOL)


def test_io_binding(demo):
    model, images, want = demo
    # --- as in onnxruntime's "IOBinding" documentation, on the CPU ---
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    io_binding = session.io_binding()
    io_binding.bind_cpu_input("image", images)
    io_binding.bind_output("logits")
    session.run_with_iobinding(io_binding)
    Y = io_binding.copy_outputs_to_cpu()[0]
    # ---
    np.testing.assert_allclose(Y, want, rtol=0, atol=ATOL)
    ov = io_binding.get_outputs()[0]
    np.testing.assert_array_equal(ov.numpy(), Y)
    assert ov.device_name() == "cpu" and ov.shape() == [16, 10] and ov.data_type() == "tensor(float)"


def test_io_binding_with_buffers(demo):
    model, images, want = demo
    session = onnxruntime.InferenceSession(model)
    x = onnxruntime.OrtValue.ortvalue_from_numpy(images, "cpu", 0)
    y = onnxruntime.OrtValue.ortvalue_from_shape_and_type([16, 10], np.float32, "cpu", 0)
    label = np.zeros(16, dtype=np.int64)
    io_binding = session.io_binding()
    io_binding.bind_input(name="image", device_type=x.device_name(), device_id=0, element_type=np.float32,
                          shape=x.shape(), buffer_ptr=x.data_ptr())
    io_binding.bind_output(name="logits", device_type=y.device_name(), device_id=0, element_type=np.float32,
                           shape=y.shape(), buffer_ptr=y.data_ptr())
    io_binding.bind_ortvalue_output("label", onnxruntime.OrtValue.ortvalue_from_numpy(label))
    session.run_with_iobinding(io_binding)
    np.testing.assert_allclose(y.numpy(), want, rtol=0, atol=ATOL)  # written into the bound buffer
    np.testing.assert_array_equal(label, want.argmax(axis=1))
    outs = io_binding.copy_outputs_to_cpu()
    assert np.shares_memory(outs[0], y.numpy()) and outs[1] is label


def test_io_binding_refuses_read_only_and_wrong_buffers(demo):
    model, images, want = demo
    session = onnxruntime.InferenceSession(model)
    ro = np.zeros((16, 10), np.float32)
    ro.flags.writeable = False
    b = session.io_binding()
    try:
        b.bind_ortvalue_output("logits", onnxruntime.OrtValue.ortvalue_from_numpy(ro))
        raise AssertionError("a read-only output buffer was accepted")
    except onnxruntime.InvalidArgument as e:
        assert "read-only" in str(e)
    b.bind_cpu_input("image", images)
    b.bind_ortvalue_output("logits", onnxruntime.OrtValue.ortvalue_from_numpy(np.zeros((3, 10), np.float32)))
    try:
        session.run_with_iobinding(b)
        raise AssertionError("a wrongly shaped output buffer was accepted")
    except onnxruntime.InvalidArgument as e:
        assert "output 'logits'" in str(e) and "[16, 10]" in str(e) and "[3, 10]" in str(e)


def test_run_with_ort_values(demo):
    model, images, want = demo
    sess = onnxruntime.InferenceSession(model)
    outs = sess.run_with_ort_values(["logits"], {"image": onnxruntime.OrtValue.ortvalue_from_numpy(images)})
    np.testing.assert_allclose(outs[0].numpy(), want, rtol=0, atol=ATOL)
