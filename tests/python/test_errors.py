"""Bad input raises a kiln exception (a subclass of kiln.KilnError, named as onnxruntime
names it) whose text is kiln's one-line message, and never crashes the interpreter."""
import os

import numpy as np
import pytest
from conftest import run_python

import kiln


@pytest.fixture(scope="module")
def sess(demo):
    return kiln.InferenceSession(demo[0])


def raises(cls, fn, *words):
    with pytest.raises(cls) as ei:
        fn()
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg
    assert isinstance(ei.value, kiln.KilnError)
    return msg


def test_class_hierarchy():
    for name in ("InvalidArgument", "NoSuchFile", "Fail", "InvalidGraph", "NotImplemented", "RuntimeException",
                 "EPFail", "InvalidProtobuf", "NoModel", "ModelLoaded", "EngineError"):
        cls = getattr(kiln, name)
        assert issubclass(cls, kiln.KilnError) and cls.__name__ == name
    assert issubclass(kiln.KilnError, RuntimeError)


def test_unknown_input_name(sess, demo):
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"imag": demo[1]}), "no input named 'imag'")


def test_missing_input(sess):
    raises(kiln.InvalidArgument, lambda: sess.run(None, {}), "input 'image' is missing")


def test_wrong_dtype(sess, demo):
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": demo[1].astype(np.float64)}),
           "input 'image'", "float32", "float64")
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": demo[1].astype(np.int32)}), "int32")


def test_wrong_rank_and_shape(sess):
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": np.zeros((2, 8, 8), np.float32)}),
           "input 'image'", "rank")
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": np.zeros((2, 1, 8, 9), np.float32)}),
           "input 'image'", "[2,1,8,9]")


def test_unknown_output_name(sess, demo):
    raises(kiln.InvalidArgument, lambda: sess.run(["logit"], {"image": demo[1]}), "no output named 'logit'")


def test_not_a_dict_and_bad_keys(sess, demo):
    with pytest.raises(TypeError):
        sess.run(None, [demo[1]])
    with pytest.raises(TypeError):
        sess.run(None, {0: demo[1]})
    with pytest.raises(TypeError):
        sess.run("logits", {"image": demo[1]})
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": None}), "None")
    raises(kiln.InvalidArgument, lambda: sess.run(None, {"image": np.zeros((1, 1, 8, 8), "datetime64[s]")}),
           "no ONNX element type")


def test_non_contiguous_input_is_copied(sess, demo):
    """Documented: non-contiguous, misaligned or byte-swapped arrays are copied first."""
    images, want = demo[1], demo[2]
    wide = np.zeros((16, 1, 8, 16), np.float32)
    wide[..., ::2] = images
    view = wide[..., ::2]
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(sess.run(["logits"], {"image": view})[0], want, rtol=0, atol=1e-4)
    fortran = np.asfortranarray(images)
    np.testing.assert_allclose(sess.run(["logits"], {"image": fortran})[0], want, rtol=0, atol=1e-4)
    swapped = images.astype(images.dtype.newbyteorder(">"))
    np.testing.assert_allclose(sess.run(["logits"], {"image": swapped})[0], want, rtol=0, atol=1e-4)
    raw = np.zeros(images.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(images.shape)
    misaligned[...] = images
    assert not misaligned.flags.aligned
    np.testing.assert_allclose(sess.run(["logits"], {"image": misaligned})[0], want, rtol=0, atol=1e-4)


def test_read_only_input_is_read_in_place(sess, demo):
    """Runs never write inputs, so read-only arrays are fine (as in onnxruntime)."""
    images = demo[1].copy()
    images.flags.writeable = False
    np.testing.assert_allclose(sess.run(["logits"], {"image": images})[0], demo[2], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(images, demo[1])


def test_missing_file(tmp_path):
    raises(kiln.NoSuchFile, lambda: kiln.InferenceSession(str(tmp_path / "nope.onnx")), "nope.onnx")


def test_file_that_is_not_a_model(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\n")
    raises(kiln.InvalidGraph, lambda: kiln.InferenceSession(str(p)))
    raises(kiln.InvalidGraph, lambda: kiln.InferenceSession(str(os.path.dirname(__file__) + "/conftest.py")))


def test_garbage_bytes():
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 1000):
        with pytest.raises(kiln.KilnError):
            kiln.InferenceSession(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    raises(kiln.InvalidGraph, lambda: kiln.InferenceSession(b"\x08\x07\x12\xff\xff\xff"))


def test_bad_options(demo):
    so = kiln.SessionOptions()
    so.intra_op_num_threads = -3
    raises(kiln.InvalidArgument, lambda: kiln.InferenceSession(demo[0], so), "threads")
    so = kiln.SessionOptions()
    so.graph_optimization_level = 7
    raises(kiln.InvalidArgument, lambda: kiln.InferenceSession(demo[0], so), "graph_optimization_level")
    raises(kiln.InvalidArgument, lambda: so.add_session_config_entry("kiln.nope", "1"), "kiln.nope")
    raises(kiln.InvalidArgument, lambda: so.add_session_config_entry("kiln.max_depth", "x"), "integer")
    ro = kiln.RunOptions()
    with pytest.raises(kiln.InvalidArgument):
        ro.timeout = -1


def test_errors_never_crash_the_interpreter(demo):
    """The bad calls above, and a few worse ones, in a child interpreter: it must exit 0."""
    code = f"""
import numpy as np, kiln
s = kiln.InferenceSession({demo[0]!r})
bad = [{{}}, {{"image": np.zeros((0, 1, 8, 8), np.float32)}}, {{"image": np.zeros((1,) * 20, np.float32)}},
       {{"image": np.array(["a"], dtype=object)}}, {{"image": np.array([object()], dtype=object)}},
       {{"image": [1, 2]}}, {{"image": "text"}}, {{"image": np.zeros((2, 1, 8, 8), np.float32)[::2, :, ::-1]}}]
for feed in bad:
    try:
        s.run(None, feed)
    except Exception as e:
        assert isinstance(e, (kiln.KilnError, TypeError, ValueError)), type(e)
for src in (b"", b"\\x00" * 64, bytes(range(256)) * 10):
    try:
        kiln.InferenceSession(src)
    except kiln.KilnError:
        pass
print("alive")
"""
    p = run_python(code)
    assert p.returncode == 0, p.stderr
    assert "alive" in p.stdout
